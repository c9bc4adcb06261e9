// Building a Tokenizer from each source: a SentencePiece model, a Hugging Face tokenizer.json, the
// tokenizer.ggml.* keys of GGUF metadata, or a Hugging Face directory through the converter's
// metadata. Fills Tokenizer::Impl and lets it build its tables; must not encode text (encoder in
// tokenizer.cpp) or parse files itself (files, sentencepiece_model, hf_json, special_vocab).
#include "tokenizer/hf_json.hpp"
#include "tokenizer/impl.hpp"
#include "tokenizer/pretok_names.hpp"
#include "tokenizer/sentencepiece_model.hpp"
#include "tokenizer/special_vocab.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"

namespace lq {
namespace {

using namespace detail;
using detail::kMetaSpace;

std::shared_ptr<Tokenizer::Impl> impl_from_sentencepiece(const fs::path& path) {
  const SpModel sp = parse_sentencepiece(path);
  const std::string file = path.string();
  if (sp.model_type != 2)
    fail(Errc::invalid_model, "{}: SentencePiece model type {} is not supported (BPE models only)", file,
         sp.model_type == 1 ? "unigram" : std::to_string(sp.model_type));
  if (sp.treat_whitespace_as_suffix)
    fail(Errc::invalid_model, "{}: treat_whitespace_as_suffix is not supported", file);
  auto d = std::make_shared<Tokenizer::Impl>();
  d->source = file;
  d->kind = TokenizerKind::sentencepiece;
  d->model_name = "llama";
  d->pre_name = "default";
  for (const auto& p : sp.pieces) {
    d->tokens.push_back(p.text);
    d->scores.push_back(p.score);
    d->types.push_back(static_cast<TokenType>(p.type));
  }
  d->prefix = sp.add_dummy_prefix ? Tokenizer::Impl::Prefix::first_fragment : Tokenizer::Impl::Prefix::none;
  d->escape_spaces = sp.escape_whitespaces;
  d->remove_extra_spaces = sp.remove_extra_whitespaces;
  d->sentencepiece_normalizer = true;
  if (sp.escape_whitespaces) d->decode_space = kMetaSpace;
  d->decode_strip = sp.add_dummy_prefix;
  d->charsmap = sp.charsmap;
  d->byte_fallback = sp.byte_fallback;
  d->fuse_unk = true;
  d->bos = static_cast<int32_t>(sp.bos_id);
  d->eos = static_cast<int32_t>(sp.eos_id);
  d->unk = static_cast<int32_t>(sp.unk_id);
  d->pad = static_cast<int32_t>(sp.pad_id);
  d->add_bos = true;
  d->add_eos = false;
  d->build();
  return d;
}

std::shared_ptr<Tokenizer::Impl> impl_from_hf_json(const fs::path& path) {
  const HfJson h = parse_hf_json(path);
  auto d = std::make_shared<Tokenizer::Impl>();
  d->source = h.file;
  d->kind = TokenizerKind::bpe;
  const auto rev = reverse_vocab(h);
  const int64_t n = rev.empty() ? 0 : rev.rbegin()->first + 1;
  d->tokens.resize(static_cast<size_t>(n));
  d->types.assign(static_cast<size_t>(n), TokenType::unused);
  for (int64_t i = 0; i < n; ++i) d->tokens[i] = "[PAD" + std::to_string(i) + "]";
  for (const auto& [id, tok] : rev) {
    d->tokens[id] = tok;
    d->types[id] = TokenType::normal;
  }
  d->strip.assign(static_cast<size_t>(n), 0);
  for (const auto& a : h.added) {
    d->types[a.id] = a.special || looks_special(a.content) ? TokenType::control : TokenType::user_defined;
    d->strip[a.id] = static_cast<uint8_t>((a.lstrip ? 1 : 0) | (a.rstrip ? 2 : 0));
  }
  if (h.byte_fallback)
    for (int64_t i = 0; i < n; ++i)
      if (d->types[i] == TokenType::normal && d->tokens[i].size() == 6 && d->tokens[i].rfind("<0x", 0) == 0 &&
          d->tokens[i][5] == '>')
        d->types[i] = TokenType::byte;
  d->merges = h.merges;
  d->pre = h.pre;
  d->byte_fallback = h.byte_fallback;
  d->fuse_unk = h.fuse_unk;
  d->ignore_merges = h.ignore_merges;
  d->escape_spaces = h.replace_space;
  d->prefix = h.prepend_metaspace ? Tokenizer::Impl::Prefix::every_fragment : Tokenizer::Impl::Prefix::none;
  d->byte_level_decode = h.pre.byte_level() || h.decoder_byte_level;
  if (h.replace_space) {
    d->decode_space = kMetaSpace;
    d->decode_strip = h.prepend_metaspace;
  }
  for (const auto& step : h.pre.steps())
    if (step.kind == detail::PreStep::Kind::metaspace) {
      d->decode_space = step.replacement;
      d->decode_strip = step.prepend != detail::PreStep::Prepend::never;
    }
  d->model_name = d->byte_level_decode ? "gpt2" : "llama";
  d->pre_name = detail::detect_pretokenizer(h.pre).value_or(h.pre.empty() ? "default" : "");
  if (h.unk_token) {
    for (const auto& [tok, id] : h.vocab)
      if (tok == *h.unk_token) d->unk = static_cast<int32_t>(id);
  }
  // Special ids and flags as the converter reads them from the files beside tokenizer.json.
  SpecialVocab sv;
  sv.load(path.parent_path().empty() ? fs::path(".") : path.parent_path(), false);
  if (auto v = sv.id_of("bos")) d->bos = static_cast<int32_t>(*v);
  if (auto v = sv.id_of("eos")) d->eos = static_cast<int32_t>(*v);
  if (auto v = sv.id_of("unk")) d->unk = static_cast<int32_t>(*v);
  if (auto v = sv.id_of("pad")) d->pad = static_cast<int32_t>(*v);
  d->add_bos = sv.add_of("bos").value_or(false);
  d->add_eos = sv.add_of("eos").value_or(false);
  d->build();
  return d;
}

std::shared_ptr<Tokenizer::Impl> impl_from_gguf(const gguf::Metadata& meta, const std::string& what) {
  auto d = std::make_shared<Tokenizer::Impl>();
  d->source = what;
  const auto model = meta.get_string("tokenizer.ggml.model");
  if (!model) fail(Errc::invalid_model, "{}: no tokenizer.ggml.model key (no vocabulary)", what);
  const gguf::Value* toks = meta.find("tokenizer.ggml.tokens");
  if (!toks || !toks->is_array() || toks->elem_type() != gguf::ValueType::STRING)
    fail(Errc::invalid_model, "{}: tokenizer.ggml.tokens is missing or not a string array", what);
  d->tokens = toks->as_strings();
  const size_t n = d->tokens.size();
  for (size_t i = 0; i < n; ++i)
    if (d->tokens[i].empty()) d->tokens[i] = "[EMPTY_" + std::to_string(i) + "]";
  if (const gguf::Value* s = meta.find("tokenizer.ggml.scores")) {
    if (!s->is_array() || s->elem_type() == gguf::ValueType::STRING || s->size() < n)
      fail(Errc::invalid_model, "{}: tokenizer.ggml.scores must hold {} numbers", what, n);
    d->scores.resize(n);
    for (size_t i = 0; i < n; ++i) d->scores[i] = static_cast<float>(s->float_at(i));
  }
  if (const gguf::Value* t = meta.find("tokenizer.ggml.token_type")) {
    if (!t->is_array() || t->elem_type() == gguf::ValueType::STRING || t->size() < n)
      fail(Errc::invalid_model, "{}: tokenizer.ggml.token_type must hold {} integers", what, n);
    d->types.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t v = t->int_at(i);
      d->types[i] = v >= 0 && v <= 6 ? static_cast<TokenType>(v) : TokenType::undefined;
    }
  }
  auto get_bool = [&](const char* key, bool def) {
    const gguf::Value* v = meta.find(key);
    if (!v) return def;
    try {
      return v->as_bool();
    } catch (const Error&) {
      fail(Errc::invalid_model, "{}: {} is not a boolean", what, key);
    }
  };
  if (*model == "llama") {
    d->kind = TokenizerKind::sentencepiece;
    d->model_name = "llama";
    d->pre_name = "default";
    d->prefix = get_bool("tokenizer.ggml.add_space_prefix", true) ? Tokenizer::Impl::Prefix::every_fragment
                                                                  : Tokenizer::Impl::Prefix::none;
    d->escape_spaces = true;
    d->decode_space = kMetaSpace;
    d->decode_strip = d->prefix != Tokenizer::Impl::Prefix::none;
    d->byte_fallback = true;
    d->bos = 1;
    d->eos = 2;
    d->unk = 0;
    d->add_bos = true;
  } else if (*model == "gpt2") {
    d->kind = TokenizerKind::bpe;
    d->model_name = "gpt2";
    const gguf::Value* m = meta.find("tokenizer.ggml.merges");
    if (!m || !m->is_array() || m->elem_type() != gguf::ValueType::STRING)
      fail(Errc::invalid_model, "{}: tokenizer.ggml.merges is missing or not a string array", what);
    d->merges = m->as_strings();
    d->pre_name = meta.get_string("tokenizer.ggml.pre").value_or("default");
    const detail::NamedPreTokenizer* pre = detail::find_pretokenizer(d->pre_name);
    if (!pre) fail(Errc::invalid_model, "{}: unsupported pre-tokenizer '{}'", what, d->pre_name);
    d->pre = pre->pipeline;
    d->ignore_merges = pre->ignore_merges;
    d->byte_level_decode = true;
    d->bos = 11;
    d->eos = 11;
    d->add_bos = pre->ignore_merges;  // llama.cpp turns BOS on for the Llama 3 family
  } else {
    fail(Errc::invalid_model, "{}: unsupported tokenizer model '{}' (supported: llama, gpt2)", what, *model);
  }
  auto get_id = [&](const char* key, int32_t& id) {
    const gguf::Value* v = meta.find(key);
    if (!v) return;
    int64_t x = 0;
    try {
      x = v->as_int();
    } catch (const Error&) {
      fail(Errc::invalid_model, "{}: {} is not an integer", what, key);
    }
    if (x >= 0 && static_cast<size_t>(x) < n) id = static_cast<int32_t>(x);
  };
  get_id("tokenizer.ggml.bos_token_id", d->bos);
  get_id("tokenizer.ggml.eos_token_id", d->eos);
  get_id("tokenizer.ggml.unknown_token_id", d->unk);
  get_id("tokenizer.ggml.padding_token_id", d->pad);
  d->add_bos = get_bool("tokenizer.ggml.add_bos_token", d->add_bos);
  d->add_eos = get_bool("tokenizer.ggml.add_eos_token", d->add_eos);
  d->build();
  return d;
}

}  // namespace

Tokenizer Tokenizer::from_sentencepiece(const fs::path& model_file) {
  return Tokenizer(impl_from_sentencepiece(model_file));
}

Tokenizer Tokenizer::from_hf_json(const fs::path& tokenizer_json) {
  return Tokenizer(impl_from_hf_json(tokenizer_json));
}

Tokenizer Tokenizer::from_gguf(const gguf::Metadata& meta, const std::string& what) {
  return Tokenizer(impl_from_gguf(meta, what));
}

Tokenizer Tokenizer::from_gguf(const fs::path& gguf_file) {
  gguf::Reader reader(gguf_file);
  return Tokenizer(impl_from_gguf(reader.metadata(), gguf_file.string()));
}

Tokenizer Tokenizer::from_hf_dir(const fs::path& dir) {
  gguf::Metadata meta;
  tokenizer_gguf_metadata(dir, meta);
  return Tokenizer(impl_from_gguf(meta, dir.string()));
}

}  // namespace lq
