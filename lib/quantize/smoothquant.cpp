// SmoothQuant W8A8 (smoothquant.hpp): calibration statistics through the engine's linear hooks,
// the smoothing scales (fixed α or a per-group grid search under W8A8 fake quantization), their
// folding into a Model in memory, and the streamed compressed-tensors output directory. Must not
// parse flags or print: progress goes to the Context's sink.
//
// What is smoothed: llm-compressor's Llama mapping, input_layernorm -> q/k/v_proj and
// post_attention_layernorm -> gate/up_proj (output-formats.md §1.3, with the direction X/s, W*s,
// γ/s). By default o_proj and down_proj are not smoothed, as llm-compressor leaves them; with
// smooth_all they are: v_proj -> o_proj (attention mixes each value channel across positions
// only, so dividing v_proj's row c by s_c divides o_proj's input columns that read channel c: with
// GQA, the columns of every query head sharing the KV head) and up_proj -> down_proj
// (silu(gate) * up is linear in up).
//
// The command's path (smoothquant_model) is streamed: one block at a time through a one-block
// model (quantize/block_stream.hpp), the hidden states between blocks in a work file, one pass of
// the original block per block for its statistics and the next block's inputs; the writer is the
// same, so the bytes equal the in-memory SmoothQuantizer's.
//
// Activation statistic: a_j = max |x_j| over all calibration tokens (the paper's formula; llm-
// compressor's max-min range and 2x weight factor only scale s by a constant that cancels in
// the fold), or a percentile of |x_j| from a histogram per channel.
#include <lq/smoothquant.hpp>

#include <lq/calibration.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/threads.hpp>
#include <lq/tokenizer.hpp>

#include "backend/ops.hpp"
#include "core/fail.hpp"
#include "core/output_dir.hpp"
#include "model/architecture.hpp"
#include "core/half.hpp"
#include "formats/compressed_tensors.hpp"
#include "quantize/calibration_chunks.hpp"
#include "quantize/smoothquant_stats.hpp"
#include "formats/safetensors.hpp"
#include "formats/safetensors_writer.hpp"
#include "model/tensor_names.hpp"
#include "quantize/block_stream.hpp"
#include <lq/backend.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>

namespace fs = std::filesystem;

namespace lq {

void validate(const SmoothQuantConfig& c) {
  if (!(c.alpha >= 0 && c.alpha <= 1)) fail(Errc::invalid_argument, "smoothquant: alpha must be in [0, 1], got {}", c.alpha);
  if (!(c.activation_percentile > 0 && c.activation_percentile <= 100))
    fail(Errc::invalid_argument, "smoothquant: activation percentile must be in (0, 100], got {}", c.activation_percentile);
  for (double a : c.alpha_grid)
    if (!(a >= 0 && a <= 1)) fail(Errc::invalid_argument, "smoothquant: alpha grid value {} is outside [0, 1]", a);
  if (c.calibration_samples < 1)
    fail(Errc::invalid_argument, "smoothquant: calibration samples must be positive, got {}", c.calibration_samples);
  if (c.ctx < 2) fail(Errc::invalid_argument, "smoothquant: ctx must be at least 2, got {}", c.ctx);
  if (c.auto_rows < 1) fail(Errc::invalid_argument, "smoothquant: auto rows must be positive, got {}", c.auto_rows);
}

float quantize_int8_row(const float* x, int64_t n, int8_t* q, float scale) {
  if (!(scale > 0)) {
    float m = 0;
    for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
    scale = std::max(m / 127.5f, std::numeric_limits<float>::epsilon());
  }
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::nearbyint(x[i] / scale);  // ties to even, as torch.round
    q[i] = static_cast<int8_t>(std::clamp(v, -128.0f, 127.0f));
  }
  return scale;
}

fs::path smoothquant_default_output(const fs::path& model) {
  fs::path m = model;
  if (!m.has_filename()) m = m.parent_path();
  std::string stem = m.filename().string();
  if (m.extension() == ".safetensors" || m.extension() == ".gguf") stem = m.stem().string();
  if (stem.empty() || stem == "." || stem == "..") stem = "model";
  return fs::path(stem + "-smoothquant-w8a8");
}

// Named (not anonymous): the quantizer's Impl holds these types.
namespace sq_impl {

// ---- statistics -------------------------------------------------------------------------

// |x| histogram bins: one below 2^-16, eight linear sub-bins per octave up to 2^16, one above.
// 12.5% resolution at worst, which a clipping threshold does not need finer.
constexpr int kSqOctaveLo = -16, kSqOctaves = 32, kSqSub = 8;
constexpr int kSqBins = 2 + kSqOctaves * kSqSub;

inline int sq_bin(float a) {
  const uint32_t u = std::bit_cast<uint32_t>(a);
  const int e = static_cast<int>(u >> 23) - 127;
  if (e < kSqOctaveLo) return 0;
  if (e >= kSqOctaveLo + kSqOctaves) return kSqBins - 1;
  return 1 + (e - kSqOctaveLo) * kSqSub + static_cast<int>((u >> 20) & 7);
}

// Value range [lo, hi) of bin b (the last bin ends at the channel's max).
inline void sq_bin_range(int b, double& lo, double& hi) {
  if (b == 0) {
    lo = 0;
    hi = std::ldexp(1.0, kSqOctaveLo);
    return;
  }
  const int e = kSqOctaveLo + (b - 1) / kSqSub, m = (b - 1) % kSqSub;
  lo = std::ldexp(1.0 + m / double(kSqSub), e);
  hi = std::ldexp(1.0 + (m + 1) / double(kSqSub), e);
}

// One hooked input (a norm output, the attention result or the SwiGLU product) of one block.
struct SqSite {
  std::string what;   // for messages: "model.layers.3.input_layernorm output"
  int64_t n = 0;      // channels
  std::vector<float> absmax;
  std::vector<uint32_t> hist;  // n x kSqBins, percentile < 100 only
  bool non_finite = false;
  int64_t tokens = 0;
  // Reservoir of token rows for the alpha search (norm outputs only).
  int64_t keep = 0;
  std::vector<float> rows;
  int64_t rows_held = 0, seen = 0;
  std::mt19937_64 rng;

  // a_j: max, or the percentile from the histogram (interpolated in its bin, at most the max).
  std::vector<float> statistic(double pct) const {
    if (pct >= 100 || hist.empty()) return absmax;
    std::vector<float> a(static_cast<size_t>(n));
    const double rank = pct / 100.0 * static_cast<double>(tokens);
    for (int64_t j = 0; j < n; ++j) {
      const uint32_t* h = &hist[static_cast<size_t>(j) * kSqBins];
      double below = 0;
      double v = absmax[static_cast<size_t>(j)];
      for (int b = 0; b < kSqBins; ++b) {
        if (below + h[b] >= rank && h[b] > 0) {
          double lo, hi;
          sq_bin_range(b, lo, hi);
          hi = std::min(hi, static_cast<double>(absmax[static_cast<size_t>(j)]));
          lo = std::min(lo, hi);
          v = lo + (hi - lo) * std::clamp((rank - below) / h[b], 0.0, 1.0);
          break;
        }
        below += h[b];
      }
      a[static_cast<size_t>(j)] = static_cast<float>(v);
    }
    return a;
  }
};

void sq_observe(SqSite& s, const float* x, int64_t rows, bool histogram, int threads) {
  const int64_t n = s.n;
  std::atomic<bool> bad{false};
  parallel_for((n + 63) / 64, threads, 1, [&](int64_t b0, int64_t b1) {
    const int64_t c0 = b0 * 64, c1 = std::min(n, b1 * 64);
    bool local_bad = false;
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = x + r * n;
      for (int64_t c = c0; c < c1; ++c) {
        const float a = std::fabs(row[c]);
        if (!std::isfinite(a)) local_bad = true;
        float& m = s.absmax[static_cast<size_t>(c)];
        m = a > m ? a : m;
        if (histogram) ++s.hist[static_cast<size_t>(c) * kSqBins + static_cast<size_t>(sq_bin(a))];
      }
    }
    if (local_bad) bad = true;
  });
  if (bad) s.non_finite = true;
  s.tokens += rows;
  if (s.keep > 0) {
    // Reservoir sampling (algorithm R) with a fixed seed: the same rows on every run.
    for (int64_t r = 0; r < rows; ++r, ++s.seen) {
      int64_t slot = -1;
      if (s.rows_held < s.keep) {
        slot = s.rows_held++;
      } else {
        const auto k = static_cast<int64_t>(s.rng() % static_cast<uint64_t>(s.seen + 1));
        if (k < s.keep) slot = k;
      }
      if (slot >= 0) std::memcpy(&s.rows[static_cast<size_t>(slot * n)], x + r * n, static_cast<size_t>(n) * 4);
    }
  }
}

