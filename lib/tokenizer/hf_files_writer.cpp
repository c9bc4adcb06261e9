// Hugging Face tokenizer files from GGUF tokenizer.ggml.* metadata (see hf_files_writer.hpp): a
// SentencePiece ModelProto serialized by hand in the protobuf wire format, tokenizer.json for
// byte-level BPE with the named pre-tokenizer pipeline spelled as tokenizer.json steps, and the
// tokenizer_config.json / special_tokens_map.json both need. The choices are made so that
// tokenizer_gguf_metadata() reads the same vocabulary, scores, types, special ids and flags back.
#include "tokenizer/hf_files_writer.hpp"

#include <lq/tokenizer.hpp>

#include "core/fail.hpp"
#include "tokenizer/pretok_names.hpp"

#include <cstring>
#include <map>
#include <optional>

namespace lq::detail {
namespace {

using ojson = nlohmann::ordered_json;

// ---- protobuf wire format (only what ModelProto needs) ----
struct HfwProto {
  std::string out;
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out.push_back(static_cast<char>((v & 0x7F) | 0x80));
      v >>= 7;
    }
    out.push_back(static_cast<char>(v));
  }
  void tag(uint32_t field, int wire) { varint((uint64_t{field} << 3) | static_cast<uint64_t>(wire)); }
  void bytes(uint32_t field, std::string_view s) {
    tag(field, 2);
    varint(s.size());
    out.append(s.data(), s.size());
  }
  // int32 fields: negative values are sign-extended to ten bytes, as protobuf does.
  void int32(uint32_t field, int64_t v) {
    tag(field, 0);
    varint(static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(v))));
  }
  void boolean(uint32_t field, bool v) {
    tag(field, 0);
    varint(v ? 1 : 0);
  }
  void f32(uint32_t field, float f) {
    tag(field, 5);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
  }
};

struct HfwVocab {
  std::string model;
  std::vector<std::string> tokens;
  std::vector<float> scores;  // empty when the metadata has none
  std::vector<int32_t> types;
  std::optional<int64_t> bos, eos, unk, pad;
  std::optional<bool> add_bos, add_eos, add_sep, add_space_prefix;
  std::optional<std::string> chat_template;
  std::string pre;
  std::vector<std::string> merges;
};

