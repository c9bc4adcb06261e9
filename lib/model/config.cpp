// Model hyper-parameters (see config.hpp): Hugging Face config.json -> ModelConfig and the GGUF
// keys the converter derives from it (name, size label, {arch}.*), and GGUF metadata ->
// ModelConfig. No tensor or tokenizer access.
#include "model/config.hpp"
#include "model/architecture.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"
#include "core/json_number.hpp"
#include <lq/io.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <regex>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq {
namespace {

// The name a model directory goes by: a Hugging Face cache snapshot
// (.../models--ORG--NAME/snapshots/REVISION) by its Hub ID's NAME, not the revision hash; any
// other directory by its own name.
std::string model_dir_name(const fs::path& dir) {
  fs::path p = fs::absolute(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  const fs::path snapshots = p.parent_path();
  const std::string repo = snapshots.parent_path().filename().string();
  if (snapshots.filename() == "snapshots" && repo.rfind("models--", 0) == 0) {
    const std::string id = repo.substr(8);  // ORG--NAME ("--" cannot occur in Hub names)
    const size_t sep = id.find("--");
    const std::string name = sep == std::string::npos ? id : id.substr(sep + 2);
    if (!name.empty()) return name;
  }
  return p.filename().string();
}

std::string id_to_title(const std::string& id) {
  // "tiny-llama" -> "Tiny Llama": words in lower case get a capital unless they are versions
  // or start with a digit (the naming rule of llama.cpp's converter).
  std::string s = id;
  std::replace(s.begin(), s.end(), '-', ' ');
  std::string out, word;
  auto flush = [&] {
    if (word.empty()) return;
    const bool lower = std::none_of(word.begin(), word.end(), [](unsigned char c) { return std::isupper(c); }) &&
                       std::any_of(word.begin(), word.end(), [](unsigned char c) { return std::islower(c); });
    static const std::regex keep(R"(^(v\d+(?:\.\d+)*|\d.*)$)");
    if (lower && !std::regex_match(word, keep)) {
      bool start = true;
      for (auto& c : word) {
        if (std::isalpha(static_cast<unsigned char>(c))) {
          c = static_cast<char>(start ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
          start = false;
        } else {
          start = true;
        }
      }
    }
    if (!out.empty()) out += ' ';
    out += word;
    word.clear();
  };
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) flush();
    else word += c;
  }
  flush();
  return out;
}

// "5.8M": parameter count with two significant digits and a suffix.
std::string size_label(uint64_t n) {
  double v;
  const char* suffix;
  if (n > 1e12) { v = n * 1e-12; suffix = "T"; }
  else if (n > 1e9) { v = n * 1e-9; suffix = "B"; }
  else if (n > 1e6) { v = n * 1e-6; suffix = "M"; }
  else { v = n * 1e-3; suffix = "K"; }
  const long r = std::lround(v);
  const int digits = r == 0 ? 0 : static_cast<int>(std::to_string(r).size());
  const int fix = std::max(2 - digits, 0);
  return fmt::format("{:.{}f}{}", v, fix, suffix);
}

// Bounds on hyper-parameters, far above any real model's, so that a config declaring absurd sizes
// is refused before anything is sized from it: dimensions below 2^31 (products of two fit in
// int64), at most 2^16 layers and a head dimension of at most 2^16 (rope tables are sized by it).
constexpr int64_t kMaxDimension = (int64_t{1} << 31) - 1;
constexpr int64_t kMaxLayers = int64_t{1} << 16;
constexpr int64_t kMaxHeadDim = int64_t{1} << 16;

bool absurd_hyper_parameters(const ModelConfig& c) {
  for (int64_t v : {c.n_embd, c.n_head, c.n_head_kv, c.n_ff, c.n_vocab, c.n_ctx_train, c.sliding_window})
    if (v < 0 || v > kMaxDimension) return true;
  return c.n_layer < 0 || c.n_layer > kMaxLayers || c.head_dim < 0 || c.head_dim > kMaxHeadDim;
}

template <typename T>
T get_or(const json& j, const char* key, T def) {
  if (j.contains(key) && !j[key].is_null()) return json_number<T>(j[key], key);
  return def;
}

// The one quantization liblq reads: compressed-tensors int8 W8A8. Everything else is named.
Int8Checkpoint read_int8_quantization(const json& q, const fs::path& cfg) {
  auto unsupported = [&](const std::string& what) {
    fail(Errc::invalid_model, "{}: {} is not supported (liblq reads compressed-tensors int8 checkpoints: format "
         "int-quantized or naive-quantized, 8-bit symmetric int weights per channel or tensor, 8-bit int "
         "activations per token or tensor)", cfg.string(), what);
  };
  if (!q.is_object()) fail(Errc::invalid_model, "{}: quantization_config is not an object", cfg.string());
  const std::string method = q.value("quant_method", std::string("unknown method"));
  if (method != "compressed-tensors")
    fail(Errc::invalid_model, "{}: the checkpoint is already quantized ({}); liblq reads compressed-tensors int8 "
         "checkpoints only: convert it from its unquantized weights", cfg.string(), method);
  Int8Checkpoint out;
  out.format = get_or<std::string>(q, "format", "");
  if (out.format != "int-quantized" && out.format != "naive-quantized")
    unsupported(fmt::format("compressed-tensors format '{}'", out.format));
  if (const std::string st = get_or<std::string>(q, "quantization_status", "compressed"); st != "compressed")
    unsupported(fmt::format("quantization_status '{}'", st));
  if (q.contains("sparsity_config") && !q["sparsity_config"].is_null() && !q["sparsity_config"].empty())
    unsupported("a sparsity_config");
  if (q.contains("kv_cache_scheme") && !q["kv_cache_scheme"].is_null()) unsupported("a kv_cache_scheme");
  if (!q.contains("config_groups") || !q["config_groups"].is_object() || q["config_groups"].empty())
    fail(Errc::invalid_model, "{}: quantization_config has no config_groups", cfg.string());
  std::optional<bool> is_static;
  for (auto it = q["config_groups"].begin(); it != q["config_groups"].end(); ++it) {
    const json& g = it.value();
    const std::string where = fmt::format("config group '{}'", it.key());
    if (!g.is_object()) fail(Errc::invalid_model, "{}: {} is not an object", cfg.string(), where);
    auto args = [&](const char* key, bool is_weight) -> std::optional<bool> {
      if (!g.contains(key) || g[key].is_null()) {
        if (is_weight) unsupported(fmt::format("{} without weights", where));
        unsupported(fmt::format("{}: weight-only quantization (no input_activations)", where));
      }
      const json& a = g[key];
      const std::string what = fmt::format("{} {}", where, key);
      const std::string type = get_or<std::string>(a, "type", "int");
      if (type != "int") unsupported(fmt::format("{} of type '{}'", what, type));
      const int64_t bits = get_or<int64_t>(a, "num_bits", 8);
      if (bits != 8) unsupported(fmt::format("{} with {} bits", what, bits));
      if (!get_or<bool>(a, "symmetric", true)) unsupported(fmt::format("asymmetric {}", what));
      if (a.contains("group_size") && !a["group_size"].is_null()) unsupported(fmt::format("{} with a group_size", what));
      if (a.contains("block_structure") && !a["block_structure"].is_null())
        unsupported(fmt::format("{} with a block_structure", what));
      const std::string strategy = get_or<std::string>(a, "strategy", "tensor");
      const bool dynamic = get_or<bool>(a, "dynamic", false);
      if (is_weight) {
        if (strategy != "channel" && strategy != "tensor") unsupported(fmt::format("{} with strategy '{}'", what, strategy));
        if (dynamic) unsupported(fmt::format("dynamic {}", what));
        return std::nullopt;
      }
      if (strategy == "token" && dynamic) return false;
      if (strategy == "tensor" && !dynamic) return true;
      unsupported(fmt::format("{} with strategy '{}' and dynamic {}", what, strategy, dynamic));
      return std::nullopt;
    };
    args("weights", true);
    const bool st = *args("input_activations", false);
    if (g.contains("output_activations") && !g["output_activations"].is_null()) unsupported(where + " output_activations");
    if (is_static && *is_static != st) unsupported("config groups mixing static and dynamic activations");
    is_static = st;
  }
  out.static_activations = *is_static;
  if (q.contains("ignore") && q["ignore"].is_array())
    for (const auto& n : q["ignore"])
      if (n.is_string()) out.ignore.push_back(n.get<std::string>());
  return out;
}

// transformers 5 writes RoPE as `rope_parameters`: {rope_theta, rope_type, the scaling's fields},
// or one such object per attention type (Gemma 3: full_attention, sliding_attention), in place of
// rope_theta, rope_scaling, rope_local_base_freq and partial_rotary_factor. Those keys are made
// from it where the file lacks them, so that every reader below (and the GGUF keys) sees one
// spelling; without this a transformers-5 directory would run with the default base 10000.
void rope_parameters_as_keys(json& t) {
  if (!t.contains("rope_parameters") || !t["rope_parameters"].is_object()) return;
  const json rp = t["rope_parameters"];
  auto take = [&](const json& p, const char* theta_key, bool scaling) {
    if (!p.is_object()) return;
    if (p.contains("rope_theta") && !t.contains(theta_key)) t[theta_key] = p["rope_theta"];
    if (!scaling) return;
    if (p.contains("partial_rotary_factor") && !t.contains("partial_rotary_factor"))
      t["partial_rotary_factor"] = p["partial_rotary_factor"];
    const json& type = p.contains("rope_type") ? p["rope_type"] : p.contains("type") ? p["type"] : json("default");
    if (type.is_string() && type.get<std::string>() != "default" &&
        (!t.contains("rope_scaling") || t["rope_scaling"].is_null())) {
      json rs = p;
      rs.erase("rope_theta");
      rs.erase("partial_rotary_factor");
      t["rope_scaling"] = std::move(rs);
    }
  };
  if (rp.contains("full_attention") || rp.contains("sliding_attention")) {
    take(rp.contains("full_attention") ? rp["full_attention"] : json(), "rope_theta", true);
    take(rp.contains("sliding_attention") ? rp["sliding_attention"] : json(), "rope_local_base_freq", false);
  } else {
    take(rp, "rope_theta", true);
  }
}

// RoPE variants the engine does not compute: refused by name rather than converted into a model
// that runs with the wrong positions (partial rotary dimensions; LongRoPE outside phi3, whose
// factors and attention factor only phi3's keys carry). LongRoPE's factor lists are checked here.
void refuse_unsupported_rope(const json& text, const std::string& model_type, const Architecture& arch,
                             const fs::path& cfg) {
  std::string type;
  if (text.contains("rope_scaling") && text["rope_scaling"].is_object())
    type = text["rope_scaling"].value("rope_type", text["rope_scaling"].value("type", std::string()));
  if ((type == "longrope" || type == "su") && arch.keys != ConverterKeys::phi3)
    fail(Errc::invalid_model, "{}: model_type '{}' with rope_scaling '{}' (long-context RoPE factors) is not supported "
         "(phi3 only)", cfg.string(), model_type, type);
  if (type == "longrope" || type == "su") {
    const json& rs = text["rope_scaling"];
    const int64_t heads = get_or<int64_t>(text, "num_attention_heads", 0);
    const int64_t half = heads > 0 ? get_or<int64_t>(text, "hidden_size", 0) / heads / 2 : 0;
    for (const char* k : {"long_factor", "short_factor"})
      if (!rs.contains(k) || !rs[k].is_array() || static_cast<int64_t>(rs[k].size()) != half ||
          !std::all_of(rs[k].begin(), rs[k].end(), [](const json& v) { return v.is_number() && v.get<double>() > 0; }))
        fail(Errc::invalid_model, "{}: rope_scaling '{}' needs '{}': {} positive numbers (one per rotated pair)",
             cfg.string(), type, k, half);
  }
  if (text.contains("partial_rotary_factor") && text["partial_rotary_factor"].is_number() &&
      text["partial_rotary_factor"].get<double>() != 1.0)
    fail(Errc::invalid_model, "{}: model_type '{}' with partial_rotary_factor {} (RoPE on part of each head) is not "
         "supported yet", cfg.string(), model_type, text["partial_rotary_factor"].get<double>());
}

// phi3's {arch}.* keys, as llama.cpp's converter writes them (its own list, not the common one).
void phi3_config_metadata(const HfConfig& hf, const std::string& a, gguf::Metadata& m) {
  const ModelConfig& c = hf.config;
  const json& t = hf.text;
  int64_t orig = get_or<int64_t>(t, "original_max_position_embeddings", 0);
  if (t.contains("rope_scaling") && t["rope_scaling"].is_object())
    orig = get_or<int64_t>(t["rope_scaling"], "original_max_position_embeddings", orig);
  if (orig <= 0)
    fail(Errc::invalid_model, "model_type '{}': config.json has no original_max_position_embeddings (llama.cpp's "
         "converter needs it)", c.model_type);
  m.set(a + "context_length", gguf::Value::u32(static_cast<uint32_t>(c.n_ctx_train)));
  m.set(a + "rope.scaling.original_context_length", gguf::Value::u32(static_cast<uint32_t>(orig)));
  m.set(a + "embedding_length", gguf::Value::u32(static_cast<uint32_t>(c.n_embd)));
  m.set(a + "feed_forward_length", gguf::Value::u32(static_cast<uint32_t>(c.n_ff)));
  m.set(a + "block_count", gguf::Value::u32(static_cast<uint32_t>(c.n_layer)));
  m.set(a + "attention.head_count", gguf::Value::u32(static_cast<uint32_t>(c.n_head)));
  m.set(a + "attention.head_count_kv", gguf::Value::u32(static_cast<uint32_t>(c.n_head_kv)));
  m.set(a + "attention.layer_norm_rms_epsilon", gguf::Value::f32(c.rms_eps));
  m.set(a + "rope.dimension_count", gguf::Value::u32(static_cast<uint32_t>(c.n_embd / c.n_head)));
  m.set(a + "rope.freq_base", gguf::Value::f32(c.rope_theta));
  m.set(a + "attention.sliding_window", gguf::Value::u32(static_cast<uint32_t>(c.sliding_window)));
  if (c.rope_scaling && (c.rope_scaling->type == "longrope" || c.rope_scaling->type == "su")) {
    // the converter's attention factor: sqrt(1 + ln(scale) / ln(original context)), scale = context / original
    const double scale = static_cast<double>(c.n_ctx_train) / static_cast<double>(orig);
    const double f = scale > 1.0 ? std::sqrt(1 + std::log(scale) / std::log(static_cast<double>(orig))) : 1.0;
    m.set(a + "rope.scaling.attn_factor", gguf::Value::f32(static_cast<float>(f)));
  }
}


// A float that may be null in config.json (0 when absent or null).
float nullable_float(const json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<float>() : 0.0f;
}

// Gemma 2 / 3 hyper-parameters beyond the Llama family's, with the defaults llama.cpp's converter
// assumes where config.json leaves them out.
void read_gemma_hparams(const Architecture& arch, const json& t, ModelConfig& c) {
  const bool g3 = arch.hparam_keys == Architecture::HparamKeys::gemma3;
  // Gemma's configs tie the output to the embedding unless they say otherwise; Gemma 2's converter
  // drops any lm_head.weight.
  c.tie_embeddings = arch.drops_lm_head || get_or<bool>(t, "tie_word_embeddings", true);
  c.attn_softcap = nullable_float(t, "attn_logit_softcapping");
  c.final_softcap = nullable_float(t, "final_logit_softcapping");
  if (const float s = nullable_float(t, "query_pre_attn_scalar"); s > 0) c.attn_scale = 1.0f / std::sqrt(s);
  if (g3) {
    if (!t.contains("num_key_value_heads")) c.n_head_kv = 4;
    if (!t.contains("head_dim")) c.head_dim = 256;
    if (!t.contains("max_position_embeddings")) c.n_ctx_train = 131072;
    if (!t.contains("rope_theta")) c.rope_theta = 1000000.0f;
    c.rope_theta_swa = get_or<float>(t, "rope_local_base_freq", 10000.0f);
    for (const char* k : {"sliding_window_pattern", "_sliding_window_pattern"})  // the latter: transformers 5
      if (t.contains(k) && t[k] == 1) c.sliding_window = 0;
  } else if (!t.contains("sliding_window") || t["sliding_window"].is_null()) {
    c.sliding_window = 4096;
  }
  c.swa_period = c.sliding_window > 0 ? arch.swa_period : 0;
  // transformers 5's layer_types names each layer's attention: all full turns the window off;
  // any other pattern must be the architecture's period (the engine's and llama.cpp's).
  if (t.contains("layer_types") && t["layer_types"].is_array()) {
    const json& lt = t["layer_types"];
    if (std::all_of(lt.begin(), lt.end(), [](const json& v) { return v == "full_attention"; })) {
      c.sliding_window = 0;
      c.swa_period = 0;
    }
    for (size_t l = 0; l < lt.size(); ++l) {
      const bool sliding = c.swa_period > 0 && static_cast<int64_t>(l) % c.swa_period < c.swa_period - 1;
      if (lt[l] != (sliding ? "sliding_attention" : "full_attention"))
        fail(Errc::invalid_model, "config.json: layer_types: layer {} is {} where {} has {} attention (a window every {} layers "
             "but the last of each {}); another pattern is not supported", l, lt[l].dump(), arch.model_type,
             sliding ? "sliding-window" : "full", c.swa_period, c.swa_period);
    }
  }
}

// The general.* and {arch}.* keys of llama.cpp's Gemma2Model / Gemma3Model, in their order.
void gemma_hparam_metadata(const Architecture& arch, const HfConfig& hf, uint64_t n_params, gguf::Metadata& m);

// Mixture-of-experts hyper-parameters of a config.json (each architecture's own keys); layouts
// with dense layers between the sparse ones (decoder_sparse_step > 1, mlp_only_layers) are named.
void read_moe_config(const Architecture& arch, const json& t, const fs::path& cfg, ModelConfig& c) {
  c.qk_norm = arch.qk_norm;
  if (arch.moe == Architecture::MoeStyle::none) return;
  const bool mixtral = arch.moe == Architecture::MoeStyle::mixtral;
  auto need = [&](const char* k) -> int64_t {
    if (!t.contains(k) || !t[k].is_number_integer())
      fail(Errc::invalid_model, "{}: missing or non-integer '{}'", cfg.string(), k);
    return t[k].get<int64_t>();
  };
  // Each architecture's own key; transformers 5 saves Qwen3-MoE's under Mixtral's
  // (num_local_experts), as llama.cpp's converter accepts either.
  const char* own = mixtral ? "num_local_experts" : "num_experts";
  const char* other = mixtral ? "num_experts" : "num_local_experts";
  c.n_expert = need(t.contains(own) || !t.contains(other) ? own : other);
  c.n_expert_used = need("num_experts_per_tok");
  c.n_ff_exp = mixtral ? c.n_ff : need("moe_intermediate_size");
  if (arch.shared_expert) c.n_ff_shexp = need("shared_expert_intermediate_size");
  c.expert_weights_norm = mixtral || get_or<bool>(t, "norm_topk_prob", false);
  if (get_or<int64_t>(t, "decoder_sparse_step", 1) != 1)
    fail(Errc::invalid_model, "{}: decoder_sparse_step {} (dense layers between the sparse ones) is not supported",
         cfg.string(), t["decoder_sparse_step"].dump());
  if (t.contains("mlp_only_layers") && t["mlp_only_layers"].is_array() && !t["mlp_only_layers"].empty())
    fail(Errc::invalid_model, "{}: mlp_only_layers (dense layers in a sparse model) is not supported", cfg.string());
  if (c.n_expert < 1 || c.n_expert_used < 1 || c.n_expert_used > c.n_expert || c.n_ff_exp < 1 || c.n_expert > 4096)
    fail(Errc::invalid_model, "{}: inconsistent experts ({} experts, {} used per token, expert ffn {})", cfg.string(),
         c.n_expert, c.n_expert_used, c.n_ff_exp);
}

// The converter's expert counts (TextModel: num_local_experts / num_experts, num_experts_per_tok),
// written after the norm epsilon.
void moe_count_metadata(const HfConfig& hf, gguf::Metadata& m) {
  const std::string a = hf.config.architecture + ".";
  for (const char* k : {"num_local_experts", "num_experts"})
    if (hf.text.contains(k) && hf.text[k].is_number_integer()) {
      m.set(a + "expert_count", gguf::Value::u32(hf.text[k].get<uint32_t>()));
      break;
    }
  if (hf.text.contains("num_experts_per_tok") && hf.text["num_experts_per_tok"].is_number_integer())
    m.set(a + "expert_used_count", gguf::Value::u32(hf.text["num_experts_per_tok"].get<uint32_t>()));
}

// Qwen-MoE's expert lengths (moe_intermediate_size, shared_expert_intermediate_size), written last,
// and the converter's key set for these architectures.
void moe_length_metadata(const HfConfig& hf, gguf::Metadata& m) {
  const Architecture* arch = find_architecture(hf.config.model_type);
  if (!arch || arch->moe != Architecture::MoeStyle::qwen) return;
  const std::string a = hf.config.architecture + ".";
  if (hf.text.contains("moe_intermediate_size"))
    m.set(a + "expert_feed_forward_length", gguf::Value::u32(static_cast<uint32_t>(hf.config.n_ff_exp)));
  if (hf.text.contains("shared_expert_intermediate_size"))
    m.set(a + "expert_shared_feed_forward_length",
          gguf::Value::u32(hf.text["shared_expert_intermediate_size"].get<uint32_t>()));
  // The converter's Qwen-MoE classes (TextModel) write neither of these Llama keys.
  m.erase(a + "vocab_size");
  m.erase(a + "rope.dimension_count");
}

// The same from GGUF metadata: expert counts and lengths, and the routing weights' normalisation
// as llama.cpp applies it per architecture (llama: softmax over the top-k, i.e. renormalised;
// qwen2moe: not; qwen3moe: renormalised).
void moe_config_from_gguf(const gguf::Metadata& m, const Architecture* arch, ModelConfig& c) {
  const std::string a = c.architecture + ".";
  c.n_expert = m.get_int(a + "expert_count").value_or(0);
  c.n_expert_used = m.get_int(a + "expert_used_count").value_or(0);
  c.n_ff_exp = m.get_int(a + "expert_feed_forward_length").value_or(c.n_expert > 0 ? c.n_ff : 0);
  c.n_ff_shexp = m.get_int(a + "expert_shared_feed_forward_length").value_or(0);
  c.qk_norm = arch && arch->qk_norm;
  c.expert_weights_norm = !arch || arch->expert_weights_norm;
  if (c.n_expert > 0 && (c.n_expert_used < 1 || c.n_expert_used > c.n_expert || c.n_expert > 4096))
    fail(Errc::invalid_model, "GGUF: inconsistent experts ({} experts, {} used per token)", c.n_expert, c.n_expert_used);
}

}  // namespace

