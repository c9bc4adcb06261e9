// ModelSource over a Hugging Face checkpoint: safetensors weights (single file or sharded with
// model.safetensors.index.json) beside config.json. Tensors are presented in GGUF naming
// (model/tensor_names) and ggml order, shapes checked against the config; the q/k projections
// are re-ordered row by row from HF's rotate-half layout into the adjacent-pair layout
// llama.cpp's "normal" RoPE expects where the architecture's row says so (model/architecture). Hyper-parameters
// and their GGUF keys are model/config's, decoding to float model/decode's.
// A compressed-tensors int8 checkpoint (W8A8) presents each int8 linear as a W8 tensor: every row
// its weight_scale (as float) and then its int8 values, so the engine runs it with int8 products.
// GPTQ, AWQ and the other compressed-tensors schemes (model/quant_scheme) present each quantized
// linear as F32 in HF layout, dequantized exactly from its codes (formats/quant_unpack) one tensor at
// a time when first read (the last two are kept); hf_quantized_linear() gives the codes themselves.
#include "model/architecture.hpp"
#include "model/config.hpp"
#include "model/sources.hpp"
#include "model/tensor_names.hpp"

#include "formats/quant_unpack.hpp"
#include "formats/safetensors.hpp"

#include <lq/decode.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/io.hpp>
#include <lq/tokenizer.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <set>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq {
namespace {

struct Mapping {
  std::string gguf;
  enum class Permute { none, q, k } permute = Permute::none;
};

// HF tensor name -> GGUF name (Llama family). Returns nullopt for tensors to skip.
std::optional<Mapping> map_name(const std::string& hf, bool permute_qk, const std::string& file,
                                const Architecture& arch) {
  if (names::hf_recomputed(hf)) return std::nullopt;
  if (arch.drops_lm_head && hf == "lm_head.weight") return std::nullopt;
  auto gguf = arch.sandwich_norms ? names::hf_to_gguf_sandwich(hf) : names::hf_to_gguf(hf);
  if (!gguf) fail(Errc::invalid_model, "{}: tensor '{}' is not part of the Llama architecture", file, hf);
  Mapping mp{std::move(*gguf)};
  if (permute_qk) {
    const std::string_view rest = names::split(mp.gguf).rest;
    if (rest == "attn_q.weight" || rest == "attn_q.bias") mp.permute = Mapping::Permute::q;
    if (rest == "attn_k.weight" || rest == "attn_k.bias") mp.permute = Mapping::Permute::k;
  }
  return mp;
}

// Tensors that belong to an int8 linear's weight rather than standing for themselves.
bool int8_companion(const std::string& hf) {
  for (std::string_view s : {".weight_scale", ".input_scale", ".weight_zero_point", ".input_zero_point"})
    if (hf.size() > s.size() && hf.compare(hf.size() - s.size(), s.size(), s) == 0) return true;
  return false;
}

// Suffixes of the tensors that make up a third-party quantized linear beside (or instead of) its
// weight; the main tensor of each is qweight, weight_packed, or an int8 / FP8 weight.
constexpr std::string_view kQuantParts[] = {".qweight", ".qzeros", ".scales", ".g_idx", ".weight_packed",
                                            ".weight_scale", ".weight_zero_point", ".weight_shape", ".weight_g_idx",
                                            ".input_scale", ".input_zero_point"};

// The module and suffix of a tensor name when it is one of kQuantParts (else an empty module).
std::pair<std::string, std::string_view> quant_part(const std::string& hf) {
  for (std::string_view s : kQuantParts)
    if (hf.size() > s.size() && hf.compare(hf.size() - s.size(), s.size(), s) == 0)
      return {hf.substr(0, hf.size() - s.size()), s};
  return {};
}

// Sort key of llama-quantize's visit order: non-block tensors by name, then by layer, then name.
struct TensorOrder {
  bool operator()(const ModelTensor& a, const ModelTensor& b) const { return key(a.name) < key(b.name); }
  static std::tuple<int, int, std::string_view> key(const std::string& n) {
    const names::SplitName s = names::split(n);
    if (s.block >= 0) return {1, s.block, s.rest};
    return {0, 0, n};
  }
};

using names::multimodal_part;
using names::text_model_name;

class HfSource final : public ModelSource {
 public:
  explicit HfSource(const fs::path& path) {
    std::error_code ec;
    dir_ = fs::is_directory(path, ec) ? path : path.parent_path();
    path_ = path;
    if (dir_.empty()) dir_ = ".";
    hf_ = read_hf_config(dir_);
    config_ = hf_.config;
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
    if (!e.experts.empty()) {  // a merged expert tensor: each expert's rows from its own tensor
      const int64_t per = t.ne[1];
      const size_t rb = t.row_bytes();
      auto* out = static_cast<uint8_t*>(dst);
      for (int64_t r = row0; r < row0 + nrows;) {
        const int64_t x = r / per, n = std::min(row0 + nrows, (x + 1) * per) - r;
        if (!e.expert_scales.empty()) {  // W8: each row's scale, then its int8 values from expert x's tensor
          const auto& [f, st] = e.experts[static_cast<size_t>(x)];
          const auto in = static_cast<size_t>(t.row_length());
          for (int64_t i = 0; i < n; ++i) {
            const int64_t src = r - x * per + i;
            uint8_t* o = out + static_cast<size_t>(i) * rb;
            std::memcpy(o, &e.expert_scales[static_cast<size_t>(x)][static_cast<size_t>(src)], 4);
            f->read(st->begin + static_cast<uint64_t>(src) * in, in, o + 4);
          }
          out += static_cast<size_t>(n) * rb;
          r += n;
          continue;
        }
        if (!e.expert_quant.empty()) {  // dequantized F32 rows of expert x's quantized linear
          const std::shared_ptr<const Unpacked> u = unpacked(e.expert_quant[static_cast<size_t>(x)]);
          for (int64_t i = 0; i < n; ++i) u->row(r - x * per + i, reinterpret_cast<float*>(out + static_cast<size_t>(i) * rb));
          out += static_cast<size_t>(n) * rb;
          r += n;
          continue;
        }
        const auto& [f, st] = e.experts[static_cast<size_t>(x)];
        f->read(st->begin + static_cast<uint64_t>(r - x * per) * rb, static_cast<size_t>(n) * rb, out);
        out += static_cast<size_t>(n) * rb;
        r += n;
      }
      return;
    }
    if (e.generated) {
      LQ_ASSERT(row0 == 0 && nrows == 1);
      std::memcpy(dst, e.generated_values.data(), e.generated_values.size() * sizeof(float));
      return;
    }
    if (e.plus_one) {  // a (1 + w) norm: stored as float(w) + 1, as the converter writes it
      const QuantType st = st_dtype_to_type(e.st->dtype);
      const size_t srb = type_info(st).row_bytes(t.row_length());
      std::vector<uint8_t> raw(static_cast<size_t>(nrows) * srb);
      e.file->read(e.st->begin + static_cast<uint64_t>(row0) * srb, raw.size(), raw.data());
      auto* f = static_cast<float*>(dst);
      decode_rows_f32(st, raw.data(), t.row_length(), nrows, f);
      for (int64_t i = 0; i < nrows * t.row_length(); ++i) f[i] += 1.0f;
      return;
    }
    const size_t rb = t.row_bytes();
    auto* out = static_cast<uint8_t*>(dst);
    if (e.quant) {  // dequantized F32 rows of a third-party quantized linear
      const std::shared_ptr<const Unpacked> u = unpacked(e);
      for (int64_t r = row0; r < row0 + nrows; ++r)
        u->row(source_row(e, r), reinterpret_cast<float*>(out + static_cast<size_t>(r - row0) * rb));
      return;
    }
    if (!e.scales.empty()) {  // W8: the row's scale, then its int8 values from the file
      const auto in = static_cast<size_t>(t.row_length());
      for (int64_t r = row0; r < row0 + nrows; ++r) {
        const int64_t src = source_row(e, r);
        uint8_t* o = out + static_cast<size_t>(r - row0) * rb;
        std::memcpy(o, &e.scales[static_cast<size_t>(src)], 4);
        e.file->read(e.st->begin + static_cast<uint64_t>(src) * in, in, o + 4);
      }
      return;
    }
    if (e.permute == Mapping::Permute::none) {
      e.file->read(e.st->begin + static_cast<uint64_t>(row0) * rb, static_cast<size_t>(nrows) * rb, out);
      return;
    }
    // Gather rows one run at a time: within a head, GGUF row 2i+j is HF row j*(hd/2)+i.
    for (int64_t r = row0; r < row0 + nrows; ++r)
      e.file->read(e.st->begin + static_cast<uint64_t>(source_row(e, r)) * rb, rb, out + (r - row0) * rb);
  }

