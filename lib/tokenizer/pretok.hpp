// Internal: pre-tokenizer pipelines (Hugging Face semantics): steps, the pipeline that runs them,
// and the step builders. Reading them from tokenizer.json is pretok_json.hpp's, their llama.cpp
// `tokenizer.ggml.pre` names pretok_names.hpp's.
#pragma once

#include "tokenizer/regex.hpp"

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

/// A Split step on `pattern` (a regex unless the caller clears pattern_is_regex).
PreStep split_step(std::string pattern, SplitBehavior b = SplitBehavior::isolated);
/// A ByteLevel step (GPT-2's byte-to-character map, optionally its regex split first).
PreStep byte_level_step(bool add_prefix_space, bool use_regex);
/// A Digits step.
PreStep digits_step(bool individual);
/// A Punctuation step.
PreStep punctuation_step(SplitBehavior b);

}  // namespace lq::detail