HfwVocab hfw_read(const gguf::Metadata& meta) {
  HfwVocab v;
  auto bad = [](const std::string& what) -> void {
    fail(Errc::invalid_model, "GGUF tokenizer metadata: {}", what);
  };
  v.model = meta.get_string("tokenizer.ggml.model").value_or("");
  const gguf::Value* toks = meta.find("tokenizer.ggml.tokens");
  if (!toks || !toks->is_array() || toks->elem_type() != gguf::ValueType::STRING) {
    bad("tokenizer.ggml.tokens is missing or not a string array");
  }
  v.tokens = toks->as_strings();
  const size_t n = v.tokens.size();
  if (const gguf::Value* s = meta.find("tokenizer.ggml.scores")) {
    if (!s->is_array() || s->size() != n) bad("tokenizer.ggml.scores does not match the vocabulary");
    v.scores.resize(n);
    for (size_t i = 0; i < n; ++i) v.scores[i] = static_cast<float>(s->float_at(i));
  }
  v.types.assign(n, static_cast<int32_t>(TokenType::normal));
  if (const gguf::Value* t = meta.find("tokenizer.ggml.token_type")) {
    if (!t->is_array() || t->size() != n) bad("tokenizer.ggml.token_type does not match the vocabulary");
    for (size_t i = 0; i < n; ++i) v.types[i] = static_cast<int32_t>(t->int_at(i));
  }
  auto id = [&](const char* key, std::optional<int64_t>& dst) {
    if (const gguf::Value* x = meta.find(key)) {
      const int64_t i = x->as_int();
      if (i >= 0 && static_cast<size_t>(i) < n) dst = i;
    }
  };
  id("tokenizer.ggml.bos_token_id", v.bos);
  id("tokenizer.ggml.eos_token_id", v.eos);
  id("tokenizer.ggml.unknown_token_id", v.unk);
  id("tokenizer.ggml.padding_token_id", v.pad);
  auto flag = [&](const char* key, std::optional<bool>& dst) {
    if (const gguf::Value* x = meta.find(key)) dst = x->as_bool();
  };
  flag("tokenizer.ggml.add_bos_token", v.add_bos);
  flag("tokenizer.ggml.add_eos_token", v.add_eos);
  flag("tokenizer.ggml.add_sep_token", v.add_sep);
  flag("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
  v.chat_template = meta.get_string("tokenizer.chat_template");
  v.pre = meta.get_string("tokenizer.ggml.pre").value_or("");
  if (const gguf::Value* m = meta.find("tokenizer.ggml.merges")) {
    if (!m->is_array() || m->elem_type() != gguf::ValueType::STRING) bad("tokenizer.ggml.merges is not a string array");
    v.merges = m->as_strings();
  }
  return v;
}

bool hfw_is(const HfwVocab& v, size_t i, TokenType t) { return v.types[i] == static_cast<int32_t>(t); }

// The converter gives the tokens it read from added_tokens_decoder / added_tokens the score -1000
// (SentencePiece) and the type control or user-defined; those go back into the decoder list.
bool hfw_added(const HfwVocab& v, size_t i, bool sentencepiece) {
  if (!hfw_is(v, i, TokenType::control) && !hfw_is(v, i, TokenType::user_defined)) return false;
  return !sentencepiece || v.scores.empty() || v.scores[i] == -1000.0f;
}

ojson hfw_added_entry(const HfwVocab& v, size_t i) {
  return ojson{{"content", v.tokens[i]},       {"lstrip", false},  {"normalized", !hfw_is(v, i, TokenType::control)},
               {"rstrip", false},               {"single_word", false},
               {"special", hfw_is(v, i, TokenType::control)}};
}

// tokenizer_config.json and special_tokens_map.json, shared by both kinds; config_ids for config.json.
void hfw_config_files(const HfwVocab& v, bool sentencepiece, int64_t model_max_length, HfTokenizerFiles& out) {
  ojson cfg;
  if (v.add_bos) cfg["add_bos_token"] = *v.add_bos;
  if (v.add_eos) cfg["add_eos_token"] = *v.add_eos;
  if (v.add_sep) cfg["add_sep_token"] = *v.add_sep;
  if (sentencepiece && v.add_space_prefix) cfg["add_prefix_space"] = *v.add_space_prefix;
  ojson dec = ojson::object();
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (hfw_added(v, i, sentencepiece)) dec[std::to_string(i)] = hfw_added_entry(v, i);
  cfg["added_tokens_decoder"] = dec;
  ojson map = ojson::object();
  auto special = [&](const char* name, const std::optional<int64_t>& id) {
    const std::string key = std::string(name) + "_token";
    if (id) {
      cfg[key] = v.tokens[static_cast<size_t>(*id)];
      map[key] = ojson{{"content", v.tokens[static_cast<size_t>(*id)]}, {"lstrip", false}, {"normalized", false},
                       {"rstrip", false},  {"single_word", false}};
      out.config_ids[key + "_id"] = *id;
    } else {
      cfg[key] = nullptr;
    }
  };
  special("bos", v.bos);
  special("eos", v.eos);
  special("unk", v.unk);
  special("pad", v.pad);
  if (v.chat_template) cfg["chat_template"] = *v.chat_template;
  cfg["clean_up_tokenization_spaces"] = false;
  if (sentencepiece) cfg["legacy"] = true;
  cfg["model_max_length"] = model_max_length > 0 ? model_max_length : int64_t{1} << 30;
  if (sentencepiece) cfg["sp_model_kwargs"] = ojson::object();
  cfg["tokenizer_class"] = sentencepiece ? "LlamaTokenizer" : "PreTrainedTokenizerFast";
  out.files.emplace_back("tokenizer_config.json", cfg.dump(2) + "\n");
  out.files.emplace_back("special_tokens_map.json", map.dump(2) + "\n");
}

// SentencePiece ModelProto (sentencepiece_model.proto): ModelProto.pieces = 1, trainer_spec = 2,
// normalizer_spec = 3; SentencePiece.piece = 1, score = 2, type = 3; TrainerSpec.model_type = 3,
// vocab_size = 4, byte_fallback = 35, unk_id = 40, bos_id = 41, eos_id = 42, pad_id = 43;
// NormalizerSpec.name = 1, add_dummy_prefix = 3, remove_extra_whitespaces = 4, escape_whitespaces = 5.
std::string hfw_sentencepiece_model(const HfwVocab& v) {
  std::optional<int64_t> unk = v.unk;
  if (!unk)
    for (size_t i = 0; i < v.tokens.size() && !unk; ++i)
      if (hfw_is(v, i, TokenType::unknown)) unk = static_cast<int64_t>(i);
  bool byte_fallback = false;
  HfwProto top;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    int type = v.types[i];
    if (type < 1 || type > 6) type = 1;
    // SentencePiece needs exactly one UNKNOWN piece: the unknown id's.
    if (unk && static_cast<int64_t>(i) == *unk) type = 2;
    else if (type == 2) type = 3;
    if (type == 6) byte_fallback = true;
    if (v.tokens[i].empty()) fail(Errc::invalid_model, "GGUF tokenizer metadata: token {} is empty", i);
    HfwProto p;
    p.bytes(1, v.tokens[i]);
    p.f32(2, v.scores.empty() ? 0.0f : v.scores[i]);
    p.int32(3, type);
    top.bytes(1, p.out);
  }
  HfwProto ts;
  ts.int32(3, 2);  // BPE
  ts.int32(4, static_cast<int64_t>(v.tokens.size()));
  ts.boolean(35, byte_fallback);
  ts.int32(40, unk.value_or(-1));
  ts.int32(41, v.bos.value_or(-1));
  ts.int32(42, v.eos.value_or(-1));
  ts.int32(43, v.pad.value_or(-1));
  top.bytes(2, ts.out);
  HfwProto ns;
  ns.bytes(1, "identity");
  ns.boolean(3, v.add_space_prefix.value_or(true));
  ns.boolean(4, false);
  ns.boolean(5, true);
  top.bytes(3, ns.out);
  return top.out;
}

