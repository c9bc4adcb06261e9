// AWQ (awq.hpp): activation-aware scale search, folding, clipping and AutoAWQ's asymmetric grid.
// The block step (AwBlockStep, run through awq_block.hpp's AwBlockRunner) works on one block's
// float weights and captured inputs and hands every change to an AwBlockIo; AwqQuantizer runs it
// on the whole model loaded in GPTQ's pipeline (GptqQuantizer: model loading, the linears' checks,
// Hugging Face row order, the output directory in every layout), and awq_model on GPTQ's streamed
// runner (gptq_stream.cpp: one block in memory, checkpoints) wherever that runner applies. Must not
// parse flags or print: progress goes to the Context's sink.
//
// Per block L: one calibration pass through the model whose blocks < L are already quantized
// (the linear hook keeps block L's four product inputs for every chunk and stops the forward pass
// at ffn_down); then, on the block's float weights and those activations, the four scale
// searches (AutoAWQ's order: all searched first, then folded), the folds (norm weights divided,
// rounded to the checkpoint's dtype, and the next linears' columns multiplied by the scales that
// rounding left), the clipping search on the scaled weights and activations of all seven linears
// (q/k on the symmetric clamps only; every token, through XᵀX: each group's own block and its cross
// term with the row's groups before it, or that term through the row's errors on the tokens where
// those are fewer numbers than XᵀX; each clipped group's scale refitted, then gain-corrected),
// and the quantization. Linear-inspected groups cost their loss through XᵀX when tokens outnumber
// columns; where their clipping takes all of XᵀX too, it is the search's, divided by the scales.
// With AwqParams::search_bf16 the searches' weight products (candidates and originals) are the
// back-end's BF16 products on bf16 copies of the weights; everything after the searches is float.
// Only block L's activations are held; the streamed run parks every one on disk as it is captured
// and its parts read them there a chunk or slab at a time (AwRows: the searches' inputs and
// references, the clippings' XᵀX or group columns, the column means in the in-memory order
// through AwColAbsMean), so it holds none of them whole but o_proj's through o's own search and
// a mixture of experts' MLP inputs through its step. The q/k/v group is inspected at the attention block's
// output: attention is recomputed here (RoPE and causal GQA as the engine does, checked against
// the engine's own attention result on every block; Qwen3's and Gemma 3's per-head q/k RMSNorm,
// Gemma's score scale, soft-cap, sliding windows and local RoPE base included). Gemma's MLP is
// GELU-tanh gated and its (1 + w) norms fold as 1 + w, stored as w. Phi-3's fused qkv_proj and
// gate_up_proj are split into their parts for the searches, folds and clipping and put back
// together when quantized; its LongRoPE factors and attention factor are the engine's. A mixture
// of experts (Mixtral, Qwen2-MoE, Qwen3-MoE) searches its MLP norm's scales on the
// mixture's output with the capture's routing (folded into the float routers too) and each
// expert's up -> down on its routed tokens weighted by their routing weights (moe_step).
#include <lq/awq.hpp>

#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/threads.hpp>
#include <lq/tokenizer.hpp>

#include "core/fail.hpp"
#include "core/float_cast.hpp"
#include "core/half.hpp"
#include "engine/impl.hpp"
#include "model/architecture.hpp"
#include "model/tensor_names.hpp"
#include "quantize/awq_block.hpp"
#include "quantize/calibration_chunks.hpp"
#include "quantize/gptq_stream.hpp"
#include "quantize/gptq_walk.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <utility>

namespace fs = std::filesystem;

namespace lq {

GptqParams awq_gptq_params(const AwqParams& p, int scale_storage) {
  GptqParams gp;
  gp.bits = p.bits;
  gp.group_size = p.group_size;
  gp.sym = false;  // AWQ's asymmetric grid
  gp.damp = p.gptq_damp;
  gp.scale_search = p.gptq_scale_search;
  gp.scale_storage = scale_storage;
  if (p.gptq_act_order) gp.act_order = GptqActOrder::static_groups;
  return gp;
}

void validate(const AwqParams& p) {
  if (p.bits != 3 && p.bits != 4) fail(Errc::invalid_argument, "awq: bits must be 3 or 4, got {}", p.bits);
  if (p.group_size < 1) fail(Errc::invalid_argument, "awq: group size must be positive, got {}", p.group_size);
  if (p.n_grid < 0 || p.n_grid > 1000) fail(Errc::invalid_argument, "awq: grid must be in [0, 1000], got {}", p.n_grid);
  if (p.n_grid == 0 && !p.identity_candidate) fail(Errc::invalid_argument, "awq: an empty grid leaves no candidate");
  if (p.clip_grid < 1 || p.clip_grid > 1000)
    fail(Errc::invalid_argument, "awq: clip grid must be in [1, 1000], got {}", p.clip_grid);
  if (!(p.max_shrink >= 0 && p.max_shrink < 1))
    fail(Errc::invalid_argument, "awq: max shrink must be in [0, 1), got {}", p.max_shrink);
  if (p.clip_tokens < 0) fail(Errc::invalid_argument, "awq: clip tokens must be 0 (all) or positive, got {}", p.clip_tokens);
  if (p.search_tokens < 0)
    fail(Errc::invalid_argument, "awq: search tokens must be 0 (all) or positive, got {}", p.search_tokens);
  if (p.search_keep < 1) fail(Errc::invalid_argument, "awq: search keep must be at least 1, got {}", p.search_keep);
  if (p.gptq_act_order && !p.gptq_rounding)
    fail(Errc::invalid_argument, "awq: act-order applies to GPTQ rounding only (--gptq)");
  if (p.gptq_rounding) validate(awq_gptq_params(p, 0));
}

namespace awq_impl {

using AwMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using AwStride = Eigen::OuterStride<>;

inline float aw_round_scale(float s, int storage) {
  if (storage == 16) return fp16_to_f32(f32_to_fp16(s));
  if (storage == 17) return bf16_to_f32(f32_to_bf16(s));
  return s;
}

// The grid of values spanning [lo, hi]: scale = (hi - lo) / maxq (min 1e-5, rounded to its storage),
// zero = clamp(-round(lo / scale), 0, maxq).
inline void aw_range_params(float lo, float hi, int maxq, int storage, float& scale, int32_t& zero) {
  float s = aw_round_scale(std::max(hi - lo, 1e-5f) / static_cast<float>(maxq), storage);
  if (!(s > 0) || !std::isfinite(s)) s = aw_round_scale(1e-5f, storage) > 0 ? aw_round_scale(1e-5f, storage) : 1e-5f;
  scale = s;
  zero = static_cast<int32_t>(std::clamp(-std::nearbyint(lo / s), 0.0f, static_cast<float>(maxq)));
}

// AutoAWQ's pseudo_quantize_tensor grid for one group of n values (clamped to [-clip, clip] when
// clip > 0): min-max with a zero point, the range not forced to hold 0.
inline void aw_group_params(const float* x, int64_t n, int maxq, float clip, int storage, float& scale, int32_t& zero) {
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (int64_t i = 0; i < n; ++i) {
    const float v = clip > 0 ? std::clamp(x[i], -clip, clip) : x[i];
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  aw_range_params(lo, hi, maxq, storage, scale, zero);
}

// The same grid on the group clamped to [clo, chi] (the asymmetric clipping search's candidates).
inline void aw_group_params_range(const float* x, int64_t n, int maxq, float clo, float chi, int storage, float& scale,
                                  int32_t& zero) {
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::clamp(x[i], clo, chi);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  aw_range_params(lo, hi, maxq, storage, scale, zero);
}

inline int32_t aw_code(float w, float s, int32_t z, int maxq) {
  const float q = round_half_even_clamped(w / s) + static_cast<float>(z);
  return static_cast<int32_t>(std::clamp(q, 0.0f, static_cast<float>(maxq)));
}

using AwGemmFn = void (*)(const detail::GemmArgs&);

}  // namespace awq_impl

float awq_impl::awq_gain_scale(const float* x, int64_t g, const float* gram, int maxq, float scale, int32_t zero,
                               int storage) {
  const Eigen::Map<const Eigen::VectorXf> X(x, g);
  const Eigen::Map<const AwMat> G(gram, g, g);
  Eigen::VectorXf v(g);
  for (int64_t c = 0; c < g; ++c) v[c] = scale * static_cast<float>(aw_code(x[c], scale, zero, maxq) - zero);
  const Eigen::VectorXf GX = G * X;
  const double num = static_cast<double>(X.dot(GX)), den = static_cast<double>(v.dot(GX));
  if (!(num > 0) || !(den > 0)) return scale;
  const double f = num / den;
  if (!(f >= 0.5 && f <= 2)) return scale;
  const float s = aw_round_scale(static_cast<float>(scale * f), storage);
  return s > 0 && std::isfinite(s) ? s : scale;
}

namespace awq_impl {

// C[m x n] = A[m x k] · B[n x k]ᵀ on the calling thread with the back-end's float GEMM (the
// engine's attention kernel: vectorised for the CPU it runs on).
inline void aw_gemm(AwGemmFn gemm, const float* a, int64_t m, int64_t k, int64_t lda, const float* b, int64_t n,
                    int64_t ldb, float* c, int64_t ldc) {
  detail::GemmArgs g{m, n, k, a, lda, b, QuantType::F32, ldb, c, ldc, false};
  gemm(g);
}

void aw_divide_gram(float* G, int64_t n, const float* s, int threads) {
  parallel_for(n, threads, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float* row = G + i * n;
      const double si = s[i];
      for (int64_t j = 0; j < n; ++j) row[j] = static_cast<float>(static_cast<double>(row[j]) / (si * static_cast<double>(s[j])));
    }
  });
}

bool aw_cost_factor(const float* G, int64_t g, float* M) {
  thread_local Eigen::LLT<Eigen::MatrixXf> llt;  // its storage kept from group to group
  llt.compute(Eigen::Map<const AwMat>(G, g, g).reverse());
  if (llt.info() != Eigen::Success) return false;
  Eigen::Map<AwMat> m(M, g, g);
  m = llt.matrixLLT().transpose().reverse();
  m.triangularView<Eigen::StrictlyUpper>().setZero();  // from the triangle the factor leaves as it was
  return m.allFinite();
}

// Token rows per product at least: each product packs all of W once, so fewer, taller products
// spend less on packing (at 256 rows a 2048 x 8192 weight's packing was an eighth of the search).
// A row's result does not depend on the rows beside it.
constexpr int64_t kAwRows = 1024;
// Tokens on which the recomputed attention is checked against the engine's, at least (whole chunks).
constexpr int64_t kAttnCheckTokens = 4096;
// The row grain of t rows on `threads`: up to kAwRows, but every thread gets rows.
inline int64_t aw_grain(int64_t t, int threads) {
  const int64_t n = std::max(1, threads > 0 ? threads : hardware_threads());
  return std::clamp<int64_t>((t + n - 1) / n, 1, kAwRows);
}

// Y[T x out] = X[T x in] · Wᵀ, token blocks in parallel.
void aw_matmul(AwGemmFn gemm, const float* x, int64_t t, int64_t in, const float* w, int64_t out, float* y,
               int threads) {
  parallel_for(t, threads, aw_grain(t, threads), [&](int64_t t0, int64_t t1) {
    aw_gemm(gemm, x + t0 * in, t1 - t0, in, in, w, out, in, y + t0 * out, out);
  });
}

// The Hugging Face row of the engine's row r of a RoPE-permuted q/k weight.
inline int64_t aw_hf_row(int64_t r, int64_t hd) {
  const int64_t h = r / hd, w = r % hd;
  return h * hd + (w % 2) * (hd / 2) + w / 2;
}

double aw_seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct AwStopForward {};

// One group's grid: value = scale x (code - zero).
struct AwGroupGrid {
  float scale = 0;
  int32_t zero = 0;
  float code_scale = 0;  // the scale the codes are rounded on, when the gain correction moved `scale` (0: scale)
};

}  // namespace awq_impl

using namespace awq_impl;

GptqMatrix awq_quantize_matrix(const float* w, int64_t rows, int64_t cols, int bits, int64_t group_size,
                               const float* clip, const Context& ctx, int scale_storage) {
  if (bits < 2 || bits > 8) fail(Errc::invalid_argument, "awq: bits must be in [2, 8], got {}", bits);
  if (group_size < 1 || cols % group_size != 0)
    fail(Errc::invalid_argument, "awq: group size {} does not divide the row length {}", group_size, cols);
  const int maxq = (1 << bits) - 1;
  GptqMatrix m;
  m.rows = rows, m.cols = cols, m.bits = bits, m.groups = cols / group_size;
  const int64_t G = m.groups;
  m.codes.assign(static_cast<size_t>(rows * cols), 0);
  m.scales.assign(static_cast<size_t>(rows * G), 0.0f);
  m.zeros.assign(static_cast<size_t>(rows * G), 0);
  m.g_idx.resize(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) m.g_idx[static_cast<size_t>(c)] = static_cast<int32_t>(c / group_size);
  parallel_for(rows, ctx.thread_count(), 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t k = 0; k < G; ++k) {
        const size_t gi = static_cast<size_t>(r * G + k);
        const float* x = w + r * cols + k * group_size;
        const float cl = clip ? clip[gi] : 0.0f;
        aw_group_params(x, group_size, maxq, cl, scale_storage, m.scales[gi], m.zeros[gi]);
        for (int64_t c = 0; c < group_size; ++c) {
          const float v = cl > 0 ? std::clamp(x[c], -cl, cl) : x[c];
          m.codes[static_cast<size_t>(r * cols + k * group_size + c)] =
              static_cast<uint8_t>(aw_code(v, m.scales[gi], m.zeros[gi], maxq));
        }
      }
  });
  return m;
}

std::vector<float> awq_candidate_scales(std::span<const float> x_mean, std::span<const float> w_mean, double alpha,
                                        bool duo) {
  const size_t n = x_mean.size();
  if (duo && w_mean.size() != n) fail(Errc::invalid_argument, "awq: {} activation means, {} weight means", n, w_mean.size());
  std::vector<float> s(n);
  float mx = 0, mn = std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < n; ++i) {
    double v = std::pow(static_cast<double>(x_mean[i]), alpha);
    if (duo) v /= std::pow(static_cast<double>(w_mean[i]), 1 - alpha) + 1e-4;
    s[i] = std::max(static_cast<float>(v), 1e-4f);
    mx = std::max(mx, s[i]);
    mn = std::min(mn, s[i]);
  }
  const float norm = std::sqrt(mx * mn);
  if (norm > 0 && std::isfinite(norm))
    for (float& v : s) v /= norm;
  return s;
}