// ---- tensors ----------------------------------------------------------------------------

struct SqLinear {
  std::string gguf;    // "blk.3.attn_q.weight" (an expert's: its merged tensor, "blk.3.ffn_up_exps.weight")
  std::string role;    // "attn_q"
  std::string module;  // "model.layers.3.self_attn.q_proj"
  int layer = -1;
  int site = 0;        // the block input it reads (linear_input_site: 0 q/k/v, 1 o, 2 gate/up, 3 down)
  int group = -1;      // smoothing group of its input columns, or -1 (o_proj, down_proj by default)
  int row_group = -1;  // smoothing group dividing its output rows (v_proj, up_proj with smooth_all)
  int expert = -1;     // the slice of its merged tensor this expert is (rows..., the expert's); -1 else
  int64_t rows = 0, cols = 0;
};

float to_f32(StDtype t, const uint8_t* p) {
  switch (t) {
    case StDtype::BF16: { uint16_t h; std::memcpy(&h, p, 2); return bf16_to_f32(h); }
    case StDtype::F16: { uint16_t h; std::memcpy(&h, p, 2); return fp16_to_f32(h); }
    case StDtype::F32: { float f; std::memcpy(&f, p, 4); return f; }
    default: return 0;
  }
}

void from_f32(StDtype t, float v, uint8_t* p) {
  switch (t) {
    case StDtype::BF16: { const uint16_t h = f32_to_bf16(v); std::memcpy(p, &h, 2); break; }
    case StDtype::F16: { const uint16_t h = f32_to_fp16(v); std::memcpy(p, &h, 2); break; }
    default: std::memcpy(p, &v, 4); break;
  }
}

// A float rounded through the stored dtype (what a reader of the file gets back).
float through(StDtype t, float v) {
  uint8_t b[4];
  from_f32(t, v, b);
  return to_f32(t, b);
}

bool sq_float_dtype(StDtype t) { return t == StDtype::BF16 || t == StDtype::F16 || t == StDtype::F32; }

// Quantizes rows x rows of n floats to int8 with per-row (or one) scale(s) rounded through
// `dtype`. Returns the scales used (one per row, or one).
std::vector<float> sq_quantize_rows(const float* x, int64_t rows, int64_t n, bool per_channel, StDtype dtype, int8_t* q,
                                    int threads) {
  std::vector<float> scales(per_channel ? static_cast<size_t>(rows) : 1);
  if (!per_channel) {
    float m = 0;
    for (int64_t i = 0; i < rows * n; ++i) m = std::max(m, std::fabs(x[i]));
    scales[0] = through(dtype, std::max(m / 127.5f, std::numeric_limits<float>::epsilon()));
  }
  parallel_for(rows, threads, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float sc = 0;
      if (per_channel) {
        float m = 0;
        for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[r * n + i]));
        sc = through(dtype, std::max(m / 127.5f, std::numeric_limits<float>::epsilon()));
        scales[static_cast<size_t>(r)] = sc;
      } else {
        sc = scales[0];
      }
      quantize_int8_row(x + r * n, n, q + r * n, sc);
    }
  });
  return scales;
}

// The source checkpoint's weight files (index order, else the directory's *.safetensors sorted).
std::vector<fs::path> sq_source_files(const fs::path& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return {path};
  std::vector<fs::path> files;
  const fs::path index = path / "model.safetensors.index.json";
  if (fs::exists(index, ec)) {
    const auto j = nlohmann::json::parse(read_file(index), nullptr, false);
    if (j.is_discarded() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail(Errc::invalid_model, "{}: malformed index", index.string());
    std::set<std::string> names;
    for (const auto& [k, v] : j["weight_map"].items())
      if (v.is_string()) names.insert(v.get<std::string>());
    for (const auto& n : names) files.push_back(path / n);
    return files;
  }
  for (const auto& e : fs::directory_iterator(path, ec))
    if (e.path().extension() == ".safetensors") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.empty()) fail(Errc::invalid_model, "{}: no .safetensors files", path.string());
  return files;
}

// Files copied beside the weights: tokenizer and generation settings.
bool sq_copied_file(const std::string& name) {
  static const char* const kNames[] = {"generation_config.json", "tokenizer.json",   "tokenizer.model",
                                       "tokenizer_config.json",  "special_tokens_map.json", "added_tokens.json",
                                       "vocab.json",             "merges.txt",       "chat_template.jinja",
                                       "chat_template.json"};
  return std::any_of(std::begin(kNames), std::end(kNames), [&](const char* n) { return name == n; });
}

double sq_seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace sq_impl

using namespace sq_impl;

// ---- the quantizer ------------------------------------------------------------------------

namespace sq_impl {
std::vector<float> sq_product(const detail::EngineOps& ops, const std::vector<float>& w, const float* x, int64_t rows,
                              int64_t n, int threads);
// static_scale > 0: static activations, every token quantized with that one scale (the
// input_scale the output will hold); 0: dynamic per-token scales.
double sq_group_error(const detail::EngineOps& ops, const std::vector<std::vector<float>>& W, const std::vector<float>& X,
                      int64_t rows, int64_t n, const std::vector<std::vector<float>>& Yref, const std::vector<float>& s,
                      bool per_channel, int threads, float static_scale = 0);

// Smoothing groups of a block, in this order; the last two only with smooth_all.
enum SqGroupKind { kSqAttnNorm = 0, kSqFfnNorm = 1, kSqValueOut = 2, kSqUpDown = 3 };
// The hooked input (linear_input_site) whose statistic each kind of group uses.
constexpr int kSqGroupSite[4] = {0, 2, 1, 3};

// Thrown by the last block's hook after ffn_down's input: nothing after it is needed.
struct SqStop {};
}  // namespace sq_impl

struct SmoothQuantizer::Impl {
  const ModelSource& src;
  SmoothQuantConfig cfg;
  std::unique_ptr<Model> model;
  std::vector<std::vector<int32_t>> chunks;
  bool have_data = false;
  bool calibrated = false;
  int64_t n_layer = 0;
  int gpb = 2;                                   // smoothing groups per block
  bool moe = false;  // a mixture of experts: the attention group only; sites 2 and 3 are not observed
  int64_t head_dim = 0, q_per_kv = 1;            // for the v_proj -> o_proj mapping
  std::vector<SqLinear> linears;                 // every decoder linear, forward order
  std::vector<SqSite> sites;                     // 4 per block
  std::vector<SmoothQuantGroup> groups;          // gpb per block
  std::vector<std::vector<float>> group_columns; // v -> o: the scales per o_proj column (GQA); else empty
  std::vector<float> site_smoothed_max;          // max_j a_j / s_j per site (input_scale numerator)
  SmoothQuantResult summary;

