// liblq: tokenizers (text <-> token ids) and tokenizer metadata for GGUF conversion.
#pragma once

#include <lq/api.hpp>
#include <lq/gguf.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lq {

/// GGUF `tokenizer.ggml.token_type` values (pinned by the format).
enum class TokenType : int32_t {
  undefined = 0,
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

/// How the vocabulary segments text.
enum class TokenizerKind {
  sentencepiece,  ///< merges the adjacent pair whose joined piece scores highest (GGUF "llama")
  bpe,            ///< merges the adjacent pair with the lowest merge rank (GGUF "gpt2", HF BPE)
};

/// A tokenizer loaded from a SentencePiece model, a Hugging Face tokenizer.json or the
/// `tokenizer.ggml.*` metadata of a GGUF file. Encoding gives the ids the reference tokenizer
/// gives (SentencePiece, Hugging Face tokenizers, llama.cpp). Immutable and cheap to copy;
/// safe to use from several threads at once. Loading errors throw Errc::invalid_model naming
/// the file.
class LQ_API Tokenizer {
 public:
  /// SentencePiece `tokenizer.model` of the BPE model type (unigram models are refused), with its
  /// normalizer (precompiled character map, extra-space removal, dummy prefix) and byte
  /// fallback. BOS/EOS/UNK ids come from the trainer spec; add_bos is true and add_eos false, as
  /// llama.cpp assumes for these models.
  static Tokenizer from_sentencepiece(const std::filesystem::path& model_file);
  /// Hugging Face `tokenizer.json` with a BPE model: byte-level (GPT-2, Llama 3, Qwen2, ...) or
  /// SentencePiece-style with byte fallback. Pre-tokenizers: Sequence, ByteLevel, Split (regex
  /// or string, every behaviour), Digits, Punctuation, Metaspace, Whitespace, WhitespaceSplit.
  /// Normalizers: none, Prepend("▁") + Replace(" ", "▁"), and NFC, which is taken as the
  /// identity (as llama.cpp does). Special ids and add_bos/add_eos are read from the
  /// tokenizer_config.json / config.json beside it when present, as llama.cpp's converter does.
  static Tokenizer from_hf_json(const std::filesystem::path& tokenizer_json);
  /// The `tokenizer.ggml.*` keys of GGUF metadata (model "llama" or "gpt2"; for "gpt2",
  /// `tokenizer.ggml.pre` picks the pre-tokenizer). `what` names the source in error messages.
  static Tokenizer from_gguf(const gguf::Metadata& meta, const std::string& what = "GGUF metadata");
  /// Opens a GGUF file and reads its vocabulary.
  static Tokenizer from_gguf(const std::filesystem::path& gguf_file);
  /// A Hugging Face model directory, through the same metadata llama.cpp's converter writes
  /// (so the result tokenizes exactly like the converted GGUF will).
  static Tokenizer from_hf_dir(const std::filesystem::path& dir);

  /// Token ids for UTF-8 `text` (malformed bytes are read as U+FFFD). `add_special` adds BOS/EOS
  /// where add_bos()/add_eos() say so; `parse_special` lets control tokens written in the text
  /// (e.g. "<s>") map to their ids. User-defined tokens always match. Matches llama.cpp's
  /// llama_tokenize(text, add_special, parse_special).
  std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                              bool parse_special = false) const;
  /// Text for `ids`. Control and unknown tokens are dropped unless `special`; no clean-up of
  /// spaces around punctuation is applied. Out-of-range ids throw Errc::invalid_argument.
  /// decode(encode(t, false)) == t for text the vocabulary covers.
  std::string decode(std::span<const int32_t> ids, bool special = false) const;

  TokenizerKind kind() const;
  /// GGUF model name ("llama" or "gpt2") and pre-tokenizer name ("default" for SentencePiece).
  const std::string& model_name() const;
  const std::string& pre_name() const;
  size_t vocab_size() const;
  /// Stored text of token `id` (GGUF spelling: "▁" for spaces in SentencePiece vocabularies,
  /// byte-level characters in GPT-2 vocabularies).
  const std::string& token_text(int32_t id) const;
  TokenType token_type(int32_t id) const;
  /// Id of a token's stored text, if present.
  std::optional<int32_t> find_token(std::string_view text) const;
  /// Special token ids, -1 when the vocabulary has none.
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t unk_id() const;
  int32_t pad_id() const;
  bool add_bos() const;
  bool add_eos() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

/// Appends to `out` the `tokenizer.ggml.*` (and `tokenizer.chat_template`) keys llama.cpp's
/// convert_hf_to_gguf.py writes for the Hugging Face model in `hf_dir`, in the same order and
/// with the same value types. Sources, in the converter's order: `tokenizer.model`
/// (SentencePiece: model "llama", pre "default", tokens, scores, token types with
/// added_tokens.json / tokenizer_config.json overrides), else a byte-level BPE
/// `tokenizer.json` (model "gpt2", pre detected from its pre_tokenizer, tokens, token types,
/// merges). Special ids and add_* flags follow gguf-py's SpecialVocab (tokenizer.json
/// post-processor, tokenizer_config.json, config.json). `config.json`'s vocab_size pads the
/// vocabulary with "[PADn]" tokens. Missing or malformed files, and tokenizers the converter
/// would reject (unknown pre-tokenizer, WordPiece/Unigram models) throw Errc::invalid_model.
///
/// The pre name rule: the tokenizer.json pre_tokenizer pipeline (Split regexes and
/// behaviours, ByteLevel, Digits, Punctuation options) must equal one of the pipelines that
/// llama.cpp names gpt-2, llama-bpe, qwen2, deepseek-coder, falcon or starcoder; where
/// llama.cpp's hash would give another name of the same pre-tokenizer group (phi-2 for gpt-2,
/// ...), we give the group's first name, which llama.cpp tokenizes identically.
LQ_API void tokenizer_gguf_metadata(const std::filesystem::path& hf_dir, gguf::Metadata& out);

}  // namespace lq