const char* hfw_behavior(SplitBehavior b) {
  switch (b) {
    case SplitBehavior::removed: return "Removed";
    case SplitBehavior::isolated: return "Isolated";
    case SplitBehavior::merged_with_previous: return "MergedWithPrevious";
    case SplitBehavior::merged_with_next: return "MergedWithNext";
    case SplitBehavior::contiguous: return "Contiguous";
  }
  return "Isolated";
}

// A pipeline as tokenizer.json's pre_tokenizer (the inverse of pretokenizer_from_json).
ojson hfw_pretokenizer_json(const PreTokenizer& p) {
  ojson steps = ojson::array();
  for (const PreStep& s : p.steps()) {
    switch (s.kind) {
      case PreStep::Kind::split:
        steps.push_back(ojson{{"type", "Split"},
                              {"pattern", ojson{{s.pattern_is_regex ? "Regex" : "String", s.pattern}}},
                              {"behavior", hfw_behavior(s.behavior)},
                              {"invert", s.invert}});
        break;
      case PreStep::Kind::byte_level:
        steps.push_back(ojson{{"type", "ByteLevel"},
                              {"add_prefix_space", s.add_prefix_space},
                              {"trim_offsets", true},
                              {"use_regex", s.use_regex}});
        break;
      case PreStep::Kind::digits:
        steps.push_back(ojson{{"type", "Digits"}, {"individual_digits", s.individual_digits}});
        break;
      case PreStep::Kind::punctuation:
        steps.push_back(ojson{{"type", "Punctuation"}, {"behavior", hfw_behavior(s.behavior)}});
        break;
      case PreStep::Kind::metaspace:
        steps.push_back(ojson{{"type", "Metaspace"},
                              {"replacement", s.replacement},
                              {"prepend_scheme", s.prepend == PreStep::Prepend::always  ? "always"
                                                 : s.prepend == PreStep::Prepend::first ? "first"
                                                                                        : "never"},
                              {"split", s.metaspace_split}});
        break;
    }
  }
  if (steps.size() == 1) return steps[0];
  return ojson{{"type", "Sequence"}, {"pretokenizers", steps}};
}