  Impl(const ModelSource& s, SmoothQuantConfig c, bool load = true) : src(s), cfg(std::move(c)) {
    validate(cfg);
    if (src.is_gguf())
      fail(Errc::invalid_argument,
           "smoothquant: {} is a GGUF file; the compressed-tensors output needs a Hugging Face checkpoint (config.json "
           "and safetensors)",
           src.path().string());
    const Architecture& arch = architecture_of(src.config(), "smoothquant");
    if (cfg.smooth_all && (arch.fused_qkv || arch.fused_gate_up))
      fail(Errc::invalid_argument, "smoothquant: --smooth-mappings all divides v_proj's and up_proj's rows, which {} "
           "fuses into qkv_proj and gate_up_proj; use the default mappings", src.config().model_type);
    // A mixture of experts: the attention group only (the MLP norm feeds the router and every
    // expert, as llm-compressor's Mixtral mappings leave it); every expert int8 per channel.
    moe = src.config().n_expert > 0;
    if (moe && cfg.smooth_all)
      fail(Errc::invalid_argument, "smoothquant: --smooth-mappings all is not supported for mixtures of experts ({}); "
           "use the default mappings (input_layernorm -> q/k/v)", src.config().model_type);
    if (moe && cfg.static_activations)
      fail(Errc::invalid_argument, "smoothquant: a mixture of experts ({}) is written with dynamic per-token "
           "activations; static input scales are not supported for experts", src.config().model_type);
    if (load) model = Model::load(src);
    const ModelConfig& mc = model ? model->config() : src.config();
    n_layer = mc.n_layer;
    if (n_layer <= 0) fail(Errc::invalid_model, "smoothquant: {} has no decoder blocks", src.path().string());
    if (mc.n_ctx_train > 0 && cfg.ctx > mc.n_ctx_train)
      summary.warnings.push_back(
          fmt::format("the model was trained on {} context tokens ({} asked)", mc.n_ctx_train, cfg.ctx));
    gpb = moe ? 1 : cfg.smooth_all ? 4 : 2;
    for (int64_t l = 0; l < n_layer; ++l) {
      for (const char* role : block_linear_roles(arch)) {
        const std::string name = fmt::format("blk.{}.{}.weight", l, role);
        const ModelTensor* t = src.find(name);
        if (!t) fail(Errc::invalid_model, "smoothquant: {} has no {}", src.path().string(), names::hf_module(name) + ".weight");
        if (t->ne.size() != 2) fail(Errc::invalid_model, "smoothquant: {} is not a matrix", name);
        SqLinear x;
        x.gguf = name;
        x.role = role;
        x.module = names::hf_module(name, arch.fused_gate_up);
        x.layer = static_cast<int>(l);
        x.cols = t->ne[0];
        x.rows = t->ne[1];
        const int b = gpb * static_cast<int>(l);
        const std::string r = role;
        x.site = linear_input_site(r);
        if (x.site == 0) x.group = b + kSqAttnNorm;
        else if (x.site == 1) x.group = cfg.smooth_all ? b + kSqValueOut : -1;
        else if (x.site == 2) x.group = moe ? -1 : b + kSqFfnNorm;  // (a shared expert: not smoothed)
        else x.group = cfg.smooth_all ? b + kSqUpDown : -1;
        if (cfg.smooth_all && r == "attn_v") x.row_group = b + kSqValueOut;
        if (cfg.smooth_all && r == "ffn_up") x.row_group = b + kSqUpDown;
        linears.push_back(std::move(x));
      }
      for (const char* role : expert_linear_roles(arch)) {  // one linear per expert, none smoothed
        const std::string name = fmt::format("blk.{}.{}.weight", l, role);
        const ModelTensor& t = src.at(name);
        if (t.ne.size() != 3) fail(Errc::invalid_model, "smoothquant: {} is not a 3-D expert tensor", name);
        for (int e = 0; e < static_cast<int>(t.ne[2]); ++e) {
          SqLinear x;
          x.gguf = name;
          x.role = role;
          x.module = names::hf_expert_module(name, e, arch.moe == Architecture::MoeStyle::mixtral);
          x.layer = static_cast<int>(l);
          x.site = -1;
          x.expert = e;
          x.cols = t.ne[0];
          x.rows = t.ne[1];
          linears.push_back(std::move(x));
        }
      }
    }
    if (cfg.smooth_all) {
      // v_proj's rows are the KV heads' channels; o_proj's columns the query heads' (GQA: a KV
      // head serves n_head / n_head_kv query heads, all of whose o_proj columns take its scale).
      const SqLinear& v = linears[2];
      const SqLinear& o = linears[3];
      if (mc.n_head <= 0 || o.cols % mc.n_head != 0 || v.rows % (o.cols / mc.n_head) != 0 ||
          mc.n_head % (v.rows / (o.cols / mc.n_head)) != 0)
        fail(Errc::invalid_model, "smoothquant: v_proj ({} rows) and o_proj ({} columns) do not match {} heads", v.rows,
             o.cols, mc.n_head);
      head_dim = o.cols / mc.n_head;
      q_per_kv = mc.n_head / (v.rows / head_dim);
    }
    static const char* const kGroupNames[4] = {"attn_norm.weight", "ffn_norm.weight", "self_attn.v_proj", "mlp.up_proj"};
    for (int64_t l = 0; l < n_layer; ++l) {
      for (int k = 0; k < gpb; ++k) {
        SmoothQuantGroup g;
        g.layer = static_cast<int>(l);
        if (k <= kSqFfnNorm) {  // the norm's checkpoint name (Gemma's MLP norm: pre_feedforward_layernorm)
          const std::string& sn = src.at(names::block_tensor(static_cast<int>(l), kGroupNames[k])).source_name;
          g.norm = sn.substr(0, sn.size() - 7);
        } else {
          g.norm = fmt::format("model.layers.{}.{}", l, kGroupNames[k]);
        }
        for (const auto& x : linears)
          if (x.group == static_cast<int>(gpb * l + k)) g.linears.push_back(x.module);
        groups.push_back(std::move(g));
      }
    }
    group_columns.assign(groups.size(), {});
    for (const auto& x : linears)
      if (x.group < 0) summary.not_smoothed.push_back(x.module);
  }

  int group_kind(size_t g) const { return static_cast<int>(g % static_cast<size_t>(gpb)); }

  std::string norm_gguf(size_t g) const {
    return names::block_tensor(groups[g].layer, group_kind(g) == kSqAttnNorm ? "attn_norm.weight" : "ffn_norm.weight");
  }

  // The scales on a linear's input columns (empty: none).
  const std::vector<float>* column_scales(const SqLinear& x) const {
    if (x.group < 0) return nullptr;
    const auto& e = group_columns[static_cast<size_t>(x.group)];
    return e.empty() ? &groups[static_cast<size_t>(x.group)].scales : &e;
  }
  // The scales dividing a linear's output rows (v_proj, up_proj with smooth_all; empty: none).
  const std::vector<float>* row_scales(const SqLinear& x) const {
    return x.row_group < 0 ? nullptr : &groups[static_cast<size_t>(x.row_group)].scales;
  }