  std::shared_ptr<const uint8_t> share_raw(const ModelTensor& t) const override {
    const Entry& e = entry(t);
    if (e.generated || e.permute != Mapping::Permute::none || !e.scales.empty() || e.quant || e.plus_one ||
        !e.experts.empty())
      return nullptr;
    return e.file->share(e.st->begin, t.row_bytes() * static_cast<size_t>(t.n_rows()));
  }

  void read_rows_f32(const ModelTensor& t, int64_t row0, int64_t nrows, float* dst) const override {
    const Entry& e = entry(t);
    if (e.generated || t.type == QuantType::F32) {
      read_rows_raw(t, row0, nrows, dst);
      return;
    }
    thread_local std::vector<uint8_t> raw;
    raw.resize(static_cast<size_t>(nrows) * t.row_bytes());
    read_rows_raw(t, row0, nrows, raw.data());
    decode_rows_f32(t.type, raw.data(), t.row_length(), nrows, dst);
  }

  gguf::Metadata gguf_metadata() const override { return metadata_; }

  const HfConfig& hf_config() const { return hf_; }
  bool is_fp8(const ModelTensor& t) const {
    const Entry& e = entry(t);
    return e.quant && e.quant->scheme.packing == Packing::ct_fp8;
  }

  // The codes of a third-party int linear with rows in GGUF order; null for other tensors.
  std::optional<QuantizedLinear> quantized_linear(const ModelTensor& t) const {
    const Entry& e = entry(t);
    if (!e.expert_quant.empty()) return merged_expert_codes(e);
    if (!e.quant || e.quant->scheme.packing == Packing::ct_fp8) return std::nullopt;
    const std::shared_ptr<const Unpacked> u = unpacked(e);
    QuantizedLinear ql;
    ql.scheme = e.quant->scheme;
    if (e.permute == Mapping::Permute::none) {
      ql.weight = std::shared_ptr<const unpack::IntWeight>(u, &*u->iw);
      return ql;
    }
    auto w = std::make_shared<unpack::IntWeight>(*u->iw);
    const int64_t cols = w->cols, G = w->n_groups;
    for (int64_t r = 0; r < w->rows; ++r) {
      const int64_t sr = source_row(e, r);
      std::memcpy(&w->q[static_cast<size_t>(r * cols)], &u->iw->q[static_cast<size_t>(sr * cols)], static_cast<size_t>(cols));
      for (int64_t g = 0; g < G; ++g) {
        w->scale[static_cast<size_t>(r * G + g)] = u->iw->scale[static_cast<size_t>(sr * G + g)];
        w->zero[static_cast<size_t>(r * G + g)] = u->iw->zero[static_cast<size_t>(sr * G + g)];
      }
    }
    ql.weight = std::move(w);
    return ql;
  }

 private:
  // A third-party quantized linear: its module, scheme, HF shape and the tensors holding it.
  struct QuantEntry {
    std::string mod;
    WeightScheme scheme;
    int64_t out = 0, in = 0;
  };
  // Its values once unpacked: codes (int schemes) or floats (FP8).
  struct Unpacked {
    std::optional<unpack::IntWeight> iw;
    std::vector<float> f;
    int64_t in = 0;
    void row(int64_t r, float* dst) const {
      if (iw) iw->dequantize_rows(r, 1, dst);
      else std::memcpy(dst, f.data() + r * in, static_cast<size_t>(in) * sizeof(float));
    }
  };
  struct Entry {
    const SafetensorsFile* file = nullptr;
    const StTensor* st = nullptr;
    Mapping::Permute permute = Mapping::Permute::none;
    bool generated = false;
    std::vector<float> generated_values;
    std::vector<float> scales;  // W8: one weight scale per stored (HF) row
    std::shared_ptr<const QuantEntry> quant;  // a third-party quantized linear (read dequantized)
    bool plus_one = false;  // a (1 + w) norm presented as F32 float(w) + 1
    // A merged expert tensor (ffn_*_exps): expert i's 2-D tensor in the checkpoint, read on demand.
    std::vector<std::pair<const SafetensorsFile*, const StTensor*>> experts;
    // ... or, in a quantized checkpoint, expert i's quantized linear (read dequantized).
    std::vector<std::shared_ptr<const QuantEntry>> expert_quant;
    // ... or, in an int8 (W8A8) checkpoint, expert i's weight scales (one per row; rows read as W8).
    std::vector<std::vector<float>> expert_scales;
  };

  // The stored row that holds presented row r (q/k rows are re-ordered for RoPE).
  int64_t source_row(const Entry& e, int64_t r) const {
    if (e.permute == Mapping::Permute::none) return r;
    const int64_t hd = config_.head_dim;
    const int64_t h = r / hd, w = r % hd;
    return h * hd + (w % 2) * (hd / 2) + w / 2;
  }

  // Values of a small tensor (scales, zero points) as float.
  std::vector<float> small_f32(const SafetensorsFile& f, const StTensor& st) const {
    const QuantType ty = st_dtype_to_type(st.dtype);
    if (ty != QuantType::F32 && ty != QuantType::F16 && ty != QuantType::BF16 && ty != QuantType::I8 &&
        ty != QuantType::I32)
      fail(Errc::invalid_model, "{}: tensor '{}' has dtype {}, expected a float or int scale", f.path().string(), st.name,
           st_dtype_name(st.dtype));
    const size_t es = st_dtype_size(st.dtype);
    const int64_t n = static_cast<int64_t>(st.nbytes / es);
    std::vector<uint8_t> raw(st.nbytes);
    f.read(st.begin, raw.size(), raw.data());
    std::vector<float> v(static_cast<size_t>(n));
    if (ty == QuantType::I8) {
      for (int64_t i = 0; i < n; ++i) v[i] = static_cast<int8_t>(raw[i]);
    } else if (ty == QuantType::I32) {
      for (int64_t i = 0; i < n; ++i) {
        int32_t x;
        std::memcpy(&x, raw.data() + 4 * i, 4);
        v[i] = static_cast<float>(x);
      }
    } else {
      decode_rows_f32(ty, raw.data(), n, 1, v.data());
    }
    return v;
  }

