// Internal: the pre-tokenizer pipelines llama.cpp knows by a `tokenizer.ggml.pre` name, and the
// detection of a tokenizer.json pipeline's name. Must not parse files.
#pragma once

#include "tokenizer/pretok.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lq::detail {

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