  // W[r, j] *= c_j, then W[r, j] /= d_r: a linear's folded weights (rows x cols, row-major).
  void fold(const SqLinear& x, std::vector<float>& v, int threads) const {
    const auto* c = column_scales(x);
    const auto* d = row_scales(x);
    const int64_t rows = x.rows, n = x.cols;
    if (c && static_cast<int64_t>(c->size()) != n)
      fail(Errc::invalid_model, "smoothquant: {} has {} columns, not {}", x.module, n, c->size());
    if (d && static_cast<int64_t>(d->size()) != rows)
      fail(Errc::invalid_model, "smoothquant: {} has {} rows, not {}", x.module, rows, d->size());
    if (!c && !d) return;
    parallel_for(rows, threads, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* w = &v[static_cast<size_t>(r * n)];
        if (c)
          for (int64_t j = 0; j < n; ++j) w[j] *= (*c)[static_cast<size_t>(j)];
        if (d) {
          const float s = (*d)[static_cast<size_t>(r)];
          for (int64_t j = 0; j < n; ++j) w[j] /= s;
        }
      }
    });
  }

  // The BOS token and whether chunks start with it, as the engine's Model decides.
  int32_t chunk_bos() const {
    if (model) return model->add_bos() ? model->bos_token() : -1;
    return quant_impl::source_chunk_bos(src);
  }

  void set_calibration(const CalibrationData& data) {
    summary.calibration_source = data.source;
    chunks = quant_impl::calibration_chunks(src, data, cfg.ctx, cfg.calibration_samples, chunk_bos(), summary.warnings);
    have_data = true;
  }

  void load_calibration_data(Progress& progress) {
    if (!have_data) set_calibration(quant_impl::calibration_text(cfg.calibration_data, progress));
  }

  // The four hooked inputs of block l (widths from the model that runs it).
  void init_sites(int64_t l, const ModelConfig& mc) {
    const bool histogram = cfg.activation_percentile < 100;
    const int64_t widths[4] = {mc.n_embd, mc.n_head * mc.head_dim, mc.n_embd, mc.n_ff};
    const char* what[4] = {"input_layernorm output", "self_attn.o_proj input", "post_attention_layernorm output",
                           "mlp.down_proj input"};
    for (int k = 0; k < 4; ++k) {
      SqSite& s = sites[static_cast<size_t>(4 * l + k)];
      s.what = fmt::format("model.layers.{}.{}", l, what[k]);
      s.n = widths[k];
      s.absmax.assign(static_cast<size_t>(s.n), 0.0f);
      if (histogram) s.hist.assign(static_cast<size_t>(s.n) * kSqBins, 0);
      if (cfg.alpha_auto && (k == 0 || k == 2 || cfg.smooth_all)) {
        s.keep = cfg.auto_rows;
        s.rows.assign(static_cast<size_t>(s.keep * s.n), 0.0f);
        s.rng.seed(0x5eed0000u + static_cast<uint64_t>(4 * l + k));
      }
    }
  }

  void calibrate(const Context& ctx) {
    Progress& progress = ctx.progress_sink();
    if (!model) fail(Errc::invalid_argument, "smoothquant: the model was released");
    load_calibration_data(progress);
    const ModelConfig& mc = model->config();
    const bool histogram = cfg.activation_percentile < 100;
    sites.assign(static_cast<size_t>(4 * n_layer), SqSite{});
    for (int64_t l = 0; l < n_layer; ++l) init_sites(l, mc);
    const int threads = ctx.thread_count();
    SessionOptions so;
    so.n_ctx = cfg.ctx;
    so.hook_inputs_only = true;
    so.bf16_activations = bf16_calibration();
    Session session(*model, so, ctx);
    const float* last_input = nullptr;
    int last_site = -1;
    session.set_linear_hook([&](const LinearEvent& ev) {
      ctx.check_cancelled();
      const LinearInfo& l = *ev.linear;
      if (l.layer < 0) return;
      const int k = linear_input_site(l.role);
      if (k < 0 || (moe && k >= 2)) return;  // (a shared expert's inputs: no group reads them)
      const int site = 4 * l.layer + k;  // k, v, up read q's, gate's input: seen once below
      if (ev.input == last_input && site == last_site) return;
      last_input = ev.input;
      last_site = site;
      sq_observe(sites[static_cast<size_t>(site)], ev.input, ev.n_tokens, histogram, threads);
    });
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t n_chunks = static_cast<int64_t>(chunks.size());
    progress.message(fmt::format("Calibrating: {} chunks of {} tokens from {}", n_chunks, cfg.ctx,
                                 summary.calibration_source));
    progress.message(mappings_line());
    progress.message(activations_line());
    progress.update("Calibrating", 0, n_chunks, "chunks");
    int64_t tokens = 0;
    for (int64_t i = 0; i < n_chunks; ++i) {
      ctx.check_cancelled();
      const auto& ch = chunks[static_cast<size_t>(i)];
      session.clear();
      last_input = nullptr;
      session.eval(ch, static_cast<int64_t>(ch.size()));
      tokens += static_cast<int64_t>(ch.size());
      progress.update("Calibrating", i + 1, n_chunks, "chunks");
    }
    progress.finish("Calibrating");
    summary.calibration_seconds = sq_seconds_since(t0);
    summary.chunks = n_chunks;
    summary.ctx = cfg.ctx;
    summary.tokens = tokens;
    summary.calibration_bf16 = bf16_calibration();
    site_smoothed_max.assign(sites.size(), 0.0f);
    check_sites(0, sites.size());
    if (cfg.alpha_auto) progress.message(fmt::format("Searching alpha per layer over {} values", alpha_grid().size()));
    for (int64_t l = 0; l < n_layer; ++l) block_scales(l, *model, l, ctx);
    summary.groups = groups;
    calibrated = true;
  }

  // Block-at-a-time calibration (the bounded-memory path): block L alone is in memory, the hidden
  // states of every chunk entering it in `work`/hidden-L.bin. The chunks run through the original
  // block once: the hook gathers the statistics of its inputs, and the engine's residual stream
  // leaving the block gives the hidden states entering block L + 1 exactly as the whole model
  // computes them. Block L's scales are computed as soon as it is done.
  void calibrate_streamed(const fs::path& work, const Context& ctx) {
    Progress& progress = ctx.progress_sink();
    load_calibration_data(progress);
    const auto t0 = std::chrono::steady_clock::now();
    const bool histogram = cfg.activation_percentile < 100;
    const int threads = ctx.thread_count();
    sites.assign(static_cast<size_t>(4 * n_layer), SqSite{});
    site_smoothed_max.assign(sites.size(), 0.0f);
    int64_t max_len = 1, tokens = 0;
    const ModelTensor& embd = src.at("token_embd.weight");
    const int64_t n_vocab = embd.ne[1], d = embd.ne[0];
    for (const auto& c : chunks) {
      max_len = std::max<int64_t>(max_len, static_cast<int64_t>(c.size()));
      tokens += static_cast<int64_t>(c.size());
      for (int32_t t : c)
        if (t < 0 || t >= n_vocab)
          fail(Errc::calibration_error, "smoothquant: calibration token {} is outside the vocabulary", t);
    }
    auto hidden_file = [&](int64_t L) { return work / fmt::format("hidden-{}.bin", L); };
    {  // hidden-0.bin: each chunk's token embeddings (what the first block reads; Gemma's scaled)
      block_stream::WorkFile f(hidden_file(0), true);
      std::vector<float> x;
      const bool scaled = architecture_of(src.config(), "smoothquant").scale_embedding;
      const float scale = std::sqrt(static_cast<float>(d));
      for (const auto& c : chunks) {
        ctx.check_cancelled();
        x.resize(c.size() * static_cast<size_t>(d));
        for (size_t t = 0; t < c.size(); ++t) src.read_rows_f32(embd, c[t], 1, x.data() + t * static_cast<size_t>(d));
        if (scaled)
          for (float& e : x) e *= scale;
        f.write(x.data(), x.size() * 4);
      }
    }
    const int64_t n_chunks = static_cast<int64_t>(chunks.size());
    progress.message(fmt::format("Calibrating: {} chunks of {} tokens from {}, one block at a time", n_chunks, cfg.ctx,
                                 summary.calibration_source));
    progress.message(mappings_line());
    progress.message(activations_line());
    if (cfg.alpha_auto) progress.message(fmt::format("Searching alpha per layer over {} values", alpha_grid().size()));
    progress.update("Calibrating", 0, n_layer, "blocks");
    const int64_t rows = max_len;
    std::vector<int32_t> ids(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    std::vector<float> table, x, out;
    for (int64_t L = 0; L < n_layer; ++L) {
      ctx.check_cancelled();
      block_stream::BlockSource bs(src, L, rows);
      std::unique_ptr<Model> bm = Model::load(bs);
      init_sites(L, bm->config());
      const bool last = L + 1 == n_layer;
      {
        SessionOptions so;
        so.n_ctx = cfg.ctx;
        so.hook_inputs_only = last;  // the last block's output feeds nothing
        so.bf16_activations = bf16_calibration();
        Session session(*bm, so, ctx);
        const float* last_input = nullptr;
        int last_site = -1;
        session.set_linear_hook([&](const LinearEvent& ev) {
          ctx.check_cancelled();
          const LinearInfo& l = *ev.linear;
          if (l.layer != 0) return;
          const int k = linear_input_site(l.role);
          if (k < 0 || (moe && k >= 2)) return;  // (a shared expert's inputs: no group reads them)
          const int site = static_cast<int>(4 * L) + k;
          if (!(ev.input == last_input && site == last_site)) {
            last_input = ev.input;
            last_site = site;
            sq_observe(sites[static_cast<size_t>(site)], ev.input, ev.n_tokens, histogram, threads);
          }
          if (k == 3 && last) throw SqStop{};
        });
        block_stream::WorkFile in(hidden_file(L), false);
        std::unique_ptr<block_stream::WorkFile> next;
        if (!last) next = std::make_unique<block_stream::WorkFile>(hidden_file(L + 1), true);
        for (const auto& ch : chunks) {
          ctx.check_cancelled();
          const int64_t n = static_cast<int64_t>(ch.size());
          x.resize(static_cast<size_t>(n * d));
          in.read(x.data(), x.size() * 4);
          table.assign(static_cast<size_t>(rows * d), 0.f);
          std::memcpy(table.data(), x.data(), x.size() * 4);
          bm->replace_tensor("token_embd.weight", table, QuantType::F32);
          session.clear();
          last_input = nullptr;
          last_site = -1;
          try {
            // the residual stream leaving the block, as the engine computes it (no logits)
            session.eval_blocks(std::span<const int32_t>(ids.data(), static_cast<size_t>(n)), 0, 1, out, n);
          } catch (const SqStop&) {
          }
          if (next) next->write(out.data(), out.size() * 4);
        }
      }
      std::error_code ec;
      fs::remove(hidden_file(L), ec);
      check_sites(static_cast<size_t>(4 * L), static_cast<size_t>(4 * L + 4));
      block_scales(L, *bm, 0, ctx);
      for (int k = 0; k < 4; ++k) {  // only the per-channel maxima stay
        SqSite& s = sites[static_cast<size_t>(4 * L + k)];
        std::vector<uint32_t>().swap(s.hist);
        std::vector<float>().swap(s.rows);
      }
      progress.update("Calibrating", L + 1, n_layer, "blocks");
    }
    progress.finish("Calibrating");
    summary.calibration_seconds = sq_seconds_since(t0);
    summary.chunks = n_chunks;
    summary.ctx = cfg.ctx;
    summary.tokens = tokens;
    summary.calibration_bf16 = bf16_calibration();
    summary.groups = groups;
    calibrated = true;
  }

  bool bf16_calibration() const {
    if (cfg.bf16_activations) return *cfg.bf16_activations;
    const ModelTensor* t = src.find(linears.front().gguf);
    return t && t->type == QuantType::BF16;
  }

  std::string mappings_line() const {
    if (moe)
      return "Smoothing mappings: input_layernorm -> q/k/v (the post-attention norm feeds the router and every "
             "expert: not smoothed)";
    return cfg.smooth_all ? "Smoothing mappings: all (input_layernorm -> q/k/v, post_attention_layernorm -> gate/up, "
                            "v_proj -> o_proj, up_proj -> down_proj)"
                          : "Smoothing mappings: default (input_layernorm -> q/k/v, post_attention_layernorm -> gate/up)";
  }

  std::string activations_line() const {
    return bf16_calibration() ? "Calibration activations: bf16 (rounded before the products, as for a bf16 model)"
                              : "Calibration activations: f32";
  }

  std::vector<double> alpha_grid() const {
    std::vector<double> grid = cfg.alpha_grid;
    if (grid.empty())
      for (int i = 0; i <= 20; ++i) grid.push_back(i * 0.05);
    return grid;
  }

  // Sites must have seen finite values, and some signal.
  void check_sites(size_t s0, size_t s1) const {
    for (size_t i = s0; i < s1; ++i) {
      if (moe && i % 4 >= 2) continue;  // not observed
      const SqSite& s = sites[i];
      if (s.non_finite)
        fail(Errc::smoothquant_failed,
             "smoothquant: {} holds NaN or infinite activations on the calibration data; nothing was written", s.what);
      if (s.tokens == 0 || *std::max_element(s.absmax.begin(), s.absmax.end()) <= 0)
        fail(Errc::smoothquant_failed,
             "smoothquant: {} has no calibration signal (all activations zero over {} tokens); nothing was written",
             s.what, s.tokens);
    }
  }

  // The scales of block l's groups, from `m` (the whole model, or the block alone as block ml).
  void block_scales(int64_t l, const Model& m, int64_t ml, const Context& ctx) {
    for (int k = 0; k < gpb; ++k) group_scales(static_cast<size_t>(gpb * l + k), m, ml, ctx);
    // Unsmoothed inputs (o_proj, down_proj without smooth_all): their own statistic.
    if (!cfg.smooth_all)
      for (int k : {1, 3}) {
        if (moe && k == 3) continue;  // not observed
        const size_t i = static_cast<size_t>(4 * l + k);
        const auto a = sites[i].statistic(cfg.activation_percentile);
        site_smoothed_max[i] = *std::max_element(a.begin(), a.end());
      }
    for (size_t i = static_cast<size_t>(4 * l); i < static_cast<size_t>(4 * l + 4); ++i)
      if (!(moe && i % 4 >= 2) && (!std::isfinite(site_smoothed_max[i]) || site_smoothed_max[i] <= 0))
        fail(Errc::smoothquant_failed, "smoothquant: {}: static input scale is {}; nothing was written", sites[i].what,
             site_smoothed_max[i] / 127.5f);
  }

  void group_scales(size_t g, const Model& m, int64_t ml, const Context& ctx) {
    ctx.check_cancelled();
    Progress& progress = ctx.progress_sink();
    SmoothQuantGroup& G = groups[g];
    const int kind = group_kind(g);
    const size_t site_i = static_cast<size_t>(4 * G.layer + kSqGroupSite[kind]);
    const SqSite& site = sites[site_i];
    // Per input column of the group's linears: the activation statistic and max |W[:, j]|.
    const std::vector<float> a_col = site.statistic(cfg.activation_percentile);
    std::vector<std::vector<float>> W;
    std::vector<float> w_col;
    for (const auto& x : linears) {
      if (x.group != static_cast<int>(g)) continue;
      std::vector<float> v = m.tensor_f32(fmt::format("blk.{}.{}.weight", ml, x.role));
      const int64_t n = x.cols, rows = static_cast<int64_t>(v.size()) / n;
      if (w_col.empty()) w_col.assign(static_cast<size_t>(n), 0.0f);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j)
          w_col[static_cast<size_t>(j)] = std::max(w_col[static_cast<size_t>(j)], std::fabs(v[static_cast<size_t>(r * n + j)]));
      if (cfg.alpha_auto) W.push_back(std::move(v));
    }
    if (a_col.size() != w_col.size())
      fail(Errc::invalid_model, "smoothquant: {}: {} activation channels against {} weight columns", G.norm, a_col.size(),
           w_col.size());
    // v -> o with GQA: one scale per KV channel serves the o_proj columns of every query head
    // reading it; its statistics are the maxima over those columns.
    const int64_t n_col = static_cast<int64_t>(a_col.size());
    std::vector<int64_t> col_of;  // column -> scale index; empty = the identity
    std::vector<float> a = a_col, w = w_col;
    if (kind == kSqValueOut && q_per_kv > 1) {
      const int64_t n_kv = n_col / q_per_kv;
      col_of.resize(static_cast<size_t>(n_col));
      a.assign(static_cast<size_t>(n_kv), 0.0f);
      w.assign(static_cast<size_t>(n_kv), 0.0f);
      for (int64_t j = 0; j < n_col; ++j) {
        const int64_t h = j / head_dim, c = (h / q_per_kv) * head_dim + j % head_dim;
        col_of[static_cast<size_t>(j)] = c;
        a[static_cast<size_t>(c)] = std::max(a[static_cast<size_t>(c)], a_col[static_cast<size_t>(j)]);
        w[static_cast<size_t>(c)] = std::max(w[static_cast<size_t>(c)], w_col[static_cast<size_t>(j)]);
      }
    }
    auto expand = [&](const std::vector<float>& s) {
      if (col_of.empty()) return s;
      std::vector<float> e(static_cast<size_t>(n_col));
      for (int64_t j = 0; j < n_col; ++j) e[static_cast<size_t>(j)] = s[static_cast<size_t>(col_of[static_cast<size_t>(j)])];
      return e;
    };
    G.alpha = cfg.alpha;
    if (cfg.alpha_auto) {
      // MigrationAnalyzer's search, with the scales spread over the columns they apply to.
      const int64_t rows = site.rows_held;
      const std::vector<float> X(site.rows.begin(), site.rows.begin() + rows * n_col);
      const detail::EngineOps ops = Registry::instance().engine_ops(ctx.active_backend());
      const int threads = ctx.thread_count();
      std::vector<std::vector<float>> Yref;
      for (const auto& mw : W) Yref.push_back(sq_product(ops, mw, X.data(), rows, n_col, threads));
      const std::vector<double> grid = alpha_grid();
      // Static activations are judged with the input_scale each alpha would store (see below).
      auto input_scale = [&](const std::vector<float>& se) {
        if (!cfg.static_activations) return 0.0f;
        double sm = 0;
        for (size_t j = 0; j < a_col.size(); ++j) sm = std::max(sm, static_cast<double>(a_col[j]) / se[j]);
        return static_cast<float>(sm / 127.5);
      };
      auto error_at = [&](double al) {
        const std::vector<float> se = expand(smoothing_scales(a, w, al));
        return sq_group_error(ops, W, X, rows, n_col, Yref, se, cfg.per_channel, threads, input_scale(se));
      };
      double best = std::numeric_limits<double>::infinity();
      G.mse_default = -1;
      for (double al : grid) {
        ctx.check_cancelled();
        const double e = error_at(al);
        if (e < best) best = e, G.alpha = al;
        if (std::fabs(al - cfg.alpha) < 1e-12 && G.mse_default < 0) G.mse_default = e;
      }
      G.mse_chosen = best;
      if (G.mse_default < 0) G.mse_default = error_at(cfg.alpha);
      progress.message(fmt::format("  {}: alpha {:.2f} (relative MSE {:.3g}; {:.3g} at alpha {})", G.norm, G.alpha,
                                   G.mse_chosen, G.mse_default, cfg.alpha));
    }
    G.scales = smoothing_scales(a, w, G.alpha);
    if (!col_of.empty()) group_columns[g] = expand(G.scales);
    const std::vector<float>& sc = col_of.empty() ? G.scales : group_columns[g];
    double amax = 0, smax = 0, smin = std::numeric_limits<double>::infinity(), sm = 0;
    for (size_t j = 0; j < G.scales.size(); ++j) {
      const float s = G.scales[j];
      if (!std::isfinite(s) || s <= 0)
        fail(Errc::smoothquant_failed, "smoothquant: {}: smoothing scale of channel {} is {}; nothing was written", G.norm,
             j, s);
      smax = std::max(smax, static_cast<double>(s));
      smin = std::min(smin, static_cast<double>(s));
    }
    for (size_t j = 0; j < a_col.size(); ++j) {
      amax = std::max(amax, static_cast<double>(a_col[j]));
      sm = std::max(sm, static_cast<double>(a_col[j]) / sc[j]);
    }
    G.activation_max = amax;
    G.activation_max_smoothed = sm;
    G.scale_min = smin;
    G.scale_max = smax;
    site_smoothed_max[site_i] = static_cast<float>(sm);
  }

  const SqLinear* linear_by_module(const std::string& module) const {
    for (const auto& x : linears)
      if (x.module == module) return &x;
    return nullptr;
  }

  void apply(Model& m) const {
    if (!calibrated) fail(Errc::invalid_argument, "smoothquant: apply() before calibrate()");
    for (size_t g = 0; g < groups.size(); ++g) {
      const auto& s = groups[g].scales;
      if (group_kind(g) == kSqValueOut) {  // v_proj's bias is divided with its rows
        const std::string bias = names::block_tensor(groups[g].layer, "attn_v.bias");
        if (src.find(bias)) {
          std::vector<float> v = m.tensor_f32(bias);
          if (v.size() != s.size()) fail(Errc::invalid_argument, "smoothquant: {} has {} values, not {}", bias, v.size(), s.size());
          for (size_t j = 0; j < v.size(); ++j) v[j] /= s[j];
          m.replace_tensor(bias, v, QuantType::F32);
        }
      }
      if (group_kind(g) > kSqFfnNorm) continue;
      const std::string norm = norm_gguf(g);
      std::vector<float> v = m.tensor_f32(norm);
      if (v.size() != s.size()) fail(Errc::invalid_argument, "smoothquant: {} has {} values, not {}", norm, v.size(), s.size());
      for (size_t j = 0; j < v.size(); ++j) v[j] /= s[j];
      m.replace_tensor(norm, v, QuantType::F32);
    }
    for (const auto& x : linears) {
      if (x.expert > 0) continue;  // a merged expert tensor is done whole with expert 0 (rows are independent)
      std::vector<float> v = m.tensor_f32(x.gguf);
      const int64_t n = m.tensor_shape(x.gguf)[0], rows = static_cast<int64_t>(v.size()) / n;
      const int64_t want_rows = x.expert == 0 ? x.rows * src.at(x.gguf).ne[2] : x.rows;
      if (n != x.cols || rows != want_rows)
        fail(Errc::invalid_argument, "smoothquant: {} is {} x {} in the model, {} x {} in the checkpoint", x.gguf, rows, n,
             x.rows, x.cols);
      if (x.row_group >= 0 && (x.role == "attn_q" || x.role == "attn_k"))
        fail(Errc::invalid_argument, "smoothquant: {}: rows of a permuted weight cannot be scaled", x.gguf);
      fold(x, v, 0);
      if (cfg.quantize) {
        const StDtype dt = weight_dtype(x);
        std::vector<int8_t> q(v.size());
        const auto sc = sq_quantize_rows(v.data(), rows, n, cfg.per_channel, dt, q.data(), 0);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < n; ++j)
            v[static_cast<size_t>(r * n + j)] = q[static_cast<size_t>(r * n + j)] * sc[cfg.per_channel ? static_cast<size_t>(r) : 0];
      }
      m.replace_tensor(x.gguf, v, QuantType::F32);
    }
  }

  StDtype weight_dtype(const SqLinear& x) const {
    const ModelTensor* t = src.find(x.gguf);
    if (t && t->type == QuantType::BF16) return StDtype::BF16;
    if (t && t->type == QuantType::F16) return StDtype::F16;
    return StDtype::F32;
  }

  SmoothQuantResult write(const fs::path& dir, const Context& ctx) {
    OutputDir od(dir, {"compressed-tensors"}, "compressed-tensors output");
    return write_to(od, ctx);
  }
  SmoothQuantResult write_to(OutputDir& od, const Context& ctx);

  // The bounded-memory command: the output's temporary directory first (its work files live
  // there), the block-at-a-time calibration, then the same writer as write().
  SmoothQuantResult run_streamed(const fs::path& dir, const Context& ctx) {
    OutputDir od(dir, {"compressed-tensors"}, "compressed-tensors output");
    const fs::path work = od.make_tmp() / ".smoothquant-work";
    std::error_code ec;
    fs::create_directories(work, ec);
    if (ec) fail(Errc::output_error, "smoothquant: cannot create {}: {}", work.string(), ec.message());
    calibrate_streamed(work, ctx);
    fs::remove_all(work, ec);
    return write_to(od, ctx);
  }
};