bool Int8Checkpoint::ignored(const std::string& name) const {
  for (const auto& pat : ignore) {
    if (pat.rfind("re:", 0) == 0) {
      try {
        if (std::regex_search(name, std::regex("^(?:" + pat.substr(3) + ")"))) return true;
      } catch (const std::regex_error&) {
        fail(Errc::invalid_model, "quantization_config: ignore pattern '{}' is not a valid regular expression", pat);
      }
    } else if (pat == name) {
      return true;
    }
  }
  return false;
}

HfConfig read_hf_config(const fs::path& dir) {
  HfConfig out;
  const fs::path cfg = dir / "config.json";
  std::error_code ec;
  if (!fs::exists(cfg, ec)) fail(Errc::invalid_model, "{}: no config.json (not a Hugging Face model directory)", dir.string());
  json j;
  try {
    j = json::parse(read_file(cfg));
  } catch (const json::exception& e) {
    fail(Errc::invalid_model, "{}: malformed JSON: {}", cfg.string(), e.what());
  }
  if (!j.is_object()) fail(Errc::invalid_model, "{}: not a JSON object", cfg.string());
  if (j.contains("text_config") && j["text_config"].is_object()) out.text = j["text_config"];
  else out.text = j;
  try {
    rope_parameters_as_keys(out.text);
  } catch (const json::exception& e) {
    fail(Errc::invalid_model, "{}: malformed rope_parameters: {}", cfg.string(), e.what());
  }
  std::string mt;
  try {
    mt = get_or<std::string>(j, "model_type", "");
  } catch (const json::exception& e) {
    fail(Errc::invalid_model, "{}: model_type is not a string: {}", cfg.string(), e.what());
  }
  if (mt.empty()) fail(Errc::invalid_model, "{}: no model_type", cfg.string());
  const Architecture* arch = find_architecture(mt);
  if (!arch)
    fail(Errc::invalid_model, "{}: unsupported architecture: model_type '{}' (supported: {})", cfg.string(), mt,
         supported_model_types());
  if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
    out.quant = read_quant_checkpoint(j["quantization_config"], cfg);
    if (!out.quant) try {
        out.int8 = read_int8_quantization(j["quantization_config"], cfg);
      } catch (const json::exception& e) {
        fail(Errc::invalid_model, "{}: malformed quantization_config: {}", cfg.string(), e.what());
      }
  } else if (const fs::path qc = dir / "quantize_config.json"; fs::exists(qc, ec)) {
    // AutoGPTQ's own file: the GPTQ keys without quant_method.
    json q;
    try {
      q = json::parse(read_file(qc));
    } catch (const json::exception& e) {
      fail(Errc::invalid_model, "{}: malformed JSON: {}", qc.string(), e.what());
    }
    if (q.is_object() && !q.contains("quant_method")) q["quant_method"] = "gptq";
    out.quant = read_quant_checkpoint(q, qc);
  }
  ModelConfig& c = out.config;
  try {
    c.model_type = mt;
    c.architecture = std::string(arch->gguf);
    c.name = id_to_title(model_dir_name(dir));
    auto need = [&](const char* k) -> int64_t {
      if (!out.text.contains(k) || !out.text[k].is_number_integer())
        fail(Errc::invalid_model, "{}: missing or non-integer '{}'", cfg.string(), k);
      return out.text[k].get<int64_t>();
    };
    c.n_embd = need("hidden_size");
    c.n_layer = need("num_hidden_layers");
    c.n_head = need("num_attention_heads");
    c.n_ff = need("intermediate_size");
    c.n_vocab = need("vocab_size");
    c.n_head_kv = get_or<int64_t>(out.text, "num_key_value_heads", c.n_head);
    c.head_dim = get_or<int64_t>(out.text, "head_dim", c.n_head > 0 ? c.n_embd / c.n_head : 0);
    c.n_ctx_train = get_or<int64_t>(out.text, "max_position_embeddings", 0);
    c.rms_eps = get_or<float>(out.text, "rms_norm_eps", 1e-6f);
    c.rope_theta = get_or<float>(out.text, "rope_theta", 10000.0f);
    c.tie_embeddings = get_or<bool>(out.text, "tie_word_embeddings", false);
    c.qkv_bias = arch->qkv_bias || get_or<bool>(out.text, "attention_bias", false);
    c.sliding_window = get_or<int64_t>(out.text, "sliding_window", 0);
    if (out.text.contains("rope_scaling") && out.text["rope_scaling"].is_object()) {
      const json& rs = out.text["rope_scaling"];
      RopeScaling r;
      r.type = rs.value("rope_type", rs.value("type", std::string()));
      r.factor = rs.value("factor", 1.0f);
      r.low_freq_factor = rs.value("low_freq_factor", 1.0f);
      r.high_freq_factor = rs.value("high_freq_factor", 4.0f);
      r.original_context = rs.value("original_max_position_embeddings", int64_t{8192});
      if (!r.type.empty() && r.type != "default") c.rope_scaling = r;
    }
    refuse_unsupported_rope(out.text, mt, *arch, cfg);
    if (arch->hparam_keys != Architecture::HparamKeys::llama) read_gemma_hparams(*arch, out.text, c);
    read_moe_config(*arch, out.text, cfg, c);
  } catch (const json::exception& e) {
    fail(Errc::invalid_model, "{}: bad value: {}", cfg.string(), e.what());
  }
  if (c.n_embd <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.head_dim <= 0 || c.n_vocab <= 0 ||
      c.n_head % c.n_head_kv != 0 || c.head_dim % 2 != 0)
    fail(Errc::invalid_model, "{}: inconsistent hyper-parameters (hidden {}, layers {}, heads {}/{}, head_dim {})",
         cfg.string(), c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim);
  if (absurd_hyper_parameters(c))
    fail(Errc::invalid_model, "{}: implausible hyper-parameters (hidden {}, layers {}, heads {}/{}, head_dim {}, ffn {}, "
         "vocab {}, context {})", cfg.string(), c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_ff,
         c.n_vocab, c.n_ctx_train);
  return out;
}