AwqSearch awq_search_scales(std::span<const float> x_mean, std::span<const float> w_mean, const AwqParams& p,
                            const std::function<double(std::span<const float>)>& loss,
                            const std::function<double(std::span<const float>)>& screen) {
  struct Candidate {
    double alpha;
    bool duo;
  };
  std::vector<Candidate> cands;  // after the identity, in tie-breaking order
  for (const bool duo : {true, false}) {
    if (duo ? !p.duo_scaling : p.duo_scaling && !p.plain_candidates) continue;
    for (int i = 0; i < p.n_grid; ++i) {
      if (!duo && i == 0 && p.identity_candidate && p.duo_scaling) continue;  // s = 1, the identity's loss
      cands.push_back({static_cast<double>(i) / p.n_grid, duo});
    }
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  AwqSearch r;
  r.identity_loss = nan;
  double best = std::numeric_limits<double>::infinity();
  if (p.identity_candidate) {
    std::vector<float> one(x_mean.size(), 1.0f);
    r.identity_loss = loss(one);
    best = r.identity_loss;
    r.scales = std::move(one);
    r.alpha = -1;
  }
  // With a screen, only the search_keep cheapest candidates on the sample are costed by `loss`.
  std::vector<char> keep(cands.size(), 1);
  if (screen) {
    r.screen_losses.reserve(cands.size());
    for (const Candidate& c : cands) r.screen_losses.push_back(screen(awq_candidate_scales(x_mean, w_mean, c.alpha, c.duo)));
    std::vector<size_t> order(cands.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    auto key = [&](size_t i) {
      const double l = r.screen_losses[i];
      return std::isfinite(l) ? l : std::numeric_limits<double>::infinity();
    };
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
    std::fill(keep.begin(), keep.end(), 0);
    for (size_t i = 0; i < std::min(order.size(), static_cast<size_t>(std::max(1, p.search_keep))); ++i) keep[order[i]] = 1;
  }
  for (size_t i = 0; i < cands.size(); ++i) {
    if (!keep[i]) {
      r.losses.push_back(nan);
      continue;
    }
    std::vector<float> s = awq_candidate_scales(x_mean, w_mean, cands[i].alpha, cands[i].duo);
    const double l = loss(s);
    r.losses.push_back(l);
    if (l < best) {
      best = l;
      r.scales = std::move(s);
      r.alpha = cands[i].alpha;
      r.duo = cands[i].duo;
    }
  }
  if (r.scales.empty()) fail(Errc::smoothquant_failed, "awq: every candidate's loss is NaN or infinite");
  r.loss = best;
  return r;
}

void awq_divide_rows(std::span<float> prev, int64_t row_len, std::span<const float> s) {
  if (row_len < 1 || prev.size() != s.size() * static_cast<size_t>(row_len))
    fail(Errc::invalid_argument, "awq: {} values do not make {} rows of {}", prev.size(), s.size(), row_len);
  for (size_t i = 0; i < s.size(); ++i)
    for (int64_t c = 0; c < row_len; ++c) prev[i * static_cast<size_t>(row_len) + static_cast<size_t>(c)] /= s[i];
}

void awq_multiply_columns(std::span<float> next, std::span<const float> s) {
  const size_t n = s.size();
  if (n == 0 || next.size() % n != 0)
    fail(Errc::invalid_argument, "awq: {} values do not make rows of {}", next.size(), n);
  for (size_t i = 0; i < next.size(); ++i) next[i] *= s[i % n];
}

fs::path awq_default_output(const fs::path& model, const AwqConfig& c) {
  fs::path m = model;
  if (!m.has_filename()) m = m.parent_path();
  std::string stem = m.filename().string();
  if (m.extension() == ".safetensors" || m.extension() == ".gguf") stem = m.stem().string();
  if (stem.empty() || stem == "." || stem == "..") stem = "model";
  std::string name = fmt::format("{}-awq-w{}a16", stem, c.params.bits);
  if (c.params.group_size != 128) name += fmt::format("-g{}", c.params.group_size);
  return fs::path(name);
}

namespace awq_impl {

// One linear of the block being quantized, engine (GGUF) row order.
struct AwLinear {
  std::string gguf, module;
  bool permuted = false;
  int64_t rows = 0, cols = 0;
  AwMat w;
  int parts = 0;  // a part of a fused projection (Phi-3's q/k/v, gate/up): how many it has
};

// A captured input parked while the step does not read it: written to an unlinked file of
// AwBlockIo::spill_dir (all at once by park(), or row by row as the capture runs) and freed, read
// back (the same bytes) as often as the step needs it. Without a directory nothing is parked and
// the matrix stays where it is.
class AwParked {
 public:
  AwParked() = default;
  AwParked(AwParked&& o) noexcept { *this = std::move(o); }
  AwParked& operator=(AwParked&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1), rows_ = o.rows_, cols_ = o.cols_;
    }
    return *this;
  }
  ~AwParked() { close(); }
  // A file for rows x cols floats, filled by put_rows(); false (nothing opened) without a directory.
  bool open(const fs::path& dir, int64_t rows, int64_t cols) {
    if (dir.empty()) return false;
    close();
    rows_ = rows, cols_ = cols;
#ifdef O_TMPFILE
    fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
#endif
    if (fd_ < 0) {  // a file system without O_TMPFILE: a named file, unlinked once open
      std::string name = (dir / "awq-park-XXXXXX").string();
      fd_ = ::mkostemp(name.data(), O_CLOEXEC);
      if (fd_ >= 0) ::unlink(name.c_str());
    }
    if (fd_ < 0) fail(Errc::output_error, "awq: cannot park activations in {}: {}", dir.string(), std::strerror(errno));
    return true;
  }
  bool is_open() const { return fd_ >= 0; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  // Rows [row0, row0 + n) of the parked matrix.
  void put_rows(int64_t row0, const float* x, int64_t n) { io(const_cast<float*>(x), row0, n, true); }
  void get_rows(int64_t row0, int64_t n, float* x) const { io(x, row0, n, false); }
  // Writes x (the first time only: a parked matrix is unchanged while parked) and frees it.
  void park(AwMat& x, const fs::path& dir) {
    if (x.size() == 0) return;
    if (fd_ < 0) {
      if (!open(dir, x.rows(), x.cols())) return;
      put_rows(0, x.data(), x.rows());
    } else if (x.rows() != rows_ || x.cols() != cols_) {
      fail(Errc::general, "awq: a parked input changed shape");
    }
    x = AwMat();
  }
  // x as it was parked (nothing to do when it was not, or is already back).
  void unpark(AwMat& x) const {
    if (fd_ < 0 || x.size() != 0) return;
    x.resize(rows_, cols_);
    io(x.data(), 0, rows_, false);
  }

 private:
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void io(float* p, int64_t row0, int64_t n, bool write) const {
    auto* b = reinterpret_cast<char*>(p);
    const size_t bytes = static_cast<size_t>(n * cols_) * sizeof(float);
    const off_t at = static_cast<off_t>(row0 * cols_) * static_cast<off_t>(sizeof(float));
    for (size_t done = 0; done < bytes;) {
      const ssize_t r = write ? ::pwrite(fd_, b + done, bytes - done, at + static_cast<off_t>(done))
                              : ::pread(fd_, b + done, bytes - done, at + static_cast<off_t>(done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        fail(Errc::output_error, "awq: cannot {} parked activations: {}", write ? "write" : "read",
             r < 0 ? std::strerror(errno) : "short file");
      done += static_cast<size_t>(r);
    }
  }
  int fd_ = -1;
  int64_t rows_ = 0, cols_ = 0;
};

// The block's four product inputs over all calibration tokens (chunk after chunk). In a mixture
// of experts x_ffn is the router's input and x_down the shared expert's down input (empty without
// one); each expert's tokens are kept as rows of x_ffn (ascending). With a spill directory the
// capture writes the MLP's two straight to their parked files (ffn_parked, down_parked), and the
// step reads them back when their part runs.
struct AwActs {
  AwMat x_attn, x_o, x_ffn, x_down;
  std::vector<std::vector<int64_t>> expert_rows;
  AwParked attn_parked, o_parked, ffn_parked, down_parked;
};

// Rows of a T x cols matrix held in memory or parked: get() points at rows [t0, t0 + n), in the
// matrix itself or read into buf (a parked matrix's columns divided by `div` where it is given,
// as unscale_cols divides a matrix in memory).
struct AwRows {
  const AwMat* m = nullptr;
  const AwParked* f = nullptr;
  std::span<const float> div = {};
  int64_t rows() const { return m ? m->rows() : f->rows(); }
  int64_t cols() const { return m ? m->cols() : f->cols(); }
  const float* get(int64_t t0, int64_t n, std::vector<float>& buf) const {
    if (m) return m->data() + t0 * m->cols();
    const int64_t c = f->cols();
    if (static_cast<int64_t>(buf.size()) < n * c) buf.resize(static_cast<size_t>(n * c));
    f->get_rows(t0, n, buf.data());
    if (!div.empty())
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < c; ++j) buf[static_cast<size_t>(r * c + j)] /= div[static_cast<size_t>(j)];
    return buf.data();
  }
  // The same rows written to dst.
  void copy(int64_t t0, int64_t n, float* dst) const {
    if (m) {
      std::memcpy(dst, m->data() + t0 * m->cols(), static_cast<size_t>(n * m->cols()) * sizeof(float));
      return;
    }
    const int64_t c = f->cols();
    f->get_rows(t0, n, dst);
    if (!div.empty())
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < c; ++j) dst[r * c + j] /= div[static_cast<size_t>(j)];
  }
};

// Buffers lent to the threads that read parked rows, kept until the pool goes (a search's end).
class AwBufs {
 public:
  std::vector<float> take() {
    const std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) return {};
    std::vector<float> b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  void give(std::vector<float> b) {
    const std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(b));
  }

 private:
  std::mutex mu_;
  std::vector<std::vector<float>> free_;
};

// An input's columns group by group, for the clipping's cross terms on the tokens: get(k, xk) sets
// xk to the T x g columns of group k (from the matrix in memory, or from a file of the groups'
// columns one group after another; any thread).
struct AwCols {
  int64_t T = 0;
  std::function<void(int64_t k, AwMat& xk)> get;
};

// A scale search's reference: the original weights' outputs on every token, in memory or (with a
// spill directory) in a parked file, and a candidate's loss against them, the mean of (y - ref)²:
// each row's sum in double, the rows added in order, so the loss is the same on any number of
// threads and its rounding does not grow with the tokens.
struct AwRef {
  AwMat m;
  AwParked f;
  std::vector<double> err;  // each row's sum for the candidate being costed
  AwBufs bufs;
  void open(int64_t rows, int64_t cols, const fs::path& spill_dir) {
    err.assign(static_cast<size_t>(rows), 0.0);
    if (!f.open(spill_dir, rows, cols)) m.resize(rows, cols);
  }
  AwRows rows() const { return f.is_open() ? AwRows{nullptr, &f} : AwRows{&m, nullptr}; }
  int64_t cols() const { return f.is_open() ? f.cols() : m.cols(); }
  // Rows [t0, t0 + n) of the reference (y: n x cols, contiguous); any thread, disjoint rows.
  void put(int64_t t0, int64_t n, const float* y) {
    if (f.is_open()) f.put_rows(t0, y, n);
    else std::memcpy(m.data() + t0 * m.cols(), y, static_cast<size_t>(n * m.cols()) * sizeof(float));
  }
  // A candidate's rows [t0, t0 + n) against the reference's; any thread, disjoint rows.
  void cost(int64_t t0, int64_t n, const float* y) {
    const int64_t c = cols();
    std::vector<float> buf = bufs.take();
    const float* r = rows().get(t0, n, buf);
    for (int64_t i = 0; i < n; ++i) err[static_cast<size_t>(t0 + i)] = sq_diff(y + i * c, r + i * c, c);
    bufs.give(std::move(buf));
  }
  // Σ (a - b)² (b null: Σ a²) over n values in double: eight sums, value j in sum j % 8 (a fixed
  // order the vector unit runs), then added.
  static double sq_diff(const float* a, const float* b, int64_t n) { return b ? sq_sum<true>(a, b, n) : sq_sum<false>(a, a, n); }
  template <bool kDiff>
  static double sq_sum(const float* a, const float* b, int64_t n) {
    double acc[8] = {};
    auto term = [&](int64_t j) {
      const double d = kDiff ? static_cast<double>(a[j]) - static_cast<double>(b[j]) : static_cast<double>(a[j]);
      return d * d;
    };
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
      for (int l = 0; l < 8; ++l) acc[l] += term(j + l);
    for (int l = 0; j < n; ++j, ++l) acc[l] += term(j);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  }
  double loss() const {
    double s = 0;
    for (const double e : err) s += e;
    return s / static_cast<double>(std::max<int64_t>(1, static_cast<int64_t>(err.size()) * cols()));
  }
};

AwColAbsMean::AwColAbsMean(int64_t rows, int64_t cols)
    : rows_(rows), cols_(cols), tree_(static_cast<size_t>(cols), 0.0f), seq_(static_cast<size_t>(cols), 0.0f),
      quad_(static_cast<size_t>(3 * cols)) {}

void AwColAbsMean::add(const float* x, int64_t n) {
  const int64_t quads_end = (rows_ - 1) & ~int64_t{3};  // rows 1 .. quads_end go in fours
  for (int64_t i = 0; i < n; ++i, ++seen_) {
    const float* r = x + i * cols_;
    const size_t c_n = static_cast<size_t>(cols_);
    if (seen_ == 0) {
      for (size_t c = 0; c < c_n; ++c) tree_[c] = seq_[c] = std::abs(r[c]);
      continue;
    }
    for (size_t c = 0; c < c_n; ++c) seq_[c] = seq_[c] + std::abs(r[c]);
    if (seen_ > quads_end) {
      for (size_t c = 0; c < c_n; ++c) tree_[c] = tree_[c] + std::abs(r[c]);
      continue;
    }
    const int64_t q = (seen_ - 1) % 4;
    if (q < 3) {
      for (size_t c = 0; c < c_n; ++c) quad_[static_cast<size_t>(q) * c_n + c] = std::abs(r[c]);
      continue;
    }
    for (size_t c = 0; c < c_n; ++c)
      tree_[c] = tree_[c] + ((quad_[c] + quad_[c_n + c]) + (quad_[2 * c_n + c] + std::abs(r[c])));
  }
}

std::vector<float> AwColAbsMean::mean() const {
  if (seen_ != rows_) fail(Errc::general, "awq: column means of {} rows taken after {}", rows_, seen_);
  std::vector<float> m(static_cast<size_t>(cols_));
  // The columns the assignment runs in packets: from the first one aligned to a packet's bytes,
  // whole packets.
  constexpr int64_t kP = Eigen::internal::packet_traits<float>::size;
  const int64_t first =
      kP > 1 ? static_cast<int64_t>(Eigen::internal::first_aligned<static_cast<int>(kP * sizeof(float))>(m.data(), cols_)) : 0;
  const int64_t last = first + (cols_ - first) / kP * kP;
  const float n = static_cast<float>(std::max<int64_t>(1, rows_));
  for (int64_t c = 0; c < cols_; ++c) {
    const size_t i = static_cast<size_t>(c);
    m[i] = rows_ == 0 ? 0.0f : (c >= first && c < last && kP > 1 ? tree_[i] : seq_[i]) / n;
  }
  return m;
}

// A weight's rows rounded to bf16 (to nearest even), for the scale search's products with
// AwqParams::search_bf16.
struct AwBf16 {
  std::vector<uint16_t> v;
  int64_t rows = 0, cols = 0;
  AwBf16() = default;
  AwBf16(const AwMat& w, int threads) : v(static_cast<size_t>(w.size())), rows(w.rows()), cols(w.cols()) {
    const float* src = w.data();
    parallel_for(static_cast<int64_t>(v.size()), threads, 1 << 16, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) v[static_cast<size_t>(i)] = f32_to_bf16(src[i]);
    });
  }
  detail::WeightView view() const {
    return {QuantType::BF16, reinterpret_cast<const uint8_t*>(v.data()), rows, cols, static_cast<size_t>(cols) * 2,
            "awq scale search"};
  }
};

// A weight operand of the scale search's products: float rows, or a bf16 copy (search_bf16).
struct AwW {
  const AwMat* f = nullptr;
  const AwBf16* b = nullptr;
  AwW(const AwMat& m) : f(&m) {}  // NOLINT(google-explicit-constructor): a float operand
  AwW(const AwBf16& m) : b(&m) {}  // NOLINT(google-explicit-constructor): a bf16 one
  int64_t rows() const { return f ? f->rows() : b->rows; }
  int64_t cols() const { return f ? f->cols() : b->cols; }
};

// One block's AWQ step, on the block's float weights and captured inputs, for the whole-model
// quantizer (AwqQuantizer) and the streamed one (awq_stream: the block alone in a one-block model).
struct AwBlockStep {
  struct {
    AwqParams params;
  } cfg;
  int storage = 16;                // the scales' stored dtype (16 F16, 17 BF16, 0 F32)
  AwGemmFn gemm = nullptr;         // the back-end's float GEMM
  void (*products)(std::span<const detail::Product>, int) = nullptr;  // its weight products (search_bf16)
  void (*release_buffers)() = nullptr;                                  // and the buffers they keep
  void (*silu_mul)(int64_t, const float*, const float*, float*) = nullptr;  // the engine's MLP activation
  void (*softmax_row)(int64_t, float*, float) = nullptr;                     // the engine's attention softmax
  void (*gelu_tanh_mul)(int64_t, const float*, const float*, float*) = nullptr;  // Gemma's MLP activation
  void (*soft_cap)(int64_t, float*, float, float) = nullptr;                 // Gemma 2's attention soft-cap
  void (*grid_error)(int64_t, const float*, float, float, float, float, float, float*) = nullptr;  // a clamped group's grid error
  std::vector<int64_t> lengths;    // the calibration chunks' token counts, in capture order
  int64_t n_ctx = 0;               // the capture session's context (Phi-3's LongRoPE factors depend on it)
  AwqResult& summary;
  std::vector<std::string>& warnings;
  AwBlockIo* io = nullptr;         // during run()
  mutable std::vector<std::vector<float>> scratch_;  // mlp_out's per-part buffers

  AwBlockStep(const AwqParams& p, AwqResult& s, std::vector<std::string>& w) : summary(s), warnings(w) { cfg.params = p; }

  // The scale search's products in bf16 (AwqParams::search_bf16, resolved by the caller).
  bool bf16_search() const { return cfg.params.search_bf16.value_or(false); }
  // Whether the search may hold blk's linear `suffix` as its bf16 copy alone: its products are
  // bf16 and the checkpoint stores it in bf16 (the copy has its exact values).
  bool bf16_exact(const char* suffix) const { return bf16_search() && io->stored_type(suffix) == QuantType::BF16; }

  // blk.<model_layer>.suffix: the block's tensor in the model the step works on.
  std::string local(const char* suffix) const { return names::block_tensor(io->model_layer, suffix); }

  AwLinear load(int64_t L, const char* suffix) const {
    const Model& model = *io->model;
    AwLinear x;
    x.gguf = names::block_tensor(static_cast<int>(L), suffix);
    x.module = names::hf_module(x.gguf, architecture_of(model.config(), "awq").fused_gate_up);
    const LinearInfo* li = model.find_linear(local(suffix));
    if (!li) fail(Errc::invalid_model, "awq: the model has no {}", x.gguf);
    x.rows = li->n_out;
    x.cols = li->n_in;
    x.permuted = model.config().architecture == "llama" && (li->role == "attn_q" || li->role == "attn_k");
    x.w.resize(x.rows, x.cols);
    if (detail::ModelAccess::released(model, local(suffix))) {
      io->read_linear(suffix, x.w.data(), x.w.size());
      return x;
    }
    const std::vector<float> v = model.tensor_f32(local(suffix));
    x.w = Eigen::Map<const AwMat>(v.data(), x.rows, x.cols);
    return x;
  }

  // A fused projection (Phi-3's qkv_proj, gate_up_proj) as its parts of `rows` rows each, top to
  // bottom: searched, folded and clipped as separate linears, put back together when quantized.
  std::vector<AwLinear> load_parts(int64_t L, const char* suffix, std::initializer_list<int64_t> rows) const {
    const AwLinear f = load(L, suffix);
    std::vector<AwLinear> out;
    int64_t r0 = 0;
    for (const int64_t n : rows) {
      AwLinear x;
      x.gguf = f.gguf;
      x.module = f.module;
      x.rows = n;
      x.cols = f.cols;
      x.w = f.w.middleRows(r0, n);
      x.parts = static_cast<int>(rows.size());
      out.push_back(std::move(x));
      r0 += n;
    }
    if (r0 != f.rows) fail(Errc::invalid_model, "awq: {} has {} rows, not {}", f.gguf, f.rows, r0);
    return out;
  }

  // y[m x w.rows] (rows ldy apart) = x[m x w.cols] · wᵀ on the calling thread: the float GEMM, or
  // for a bf16 operand (search_bf16) the back-end's product with x rounded to bf16.
  void wprod(AwW w, const float* x, int64_t m, float* y, int64_t ldy) const {
    if (w.f) return aw_gemm(gemm, x, m, w.f->cols(), w.f->cols(), w.f->data(), w.f->rows(), w.f->cols(), y, ldy);
    if (ldy != w.b->rows) fail(Errc::general, "awq: a bf16 product's output rows are {} apart, not {}", ldy, w.b->rows);
    const detail::Product p{w.b->view(), x, m, y};
    products(std::span<const detail::Product>(&p, 1), 1);
  }
  // w as the search multiplies it: w itself, or (search_bf16) its bf16 copy, made in `keep`.
  AwW search_w(const AwMat& w, AwBf16& keep, int threads) const {
    if (!bf16_search()) return w;
    keep = AwBf16(w, threads);
    return keep;
  }

  // Where a search's outputs go: rows [r0, r0 + n) of them, n x their width, contiguous (called
  // from any thread, for disjoint rows).
  using AwOut = std::function<void(int64_t r0, int64_t n, const float* y)>;