SmoothQuantResult SmoothQuantizer::Impl::write_to(OutputDir& od, const Context& ctx) {
  if (!calibrated) fail(Errc::invalid_argument, "smoothquant: write() before calibrate()");
  const auto t0 = std::chrono::steady_clock::now();
  Progress& progress = ctx.progress_sink();
  const fs::path& dir = od.dir();
  std::error_code ec;

  const fs::path src_path = src.path();
  const fs::path src_dir = fs::is_regular_file(src_path, ec) ? src_path.parent_path() : src_path;
  const auto files = sq_source_files(src_path);
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(read_file(src_dir / "config.json"), nullptr, false);
  if (config.is_discarded() || !config.is_object())
    fail(Errc::invalid_model, "{}: malformed config.json", (src_dir / "config.json").string());

  // The plan: every source tensor in file order, each becoming one or more output tensors.
  enum class Kind { copy, norm, linear };
  struct Item {
    const SafetensorsFile* file;
    const StTensor* t;
    Kind kind = Kind::copy;
    int group = -1;             // norm: its group; linear: its smoothing group (-1: none)
    const SqLinear* lin = nullptr;
  };
  std::vector<std::unique_ptr<SafetensorsFile>> open;
  std::vector<Item> items;
  std::vector<StTensorSpec> specs;
  summary.n_parameters = 0;
  summary.n_quantized = 0;
  std::map<std::string, size_t> norm_group;
  // A norm's weight is divided by its group's scales, and so is the bias of a v_proj or up_proj
  // whose output rows are (smooth_all).
  for (size_t g = 0; g < groups.size(); ++g)
    norm_group[groups[g].norm + (group_kind(g) <= kSqFfnNorm ? ".weight" : ".bias")] = g;
  for (const auto& f : files) {
    open.push_back(std::make_unique<SafetensorsFile>(f));
    std::vector<const StTensor*> order;
    for (const auto& t : open.back()->tensors()) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
    for (const StTensor* t : order) {
      Item it{open.back().get(), t};
      const std::string& name = t->name;
      summary.n_parameters += static_cast<int64_t>(t->nbytes / st_dtype_size(t->dtype));
      if (auto ng = norm_group.find(name); ng != norm_group.end()) {
        it.kind = Kind::norm;
        it.group = static_cast<int>(ng->second);
      } else if (name.size() > 7 && name.ends_with(".weight")) {
        const SqLinear* lin = linear_by_module(name.substr(0, name.size() - 7));
        if (lin) {
          it.kind = Kind::linear;
          it.lin = lin;
          it.group = lin->group;
        }
      }
      if (it.kind != Kind::copy && !sq_float_dtype(t->dtype))
        fail(Errc::invalid_model, "smoothquant: {} is {}, not a float type", name, st_dtype_name(t->dtype));
      if (it.kind == Kind::linear && !cfg.quantize) {
        // Smoothing only: the folded weights in the source dtype, no quantization.
        specs.push_back({name, t->dtype, t->shape});
      } else if (it.kind == Kind::linear) {
        if (t->shape.size() != 2) fail(Errc::invalid_model, "smoothquant: {} is not a matrix", name);
        const std::string mod = it.lin->module;
        specs.push_back({name, StDtype::I8, t->shape});
        specs.push_back({mod + "." + ct::kWeightScale, t->dtype,
                         cfg.per_channel ? std::vector<int64_t>{t->shape[0], 1} : std::vector<int64_t>{1}});
        if (cfg.static_activations) specs.push_back({mod + "." + ct::kInputScale, t->dtype, {1}});
        summary.n_quantized += t->shape[0] * t->shape[1];
      } else {
        specs.push_back({name, t->dtype, t->shape});
      }
      items.push_back(it);
    }
  }
  for (const auto& x : linears)
    if (std::none_of(items.begin(), items.end(), [&](const Item& it) { return it.lin == &x; }))
      fail(Errc::invalid_model, "smoothquant: {}.weight is not in the checkpoint's files", x.module);
  summary.source_bytes = 0;
  for (const auto& f : open) summary.source_bytes += f->file_size();

  // DIR.tmp-XXXX beside the destination, removed unless published.
  const fs::path& tmp = od.make_tmp();

  progress.message(fmt::format("Writing {} ({} tensors)", dir.string(), specs.size()));
  uint64_t data_bytes = 0;
  for (const auto& s : specs) data_bytes += s.nbytes();
  ShardedSafetensorsWriter out(tmp, specs);
  const int threads = ctx.thread_count();
  std::vector<uint8_t> raw;
  std::vector<float> v;
  std::vector<int8_t> q;
  std::vector<uint8_t> bytes;
  progress.update("Writing", 0, static_cast<int64_t>(items.size()), "tensors");
  for (size_t i = 0; i < items.size(); ++i) {
    ctx.check_cancelled();
    const Item& it = items[i];
    const StTensor& t = *it.t;
    raw.resize(t.nbytes);
    if (t.nbytes) it.file->read(t.begin, t.nbytes, raw.data());
    if (it.kind == Kind::copy) {
      out.write(t.name, raw.data(), raw.size());
    } else {
      const size_t esz = st_dtype_size(t.dtype), n_el = t.nbytes / esz;
      v.resize(n_el);
      for (size_t k = 0; k < n_el; ++k) v[k] = to_f32(t.dtype, raw.data() + k * esz);
      if (it.kind == Kind::norm) {
        const auto& s = groups[static_cast<size_t>(it.group)].scales;
        if (s.size() != n_el) fail(Errc::invalid_model, "smoothquant: {} has {} values, not {}", t.name, n_el, s.size());
        // a (1 + w) norm (Gemma's) is stored as w: (1 + w) / s - 1
        const bool plus_one = src.at(norm_gguf(static_cast<size_t>(it.group))).plus_one;
        for (size_t k = 0; k < n_el; ++k) {
          v[k] = plus_one ? (v[k] + 1.0f) / s[k] - 1.0f : v[k] / s[k];
          if (!std::isfinite(through(t.dtype, v[k])))
            fail(Errc::smoothquant_failed, "smoothquant: {}: smoothed norm weight {} is not finite in {}; nothing was written",
                 t.name, k, st_dtype_name(t.dtype));
          from_f32(t.dtype, v[k], raw.data() + k * esz);
        }
        out.write(t.name, raw.data(), raw.size());
      } else {
        const int64_t rows = t.shape[0], n = t.shape[1];
        if (rows != it.lin->rows || n != it.lin->cols)
          fail(Errc::invalid_model, "smoothquant: {} is {} x {}, not {} x {}", t.name, rows, n, it.lin->rows, it.lin->cols);
        fold(*it.lin, v, threads);
        if (!cfg.quantize) {
          for (size_t k = 0; k < n_el; ++k) {
            if (!std::isfinite(through(t.dtype, v[k])))
              fail(Errc::smoothquant_failed, "smoothquant: {}: smoothed weight {} is not finite in {}; nothing was written",
                   t.name, k, st_dtype_name(t.dtype));
            from_f32(t.dtype, v[k], raw.data() + k * esz);
          }
          out.write(t.name, raw.data(), raw.size());
          progress.update("Writing", static_cast<int64_t>(i + 1), static_cast<int64_t>(items.size()), "tensors");
          continue;
        }
        q.resize(n_el);
        const auto sc = sq_quantize_rows(v.data(), rows, n, cfg.per_channel, t.dtype, q.data(), threads);
        for (size_t r = 0; r < sc.size(); ++r)
          if (!std::isfinite(sc[r]) || sc[r] <= 0)
            fail(Errc::smoothquant_failed, "smoothquant: {}: weight scale of row {} is {}; nothing was written", t.name, r,
                 sc[r]);
        out.write(t.name, q.data(), q.size());
        bytes.resize(sc.size() * esz);
        for (size_t r = 0; r < sc.size(); ++r) from_f32(t.dtype, sc[r], bytes.data() + r * esz);
        out.write(it.lin->module + "." + ct::kWeightScale, bytes.data(), bytes.size());
        if (cfg.static_activations) {
          // One scale per tensor from the calibration statistic of the (smoothed) input; q/k/v
          // (and gate/up) read the same input, so the shards vLLM fuses get the same scale.
          const float is = site_smoothed_max[static_cast<size_t>(4 * it.lin->layer + it.lin->site)] / 127.5f;
          const float stored = through(t.dtype, is);
          if (!std::isfinite(stored) || stored <= 0)
            fail(Errc::smoothquant_failed, "smoothquant: {}: input scale {} is not a positive finite {}; nothing was written",
                 it.lin->module, is, st_dtype_name(t.dtype));
          bytes.resize(esz);
          from_f32(t.dtype, is, bytes.data());
          out.write(it.lin->module + "." + ct::kInputScale, bytes.data(), bytes.size());
        }
      }
    }
    progress.update("Writing", static_cast<int64_t>(i + 1), static_cast<int64_t>(items.size()), "tensors");
  }
  out.commit();
  progress.finish("Writing");

  ct::W8A8Scheme scheme{cfg.per_channel, cfg.static_activations};
  if (cfg.quantize) {
    config["quantization_config"] = ct::w8a8_quantization_config(scheme);
    for (const auto& f : open)  // the routers stay float (as llm-compressor's MoE recipes ignore them)
      for (const auto& t : f->tensors())
        if (t.name.ends_with(".weight"))
          if (const std::string r = names::moe_router_module(t.name.substr(0, t.name.size() - 7)); !r.empty())
            if (const std::string pat = "re:.*" + r + "$";
                std::find(config["quantization_config"]["ignore"].begin(), config["quantization_config"]["ignore"].end(),
                          pat) == config["quantization_config"]["ignore"].end())
              config["quantization_config"]["ignore"].push_back(pat);
  }
  write_file_atomic(tmp / "config.json", config.dump(2) + "\n");
  SmoothQuantResult& r = summary;
  r.files = out.file_names();
  r.files.insert(r.files.begin(), "config.json");
  for (const auto& e : fs::directory_iterator(src_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && sq_copied_file(name)) {
      fs::copy_file(e.path(), tmp / name, fs::copy_options::overwrite_existing, ec);
      if (ec) fail(Errc::output_error, "cannot copy {} into {}: {}", e.path().string(), tmp.string(), ec.message());
      r.files.push_back(name);
    }
  }
  ctx.check_cancelled();
  // Into place: an earlier output is moved aside first and removed once the new one is there.
  od.publish();

  r.output = dir;
  r.output_bytes = 0;
  for (const auto& f : r.files) r.output_bytes += fs::file_size(dir / f, ec);
  r.bpw = r.n_parameters > 0 ? 8.0 * static_cast<double>(data_bytes) / static_cast<double>(r.n_parameters) : 0;
  r.seconds = sq_seconds_since(t0) + r.calibration_seconds;
  return r;
}

