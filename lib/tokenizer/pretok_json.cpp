// tokenizer.json `pre_tokenizer` objects -> pipelines (see pretok_json.hpp): every supported
// type and option, and the errors for the others. Parsing only.
#include "tokenizer/pretok_json.hpp"

#include "tokenizer/unicode.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"

namespace lq::detail {
namespace {

SplitBehavior parse_behavior(const std::string& name, const std::string& file) {
  if (name == "Removed") return SplitBehavior::removed;
  if (name == "Isolated") return SplitBehavior::isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (name == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (name == "Contiguous") return SplitBehavior::contiguous;
  fail(Errc::invalid_model, "{}: unknown split behavior '{}'", file, name);
}

void parse_steps(const nlohmann::json& j, const std::string& file, std::vector<PreStep>& out) {
  if (j.is_null()) return;
  if (!j.is_object() || !j.contains("type"))
    fail(Errc::invalid_model, "{}: pre_tokenizer entry without a type", file);
  const std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const auto& sub : j.at("pretokenizers")) parse_steps(sub, file, out);
  } else if (type == "ByteLevel") {
    out.push_back(byte_level_step(j.value("add_prefix_space", true), j.value("use_regex", true)));
  } else if (type == "Split") {
    const auto& pat = j.at("pattern");
    PreStep s;
    if (pat.contains("Regex")) {
      s = split_step(pat.at("Regex").get<std::string>());
    } else if (pat.contains("String")) {
      s = split_step(pat.at("String").get<std::string>());
      s.pattern_is_regex = false;
    } else {
      fail(Errc::invalid_model, "{}: Split pre-tokenizer without a Regex or String pattern", file);
    }
    s.behavior = parse_behavior(j.value("behavior", std::string("Isolated")), file);
    s.invert = j.value("invert", false);
    out.push_back(std::move(s));
  } else if (type == "Digits") {
    out.push_back(digits_step(j.value("individual_digits", false)));
  } else if (type == "Punctuation") {
    out.push_back(punctuation_step(parse_behavior(j.value("behavior", std::string("Isolated")), file)));
  } else if (type == "Metaspace") {
    PreStep s;
    s.kind = PreStep::Kind::metaspace;
    s.replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    if (utf8_decode(s.replacement).size() != 1)
      fail(Errc::invalid_model, "{}: Metaspace replacement must be one character", file);
    if (j.contains("prepend_scheme")) {
      const std::string scheme = j.at("prepend_scheme").get<std::string>();
      if (scheme == "always") s.prepend = PreStep::Prepend::always;
      else if (scheme == "first") s.prepend = PreStep::Prepend::first;
      else if (scheme == "never") s.prepend = PreStep::Prepend::never;
      else fail(Errc::invalid_model, "{}: unknown Metaspace prepend_scheme '{}'", file, scheme);
    } else {
      s.prepend = j.value("add_prefix_space", true) ? PreStep::Prepend::always : PreStep::Prepend::never;
    }
    s.metaspace_split = j.value("split", true);
    out.push_back(std::move(s));
  } else if (type == "Whitespace") {
    PreStep s = split_step("\\w+|[^\\w\\s]+", SplitBehavior::removed);
    s.invert = true;
    out.push_back(std::move(s));
  } else if (type == "WhitespaceSplit") {
    out.push_back(split_step("\\s", SplitBehavior::removed));
  } else {
    fail(Errc::invalid_model, "{}: unsupported pre-tokenizer type '{}'", file, type);
  }
}

}  // namespace

PreTokenizer pretokenizer_from_json(const nlohmann::json& j, const std::string& file) {
  std::vector<PreStep> steps;
  parse_steps(j, file, steps);
  return PreTokenizer(std::move(steps));
}

}  // namespace lq::detail