  // The attention block's output (o_proj applied) for every chunk: o(attn(x q, x k, x v)), x the
  // chunks of `lens` tokens one after another, handed to `out` a chunk at a time. `qw/kw/vw` [out
  // x n_embd]; biases may be empty. Chunk after chunk, in parallel over chunks. With bf16 the four
  // projections are bf16 products (search_bf16), the attention itself float.
  void attention_out(const AwRows& x, const std::vector<int64_t>& lens, const AwMat& qw, const AwMat& kw, const AwMat& vw, const std::vector<float>& bq,
                     const std::vector<float>& bk, const std::vector<float>& bv, const AwMat* ow, const AwOut& out,
                     const Context& ctx, bool bf16 = false) const {
    const auto& mi = detail::ModelAccess::impl(*io->model);
    const ModelConfig& c = mi.config;
    const int64_t hd = c.head_dim, nq = c.n_head * hd, nkv = c.n_head_kv * hd, group = c.n_head / c.n_head_kv;
    const int64_t half = hd / 2;
    int64_t maxlen = 0;
    std::vector<int64_t> starts;
    int64_t row = 0;
    for (const int64_t len : lens) {
      starts.push_back(row);
      row += len;
      maxlen = std::max(maxlen, len);
    }
    const engine::Block& blk = mi.blocks[static_cast<size_t>(io->model_layer)];
    // Gemma's sliding-window layers take RoPE from their own base.
    // Phi-3's LongRoPE: the long factors past the original context (the capture session's n_ctx
    // decides, as in the engine) and cos/sin scaled by the attention factor.
    const bool swa_rope = blk.swa && !mi.rope_inv_freq_swa.empty();
    const std::vector<float>& inv_freq = swa_rope ? mi.rope_inv_freq_swa
                                         : !mi.rope_inv_freq_long.empty() && n_ctx > mi.rope_original_ctx ? mi.rope_inv_freq_long
                                                                                                         : mi.rope_inv_freq;
    const float ms = swa_rope ? 1.0f : mi.rope_mscale;
    std::vector<float> cs(static_cast<size_t>(maxlen * half * 2));
    for (int64_t t = 0; t < maxlen; ++t)
      for (int64_t i = 0; i < half; ++i) {
        const float th = static_cast<float>(t) * inv_freq[static_cast<size_t>(i)];
        cs[static_cast<size_t>((t * half + i) * 2)] = std::cos(th) * ms;
        cs[static_cast<size_t>((t * half + i) * 2 + 1)] = std::sin(th) * ms;
      }
    const float scale = mi.attn_scale;     // 1 / sqrt(head_dim) unless the config says otherwise
    const float softcap = c.attn_softcap;  // Gemma 2: scores capped as cap * tanh(s / cap)
    // Masked by a window only where the engine's block is (Gemma's local layers; Mistral's and
    // Qwen2's configured windows are not applied, as llama.cpp does not).
    const int64_t window = blk.swa ? c.sliding_window : 0;
    const engine::Exec ex = engine::Exec::from(ctx);
    AwBf16 b[4];
    auto op = [&](const AwMat& w, AwBf16& keep) -> AwW {
      if (!bf16) return w;
      keep = AwBf16(w, ctx.thread_count());
      return keep;
    };
    const AwW qo = op(qw, b[0]), ko = op(kw, b[1]), vo = op(vw, b[2]), oo = ow ? op(*ow, b[3]) : AwW(qw);
    // The chunks go in parts, one a thread. With bf16 operands each part copies its chunk's rows into
    // its scratch buffer first (kept between calls: the back-end's products then see the same
    // activation addresses and reuse their records' buffers, which they keep per thread).
    const int64_t nchunks = static_cast<int64_t>(lens.size());
    const int64_t parts = std::clamp<int64_t>(ctx.thread_count(), 1, std::max<int64_t>(1, nchunks));
    if (bf16) scratch(2 * parts, maxlen * std::max(x.cols(), nq));
    parallel_for(parts, ctx.thread_count(), 1, [&](int64_t p0, int64_t p1) {
     for (int64_t part = p0; part < p1; ++part) {
      AwMat q, k, v, vt, o, s, yo;
      std::vector<float> xbuf;  // a parked chunk's rows (float products)
      for (int64_t ci = part * nchunks / parts; ci < (part + 1) * nchunks / parts; ++ci) {
        const int64_t r0 = starts[static_cast<size_t>(ci)], n = lens[static_cast<size_t>(ci)];
        float* Xb = bf16 ? scratch_[static_cast<size_t>(2 * part)].data() : nullptr;
        float* Ob = bf16 ? scratch_[static_cast<size_t>(2 * part + 1)].data() : nullptr;
        if (Xb) x.copy(r0, n, Xb);
        const float* X = Xb ? Xb : x.get(r0, n, xbuf);
        q.resize(n, nq);
        k.resize(n, nkv);
        v.resize(n, nkv);
        wprod(qo, X, n, q.data(), nq);
        wprod(ko, X, n, k.data(), nkv);
        wprod(vo, X, n, v.data(), nkv);
        if (!bq.empty()) q.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bq.data(), nq);
        if (!bk.empty()) k.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bk.data(), nkv);
        if (!bv.empty()) v.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bv.data(), nkv);
        // RMSNorm of each head's q and k before RoPE (Qwen3, Gemma 3), as the engine
        if (blk.q_norm) engine::rms_norm(ex, q.data(), *blk.q_norm, c.rms_eps, hd, n * c.n_head, q.data(), nullptr);
        if (blk.k_norm) engine::rms_norm(ex, k.data(), *blk.k_norm, c.rms_eps, hd, n * c.n_head_kv, k.data(), nullptr);
        engine::apply_rope(q.data(), n, c.n_head, hd, mi.neox_rope, cs.data());
        engine::apply_rope(k.data(), n, c.n_head_kv, hd, mi.neox_rope, cs.data());
        o.resize(n, nq);
        vt = v.transpose();  // nkv x n: the probabilities' product takes V's columns as rows
        s.resize(n, n);
        for (int64_t h = 0; h < c.n_head; ++h) {
          const int64_t kvh = h / group;
          // Causal as the engine: the scores' product skips the masked part, the softmax runs over
          // the visible keys (those older than a sliding window at -inf), the rest is zero.
          detail::GemmArgs qk{n, n, hd, q.data() + h * hd, nq, k.data() + kvh * hd, QuantType::F32, nkv, s.data(), n, false};
          qk.c_causal = 0;
          gemm(qk);
          for (int64_t i = 0; i < n; ++i) {
            float* row = s.data() + i * n;
            const int64_t visible = i + 1;
            if (softcap > 0) soft_cap(visible, row, scale, softcap);
            if (window > 0) std::fill(row, row + std::max<int64_t>(0, visible - window), -std::numeric_limits<float>::infinity());
            softmax_row(visible, row, softcap > 0 ? 1.0f : scale);
            std::fill(row + visible, row + n, 0.0f);
          }
          detail::GemmArgs pv{n, hd, n, s.data(), n, vt.data() + kvh * hd * n, QuantType::F32, n, o.data() + h * hd, nq, false};
          pv.a_causal = 0;
          gemm(pv);
        }
        if (!ow) {
          out(r0, n, o.data());
          continue;
        }
        yo.resize(n, ow->rows());
        if (Ob) std::memcpy(Ob, o.data(), static_cast<size_t>(n * nq) * sizeof(float));
        wprod(oo, Ob ? Ob : o.data(), n, yo.data(), yo.cols());
        out(r0, n, yo.data());
      }
     }
    });
  }

  // Σ (a - b)² / count over rows of two matrices.
  static double mse(const AwMat& a, const AwMat& b) {
    return static_cast<double>((a - b).squaredNorm()) / static_cast<double>(std::max<Eigen::Index>(1, a.size()));
  }

  // W with columns scaled by s, pseudo-quantized (AutoAWQ's min-max grid per group), columns
  // divided by s again: one pass over W, rows on the threads, each step rounded as on its own.
  AwMat scaled_fake(const AwMat& w, std::span<const float> s, const Context& ctx) const {
    AwMat m(w.rows(), w.cols());
    parallel_for(w.rows(), ctx.thread_count(), 8, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) fake_row(w.data() + r * w.cols(), w.cols(), s, m.data() + r * w.cols());
    });
    return m;
  }
  // scaled_fake's values rounded to bf16, without the float matrix (search_bf16).
  // w may be a bf16 copy of weights that bf16 holds exactly: its rows are read as those floats.
  AwBf16 scaled_fake_bf16(AwW w, std::span<const float> s, const Context& ctx) const {
    AwBf16 m;
    const int64_t cols = w.cols();
    m.rows = w.rows(), m.cols = cols;
    m.v.resize(static_cast<size_t>(m.rows * cols));
    parallel_for(m.rows, ctx.thread_count(), 8, [&](int64_t r0, int64_t r1) {
      std::vector<float> x(static_cast<size_t>(cols)), row(w.b ? static_cast<size_t>(cols) : 0);
      for (int64_t r = r0; r < r1; ++r) {
        const float* src = w.f ? w.f->data() + r * cols : row.data();
        if (w.b)
          for (int64_t c = 0; c < cols; ++c) row[static_cast<size_t>(c)] = bf16_to_f32(w.b->v[static_cast<size_t>(r * cols + c)]);
        fake_row(src, cols, s, x.data());
        uint16_t* o = m.v.data() + r * cols;
        for (int64_t c = 0; c < cols; ++c) o[c] = f32_to_bf16(x[static_cast<size_t>(c)]);
      }
    });
    return m;
  }
  // One row of scaled_fake: src's cols values times s, on the group's grid, divided by s.
  void fake_row(const float* src, int64_t cols, std::span<const float> s, float* x) const {
    const int64_t g = cfg.params.group_size;
    const int maxq = (1 << cfg.params.bits) - 1;
    for (int64_t c = 0; c < cols; ++c) x[c] = src[c] * s[static_cast<size_t>(c)];
    for (int64_t c0 = 0; c0 < cols; c0 += g) {
      float gs;
      int32_t z;
      aw_group_params(x + c0, g, maxq, 0, storage, gs, z);
      for (int64_t c = c0; c < c0 + g; ++c)
        x[c] = gs * static_cast<float>(aw_code(x[c], gs, z, maxq) - z) / s[static_cast<size_t>(c)];
    }
  }

  static std::vector<float> col_abs_mean(const AwMat& x) {
    std::vector<float> m(static_cast<size_t>(x.cols()));
    Eigen::Map<Eigen::RowVectorXf>(m.data(), x.cols()) =
        x.cwiseAbs().colwise().sum().cast<float>() / static_cast<float>(std::max<Eigen::Index>(1, x.rows()));
    return m;
  }

  // Mean over the rows (of all the group's linears) of |w| / (its group's max |w| + 1e-6).
  std::vector<float> weight_mean(std::initializer_list<const AwMat*> ws) const {
    return weight_mean(std::span<const AwMat* const>(ws.begin(), ws.size()));
  }
  std::vector<float> weight_mean(std::span<const AwMat* const> ws) const {
    std::vector<double> acc(static_cast<size_t>((*ws.begin())->cols()), 0.0);
    int64_t rows = 0;
    for (const AwMat* w : ws) rows += weight_mean_add(*w, acc);
    return weight_mean_of(acc, rows);
  }
  // weight_mean's sums, one matrix at a time: acc[c] += |w| / (its group's max |w| + 1e-6) over
  // w's rows; returns the rows added.
  int64_t weight_mean_add(const AwMat& w, std::vector<double>& acc) const {
    const int64_t g = cfg.params.group_size, cols = w.cols();
    for (Eigen::Index r = 0; r < w.rows(); ++r)
      for (int64_t c0 = 0; c0 < cols; c0 += g) {
        const float mx = w.row(r).segment(c0, g).cwiseAbs().maxCoeff() + 1e-6f;
        for (int64_t c = c0; c < c0 + g; ++c) acc[static_cast<size_t>(c)] += std::abs(w(r, c)) / mx;
      }
    return w.rows();
  }
  static std::vector<float> weight_mean_of(const std::vector<double>& acc, int64_t rows) {
    std::vector<float> m(acc.size());
    for (size_t c = 0; c < acc.size(); ++c) m[c] = static_cast<float>(acc[c] / rows);
    return m;
  }

  // MLP output: down(act(x gᵀ) * (x uᵀ)), act SiLU or (Gemma) GELU-tanh, as the engine's.
  // With dw null, y is down's input: act(x gᵀ) * (x uᵀ). Bf16 operands: bf16 products (search_bf16).
  // Float operands: token blocks in parallel. Bf16 operands (gate and up both): slabs of up to
  // kAwRows rows one after another on the calling thread, each product on every thread, the slab
  // and its gate and up outputs in the step's scratch buffers (kept between calls: the back-end's
  // products then see the same activation addresses and reuse their records' buffers).
  void mlp_out(const AwMat& x, AwW gw, AwW uw, const AwW* dw, AwMat& y, int threads) const {
    y.resize(x.rows(), dw ? dw->rows() : gw.rows());
    mlp_out(AwRows{&x}, gw, uw, dw, [&](int64_t t0, int64_t n, const float* v) {
      std::memcpy(y.data() + t0 * y.cols(), v, static_cast<size_t>(n * y.cols()) * sizeof(float));
    }, threads);
  }
  // The same on x's rows (in memory or parked), handed to `out` a slab of rows at a time.
  void mlp_out(const AwRows& x, AwW gw, AwW uw, const AwW* dw, const AwOut& out, int threads) const {
    const int64_t e = x.cols(), f = gw.rows(), o = dw ? dw->rows() : f, T = x.rows();
    const bool gelu_tanh = detail::ModelAccess::impl(*io->model).gelu_tanh_ffn;
    auto act = [&](int64_t n, const float* g, const float* u, float* dst) {
      parallel_for(n, threads, 1 << 16, [&](int64_t i0, int64_t i1) {
        if (gelu_tanh) gelu_tanh_mul(i1 - i0, g + i0, u + i0, dst + i0);
        else silu_mul(i1 - i0, g + i0, u + i0, dst + i0);
      });
    };
    if (gw.b && uw.b) {
      const int64_t slab = std::min<int64_t>(kAwRows, T);
      scratch({slab * e, slab * f, slab * f, dw ? slab * o : 0});
      float* xs = scratch_[0].data();
      float* g = scratch_[1].data();
      float* u = scratch_[2].data();
      float* yd = scratch_[3].data();
      for (int64_t t0 = 0; t0 < T; t0 += slab) {
        const int64_t m = std::min(slab, T - t0);
        x.copy(t0, m, xs);
        const detail::Product gu[2] = {{gw.b->view(), xs, m, g}, {uw.b->view(), xs, m, u}};
        products(std::span<const detail::Product>(gu, 2), threads);
        act(m * f, g, u, g);
        if (!dw) {
          out(t0, m, g);
          continue;
        }
        if (!dw->b) fail(Errc::general, "awq: the MLP's down projection is not a bf16 operand");
        const detail::Product d{dw->b->view(), g, m, yd};
        products(std::span<const detail::Product>(&d, 1), threads);
        out(t0, m, yd);
      }
      return;
    }
    parallel_for(T, threads, aw_grain(T, threads), [&](int64_t t0, int64_t t1) {
      const int64_t m = t1 - t0;
      AwMat g(m, f), u(m, f);
      std::vector<float> buf;
      const float* xb = x.get(t0, m, buf);
      wprod(gw, xb, m, g.data(), f);
      wprod(uw, xb, m, u.data(), f);
      if (gelu_tanh) gelu_tanh_mul(m * f, g.data(), u.data(), g.data());
      else silu_mul(m * f, g.data(), u.data(), g.data());
      if (!dw) return out(t0, m, g.data());
      AwMat yb(m, o);
      wprod(*dw, g.data(), m, yb.data(), o);
      out(t0, m, yb.data());
    });
  }
  // The step's scratch: at least n buffers of `floats` floats, or buffer i at least floats[i]
  // (grown, never shrunk, until the search ends, so their addresses stay put between the
  // searches' calls).
  void scratch(int64_t n, int64_t floats) const {
    if (static_cast<int64_t>(scratch_.size()) < n) scratch_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      if (static_cast<int64_t>(scratch_[static_cast<size_t>(i)].size()) < floats) scratch_[static_cast<size_t>(i)].resize(static_cast<size_t>(floats));
  }
  void scratch(std::initializer_list<int64_t> floats) const {
    if (scratch_.size() < floats.size()) scratch_.resize(floats.size());
    size_t i = 0;
    for (const int64_t n : floats) {
      if (static_cast<int64_t>(scratch_[i].size()) < n) scratch_[i].resize(static_cast<size_t>(n));
      ++i;
    }
  }
  // After a part's searches: the scratch buffers and the back-end's records of them are freed
  // (the clipping that follows holds XᵀX; the next search makes them again).
  void end_search() const {
    scratch_ = {};
    if (release_buffers) release_buffers();
  }

  // The loss of a group inspected at one linear's own output: the mean over tokens and outputs of
  // the squared output change, (X ΔWᵀ)². With more tokens than columns it is computed through
  // G = XᵀX, formed once: Σ_r Δw_r G Δw_rᵀ costs columns² a row per candidate instead of
  // tokens x columns (the same sum, up to float rounding). X is a matrix in memory, or a row
  // reader (a parked file) that the loss reads a slab at a time.
  struct LinearLoss {
    using Rows = std::function<void(int64_t t0, int64_t m, float* dst)>;
    const AwBlockStep& step;
    const AwMat* x = nullptr;  // the inputs in memory, or
    Rows read;                 // their rows [t0, t0 + m) from a parked file
    const AwMat* w = nullptr;  // the float weights (null: the search's bf16 copy alone)
    bool gram = false;
    int64_t tokens = 0, k = 0, rows = 0;  // x's rows (through XᵀX the loss no longer reads x itself) and columns, w's rows
    AwMat G, y_ref, y;
    static constexpr int64_t kTokens = 4096;  // XᵀX: rows transposed at a time
    LinearLoss(const AwBlockStep& st, const AwMat& x_, const AwMat& w_, int threads)
        : step(st), x(&x_), w(&w_), tokens(x_.rows()), k(x_.cols()), rows(w_.rows()) {
      gram = x_.rows() > x_.cols();
      if (!gram) {
        step.linear_out(x_, w_, y_ref, threads, step.bf16_search());
        return;
      }
      const int64_t cols = x_.cols();
      G = AwMat::Zero(cols, cols);
      for (int64_t t0 = 0; t0 < x_.rows(); t0 += kTokens)
        gptq_impl::gp_add_gram(G, x_.data() + t0 * cols, std::min(kTokens, x_.rows() - t0), cols, threads, step.gemm);
      gptq_impl::gp_finish_gram(G, 1.0f);
    }
    // tokens x k inputs read a slab at a time (more tokens than columns): XᵀX formed from the same
    // slabs as from x in memory, float weights w.
    LinearLoss(const AwBlockStep& st, const Rows& read_, int64_t tokens_, int64_t k_, const AwMat& w_, int threads)
        : step(st), w(&w_), gram(true), tokens(tokens_), k(k_), rows(w_.rows()) {
      G = AwMat::Zero(k, k);
      AwMat slab(std::min(kTokens, tokens), k);
      for (int64_t t0 = 0; t0 < tokens; t0 += kTokens) {
        const int64_t m = std::min(kTokens, tokens - t0);
        read_(t0, m, slab.data());
        gptq_impl::gp_add_gram(G, slab.data(), m, k, threads, step.gemm);
      }
      gptq_impl::gp_finish_gram(G, 1.0f);
    }
    // tokens x k inputs read a slab at a time, bf16 weights wb (no XᵀX; bf16 candidates only).
    LinearLoss(const AwBlockStep& st, Rows read_, int64_t tokens_, int64_t k_, const AwBf16& wb, int threads)
        : step(st), read(std::move(read_)), tokens(tokens_), k(k_), rows(wb.rows) {
      step.linear_out_b(tokens, k, read, wb, y_ref, threads);
    }
    // The loss of bf16 candidate weights (search_bf16 without XᵀX): what operator() computes on
    // their float values, without the float matrix.
    double operator()(const AwBf16& wq, int threads) {
      if (gram) fail(Errc::general, "awq: a bf16 candidate for a loss through XᵀX");
      if (x) step.linear_out_b(*x, wq, y, threads);
      else step.linear_out_b(tokens, k, read, wq, y, threads);
      return static_cast<double>((y - y_ref).squaredNorm()) / static_cast<double>(std::max<int64_t>(1, tokens * rows));
    }
    double operator()(const AwMat& wq, int threads) {
      const double n = static_cast<double>(std::max<int64_t>(1, tokens * rows));
      if (gram ? !w : !x) fail(Errc::general, "awq: a float candidate for a loss on parked inputs");
      if (!gram) {
        step.linear_out(*x, wq, y, threads, step.bf16_search());
        return static_cast<double>((y - y_ref).squaredNorm()) / n;
      }
      const AwMat d = wq - *w;
      y.resize(d.rows(), d.cols());
      aw_matmul(step.gemm, d.data(), d.rows(), d.cols(), G.data(), G.rows(), y.data(), threads);  // ΔW G (G symmetric)
      return d.cwiseProduct(y).cast<double>().sum() / n;
    }
  };

  // y = x wᵀ, token blocks in parallel; with bf16 a bf16 product (search_bf16).
  void linear_out(const AwMat& x, const AwMat& w, AwMat& y, int threads, bool bf16 = false) const {
    y.resize(x.rows(), w.rows());
    if (!bf16) return aw_matmul(gemm, x.data(), x.rows(), x.cols(), w.data(), w.rows(), y.data(), threads);
    linear_out_b(x, AwBf16(w, threads), y, threads);
  }
  // y = x wbᵀ for bf16 weights: slabs of x through one scratch buffer, each product on every
  // thread (as mlp_out's).
  void linear_out_b(const AwMat& x, const AwBf16& wb, AwMat& y, int threads) const {
    const int64_t k = x.cols();
    linear_out_b(x.rows(), k, [&](int64_t t0, int64_t m, float* dst) {
      std::memcpy(dst, x.data() + t0 * k, static_cast<size_t>(m * k) * sizeof(float));
    }, wb, y, threads);
  }
  // The same for T x k inputs that `read` copies into the scratch buffer a slab at a time.
  void linear_out_b(int64_t T, int64_t k, const LinearLoss::Rows& read, const AwBf16& wb, AwMat& y, int threads) const {
    y.resize(T, wb.rows);
    const int64_t slab = std::min<int64_t>(kAwRows, T);
    scratch({slab * k});
    for (int64_t t0 = 0; t0 < T; t0 += slab) {
      const int64_t m = std::min(slab, T - t0);
      read(t0, m, scratch_[0].data());
      const detail::Product p{wb.view(), scratch_[0].data(), m, y.data() + t0 * wb.rows};
      products(std::span<const detail::Product>(&p, 1), threads);
    }
  }

  // Divides the norm by s, rounds it to its stored dtype and returns the scales that rounding
  // leaves (norm / rounded norm), which the next linears' columns take so the fold stays exact.
  std::vector<float> fold_norm(const char* suffix, std::span<const float> s) {
    const QuantType stored = io->stored_type(suffix);
    // Gemma's norms multiply by 1 + w: the model holds 1 + w, the checkpoint w, so the rounding
    // is w's.
    const bool plus_one = architecture_of(io->model->config(), "awq").norm_plus_one;
    std::vector<float> w = io->model->tensor_f32(local(suffix));
    std::vector<float> eff(s.begin(), s.end());
    for (size_t i = 0; i < w.size(); ++i) {
      float v = w[i] / s[i];
      if (plus_one) v -= 1.0f;
      if (stored == QuantType::BF16) v = bf16_to_f32(f32_to_bf16(v));
      else if (stored == QuantType::F16) v = fp16_to_f32(f32_to_fp16(v));
      if (plus_one) v += 1.0f;
      if (v != 0 && w[i] != 0 && std::isfinite(w[i] / v)) eff[i] = w[i] / v;
      w[i] = v;
    }
    io->set_float(suffix, std::move(w));
    return eff;
  }

  static void scale_cols(AwMat& w, std::span<const float> s) {
    for (Eigen::Index r = 0; r < w.rows(); ++r)
      for (Eigen::Index c = 0; c < w.cols(); ++c) w(r, c) *= s[static_cast<size_t>(c)];
  }
  static void unscale_cols(AwMat& x, std::span<const float> s) {
    for (Eigen::Index r = 0; r < x.rows(); ++r)
      for (Eigen::Index c = 0; c < x.cols(); ++c) x(r, c) /= s[static_cast<size_t>(c)];
  }

  // Evenly spaced rows of x, at most n.
  static AwMat sample_rows(const AwMat& x, int64_t n) {
    const int64_t step = std::max<int64_t>(1, x.rows() / n);
    const int64_t m = std::min<int64_t>(n, (x.rows() + step - 1) / step);
    AwMat s(m, x.cols());
    for (int64_t i = 0; i < m; ++i) s.row(i) = x.row(i * step);
    return s;
  }
  // col_abs_mean and (n > 0) sample_rows of a parked matrix, read a slab at a time: the same floats.
  static std::vector<float> parked_stats(const AwParked& f, int64_t n, AwMat& sample) {
    const int64_t T = f.rows(), cols = f.cols();
    AwColAbsMean mean(T, cols);
    const int64_t step = n > 0 ? std::max<int64_t>(1, T / n) : 1;
    const int64_t m = n > 0 ? std::min<int64_t>(n, (T + step - 1) / step) : 0;
    sample.resize(m, cols);
    AwMat slab(std::min(kGramRows, T), cols);
    for (int64_t t0 = 0; t0 < T; t0 += kGramRows) {
      const int64_t rows = std::min(kGramRows, T - t0);
      f.get_rows(t0, rows, slab.data());
      mean.add(slab.data(), rows);
      for (int64_t i = (t0 + step - 1) / step; i < m && i * step < t0 + rows; ++i) sample.row(i) = slab.row(i * step - t0);
    }
    return mean.mean();
  }

  // Each group on its own (scale, zero) pair (grid: rows x groups; codes clamped to the grid).
  GptqMatrix aw_quantize_grid(const float* w, int64_t rows, int64_t cols, const std::vector<AwGroupGrid>& grid,
                              const Context& ctx) const {
    const int64_t g = cfg.params.group_size;
    const int maxq = (1 << cfg.params.bits) - 1;
    GptqMatrix m;
    m.rows = rows, m.cols = cols, m.bits = cfg.params.bits, m.groups = cols / g;
    const int64_t G = m.groups;
    m.codes.assign(static_cast<size_t>(rows * cols), 0);
    m.scales.assign(static_cast<size_t>(rows * G), 0.0f);
    m.zeros.assign(static_cast<size_t>(rows * G), 0);
    m.g_idx.resize(static_cast<size_t>(cols));
    for (int64_t c = 0; c < cols; ++c) m.g_idx[static_cast<size_t>(c)] = static_cast<int32_t>(c / g);
    parallel_for(rows, ctx.thread_count(), 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t k = 0; k < G; ++k) {
          const size_t gi = static_cast<size_t>(r * G + k);
          const float* x = w + r * cols + k * g;
          m.scales[gi] = grid[gi].scale;
          m.zeros[gi] = grid[gi].zero;
          for (int64_t c = 0; c < g; ++c)
            m.codes[static_cast<size_t>(r * cols + k * g + c)] =
                static_cast<uint8_t>(aw_code(x[c], grid[gi].code_scale > 0 ? grid[gi].code_scale : m.scales[gi],
                                             m.zeros[gi], maxq));
        }
    });
    return m;
  }

  // The g x g diagonal blocks of xsᵀ xs, one per column group: a group's weight change d costs
  // dᵀ G d on those tokens (what AutoAWQ computes as |xs d|², in g² instead of tokens x g).
  std::vector<AwMat> group_grams(int64_t G, const AwCols& xs, const Context& ctx) const {
    const int64_t g = cfg.params.group_size;
    std::vector<AwMat> grams(static_cast<size_t>(G));
    const int64_t T = xs.T;
    parallel_for(G, ctx.thread_count(), 1, [&](int64_t k0, int64_t k1) {
      AwMat xk, xt;
      for (int64_t k = k0; k < k1; ++k) {
        xs.get(k, xk);
        xt = xk.transpose();  // g x T, so G = xt·xtᵀ is one back-end product
        AwMat& Gk = grams[static_cast<size_t>(k)];
        Gk.resize(g, g);
        aw_gemm(gemm, xt.data(), g, T, T, xt.data(), g, T, Gk.data(), g);
      }
    });
    return grams;
  }

  // The clipping search's view of one input: the g x g diagonal blocks of xsᵀ xs, and with
  // clip_cross what gives each group its cross term with the groups before it: all of xsᵀ xs (its
  // off-diagonal blocks; in x in floats, held while that input's linears are clipped), or where
  // that outweighs the linears' output errors on the tokens (tokens x rows < columns², as a
  // down projection's wide input on a few thousand tokens has it) the tokens themselves, and each
  // linear's search keeps those errors instead (the same sums up to float rounding). GPTQ
  // rounding always takes xsᵀ xs, its Hessian.
  struct AwGrams {
    std::vector<AwMat> blocks;
    AwMat full;                     // empty without clip_cross or with `tokens`
    const AwCols* tokens = nullptr;  // with clip_cross instead of `full`: xs's columns
    AwCols cols;                     // (what `tokens` points at)
    bool outnumber = false;         // xs has more rows than columns (the error report then goes through `full`)
    AwGrams() = default;
    AwGrams(const AwGrams&) = delete;  // `tokens` points into it
    AwGrams& operator=(const AwGrams&) = delete;
  };
  // The grams of xs (ret, which must not move: its `tokens` points into it).
  void input_grams(const AwMat& xs, int64_t max_rows, const Context& ctx, AwGrams& r) const {
    r.outnumber = xs.rows() > xs.cols();
    const int64_t g = cfg.params.group_size;
    if (!full_gram(xs.rows(), xs.cols(), max_rows)) {
      r.cols = {xs.rows(), [&xs, g](int64_t k, AwMat& xk) { xk = xs.middleCols(k * g, g); }};
      r.blocks = group_grams(xs.cols() / g, r.cols, ctx);
      if (cfg.params.clip_cross) r.tokens = &r.cols;
      return;
    }
    const int64_t cols = xs.cols();
    r.full = AwMat::Zero(cols, cols);
    for (int64_t t0 = 0; t0 < xs.rows(); t0 += kGramRows)
      gptq_impl::gp_add_gram(r.full, xs.data() + t0 * cols, std::min(kGramRows, xs.rows() - t0), cols, ctx.thread_count(), gemm);
    gptq_impl::gp_finish_gram(r.full, 1.0f);
    for (int64_t k = 0; k < cols / g; ++k) r.blocks.push_back(r.full.block(k * g, k * g, g, g));
  }
  // Whether the grams of T x cols inputs read by linears of up to max_rows rows are all of XᵀX:
  // with GPTQ's rounding, or the cross terms where XᵀX costs less than the linears' errors on the
  // tokens (otherwise the diagonal blocks, and the cross terms on the tokens).
  bool full_gram(int64_t T, int64_t cols, int64_t max_rows) const {
    const AwqParams& p = cfg.params;
    return p.gptq_rounding || (p.clip_cross && T * max_rows >= cols * cols);
  }
  static constexpr int64_t kGramRows = 4096;  // XᵀX: rows transposed at a time
  // Whether linears of up to max_rows rows are fitted on all of XᵀX of their T x cols inputs, on
  // every token (where a scale search's XᵀX of the same inputs can serve: grams_from).
  bool clip_full_gram(int64_t T, int64_t cols, int64_t max_rows) const {
    const int64_t n = cfg.params.clip_tokens;
    return fit() && (n <= 0 || n >= T) && full_gram(T, cols, max_rows);
  }
  // The grams of T inputs divided column by column by s (empty: as they are), from G = XᵀX of the
  // undivided ones (consumed): all of D⁻¹ G D⁻¹ (aw_divide_gram), and its diagonal blocks.
  void grams_from(AwMat&& G, std::span<const float> s, int64_t T, const Context& ctx, AwGrams& r) const {
    const int64_t cols = G.cols(), g = cfg.params.group_size;
    if (!s.empty()) aw_divide_gram(G.data(), cols, s.data(), ctx.thread_count());
    r.full = std::move(G);
    r.outnumber = T > cols;
    for (int64_t k = 0; k < cols / g; ++k) r.blocks.push_back(r.full.block(k * g, k * g, g, g));
  }
  // Whether the grams of T x cols inputs read by linears of up to max_rows rows are XᵀX alone and
  // carry the clipping and the error reports (every token clipped, the cross terms through XᵀX,
  // more tokens than columns): the inputs are then not read once it is formed.
  // input_grams of the rows `x` reads (a parked file, divided column by column as read), formed
  // from the file: XᵀX from the slabs input_grams takes from a matrix, or the group blocks and
  // cross terms from a second file `split` of x's columns group after group (T x g each, written
  // once here). The same values as input_grams on the matrix.
  void parked_grams(const AwRows& x, int64_t max_rows, const fs::path& spill, AwParked& split, const Context& ctx,
                    AwGrams& r) const {
    const int64_t T = x.rows(), cols = x.cols(), g = cfg.params.group_size, G = cols / g;
    r.outnumber = T > cols;
    std::vector<float> buf;
    if (full_gram(T, cols, max_rows)) {
      r.full = AwMat::Zero(cols, cols);
      for (int64_t t0 = 0; t0 < T; t0 += kGramRows) {
        const int64_t m = std::min(kGramRows, T - t0);
        gptq_impl::gp_add_gram(r.full, x.get(t0, m, buf), m, cols, ctx.thread_count(), gemm);
      }
      gptq_impl::gp_finish_gram(r.full, 1.0f);
      for (int64_t k = 0; k < G; ++k) r.blocks.push_back(r.full.block(k * g, k * g, g, g));
      return;
    }
    split.open(spill, G * T, g);
    std::vector<float> part;
    for (int64_t t0 = 0; t0 < T; t0 += kAwRows) {
      const int64_t m = std::min(kAwRows, T - t0);
      const float* rows = x.get(t0, m, buf);
      part.resize(static_cast<size_t>(m * g));
      for (int64_t k = 0; k < G; ++k) {
        for (int64_t i = 0; i < m; ++i) std::memcpy(&part[static_cast<size_t>(i * g)], rows + i * cols + k * g, static_cast<size_t>(g) * sizeof(float));
        split.put_rows(k * T + t0, part.data(), m);
      }
    }
    r.cols = {T, [&split, T, g](int64_t k, AwMat& xk) {
                xk.resize(T, g);
                split.get_rows(k * T, T, xk.data());
              }};
    r.blocks = group_grams(G, r.cols, ctx);
    if (cfg.params.clip_cross) r.tokens = &r.cols;
  }

  // The clipping search: per (row, group) the clamp range that minimises the group's partial
  // products' error on the calibration tokens. AutoAWQ's candidates clamp to [-m, m], m = max |w| x
  // (1 - i / clip_grid); with clip_asym also each end of [min, max] shrunk, first both by the
  // same factor in 1% steps down to 1 - max_shrink, then each end alone around the best of those
  // (the asymmetric grid's zero point lets the two ends move apart); the best of all wins. No
  // clamp is a candidate too and wins ties. A code clamped to the grid's ends is the clamped
  // value's code, so each range becomes its (scale, zero) pair; with refit_scale that pair is then
  // refitted (aw_refit). Returns rows x groups pairs.
  std::vector<AwGroupGrid> clip_search(const AwMat& w, const std::vector<AwMat>& grams, const AwqParams& cp, const Context& ctx,
                                       const AwMat* full = nullptr, const AwCols* tokens = nullptr) const {
    const int64_t rows = w.rows(), cols = w.cols(), g = cp.group_size, G = cols / g;
    const int maxq = (1 << cp.bits) - 1;
    const bool asym = cp.clip_asym;
    const int steps = static_cast<int>(cp.max_shrink * 100);
    const int sym_steps = static_cast<int>(cp.max_shrink * cp.clip_grid);
    // Rows whose candidates are costed by one product: up to 256 (each product packs the group's
    // G once, so taller products spend less on it), but at least two blocks for every thread. A
    // row's cost does not depend on the rows beside it.
    const int64_t nthreads = std::max(1, ctx.thread_count());
    const int64_t kRows = rows >= 256 * 2 * nthreads ? 256 : rows >= 128 * 2 * nthreads ? 128 : 64;
    std::vector<AwGroupGrid> clip(static_cast<size_t>(rows * G));
    AwMat Dsel, Cl;  // with `full`: every row's chosen errors so far (rows x cols); their cross terms (rows x g)
    if (full) Dsel = AwMat::Zero(rows, cols), Cl.resize(rows, g);
    // With `tokens` (T x cols) instead: every row's output error so far on each token (Y, rows x T),
    // group k's chosen errors (rows x g) and its tokens' columns.
    const int64_t T = tokens ? tokens->T : 0;
    AwMat Y, Dk, Xk, XkT;
    if (tokens) Y = AwMat::Zero(rows, T), Dk.resize(rows, g), Cl.resize(rows, g);
    AwMat M(g, g);
    const int threads = ctx.thread_count();
    for (int64_t k = 0; k < G; ++k) {
      const AwMat& H = grams[static_cast<size_t>(k)];
      // The cross term of group k with the groups before it (their errors as chosen): c = Σ_j<k G_kj d_j,
      // and a candidate d then costs dᵀ G_kk d + 2 dᵀ c, so the row's whole error dᵀ (XᵀX) d is
      // what the groups, taken left to right, minimise. One product for all rows (B packed once a
      // row stripe): D·G's columns of group k, or with `tokens` c = X_kᵀ y (y the row's errors on the tokens).
      const bool cross = (full || tokens) && k > 0;
      if (tokens && (cross || k + 1 < G)) tokens->get(k, Xk);  // T x g
      if (cross && full)
        parallel_for(rows, threads, aw_grain(rows, threads), [&](int64_t a0, int64_t a1) {
          aw_gemm(gemm, Dsel.data() + a0 * cols, a1 - a0, k * g, cols, full->data() + k * g * cols, g, cols,
                  Cl.data() + a0 * g, g);
        });
      if (cross && tokens) {
        XkT = Xk.transpose();  // g x T
        parallel_for(rows, threads, aw_grain(rows, threads), [&](int64_t a0, int64_t a1) {
          aw_gemm(gemm, Y.data() + a0 * T, a1 - a0, T, T, XkT.data(), g, T, Cl.data() + a0 * g, g);
        });
      }
      // The candidates' costs as |M d|² (aw_cost_factor), or with G itself where it has no factor.
      const bool tri = aw_cost_factor(H.data(), g, M.data());
      parallel_for((rows + kRows - 1) / kRows, ctx.thread_count(), 1, [&](int64_t b0, int64_t b1) {
        AwMat D(kRows, g), E(kRows, g);
        std::vector<float> sq(static_cast<size_t>(kRows));
        Eigen::VectorXf d(g), v(g);
        std::vector<float> lo0(kRows), hi0(kRows), blo(kRows), bhi(kRows), clo(kRows), chi(kRows);
        std::vector<double> best(kRows), cost(kRows);
        std::vector<char> on(kRows);
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t r0 = b * kRows, R = std::min(kRows, rows - r0);
          auto x_of = [&](int64_t i) { return w.data() + (r0 + i) * cols + k * g; };
          // Costs of the candidates [clo_i, chi_i] of the rows with on_i: each row's error vector d
          // a row of D, E = D·G in one back-end product, cost_i = d_i · e_i.
          auto evaluate = [&] {
            for (int64_t i = 0; i < R; ++i) {
              float* di = D.row(i).data();
              if (!on[static_cast<size_t>(i)]) {
                std::fill(di, di + g, 0.0f);
                continue;
              }
              const float* x = x_of(i);
              const float a = clo[static_cast<size_t>(i)], b = chi[static_cast<size_t>(i)];
              float s;
              int32_t z;
              if (grid_error && a <= b) {
                // The clamp is monotone, so the clamped group's ends are the clamped ends.
                aw_range_params(std::clamp(lo0[static_cast<size_t>(i)], a, b), std::clamp(hi0[static_cast<size_t>(i)], a, b),
                                maxq, storage, s, z);
                grid_error(g, x, a, b, s, static_cast<float>(z), static_cast<float>(maxq), di);
                continue;
              }
              aw_group_params_range(x, g, maxq, a, b, storage, s, z);
              for (int64_t c = 0; c < g; ++c) di[c] = s * static_cast<float>(aw_code(std::clamp(x[c], a, b), s, z, maxq) - z) - x[c];
            }
            if (tri) {
              // Eᵀ = M·Dᵀ (g x R, rows R apart), cost_i the squares of its column i.
              detail::GemmArgs mg{g, R, g, M.data(), g, D.data(), QuantType::F32, g, E.data(), R, false};
              mg.a_causal = 0;
              gemm(mg);
              std::fill(sq.begin(), sq.begin() + R, 0.0f);
              for (int64_t j = 0; j < g; ++j) {
                const float* e = E.data() + j * R;
                for (int64_t i = 0; i < R; ++i) sq[static_cast<size_t>(i)] += e[i] * e[i];
              }
            } else {
              aw_gemm(gemm, D.data(), R, g, g, H.data(), g, g, E.data(), g);
              for (int64_t i = 0; i < R; ++i) sq[static_cast<size_t>(i)] = D.row(i).dot(E.row(i));
            }
            for (int64_t i = 0; i < R; ++i)
              cost[static_cast<size_t>(i)] = static_cast<double>(sq[static_cast<size_t>(i)]) +
                                             (cross ? 2.0 * static_cast<double>(D.row(i).dot(Cl.row(r0 + i))) : 0.0);
          };
          auto all_on = [&] { std::fill(on.begin(), on.end(), 1); };
          for (int64_t i = 0; i < R; ++i) {
            const float* x = x_of(i);
            float lo = x[0], hi = x[0];
            for (int64_t c = 0; c < g; ++c) lo = std::min(lo, x[c]), hi = std::max(hi, x[c]);
            lo0[static_cast<size_t>(i)] = blo[static_cast<size_t>(i)] = clo[static_cast<size_t>(i)] = lo;
            hi0[static_cast<size_t>(i)] = bhi[static_cast<size_t>(i)] = chi[static_cast<size_t>(i)] = hi;
          }
          all_on();
          evaluate();
          const std::vector<double> plain = cost;  // no clamp
          best = plain;
          // AutoAWQ's candidates (with clip_asym too: the search then covers them).
          for (int s = 1; s < sym_steps; ++s) {
            const float f = 1.0f - static_cast<float>(s) / static_cast<float>(cp.clip_grid);
            for (int64_t i = 0; i < R; ++i) {
              const float mv = std::max(-lo0[static_cast<size_t>(i)], hi0[static_cast<size_t>(i)]) * f;
              clo[static_cast<size_t>(i)] = -mv, chi[static_cast<size_t>(i)] = mv;
            }
            evaluate();
            for (int64_t i = 0; i < R; ++i)
              if (cost[static_cast<size_t>(i)] < best[static_cast<size_t>(i)])
                best[static_cast<size_t>(i)] = cost[static_cast<size_t>(i)], blo[static_cast<size_t>(i)] = clo[static_cast<size_t>(i)],
                bhi[static_cast<size_t>(i)] = chi[static_cast<size_t>(i)];
          }
          if (asym) {
            const std::vector<float> sym_lo = blo, sym_hi = bhi;
            const std::vector<double> sym_best = best;
            best = plain;
            std::vector<int> bi(static_cast<size_t>(R), 0);
            for (int s = 1; s < steps; ++s) {  // both ends shrunk by one factor
              const float f = 1.0f - static_cast<float>(s) / 100.0f;
              for (int64_t i = 0; i < R; ++i)
                clo[static_cast<size_t>(i)] = lo0[static_cast<size_t>(i)] * f, chi[static_cast<size_t>(i)] = hi0[static_cast<size_t>(i)] * f;
              evaluate();
              for (int64_t i = 0; i < R; ++i)
                if (cost[static_cast<size_t>(i)] < best[static_cast<size_t>(i)])
                  best[static_cast<size_t>(i)] = cost[static_cast<size_t>(i)], bi[static_cast<size_t>(i)] = s;
            }
            for (int64_t i = 0; i < R; ++i) {
              const float f = 1.0f - static_cast<float>(bi[static_cast<size_t>(i)]) / 100.0f;
              blo[static_cast<size_t>(i)] = lo0[static_cast<size_t>(i)] * f, bhi[static_cast<size_t>(i)] = hi0[static_cast<size_t>(i)] * f;
            }
            // Then each end alone within ±10 steps of that factor: the low end first, then the high.
            for (int pass = 0; pass < 2; ++pass) {
              const std::vector<float> fixed = pass == 0 ? bhi : blo;
              for (int o = -10; o <= 10; ++o) {
                if (o == 0) continue;
                for (int64_t i = 0; i < R; ++i) {
                  const int s = bi[static_cast<size_t>(i)] + o;
                  on[static_cast<size_t>(i)] = s >= 0 && s <= steps - 1;
                  const float f = 1.0f - static_cast<float>(s) / 100.0f;
                  clo[static_cast<size_t>(i)] = pass == 0 ? lo0[static_cast<size_t>(i)] * f : fixed[static_cast<size_t>(i)];
                  chi[static_cast<size_t>(i)] = pass == 0 ? fixed[static_cast<size_t>(i)] : hi0[static_cast<size_t>(i)] * f;
                }
                evaluate();
                for (int64_t i = 0; i < R; ++i)
                  if (on[static_cast<size_t>(i)] && cost[static_cast<size_t>(i)] < best[static_cast<size_t>(i)])
                    best[static_cast<size_t>(i)] = cost[static_cast<size_t>(i)], blo[static_cast<size_t>(i)] = clo[static_cast<size_t>(i)],
                    bhi[static_cast<size_t>(i)] = chi[static_cast<size_t>(i)];
              }
              all_on();
            }
            for (int64_t i = 0; i < R; ++i)
              if (sym_best[static_cast<size_t>(i)] < best[static_cast<size_t>(i)])
                best[static_cast<size_t>(i)] = sym_best[static_cast<size_t>(i)], blo[static_cast<size_t>(i)] = sym_lo[static_cast<size_t>(i)],
                bhi[static_cast<size_t>(i)] = sym_hi[static_cast<size_t>(i)];
          }
          for (int64_t i = 0; i < R; ++i) {
            AwGroupGrid& out = clip[static_cast<size_t>((r0 + i) * G + k)];
            aw_group_params_range(x_of(i), g, maxq, blo[static_cast<size_t>(i)], bhi[static_cast<size_t>(i)], storage,
                                  out.scale, out.zero);
            const float* ci = cross ? Cl.row(r0 + i).data() : nullptr;
            if (cp.refit_scale) aw_refit(x_of(i), g, H, maxq, storage, best[static_cast<size_t>(i)], out, d, v, ci);
            if (cp.gain_correction) aw_gain(x_of(i), g, H, maxq, storage, out);
            if (full || tokens) {
              const float* x = x_of(i);
              const float cs = out.code_scale > 0 ? out.code_scale : out.scale;
              float* di = full ? Dsel.row(r0 + i).data() + k * g : Dk.row(r0 + i).data();
              for (int64_t c = 0; c < g; ++c) di[c] = out.scale * static_cast<float>(aw_code(x[c], cs, out.zero, maxq) - out.zero) - x[c];
            }
          }
        }
      });
      if (tokens && k + 1 < G) {  // Y += D_k X_kᵀ
        parallel_for(rows, threads, aw_grain(rows, threads), [&](int64_t a0, int64_t a1) {
          detail::GemmArgs ga{a1 - a0, T, g, Dk.data() + a0 * g, g, Xk.data(), QuantType::F32, g, Y.data() + a0 * T, T, true};
          gemm(ga);
        });
      }
    }
    return clip;
  }

  // The error dᵀ G d of group x on the grid (s, z), d = s (code - z) - x, codes clamped to the grid.
  static double aw_grid_cost(const float* x, int64_t g, const AwMat& H, int maxq, float s, int32_t z,
                             Eigen::VectorXf& d, const float* cl = nullptr) {
    for (int64_t c = 0; c < g; ++c) d[c] = s * static_cast<float>(aw_code(x[c], s, z, maxq) - z) - x[c];
    double e = static_cast<double>(d.dot(H * d));
    if (cl) e += 2.0 * static_cast<double>(d.dot(Eigen::Map<const Eigen::VectorXf>(cl, g)));
    return e;
  }

  // Refits a group's scale to its codes: for the zero point and its neighbours, the s minimising
  // (s v - x)ᵀ G (s v - x) for v = code - z is s = vᵀGx / vᵀGv (rounded to the stored dtype); the
  // codes are rounded again on it and the refit repeated once. A pair is kept only when its error
  // is below `best` (the clip search's), so the result is never worse on that measure.
  static void aw_refit(const float* x, int64_t g, const AwMat& H, int maxq, int storage, double best, AwGroupGrid& out,
                       Eigen::VectorXf& d, Eigen::VectorXf& v, const float* cl = nullptr) {
    const Eigen::Map<const Eigen::VectorXf> X(x, g);
    best = std::min(best, aw_grid_cost(x, g, H, maxq, out.scale, out.zero, d, cl));
    for (int pass = 0; pass < 2; ++pass) {
      const AwGroupGrid from = out;
      for (int32_t z = std::max(0, from.zero - 1); z <= std::min(maxq, from.zero + 1); ++z) {
        for (int64_t c = 0; c < g; ++c) v[c] = static_cast<float>(aw_code(x[c], from.scale, from.zero, maxq) - z);
        const Eigen::VectorXf Hv = H * v;
        const double den = static_cast<double>(v.dot(Hv));
        if (!(den > 0)) continue;
        double num = static_cast<double>(Hv.dot(X));
        if (cl) num -= static_cast<double>(v.dot(Eigen::Map<const Eigen::VectorXf>(cl, g)));
        const float s = aw_round_scale(static_cast<float>(num / den), storage);
        if (!(s > 0) || !std::isfinite(s)) continue;
        const double e = aw_grid_cost(x, g, H, maxq, s, z, d, cl);
        if (e < best) best = e, out = AwGroupGrid{s, z};
      }
      // A pass that kept its pair leaves the next one the same candidates, none below `best`.
      if (out.scale == from.scale && out.zero == from.zero) break;
    }
  }

  static void aw_gain(const float* x, int64_t g, const AwMat& H, int maxq, int storage, AwGroupGrid& out) {
    const float s = awq_gain_scale(x, g, H.data(), maxq, out.scale, out.zero, storage);
    if (s != out.scale) out.code_scale = out.scale, out.scale = s;
  }

  // Quantizes one linear on its (scaled) inputs xs: clipped on `grams` (null: AutoAWQ's min-max
  // grid), with `over`'s parameters in place of the run's where given.
  void quantize_linear(AwLinear& x, const AwRows& xs, const AwGrams* grams, const Context& ctx,
                       const AwqParams* over = nullptr) {
    GptqMatrix q;
    if (grams && cfg.params.gptq_rounding && grams->full.size()) {
      q = gptq_quantize_matrix(x.w.data(), x.rows, x.cols, grams->full.data(), awq_gptq_params(cfg.params, storage), ctx);
      ++summary.clipped_linears;
      if (q.damp_raises > 0) {  // never silent: the progress and the result's warnings say where
        const std::string w = fmt::format("{}{}: Cholesky failed, dampening raised {} time(s) to {}", x.module,
                                          x.parts > 0 ? " (a part)" : "", q.damp_raises, q.damp);
        ctx.progress_sink().message(fmt::format("warning: {}", w));
        warnings.push_back(w);
      }
    } else if (grams) {
      const std::vector<AwGroupGrid> grid =
          clip_search(x.w, grams->blocks, over ? *over : cfg.params, ctx, grams->full.size() ? &grams->full : nullptr,
                      grams->tokens);
      ++summary.clipped_linears;
      q = aw_quantize_grid(x.w.data(), x.rows, x.cols, grid, ctx);
    } else {
      q = awq_quantize_matrix(x.w.data(), x.rows, x.cols, cfg.params.bits, cfg.params.group_size, nullptr, ctx, storage);
    }
    // Relative output error on the calibration tokens, |xs ΔWᵀ|² / |xs Wᵀ|²: through the clip's
    // XᵀX where it has one and the tokens outnumber the columns (m G mᵀ per row, columns² a row
    // instead of tokens x columns; the same sums up to float rounding).
    AwMat diff(x.rows, x.cols);  // q's values (GptqMatrix::dequantize's) less the weights
    parallel_for(x.rows, ctx.thread_count(), 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = 0; c < x.cols; ++c) {
          const size_t g = static_cast<size_t>(r * q.groups + q.g_idx[static_cast<size_t>(c)]);
          const float v = q.scales[g] * static_cast<float>(static_cast<int32_t>(q.codes[static_cast<size_t>(r * x.cols + c)]) -
                                                           q.zeros[g]);
          diff(r, c) = v - x.w(r, c);
        }
    });
    const AwMat* G = grams && grams->full.size() && grams->outnumber ? &grams->full : nullptr;
    AwMat y;
    std::vector<float> buf;
    auto out_sq = [&](const AwMat& m) -> double {
      if (!G) {  // a slab of the tokens at a time, the slabs' sums added in double
        double sum = 0;
        for (int64_t t0 = 0; t0 < xs.rows(); t0 += kAwRows) {
          const int64_t n = std::min(kAwRows, xs.rows() - t0);
          y.resize(n, m.rows());
          aw_matmul(gemm, xs.get(t0, n, buf), n, m.cols(), m.data(), m.rows(), y.data(), ctx.thread_count());
          sum += static_cast<double>(y.squaredNorm());
        }
        return sum;
      }
      y.resize(m.rows(), m.cols());
      aw_matmul(gemm, m.data(), m.rows(), m.cols(), G->data(), G->rows(), y.data(), ctx.thread_count());
      return m.cwiseProduct(y).cast<double>().sum();
    };
    const double ref = out_sq(x.w);
    const double err = out_sq(diff);
    if (x.permuted) {
      GptqMatrix h = q;
      const int64_t hd = io->model->config().head_dim;
      for (int64_t r = 0; r < x.rows; ++r) {
        const int64_t hr = aw_hf_row(r, hd);
        std::memcpy(&h.codes[static_cast<size_t>(hr * x.cols)], &q.codes[static_cast<size_t>(r * x.cols)],
                    static_cast<size_t>(x.cols));
        for (int64_t k = 0; k < q.groups; ++k) {
          h.scales[static_cast<size_t>(hr * q.groups + k)] = q.scales[static_cast<size_t>(r * q.groups + k)];
          h.zeros[static_cast<size_t>(hr * q.groups + k)] = q.zeros[static_cast<size_t>(r * q.groups + k)];
        }
      }
      q = std::move(h);
    }
    if (x.parts > 0) {  // a fused projection's part: put with the others once all are quantized
      pending_.push_back({std::move(q), err, ref});
      if (static_cast<int>(pending_.size()) < x.parts) return;
      q = std::move(pending_[0].q);
      double e = pending_[0].err, r = pending_[0].ref;
      for (size_t i = 1; i < pending_.size(); ++i) {
        const GptqMatrix& m = pending_[i].q;
        q.rows += m.rows;
        q.codes.insert(q.codes.end(), m.codes.begin(), m.codes.end());
        q.scales.insert(q.scales.end(), m.scales.begin(), m.scales.end());
        q.zeros.insert(q.zeros.end(), m.zeros.begin(), m.zeros.end());
        q.damp = std::max(q.damp, m.damp);  // GPTQ's rounding: the parts' dampening, raises and dead columns
        q.damp_raises += m.damp_raises;
        q.dead_columns = std::max(q.dead_columns, m.dead_columns);  // the parts share their columns
        e += pending_[i].err;
        r += pending_[i].ref;
      }
      pending_.clear();
      const GptqLayerReport rep{x.module, names::block_of(x.gguf), r > 0 ? e / r : 0, q.damp, q.damp_raises, q.dead_columns};
      io->put_matrix(x.module, std::move(q), rep);
      return;
    }
    const GptqLayerReport rep{x.module, names::block_of(x.gguf), ref > 0 ? err / ref : 0, q.damp, q.damp_raises, q.dead_columns};
    io->put_matrix(x.module, std::move(q), rep);
  }
  struct AwPart {
    GptqMatrix q;
    double err = 0, ref = 0;
  };
  std::vector<AwPart> pending_;  // the quantized parts of the fused projection being put

  std::vector<float> bias(const char* suffix) const {
    if (!io->has(suffix)) return {};
    return io->model->tensor_f32(local(suffix));
  }

  // A linear inspected at its own output, on x: its search, screened on an even sample of x's
  // rows where x has at least twice the sample.
  // With `tie` (one entry per column of w: its channel, channels 0 .. n-1, each one's columns
  // alike in number), the search is over the n channels: their statistics are the means over
  // their columns, and a channel's scale is every one of its columns' (the returned scales are
  // the n channels').
  // release_x as quantize_on's: called once the loss goes through XᵀX and x is no longer read.
  // gram_out, where given, receives that XᵀX (of x as it is; left empty where the loss did not go
  // through it), for the clipping of the same inputs (quantize_on_parked).
  AwqSearch search_linear(const AwMat& x, const AwMat& w, const Context& ctx, std::span<const int64_t> tie = {},
                          const std::function<void()>& release_x = {}, AwMat* gram_out = nullptr) const {
    using Loss = std::function<double(std::span<const float>)>;
    const AwqParams& p = cfg.params;
    const int threads = ctx.thread_count();
    const bool screen = p.search_tokens > 0 && 2 * p.search_tokens <= x.rows();
    LinearLoss ll(*this, x, w, threads);
    const AwMat xs = screen ? sample_rows(x, p.search_tokens) : AwMat();
    std::optional<LinearLoss> ls;
    if (screen) ls.emplace(*this, xs, w, threads);
    std::vector<float> x_mean = col_abs_mean(x), w_mean = weight_mean({&w});
    if (release_x && ll.gram) release_x();
    std::vector<float> wide;  // the columns' scales under `tie`
    auto cols = [&](std::span<const float> s) -> std::span<const float> {
      if (tie.empty()) return s;
      wide.resize(tie.size());
      for (size_t c = 0; c < tie.size(); ++c) wide[c] = s[static_cast<size_t>(tie[c])];
      return wide;
    };
    if (!tie.empty()) {
      x_mean = tied_mean(x_mean, tie);
      w_mean = tied_mean(w_mean, tie);
    }
    // A candidate's loss: with bf16 products its weights made in bf16 directly (the same values).
    auto loss = [&](LinearLoss& l, std::span<const float> s) {
      ctx.check_cancelled();
      if (bf16_search() && !l.gram) return l(scaled_fake_bf16(w, cols(s), ctx), threads);
      return l(scaled_fake(w, cols(s), ctx), threads);
    };
    AwqSearch r = awq_search_scales(x_mean, w_mean, p, [&](std::span<const float> s) { return loss(ll, s); },
                                    screen ? Loss([&](std::span<const float> s) { return loss(*ls, s); }) : Loss{});
    if (gram_out && ll.gram) *gram_out = std::move(ll.G);
    return r;
  }
  // search_linear with `parked` (x's parked file): once x's column means and screening sample are
  // made, x is freed (release_x) and the loss reads x's rows from the file a slab at a time, the
  // same values and sums without the inputs in memory. With more tokens than columns XᵀX is formed
  // from the file's slabs; with fewer, the loss multiplies the inputs by each candidate, which
  // needs bf16 products and w exact in bf16 (`exact`): w is then freed too and the candidates made
  // from its bf16 copy. Otherwise the search above, on x in memory.
  // x may be empty (still parked): its statistics are then read from the file, and x is read
  // back only for the search on x in memory. gram_out as above.
  AwqSearch search_linear(AwMat& x, AwMat& w, const Context& ctx, const std::function<void()>& release_x,
                          const AwParked* parked, bool exact, AwMat* gram_out = nullptr) const {
    const bool in_file = parked && parked->is_open() && x.size() == 0;
    const int64_t T = in_file ? parked->rows() : x.rows(), k = in_file ? parked->cols() : x.cols();
    const bool gram = T > k;
    if (!parked || (!gram && !(exact && bf16_search()))) {
      if (in_file) parked->unpark(x);
      return search_linear(x, w, ctx, {}, release_x, gram_out);
    }
    using Loss = std::function<double(std::span<const float>)>;
    const AwqParams& p = cfg.params;
    const int threads = ctx.thread_count();
    const bool screen = p.search_tokens > 0 && 2 * p.search_tokens <= T;
    AwMat xs;
    std::vector<float> x_mean;
    if (in_file) {
      x_mean = parked_stats(*parked, screen ? p.search_tokens : 0, xs);
    } else {
      if (screen) xs = sample_rows(x, p.search_tokens);
      x_mean = col_abs_mean(x);
    }
    const std::vector<float> w_mean = weight_mean({&w});
    AwBf16 wb;
    if (!gram) {
      wb = AwBf16(w, threads);
      w = AwMat();
    }
    release_x();
    if (x.size() != 0) fail(Errc::general, "awq: the parked search's inputs were not released");
    const LinearLoss::Rows read = [parked](int64_t t0, int64_t m, float* dst) { parked->get_rows(t0, m, dst); };
    std::optional<LinearLoss> ll, ls;
    if (gram) ll.emplace(*this, read, T, k, w, threads);
    else ll.emplace(*this, read, T, k, wb, threads);
    if (screen && gram) {
      ls.emplace(*this, xs, w, threads);
    } else if (screen) {
      ls.emplace(*this, [&xs](int64_t t0, int64_t m, float* dst) {
        std::memcpy(dst, xs.data() + t0 * xs.cols(), static_cast<size_t>(m * xs.cols()) * sizeof(float));
      }, xs.rows(), k, wb, threads);
    }
    auto loss = [&](LinearLoss& l, std::span<const float> s) {
      ctx.check_cancelled();
      if (!gram) return l(scaled_fake_bf16(wb, s, ctx), threads);
      if (bf16_search() && !l.gram) return l(scaled_fake_bf16(w, s, ctx), threads);
      return l(scaled_fake(w, s, ctx), threads);
    };
    AwqSearch r = awq_search_scales(x_mean, w_mean, p, [&](std::span<const float> s) { return loss(*ll, s); },
                                    screen ? Loss([&](std::span<const float> s) { return loss(*ls, s); }) : Loss{});
    if (gram_out && ll->gram) *gram_out = std::move(ll->G);
    return r;
  }
  // Per channel of `tie`, the mean of v over its columns.
  static std::vector<float> tied_mean(std::span<const float> v, std::span<const int64_t> tie) {
    const int64_t n = tie.empty() ? 0 : *std::max_element(tie.begin(), tie.end()) + 1;
    std::vector<double> sum(static_cast<size_t>(n), 0.0);
    std::vector<int64_t> count(static_cast<size_t>(n), 0);
    for (size_t c = 0; c < tie.size(); ++c) sum[static_cast<size_t>(tie[c])] += v[c], ++count[static_cast<size_t>(tie[c])];
    std::vector<float> m(static_cast<size_t>(n));
    for (size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(sum[i] / static_cast<double>(std::max<int64_t>(1, count[i])));
    return m;
  }

  void report(int64_t L, const char* group, const AwqSearch& s) {
    summary.groups.push_back(AwqGroupReport{static_cast<int>(L), group, s.alpha, s.duo, s.loss, s.identity_loss});
  }

  // The linears' grids are fitted on their calibration inputs (the clipping search, or GPTQ).
  bool fit() const { return cfg.params.clip || cfg.params.gptq_rounding; }

  // Quantizes linears that read one input x (their clipping, or GPTQ, on x's grams, formed once).
  // release_x, where given, is called once x is no longer read (its XᵀX formed, when the clipping
  // and the error reports go through it), so the caller can free it.
  void quantize_on(const AwMat& x, std::initializer_list<std::pair<AwLinear*, const AwqParams*>> ls, bool clip,
                   const Context& ctx, const std::function<void()>& release_x = {}) {
    int64_t max_rows = 0;
    for (const auto& l : ls) max_rows = std::max(max_rows, l.first->rows);
    AwGrams gr;
    if (clip) input_grams(x, max_rows, ctx, gr);
    if (release_x && clip && gr.full.size() && gr.outnumber) release_x();
    for (const auto& [l, over] : ls) quantize_linear(*l, AwRows{&x}, clip ? &gr : nullptr, ctx, over);
  }

  // quantize_on for inputs parked in f (x empty) or in x, divided by s column by column (s empty:
  // as they are). Parked inputs clipped on every token are read from the file where they are
  // needed (parked_grams, the error reports), never held; otherwise they are read back and
  // divided. x is empty afterwards.
  // `gram`, where given and not empty, is XᵀX of the undivided inputs from their scale search
  // (search_linear's gram_out; more tokens than columns): where the clipping takes all of XᵀX on
  // every token, it is that matrix divided by s on both sides (grams_from; consumed), and the
  // inputs are not read again.
  void quantize_on_parked(AwParked& f, AwMat& x, std::span<const float> s,
                          std::initializer_list<std::pair<AwLinear*, const AwqParams*>> ls, const Context& ctx,
                          AwMat* gram = nullptr) {
    int64_t max_rows = 0;
    for (const auto& l : ls) max_rows = std::max(max_rows, l.first->rows);
    const int64_t n = cfg.params.clip_tokens;
    const bool in_file = f.is_open() && x.size() == 0;
    const int64_t T = in_file ? f.rows() : x.rows(), cols = in_file ? f.cols() : x.cols();
    if (gram && gram->rows() == cols && T > cols && clip_full_gram(T, cols, max_rows)) {
      AwGrams gr;
      grams_from(std::move(*gram), s, T, ctx, gr);
      *gram = AwMat();
      x = AwMat();
      for (const auto& [l, over] : ls) quantize_linear(*l, AwRows{&x}, &gr, ctx, over);  // (the reports go through XᵀX)
      return;
    }
    if (f.is_open() && x.size() == 0 && fit() && (n <= 0 || n >= f.rows())) {
      const AwRows rows{nullptr, &f, s};
      AwParked split;
      AwGrams gr;
      parked_grams(rows, max_rows, io->spill_dir, split, ctx, gr);
      for (const auto& [l, over] : ls) quantize_linear(*l, rows, &gr, ctx, over);
      return;
    }
    f.unpark(x);
    if (!s.empty()) unscale_cols(x, s);
    AwMat keep;
    quantize_on(clip_tokens(x, keep), ls, fit(), ctx, [&] { x = AwMat(); });
    x = AwMat();
  }

  // The clipping's view of x: every row (clip_tokens 0) or an even sample of them.
  const AwMat& clip_tokens(const AwMat& x, AwMat& keep) const {
    const int64_t n = cfg.params.clip_tokens;
    if (n <= 0 || n >= x.rows()) return x;
    keep = sample_rows(x, n);
    return keep;
  }

  // Block io.layer on its captured inputs: the attention part, then the MLP's or the mixture of
  // experts' (each searched, folded, clipped and quantized; the parts read disjoint inputs), every
  // change handed to io.
  void run(AwBlockIo& block_io, AwActs& a, const Context& ctx) {
    io = &block_io;
    const Architecture& arch = architecture_of(io->model->config(), "awq");
    // The MLP's inputs wait in their parked files (where the capture put them) through the attention part.
    a.ffn_parked.park(a.x_ffn, io->spill_dir);
    a.down_parked.park(a.x_down, io->spill_dir);
    attention_step(a, arch, ctx);
    if (arch.moe != Architecture::MoeStyle::none) {
      a.ffn_parked.unpark(a.x_ffn);
      a.down_parked.unpark(a.x_down);
      moe_step(a, arch, ctx);
    } else {
      mlp_step(a, arch, ctx);
    }
    a = AwActs{};
    end_search();
    io = nullptr;
  }

  // input_layernorm -> q, k, v (inspected at the attention block's output) and v_proj -> o_proj.
  void attention_step(AwActs& a, const Architecture& arch, const Context& ctx) {
    const int64_t L = io->layer;
    const int threads = ctx.thread_count();
    const AwqParams& p = cfg.params;
    const ModelConfig& mc = io->model->config();
    AwLinear wq, wk, wv;
    if (arch.fused_qkv) {
      std::vector<AwLinear> p3 = load_parts(L, "attn_qkv.weight", {mc.n_head * mc.head_dim, mc.n_head_kv * mc.head_dim,
                                                                   mc.n_head_kv * mc.head_dim});
      wq = std::move(p3[0]), wk = std::move(p3[1]), wv = std::move(p3[2]);
    } else {
      wq = load(L, "attn_q.weight"), wk = load(L, "attn_k.weight"), wv = load(L, "attn_v.weight");
    }
    AwLinear wo = load(L, "attn_output.weight");
    std::vector<float> bq = bias("attn_q.bias"), bk = bias("attn_k.bias"), bv = bias("attn_v.bias");

    // The norm's inputs: in memory, or (with a spill directory) in their parked file, which the
    // searches and the clipping read a chunk or slab at a time.
    AwRows xa = a.attn_parked.is_open() ? AwRows{nullptr, &a.attn_parked} : AwRows{&a.x_attn};
    // The screen's sample (p.search_tokens): whole chunks, evenly spaced.
    const int64_t T = xa.rows();
    const bool screen = p.search_tokens > 0 && 2 * p.search_tokens <= T;
    AwMat xs_attn;
    std::vector<int64_t> lens_s;
    if (screen) {
      const int64_t nc = static_cast<int64_t>(lengths.size());
      const int64_t m = std::clamp<int64_t>((p.search_tokens * nc + T - 1) / T, 1, nc);
      std::vector<int64_t> starts(static_cast<size_t>(nc) + 1, 0);
      for (int64_t c = 0; c < nc; ++c) starts[static_cast<size_t>(c) + 1] = starts[static_cast<size_t>(c)] + lengths[static_cast<size_t>(c)];
      int64_t rows = 0;
      for (int64_t j = 0; j < m; ++j) rows += lengths[static_cast<size_t>(j * nc / m)];
      xs_attn.resize(rows, xa.cols());
      rows = 0;
      for (int64_t j = 0; j < m; ++j) {
        const size_t c = static_cast<size_t>(j * nc / m);
        xa.copy(starts[c], lengths[c], xs_attn.data() + rows * xs_attn.cols());
        rows += lengths[c];
        lens_s.push_back(lengths[c]);
      }
    }
    using Loss = std::function<double(std::span<const float>)>;

    // 1. input_layernorm -> q, k, v, inspected at the attention block's output.
    // The recomputed attention against the engine's (o_proj's captured inputs), chunk by chunk, on
    // the first chunks of at least kAttnCheckTokens tokens (every chunk when fewer): the
    // recomputation is the same arithmetic on every chunk.
    double dev = 0;
    {
      const AwRows xo = a.o_parked.is_open() ? AwRows{nullptr, &a.o_parked} : AwRows{&a.x_o, nullptr};
      const int64_t c = xo.cols();
      std::vector<int64_t> lens_c;
      int64_t tc = 0;
      for (size_t i = 0; i < lengths.size() && tc < kAttnCheckTokens; ++i) lens_c.push_back(lengths[i]), tc += lengths[i];
      std::vector<double> d2(static_cast<size_t>(tc)), r2(static_cast<size_t>(tc));
      AwBufs bufs;
      attention_out(xa, lens_c, wq.w, wk.w, wv.w, bq, bk, bv, nullptr, [&](int64_t r0, int64_t n, const float* y) {
        std::vector<float> buf = bufs.take();
        const float* r = xo.get(r0, n, buf);
        for (int64_t i = 0; i < n; ++i) {
          d2[static_cast<size_t>(r0 + i)] = AwRef::sq_diff(y + i * c, r + i * c, c);
          r2[static_cast<size_t>(r0 + i)] = AwRef::sq_diff(r + i * c, nullptr, c);
        }
        bufs.give(std::move(buf));
      }, ctx);
      double sd = 0, sr = 0;
      for (int64_t t = 0; t < tc; ++t) sd += d2[static_cast<size_t>(t)], sr += r2[static_cast<size_t>(t)];
      dev = std::sqrt(sd) / std::max(1e-30, std::sqrt(sr));
    }
    const bool attn_ok = dev < 1e-3;
    if (!attn_ok) {
      summary.attention = fmt::format("q/k/v outputs (the recomputed attention differs from the engine's by {:.2g})", dev);
      warnings.push_back(fmt::format("block {}: {}", L, summary.attention));
      a.attn_parked.unpark(a.x_attn);  // the projections' own outputs are costed on x in memory
      xa = AwRows{&a.x_attn};
    }
    AwMat none;
    const std::vector<float> x1 = xa.f ? parked_stats(a.attn_parked, 0, none) : col_abs_mean(a.x_attn);
    const bool bf16 = bf16_search();
    AwqSearch s1;
    {
      // The loss on x (chunks of lens tokens), against the original weights' outputs there (all
      // the tokens' parked with a spill directory, the screen's in memory).
      struct AttnLoss {
        AwRef ref;
        AwMat yq, yk, yv;
      };
      auto prepare = [&](const AwRows& x, const std::vector<int64_t>& lens, AttnLoss& r, const fs::path& spill) {
        if (attn_ok) {
          r.ref.open(x.rows(), wo.rows, spill);
          return attention_out(x, lens, wq.w, wk.w, wv.w, bq, bk, bv, &wo.w,
                               [&](int64_t r0, int64_t n, const float* y) { r.ref.put(r0, n, y); }, ctx, bf16);
        }
        linear_out(*x.m, wq.w, r.yq, threads, bf16);
        linear_out(*x.m, wk.w, r.yk, threads, bf16);
        linear_out(*x.m, wv.w, r.yv, threads, bf16);
      };
      auto loss_on = [&](const AwRows& x, const std::vector<int64_t>& lens, AttnLoss& r) -> Loss {
        return [&](std::span<const float> s) {
          ctx.check_cancelled();
          const AwMat q = scaled_fake(wq.w, s, ctx), k = scaled_fake(wk.w, s, ctx), v = scaled_fake(wv.w, s, ctx);
          if (attn_ok) {
            attention_out(x, lens, q, k, v, bq, bk, bv, &wo.w, [&](int64_t r0, int64_t n, const float* y) { r.ref.cost(r0, n, y); },
                          ctx, bf16);
            return r.ref.loss();
          }
          AwMat o;
          double l = 0;
          linear_out(*x.m, q, o, threads, bf16), l += (o - r.yq).squaredNorm();
          linear_out(*x.m, k, o, threads, bf16), l += (o - r.yk).squaredNorm();
          linear_out(*x.m, v, o, threads, bf16), l += (o - r.yv).squaredNorm();
          return l / static_cast<double>(x.rows() * (wq.rows + wk.rows + wv.rows));
        };
      };
      AttnLoss full, part;
      const AwRows xsr{&xs_attn};
      prepare(xa, lengths, full, io->spill_dir);
      if (screen) prepare(xsr, lens_s, part, {});
      s1 = awq_search_scales(x1, weight_mean({&wq.w, &wk.w, &wv.w}), p, loss_on(xa, lengths, full),
                             screen ? loss_on(xsr, lens_s, part) : Loss{});
    }
    report(L, "input_layernorm->q,k,v", s1);
    xs_attn.resize(0, 0);

    // 2. v_proj -> o_proj, inspected at o_proj's output. Where v's rows are o's columns, one scale
    // a column. Under GQA (AutoAWQ and llm-compressor skip the pair there) v's channel d of kv
    // head g feeds column d of every query head h with h / (n_head / n_head_kv) = g, so with
    // scale_v_o_gqa those columns share the channel's scale (tie: column -> v row).
    AwqSearch s2;
    AwMat o_gram;  // o's search's XᵀX, for its clipping (quantize_on_parked)
    std::vector<int64_t> tie;
    const int64_t hd = mc.head_dim;
    const bool vo_gqa = p.scale_v_o && p.scale_v_o_gqa && wv.rows != wo.cols && mc.n_head_kv > 0 &&
                        mc.n_head % mc.n_head_kv == 0 && wv.rows == mc.n_head_kv * hd && wo.cols == mc.n_head * hd;
    const bool vo = p.scale_v_o && (wv.rows == wo.cols || vo_gqa);
    if (vo_gqa) {
      const int64_t rep = mc.n_head / mc.n_head_kv;
      tie.resize(static_cast<size_t>(wo.cols));
      for (int64_t c = 0; c < wo.cols; ++c) tie[static_cast<size_t>(c)] = (c / hd) / rep * hd + c % hd;
    }
    // With a spill directory o's inputs are held only through o's search (x_attn in its file), and
    // read from their file for o's clipping.
    if (vo) {
      a.attn_parked.park(a.x_attn, io->spill_dir);
      a.o_parked.unpark(a.x_o);
      s2 = search_linear(a.x_o, wo.w, ctx, tie, {}, clip_full_gram(a.x_o.rows(), wo.cols, wo.rows) ? &o_gram : nullptr);
      report(L, "v_proj->o_proj", s2);
      a.o_parked.park(a.x_o, io->spill_dir);
    }
    end_search();
    std::vector<float> s2_cols = s2.scales;  // per column of o
    if (vo_gqa) {
      s2_cols.resize(static_cast<size_t>(wo.cols));
      for (size_t c = 0; c < tie.size(); ++c) s2_cols[c] = s2.scales[static_cast<size_t>(tie[c])];
    }

    // Folds (the activations the clipping search sees are divided by the same scales).
    const std::vector<float> e1 = fold_norm("attn_norm.weight", s1.scales);
    for (AwLinear* x : {&wq, &wk, &wv}) scale_cols(x->w, e1);
    unscale_cols(a.x_attn, e1);  // (parked: divided as read)
    if (vo) {
      std::span<float> vs(wv.w.data(), static_cast<size_t>(wv.w.size()));
      awq_divide_rows(vs, wv.cols, s2.scales);
      if (!bv.empty()) {
        awq_divide_rows(bv, 1, s2.scales);
        io->set_float("attn_v.bias", stored_rounding("attn_v.bias", std::move(bv)));
      }
      scale_cols(wo.w, s2_cols);
    }

    // Clipping (q/k on the symmetric clamps only, with clip_qk) and quantization.
    AwMat keep[2];
    AwqParams pq = p;  // q/k: the symmetric clamps only
    pq.clip_asym = false;
    {
      const bool fit_qk = (p.clip && p.clip_qk) || p.gptq_rounding;
      const int64_t max_rows = std::max({wq.rows, wk.rows, wv.rows});
      // Parked and clipped on every token: read from the file (as quantize_on_parked).
      const bool from_file = a.attn_parked.is_open() && a.x_attn.size() == 0 && (p.clip_tokens <= 0 || p.clip_tokens >= T);
      if (!from_file && a.x_attn.size() == 0 && a.attn_parked.is_open()) {
        a.attn_parked.unpark(a.x_attn);
        unscale_cols(a.x_attn, e1);
      }
      const AwMat& xm = from_file ? none : clip_tokens(a.x_attn, keep[0]);
      const AwRows xr = from_file ? AwRows{nullptr, &a.attn_parked, e1} : AwRows{&xm};
      AwParked split;
      AwGrams ga;
      if (fit() && from_file) parked_grams(xr, max_rows, io->spill_dir, split, ctx, ga);
      else if (fit()) input_grams(xm, max_rows, ctx, ga);
      quantize_linear(wq, xr, fit_qk ? &ga : nullptr, ctx, &pq);
      quantize_linear(wk, xr, fit_qk ? &ga : nullptr, ctx, &pq);
      quantize_linear(wv, xr, fit() ? &ga : nullptr, ctx);
    }
    a.x_attn = AwMat(), keep[0] = AwMat();  // q, k and v are quantized: o's turn has the memory
    quantize_on_parked(a.o_parked, a.x_o, vo ? std::span<const float>(s2_cols) : std::span<const float>(), {{&wo, nullptr}},
                       ctx, &o_gram);  // the attention's inputs: no later step reads them
  }

  // post_attention_layernorm -> gate, up (inspected at the MLP's output) and up_proj -> down_proj.
  void mlp_step(AwActs& a, const Architecture& arch, const Context& ctx) {
    const int64_t L = io->layer;
    const int threads = ctx.thread_count();
    const AwqParams& p = cfg.params;
    const ModelConfig& mc = io->model->config();
    AwLinear wg, wu;
    auto load_gate_up = [&] {
      if (arch.fused_gate_up) {
        std::vector<AwLinear> p2 = load_parts(L, "ffn_up.weight", {mc.n_ff, mc.n_ff});
        wg = std::move(p2[0]), wu = std::move(p2[1]);
      } else {
        wg = load(L, "ffn_gate.weight"), wu = load(L, "ffn_up.weight");
      }
    };
    // With bf16 products on weights bf16 holds exactly (a bf16 checkpoint), the searches read the
    // weights from their bf16 copies alone: the same values, half the bytes.
    const bool exact_gu = bf16_exact(arch.fused_gate_up ? "ffn_up.weight" : "ffn_gate.weight") &&
                          bf16_exact("ffn_up.weight");
    const bool exact_down = bf16_exact("ffn_down.weight");
    AwLinear wd = load(L, "ffn_down.weight");
    AwBf16 bkeep[3];  // the search's bf16 copies of gate, up and down
    const AwW dn = search_w(wd.w, bkeep[2], threads);
    if (dn.b) wd.w = AwMat();  // the gate/up search multiplies by its bf16 copy
    load_gate_up();
    std::vector<float> wmean_gu;
    if (exact_gu) {
      wmean_gu = weight_mean({&wg.w, &wu.w});
      bkeep[0] = AwBf16(wg.w, threads), bkeep[1] = AwBf16(wu.w, threads);
      wg.w = AwMat(), wu.w = AwMat();
    }
    using Loss = std::function<double(std::span<const float>)>;
    // Each part holds only what it reads: with a spill directory the norm's and down's inputs stay
    // in their parked files, where the searches and the clipping read them a slab at a time; float
    // weights that a search does not read are dropped and loaded again (the same values) where they
    // are folded.
    AwParked& park_down = a.down_parked;
    AwParked& park_ffn = a.ffn_parked;
    park_down.park(a.x_down, io->spill_dir);
    const AwRows xf = park_ffn.is_open() ? AwRows{nullptr, &park_ffn} : AwRows{&a.x_ffn};
    const bool screen = p.search_tokens > 0 && 2 * p.search_tokens <= xf.rows();

    // 3. post_attention_layernorm -> gate, up, inspected at the MLP's output.
    AwqSearch s3;
    {
      // The original MLP's outputs on every token (parked with a spill directory), the screen's in memory.
      AwRef y_ref, ys_ref;
      const AwW gsrc = exact_gu ? AwW(bkeep[0]) : AwW(wg.w), usrc = exact_gu ? AwW(bkeep[1]) : AwW(wu.w);
      auto loss_on = [&](const AwRows& x, AwRef& ref) -> Loss {
        return [&](std::span<const float> s) {
          ctx.check_cancelled();
          const AwOut cost = [&](int64_t t0, int64_t n, const float* y) { ref.cost(t0, n, y); };
          if (bf16_search())
            mlp_out(x, scaled_fake_bf16(gsrc, s, ctx), scaled_fake_bf16(usrc, s, ctx), &dn, cost, threads);
          else
            mlp_out(x, scaled_fake(wg.w, s, ctx), scaled_fake(wu.w, s, ctx), &dn, cost, threads);
          return ref.loss();
        };
      };
      AwMat xs;
      std::vector<float> x_mean;
      if (xf.f) {
        x_mean = parked_stats(park_ffn, screen ? p.search_tokens : 0, xs);
      } else {
        if (screen) xs = sample_rows(a.x_ffn, p.search_tokens);
        x_mean = col_abs_mean(a.x_ffn);
      }
      {
        const AwW gate = exact_gu ? gsrc : search_w(wg.w, bkeep[0], threads);
        const AwW up = exact_gu ? usrc : search_w(wu.w, bkeep[1], threads);
        auto fill = [&](const AwRows& x, AwRef& ref, const fs::path& spill) {
          ref.open(x.rows(), dn.rows(), spill);
          mlp_out(x, gate, up, &dn, [&](int64_t t0, int64_t n, const float* y) { ref.put(t0, n, y); }, threads);
        };
        fill(xf, y_ref, io->spill_dir);
        if (screen) fill(AwRows{&xs}, ys_ref, {});
        if (!exact_gu) bkeep[0] = AwBf16(), bkeep[1] = AwBf16();
      }
      if (!exact_gu) wmean_gu = weight_mean({&wg.w, &wu.w});
      const AwRows xsr{&xs};
      s3 = awq_search_scales(x_mean, wmean_gu, p, loss_on(xf, y_ref), screen ? loss_on(xsr, ys_ref) : Loss{});
    }
    bkeep[0] = AwBf16(), bkeep[1] = AwBf16(), bkeep[2] = AwBf16();
    report(L, "post_attention_layernorm->gate,up", s3);
    wg.w = AwMat(), wu.w = AwMat();
    park_ffn.park(a.x_ffn, io->spill_dir);

    // 4. up_proj -> down_proj, inspected at down_proj's output.
    if (wd.w.size() == 0) wd = load(L, "ffn_down.weight");
    const auto release_x = [&] { park_down.park(a.x_down, io->spill_dir); };
    // Where the loss goes through XᵀX, down's clipping takes it too (divided by s4): held through
    // gate and up's turn, so their report order is kept.
    AwMat down_gram;
    const int64_t t_down = park_down.is_open() && a.x_down.size() == 0 ? park_down.rows() : a.x_down.rows();
    const AwqSearch s4 = search_linear(a.x_down, wd.w, ctx, release_x, park_down.is_open() ? &park_down : nullptr, exact_down,
                                       clip_full_gram(t_down, wd.cols, wd.rows) ? &down_gram : nullptr);
    report(L, "up_proj->down_proj", s4);
    end_search();
    wd.w = AwMat();
    park_down.park(a.x_down, io->spill_dir);

    // Folds, then clipping and quantization: gate and up on the norm's inputs, then down (its
    // columns times s4, its inputs divided by s4) on its own. Where the clipping goes through the
    // inputs' XᵀX it is formed from their parked file, and the inputs are not held again.
    load_gate_up();
    const std::vector<float> e3 = fold_norm("ffn_norm.weight", s3.scales);
    for (AwLinear* x : {&wg, &wu}) scale_cols(x->w, e3);
    awq_divide_rows(std::span<float>(wu.w.data(), static_cast<size_t>(wu.w.size())), wu.w.cols(), s4.scales);
    quantize_on_parked(park_ffn, a.x_ffn, e3, {{&wg, nullptr}, {&wu, nullptr}}, ctx);
    wg.w = AwMat(), wu.w = AwMat();  // quantized: down's turn has the memory
    wd = load(L, "ffn_down.weight");
    scale_cols(wd.w, s4.scales);
    quantize_on_parked(park_down, a.x_down, s4.scales, {{&wd, nullptr}}, ctx, &down_gram);
  }

  // up -> down: up's rows divided by s, down's columns (and its inputs x, where given) multiplied
  // (divided).
  static void fold_pair(AwMat& up, AwMat& down, AwMat* x, std::span<const float> s) {
    std::span<float> us(up.data(), static_cast<size_t>(up.size()));
    awq_divide_rows(us, up.cols(), s);
    scale_cols(down, s);
    if (x) unscale_cols(*x, s);
  }

  // v rounded to the stored dtype of blk.<layer>.suffix, as the output stores it.
  std::vector<float> stored_rounding(const char* suffix, std::vector<float> v) const {
    const QuantType stored = io->stored_type(suffix);
    for (float& x : v)
      x = stored == QuantType::BF16 ? bf16_to_f32(f32_to_bf16(x)) : stored == QuantType::F16 ? fp16_to_f32(f32_to_fp16(x)) : x;
    return v;
  }

  // The tokens a mixture of experts' loss is costed on, with the routing the capture saw: each
  // expert's rows of x (`at`: their indices in the set) and routing weights, each token's shared
  // expert gate, and the block's output with the original weights.
  struct MoeSet {
    const AwMat* all = nullptr;             // the capture's MLP inputs, when the set is every token
    AwMat own;                              // else the set's rows of them
    const AwMat& x() const { return all ? *all : own; }
    std::vector<std::vector<int64_t>> at;   // per expert: its tokens' indices in x
    std::vector<std::vector<float>> route;  // per expert: their routing weights
    std::vector<float> shared_gate;         // per token: sigmoid(gate . x) (a shared expert)
    AwMat ref;
  };

  // Rows `at` of x.
  static AwMat gather_rows(const AwMat& x, const std::vector<int64_t>& at) {
    AwMat r(static_cast<Eigen::Index>(at.size()), x.cols());
    for (size_t i = 0; i < at.size(); ++i) r.row(static_cast<Eigen::Index>(i)) = x.row(at[i]);
    return r;
  }

  // The mixture's output on `set`: each token's routing-weighted sum of its experts' MLPs (expert
  // e's gate, up and down filled by weights(e, g, u, d): one expert's at a time), plus the gated
  // shared MLP (sg, su, sd; none when null).
  using ExpertWeights = std::function<void(size_t, AwMat&, AwMat&, AwMat&)>;
  void moe_out(const MoeSet& set, const ExpertWeights& weights, const AwMat* sg, const AwMat* su, const AwMat* sd,
               AwMat& out, int threads) const {
    out = AwMat::Zero(set.x().rows(), set.x().cols());
    AwMat y, g, u, dn, xe;
    AwBf16 keep[3];
    for (size_t e = 0; e < set.at.size(); ++e) {
      if (set.at[e].empty()) continue;
      weights(e, g, u, dn);
      xe = gather_rows(set.x(), set.at[e]);
      const AwW d = search_w(dn, keep[2], threads);
      mlp_out(xe, search_w(g, keep[0], threads), search_w(u, keep[1], threads), &d, y, threads);
      for (size_t i = 0; i < set.at[e].size(); ++i) out.row(set.at[e][i]) += set.route[e][i] * y.row(static_cast<Eigen::Index>(i));
    }
    if (sg) {
      const AwW d = sd ? search_w(*sd, keep[2], threads) : AwW(*sg);
      mlp_out(set.x(), search_w(*sg, keep[0], threads), search_w(*su, keep[1], threads), sd ? &d : nullptr, y, threads);
      for (Eigen::Index t = 0; t < y.rows(); ++t) out.row(t) += set.shared_gate[static_cast<size_t>(t)] * y.row(t);
    }
  }

  // A mixture of experts (its router and shared expert gate stay float): post_attention_layernorm
  // -> the router, every expert's gate and up and the shared expert's, inspected at the mixture's
  // output with the capture's routing (the router takes the scales exactly, so its logits do not
  // move beyond its stored dtype's rounding); then each expert's up -> down on its routed tokens,
  // their rows weighted by the routing weights (the down projection's share of the output), and
  // the shared expert's up -> down on every token weighted by its gate. An expert no calibration
  // token reached is rounded on AutoAWQ's min-max grid, and a warning names it.
  void moe_step(AwActs& a, const Architecture& arch, const Context& ctx) {
    const int64_t L = io->layer;
    const int threads = ctx.thread_count();
    const AwqParams& p = cfg.params;
    const ModelConfig& mc = io->model->config();
    const int64_t E = mc.n_expert, d = mc.n_embd, T = a.x_ffn.rows();
    const bool mixtral = arch.moe == Architecture::MoeStyle::mixtral;
    if (static_cast<int64_t>(a.expert_rows.size()) != E) fail(Errc::invalid_model, "awq: block {} captured no routing", L);
    // Each expert's three matrices, as linears of their own (named and shaped here; their F32
    // values made from the model's merged tensors when needed, one expert's at a time).
    std::vector<AwLinear> eg(static_cast<size_t>(E)), eu(static_cast<size_t>(E)), ed(static_cast<size_t>(E));
    const auto& mi = detail::ModelAccess::impl(*io->model);
    const engine::Tensor* merged_tensor[3] = {};
    const std::pair<const char*, std::vector<AwLinear>*> merged[] = {
        {"ffn_gate_exps", &eg}, {"ffn_up_exps", &eu}, {"ffn_down_exps", &ed}};
    for (int m = 0; m < 3; ++m) {
      const auto& [role, list] = merged[m];
      const std::string suffix = std::string(role) + ".weight";
      const LinearInfo* li = io->model->find_linear(local(suffix.c_str()));
      if (!li) fail(Errc::invalid_model, "awq: the model has no blk.{}.{}", L, suffix);
      merged_tensor[m] = mi.linear_tensors[static_cast<size_t>(li - io->model->linears().data())];
      for (int64_t e = 0; e < E; ++e) {
        AwLinear& x = (*list)[static_cast<size_t>(e)];
        x.gguf = names::block_tensor(static_cast<int>(L), suffix.c_str());
        x.module = names::hf_expert_module(x.gguf, static_cast<int>(e), mixtral);
        x.rows = li->n_out;
        x.cols = li->n_in;
      }
    }
    // Expert e's matrix m (0 gate, 1 up, 2 down) as the checkpoint has it, in F32.
    auto expert_w = [&](int m, int64_t e) {
      const engine::Tensor v = engine::expert_view(*merged_tensor[m], e);
      AwMat w(v.ne[1], v.ne[0]);
      const engine::Exec one = engine::Exec::with_threads(1);
      parallel_for(v.ne[1], threads, 64, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) engine::dequantize_row(one, v, r, w.row(r).data());
      });
      return w;
    };
    const bool shared = arch.shared_expert;
    AwLinear sg, su, sd;
    if (shared) sg = load(L, "ffn_gate_shexp.weight"), su = load(L, "ffn_up_shexp.weight"), sd = load(L, "ffn_down_shexp.weight");
    const std::vector<float> router = io->model->tensor_f32(local("ffn_gate_inp.weight"));
    const std::vector<float> shexp_gate = shared ? io->model->tensor_f32(local("ffn_gate_inp_shexp.weight")) : std::vector<float>{};

    // Routing weights of the captured assignments: softmax over all the router's logits, the
    // token's chosen experts' probabilities, renormalised over them where the model does.
    AwMat probs;
    linear_out(a.x_ffn, Eigen::Map<const AwMat>(router.data(), E, d), probs, threads);
    std::vector<float> psum(static_cast<size_t>(T), 0.0f);
    for (int64_t t = 0; t < T; ++t) {
      auto row = probs.row(t);
      const float mx = row.maxCoeff();
      row = (row.array() - mx).exp().matrix();
      row /= row.sum();
    }
    if (mc.expert_weights_norm)
      for (int64_t e = 0; e < E; ++e)
        for (const int64_t t : a.expert_rows[static_cast<size_t>(e)]) psum[static_cast<size_t>(t)] += probs(t, e);
    auto route_of = [&](int64_t t, int64_t e) {
      return mc.expert_weights_norm ? probs(t, e) / std::max(psum[static_cast<size_t>(t)], 1e-30f) : probs(t, e);
    };
    std::vector<float> sgate;
    if (shared) {
      AwMat gl;
      linear_out(a.x_ffn, Eigen::Map<const AwMat>(shexp_gate.data(), 1, d), gl, threads);
      sgate.resize(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; ++t) sgate[static_cast<size_t>(t)] = 1.0f / (1.0f + std::exp(-gl(t, 0)));
    }
    const ExpertWeights original = [&](size_t e, AwMat& g, AwMat& u, AwMat& dn) {
      g = expert_w(0, static_cast<int64_t>(e)), u = expert_w(1, static_cast<int64_t>(e)), dn = expert_w(2, static_cast<int64_t>(e));
    };
    // The set of tokens `rows` (global, ascending; empty: every token, read in place).
    auto make_set = [&](const std::vector<int64_t>& rows) {
      MoeSet s;
      std::vector<int64_t> index(static_cast<size_t>(T), -1);
      if (rows.empty()) {
        s.all = &a.x_ffn;
        for (int64_t t = 0; t < T; ++t) index[static_cast<size_t>(t)] = t;
      } else {
        s.own = gather_rows(a.x_ffn, rows);
        for (size_t i = 0; i < rows.size(); ++i) index[static_cast<size_t>(rows[i])] = static_cast<int64_t>(i);
      }
      s.at.resize(static_cast<size_t>(E));
      s.route.resize(static_cast<size_t>(E));
      for (int64_t e = 0; e < E; ++e)
        for (const int64_t t : a.expert_rows[static_cast<size_t>(e)])
          if (index[static_cast<size_t>(t)] >= 0) {
            s.at[static_cast<size_t>(e)].push_back(index[static_cast<size_t>(t)]);
            s.route[static_cast<size_t>(e)].push_back(route_of(t, e));
          }
      if (shared && rows.empty()) s.shared_gate = sgate;
      else if (shared)
        for (const int64_t t : rows) s.shared_gate.push_back(sgate[static_cast<size_t>(t)]);
      moe_out(s, original, shared ? &sg.w : nullptr, shared ? &su.w : nullptr, shared ? &sd.w : nullptr, s.ref, threads);
      return s;
    };
    using Loss = std::function<double(std::span<const float>)>;

    // 3. post_attention_layernorm -> router, experts' gate and up (and the shared expert's).
    AwqSearch s3;
    {
      const MoeSet full = make_set({});
      const bool screen = p.search_tokens > 0 && 2 * p.search_tokens <= T;
      MoeSet part;
      if (screen) {
        const int64_t step = std::max<int64_t>(1, T / p.search_tokens);
        std::vector<int64_t> rows;
        for (int64_t t = 0; t < T && static_cast<int64_t>(rows.size()) < p.search_tokens; t += step) rows.push_back(t);
        part = make_set(rows);
      }
      auto loss_on = [&](const MoeSet& set) -> Loss {
        return [&](std::span<const float> s) {
          ctx.check_cancelled();
          AwMat sgq, suq, out;
          if (shared) sgq = scaled_fake(sg.w, s, ctx), suq = scaled_fake(su.w, s, ctx);
          moe_out(set,
                  [&](size_t e, AwMat& g, AwMat& u, AwMat& dn) {
                    original(e, g, u, dn);
                    g = scaled_fake(g, s, ctx), u = scaled_fake(u, s, ctx);
                  },
                  shared ? &sgq : nullptr, shared ? &suq : nullptr, shared ? &sd.w : nullptr, out, threads);
          return mse(out, set.ref);
        };
      };
      std::vector<double> acc(static_cast<size_t>(d), 0.0);  // weight_mean over every gate and up
      int64_t wrows = 0;
      for (int64_t e = 0; e < E; ++e) wrows += weight_mean_add(expert_w(0, e), acc), wrows += weight_mean_add(expert_w(1, e), acc);
      if (shared) wrows += weight_mean_add(sg.w, acc), wrows += weight_mean_add(su.w, acc);
      s3 = awq_search_scales(col_abs_mean(a.x_ffn), weight_mean_of(acc, wrows), p, loss_on(full),
                             screen ? loss_on(part) : Loss{});
    }
    report(L, "post_attention_layernorm->router,experts.gate,up", s3);

    // 4. Each expert's up -> down (and the shared expert's), inspected at its down projection's
    // output, each token's row weighted by its routing weight (its gate). An expert's down input,
    // act(x gᵀ) * (x uᵀ) on its tokens, is recomputed from the MLP inputs with its gate and up
    // (`weight(m, e)`) when needed, one expert's at a time; after the folds it is the input divided
    // by the expert's scales.
    auto down_input = [&](int64_t e, const std::function<AwMat(int, int64_t)>& weight) {
      const auto& rows = a.expert_rows[static_cast<size_t>(e)];
      AwMat y;
      mlp_out(gather_rows(a.x_ffn, rows), weight(0, e), weight(1, e), nullptr, y, threads);
      for (size_t i = 0; i < rows.size(); ++i) y.row(static_cast<Eigen::Index>(i)) *= route_of(rows[i], e);
      return y;
    };
    std::vector<AwqSearch> s4(static_cast<size_t>(E));
    std::vector<int> unrouted;
    for (int64_t e = 0; e < E; ++e) {
      if (a.expert_rows[static_cast<size_t>(e)].empty()) {
        unrouted.push_back(static_cast<int>(e));
        continue;
      }
      s4[static_cast<size_t>(e)] = search_linear(down_input(e, expert_w), expert_w(2, e), ctx);
      report(L, fmt::format("experts.{}.up->down", e).c_str(), s4[static_cast<size_t>(e)]);
    }
    AwqSearch s5;
    if (shared) {
      for (int64_t t = 0; t < T; ++t) a.x_down.row(t) *= sgate[static_cast<size_t>(t)];
      s5 = search_linear(a.x_down, sd.w, ctx);
      report(L, "shared_expert.up->down", s5);
    }
    end_search();
    if (!unrouted.empty()) {
      const std::string w = fmt::format("block {}: the calibration data routed no tokens to expert(s) {}; their matrices "
                                        "were rounded to nearest (AWQ's grid, no search)", L, fmt::join(unrouted, ", "));
      ctx.progress_sink().message("warning: " + w);
      warnings.push_back(w);
    }

    // Folds: the norm, the router's and the shared gate's columns (float), every expert's and
    // the shared expert's gate and up; each up -> down pair.
    const std::vector<float> e3 = fold_norm("ffn_norm.weight", s3.scales);
    auto fold_float = [&](const char* suffix, std::vector<float> v) {
      const size_t n = e3.size();
      for (size_t i = 0; i < v.size(); ++i) v[i] *= e3[i % n];
      io->set_float(suffix, stored_rounding(suffix, std::move(v)));
    };
    fold_float("ffn_gate_inp.weight", router);
    if (shared) fold_float("ffn_gate_inp_shexp.weight", shexp_gate);
    // An expert's folded matrix m: its gate and up columns times the norm's scales, then (a routed
    // expert) its up rows divided by its own scales and its down columns multiplied.
    auto folded = [&](int m, int64_t e) {
      AwMat w = expert_w(m, e);
      if (m < 2) scale_cols(w, e3);
      if (a.expert_rows[static_cast<size_t>(e)].empty()) return w;
      std::span<const float> s = s4[static_cast<size_t>(e)].scales;
      if (m == 1) awq_divide_rows(std::span<float>(w.data(), static_cast<size_t>(w.size())), w.cols(), s);
      if (m == 2) scale_cols(w, s);
      return w;
    };
    if (shared) scale_cols(sg.w, e3), scale_cols(su.w, e3);
    unscale_cols(a.x_ffn, e3);
    if (shared) fold_pair(su.w, sd.w, &a.x_down, s5.scales);

    // Clipping and quantization, role-major as the checkpoint lists them (gate, up, down of every
    // expert), each expert on its own tokens; then the shared expert.
    for (const int role : {0, 1, 2}) {
      std::vector<AwLinear>& ls = role == 0 ? eg : role == 1 ? eu : ed;
      for (int64_t e = 0; e < E; ++e) {
        ctx.check_cancelled();
        const auto& rows = a.expert_rows[static_cast<size_t>(e)];
        AwLinear& l = ls[static_cast<size_t>(e)];
        l.w = folded(role, e);
        if (rows.empty()) {
          const AwMat none(0, l.cols);
          quantize_linear(l, AwRows{&none}, nullptr, ctx);
        } else {
          AwMat keep;
          const AwMat x = role < 2 ? gather_rows(a.x_ffn, rows) : down_input(e, folded);
          quantize_on(clip_tokens(x, keep), {{&l, nullptr}}, fit(), ctx);
        }
        l.w.resize(0, 0);
      }
    }
    if (shared) {
      AwMat keep[2];
      quantize_on(clip_tokens(a.x_ffn, keep[0]), {{&sg, nullptr}, {&su, nullptr}}, fit(), ctx);
      quantize_on(clip_tokens(a.x_down, keep[1]), {{&sd, nullptr}}, fit(), ctx);
    }
  }
};