std::vector<float> smoothing_scales(const std::vector<float>& a, const std::vector<float>& w, double alpha) {
  if (a.size() != w.size())
    fail(Errc::invalid_argument, "smoothing_scales: {} activation values against {} weight columns", a.size(), w.size());
  std::vector<float> s(a.size());
  for (size_t j = 0; j < a.size(); ++j) {
    const double v = w[j] > 0 ? std::pow(static_cast<double>(a[j]), alpha) / std::pow(static_cast<double>(w[j]), 1 - alpha)
                              : static_cast<double>(a[j]);
    s[j] = static_cast<float>(std::max(v, 1e-5));
  }
  return s;
}

namespace sq_impl {

// y = x W^T (rows x out) with the engine's float product.
std::vector<float> sq_product(const detail::EngineOps& ops, const std::vector<float>& w, const float* x, int64_t rows,
                              int64_t n, int threads) {
  const int64_t out = static_cast<int64_t>(w.size()) / n;
  std::vector<float> y(static_cast<size_t>(rows * out));
  detail::Product p;
  p.w = detail::WeightView{QuantType::F32, reinterpret_cast<const uint8_t*>(w.data()), out, n, static_cast<size_t>(n) * 4,
                           "smoothquant"};
  p.x = x;
  p.m = rows;
  p.y = y.data();
  ops.products(std::span<const detail::Product>(&p, 1), threads);
  return y;
}

double sq_group_error(const detail::EngineOps& ops, const std::vector<std::vector<float>>& W, const std::vector<float>& X,
                      int64_t rows, int64_t n, const std::vector<std::vector<float>>& Yref, const std::vector<float>& s,
                      bool per_channel, int threads, float static_scale) {
  std::vector<float> xq(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = &X[static_cast<size_t>(r * n)];
    float* o = &xq[static_cast<size_t>(r * n)];
    float m = 0;
    for (int64_t j = 0; j < n; ++j) m = std::max(m, std::fabs(x[j] / s[static_cast<size_t>(j)]));
    // Dynamic per-token activations as vLLM computes them at run time: scale max|x| / 127; static:
    // the stored input_scale.
    const float sc = static_scale > 0 ? static_scale : m > 0 ? m / 127.0f : 1.0f;
    for (int64_t j = 0; j < n; ++j)
      o[j] = std::clamp(std::nearbyint(x[j] / s[static_cast<size_t>(j)] / sc), -128.0f, 127.0f) * sc;
  }
  double err = 0, energy = 0;
  for (size_t i = 0; i < W.size(); ++i) {
    const int64_t out = static_cast<int64_t>(W[i].size()) / n;
    std::vector<float> ws(W[i].size());
    for (int64_t r = 0; r < out; ++r)
      for (int64_t j = 0; j < n; ++j)
        ws[static_cast<size_t>(r * n + j)] = W[i][static_cast<size_t>(r * n + j)] * s[static_cast<size_t>(j)];
    std::vector<int8_t> q(ws.size());
    const auto sc = sq_quantize_rows(ws.data(), out, n, per_channel, StDtype::F32, q.data(), threads);
    for (int64_t r = 0; r < out; ++r) {
      const float f = sc[per_channel ? static_cast<size_t>(r) : 0];
      for (int64_t j = 0; j < n; ++j) ws[static_cast<size_t>(r * n + j)] = q[static_cast<size_t>(r * n + j)] * f;
    }
    const auto y = sq_product(ops, ws, xq.data(), rows, n, threads);
    for (size_t k = 0; k < y.size(); ++k) {
      const double d = static_cast<double>(y[k]) - Yref[i][k];
      err += d * d;
      energy += static_cast<double>(Yref[i][k]) * Yref[i][k];
    }
  }
  return energy > 0 ? err / energy : err;
}

int64_t sq_group_width(const std::vector<std::vector<float>>& W, const std::vector<float>& v, const std::vector<float>& x,
                       int64_t rows) {
  const int64_t n = static_cast<int64_t>(v.size());
  if (W.empty() || n == 0 || rows < 1 || static_cast<int64_t>(x.size()) < rows * n)
    fail(Errc::invalid_argument, "MigrationAnalyzer: {} weights, {} channels, {} rows of {} values", W.size(), n, rows,
         x.size());
  for (const auto& w : W)
    if (w.empty() || static_cast<int64_t>(w.size()) % n != 0)
      fail(Errc::invalid_argument, "MigrationAnalyzer: a weight of {} values is not a matrix of {} columns", w.size(), n);
  return n;
}

}  // namespace sq_impl

