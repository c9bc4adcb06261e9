// Internal: gguf-py's SpecialVocab, transcribed: the special token ids, add_*_token flags, merges
// and chat templates llama.cpp's converter reads from the files beside a Hugging Face tokenizer
// (tokenizer.json's post-processor, tokenizer_config.json, config.json, merges.txt), and the
// order it writes them in; plus the converter's does_token_look_special rule. Must not read the
// vocabulary itself.
#pragma once

#include "tokenizer/files.hpp"

#include <lq/gguf.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lq::detail {

struct SpecialVocab {
  std::vector<std::string> merges;
  std::vector<std::pair<std::string, int64_t>> ids;   // insertion order
  std::vector<std::pair<std::string, bool>> add;      // insertion order
  json chat_template;                                 // null, string or list
  std::optional<bool> lowercase, strip_accents;
  std::vector<std::string> types = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
  std::optional<size_t> n_vocab;

  /// Reads the files in `dir` as SpecialVocab(dir, load_merges) does.
  void load(const fs::path& dir, bool load_merges);
  /// Writes the keys in add_to_gguf's order.
  void write(gguf::Metadata& out) const;
  /// The id / add flag recorded for a token type ("bos", "eos", ...), if any.
  std::optional<int64_t> id_of(const std::string& typ) const;
  std::optional<bool> add_of(const std::string& typ) const;

  // The steps of load(), named after gguf-py's methods.
  void set_add(const std::string& typ, bool v);
  void set_id(const std::string& typ, const json& tid, const fs::path& file);
  void parse_normalizer(const json& n);
  void template_processing(const json& tokenizer, std::optional<json>& config);
  void load_config_json(const fs::path& dir);
  void load_merges_txt(const fs::path& dir);
};

/// convert_hf_to_gguf.py's does_token_look_special.
bool looks_special(std::string_view t);

}  // namespace lq::detail