// Block io.layer's product inputs for every chunk (the blocks before it already quantized in
// the model that feeds it).
AwActs aw_capture(AwBlockIo& io, const std::vector<int64_t>& lengths, int64_t n_ctx,
                  const std::function<void(size_t, Session&)>& eval_chunk, const Context& ctx) {
  Model& model = *io.model;
  const ModelConfig& mc = model.config();
  int64_t total = 0;
  for (const int64_t n : lengths) total += n;
  AwActs a;
  const bool moe = mc.n_expert > 0;
  // Every input straight to its parked file where the run has a spill directory.
  if (!a.attn_parked.open(io.spill_dir, total, mc.n_embd)) a.x_attn.resize(total, mc.n_embd);
  if (!a.o_parked.open(io.spill_dir, total, mc.n_head * mc.head_dim)) a.x_o.resize(total, mc.n_head * mc.head_dim);
  const int64_t down_cols = moe ? mc.n_ff_shexp : mc.n_ff;
  if (!a.ffn_parked.open(io.spill_dir, total, mc.n_embd)) a.x_ffn.resize(total, mc.n_embd);
  if (down_cols == 0 || !a.down_parked.open(io.spill_dir, total, down_cols)) a.x_down.resize(total, down_cols);
  if (moe) a.expert_rows.resize(static_cast<size_t>(mc.n_expert));
  SessionOptions so;
  so.n_ctx = n_ctx;
  so.hook_inputs_only = true;
  Session session(model, so, ctx);
  int64_t row0 = 0;
  bool non_finite = false;
  const bool fused_up = architecture_of(mc, "awq").fused_gate_up;
  bool routed = false;  // this chunk passed the block's router
  session.set_linear_hook([&](const LinearEvent& ev) {
    const LinearInfo& l = *ev.linear;
    if (l.layer != io.model_layer) {
      if (routed) throw AwStopForward{};  // past a mixture of experts: nothing more to keep
      return;
    }
    if (ev.expert >= 0) {  // the tokens routed to the expert
      if (l.role == "ffn_gate_exps")
        for (int64_t i = 0; i < ev.n_tokens; ++i) a.expert_rows[static_cast<size_t>(ev.expert)].push_back(row0 + ev.positions[i]);
      return;
    }
    if (l.role == "ffn_gate_inp") routed = true;
    // each input once, from the first linear reading it (fused: attn_qkv, ffn_up)
    AwMat* dst = l.role == "attn_q" || l.role == "attn_qkv"   ? &a.x_attn
                 : l.role == "attn_output"                    ? &a.x_o
                 : l.role == "ffn_gate" || (l.role == "ffn_up" && fused_up) || l.role == "ffn_gate_inp" ? &a.x_ffn
                 : l.role == "ffn_down" || l.role == "ffn_down_shexp" ? &a.x_down
                                                              : nullptr;
    if (dst) {
      Eigen::Map<const AwMat> X(ev.input, ev.n_tokens, l.n_in);
      if (!X.allFinite()) non_finite = true;
      AwParked* parked = dst == &a.x_attn  ? &a.attn_parked
                         : dst == &a.x_o    ? &a.o_parked
                         : dst == &a.x_ffn  ? &a.ffn_parked
                         : dst == &a.x_down ? &a.down_parked
                                            : nullptr;
      if (parked && parked->is_open()) parked->put_rows(row0, ev.input, ev.n_tokens);
      else dst->middleRows(row0, ev.n_tokens) = X;
    }
    if (l.role == "ffn_down") throw AwStopForward{};
  });
  for (size_t i = 0; i < lengths.size(); ++i) {
    ctx.check_cancelled();
    session.clear();
    routed = false;
    try {
      eval_chunk(i, session);
    } catch (const AwStopForward&) {
    }
    row0 += lengths[i];
  }
  if (non_finite)
    fail(Errc::smoothquant_failed, "awq: block {} sees NaN or infinite activations on the calibration data; nothing "
         "was written", io.layer);
  return a;
}