  // An int8 linear weight of a compressed-tensors checkpoint as W8: its weight_scale becomes the
  // rows' headers. Returns its static activation scale (input_scale; 0: dynamic per token).
  // Anything this engine cannot run as stored is named.
  float make_w8(const std::string& hf, const SafetensorsFile& f, const StTensor& st, ModelTensor& t, Entry& e) {
    const std::string file = f.path().string();
    const std::string suffix = ".weight";
    if (hf.size() <= suffix.size() || hf.compare(hf.size() - suffix.size(), suffix.size(), suffix) != 0 || st.shape.size() != 2)
      fail(Errc::invalid_model, "{}: int8 tensor '{}' is not a linear layer's 2-D weight", file, hf);
    const std::string mod = hf.substr(0, hf.size() - suffix.size());
    if (hf_.int8->ignored(mod))
      fail(Errc::invalid_model, "{}: module '{}' is on the quantization ignore list but its weight is int8", file, mod);
    const int64_t rows = st.shape[0];
    auto companion = [&](const char* name) -> std::pair<const SafetensorsFile*, const StTensor*> {
      const auto* p = stored(mod + name);
      return p ? *p : std::pair<const SafetensorsFile*, const StTensor*>{nullptr, nullptr};
    };
    const auto [sf, ss] = companion(".weight_scale");
    if (!ss) fail(Errc::invalid_model, "{}: int8 weight '{}' has no '{}.weight_scale'", file, hf, mod);
    if (st_dtype_to_type(ss->dtype) == QuantType::I8 || st_dtype_to_type(ss->dtype) == QuantType::I32)
      fail(Errc::invalid_model, "{}: '{}' has dtype {}, expected F32, F16 or BF16", file, ss->name, st_dtype_name(ss->dtype));
    std::vector<float> s = small_f32(*sf, *ss);
    // Per channel: [out, 1] (or [out]); per tensor: [1] (or a scalar).
    if (static_cast<int64_t>(s.size()) == 1 && rows != 1) s.assign(static_cast<size_t>(rows), s[0]);
    if (static_cast<int64_t>(s.size()) != rows || (ss->shape.size() == 2 && ss->shape[1] != 1) || ss->shape.size() > 2)
      fail(Errc::invalid_model, "{}: '{}' has shape [{}]; for weight [{}, {}] it must be [{}, 1] (per channel) or [1] "
           "(per tensor); grouped scales are not supported", file, ss->name, fmt::join(ss->shape, ", "), rows,
           st.shape[1], rows);
    for (size_t i = 0; i < s.size(); ++i)
      if (!std::isfinite(s[i]) || s[i] < 0)
        fail(Errc::invalid_model, "{}: '{}' row {} has scale {}, not a finite non-negative number", file, ss->name, i, s[i]);
    if (const auto [zf, zs] = companion(".weight_zero_point"); zs)
      for (float z : small_f32(*zf, *zs))
        if (z != 0) fail(Errc::invalid_model, "{}: '{}' is not zero: asymmetric int8 weights are not supported", file, zs->name);
    if (companion(".input_zero_point").second)
      fail(Errc::invalid_model, "{}: '{}.input_zero_point': asymmetric activations are not supported", file, mod);
    float input_scale = 0;
    const auto [inf, ins] = companion(".input_scale");
    if (ins && !hf_.int8->static_activations)
      fail(Errc::invalid_model, "{}: '{}' is stored but the activations are dynamic per token", file, ins->name);
    if (!ins && hf_.int8->static_activations)
      fail(Errc::invalid_model, "{}: static activations need '{}.input_scale', which is missing", file, mod);
    if (ins) {
      const std::vector<float> v = small_f32(*inf, *ins);
      if (v.size() != 1)
        fail(Errc::invalid_model, "{}: '{}' holds {} values; only per-tensor input scales ([1]) are supported", file,
             ins->name, v.size());
      if (!std::isfinite(v[0]) || !(v[0] > 0))
        fail(Errc::invalid_model, "{}: '{}' is {}, not a positive number", file, ins->name, v[0]);
      input_scale = v[0];
    }
    t.type = QuantType::W8;
    e.scales = std::move(s);
    return input_scale;
  }

  // The part `suffix` of quantized module `q`, or null.
  const std::pair<const SafetensorsFile*, const StTensor*>* part(const QuantEntry& q, std::string_view suffix) const {
    return stored(q.mod + std::string(suffix));
  }
  // A tensor by its text-model name (a multimodal checkpoint stores it under language_model.), or null.
  const std::pair<const SafetensorsFile*, const StTensor*>* stored(const std::string& text_name) const {
    auto it = by_name_.find(text_name);
    if (it == by_name_.end())
      if (auto w = stored_name_.find(text_name); w != stored_name_.end()) it = by_name_.find(w->second);
    return it == by_name_.end() ? nullptr : &it->second;
  }
  const std::pair<const SafetensorsFile*, const StTensor*>& need_part(const QuantEntry& q, std::string_view suffix) const {
    if (const auto* p = part(q, suffix)) return *p;
    fail(Errc::invalid_model, "{}: '{}{}' is missing ({} needs it)", dir_.string(), q.mod, suffix, q.scheme.describe());
  }
  std::vector<uint8_t> read_all(const std::pair<const SafetensorsFile*, const StTensor*>& p) const {
    std::vector<uint8_t> raw(p.second->nbytes);
    p.first->read(p.second->begin, raw.size(), raw.data());
    return raw;
  }
  template <typename T>
  std::vector<T> read_as(const std::pair<const SafetensorsFile*, const StTensor*>& p, StDtype want) const {
    if (p.second->dtype != want)
      fail(Errc::invalid_model, "{}: '{}' has dtype {}, expected {}", p.first->path().string(), p.second->name,
           st_dtype_name(p.second->dtype), st_dtype_name(want));
    const std::vector<uint8_t> raw = read_all(p);
    std::vector<T> v(raw.size() / sizeof(T));
    std::memcpy(v.data(), raw.data(), v.size() * sizeof(T));
    return v;
  }
  std::vector<float> read_scales(const std::pair<const SafetensorsFile*, const StTensor*>& p) const {
    const StDtype d = p.second->dtype;
    if (d != StDtype::F32 && d != StDtype::F16 && d != StDtype::BF16)
      fail(Errc::invalid_model, "{}: '{}' has dtype {}, expected F16, BF16 or F32 scales", p.first->path().string(),
           p.second->name, st_dtype_name(d));
    std::vector<float> v = small_f32(*p.first, *p.second);
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        fail(Errc::invalid_model, "{}: '{}' holds a non-finite scale at {}", p.first->path().string(), p.second->name, i);
    return v;
  }
  static std::string shape_str(const std::vector<int64_t>& v) { return fmt::format("[{}]", fmt::join(v, ", ")); }
  void expect_shape(const std::pair<const SafetensorsFile*, const StTensor*>& p, const std::vector<int64_t>& want,
                    const QuantEntry& q) const {
    if (p.second->shape != want)
      fail(Errc::invalid_model, "{}: '{}' has shape {}, expected {} for a [{}, {}] linear ({})", p.first->path().string(),
           p.second->name, shape_str(p.second->shape), shape_str(want), q.out, q.in, q.scheme.describe());
  }

