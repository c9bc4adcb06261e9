// The tokenizer.ggml.* metadata llama.cpp's convert_hf_to_gguf.py writes for a Hugging Face
// directory (tokenizer_gguf_metadata): SentencePiece vocabularies and byte-level BPE ones, with
// the converter's padding, token types and special-vocab keys. Must not build a Tokenizer
// (loaders.cpp does, from this metadata, for from_hf_dir).
#include <lq/tokenizer.hpp>
#include "core/fail.hpp"

#include "tokenizer/files.hpp"
#include "tokenizer/hf_json.hpp"
#include "tokenizer/impl.hpp"
#include "tokenizer/pretok_names.hpp"
#include "tokenizer/sentencepiece_model.hpp"
#include "tokenizer/special_vocab.hpp"

#include <map>

namespace lq {
namespace {

using namespace detail;
using detail::kMetaSpace;

std::optional<int64_t> config_vocab_size(const fs::path& dir, bool per_layer_first) {
  const fs::path file = dir / "config.json";
  std::optional<json> config = read_json_if_present(file);
  if (!config) return std::nullopt;
  return with_json_errors(file, [&]() -> std::optional<int64_t> {
    for (const char* key : {"vocab_size_per_layer_input", "vocab_size"}) {
      if (!per_layer_first && std::string_view(key) == "vocab_size_per_layer_input") continue;
      json v = member(*config, key);
      if (v.is_null() && config->contains("text_config")) v = member((*config)["text_config"], key);
      if (v.is_number_integer() || v.is_number_unsigned()) {
        const int64_t x = v.get<int64_t>();
        if (x <= 0 || x > kMaxVocab)
          fail(Errc::invalid_model, "{}: {} = {} is out of range (1..{})", file.string(), key, x, kMaxVocab);
        return x;
      }
    }
    return std::nullopt;
  });
}

void sentencepiece_metadata(const fs::path& dir, gguf::Metadata& out) {
  const fs::path model_file = dir / "tokenizer.model";
  const SpModel sp = parse_sentencepiece(model_file);
  const fs::path cfg_file = dir / "tokenizer_config.json";
  const std::optional<json> cfg = read_json_if_present(cfg_file);

  // Only a false add_prefix_space is written: true is what llama.cpp assumes for a SentencePiece
  // vocabulary without the key, and convert_hf_to_gguf.py writes no key for Llama and Phi-3 (whose
  // tokenizer_config.json from transformers 4.4x+ says true), so the metadata stays the converter's.
  if (cfg)
    with_json_errors(cfg_file, [&] {
      const json& aps = member(*cfg, "add_prefix_space");
      if (aps.is_boolean() && !aps.get<bool>()) out.set("tokenizer.ggml.add_space_prefix", gguf::Value::boolean(false));
      return 0;
    });

  const size_t vocab_size =
      static_cast<size_t>(config_vocab_size(dir, true).value_or(static_cast<int64_t>(sp.pieces.size())));
  std::vector<std::string> tokens(vocab_size);
  std::vector<float> scores(vocab_size, -10000.0f);
  std::vector<int32_t> types(vocab_size, static_cast<int32_t>(TokenType::unused));
  for (size_t i = 0; i < vocab_size; ++i) tokens[i] = "[PAD" + std::to_string(i) + "]";
  for (size_t i = 0; i < sp.pieces.size() && i < vocab_size; ++i) {
    const auto& p = sp.pieces[i];
    TokenType t = TokenType::normal;
    if (p.type == 2) t = TokenType::unknown;
    else if (p.type == 3) t = TokenType::control;
    else if (p.type == 5) t = TokenType::unused;
    else if (p.type == 6) t = TokenType::byte;
    tokens[i] = p.text;
    scores[i] = p.score;
    types[i] = static_cast<int32_t>(t);
  }

  const fs::path added_file = dir / "added_tokens.json";
  if (const auto added = read_json_if_present(added_file))
    with_json_errors(added_file, [&] {
      for (const auto& el : added->items()) {
        const std::string& key = el.key();
        const int64_t id = el.value().get<int64_t>();
        if (id < 0 || static_cast<size_t>(id) >= vocab_size) continue;
        tokens[id] = key;
        scores[id] = -1000.0f;
        types[id] = static_cast<int32_t>(TokenType::user_defined);
      }
      return 0;
    });
  if (cfg)
    with_json_errors(cfg_file, [&] {
      const json& dec = member(*cfg, "added_tokens_decoder");
      if (!dec.is_object()) return 0;
      for (const auto& el : dec.items()) {
        const json& data = el.value();
        const int64_t id = parse_id(el.key(), cfg_file);
        std::string content = data.at("content").get<std::string>();
        if (id < 0 || static_cast<size_t>(id) >= vocab_size) continue;
        if (truthy(member(data, "special")) || looks_special(content)) {
          types[id] = static_cast<int32_t>(TokenType::control);
        } else {
          replace_all(content, kMetaSpace, " ");
          types[id] = static_cast<int32_t>(TokenType::user_defined);
        }
        scores[id] = -1000.0f;
        tokens[id] = std::move(content);
      }
      return 0;
    });

  out.set("tokenizer.ggml.model", gguf::Value::string("llama"));
  out.set("tokenizer.ggml.pre", gguf::Value::string("default"));
  out.set("tokenizer.ggml.tokens", gguf::Value::strings(std::move(tokens)));
  out.set("tokenizer.ggml.scores", gguf::Value::array<float>(gguf::ValueType::FLOAT32, scores));
  out.set("tokenizer.ggml.token_type", gguf::Value::array<int32_t>(gguf::ValueType::INT32, types));
  SpecialVocab sv;
  sv.n_vocab = vocab_size;
  sv.load(dir, false);
  sv.write(out);
}

// A SentencePiece-style BPE tokenizer.json (byte fallback, spaces as "▁") without the
// tokenizer.model it was converted from, as GPTQModel's and transformers' save_pretrained leave
// it: a "llama" vocabulary whose scores are the merges' order. Each piece scores minus the rank of
// the first merge that makes it, so SentencePiece's merge loop (the highest-scoring adjacent pair
// first, ties to the left: the engine's and llama.cpp's) merges in the order of the list, which
// transformers' converter took from the model's scores. Pieces no merge makes score below all of
// them. llama.cpp's own converter gives every piece -1000 here (LlamaHfVocab), which leaves its
// merge order to position alone.
void sentencepiece_json_metadata(const fs::path& dir, const HfJson& h, gguf::Metadata& out) {
  bool prefix = h.prepend_metaspace, escape = h.replace_space;
  for (const auto& step : h.pre.steps()) {
    if (step.kind != detail::PreStep::Kind::metaspace || step.replacement != kMetaSpace)
      fail(Errc::invalid_model,
           "{}: a SentencePiece-style tokenizer.json with pre-tokenizer steps other than Metaspace(\"▁\") has "
           "no SentencePiece vocabulary form; put its tokenizer.model beside it",
           h.file);
    escape = true;
    prefix = prefix || step.prepend != detail::PreStep::Prepend::never;
  }
  if (!escape)
    fail(Errc::invalid_model,
         "{}: a byte-fallback tokenizer.json that does not write spaces as \"▁\" has no SentencePiece vocabulary "
         "form; put its tokenizer.model beside it",
         h.file);
  const auto rev = reverse_vocab(h);
  const int64_t max_id = rev.empty() ? -1 : rev.rbegin()->first;
  const int64_t vocab_size = config_vocab_size(dir, true).value_or(max_id + 1);
  if (max_id >= vocab_size)
    fail(Errc::invalid_model, "{}: token id {} is not below the vocabulary size {}", h.file, max_id, vocab_size);
  std::map<std::string, int64_t> first_merge;  // piece -> rank of the first merge making it
  for (size_t r = 0; r < h.merges.size(); ++r) {
    const std::string& m = h.merges[r];
    const size_t sp = m.find(' ');
    if (sp == std::string::npos) fail(Errc::invalid_model, "{}: merge {} ('{}') is not two pieces", h.file, r, m);
    first_merge.emplace(m.substr(0, sp) + m.substr(sp + 1), static_cast<int64_t>(r));
  }
  const float unmerged = -static_cast<float>(h.merges.size()) - 1.0f;
  std::map<int64_t, const AddedToken*> added;
  for (const auto& a : h.added) added[a.id] = &a;

  std::vector<std::string> tokens(static_cast<size_t>(vocab_size));
  std::vector<float> scores(static_cast<size_t>(vocab_size), -10000.0f);
  std::vector<int32_t> types(static_cast<size_t>(vocab_size), static_cast<int32_t>(TokenType::unused));
  for (int64_t i = 0; i < vocab_size; ++i) tokens[static_cast<size_t>(i)] = "[PAD" + std::to_string(i) + "]";
  for (const auto& [id, text] : rev) {
    const size_t i = static_cast<size_t>(id);
    tokens[i] = text;
    TokenType t = TokenType::normal;
    if (auto a = added.find(id); a != added.end()) {
      if (a->second->special || looks_special(text)) {
        t = TokenType::control;
      } else {
        replace_all(tokens[i], kMetaSpace, " ");
        t = TokenType::user_defined;
      }
      scores[i] = -1000.0f;
    } else {
      if (h.unk_token && text == *h.unk_token) t = TokenType::unknown;
      else if (text.size() == 6 && text.rfind("<0x", 0) == 0 && text[5] == '>') t = TokenType::byte;
      const auto m = first_merge.find(text);
      scores[i] = m != first_merge.end() ? -static_cast<float>(m->second) : unmerged;
    }
    types[i] = static_cast<int32_t>(t);
  }

  out.set("tokenizer.ggml.model", gguf::Value::string("llama"));
  out.set("tokenizer.ggml.pre", gguf::Value::string("default"));
  out.set("tokenizer.ggml.add_space_prefix", gguf::Value::boolean(prefix));
  out.set("tokenizer.ggml.tokens", gguf::Value::strings(std::move(tokens)));
  out.set("tokenizer.ggml.scores", gguf::Value::array<float>(gguf::ValueType::FLOAT32, scores));
  out.set("tokenizer.ggml.token_type", gguf::Value::array<int32_t>(gguf::ValueType::INT32, types));
  SpecialVocab sv;
  sv.n_vocab = static_cast<size_t>(vocab_size);
  sv.load(dir, false);
  sv.write(out);
}

void bpe_metadata(const fs::path& dir, gguf::Metadata& out) {
  const fs::path tok_file = dir / "tokenizer.json";
  const HfJson h = parse_hf_json(tok_file);
  if (h.byte_fallback && !h.pre.byte_level()) return sentencepiece_json_metadata(dir, h, out);
  if (h.byte_fallback || !h.pre.byte_level())
    fail(Errc::invalid_model,
         "{}: a BPE tokenizer.json needs a byte-level pre-tokenizer, or byte fallback with spaces as \"▁\" "
         "(SentencePiece style), for GGUF conversion",
         h.file);
  const auto pre = detail::detect_pretokenizer(h.pre);
  if (!pre)
    fail(Errc::invalid_model,
         "{}: BPE pre-tokenizer not recognized (supported: gpt-2, llama-bpe, qwen2, deepseek-coder, "
         "falcon, starcoder)",
         h.file);

  const auto rev = reverse_vocab(h);
  std::map<std::string, const AddedToken*> added_by_content;
  for (const auto& a : h.added) added_by_content.emplace(a.content, &a);
  std::map<int64_t, const AddedToken*> added_by_id;
  for (const auto& a : h.added) added_by_id[a.id] = &a;
  // transformers' added_tokens_decoder: tokenizer_config.json's entries override tokenizer.json's.
  std::map<int64_t, bool> special_override;
  const fs::path cfg_file = dir / "tokenizer_config.json";
  if (const auto cfg = read_json_if_present(cfg_file))
    with_json_errors(cfg_file, [&] {
      const json& dec = member(*cfg, "added_tokens_decoder");
      if (dec.is_object())
        for (const auto& el : dec.items())
          if (member(el.value(), "special").is_boolean())
            special_override[parse_id(el.key(), cfg_file)] = el.value()["special"].get<bool>();
      return 0;
    });

  const int64_t max_id = rev.empty() ? -1 : rev.rbegin()->first;
  const int64_t n_entries = static_cast<int64_t>(rev.size());
  const int64_t vocab_size = config_vocab_size(dir, false).value_or(n_entries);
  if (max_id >= vocab_size)
    fail(Errc::invalid_model, "{}: token id {} is not below the vocabulary size {}", h.file, max_id, vocab_size);

  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  tokens.reserve(static_cast<size_t>(vocab_size));
  types.reserve(static_cast<size_t>(vocab_size));
  for (int64_t i = 0; i < vocab_size; ++i) {
    auto it = rev.find(i);
    if (it == rev.end()) {
      tokens.push_back("[PAD" + std::to_string(i) + "]");
      types.push_back(static_cast<int32_t>(TokenType::unused));
      continue;
    }
    std::string token = it->second;
    TokenType t = TokenType::normal;
    if (added_by_content.count(token)) {
      bool special = false;
      if (auto a = added_by_id.find(i); a != added_by_id.end()) special = a->second->special;
      if (auto o = special_override.find(i); o != special_override.end()) special = o->second;
      if (special || looks_special(token)) {
        t = TokenType::control;
      } else {
        replace_all(token, kMetaSpace, " ");
        t = TokenType::user_defined;
      }
    }
    tokens.push_back(std::move(token));
    types.push_back(static_cast<int32_t>(t));
  }

  out.set("tokenizer.ggml.model", gguf::Value::string("gpt2"));
  out.set("tokenizer.ggml.pre", gguf::Value::string(*pre));
  out.set("tokenizer.ggml.tokens", gguf::Value::strings(std::move(tokens)));
  out.set("tokenizer.ggml.token_type", gguf::Value::array<int32_t>(gguf::ValueType::INT32, types));
  SpecialVocab sv;
  sv.load(dir, true);
  sv.write(out);
}

}  // namespace

void tokenizer_gguf_metadata(const fs::path& hf_dir, gguf::Metadata& out) {
  std::error_code ec;
  if (!fs::is_directory(hf_dir, ec))
    fail(Errc::invalid_model, "{}: not a model directory", hf_dir.string());
  gguf::Metadata meta;
  if (fs::is_regular_file(hf_dir / "tokenizer.model", ec)) {
    sentencepiece_metadata(hf_dir, meta);
  } else if (fs::is_regular_file(hf_dir / "tokenizer.json", ec)) {
    bpe_metadata(hf_dir, meta);
  } else {
    fail(Errc::invalid_model, "{}: no tokenizer.model or tokenizer.json", hf_dir.string());
  }
  for (const auto& [key, value] : meta.entries()) out.set(key, value);
}

}  // namespace lq