struct AwBlockRunner::Step : AwBlockStep {
  using AwBlockStep::AwBlockStep;
};

AwBlockRunner::AwBlockRunner(const AwqParams& params, int scale_storage, std::vector<int64_t> lengths,
                             AwqResult& summary, std::vector<std::string>& warnings, const Context& ctx)
    : step_(std::make_unique<Step>(params, summary, warnings)) {
  step_->storage = scale_storage;
  step_->lengths = std::move(lengths);
  const engine::Exec ex = engine::Exec::from(ctx);
  step_->gemm = ex.ops.gemm;
  step_->products = ex.ops.products;
  step_->release_buffers = ex.ops.release_buffers;
  step_->silu_mul = ex.ops.silu_mul;
  step_->softmax_row = ex.ops.softmax_row;
  step_->gelu_tanh_mul = ex.ops.gelu_tanh_mul;
  step_->soft_cap = ex.ops.soft_cap;
  step_->grid_error = ex.ops.grid_error;
}
AwBlockRunner::~AwBlockRunner() = default;

void AwBlockRunner::run(AwBlockIo& io, int64_t n_ctx, const std::function<void(size_t, Session&)>& eval_chunk,
                        double& calib_seconds, const Context& ctx) {
  const auto tc = std::chrono::steady_clock::now();
  AwActs a = aw_capture(io, step_->lengths, n_ctx, eval_chunk, ctx);
  // The block's weights now live in the step's own copies, each while it is read: the model's are
  // freed where the caller reads them again from the checkpoint.
  if (io.read_linear)
    for (const std::string& name : io.replaced_linears) detail::ModelAccess::release_weight(*io.model, name);
  step_->n_ctx = n_ctx;
  calib_seconds += aw_seconds_since(tc);
  step_->run(io, a, ctx);
}