void hf_config_metadata(const HfConfig& hf, uint64_t n_params, gguf::Metadata& m) {
  const ModelConfig& c = hf.config;
  if (const Architecture* arch = find_architecture(c.model_type);
      arch && arch->hparam_keys != Architecture::HparamKeys::llama)
    return gemma_hparam_metadata(*arch, hf, n_params, m);
  const std::string a = c.architecture + ".";
  m.set("general.architecture", gguf::Value::string(c.architecture));
  m.set("general.type", gguf::Value::string("model"));
  m.set("general.name", gguf::Value::string(c.name));
  m.set("general.size_label", gguf::Value::string(size_label(n_params)));
  const ConverterKeys keys = architecture_of(c, "config").keys;
  if (keys == ConverterKeys::phi3) return phi3_config_metadata(hf, a, m);
  m.set(a + "block_count", gguf::Value::u32(static_cast<uint32_t>(c.n_layer)));
  if (c.n_ctx_train > 0) m.set(a + "context_length", gguf::Value::u32(static_cast<uint32_t>(c.n_ctx_train)));
  m.set(a + "embedding_length", gguf::Value::u32(static_cast<uint32_t>(c.n_embd)));
  m.set(a + "feed_forward_length", gguf::Value::u32(static_cast<uint32_t>(c.n_ff)));
  m.set(a + "attention.head_count", gguf::Value::u32(static_cast<uint32_t>(c.n_head)));
  if (hf.text.contains("num_key_value_heads"))
    m.set(a + "attention.head_count_kv", gguf::Value::u32(static_cast<uint32_t>(c.n_head_kv)));
  if (c.rope_scaling) {
    const auto& rs = *c.rope_scaling;
    if (rs.type == "linear" || rs.type == "yarn") {
      m.set(a + "rope.scaling.type", gguf::Value::string(rs.type));
      m.set(a + "rope.scaling.factor", gguf::Value::f32(rs.factor));
      if (rs.type == "yarn")
        m.set(a + "rope.scaling.original_context_length", gguf::Value::u32(static_cast<uint32_t>(rs.original_context)));
    }
  }
  if (hf.text.contains("rope_theta")) m.set(a + "rope.freq_base", gguf::Value::f32(c.rope_theta));
  if (hf.text.contains("rms_norm_eps")) m.set(a + "attention.layer_norm_rms_epsilon", gguf::Value::f32(c.rms_eps));
  moe_count_metadata(hf, m);
  if (hf.text.contains("head_dim")) {
    m.set(a + "attention.key_length", gguf::Value::u32(static_cast<uint32_t>(c.head_dim)));
    m.set(a + "attention.value_length", gguf::Value::u32(static_cast<uint32_t>(c.head_dim)));
  }
  if (keys == ConverterKeys::llama) {  // LlamaModel's own two keys
    m.set(a + "vocab_size", gguf::Value::u32(static_cast<uint32_t>(c.n_vocab)));
    m.set(a + "rope.dimension_count", gguf::Value::u32(static_cast<uint32_t>(c.head_dim)));
  }
  moe_length_metadata(hf, m);
}

