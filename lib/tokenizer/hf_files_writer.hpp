// Internal: Hugging Face tokenizer files made from a GGUF's tokenizer.ggml.* metadata (the inverse
// of tokenizer_gguf_metadata): tokenizer.model + tokenizer_config.json + special_tokens_map.json for
// a SentencePiece ("llama") vocabulary, tokenizer.json + tokenizer_config.json + special_tokens_map.json
// for a byte-level BPE ("gpt2") one. Reading them back gives the same metadata. Writes no files.
#pragma once

#include <lq/gguf.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lq::detail {

struct HfTokenizerFiles {
  std::vector<std::pair<std::string, std::string>> files;  ///< file name, contents
  nlohmann::ordered_json config_ids;  ///< bos_token_id, eos_token_id, ... for config.json
  std::string unsupported;            ///< why no files were made; empty when they were
};

/// The files for `meta`'s vocabulary; `model_max_length` (the context length, 0 when unknown) goes
/// into tokenizer_config.json. Malformed metadata throws Errc::invalid_model.
HfTokenizerFiles hf_tokenizer_files(const gguf::Metadata& meta, int64_t model_max_length);

}  // namespace lq::detail