  // Unpacks one quantized linear; every tensor it needs is checked (dtype, shape against the config).
  std::shared_ptr<Unpacked> unpack_linear(const QuantEntry& q) const {
    auto u = std::make_shared<Unpacked>();
    u->in = q.in;
    const WeightScheme& s = q.scheme;
    const int64_t G = s.group_size > 0 ? (q.in + s.group_size - 1) / s.group_size : 1;
    const std::string where = fmt::format("{}: '{}'", dir_.string(), q.mod);
    try {
      switch (s.packing) {
        case Packing::gptq: {
          const auto& qw = need_part(q, ".qweight");
          const auto& sc = need_part(q, ".scales");
          const auto* qz = part(q, ".qzeros");
          if (!qz && !s.sym) need_part(q, ".qzeros");
          const auto* gi = part(q, ".g_idx");
          if (!gi && s.actorder) need_part(q, ".g_idx");
          if (std::string err = unpack::gptq_shape_error(q.out, q.in, s.bits, G, qw.second->shape,
                                                         qz ? qz->second->shape : std::vector<int64_t>{}, sc.second->shape);
              !err.empty())
            fail(Errc::invalid_model, "{}: {} for a [{}, {}] linear ({})", where, err, q.out, q.in, s.describe());
          std::vector<int32_t> g;
          if (gi) {
            expect_shape(*gi, {q.in}, q);
            g = read_as<int32_t>(*gi, StDtype::I32);
          }
          u->iw = unpack::gptq(read_as<int32_t>(qw, StDtype::I32), qz ? read_as<int32_t>(*qz, StDtype::I32) : std::vector<int32_t>{},
                               read_scales(sc), g, q.out, q.in, s.bits, s.group_size, s.v1_zeros);
          break;
        }
        case Packing::awq_gemm: {
          const auto& qw = need_part(q, ".qweight");
          const auto& sc = need_part(q, ".scales");
          const auto* qz = part(q, ".qzeros");
          if (!qz && !s.sym) need_part(q, ".qzeros");
          if (q.out % 8 != 0 || q.in % s.group_size != 0)
            fail(Errc::invalid_model, "{}: a [{}, {}] linear does not fit AWQ's layout (out a multiple of 8, in of the group "
                 "size {})", where, q.out, q.in, s.group_size);
          expect_shape(qw, {q.in, q.out / 8}, q);
          expect_shape(sc, {q.in / s.group_size, q.out}, q);
          if (qz) expect_shape(*qz, {q.in / s.group_size, q.out / 8}, q);
          u->iw = unpack::awq_gemm(read_as<int32_t>(qw, StDtype::I32),
                                   qz ? read_as<int32_t>(*qz, StDtype::I32) : std::vector<int32_t>{}, read_scales(sc), q.out,
                                   q.in, s.group_size);
          break;
        }
        case Packing::ct_packed:
        case Packing::ct_int: {
          const bool packed = s.packing == Packing::ct_packed;
          const auto& w = need_part(q, packed ? ".weight_packed" : ".weight");
          const auto& sc = need_part(q, ".weight_scale");
          const auto* zp = part(q, ".weight_zero_point");
          if (!zp && !s.sym) need_part(q, ".weight_zero_point");
          const auto* gi = part(q, ".weight_g_idx");
          if (packed) expect_shape(w, {q.out, (q.in * s.bits + 31) / 32}, q);
          else expect_shape(w, {q.out, q.in}, q);
          if (const auto* ws = part(q, ".weight_shape")) {
            std::vector<int64_t> shp;
            if (ws->second->dtype == StDtype::I64) shp = read_as<int64_t>(*ws, StDtype::I64);
            else for (float v : small_f32(*ws->first, *ws->second)) shp.push_back(static_cast<int64_t>(v));
            if (shp != std::vector<int64_t>{q.out, q.in})
              fail(Errc::invalid_model, "{}: '{}' says {}, the config gives [{}, {}]", dir_.string(), ws->second->name,
                   shape_str(shp), q.out, q.in);
          }
          const int64_t n_scale = s.strategy == "tensor" ? 1 : s.strategy == "channel" ? q.out : q.out * G;
          if (static_cast<int64_t>(sc.second->nbytes / st_dtype_size(sc.second->dtype)) != n_scale)
            fail(Errc::invalid_model, "{}: '{}' has shape {}, expected {} scales for strategy {} of a [{}, {}] linear",
                 dir_.string(), sc.second->name, shape_str(sc.second->shape), n_scale, s.strategy, q.out, q.in);
          std::vector<int32_t> g;
          if (gi) {
            expect_shape(*gi, {q.in}, q);
            g = read_as<int32_t>(*gi, StDtype::I32);
          }
          std::vector<int32_t> zpk;
          std::vector<int8_t> zs;
          if (zp && zp->second->dtype == StDtype::I32 && packed) zpk = read_as<int32_t>(*zp, StDtype::I32);
          else if (zp) zs = read_as<int8_t>(*zp, StDtype::I8);
          if (s.sym) {
            for (int8_t z : zs)
              if (z != 0) fail(Errc::invalid_model, "{}: '{}' is not zero but the scheme is symmetric", dir_.string(), zp->second->name);
            zs.clear();
            zpk.clear();
          }
          u->iw = packed ? unpack::ct_packed(read_as<int32_t>(w, StDtype::I32), read_scales(sc), zpk, zs, g, q.out, q.in,
                                             s.bits, s.group_size)
                         : unpack::ct_int8(read_as<int8_t>(w, StDtype::I8), read_scales(sc), zs, g, q.out, q.in, s.bits,
                                           s.group_size);
          break;
        }
        case Packing::ct_fp8: {
          const auto& w = need_part(q, ".weight");
          const auto& sc = need_part(q, ".weight_scale");
          expect_shape(w, {q.out, q.in}, q);
          int64_t br = q.out, bc = q.in;
          std::vector<int64_t> want = {1};
          if (s.strategy == "channel") {
            br = 1;
            want = {q.out, 1};
          } else if (s.strategy == "block") {
            br = s.block_rows;
            bc = s.block_cols;
            want = {(q.out + br - 1) / br, (q.in + bc - 1) / bc};
          }
          const std::vector<float> scales = read_scales(sc);
          int64_t n_want = 1;
          for (int64_t d : want) n_want *= d;
          if (static_cast<int64_t>(scales.size()) != n_want)
            fail(Errc::invalid_model, "{}: '{}' has shape {}, expected {} (FP8 per {}) for a [{}, {}] linear", dir_.string(),
                 sc.second->name, shape_str(sc.second->shape), shape_str(want), s.strategy, q.out, q.in);
          const std::vector<uint8_t> bytes = read_as<uint8_t>(w, StDtype::F8_E4M3);
          u->f.resize(static_cast<size_t>(q.out * q.in));
          if (const int64_t nan = unpack::fp8_dequantize_rows(bytes, scales, q.in, br, bc, 0, q.out, u->f.data()); nan >= 0)
            fail(Errc::invalid_model, "{}: '{}' holds NaN (0x{:02x}) at [{}, {}]", dir_.string(), w.second->name,
                 bytes[static_cast<size_t>(nan)], nan / q.in, nan % q.in);
          break;
        }
      }
    } catch (const Error& e) {
      const std::string msg = e.what();
      if (msg.find(q.mod) != std::string::npos) throw;
      fail(Errc::invalid_model, "{}: {}", where, msg);
    }
    return u;
  }

  // The unpacked values of `e`, from a cache of the last two tensors read.
  std::shared_ptr<const Unpacked> unpacked(const Entry& e) const { return unpacked(e.quant); }
  std::shared_ptr<const Unpacked> unpacked(const std::shared_ptr<const QuantEntry>& q) const {
    {
      std::lock_guard<std::mutex> lock(qmu_);
      for (const auto& [k, v] : qcache_)
        if (k == q.get()) return v;
    }
    std::shared_ptr<const Unpacked> u = unpack_linear(*q);
    std::lock_guard<std::mutex> lock(qmu_);
    qcache_.insert(qcache_.begin(), {q.get(), u});
    if (qcache_.size() > 2) qcache_.pop_back();
    return u;
  }

