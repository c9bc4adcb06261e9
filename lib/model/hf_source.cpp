// ModelSource over a Hugging Face checkpoint: config.json + safetensors (single file or sharded
// with model.safetensors.index.json). Tensors are presented in GGUF naming and ggml order; the
// q/k projections are re-ordered row by row from HF's rotate-half layout into the adjacent-pair
// layout llama.cpp's "normal" RoPE expects (llama/mistral; qwen2 keeps HF's layout).
#include "model/sources.hpp"

#include "core/half.hpp"
#include "formats/safetensors.hpp"

#include <lq/backend.hpp>
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/tokenizer.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <regex>
#include <set>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq {
namespace {

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

struct Mapping {
  std::string gguf;
  enum class Permute { none, q, k } permute = Permute::none;
};

// HF tensor name -> GGUF name (Llama family). Returns nullopt for tensors to skip.
std::optional<Mapping> map_name(const std::string& hf, bool permute_qk, const std::string& file) {
  static const std::map<std::string, std::string> kTop = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
  };
  if (auto it = kTop.find(hf); it != kTop.end()) return Mapping{it->second};
  static const std::regex kLayer(R"(^model\.layers\.(\d+)\.(.+)$)");
  std::smatch m;
  if (std::regex_match(hf, m, kLayer)) {
    const std::string blk = "blk." + m[1].str() + ".";
    const std::string rest = m[2].str();
    static const std::map<std::string, std::string> kBlock = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},
        {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.bias", "attn_v.bias"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    if (rest == "self_attn.rotary_emb.inv_freq") return std::nullopt;  // recomputed, never stored
    auto it = kBlock.find(rest);
    if (it == kBlock.end()) fail(Errc::invalid_model, "{}: tensor '{}' is not part of the Llama architecture", file, hf);
    Mapping mp{blk + it->second};
    if (permute_qk && (rest == "self_attn.q_proj.weight" || rest == "self_attn.q_proj.bias")) mp.permute = Mapping::Permute::q;
    if (permute_qk && (rest == "self_attn.k_proj.weight" || rest == "self_attn.k_proj.bias")) mp.permute = Mapping::Permute::k;
    return mp;
  }
  fail(Errc::invalid_model, "{}: tensor '{}' is not part of the Llama architecture", file, hf);
}

// Sort key of llama-quantize's visit order: non-block tensors by name, then by layer, then name.
struct TensorOrder {
  bool operator()(const ModelTensor& a, const ModelTensor& b) const { return key(a.name) < key(b.name); }
  static std::tuple<int, int, std::string> key(const std::string& n) {
    if (n.rfind("blk.", 0) == 0) {
      const size_t dot = n.find('.', 4);
      return {1, std::stoi(n.substr(4, dot - 4)), n.substr(dot + 1)};
    }
    return {0, 0, n};
  }
};

template <typename T>
T get_or(const json& j, const char* key, T def) {
  if (j.contains(key) && !j[key].is_null()) return j[key].get<T>();
  return def;
}

class HfSource final : public ModelSource {
 public:
  explicit HfSource(const fs::path& path) {
    std::error_code ec;
    dir_ = fs::is_directory(path, ec) ? path : path.parent_path();
    path_ = path;
    if (dir_.empty()) dir_ = ".";
    load_config();
    load_weights(path);
    build_tensors();
  }

  const ModelConfig& config() const override { return config_; }
  const std::vector<ModelTensor>& tensors() const override { return tensors_; }
  bool is_gguf() const override { return false; }
  int n_splits() const override { return static_cast<int>(files_.size()); }
  const fs::path& path() const override { return path_; }
  uint64_t source_bytes() const override {
    uint64_t n = 0;
    for (const auto& f : files_) n += f->file_size();
    return n;
  }

  void read_rows_raw(const ModelTensor& t, int64_t row0, int64_t nrows, void* dst) const override {
    const Entry& e = entry(t);
    if (e.generated) {
      LQ_ASSERT(row0 == 0 && nrows == 1);
      std::memcpy(dst, e.generated_values.data(), e.generated_values.size() * sizeof(float));
      return;
    }
    const size_t rb = t.row_bytes();
    auto* out = static_cast<uint8_t*>(dst);
    if (e.permute == Mapping::Permute::none) {
      e.file->read(e.st->begin + static_cast<uint64_t>(row0) * rb, static_cast<size_t>(nrows) * rb, out);
      return;
    }
    // Gather rows one run at a time: within a head, GGUF row 2i+j is HF row j*(hd/2)+i.
    const int64_t hd = config_.head_dim;
    for (int64_t r = row0; r < row0 + nrows; ++r) {
      const int64_t h = r / hd, w = r % hd;
      const int64_t src = h * hd + (w % 2) * (hd / 2) + w / 2;
      e.file->read(e.st->begin + static_cast<uint64_t>(src) * rb, rb, out + (r - row0) * rb);
    }
  }