std::string hfw_tokenizer_json(const HfwVocab& v, const NamedPreTokenizer& pre) {
  ojson added = ojson::array();
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (hfw_added(v, i, false)) {
      ojson e{{"id", static_cast<int64_t>(i)}};
      const ojson entry = hfw_added_entry(v, i);
      for (const auto& [k, x] : entry.items()) e[k] = x;
      added.push_back(e);
    }
  ojson post;
  if (v.add_bos.value_or(false) && v.bos) {
    const std::string& b = v.tokens[static_cast<size_t>(*v.bos)];
    auto sp = [](const std::string& id, int type_id) { return ojson{{"SpecialToken", {{"id", id}, {"type_id", type_id}}}}; };
    auto seq = [](const char* id, int type_id) { return ojson{{"Sequence", {{"id", id}, {"type_id", type_id}}}}; };
    post = ojson{{"type", "TemplateProcessing"},
                 {"single", ojson::array({sp(b, 0), seq("A", 0)})},
                 // With a token between the halves the reader records add_sep_token: only when the GGUF has it.
                 {"pair", v.add_sep ? ojson::array({sp(b, 0), seq("A", 0), sp(b, 1), seq("B", 1)})
                                    : ojson::array({sp(b, 0), seq("A", 0), seq("B", 1)})},
                 {"special_tokens", ojson{{b, ojson{{"id", b}, {"ids", ojson::array({*v.bos})}, {"tokens", ojson::array({b})}}}}}};
  } else {
    post = ojson{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  }
  // The vocabulary without the converter's [PADn] fillers (unused ids read back as fillers).
  ojson vocab = ojson::object();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (hfw_is(v, i, TokenType::unused) && v.tokens[i] == "[PAD" + std::to_string(i) + "]") continue;
    if (vocab.contains(v.tokens[i]))
      fail(Errc::invalid_model, "GGUF tokenizer metadata: token '{}' appears twice", v.tokens[i]);
    vocab[v.tokens[i]] = static_cast<int64_t>(i);
  }
  ojson j{{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", hfw_pretokenizer_json(pre.pipeline)},
          {"post_processor", post},
          {"decoder", ojson{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
          {"model", ojson{{"type", "BPE"},
                          {"dropout", nullptr},
                          {"unk_token", nullptr},
                          {"continuing_subword_prefix", nullptr},
                          {"end_of_word_suffix", nullptr},
                          {"fuse_unk", false},
                          {"byte_fallback", false},
                          {"ignore_merges", pre.ignore_merges},
                          {"vocab", vocab},
                          {"merges", v.merges}}}};
  return j.dump(2) + "\n";
}

}  // namespace

HfTokenizerFiles hf_tokenizer_files(const gguf::Metadata& meta, int64_t model_max_length) {
  HfTokenizerFiles out;
  out.config_ids = nlohmann::ordered_json::object();
  const std::string model = meta.get_string("tokenizer.ggml.model").value_or("");
  if (model != "llama" && model != "gpt2") {
    out.unsupported = model.empty() ? "the GGUF has no tokenizer.ggml.model"
                                    : fmt::format("tokenizer model '{}' has no writer (llama and gpt2 have)", model);
    return out;
  }
  const HfwVocab v = hfw_read(meta);
  if (model == "llama") {
    out.files.emplace_back("tokenizer.model", hfw_sentencepiece_model(v));
    hfw_config_files(v, true, model_max_length, out);
    return out;
  }
  const NamedPreTokenizer* pre = find_pretokenizer(v.pre.empty() ? "default" : v.pre);
  if (!pre || !pre->detectable) {
    out.unsupported = fmt::format("pre-tokenizer '{}' has no tokenizer.json form", v.pre);
    return out;
  }
  if (v.merges.empty()) {
    out.unsupported = "the byte-level BPE vocabulary has no tokenizer.ggml.merges";
    return out;
  }
  out.files.emplace_back("tokenizer.json", hfw_tokenizer_json(v, *pre));
  hfw_config_files(v, false, model_max_length, out);
  return out;
}

}  // namespace lq::detail