  // [out, in] of a linear from the config, by its GGUF name.
  std::pair<int64_t, int64_t> linear_shape(const std::string& gguf) const {
    const ModelConfig& c = config_;
    const int64_t q = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
    const std::string_view rest = names::split(gguf).rest;
    if (gguf == "output.weight") return {c.n_vocab, c.n_embd};
    if (rest == "attn_q.weight") return {q, c.n_embd};
    if (rest == "attn_k.weight" || rest == "attn_v.weight") return {kv, c.n_embd};
    if (rest == "attn_qkv.weight") return {q + 2 * kv, c.n_embd};  // phi3's fused q/k/v
    if (rest == "attn_output.weight") return {c.n_embd, q};
    if (rest == "ffn_up.weight" && architecture_of(c, path_.string()).fused_gate_up) return {2 * c.n_ff, c.n_embd};
    if (rest == "ffn_gate.weight" || rest == "ffn_up.weight") return {c.n_ff, c.n_embd};
    if (rest == "ffn_down.weight") return {c.n_embd, c.n_ff};
    if (rest == "ffn_gate_shexp.weight" || rest == "ffn_up_shexp.weight") return {c.n_ff_shexp, c.n_embd};
    if (rest == "ffn_down_shexp.weight") return {c.n_embd, c.n_ff_shexp};
    fail(Errc::invalid_model, "{}: tensor '{}' is quantized but is not a linear layer", dir_.string(), gguf);
  }

  // The GGUF-side tensor of a quantized module, all of it checked now so errors come at open.
  void add_quantized(const std::string& mod, std::string_view main_suffix, const WeightScheme& scheme, bool permute) {
    const std::string hf = mod + ".weight";
    const auto& loc = *stored(mod + std::string(main_suffix));
    auto m = map_name(hf, permute, loc.first->path().string(), architecture_of(config_, path_.string()));
    if (!m) fail(Errc::invalid_model, "{}: '{}' is quantized but is not a linear layer", dir_.string(), mod);
    auto q = std::make_shared<QuantEntry>();
    q->mod = mod;
    q->scheme = scheme;
    std::tie(q->out, q->in) = linear_shape(m->gguf);
    // The parts the scheme needs must be there (their shapes and values are checked when read).
    const bool ct = scheme.packing == Packing::ct_packed || scheme.packing == Packing::ct_int || scheme.packing == Packing::ct_fp8;
    need_part(*q, ct ? ".weight_scale" : ".scales");
    if (!scheme.sym) need_part(*q, ct ? ".weight_zero_point" : ".qzeros");
    if (scheme.packing == Packing::gptq && scheme.actorder) need_part(*q, ".g_idx");
    ModelTensor t;
    t.name = m->gguf;
    t.source_name = mod + std::string(main_suffix);
    t.type = QuantType::F32;
    t.ne = {q->in, q->out};
    for (size_t k = 0; k < files_.size(); ++k)
      if (files_[k].get() == loc.first) t.split = static_cast<int>(k);
    Entry e{loc.first, loc.second, m->permute};
    quant_mods_.insert(mod);
    e.quant = std::move(q);
    add(std::move(t), std::move(e));
  }

  // Third-party quantized checkpoints: each tensor is a quantized linear's main part (added
  // dequantized), one of its other parts (skipped), or an ordinary tensor (returns false).
  bool build_quantized_tensor(const std::string& hf, const StTensor& st, bool permute) {
    const QuantCheckpoint& qc = *hf_.quant;
    auto [mod, suffix] = quant_part(hf);
    std::string_view main_suffix;
    if (!mod.empty()) {
      if (suffix != ".qweight" && suffix != ".weight_packed") return true;
      main_suffix = suffix;
    } else if (hf.ends_with(".weight") && (st.dtype == StDtype::I8 || st.dtype == StDtype::F8_E4M3)) {
      mod = hf.substr(0, hf.size() - 7);
      main_suffix = ".weight";
    } else if (hf.ends_with(".bias") && stored(hf.substr(0, hf.size() - 5) + ".qweight") &&
               !(config_.qkv_bias && (hf.ends_with("q_proj.bias") || hf.ends_with("k_proj.bias") || hf.ends_with("v_proj.bias")))) {
      // AutoGPTQ saves a bias for every quantized linear; all-zero ones where the architecture has
      // none are not part of the model.
      const auto& loc = *stored(hf);
      std::vector<float> b = small_f32(*loc.first, *loc.second);
      return std::all_of(b.begin(), b.end(), [](float x) { return x == 0; });
    } else {
      if (hf.ends_with(".weight") && st.shape.size() == 2) {
        const std::string m2 = hf.substr(0, hf.size() - 7);
        if (const auto s = qc.scheme_for(m2); s && names::hf_to_gguf(hf) && linear_like(hf))
          fail(Errc::invalid_model, "{}: '{}' is stored as {} but the quantization config gives module '{}' {}: its "
               "quantized tensors are missing", dir_.string(), hf, st_dtype_name(st.dtype), m2, s->describe());
      }
      return false;
    }
    const auto s = qc.scheme_for(mod);
    if (!s)
      fail(Errc::invalid_model, "{}: '{}{}' is quantized but the quantization config leaves module '{}' unquantized",
           dir_.string(), mod, main_suffix, mod);
    const bool packing_ok = main_suffix == ".qweight" ? (s->packing == Packing::gptq || s->packing == Packing::awq_gemm)
                            : main_suffix == ".weight_packed" ? s->packing == Packing::ct_packed
                            : st.dtype == StDtype::I8 ? s->packing == Packing::ct_int
                                                      : s->packing == Packing::ct_fp8;
    if (!packing_ok)
      fail(Errc::invalid_model, "{}: '{}{}' ({}) does not match the config's scheme for it: {}", dir_.string(), mod,
           main_suffix, st_dtype_name(st.dtype), s->describe());
    add_quantized(mod, main_suffix, *s, permute);
    return true;
  }

  // Block linears and lm_head, the modules a quantization config can target.
  static bool linear_like(const std::string& hf) {
    for (std::string_view r : {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "gate_proj.weight",
                               "up_proj.weight", "down_proj.weight"})
      if (hf.ends_with(r)) return true;
    return hf == "lm_head.weight";
  }