  std::shared_ptr<const uint8_t> share_raw(const ModelTensor& t) const override {
    const Entry& e = entry(t);
    if (e.generated || e.permute != Mapping::Permute::none) return nullptr;
    return e.file->share(e.st->begin, t.row_bytes() * static_cast<size_t>(t.n_rows()));
  }

  void read_rows_f32(const ModelTensor& t, int64_t row0, int64_t nrows, float* dst) const override {
    const Entry& e = entry(t);
    if (e.generated || t.type == QuantType::F32) {
      read_rows_raw(t, row0, nrows, dst);
      return;
    }
    const int64_t n = nrows * t.row_length();
    thread_local std::vector<uint8_t> raw;
    raw.resize(static_cast<size_t>(nrows) * t.row_bytes());
    read_rows_raw(t, row0, nrows, raw.data());
    if (t.type == QuantType::BF16 || t.type == QuantType::F16) {
      Registry::instance().dequantize(t.type)(raw.data(), dst, n);
      return;
    }
    const TypeInfo& ti = type_info(t.type);
    if (!ti.dequantize_ref)
      fail(Errc::invalid_model, "{}: tensor '{}' has dtype {} which cannot be read as float", path_.string(),
           t.source_name, ti.name);
    ti.dequantize_ref(raw.data(), dst, n);
  }

  gguf::Metadata gguf_metadata() const override { return metadata_; }

 private:
  struct Entry {
    const SafetensorsFile* file = nullptr;
    const StTensor* st = nullptr;
    Mapping::Permute permute = Mapping::Permute::none;
    bool generated = false;
    std::vector<float> generated_values;
  };

  const Entry& entry(const ModelTensor& t) const {
    const size_t i = static_cast<size_t>(&t - tensors_.data());
    LQ_ASSERT(i < entries_.size());
    return entries_[i];
  }