void moe_size_label_metadata(uint64_t shared_params, uint64_t one_expert_params, int64_t n_expert, gguf::Metadata& m) {
  m.set("general.size_label",
        gguf::Value::string(fmt::format("{}x{}", n_expert, size_label(shared_params + one_expert_params))));
}

ModelConfig config_from_gguf(const gguf::Metadata& m, const std::string& file) {
  ModelConfig c;
  c.architecture = m.get_string("general.architecture").value_or("");
  c.model_type = c.architecture;
  c.name = m.get_string("general.name").value_or("");
  const std::string a = c.architecture + ".";
  auto req = [&](const std::string& key) {
    auto v = m.get_int(a + key);
    if (!v) fail(Errc::invalid_model, "{}: missing or non-integer metadata key '{}{}'", file, a, key);
    return *v;
  };
  c.n_embd = req("embedding_length");
  c.n_layer = req("block_count");
  c.n_ctx_train = m.get_int(a + "context_length").value_or(0);
  c.n_ff = m.get_int(a + "feed_forward_length").value_or(0);
  c.n_head = m.get_int(a + "attention.head_count").value_or(0);
  c.n_head_kv = m.get_int(a + "attention.head_count_kv").value_or(c.n_head);
  c.head_dim = m.get_int(a + "attention.key_length").value_or(c.n_head ? c.n_embd / c.n_head : 0);
  c.rms_eps = static_cast<float>(m.get_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_theta = static_cast<float>(m.get_float(a + "rope.freq_base").value_or(10000.0));
  if (auto t = m.get_string(a + "rope.scaling.type"); t && *t != "none") {
    RopeScaling rs;
    rs.type = *t;
    rs.factor = static_cast<float>(m.get_float(a + "rope.scaling.factor").value_or(1.0));
    rs.original_context = m.get_int(a + "rope.scaling.original_context_length").value_or(0);
    c.rope_scaling = rs;
  }
  if (const auto* tok = m.find("tokenizer.ggml.tokens"); tok && tok->is_array()) c.n_vocab = static_cast<int64_t>(tok->size());
  c.n_vocab = m.get_int(a + "vocab_size").value_or(c.n_vocab);
  c.sliding_window = m.get_int(a + "attention.sliding_window").value_or(0);
  if (auto rot = m.get_int(a + "rope.dimension_count"); rot && *rot != c.head_dim)
    fail(Errc::invalid_model, "{}: RoPE on {} of the {} dimensions of each head (partial rotary) is not supported yet",
         file, *rot, c.head_dim);
  const Architecture* arch = find_gguf_architecture(c.architecture);
  c.qkv_bias = arch && arch->qkv_bias;
  if (arch && arch->hparam_keys != Architecture::HparamKeys::llama) {
    c.attn_softcap = static_cast<float>(m.get_float(a + "attn_logit_softcapping").value_or(0.0));
    c.final_softcap = static_cast<float>(m.get_float(a + "final_logit_softcapping").value_or(0.0));
    c.rope_theta_swa = static_cast<float>(m.get_float(a + "rope.freq_base_swa").value_or(10000.0));
    if (arch->hparam_keys == Architecture::HparamKeys::gemma2) {
      c.rope_theta_swa = c.rope_theta;  // llama.cpp: the global base unless the file says otherwise
      if (auto f = m.get_float(a + "rope.freq_base_swa")) c.rope_theta_swa = static_cast<float>(*f);
      if (c.sliding_window == 0) c.sliding_window = 4096;  // llama.cpp's Gemma 2 default
    }
    c.swa_period = c.sliding_window > 0 ? m.get_int(a + "attention.sliding_window_pattern").value_or(arch->swa_period) : 0;
    // llama.cpp's attention scale: 1 / sqrt(head_dim), or 1 / sqrt(n_embd / n_head) for the 27B models.
    if (arch->wide_attn_scale_blocks > 0 && c.n_layer == arch->wide_attn_scale_blocks && c.n_head > 0)
      c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.n_embd / c.n_head));
  }
  moe_config_from_gguf(m, arch, c);
  if (absurd_hyper_parameters(c))
    fail(Errc::invalid_model, "{}: implausible hyper-parameters (embedding {}, blocks {}, heads {}/{}, key length {}, "
         "ffn {}, vocab {}, context {})", file, c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_ff,
         c.n_vocab, c.n_ctx_train);
  return c;
}