MigrationAnalyzer::MigrationAnalyzer(std::vector<double> grid, bool per_channel, bool static_activations)
    : grid_(std::move(grid)), per_channel_(per_channel), static_(static_activations) {
  if (grid_.empty())
    for (int i = 0; i <= 20; ++i) grid_.push_back(i * 0.05);
  for (double a : grid_)
    if (!(a >= 0 && a <= 1)) fail(Errc::invalid_argument, "MigrationAnalyzer: alpha {} is outside [0, 1]", a);
}

double MigrationAnalyzer::error(const std::vector<std::vector<float>>& W, const std::vector<float>& x, int64_t rows,
                                const std::vector<float>& s, const Context& ctx) const {
  const int64_t n = sq_group_width(W, s, x, rows);
  const detail::EngineOps ops = Registry::instance().engine_ops(ctx.active_backend());
  const int threads = ctx.thread_count();
  std::vector<std::vector<float>> Yref;
  for (const auto& w : W) Yref.push_back(sq_product(ops, w, x.data(), rows, n, threads));
  float input_scale = 0;
  if (static_) {
    double m = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < n; ++j)
        m = std::max(m, static_cast<double>(std::fabs(x[static_cast<size_t>(r * n + j)]) / s[static_cast<size_t>(j)]));
    input_scale = static_cast<float>(m / 127.5);
  }
  return sq_group_error(ops, W, x, rows, n, Yref, s, per_channel_, threads, input_scale);
}

