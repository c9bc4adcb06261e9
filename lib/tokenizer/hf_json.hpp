// Internal: the parts of a Hugging Face `tokenizer.json` that both the tokenizer loader and the
// GGUF metadata builder need (BPE vocabulary, merges, added tokens, normalizer, pre-tokenizer,
// decoder), read and validated. Must not build tokenizers or metadata itself.
#pragma once

#include "tokenizer/files.hpp"
#include "tokenizer/pretok.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lq::detail {

struct AddedToken {
  int64_t id = 0;
  std::string content;
  bool special = false;
  bool normalized = true;
  bool lstrip = false;
  bool rstrip = false;
};

// The parts of a tokenizer.json that both the tokenizer and the converter need.
struct HfJson {
  std::string file;
  std::string model_type;
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<std::string> merges;
  std::vector<AddedToken> added;
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;
  std::optional<std::string> unk_token;
  detail::PreTokenizer pre;
  bool prepend_metaspace = false;  // normalizer Prepend("▁")
  bool replace_space = false;      // normalizer Replace(" " -> "▁")
  bool decoder_byte_level = false;
};

/// Reads and validates `tokenizer.json` (BPE models only); throws Errc::invalid_model naming it.
HfJson parse_hf_json(const fs::path& path);
/// Ids -> texts of the whole vocabulary (base vocab, then added tokens; holes are absent).
std::map<int64_t, std::string> reverse_vocab(const HfJson& h);
/// One `model.merges` entry as "left right": a string as is, or a [left, right] pair
/// (transformers >= 4.45) whose spaces are written as U+0120.
std::string merge_string(const json& m);

}  // namespace lq::detail
