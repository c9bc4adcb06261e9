// Internal: what the tokenizer needs from a SentencePiece `tokenizer.model` file (pieces, trainer
// spec ids and options, normalizer spec), parsed from its protobuf encoding without libprotobuf.
// Must not build tokenizers or GGUF metadata: the loaders and metadata builders do.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lq::detail {

struct SpModel {
  struct Piece {
    std::string text;
    float score = 0.0f;
    int type = 1;
  };
  std::vector<Piece> pieces;
  int model_type = 1;  // UNIGRAM unless the trainer spec says otherwise
  bool byte_fallback = false;
  bool treat_whitespace_as_suffix = false;
  int64_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  std::string normalizer_name;
  std::string charsmap;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

/// Parses `tokenizer.model`; a truncated or malformed file throws Errc::invalid_model naming it.
SpModel parse_sentencepiece(const std::filesystem::path& path);

}  // namespace lq::detail