GptqConfig awq_gptq_config(const AwqConfig& c) {
  GptqConfig g;
  g.params.bits = c.params.bits;
  g.params.group_size = c.params.group_size;
  g.params.sym = false;
  g.layout = c.layout;
  g.calibration_samples = c.calibration_samples;
  g.ctx = c.ctx;
  g.calibration_data = c.calibration_data;
  g.checkpoint_dir = c.checkpoint_dir;
  g.resume = c.resume;
  g.bf16_activations = false;  // AWQ captures its own activations in float (search_bf16 is its search's)
  return g;
}

AwqParams awq_resolved(const AwqParams& p, const ModelSource& s) {
  AwqParams r = p;
  if (!r.search_bf16) r.search_bf16 = quant_impl::linears_are_bf16(s);
  return r;
}

const AwqConfig& awq_checked(const ModelSource& s, const AwqConfig& c) {
  validate(c.params);
  if (s.is_gguf())
    fail(Errc::invalid_argument, "awq: {} is a GGUF file; quantize a Hugging Face checkpoint (config.json and "
         "safetensors)", s.path().string());
  for (const ModelTensor& t : s.tensors()) {
    const int b = names::block_of(t.name);
    // the quantized linears (a mixture's 3-D expert tensors too; its routers stay float)
    if (b < 0 || t.ne.size() < 2 || t.ne.size() > 3 || !t.name.ends_with(".weight") ||
        t.name.find("norm") != std::string::npos || t.name.find("gate_inp") != std::string::npos)
      continue;
    if (t.row_length() % c.params.group_size != 0)
      fail(Errc::invalid_argument, "awq: group size {} does not divide the row length {} of {}", c.params.group_size,
           t.row_length(), t.source_name.empty() ? t.name : t.source_name);
  }
  if (c.layout == GptqLayout::gptq_v2)
    fail(Errc::invalid_argument, "awq: layouts are awq, compressed-tensors and gptq (asymmetric, v1 zeros)");
  if (c.layout == GptqLayout::awq && c.params.bits != 4)
    fail(Errc::invalid_argument, "awq: AutoAWQ's GEMM layout stores 4-bit codes only, not {}-bit (use --layout "
         "compressed-tensors or gptq for 3-bit)", c.params.bits);
  if (c.calibration_samples < 1)
    fail(Errc::invalid_argument, "awq: calibration samples must be positive, got {}", c.calibration_samples);
  if (c.ctx < 2) fail(Errc::invalid_argument, "awq: ctx must be at least 2, got {}", c.ctx);
  const std::string& arch = s.config().architecture;
  if (arch != "llama" && arch != "qwen2" && arch != "qwen3" && arch != "gemma2" && arch != "gemma3" && arch != "phi3" &&
      arch != "qwen2moe" && arch != "qwen3moe")
    fail(Errc::invalid_model, "awq: model_type '{}' is not supported (llama, mistral, mixtral, qwen2, qwen2_moe, qwen3, "
         "qwen3_moe, gemma2, gemma3, phi3)",
         s.config().model_type.empty() ? arch : s.config().model_type);
  return c;
}

}  // namespace awq_impl