namespace {

void gemma_hparam_metadata(const Architecture& arch, const HfConfig& hf, uint64_t n_params, gguf::Metadata& m) {
  const ModelConfig& c = hf.config;
  const json& t = hf.text;
  const std::string a = c.architecture + ".";
  auto u32 = [&](const std::string& k, int64_t v) { m.set(a + k, gguf::Value::u32(static_cast<uint32_t>(v))); };
  auto f32 = [&](const std::string& k, float v) { m.set(a + k, gguf::Value::f32(v)); };
  m.set("general.architecture", gguf::Value::string(c.architecture));
  m.set("general.type", gguf::Value::string("model"));
  m.set("general.name", gguf::Value::string(c.name));
  m.set("general.size_label", gguf::Value::string(size_label(n_params)));
  if (arch.hparam_keys == Architecture::HparamKeys::gemma2) {
    u32("context_length", c.n_ctx_train);
    u32("embedding_length", c.n_embd);
    u32("block_count", c.n_layer);
    u32("feed_forward_length", c.n_ff);
    u32("attention.head_count", c.n_head);
    u32("attention.head_count_kv", c.n_head_kv);
    f32("attention.layer_norm_rms_epsilon", c.rms_eps);
    u32("attention.key_length", c.head_dim);
    u32("attention.value_length", c.head_dim);
    f32("attn_logit_softcapping", c.attn_softcap);
    f32("final_logit_softcapping", c.final_softcap);
    u32("attention.sliding_window", c.sliding_window);
    return;
  }
  // Gemma 3: the generic text keys, then the Gemma3Model's own (defaults where config.json has none).
  u32("block_count", c.n_layer);
  u32("context_length", c.n_ctx_train);
  u32("embedding_length", c.n_embd);
  u32("feed_forward_length", c.n_ff);
  u32("attention.head_count", c.n_head);
  u32("attention.head_count_kv", c.n_head_kv);
  if (c.rope_scaling && (c.rope_scaling->type == "linear" || c.rope_scaling->type == "yarn")) {
    m.set(a + "rope.scaling.type", gguf::Value::string(c.rope_scaling->type));
    f32("rope.scaling.factor", c.rope_scaling->factor);
    if (c.rope_scaling->type == "yarn") u32("rope.scaling.original_context_length", c.rope_scaling->original_context);
  }
  f32("rope.freq_base", c.rope_theta);
  if (t.contains("rope_local_base_freq")) f32("rope.freq_base_swa", c.rope_theta_swa);
  f32("attention.layer_norm_rms_epsilon", c.rms_eps);
  u32("attention.key_length", c.head_dim);
  u32("attention.value_length", c.head_dim);
  if (c.final_softcap != 0) f32("final_logit_softcapping", c.final_softcap);
  if (c.sliding_window > 0) u32("attention.sliding_window", c.sliding_window);
}

}  // namespace

}  // namespace lq