  const Entry& entry(const ModelTensor& t) const {
    const size_t i = static_cast<size_t>(&t - tensors_.data());
    LQ_ASSERT(i < entries_.size());
    return entries_[i];
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
        // A shard is a file beside the index: no path that leads elsewhere.
        if (n.empty() || n == "." || n == ".." || n.find('/') != std::string::npos || n.find('\0') != std::string::npos)
          fail(Errc::invalid_model, "{}: weight_map names '{}', not a file name in the model directory", index.string(), n);
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
        if (std::string tn = text_model_name(t.name); tn != t.name) stored_name_[tn] = t.name;
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
    const Architecture& arch = architecture_of(c, path_.string());
    const bool permute = arch.permute_qk;
    std::map<std::string, std::vector<std::pair<std::string, std::pair<const SafetensorsFile*, const StTensor*>>>> experts;
    for (const auto& [hf_stored, loc] : by_name_) {
      if (multimodal_part(hf_stored)) continue;
      const std::string hf = text_model_name(hf_stored);
      if (c.n_expert > 0) {
        // An expert's weight, or in a quantized checkpoint its quantized linear's main part (its
        // other parts are read through it).
        std::optional<names::ExpertSlice> x = names::hf_expert(hf);
        bool quantized = false;
        if (!x && hf_.quant)
          if (const auto [mod, suffix] = quant_part(hf); !mod.empty())
            if ((x = names::hf_expert(mod + ".weight"))) {
              if (suffix != ".qweight" && suffix != ".weight_packed") continue;
              quantized = true;
            }
        if (x) {
          auto& v = experts[x->gguf];
          if (x->expert >= c.n_expert)
            fail(Errc::invalid_model, "{}: tensor '{}' is expert {} of a model with {} experts", dir_.string(), hf,
                 x->expert, c.n_expert);
          v.resize(static_cast<size_t>(c.n_expert));
          if (v[static_cast<size_t>(x->expert)].second.second)
            fail(Errc::invalid_model, "{}: expert {} of '{}' is stored twice ('{}' and '{}')", dir_.string(), x->expert,
                 x->gguf, v[static_cast<size_t>(x->expert)].first, hf);
          v[static_cast<size_t>(x->expert)] = {hf, loc};
          if (quantized) quant_mods_.insert(quant_part(hf).first);
          continue;
        }
      }
      if (hf_.int8 && int8_companion(hf)) continue;
      if (hf_.quant && build_quantized_tensor(hf, *loc.second, permute)) continue;
      auto m = map_name(hf, permute, loc.first->path().string(), arch);
      if (!m) continue;
      const StTensor& st = *loc.second;
      ModelTensor t;
      t.name = m->gguf;
      t.source_name = hf_stored;
      t.type = st_dtype_to_type(st.dtype);
      Entry e{loc.first, &st, m->permute};
      float input_scale = 0;
      if (hf_.int8 && st.dtype == StDtype::I8) input_scale = make_w8(hf, *loc.first, st, t, e);
      else if (t.type != QuantType::F32 && t.type != QuantType::F16 && t.type != QuantType::BF16)
        fail(Errc::invalid_model, "{}: tensor '{}' has dtype {}; weights must be F32, F16 or BF16{}",
             loc.first->path().string(), hf, st_dtype_name(st.dtype),
             hf_.int8 ? " (or int8 with a weight_scale in a compressed-tensors checkpoint)" : "");
      if (arch.norm_plus_one && hf.ends_with("norm.weight")) {
        e.plus_one = true;
        t.plus_one = true;
        t.plus_one_type = t.type;
        t.type = QuantType::F32;
      }
      t.ne.assign(st.shape.rbegin(), st.shape.rend());
      if (t.ne.empty()) t.ne.push_back(1);
      for (size_t k = 0; k < files_.size(); ++k)
        if (files_[k].get() == loc.first) t.split = static_cast<int>(k);
      if (input_scale > 0) {  // static W8A8: the scale as a tensor of its own beside the weight
        ModelTensor s;
        s.name = t.name.substr(0, t.name.size() - 7) + ".input_scale";
        s.source_name = hf.substr(0, hf.size() - 7) + ".input_scale";
        s.type = QuantType::F32;
        s.ne = {1};
        s.split = t.split;
        Entry se;
        se.generated = true;
        se.generated_values = {input_scale};
        add(std::move(s), std::move(se));
      }
      add(std::move(t), std::move(e));
    }
    if (hf_.quant)  // parts of a quantized linear whose main tensor is absent
      for (const auto& [hf_stored, loc] : by_name_) {
        if (multimodal_part(hf_stored)) continue;
        const std::string hf = text_model_name(hf_stored);
        const auto [mod, suffix] = quant_part(hf);
        if (mod.empty() || quant_mods_.count(mod)) continue;
        const auto s = hf_.quant->scheme_for(mod);
        const char* main = !s ? ".weight"
                           : s->packing == Packing::gptq || s->packing == Packing::awq_gemm ? ".qweight"
                           : s->packing == Packing::ct_packed                               ? ".weight_packed"
                                                                                            : ".weight";
        fail(Errc::invalid_model, "{}: '{}{}' is missing (found '{}'{})", dir_.string(), mod, main, hf,
             s ? fmt::format("; the config gives it {}", s->describe()) : std::string());
      }
    for (auto& [gguf, v] : experts) add_merged_experts(gguf, v);
    share_fused_input_scales();
    // Llama-3 rope scaling: llama.cpp reads the per-frequency factors from rope_freqs.weight.
    if (c.rope_scaling && c.rope_scaling->type == "llama3") add_llama3_rope_factors();
    // Phi-3 LongRoPE: the converter writes both factor lists (checked in config.cpp) as tensors.
    if (c.rope_scaling && (c.rope_scaling->type == "longrope" || c.rope_scaling->type == "su")) add_longrope_factors();
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

  // One 3-D tensor of a block's experts (ggml ne = [row length, rows, experts]) over the experts'
  // 2-D tensors, which must all be there with one shape and dtype; nothing is read here.
  void add_merged_experts(const std::string& gguf,
                          const std::vector<std::pair<std::string, std::pair<const SafetensorsFile*, const StTensor*>>>& v) {
    ModelTensor t;
    t.name = gguf;
    Entry e;
    for (size_t x = 0; x < v.size(); ++x) {
      const auto& [hf, loc] = v[x];
      if (!loc.second)
        fail(Errc::invalid_model, "{}: expert {} of '{}' is missing (the model has {} experts)", dir_.string(), x, gguf,
             v.size());
      if (const auto [mod, suffix] = quant_part(hf); hf_.quant && !mod.empty()) {
        add_quantized_expert(t, e, x, mod, suffix, loc);
        continue;
      }
      if (!e.expert_quant.empty())
        fail(Errc::invalid_model, "{}: expert {} of '{}' is stored as floats ('{}'), expert 0 quantized", dir_.string(), x,
             gguf, hf);
      const StTensor& st = *loc.second;
      QuantType ty = st_dtype_to_type(st.dtype);
      if (hf_.int8 && st.dtype == StDtype::I8) {  // W8A8: int8 rows with their weight scales
        ModelTensor w8;
        Entry we;
        if (make_w8(hf, *loc.first, st, w8, we) > 0)
          fail(Errc::invalid_model, "{}: '{}': static input scales are not supported for experts", dir_.string(), hf);
        if (x > 0 && e.expert_scales.size() != x)
          fail(Errc::invalid_model, "{}: '{}' is int8, expert 0 of '{}' is not", dir_.string(), hf, gguf);
        e.expert_scales.push_back(std::move(we.scales));
        ty = QuantType::W8;
      } else if (!e.expert_scales.empty()) {
        fail(Errc::invalid_model, "{}: '{}' is stored as {}, expert 0 of '{}' as int8", dir_.string(), hf,
             st_dtype_name(st.dtype), gguf);
      } else if (ty != QuantType::F32 && ty != QuantType::F16 && ty != QuantType::BF16) {
        fail(Errc::invalid_model, "{}: tensor '{}' has dtype {}; weights must be F32, F16 or BF16{}",
             loc.first->path().string(), hf, st_dtype_name(st.dtype),
             hf_.int8 ? " (or int8 with a weight_scale in a compressed-tensors checkpoint)" : "");
      }
      if (st.shape.size() != 2)
        fail(Errc::invalid_model, "{}: expert tensor '{}' is not 2-D", loc.first->path().string(), hf);
      if (x == 0) {
        t.source_name = hf;
        t.type = ty;
        t.ne = {st.shape[1], st.shape[0], static_cast<int64_t>(v.size())};
        for (size_t k = 0; k < files_.size(); ++k)
          if (files_[k].get() == loc.first) t.split = static_cast<int>(k);
      } else if (ty != t.type || st.shape[1] != t.ne[0] || st.shape[0] != t.ne[1]) {
        fail(Errc::invalid_model, "{}: expert tensor '{}' ({} [{}, {}]) differs from expert 0's ({} [{}, {}])",
             dir_.string(), hf, st_dtype_name(st.dtype), st.shape[0], st.shape[1], type_name(t.type), t.ne[1], t.ne[0]);
      }
      e.experts.push_back(loc);
    }
    add(std::move(t), std::move(e));
  }

  // The codes of a merged tensor of quantized experts as one weight of experts x rows (expert 0's
  // rows first), when every expert has the same scheme and the same column groups (act-order
  // g_idx differing between experts has no merged form: null, and the tensor is read dequantized).
  std::optional<QuantizedLinear> merged_expert_codes(const Entry& e) const {
    const QuantEntry& q0 = *e.expert_quant.front();
    if (q0.scheme.packing == Packing::ct_fp8) return std::nullopt;
    auto w = std::make_shared<unpack::IntWeight>();
    for (const auto& q : e.expert_quant) {
      if (q->scheme.describe() != q0.scheme.describe()) return std::nullopt;
      const std::shared_ptr<const Unpacked> u = unpacked(q);
      const unpack::IntWeight& x = *u->iw;
      if (w->q.empty()) {
        w->cols = x.cols;
        w->bits = x.bits;
        w->n_groups = x.n_groups;
        w->g_idx = x.g_idx;
      } else if (x.cols != w->cols || x.bits != w->bits || x.n_groups != w->n_groups || x.g_idx != w->g_idx) {
        return std::nullopt;
      }
      w->rows += x.rows;
      w->q.insert(w->q.end(), x.q.begin(), x.q.end());
      w->scale.insert(w->scale.end(), x.scale.begin(), x.scale.end());
      w->zero.insert(w->zero.end(), x.zero.begin(), x.zero.end());
    }
    QuantizedLinear ql;
    ql.scheme = q0.scheme;
    ql.weight = std::move(w);
    return ql;
  }

  // Expert x of merged tensor t (e: its entry) is the quantized linear `mod` (main part `suffix`):
  // its scheme from the config, its shape from the model's (gate / up [n_ff_exp, n_embd], down
  // [n_embd, n_ff_exp]), every expert of t quantized alike.
  void add_quantized_expert(ModelTensor& t, Entry& e, size_t x, const std::string& mod, std::string_view suffix,
                            const std::pair<const SafetensorsFile*, const StTensor*>& loc) {
    const auto s = hf_.quant->scheme_for(mod);
    if (!s)
      fail(Errc::invalid_model, "{}: '{}{}' is quantized but the quantization config leaves module '{}' unquantized",
           dir_.string(), mod, suffix, mod);
    const bool packing_ok = suffix == ".qweight" ? (s->packing == Packing::gptq || s->packing == Packing::awq_gemm)
                                                 : s->packing == Packing::ct_packed;
    if (!packing_ok)
      fail(Errc::invalid_model, "{}: '{}{}' does not match the config's scheme for it: {}", dir_.string(), mod, suffix,
           s->describe());
    if (x > 0 && e.expert_quant.size() != x)
      fail(Errc::invalid_model, "{}: '{}' is quantized, expert 0 of '{}' is stored as floats", dir_.string(), mod, t.name);
    const int64_t d = config_.n_embd, fe = config_.n_ff_exp > 0 ? config_.n_ff_exp : config_.n_ff;
    auto q = std::make_shared<QuantEntry>();
    q->mod = mod;
    q->scheme = *s;
    const bool down = names::split(t.name).rest == "ffn_down_exps.weight";
    q->out = down ? d : fe;
    q->in = down ? fe : d;
    const bool ct = s->packing == Packing::ct_packed;
    need_part(*q, ct ? ".weight_scale" : ".scales");
    if (!s->sym) need_part(*q, ct ? ".weight_zero_point" : ".qzeros");
    if (s->packing == Packing::gptq && s->actorder) need_part(*q, ".g_idx");
    if (x == 0) {
      t.source_name = mod + std::string(suffix);
      t.type = QuantType::F32;
      t.ne = {q->in, q->out, static_cast<int64_t>(config_.n_expert)};
      for (size_t k = 0; k < files_.size(); ++k)
        if (files_[k].get() == loc.first) t.split = static_cast<int>(k);
    }
    e.experts.push_back(loc);
    e.expert_quant.push_back(std::move(q));
  }

  // vLLM runs q/k/v and gate/up as one fused product each, quantizing the shared input with the
  // largest of their input scales: the same here, so both evaluate the same arithmetic.
  void share_fused_input_scales() {
    std::map<std::string, size_t> at;
    for (size_t i = 0; i < tensors_.size(); ++i)
      if (tensors_[i].name.ends_with(".input_scale")) at[tensors_[i].name] = i;
    if (at.empty()) return;
    for (int64_t l = 0; l < config_.n_layer; ++l)
      for (const auto& group : {std::vector<const char*>{"attn_q", "attn_k", "attn_v"}, {"ffn_gate", "ffn_up"}}) {
        std::vector<size_t> idx;
        for (const char* role : group)
          if (auto it = at.find(names::block_tensor(static_cast<int>(l), std::string(role) + ".input_scale"));
              it != at.end())
            idx.push_back(it->second);
        float mx = 0;
        for (size_t i : idx) mx = std::max(mx, entries_[i].generated_values[0]);
        for (size_t i : idx) entries_[i].generated_values[0] = mx;
      }
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
    add_generated_f32("rope_freqs.weight", "(computed from rope_scaling)", std::move(f));
  }

  // A 1-D F32 tensor the converter computes (not stored in the checkpoint), with its values.
  void add_generated_f32(std::string name, std::string source_name, std::vector<float> values) {
    ModelTensor t;
    t.name = std::move(name);
    t.source_name = std::move(source_name);
    t.type = QuantType::F32;
    t.ne = {static_cast<int64_t>(values.size())};
    Entry e;
    e.generated = true;
    e.generated_values = std::move(values);
    add(std::move(t), std::move(e));
  }

  void add_longrope_factors() {
    for (const char* which : {"long", "short"}) {
      std::vector<float> f;
      for (const auto& v : hf_.text["rope_scaling"][std::string(which) + "_factor"]) f.push_back(v.get<float>());
      add_generated_f32(std::string("rope_factors_") + which + ".weight", std::string("(rope_scaling.") + which + "_factor)",
                        std::move(f));
    }
  }

  void expect(const std::string& name, std::vector<int64_t> ne) {
    const ModelTensor* t = find(name);
    if (!t) fail(Errc::invalid_model, "{}: tensor for '{}' is missing", dir_.string(), name);
    if (t->ne != ne)
      fail(Errc::invalid_model, "{}: tensor '{}' ({}) has shape [{}], expected [{}]", dir_.string(), t->source_name, name,
           fmt::join(std::vector<int64_t>(t->ne.rbegin(), t->ne.rend()), ", "),
           fmt::join(std::vector<int64_t>(ne.rbegin(), ne.rend()), ", "));
  }

  // A block's router, merged experts, shared expert and q/k norms where the architecture has them.
  template <typename B>
  void expect_moe_block(const B& b, std::set<std::string>& known) {
    const ModelConfig& c = config_;
    std::vector<std::pair<std::string, std::vector<int64_t>>> want;
    if (c.qk_norm) {
      want.push_back({b("attn_q_norm.weight"), {c.head_dim}});
      want.push_back({b("attn_k_norm.weight"), {c.head_dim}});
    }
    if (c.n_expert > 0) {
      want.push_back({b("ffn_gate_inp.weight"), {c.n_embd, c.n_expert}});
      want.push_back({b("ffn_gate_exps.weight"), {c.n_embd, c.n_ff_exp, c.n_expert}});
      want.push_back({b("ffn_up_exps.weight"), {c.n_embd, c.n_ff_exp, c.n_expert}});
      want.push_back({b("ffn_down_exps.weight"), {c.n_ff_exp, c.n_embd, c.n_expert}});
    }
    if (c.n_ff_shexp > 0) {
      want.push_back({b("ffn_gate_inp_shexp.weight"), {c.n_embd, 1}});
      want.push_back({b("ffn_gate_shexp.weight"), {c.n_embd, c.n_ff_shexp}});
      want.push_back({b("ffn_up_shexp.weight"), {c.n_embd, c.n_ff_shexp}});
      want.push_back({b("ffn_down_shexp.weight"), {c.n_ff_shexp, c.n_embd}});
    }
    for (auto& [name, ne] : want) {
      expect(name, ne);
      known.insert(name);
    }
  }

  void validate_shapes() {
    const ModelConfig& c = config_;
    const int64_t q = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
    const Architecture& arch = architecture_of(c, dir_.string());
    const bool qk_norm = arch.qk_norm, sandwich = arch.sandwich_norms;
    expect("token_embd.weight", {c.n_embd, c.n_vocab});
    expect("output_norm.weight", {c.n_embd});
    if (!c.tie_embeddings) expect("output.weight", {c.n_embd, c.n_vocab});
    std::set<std::string> known = {"token_embd.weight", "output_norm.weight", "output.weight", "output.input_scale",
                                   "rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight"};
    for (int64_t l = 0; l < c.n_layer; ++l) {
      auto b = [l](std::string_view suffix) { return names::block_tensor(static_cast<int>(l), suffix); };
      expect(b("attn_norm.weight"), {c.n_embd});
      expect(b("ffn_norm.weight"), {c.n_embd});
      if (arch.fused_qkv) {
        expect(b("attn_qkv.weight"), {c.n_embd, q + 2 * kv});
        known.insert(b("attn_qkv.weight"));
      } else {
        expect(b("attn_q.weight"), {c.n_embd, q});
        expect(b("attn_k.weight"), {c.n_embd, kv});
        expect(b("attn_v.weight"), {c.n_embd, kv});
      }
      expect(b("attn_output.weight"), {q, c.n_embd});
      if (arch.fused_gate_up) {
        expect(b("ffn_up.weight"), {c.n_embd, 2 * c.n_ff});
        expect(b("ffn_down.weight"), {c.n_ff, c.n_embd});
      } else if (c.n_expert == 0) {
        expect(b("ffn_gate.weight"), {c.n_embd, c.n_ff});
        expect(b("ffn_up.weight"), {c.n_embd, c.n_ff});
        expect(b("ffn_down.weight"), {c.n_ff, c.n_embd});
      }
      expect_moe_block(b, known);
      for (const char* n : {"attn_norm", "ffn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"})
        if (!(arch.fused_qkv && (n[5] == 'q' || n[5] == 'k' || n[5] == 'v') && n[6] == 0) &&
            !(arch.fused_gate_up && std::string_view(n) == "ffn_gate"))
          known.insert(b(std::string(n) + ".weight"));
      for (const char* n : block_linear_roles(arch)) known.insert(b(std::string(n) + ".input_scale"));
      if (c.qkv_bias) {
        expect(b("attn_q.bias"), {q});
        expect(b("attn_k.bias"), {kv});
        expect(b("attn_v.bias"), {kv});
      }
      for (const char* n : {"attn_q", "attn_k", "attn_v"}) known.insert(b(std::string(n) + ".bias"));
      if (qk_norm) {  // per-head q/k RMSNorm weights
        expect(b("attn_q_norm.weight"), {c.head_dim});
        expect(b("attn_k_norm.weight"), {c.head_dim});
        known.insert(b("attn_q_norm.weight"));
        known.insert(b("attn_k_norm.weight"));
      }
      if (sandwich) {  // Gemma 2/3: norms after attention and MLP, q/k norms over each head
        for (const char* n : {"post_attention_norm.weight", "post_ffw_norm.weight"}) {
          expect(b(n), {c.n_embd});
          known.insert(b(n));
        }
        for (const char* n : {"attn_q_norm.weight", "attn_k_norm.weight"}) {
          if (find(b(n))) expect(b(n), {c.head_dim});
          known.insert(b(n));
        }
      }
    }
    for (const auto& t : tensors_)
      if (!known.count(t.name))
        fail(Errc::invalid_model, "{}: tensor '{}' does not belong to a {}-layer model", dir_.string(), t.source_name,
             c.n_layer);
  }

  void build_metadata() {
    uint64_t params = 0;
    for (const auto& t : tensors_) params += static_cast<uint64_t>(t.n_elements());
    hf_config_metadata(hf_, params, metadata_);
    if (config_.n_expert > 0) {  // merged experts ("_exps." tensors) count once, as one expert
      uint64_t shared = 0, expert = 0;
      for (const auto& t : tensors_) {
        if (t.name.find("_exps.") != std::string::npos && t.ne.size() == 3)
          expert += static_cast<uint64_t>(t.n_elements() / t.ne[2]);
        else
          shared += static_cast<uint64_t>(t.n_elements());
      }
      moe_size_label_metadata(shared, expert, config_.n_expert, metadata_);
    }
    tokenizer_gguf_metadata(dir_, metadata_);
    if (architecture_of(config_, path_.string()).no_space_prefix) {
      const auto model = metadata_.get_string("tokenizer.ggml.model");
      if (model && *model == "llama") metadata_.set("tokenizer.ggml.add_space_prefix", gguf::Value::boolean(false));
    }
  }

  fs::path dir_;
  fs::path path_;
  HfConfig hf_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<const SafetensorsFile*, const StTensor*>> by_name_;
  std::map<std::string, std::string> stored_name_;  // text-model name -> stored name (multimodal checkpoints)
  std::vector<ModelTensor> tensors_;
  std::vector<Entry> entries_;
  gguf::Metadata metadata_;
  std::set<std::string> quant_mods_;  // modules read through dequantization
  mutable std::mutex qmu_;
  mutable std::vector<std::pair<const QuantEntry*, std::shared_ptr<const Unpacked>>> qcache_;
};

}  // namespace

std::unique_ptr<ModelSource> open_hf_source(const fs::path& path) { return std::make_unique<HfSource>(path); }

const QuantCheckpoint* hf_quant_checkpoint(const ModelSource& src) {
  const auto* hf = dynamic_cast<const HfSource*>(&src);
  return hf && hf->hf_config().quant ? &*hf->hf_config().quant : nullptr;
}

bool hf_is_fp8_linear(const ModelSource& src, const ModelTensor& t) {
  const auto* hf = dynamic_cast<const HfSource*>(&src);
  return hf && hf->is_fp8(t);
}

std::optional<QuantizedLinear> hf_quantized_linear(const ModelSource& src, const ModelTensor& t) {
  const auto* hf = dynamic_cast<const HfSource*>(&src);
  return hf ? hf->quantized_linear(t) : std::nullopt;
}

}  // namespace lq