  void load_config() {
    const fs::path cfg = dir_ / "config.json";
    std::error_code ec;
    if (!fs::exists(cfg, ec)) fail(Errc::invalid_model, "{}: no config.json (not a Hugging Face model directory)", dir_.string());
    try {
      config_json_ = json::parse(read_file(cfg));
    } catch (const json::exception& e) {
      fail(Errc::invalid_model, "{}: malformed JSON: {}", cfg.string(), e.what());
    }
    const json& j = config_json_;
    if (!j.is_object()) fail(Errc::invalid_model, "{}: not a JSON object", cfg.string());
    if (j.contains("text_config") && j["text_config"].is_object()) text_ = j["text_config"];
    else text_ = j;
    const std::string mt = get_or<std::string>(j, "model_type", "");
    if (mt.empty()) fail(Errc::invalid_model, "{}: no model_type", cfg.string());
    if (!is_supported_model_type(mt))
      fail(Errc::invalid_model, "{}: unsupported architecture: model_type '{}' (supported: llama, mistral, qwen2)",
           cfg.string(), mt);
    if (j.contains("quantization_config"))
      fail(Errc::invalid_model, "{}: the checkpoint is already quantized ({}); convert it from its unquantized weights",
           cfg.string(), j["quantization_config"].value("quant_method", "unknown method"));
    ModelConfig& c = config_;
    try {
      c.model_type = mt;
      c.architecture = mt == "qwen2" ? "qwen2" : "llama";
      c.name = id_to_title(fs::absolute(dir_).lexically_normal().filename().string().empty()
                               ? fs::absolute(dir_).lexically_normal().parent_path().filename().string()
                               : fs::absolute(dir_).lexically_normal().filename().string());
      auto need = [&](const char* k) -> int64_t {
        if (!text_.contains(k) || !text_[k].is_number_integer())
          fail(Errc::invalid_model, "{}: missing or non-integer '{}'", cfg.string(), k);
        return text_[k].get<int64_t>();
      };
      c.n_embd = need("hidden_size");
      c.n_layer = need("num_hidden_layers");
      c.n_head = need("num_attention_heads");
      c.n_ff = need("intermediate_size");
      c.n_vocab = need("vocab_size");
      c.n_head_kv = get_or<int64_t>(text_, "num_key_value_heads", c.n_head);
      c.head_dim = get_or<int64_t>(text_, "head_dim", c.n_head > 0 ? c.n_embd / c.n_head : 0);
      c.n_ctx_train = get_or<int64_t>(text_, "max_position_embeddings", 0);
      c.rms_eps = get_or<float>(text_, "rms_norm_eps", 1e-6f);
      c.rope_theta = get_or<float>(text_, "rope_theta", 10000.0f);
      c.tie_embeddings = get_or<bool>(text_, "tie_word_embeddings", false);
      c.qkv_bias = mt == "qwen2" || get_or<bool>(text_, "attention_bias", false);
      c.sliding_window = get_or<int64_t>(text_, "sliding_window", 0);
      if (text_.contains("rope_scaling") && text_["rope_scaling"].is_object()) {
        const json& rs = text_["rope_scaling"];
        RopeScaling r;
        r.type = rs.value("rope_type", rs.value("type", std::string()));
        r.factor = rs.value("factor", 1.0f);
        r.low_freq_factor = rs.value("low_freq_factor", 1.0f);
        r.high_freq_factor = rs.value("high_freq_factor", 4.0f);
        r.original_context = rs.value("original_max_position_embeddings", int64_t{8192});
        if (!r.type.empty() && r.type != "default") c.rope_scaling = r;
      }
    } catch (const json::exception& e) {
      fail(Errc::invalid_model, "{}: bad value: {}", cfg.string(), e.what());
    }
    if (c.n_embd <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.head_dim <= 0 || c.n_vocab <= 0 ||
        c.n_head % c.n_head_kv != 0 || c.head_dim % 2 != 0)
      fail(Errc::invalid_model, "{}: inconsistent hyper-parameters (hidden {}, layers {}, heads {}/{}, head_dim {})",
           cfg.string(), c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim);
  }