struct AwqQuantizer::Impl {
  const ModelSource& src;
  AwqConfig cfg;
  mutable GptqQuantizer gq;
  std::vector<std::vector<int32_t>> chunks;
  bool have_data = false, done = false;
  int storage = 16;
  AwqResult summary;
  GptqResult stats;

  Impl(const ModelSource& s, const AwqConfig& c) : src(s), cfg(awq_checked(s, c)), gq(s, awq_gptq_config(c)) {
    cfg.params = awq_resolved(cfg.params, s);
    summary.search_bf16 = *cfg.params.search_bf16;
    if (cfg.layout == GptqLayout::compressed_tensors) {
      for (const LinearInfo& l : gq.model().linears())
        if (l.layer >= 0) storage = l.type == QuantType::BF16 ? 17 : l.type == QuantType::F16 ? 16 : 0;
    }
    summary.attention = "attention output (recomputed, checked against the engine)";
  }

  void set_calibration(const CalibrationData& data) {
    stats.calibration_source = data.source;
    const int32_t bos = gq.model().add_bos() ? gq.model().bos_token() : -1;
    chunks = quant_impl::calibration_chunks(src, data, cfg.ctx, cfg.calibration_samples, bos, stats.warnings);
    have_data = true;
  }

  void run(const Context& ctx) {
    Progress& progress = ctx.progress_sink();
    const auto t0 = std::chrono::steady_clock::now();
    const ModelConfig& mc = gq.model().config();
    if (!have_data) set_calibration(quant_impl::calibration_text(cfg.calibration_data, progress));
    int64_t tokens = 0;
    for (const auto& ch : chunks) tokens += static_cast<int64_t>(ch.size());
    progress.message(fmt::format("AWQ: {} blocks, {} chunks of {} tokens from {}", mc.n_layer, chunks.size(), cfg.ctx,
                                 stats.calibration_source));
    double calib = 0;
    std::vector<int64_t> lengths;
    for (const auto& ch : chunks) lengths.push_back(static_cast<int64_t>(ch.size()));
    AwBlockRunner runner(cfg.params, storage, lengths, summary, stats.warnings, ctx);
    Model& model = gq.model();
    AwBlockIo io;
    io.model = &model;
    io.stored_type = [&](const char* suffix) { return src.at(names::block_tensor(io.model_layer, suffix)).checkpoint_type(); };
    io.has = [&](const char* suffix) { return src.find(names::block_tensor(io.model_layer, suffix)) != nullptr; };
    io.set_float = [&](const char* suffix, std::vector<float> v) {
      gq.set_float_tensor(names::block_tensor(io.model_layer, suffix), std::move(v));
    };
    // A block's matrices go into the model once its step is done (the step reads the float
    // weights, a mixture's merged expert tensors included, until then), in the order given.
    std::vector<std::tuple<std::string, GptqMatrix, GptqLayerReport>> block_mats;
    io.put_matrix = [&](const std::string& module, GptqMatrix q, const GptqLayerReport& rep) {
      block_mats.emplace_back(module, std::move(q), rep);
    };
    progress.update("AWQ", 0, mc.n_layer, "blocks");
    for (int64_t L = 0; L < mc.n_layer; ++L) {
      ctx.check_cancelled();
      io.layer = L;
      io.model_layer = static_cast<int>(L);
      runner.run(io, cfg.ctx, [&](size_t i, Session& s) { s.eval(chunks[i], static_cast<int64_t>(chunks[i].size())); },
                 calib, ctx);
      for (auto& [module, q, rep] : block_mats) gq.set_matrix(module, std::move(q), rep);
      block_mats.clear();
      progress.update("AWQ", L + 1, mc.n_layer, "blocks");
    }
    progress.finish("AWQ");
    stats.chunks = static_cast<int64_t>(chunks.size());
    stats.ctx = cfg.ctx;
    stats.tokens = tokens;
    stats.calibration_seconds = calib;
    stats.quantize_seconds = aw_seconds_since(t0) - calib;
    summary.search_seconds = stats.quantize_seconds;
    gq.finish_external(stats);
    summary.gptq = gq.summary();
    done = true;
  }
};

