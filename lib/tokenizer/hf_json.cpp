// Hugging Face `tokenizer.json` reading and validation (see hf_json.hpp). File parsing only.
#include "tokenizer/hf_json.hpp"
#include "core/fail.hpp"

#include "tokenizer/impl.hpp"
#include "tokenizer/pretok_json.hpp"

#include <algorithm>

namespace lq::detail {
namespace {

void parse_normalizer(const json& n, HfJson& h) {
  if (n.is_null()) return;
  const std::string type = n.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const auto& sub : n.at("normalizers")) parse_normalizer(sub, h);
  } else if (type == "NFC") {
    // Accepted as the identity, as llama.cpp does: text is expected in NFC already.
  } else if (type == "Prepend" && n.at("prepend").get<std::string>() == kMetaSpace) {
    h.prepend_metaspace = true;
  } else if (type == "Replace" && member(n.at("pattern"), "String") == " " &&
             n.at("content").get<std::string>() == kMetaSpace) {
    h.replace_space = true;
  } else {
    fail(Errc::invalid_model, "{}: unsupported normalizer '{}'", h.file, n.dump());
  }
}

}  // namespace

std::string merge_string(const json& m) {
  if (m.is_string()) return m.get<std::string>();
  std::string out;
  for (size_t k = 0; k < 2; ++k) {
    if (k) out += ' ';
    for (char c : m.at(k).get<std::string>()) {
      if (c == ' ') out += "\xC4\xA0";
      else out += c;
    }
  }
  return out;
}

HfJson parse_hf_json(const fs::path& path) {
  const json j = read_json(path);
  HfJson h;
  h.file = path.string();
  with_json_errors(path, [&] {
    const json& model = j.at("model");
    h.model_type = model.value("type", std::string("BPE"));
    if (h.model_type != "BPE")
      fail(Errc::invalid_model, "{}: tokenizer model type '{}' is not supported (BPE only)", h.file,
           h.model_type);
    if (!model.at("vocab").is_object()) fail(Errc::invalid_model, "{}: model.vocab must be an object", h.file);
    if (model.contains("merges") && !model["merges"].is_array())
      fail(Errc::invalid_model, "{}: model.merges must be an array", h.file);
    for (const auto& el : model.at("vocab").items()) h.vocab.emplace_back(el.key(), el.value().get<int64_t>());
    if (model.contains("merges") && model["merges"].is_array())
      for (const auto& m : model["merges"]) h.merges.push_back(merge_string(m));
    h.byte_fallback = model.value("byte_fallback", false);
    h.fuse_unk = model.value("fuse_unk", false);
    h.ignore_merges = model.value("ignore_merges", false);
    if (model.contains("unk_token") && model["unk_token"].is_string()) h.unk_token = model["unk_token"].get<std::string>();
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (truthy(member(model, key)))
        fail(Errc::invalid_model, "{}: BPE option {} is not supported", h.file, key);
    if (j.contains("added_tokens"))
      for (const auto& a : j.at("added_tokens")) {
        AddedToken t;
        t.id = a.at("id").get<int64_t>();
        t.content = a.at("content").get<std::string>();
        t.special = a.value("special", false);
        t.normalized = a.value("normalized", true);
        t.lstrip = a.value("lstrip", false);
        t.rstrip = a.value("rstrip", false);
        h.added.push_back(std::move(t));
      }
    parse_normalizer(member(j, "normalizer"), h);
    h.pre = detail::pretokenizer_from_json(member(j, "pre_tokenizer"), h.file);
    const json& dec = member(j, "decoder");
    h.decoder_byte_level = member(dec, "type") == "ByteLevel";
    return 0;
  });
  if (h.prepend_metaspace && !h.replace_space)
    fail(Errc::invalid_model, "{}: normalizer Prepend without Replace(' ') is not supported", h.file);
  for (const auto& [tok, id] : h.vocab)
    if (id < 0 || id > INT32_MAX) fail(Errc::invalid_model, "{}: token id {} out of range", h.file, id);
  for (const auto& a : h.added)
    if (a.id < 0 || a.id > INT32_MAX) fail(Errc::invalid_model, "{}: token id {} out of range", h.file, a.id);
  int64_t max_id = -1;
  for (const auto& [tok, id] : h.vocab) max_id = std::max(max_id, id);
  for (const auto& a : h.added) max_id = std::max(max_id, a.id);
  if (max_id >= kMaxVocab || max_id >= 2 * static_cast<int64_t>(h.vocab.size() + h.added.size()) + 65536)
    fail(Errc::invalid_model, "{}: token id {} is far beyond the {} tokens listed", h.file, max_id,
         h.vocab.size() + h.added.size());
  return h;
}

std::map<int64_t, std::string> reverse_vocab(const HfJson& h) {
  std::map<int64_t, std::string> rev;
  for (const auto& [tok, id] : h.vocab) rev[id] = tok;
  for (const auto& a : h.added) rev[a.id] = a.content;
  return rev;
}

}  // namespace lq::detail