  void load_weights(const fs::path& given) {
    std::error_code ec;
    std::vector<fs::path> shards;
    std::map<std::string, std::string> weight_map;
    const fs::path index = dir_ / "model.safetensors.index.json";
    if (fs::is_regular_file(given, ec)) {
      shards.push_back(given);
    } else if (fs::exists(index, ec)) {
      json j;
      try {
        j = json::parse(read_file(index));
      } catch (const json::exception& e) {
        fail(Errc::invalid_model, "{}: malformed JSON: {}", index.string(), e.what());
      }
      if (!j.contains("weight_map") || !j["weight_map"].is_object())
        fail(Errc::invalid_model, "{}: no weight_map", index.string());
      std::set<std::string> names;
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it->is_string()) fail(Errc::invalid_model, "{}: weight_map entry '{}' is not a file name", index.string(), it.key());
        weight_map[it.key()] = it->get<std::string>();
        names.insert(it->get<std::string>());
      }
      for (const auto& n : names) {
        const fs::path p = dir_ / n;
        if (!fs::exists(p, ec))
          fail(Errc::invalid_model, "{}: shard '{}' named in the index is missing", index.string(), n);
        shards.push_back(p);
      }
    } else if (fs::exists(dir_ / "model.safetensors", ec)) {
      shards.push_back(dir_ / "model.safetensors");
    } else {
      for (const auto& e : fs::directory_iterator(dir_, ec))
        if (e.path().extension() == ".safetensors") shards.push_back(e.path());
      std::sort(shards.begin(), shards.end());
      if (shards.empty()) {
        if (fs::exists(dir_ / "pytorch_model.bin", ec) || fs::exists(dir_ / "pytorch_model.bin.index.json", ec))
          fail(Errc::invalid_model, "{}: only PyTorch .bin weights found; liblq reads safetensors", dir_.string());
        fail(Errc::invalid_model, "{}: no .safetensors weights found", dir_.string());
      }
    }
    for (const auto& s : shards) files_.push_back(std::make_unique<SafetensorsFile>(s));
    for (const auto& f : files_)
      for (const auto& t : f->tensors()) {
        if (by_name_.count(t.name))
          fail(Errc::invalid_model, "{}: tensor '{}' appears in two shards", f->path().string(), t.name);
        by_name_[t.name] = {f.get(), &t};
      }
    for (const auto& [name, file] : weight_map) {
      auto it = by_name_.find(name);
      if (it == by_name_.end())
        fail(Errc::invalid_model, "{}: tensor '{}' is listed in the index but absent from shard '{}'", index.string(), name,
             file);
      if (it->second.first->path().filename() != file)
        fail(Errc::invalid_model, "{}: tensor '{}' is in shard '{}', not '{}' as the index says", index.string(), name,
             it->second.first->path().filename().string(), file);
    }
  }

  void add(ModelTensor t, Entry e) {
    tensors_.push_back(std::move(t));
    entries_.push_back(std::move(e));
  }

  void build_tensors() {
    const ModelConfig& c = config_;
    const bool permute = c.architecture == "llama";
    for (const auto& [hf, loc] : by_name_) {
      auto m = map_name(hf, permute, loc.first->path().string());
      if (!m) continue;
      const StTensor& st = *loc.second;
      ModelTensor t;
      t.name = m->gguf;
      t.source_name = hf;
      t.type = st_dtype_to_type(st.dtype);
      if (t.type != QuantType::F32 && t.type != QuantType::F16 && t.type != QuantType::BF16)
        fail(Errc::invalid_model, "{}: tensor '{}' has dtype {}; weights must be F32, F16 or BF16",
             loc.first->path().string(), hf, st_dtype_name(st.dtype));
      t.ne.assign(st.shape.rbegin(), st.shape.rend());
      if (t.ne.empty()) t.ne.push_back(1);
      for (size_t k = 0; k < files_.size(); ++k)
        if (files_[k].get() == loc.first) t.split = static_cast<int>(k);
      Entry e{loc.first, &st, m->permute};
      add(std::move(t), std::move(e));
    }
    // Llama-3 rope scaling: llama.cpp reads the per-frequency factors from rope_freqs.weight.
    if (c.rope_scaling && c.rope_scaling->type == "llama3") add_llama3_rope_factors();
    std::vector<size_t> order(tensors_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return TensorOrder{}(tensors_[a], tensors_[b]); });
    std::vector<ModelTensor> t2;
    std::vector<Entry> e2;
    for (size_t i : order) {
      t2.push_back(std::move(tensors_[i]));
      e2.push_back(std::move(entries_[i]));
    }
    tensors_ = std::move(t2);
    entries_ = std::move(e2);
    if (!find("output.weight") && !c.tie_embeddings)
      fail(Errc::invalid_model, "{}: tensor 'lm_head.weight' is missing (and tie_word_embeddings is false)", dir_.string());
    config_.tie_embeddings = find("output.weight") == nullptr;
    validate_shapes();
    build_metadata();
  }

  void add_llama3_rope_factors() {
    const RopeScaling& rs = *config_.rope_scaling;
    const int64_t dim = config_.head_dim;
    const double low_wavelen = rs.original_context / rs.low_freq_factor;
    const double high_wavelen = rs.original_context / rs.high_freq_factor;
    std::vector<float> f;
    for (int64_t i = 0; i < dim; i += 2) {
      const float freq = 1.0f / std::pow(config_.rope_theta, static_cast<float>(i) / static_cast<float>(dim));
      const double wavelen = 2 * M_PI / freq;
      if (wavelen < high_wavelen) f.push_back(1.0f);
      else if (wavelen > low_wavelen) f.push_back(rs.factor);
      else {
        const double smooth = (rs.original_context / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f.push_back(static_cast<float>(1.0 / ((1 - smooth) / rs.factor + smooth)));
      }
    }
    ModelTensor t;
    t.name = "rope_freqs.weight";
    t.source_name = "(computed from rope_scaling)";
    t.type = QuantType::F32;
    t.ne = {static_cast<int64_t>(f.size())};
    Entry e;
    e.generated = true;
    e.generated_values = std::move(f);
    add(std::move(t), std::move(e));
  }

  void expect(const std::string& name, std::vector<int64_t> ne) {
    const ModelTensor* t = find(name);
    if (!t) fail(Errc::invalid_model, "{}: tensor for '{}' is missing", dir_.string(), name);
    if (t->ne != ne)
      fail(Errc::invalid_model, "{}: tensor '{}' ({}) has shape [{}], expected [{}]", dir_.string(), t->source_name, name,
           fmt::join(std::vector<int64_t>(t->ne.rbegin(), t->ne.rend()), ", "),
           fmt::join(std::vector<int64_t>(ne.rbegin(), ne.rend()), ", "));
  }

  void validate_shapes() {
    const ModelConfig& c = config_;
    const int64_t q = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
    expect("token_embd.weight", {c.n_embd, c.n_vocab});
    expect("output_norm.weight", {c.n_embd});
    if (!c.tie_embeddings) expect("output.weight", {c.n_embd, c.n_vocab});
    std::set<std::string> known = {"token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight"};
    for (int64_t l = 0; l < c.n_layer; ++l) {
      const std::string b = fmt::format("blk.{}.", l);
      expect(b + "attn_norm.weight", {c.n_embd});
      expect(b + "ffn_norm.weight", {c.n_embd});
      expect(b + "attn_q.weight", {c.n_embd, q});
      expect(b + "attn_k.weight", {c.n_embd, kv});
      expect(b + "attn_v.weight", {c.n_embd, kv});
      expect(b + "attn_output.weight", {q, c.n_embd});
      expect(b + "ffn_gate.weight", {c.n_embd, c.n_ff});
      expect(b + "ffn_up.weight", {c.n_embd, c.n_ff});
      expect(b + "ffn_down.weight", {c.n_ff, c.n_embd});
      for (const char* n : {"attn_norm", "ffn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"})
        known.insert(b + n + ".weight");
      if (c.qkv_bias) {
        expect(b + "attn_q.bias", {q});
        expect(b + "attn_k.bias", {kv});
        expect(b + "attn_v.bias", {kv});
      }
      for (const char* n : {"attn_q", "attn_k", "attn_v"}) known.insert(b + n + ".bias");
    }
    for (const auto& t : tensors_)
      if (!known.count(t.name))
        fail(Errc::invalid_model, "{}: tensor '{}' does not belong to a {}-layer model", dir_.string(), t.source_name,
             c.n_layer);
  }

  void build_metadata() {
    const ModelConfig& c = config_;
    const std::string a = c.architecture + ".";
    gguf::Metadata& m = metadata_;
    uint64_t params = 0;
    for (const auto& t : tensors_) params += static_cast<uint64_t>(t.n_elements());
    m.set("general.architecture", gguf::Value::string(c.architecture));
    m.set("general.type", gguf::Value::string("model"));
    m.set("general.name", gguf::Value::string(c.name));
    m.set("general.size_label", gguf::Value::string(size_label(params)));
    m.set(a + "block_count", gguf::Value::u32(static_cast<uint32_t>(c.n_layer)));
    if (c.n_ctx_train > 0) m.set(a + "context_length", gguf::Value::u32(static_cast<uint32_t>(c.n_ctx_train)));
    m.set(a + "embedding_length", gguf::Value::u32(static_cast<uint32_t>(c.n_embd)));
    m.set(a + "feed_forward_length", gguf::Value::u32(static_cast<uint32_t>(c.n_ff)));
    m.set(a + "attention.head_count", gguf::Value::u32(static_cast<uint32_t>(c.n_head)));
    if (text_.contains("num_key_value_heads"))
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
    if (text_.contains("rope_theta")) m.set(a + "rope.freq_base", gguf::Value::f32(c.rope_theta));
    if (text_.contains("rms_norm_eps")) m.set(a + "attention.layer_norm_rms_epsilon", gguf::Value::f32(c.rms_eps));
    if (text_.contains("head_dim")) {
      m.set(a + "attention.key_length", gguf::Value::u32(static_cast<uint32_t>(c.head_dim)));
      m.set(a + "attention.value_length", gguf::Value::u32(static_cast<uint32_t>(c.head_dim)));
    }
    m.set(a + "vocab_size", gguf::Value::u32(static_cast<uint32_t>(c.n_vocab)));
    m.set(a + "rope.dimension_count", gguf::Value::u32(static_cast<uint32_t>(c.head_dim)));
    tokenizer_gguf_metadata(dir_, m);
  }

  fs::path dir_;
  fs::path path_;
  json config_json_;
  json text_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<const SafetensorsFile*, const StTensor*>> by_name_;
  std::vector<ModelTensor> tensors_;
  std::vector<Entry> entries_;
  gguf::Metadata metadata_;
};

}  // namespace

std::unique_ptr<ModelSource> open_hf_source(const fs::path& path) { return std::make_unique<HfSource>(path); }

}  // namespace lq