MigrationResult MigrationAnalyzer::find_optimal_alpha(const std::vector<std::vector<float>>& W, const std::vector<float>& x,
                                                      int64_t rows, const std::vector<float>& a, const Context& ctx) const {
  const int64_t n = sq_group_width(W, a, x, rows);
  const detail::EngineOps ops = Registry::instance().engine_ops(ctx.active_backend());
  const int threads = ctx.thread_count();
  std::vector<float> w(static_cast<size_t>(n), 0.0f);
  for (const auto& m : W)
    for (size_t k = 0; k < m.size(); ++k) w[k % static_cast<size_t>(n)] = std::max(w[k % static_cast<size_t>(n)], std::fabs(m[k]));
  std::vector<std::vector<float>> Yref;
  for (const auto& m : W) Yref.push_back(sq_product(ops, m, x.data(), rows, n, threads));
  MigrationResult r;
  r.error = std::numeric_limits<double>::infinity();
  for (double al : grid_) {
    ctx.check_cancelled();
    const std::vector<float> s = smoothing_scales(a, w, al);
    float input_scale = 0;  // static: the input_scale the output would store
    if (static_) {
      double m = 0;
      for (int64_t j = 0; j < n; ++j) m = std::max(m, static_cast<double>(a[static_cast<size_t>(j)]) / s[static_cast<size_t>(j)]);
      input_scale = static_cast<float>(m / 127.5);
    }
    const double e = sq_group_error(ops, W, x, rows, n, Yref, s, per_channel_, threads, input_scale);
    r.errors.push_back(e);
    if (e < r.error) r.error = e, r.alpha = al;
  }
  return r;
}

SmoothQuantizer::SmoothQuantizer(const ModelSource& source, SmoothQuantConfig config)
    : impl_(std::make_unique<Impl>(source, std::move(config))) {}
SmoothQuantizer::~SmoothQuantizer() = default;
void SmoothQuantizer::set_calibration(const CalibrationData& data) { impl_->set_calibration(data); }
void SmoothQuantizer::calibrate(const Context& ctx) { impl_->calibrate(ctx); }
const std::vector<SmoothQuantGroup>& SmoothQuantizer::groups() const { return impl_->groups; }
void SmoothQuantizer::apply(Model& model) const { impl_->apply(model); }
SmoothQuantResult SmoothQuantizer::write(const fs::path& dir, const Context& ctx) { return impl_->write(dir, ctx); }
Model& SmoothQuantizer::model() {
  if (!impl_->model) fail(Errc::invalid_argument, "smoothquant: the model was released");
  return *impl_->model;
}
void SmoothQuantizer::release_model() { impl_->model.reset(); }
const SmoothQuantConfig& SmoothQuantizer::config() const { return impl_->cfg; }
const SmoothQuantResult& SmoothQuantizer::summary() const { return impl_->summary; }

SmoothQuantResult smoothquant_model(const fs::path& model, fs::path out, const SmoothQuantConfig& config,
                                    const Context& ctx) {
  validate(config);
  if (out.empty()) out = smoothquant_default_output(model);
  Progress& progress = ctx.progress_sink();
  progress.message(fmt::format("Loading model: {}", model.string()));
  auto src = ModelSource::open(model);
  const Architecture& arch = architecture_of(src->config(), "smoothquant");
  if (src->is_gguf() || arch.sandwich_norms || arch.scale_embedding || arch.swa_period > 0) {
    // A block calibrated alone needs blocks that do not depend on their index and embeddings
    // used as they are; the constructor refuses the rest with its own message.
    SmoothQuantizer sq(*src, config);
    sq.calibrate(ctx);
    sq.release_model();
    return sq.write(out, ctx);
  }
  SmoothQuantizer::Impl run(*src, config, /*load=*/false);
  return run.run_streamed(out, ctx);
}

}  // namespace lq

// ---- the statistic's handle for other pipelines (smoothquant_stats.hpp) ---------------------

namespace lq::sq_impl {

SqInputStats::SqInputStats(std::string what, int64_t n, const SmoothQuantConfig& cfg, uint64_t seed)
    : site_(std::make_unique<SqSite>()), percentile_(cfg.activation_percentile) {
  SqSite& s = *site_;
  s.what = std::move(what);
  s.n = n;
  s.absmax.assign(static_cast<size_t>(n), 0.0f);
  if (percentile_ < 100) s.hist.assign(static_cast<size_t>(n) * kSqBins, 0);
  if (cfg.alpha_auto) {
    s.keep = cfg.auto_rows;
    s.rows.assign(static_cast<size_t>(s.keep * n), 0.0f);
    s.rng.seed(seed);
  }
}
SqInputStats::~SqInputStats() = default;
SqInputStats::SqInputStats(SqInputStats&&) noexcept = default;
SqInputStats& SqInputStats::operator=(SqInputStats&&) noexcept = default;

void SqInputStats::observe(const float* x, int64_t rows, int threads) {
  sq_observe(*site_, x, rows, percentile_ < 100, threads);
}

std::vector<float> SqInputStats::statistic() const {
  const SqSite& s = *site_;
  if (s.non_finite)
    fail(Errc::smoothquant_failed,
         "smoothquant: {} holds NaN or infinite activations on the calibration data; nothing was written", s.what);
  if (s.tokens == 0 || *std::max_element(s.absmax.begin(), s.absmax.end()) <= 0)
    fail(Errc::smoothquant_failed,
         "smoothquant: {} has no calibration signal (all activations zero over {} tokens); nothing was written", s.what,
         s.tokens);
  return s.statistic(percentile_);
}

std::vector<float> SqInputStats::sample() const {
  return std::vector<float>(site_->rows.begin(), site_->rows.begin() + site_->rows_held * site_->n);
}
int64_t SqInputStats::rows() const { return site_->rows_held; }
int64_t SqInputStats::channels() const { return site_->n; }

}  // namespace lq::sq_impl