AwqQuantizer::AwqQuantizer(const ModelSource& source, AwqConfig config)
    : impl_(std::make_unique<Impl>(source, config)) {}
AwqQuantizer::~AwqQuantizer() = default;
void AwqQuantizer::set_calibration(const CalibrationData& data) { impl_->set_calibration(data); }
void AwqQuantizer::run(const Context& ctx) { impl_->run(ctx); }
AwqResult AwqQuantizer::write(const fs::path& dir, const Context& ctx) {
  if (!impl_->done) fail(Errc::invalid_argument, "awq: write() before run()");
  impl_->summary.gptq = impl_->gq.write(dir, ctx);
  return impl_->summary;
}
const GptqMatrix& AwqQuantizer::matrix(const std::string& module) const { return impl_->gq.matrix(module); }
Model& AwqQuantizer::model() { return impl_->gq.model(); }
const AwqResult& AwqQuantizer::summary() const { return impl_->summary; }

AwqResult awq_model(const fs::path& model, fs::path out, const AwqConfig& config, const Context& ctx) {
  validate(config.params);
  auto source = ModelSource::open(model);
  if (out.empty()) out = awq_default_output(model, config);
  awq_checked(*source, config);
  if (gptq_streams(*source)) {
    source.reset();
    return awq_stream(model, std::move(out), config, ctx);
  }
  if (!config.checkpoint_dir.empty())
    fail(Errc::invalid_argument, "awq: checkpoints are kept for streamed models only ({} is quantized whole)",
         model.string());
  AwqQuantizer q(*source, config);
  q.run(ctx);
  return q.write(out, ctx);
}

}  // namespace lq
