// Pre-tokenizer pipelines (Hugging Face semantics) and their llama.cpp `tokenizer.ggml.pre` names.
#pragma once

#include "tokenizer/regex.hpp"

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lq::detail {

/// How a split treats the matched delimiters (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

/// One pre-tokenizer step.
struct PreStep {
  enum class Kind { split, byte_level, digits, punctuation, metaspace };
  enum class Prepend { always, first, never };

  Kind kind = Kind::split;
  std::string pattern;  ///< split: regex or literal string
  bool pattern_is_regex = true;
  SplitBehavior behavior = SplitBehavior::isolated;  ///< split, punctuation
  bool invert = false;                               ///< split
  bool add_prefix_space = false;                     ///< byte_level
  bool use_regex = true;                             ///< byte_level: split with the GPT-2 regex
  bool individual_digits = false;                    ///< digits
  std::string replacement = "\xE2\x96\x81";          ///< metaspace
  Prepend prepend = Prepend::always;                 ///< metaspace
  bool metaspace_split = true;                       ///< metaspace
  std::shared_ptr<const Regex> regex;                ///< compiled split pattern

  /// Same behaviour (compares the options that affect splitting, not the compiled regex).
  bool same_as(const PreStep& o) const;
};

/// A sequence of steps turning one text fragment into the pieces the model encodes.
class PreTokenizer {
 public:
  PreTokenizer() = default;
  explicit PreTokenizer(std::vector<PreStep> steps);

  const std::vector<PreStep>& steps() const { return steps_; }
  bool empty() const { return steps_.empty(); }
  /// True when a ByteLevel step maps bytes to GPT-2's printable characters.
  bool byte_level() const;
  /// Splits `text` (UTF-8) into pieces (UTF-8, byte-level mapped when a ByteLevel step ran):
  /// `out` receives the pieces back to back and `ends` each piece's end offset in `out`.
  /// `first` tells whether the fragment starts the input (Metaspace "first").
  void run(std::string_view text, bool first, std::string& out, std::vector<size_t>& ends) const;
  bool same_as(const PreTokenizer& o) const;

 private:
  std::vector<PreStep> steps_;
};

/// Parses a tokenizer.json `pre_tokenizer` object (null gives an empty pipeline). Throws
/// Errc::invalid_model for unsupported types, naming `file`.
PreTokenizer pretokenizer_from_json(const nlohmann::json& j, const std::string& file);

/// One named pipeline: the llama.cpp `tokenizer.ggml.pre` name, the aliases llama.cpp treats the
/// same way, and whether the BPE model skips merges for whole-vocabulary words (Llama 3).
struct NamedPreTokenizer {
  std::string name;
  std::vector<std::string> aliases;
  PreTokenizer pipeline;
  bool ignore_merges = false;
  bool detectable = true;  ///< false for llama.cpp-only pipelines no tokenizer.json spells
};

/// The supported named pipelines (gpt-2, llama-bpe, qwen2, deepseek-coder, falcon, starcoder,
/// default).
const std::vector<NamedPreTokenizer>& named_pretokenizers();
/// Pipeline for a `tokenizer.ggml.pre` name or alias; nullptr when unknown.
const NamedPreTokenizer* find_pretokenizer(std::string_view name);
/// Name of the first detectable named pipeline behaving like `p`; nullopt when none does.
std::optional<std::string> detect_pretokenizer(const PreTokenizer& p);

}  // namespace lq::detail
