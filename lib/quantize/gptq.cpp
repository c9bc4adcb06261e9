// GPTQ (gptq.hpp): the per-matrix algorithm (Hessian dampening with automatic raises, Cholesky
// of the inverse, lazy-batch column walk with error feedback, act-order with static or
// position groups, round to nearest as the baseline), the block-by-block calibration through the
// engine's linear hooks, and the streamed output directory in the compressed-tensors
// pack-quantized or AutoGPTQ / GPTQModel layout. Must not parse flags or print: progress goes to
// the Context's sink.
//
// Sequential calibration: for block L every calibration chunk runs through the model whose
// blocks < L hold their dequantized weights; the hook stops the forward pass (an exception
// caught here) once block L's last linear has been seen, so block L costs (L + 1) / n_layer of a
// full pass and the whole model about (n_layer + 1) / 2 passes. Hessians: one per distinct
// input (q/k/v share one, gate/up another), 4 per block, accumulated as sums of xᵀx. A mixture
// of experts is calibrated by the streamed runner (gptq_stream.cpp, each expert on its routed
// tokens) with this quantizer's walk as its matrix hook, into the model held here.
#include <lq/gptq.hpp>

#include <lq/calibration.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/threads.hpp>
#include <lq/tokenizer.hpp>

#include "core/fail.hpp"
#include "core/float_cast.hpp"
#include "core/output_dir.hpp"
#include "core/half.hpp"
#include "formats/compressed_tensors.hpp"
#include "formats/gptq_pack.hpp"
#include "formats/safetensors.hpp"
#include "formats/safetensors_writer.hpp"
#include "model/architecture.hpp"
#include "model/tensor_names.hpp"
#include "engine/impl.hpp"
#include "quantize/calibration_chunks.hpp"
#include "quantize/gptq_stream.hpp"
#include "quantize/gptq_walk.hpp"
#include "quantize/gptq_write.hpp"
#include "quantize/smoothquant_stats.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>

namespace fs = std::filesystem;

namespace lq {

void validate(const GptqParams& p) {
  if (p.bits != 2 && p.bits != 3 && p.bits != 4 && p.bits != 8)
    fail(Errc::invalid_argument, "gptq: bits must be 2, 3, 4 or 8, got {}", p.bits);
  if (p.group_size == 0 || p.group_size < -1)
    fail(Errc::invalid_argument, "gptq: group size must be positive or -1 (per channel), got {}", p.group_size);
  if (!(p.damp > 0 && p.damp < 100)) fail(Errc::invalid_argument, "gptq: damp must be in (0, 100), got {}", p.damp);
  if (p.block_size < 1) fail(Errc::invalid_argument, "gptq: block size must be positive, got {}", p.block_size);
  if (p.max_damp_raises < 0 || p.max_damp_raises > 8)
    fail(Errc::invalid_argument, "gptq: damp raises must be in [0, 8], got {}", p.max_damp_raises);
  if (p.scale_search < 0 || p.scale_search > 99)
    fail(Errc::invalid_argument, "gptq: scale search steps must be in [0, 99], got {}", p.scale_search);
  if (p.scale_storage != 0 && p.scale_storage != 16 && p.scale_storage != 17)
    fail(Errc::invalid_argument, "gptq: scale storage must be 0, 16 or 17, got {}", p.scale_storage);
}

std::vector<float> GptqMatrix::dequantize() const {
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const size_t g = static_cast<size_t>(r * groups + g_idx[static_cast<size_t>(c)]);
      w[static_cast<size_t>(r * cols + c)] =
          scales[g] * static_cast<float>(static_cast<int32_t>(codes[static_cast<size_t>(r * cols + c)]) - zeros[g]);
    }
  return w;
}

namespace gptq_impl {


inline float gp_round_scale(float s, int storage) {
  if (storage == 16) return fp16_to_f32(f32_to_fp16(s));
  if (storage == 17) return bf16_to_f32(f32_to_bf16(s));
  return s;
}

// Min-max scale and zero of n values (AutoGPTQ's Quantizer.find_params, which is also
// compressed-tensors' grid: symmetric scale = max|x| / ((2^b - 1) / 2) with zero 2^(b-1)).
inline void gp_params(const float* x, int64_t n, int bits, bool sym, int storage, float& scale, int32_t& zero) {
  const int maxq = (1 << bits) - 1;
  float lo = 0, hi = 0;
  for (int64_t i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (sym) {
    hi = std::max(-lo, hi);
    lo = -hi;
  }
  if (lo == 0 && hi == 0) lo = -1, hi = 1;
  float s = gp_round_scale((hi - lo) / static_cast<float>(maxq), storage);
  if (!(s > 0) || !std::isfinite(s)) s = gp_round_scale(std::numeric_limits<float>::min() * 16, storage);
  scale = s;
  zero = sym ? (1 << (bits - 1)) : static_cast<int32_t>(std::clamp(std::nearbyint(-lo / s), 0.0f, static_cast<float>(maxq)));
}

inline int32_t gp_code(float w, float s, int32_t z, int maxq) {
  const float q = round_half_even_clamped(w / s) + static_cast<float>(z);  // ties to even, as torch.round
  return static_cast<int32_t>(std::clamp(q, 0.0f, static_cast<float>(maxq)));
}

// Importance-weighted scale search (GptqParams::scale_search): the min-max range shrunk by
// 1 - k / 100 for k = 0..steps (symmetric: max|x|; asymmetric: both ends), each candidate's scale
// rounded to its storage, keeping the one with the least sum_i imp_i (x_i - q(x_i))^2 (imp:
// 1 / U_ii², see gptq_quantize_matrix). Min-max itself (k = 0) wins ties, so the result is never
// worse than gp_params' on that measure. `grid_error` (the back-end's EngineOps::grid_error, may be
// null) computes each candidate's errors: unclamped it gives exactly gp_code's values, negated,
// and the sum below keeps its order, so the result does not depend on the kernel.
using GpGridErrorFn = void (*)(int64_t, const float*, float, float, float, float, float, float*);
inline void gp_params_search(const float* x, const float* imp, int64_t n, int bits, bool sym, int storage, int steps,
                             float& scale, int32_t& zero, GpGridErrorFn grid_error = nullptr) {
  gp_params(x, n, bits, sym, storage, scale, zero);
  if (steps <= 0) return;
  const int maxq = (1 << bits) - 1;
  float lo0 = 0, hi0 = 0;
  for (int64_t i = 0; i < n; ++i) {
    lo0 = std::min(lo0, x[i]);
    hi0 = std::max(hi0, x[i]);
  }
  if (sym) {
    hi0 = std::max(-lo0, hi0);
    lo0 = -hi0;
  }
  if (lo0 == 0 && hi0 == 0) return;
  thread_local std::vector<float> dbuf;
  auto err_of = [&](float s, int32_t z) {
    double e = 0;
    if (grid_error) {
      dbuf.resize(static_cast<size_t>(n));
      constexpr float kInf = std::numeric_limits<float>::infinity();
      grid_error(n, x, -kInf, kInf, s, static_cast<float>(z), static_cast<float>(maxq), dbuf.data());
      for (int64_t i = 0; i < n; ++i) {
        const float d = dbuf[static_cast<size_t>(i)];
        e += static_cast<double>(imp[i]) * d * d;
      }
      return e;
    }
    for (int64_t i = 0; i < n; ++i) {
      const float d = x[i] - s * static_cast<float>(gp_code(x[i], s, z, maxq) - z);
      e += static_cast<double>(imp[i]) * d * d;
    }
    return e;
  };
  double best = err_of(scale, zero);
  for (int k = 1; k <= steps; ++k) {
    const float f = 1.0f - static_cast<float>(k) / 100.0f;
    const float lo = lo0 * f, hi = hi0 * f;
    const float s = gp_round_scale((hi - lo) / static_cast<float>(maxq), storage);
    if (!(s > 0) || !std::isfinite(s)) continue;
    const int32_t z =
        sym ? (1 << (bits - 1)) : static_cast<int32_t>(std::clamp(std::nearbyint(-lo / s), 0.0f, static_cast<float>(maxq)));
    const double e = err_of(s, z);
    if (e < best) best = e, scale = s, zero = z;
  }
}

// In-place blocked lower Cholesky (A = L Lᵀ, L in A's lower triangle; the strict upper triangle
// is read and written by neither, so it still holds the matrix after a failure) and in-place
// inverse of that L, on the threads. Row stripes of kStripe rows are the
// unit of work: the stripes, not the thread count, fix every sum's order, so the factor is the same
// for any thread count.
constexpr int64_t kStripe = 128;

bool gp_cholesky_inplace(RowRef A, int threads, GpGemmFn gemm) {
  const int64_t n = A.rows();
  RowMat N;
  for (int64_t k = 0; k < n; k += kStripe) {
    const int64_t b = std::min(kStripe, n - k), r = n - k - b;
    auto A11 = A.block(k, k, b, b);
    Eigen::LLT<Eigen::Ref<RowMat>> llt(A11);
    if (llt.info() != Eigen::Success) return false;
    if (r == 0) break;
    const int64_t stripes = (r + kStripe - 1) / kStripe;
    // A21 <- A21 L11^-T, then the trailing lower triangle A22 -= A21 A21ᵀ, stripe by stripe.
    parallel_for(stripes, threads, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t i0 = s * kStripe, h = std::min(kStripe, r - i0);
        auto rows = A.block(k + b + i0, k, h, b);
        A11.triangularView<Eigen::Lower>().transpose().solveInPlace<Eigen::OnTheRight>(rows);
      }
    });
    // On the back-end's GEMM (C += A·Bᵀ): A = -A21's stripe, B = A21's rows; the diagonal block
    // through a scratch block, so nothing above the diagonal is written.
    N = -A.block(k + b, k, r, b);
    const float* a21 = A.data() + (k + b) * n + k;
    parallel_for(stripes, threads, 1, [&](int64_t s0, int64_t s1) {
      RowMat T(kStripe, kStripe);
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t i0 = s * kStripe, h = std::min(kStripe, r - i0);
        float* c = A.data() + (k + b + i0) * n + (k + b);
        if (i0 > 0) gemm(detail::GemmArgs{h, i0, b, N.data() + i0 * b, b, a21, QuantType::F32, n, c, n, true});
        gemm(detail::GemmArgs{h, h, b, N.data() + i0 * b, b, a21 + i0 * n, QuantType::F32, n, T.data(), kStripe, false});
        for (int64_t ii = 0; ii < h; ++ii)
          for (int64_t jj = 0; jj <= ii; ++jj) c[ii * n + i0 + jj] += T(ii, jj);
      }
    });
  }
  return true;
}

void gp_lower_inverse_inplace(RowRef A, int threads, GpGemmFn gemm) {
  const int64_t n = A.rows();
  RowMat T, Tn;
  for (int64_t j = ((n - 1) / kStripe) * kStripe; j >= 0; j -= kStripe) {
    const int64_t b = std::min(kStripe, n - j), r = n - j - b;
    const RowMat X11 = A.block(j, j, b, b).triangularView<Eigen::Lower>().solve(RowMat::Identity(b, b));
    if (r > 0) {
      // X21 = -X22 (A21 X11), X22 (already inverted) read through its lower triangle only.
      T.noalias() = A.block(j + b, j, r, b) * X11.triangularView<Eigen::Lower>();
      Tn = -T.transpose();  // b x r: the GEMM's B operand (C += A·Bᵀ)
      const int64_t stripes = (r + kStripe - 1) / kStripe;
      parallel_for(stripes, threads, 1, [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0; s < s1; ++s) {
          const int64_t i0 = s * kStripe, h = std::min(kStripe, r - i0);
          auto out = A.block(j + b + i0, j, h, b);
          out.noalias() = -(A.block(j + b + i0, j + b + i0, h, h).triangularView<Eigen::Lower>() * T.middleRows(i0, h));
          if (i0 > 0)
            gemm(detail::GemmArgs{h, b, i0, A.data() + (j + b + i0) * n + (j + b), n, Tn.data(), QuantType::F32, r,
                                  A.data() + (j + b + i0) * n + j, n, true});
        }
      });
    }
    A.block(j, j, b, b).triangularView<Eigen::Lower>() = X11;
  }
}

// The upper Cholesky factor of (H + λI)^-1 in A's own storage, in float (as GPTQ's reference
// factors it), with no n x n matrix beside A (an 8192-column Hessian is 256 MB): with P the
// reversal of the indices, P(H + λI)P = L Lᵀ gives (H + λI)^-1 = UᵀU for U = P L^-1 P, upper
// triangular with a positive diagonal, so U is that Cholesky factor. P·P is the reversal of A's
// row-major storage. The factor and its inverse write only the lower triangle, so after a failed
// attempt H is mirrored back from the strict upper one (its diagonal kept aside) and λ raised x10.
bool gp_inverse_factor(RowRef A, double damp0, int max_raises, double& damp_used, int& raises, int threads,
                       GpGemmFn gemm) {
  const int64_t n = A.rows();
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += A(i, i);
  mean /= static_cast<double>(n);
  std::reverse(A.data(), A.data() + n * n);
  std::vector<float> diag(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) diag[static_cast<size_t>(i)] = A(i, i);
  double damp = damp0;
  for (raises = 0; raises <= max_raises; ++raises, damp *= 10) {
    if (raises > 0)
      for (int64_t i = 1; i < n; ++i)
        for (int64_t j = 0; j < i; ++j) A(i, j) = A(j, i);
    for (int64_t i = 0; i < n; ++i) A(i, i) = diag[static_cast<size_t>(i)] + static_cast<float>(damp * mean);
    if (!gp_cholesky_inplace(A, threads, gemm)) continue;
    gp_lower_inverse_inplace(A, threads, gemm);
    bool ok = true;
    for (int64_t i = 0; i < n && ok; ++i) {
      const float* row = A.row(i).data();
      ok = row[i] > 0;
      for (int64_t j = 0; j <= i && ok; ++j) ok = std::isfinite(row[j]);
    }
    if (!ok) continue;
    std::reverse(A.data(), A.data() + n * n);
    for (int64_t i = 1; i < n; ++i) std::fill(A.row(i).data(), A.row(i).data() + i, 0.0f);
    damp_used = damp;
    return true;
  }
  raises = max_raises;
  return false;
}

}  // namespace gptq_impl

using namespace gptq_impl;

namespace gptq_impl {

// gptq_quantize_matrix on H at h, or on `own` (then h is own's data), whose storage then becomes
// the factor: no second cols x cols matrix. With w_own (then w is its data) the weights' own
// storage becomes the walk's matrix (its rows permuted in place) and is released at the end: no
// second rows x cols matrix either.
GptqMatrix gp_quantize(const float* w, int64_t rows, int64_t cols, const float* h, RowMat* own, const GptqParams& p,
                       const Context& ctx, std::vector<float>* w_own = nullptr) {
  validate(p);
  if (rows < 1 || cols < 1) fail(Errc::invalid_argument, "gptq: empty matrix ({} x {})", rows, cols);
  const int64_t g = p.group_size > 0 ? p.group_size : cols;
  if (cols % g != 0)
    fail(Errc::invalid_argument, "gptq: group size {} does not divide the row length {}", p.group_size, cols);
  if (!p.rtn && !h) fail(Errc::invalid_argument, "gptq: no Hessian given (only round to nearest runs without one)");
  const int bits = p.bits, maxq = (1 << bits) - 1;
  const bool sym = p.sym;
  const int storage = p.scale_storage;
  GptqMatrix m;
  m.rows = rows, m.cols = cols, m.bits = bits, m.groups = cols / g;
  const int64_t G = m.groups;
  m.codes.assign(static_cast<size_t>(rows * cols), 0);
  m.scales.assign(static_cast<size_t>(rows * G), 0.0f);
  m.zeros.assign(static_cast<size_t>(rows * G), 0);
  m.g_idx.resize(static_cast<size_t>(cols));
  const int threads = ctx.thread_count();

  if (p.rtn) {
    for (int64_t c = 0; c < cols; ++c) m.g_idx[static_cast<size_t>(c)] = static_cast<int32_t>(c / g);
    parallel_for(rows, threads, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t k = 0; k < G; ++k) {
          const size_t gi = static_cast<size_t>(r * G + k);
          const float* x = w + r * cols + k * g;
          gp_params(x, g, bits, sym, storage, m.scales[gi], m.zeros[gi]);
          for (int64_t c = 0; c < g; ++c)
            m.codes[static_cast<size_t>(r * cols + k * g + c)] =
                static_cast<uint8_t>(gp_code(x[c], m.scales[gi], m.zeros[gi], maxq));
        }
    });
    return m;
  }

  // Dead columns (no signal): H_ii = 1 (gp_live_hessian) and the weights zeroed.
  std::vector<char> dead(static_cast<size_t>(cols), 0);
  for (int64_t c = 0; c < cols; ++c)
    if (h[c * cols + c] == 0) {
      dead[static_cast<size_t>(c)] = 1;
      ++m.dead_columns;
    }
  const int search = p.scale_search;
  const GpGridErrorFn grid_error = engine::Exec::from(ctx).ops.grid_error;

  // Walk order: descending diag(H) with act-order (stable, so ties keep their order).
  std::vector<int32_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  const bool reorder = p.act_order != GptqActOrder::none;
  if (reorder) {
    const std::vector<float> hd = gp_live_diagonal(h, cols);
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int32_t a, int32_t b) { return hd[static_cast<size_t>(a)] > hd[static_cast<size_t>(b)]; });
    m.perm = perm;
  }
  // Group of each walk position, and whether its scales are fixed before the walk.
  std::vector<int32_t> gwalk(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j)
    gwalk[static_cast<size_t>(j)] = static_cast<int32_t>(
        (p.act_order == GptqActOrder::static_groups ? perm[static_cast<size_t>(j)] : j) / g);
  const bool fixed_scales = p.group_size < 0 || p.act_order == GptqActOrder::static_groups;
  for (int64_t j = 0; j < cols; ++j) m.g_idx[static_cast<size_t>(perm[static_cast<size_t>(j)])] = gwalk[static_cast<size_t>(j)];

  // The walk's matrix: the weights in walk order (column j is column perm[j]), dead ones zeroed,
  // in w_own's storage or a copy.
  std::vector<float> copy;
  if (!w_own) copy.assign(w, w + rows * cols);
  std::vector<float>& wv = w_own ? *w_own : copy;
  LQ_ASSERT(static_cast<int64_t>(wv.size()) == rows * cols);
  parallel_for(rows, threads, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> tmp(static_cast<size_t>(reorder ? cols : 0));
    for (int64_t r = r0; r < r1; ++r) {
      float* row = wv.data() + r * cols;
      if (reorder) {
        std::copy(row, row + cols, tmp.data());
        for (int64_t j = 0; j < cols; ++j) {
          const size_t c = static_cast<size_t>(perm[static_cast<size_t>(j)]);
          row[j] = dead[c] ? 0.0f : tmp[c];
        }
      } else {
        for (int64_t c = 0; c < cols; ++c)
          if (dead[static_cast<size_t>(c)]) row[c] = 0.0f;
      }
    }
  });
  Eigen::Map<RowMat> Wp(wv.data(), rows, cols);
  RowMat U;
  const std::vector<int32_t> walk = reorder ? perm : std::vector<int32_t>{};
  if (own) {
    U.swap(*own);
    gp_live_hessian_inplace(U, walk);
  } else {
    gp_live_hessian(h, cols, walk, U);
  }
  if (!gp_inverse_factor(U, p.damp, p.max_damp_raises, m.damp, m.damp_raises, threads, engine::Exec::from(ctx).ops.gemm))
    fail(Errc::smoothquant_failed,
         "gptq: the Hessian is not positive definite even with dampening {} x mean(diag H) ({} raises x10 from {}); "
         "use more calibration samples or a larger --damp",
         p.damp * std::pow(10.0, p.max_damp_raises), p.max_damp_raises, p.damp);
  // The scale search's weight of walk position j: 1 / U_jj², what GPTQ's loss charges a rounding
  // error there ((w - q)² / U_jj²: the error's cost after the later columns compensate it).
  std::vector<float> hdiag_walk(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) {
    const float d = U(j, j);
    hdiag_walk[static_cast<size_t>(j)] = 1.0f / (d * d);
  }
  if (fixed_scales) {
    // From the original (dead-zeroed) weights, group k = original columns k*g .. k*g + g - 1.
    std::vector<int32_t> pos(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j) pos[static_cast<size_t>(perm[static_cast<size_t>(j)])] = static_cast<int32_t>(j);
    std::vector<float> imp(static_cast<size_t>(cols));
    for (int64_t c = 0; c < cols; ++c) imp[static_cast<size_t>(c)] = hdiag_walk[static_cast<size_t>(pos[static_cast<size_t>(c)])];
    parallel_for(rows, threads, 16, [&](int64_t r0, int64_t r1) {
      std::vector<float> x(static_cast<size_t>(g));
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t k = 0; k < G; ++k) {
          const size_t gi = static_cast<size_t>(r * G + k);
          for (int64_t c = 0; c < g; ++c) x[static_cast<size_t>(c)] = Wp(r, pos[static_cast<size_t>(k * g + c)]);
          gp_params_search(x.data(), imp.data() + k * g, g, bits, sym, storage, search, m.scales[gi], m.zeros[gi],
                           grid_error);
        }
    });
  }

  m.loss += gp_feedback_walk(Wp, U, p.block_size, threads, engine::Exec::from(ctx).ops.gemm, [&] {
    return [&](int64_t r, int64_t i, float* wr) {
      const int32_t k = gwalk[static_cast<size_t>(i)];
      const size_t gi = static_cast<size_t>(r * G + k);
      if (!fixed_scales && i % g == 0)
        gp_params_search(wr + i, hdiag_walk.data() + i, g, bits, sym, storage, search, m.scales[gi], m.zeros[gi],
                         grid_error);
      const float s = m.scales[gi];
      const int32_t z = m.zeros[gi];
      const int32_t q = gp_code(wr[i], s, z, maxq);
      m.codes[static_cast<size_t>(r * cols + perm[static_cast<size_t>(i)])] = static_cast<uint8_t>(q);
      return s * static_cast<float>(q - z);
    };
  });
  std::vector<float>().swap(wv);
  return m;
}

}  // namespace gptq_impl

GptqMatrix gptq_quantize_matrix(const float* w, int64_t rows, int64_t cols, const float* h, const GptqParams& p,
                                const Context& ctx) {
  return gp_quantize(w, rows, cols, h, nullptr, p, ctx);
}

GptqMatrix gptq_impl::gp_quantize_consuming(std::vector<float>& w, int64_t rows, int64_t cols, RowMat& H, bool take_h,
                                            const GptqParams& p, const Context& ctx) {
  if (H.rows() != cols || H.cols() != cols)
    fail(Errc::invalid_argument, "gptq: a {} x {} Hessian for {} columns", H.rows(), H.cols(), cols);
  if (static_cast<int64_t>(w.size()) != rows * cols)
    fail(Errc::invalid_argument, "gptq: {} weights for a {} x {} matrix", w.size(), rows, cols);
  GptqMatrix m = gp_quantize(w.data(), rows, cols, H.data(), take_h ? &H : nullptr, p, ctx, &w);
  if (take_h) H.resize(0, 0);
  return m;
}

fs::path gptq_default_output(const fs::path& model, const GptqConfig& c) {
  fs::path m = model;
  if (!m.has_filename()) m = m.parent_path();
  std::string stem = m.filename().string();
  if (m.extension() == ".safetensors" || m.extension() == ".gguf") stem = m.stem().string();
  if (stem.empty() || stem == "." || stem == "..") stem = "model";
  if (c.smoothquant) return fs::path(stem + "-gptq-w8a8");
  std::string name = fmt::format("{}-{}-w{}a16", stem, c.params.rtn ? "rtn" : "gptq", c.params.bits);
  if (c.params.group_size != 128) name += c.params.group_size > 0 ? fmt::format("-g{}", c.params.group_size) : "-ch";
  return fs::path(name);
}

namespace gptq_impl {

// One decoder linear.
struct GpLinear {
  std::string gguf;    // "blk.3.attn_q.weight"
  std::string module;  // "model.layers.3.self_attn.q_proj"
  int layer = -1;
  int site = 0;        // 0: attn_norm output (q/k/v), 1: o_proj input, 2: ffn_norm output (gate/up), 3: down_proj input
  bool permuted = false;  // q/k rows re-ordered for RoPE in the engine (llama)
  int64_t rows = 0, cols = 0;
  int expert = -1;        // a mixture's expert: its slice of the merged tensor `gguf` (its rows x cols)
};

// The Hugging Face row of the engine's row r of a permuted q/k weight (hf_source's order).
inline int64_t gp_hf_row(int64_t r, int64_t hd) {
  const int64_t h = r / hd, w = r % hd;
  return h * hd + (w % 2) * (hd / 2) + w / 2;
}

struct GpStopForward {};  // thrown by the hook after the block being calibrated

double gp_seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void gp_store(StDtype t, float v, uint8_t* p) {
  if (t == StDtype::BF16) {
    const uint16_t h = f32_to_bf16(v);
    std::memcpy(p, &h, 2);
  } else if (t == StDtype::F16) {
    const uint16_t h = f32_to_fp16(v);
    std::memcpy(p, &h, 2);
  } else {
    std::memcpy(p, &v, 4);
  }
}

// The output tensors of one quantized linear `m` in `layout` (scales of compressed-tensors in
// `scale_dtype`, the model's dtype; the GPTQ layout's are fp16).

void gp_specs(const std::string& m, const GptqMatrix& q, const GpWriteSpec& w, std::vector<StTensorSpec>& specs) {
  const int bits = q.bits;
  if (w.int8) {
    specs.push_back({m + ".weight", StDtype::I8, {q.rows, q.cols}});
    specs.push_back({m + "." + ct::kWeightScale, w.scale_dtype, {q.rows, 1}});
    if (w.static_input) specs.push_back({m + "." + ct::kInputScale, w.scale_dtype, {1}});
  } else if (w.layout == GptqLayout::compressed_tensors) {
    specs.push_back({m + ".weight_packed", StDtype::I32, {q.rows, (q.cols * bits + 31) / 32}});
    specs.push_back({m + ".weight_scale", w.scale_dtype, {q.rows, q.groups}});
    specs.push_back({m + ".weight_shape", StDtype::I64, {2}});
    if (!w.sym) specs.push_back({m + ".weight_zero_point", StDtype::I32, {(q.rows * bits + 31) / 32, q.groups}});
    if (w.g_idx) specs.push_back({m + ".weight_g_idx", StDtype::I32, {q.cols}});
  } else if (w.layout == GptqLayout::awq) {
    specs.push_back({m + ".qweight", StDtype::I32, {q.cols, q.rows / 8}});
    specs.push_back({m + ".qzeros", StDtype::I32, {q.groups, q.rows / 8}});
    specs.push_back({m + ".scales", StDtype::F16, {q.groups, q.rows}});
  } else {
    specs.push_back({m + ".qweight", StDtype::I32, {q.cols * bits / 32, q.rows}});
    specs.push_back({m + ".qzeros", StDtype::I32, {q.groups, q.rows * bits / 32}});
    specs.push_back({m + ".scales", StDtype::F16, {q.groups, q.rows}});
    specs.push_back({m + ".g_idx", StDtype::I32, {q.cols}});
  }
}

void gp_write(ShardedSafetensorsWriter& out, const std::string& m, const GptqMatrix& q, const GpWriteSpec& w) {
  const int bits = q.bits;
  const size_t ns = q.scales.size();
  std::vector<uint8_t> raw;
  auto write_i32 = [&](const std::string& n, const std::vector<int32_t>& v) { out.write(n, v.data(), v.size() * 4); };
  if (w.int8) {
    // Symmetric 8-bit codes around zero 128 are compressed-tensors' int8 values plus 128.
    std::vector<int8_t> v(q.codes.size());
    for (int64_t r = 0; r < q.rows; ++r)
      for (int64_t c = 0; c < q.cols; ++c) {
        const size_t k = static_cast<size_t>(r * q.cols + c);
        v[k] = static_cast<int8_t>(static_cast<int32_t>(q.codes[k]) - q.zeros[static_cast<size_t>(r * q.groups)]);
      }
    out.write(m + ".weight", v.data(), v.size());
    const size_t es = st_dtype_size(w.scale_dtype);
    raw.assign(ns * es, 0);
    for (size_t k = 0; k < ns; ++k) gp_store(w.scale_dtype, q.scales[k], raw.data() + k * es);
    out.write(m + "." + ct::kWeightScale, raw.data(), raw.size());
    if (w.static_input) {
      raw.assign(es, 0);
      gp_store(w.scale_dtype, w.input_scale, raw.data());
      out.write(m + "." + ct::kInputScale, raw.data(), raw.size());
    }
  } else if (w.layout == GptqLayout::compressed_tensors) {
    write_i32(m + ".weight_packed", gptq_pack::ct_pack_rows(q.codes.data(), q.rows, q.cols, bits));
    const size_t es = st_dtype_size(w.scale_dtype);
    raw.assign(ns * es, 0);
    for (size_t k = 0; k < ns; ++k) gp_store(w.scale_dtype, q.scales[k], raw.data() + k * es);
    out.write(m + ".weight_scale", raw.data(), raw.size());
    const int64_t shape[2] = {q.rows, q.cols};
    out.write(m + ".weight_shape", shape, sizeof shape);
    if (!w.sym) write_i32(m + ".weight_zero_point", gptq_pack::ct_pack_columns(q.zeros.data(), q.rows, q.groups, bits));
    if (w.g_idx) write_i32(m + ".weight_g_idx", q.g_idx);
  } else {
    const bool awq = w.layout == GptqLayout::awq;
    if (awq) {
      write_i32(m + ".qweight", gptq_pack::awq_pack_qweight(q.codes.data(), q.rows, q.cols));
      write_i32(m + ".qzeros", gptq_pack::awq_pack_qzeros(q.zeros.data(), q.rows, q.groups));
    } else {
      write_i32(m + ".qweight", gptq_pack::gptq_pack_qweight(q.codes.data(), q.rows, q.cols, bits));
      write_i32(m + ".qzeros", gptq_pack::gptq_pack_qzeros(q.zeros.data(), q.rows, q.groups, bits, w.layout == GptqLayout::gptq));
    }
    raw.assign(ns * 2, 0);
    for (int64_t g = 0; g < q.groups; ++g)  // [groups, out]
      for (int64_t r = 0; r < q.rows; ++r)
        gp_store(StDtype::F16, q.scales[static_cast<size_t>(r * q.groups + g)], raw.data() + 2 * (g * q.rows + r));
    out.write(m + ".scales", raw.data(), raw.size());
    if (!awq) write_i32(m + ".g_idx", q.g_idx);
  }
}

}  // namespace gptq_impl

struct GptqQuantizer::Impl {
  const ModelSource& src;
  GptqConfig cfg;
  std::unique_ptr<Model> model;
  std::vector<GpLinear> linears;
  std::map<std::string, GptqMatrix> results;  // by module
  std::map<std::string, std::vector<float>> floats;  // replaced float tensors by checkpoint name (AWQ's norms)
  std::vector<std::vector<int32_t>> chunks;
  bool have_data = false, done = false;
  GptqResult summary;
  // A mixture of experts: the calibration data given (the streamed runner cuts it), the merged
  // expert tensors being filled expert by expert (F32, and which experts are in), and the merged
  // tensor whose original values hf_weights last read.
  bool moe = false;
  std::optional<CalibrationData> data;
  struct Staged {
    std::vector<float> values;
    std::vector<char> in;
  };
  std::map<std::string, Staged> staged;
  std::string read_name;
  std::vector<float> read_values;

  Impl(const ModelSource& s, GptqConfig c) : src(s), cfg(std::move(c)) {
    validate(cfg.params);
    if (cfg.smoothquant)
      fail(Errc::invalid_argument, "gptq: SmoothQuant with GPTQ (W8A8) runs in the streamed pipeline: use gptq_model");
    if (cfg.calibration_samples < 1)
      fail(Errc::invalid_argument, "gptq: calibration samples must be positive, got {}", cfg.calibration_samples);
    if (cfg.ctx < 2) fail(Errc::invalid_argument, "gptq: ctx must be at least 2, got {}", cfg.ctx);
    if (src.is_gguf())
      fail(Errc::invalid_argument,
           "gptq: {} is a GGUF file; quantize a Hugging Face checkpoint (config.json and safetensors), or use "
           "`convert {} gptq` for the exact mapping of Q4_0/Q8_0/Q4_1",
           src.path().string(), src.path().string());
    const Architecture& arch = architecture_of(src.config(), "gptq");
    moe = src.config().n_expert > 0;
    if (moe && !gptq_streams(src))
      fail(Errc::invalid_model, "gptq: {} is a mixture of experts the streamed calibration does not read",
           src.path().string());
    model = Model::load(src);
    const ModelConfig& mc = model->config();
    if (!cfg.bf16_activations) cfg.bf16_activations = quant_impl::linears_are_bf16(src);
    summary.calibration_bf16 = *cfg.bf16_activations;
    gp_check_layout(cfg);
    cfg.params.scale_storage = 16;  // GPTQ layout: fp16 scales
    if (moe) plan_moe(arch);
    for (const LinearInfo& l : model->linears()) {
      if (l.layer < 0 || moe) continue;
      GpLinear x;
      x.gguf = l.name;
      x.module = names::hf_module(l.name, arch.fused_gate_up);
      x.layer = l.layer;
      x.rows = l.n_out;
      x.cols = l.n_in;
      x.site = linear_input_site(l.role);
      if (x.site < 0) fail(Errc::invalid_model, "gptq: unexpected linear {} ({})", l.name, l.role);
      x.permuted = arch.permute_qk && (l.role == "attn_q" || l.role == "attn_k");
      gp_check_linear(cfg, x.module, x.rows, x.cols, l.type, cfg.params.scale_storage);
      linears.push_back(std::move(x));
    }
    if (linears.empty()) fail(Errc::invalid_model, "gptq: {} has no decoder linears", src.path().string());
    summary.warnings = gp_config_warnings(cfg, mc.n_ctx_train);
  }

  // A mixture's linears in the streamed runner's order (block_linear_roles, each merged expert
  // tensor's experts after attn_output, role-major), the routers left out (they stay float).
  void plan_moe(const Architecture& arch) {
    const ModelConfig& mc = model->config();
    for (int64_t L = 0; L < mc.n_layer; ++L)
      for (const char* role : block_linear_roles(arch)) {
        const std::string name = fmt::format("blk.{}.{}.weight", L, role);
        const LinearInfo* l = model->find_linear(name);
        if (!l) fail(Errc::invalid_model, "gptq: the model has no {}", name);
        GpLinear x;
        x.gguf = name;
        x.module = names::hf_module(name, arch.fused_gate_up);
        x.layer = static_cast<int>(L);
        x.rows = l->n_out;
        x.cols = l->n_in;
        x.site = linear_input_site(role);
        x.permuted = arch.permute_qk && (l->role == "attn_q" || l->role == "attn_k");
        gp_check_linear(cfg, x.module, x.rows, x.cols, l->type, cfg.params.scale_storage);
        linears.push_back(std::move(x));
        if (std::string_view(role) != "attn_output") continue;
        for (const char* er : expert_linear_roles(arch)) {
          const std::string en = fmt::format("blk.{}.{}.weight", L, er);
          const ModelTensor& t = src.at(en);
          if (t.ne.size() != 3 || t.ne[2] != mc.n_expert)
            fail(Errc::invalid_model, "gptq: {} is not a 3-D tensor of {} experts", en, mc.n_expert);
          for (int e = 0; e < static_cast<int>(mc.n_expert); ++e) {
            GpLinear y;
            y.gguf = en;
            y.module = names::hf_expert_module(en, e, arch.moe == Architecture::MoeStyle::mixtral);
            y.layer = static_cast<int>(L);
            y.rows = t.ne[1];
            y.cols = t.ne[0];
            y.expert = e;
            gp_check_linear(cfg, y.module, y.rows, y.cols, t.type, cfg.params.scale_storage);
            linears.push_back(std::move(y));
          }
        }
      }
  }

  void set_calibration(const CalibrationData& d) {
    summary.calibration_source = d.source;
    const int32_t bos = model->add_bos() ? model->bos_token() : -1;
    if (moe) {  // checked here, cut again by the streamed runner (with its warnings)
      std::vector<std::string> unused;
      quant_impl::calibration_chunks(src, d, cfg.ctx, cfg.calibration_samples, bos, unused);
      data = d;
    } else {
      chunks = quant_impl::calibration_chunks(src, d, cfg.ctx, cfg.calibration_samples, bos, summary.warnings);
    }
    have_data = true;
  }

  // Weights of `x` in the engine's row order (an expert's slice of its merged tensor, whose
  // values are kept while its experts are read one after another).
  std::vector<float> engine_weights(const GpLinear& x) {
    if (x.expert < 0) return model->tensor_f32(x.gguf);
    if (read_name != x.gguf) {
      read_values = model->tensor_f32(x.gguf);
      read_name = x.gguf;
    }
    const size_t n = static_cast<size_t>(x.rows * x.cols), at = n * static_cast<size_t>(x.expert);
    if (read_values.size() < at + n) fail(Errc::invalid_model, "gptq: {} holds no expert {}", x.gguf, x.expert);
    return std::vector<float>(read_values.begin() + static_cast<std::ptrdiff_t>(at),
                              read_values.begin() + static_cast<std::ptrdiff_t>(at + n));
  }

  // Weights of `x` in Hugging Face row order.
  std::vector<float> hf_weights(const GpLinear& x) { return hf_order(x, engine_weights(x)); }

  // `v` (x's values in the engine's row order) in Hugging Face row order.
  std::vector<float> hf_order(const GpLinear& x, std::vector<float> v) const {
    if (!x.permuted) return v;
    std::vector<float> o(v.size());
    const int64_t hd = model->config().head_dim;
    for (int64_t r = 0; r < x.rows; ++r)
      std::memcpy(&o[static_cast<size_t>(gp_hf_row(r, hd) * x.cols)], &v[static_cast<size_t>(r * x.cols)],
                  static_cast<size_t>(x.cols) * 4);
    return o;
  }

  // The dequantized matrix in the engine's row order.
  std::vector<float> engine_values(const GpLinear& x, const GptqMatrix& q) const {
    std::vector<float> d = q.dequantize();
    if (x.permuted) {
      std::vector<float> o(d.size());
      const int64_t hd = model->config().head_dim;
      for (int64_t r = 0; r < x.rows; ++r)
        std::memcpy(&o[static_cast<size_t>(r * x.cols)], &d[static_cast<size_t>(gp_hf_row(r, hd) * x.cols)],
                    static_cast<size_t>(x.cols) * 4);
      d.swap(o);
    }
    return d;
  }

  // Values in the engine's row order put into the model as F32: an expert's into its merged
  // tensor, which goes into the model once all its experts are in (or at flush_staged()).
  void put_values(const GpLinear& x, std::vector<float> d) {
    if (x.expert < 0) {
      model->replace_tensor(x.gguf, d, QuantType::F32);
      return;
    }
    Staged& st = staged[x.gguf];
    if (st.values.empty()) {
      st.values = model->tensor_f32(x.gguf);
      st.in.assign(static_cast<size_t>(model->config().n_expert), 0);
    }
    const size_t n = static_cast<size_t>(x.rows * x.cols);
    std::copy(d.begin(), d.end(), st.values.begin() + static_cast<std::ptrdiff_t>(n * static_cast<size_t>(x.expert)));
    st.in[static_cast<size_t>(x.expert)] = 1;
    if (std::count(st.in.begin(), st.in.end(), 0) == 0) {
      if (read_name == x.gguf) read_name.clear();
      model->replace_tensor(x.gguf, st.values, QuantType::F32);
      staged.erase(x.gguf);
    }
  }

  // Merged expert tensors some of whose experts were set: into the model as they are.
  void flush_staged() {
    for (auto& [name, st] : staged) {
      if (read_name == name) read_name.clear();
      model->replace_tensor(name, st.values, QuantType::F32);
    }
    staged.clear();
  }

  // The dequantized matrix put back into the engine, as F32.
  void apply(const GpLinear& x, const GptqMatrix& q) { put_values(x, engine_values(x, q)); }

  // GPTQ (or round to nearest) of `w` (Hugging Face row order) with its report; an error names
  // the module.
  GptqMatrix walk(const GpLinear& x, const std::vector<float>& w, const float* h, const GptqParams& params,
                  const Context& ctx) {
    GptqMatrix q;
    try {
      q = gptq_quantize_matrix(w.data(), x.rows, x.cols, h, params, ctx);
    } catch (const Error& e) {
      if (e.code() == Errc::interrupted) throw;
      fail(e.code(), "{}: {}; nothing was written", x.module, e.what());
    }
    if (q.damp_raises > 0)
      ctx.progress_sink().message(fmt::format("warning: {}: Cholesky failed, dampening raised {} time(s) to {}", x.module,
                                              q.damp_raises, q.damp));
    summary.damp_raises += q.damp_raises;
    summary.layers.push_back(GptqLayerReport{x.module, x.layer, q.loss, q.damp, q.damp_raises, q.dead_columns});
    return q;
  }

  // config.matrix_hook on `w` (the engine's row order): its values go into the model.
  std::vector<float> hook_one(const GpLinear& x, std::vector<float> w, float* h, bool h_last, const Context& ctx) {
    std::vector<float> d = cfg.matrix_hook(x.gguf, w, x.rows, x.cols, h, h_last, ctx);
    if (static_cast<int64_t>(d.size()) != x.rows * x.cols)
      fail(Errc::invalid_argument, "gptq: {}: the matrix hook returned {} values, not {}", x.module, d.size(),
           x.rows * x.cols);
    summary.layers.push_back(GptqLayerReport{x.module, x.layer, 0, cfg.params.damp, 0, 0});
    put_values(x, d);
    return d;
  }

  void quantize_one(const GpLinear& x, float* h, const Context& ctx) {
    if (cfg.matrix_hook) {
      hook_one(x, engine_weights(x), h, false, ctx);  // h_last false: later linears may read h
      return;
    }
    GptqMatrix q = walk(x, hf_weights(x), h, cfg.params, ctx);
    apply(x, q);
    results[x.module] = std::move(q);
  }

  // A mixture of experts: the streamed runner calibrates block by block (each expert on the
  // tokens routed to it; the model it runs is its own, one block at a time) and hands every
  // matrix, an expert's slice at a time, to this quantizer: the walk (round to nearest for an
  // expert no token reached, h null) or config.matrix_hook, whose values go into this model and
  // back to the runner for the later blocks. The same bytes as gptq_model.
  void run_streamed(const Context& ctx) {
    std::map<std::string, size_t> dense;                       // by GGUF name
    std::map<std::string, std::vector<size_t>> experts;        // merged name -> its experts, in order
    std::map<std::string, size_t> next;                        // the expert the runner gives next
    for (size_t i = 0; i < linears.size(); ++i) {
      if (linears[i].expert < 0) dense[linears[i].gguf] = i;
      else experts[linears[i].gguf].push_back(i);
    }
    GptqConfig sc = cfg;
    sc.checkpoint_dir.clear();
    sc.resume = false;
    sc.checkpoint_tag.clear();
    sc.matrix_hook = [&](const std::string& name, std::vector<float>& w, int64_t rows, int64_t cols, float* h,
                         bool h_last, const Context& c) {
      size_t i = 0;
      if (auto d = dense.find(name); d != dense.end()) {
        i = d->second;
      } else if (auto e = experts.find(name); e != experts.end() && next[name] < e->second.size()) {
        i = e->second[next[name]++];
      } else {
        fail(Errc::invalid_model, "gptq: the streamed calibration gave {}, not a linear of this model", name);
      }
      const GpLinear& x = linears[i];
      if (rows != x.rows || cols != x.cols)
        fail(Errc::invalid_model, "gptq: the streamed calibration gave {} as {} x {}, not {} x {}", x.module, rows, cols,
             x.rows, x.cols);
      if (cfg.matrix_hook) return hook_one(x, std::move(w), h, h_last, c);
      GptqParams p = cfg.params;
      p.rtn = h == nullptr;
      GptqMatrix q = walk(x, hf_order(x, w), h, p, c);
      std::vector<float> d = engine_values(x, q);
      put_values(x, d);
      results[x.module] = std::move(q);
      return d;
    };
    const StreamWorkDir work("lq-gptq");
    finish(gptq_stream_hook(src.path(), work.path(), sc, ctx, data ? &*data : nullptr));
  }

  // The end of a run made elsewhere (the streamed runner, AWQ): its calibration figures and
  // warnings go into the summary, the staged experts into the model; write() may follow.
  void finish(const GptqResult& stats) {
    flush_staged();
    summary.calibration_source = stats.calibration_source;
    summary.chunks = stats.chunks;
    summary.ctx = stats.ctx;
    summary.tokens = stats.tokens;
    summary.calibration_seconds = stats.calibration_seconds;
    summary.quantize_seconds = stats.quantize_seconds;
    for (const auto& w : stats.warnings) summary.warnings.push_back(w);
    done = true;
  }

  void run(const Context& ctx) {
    Progress& progress = ctx.progress_sink();
    const auto t0 = std::chrono::steady_clock::now();
    const ModelConfig& mc = model->config();
    summary.layers.clear();
    summary.damp_raises = 0;
    if (moe && !cfg.params.rtn) {
      run_streamed(ctx);
      return;
    }
    if (cfg.params.rtn) {
      progress.update("Quantizing (RTN)", 0, static_cast<int64_t>(linears.size()), "tensors");
      for (size_t i = 0; i < linears.size(); ++i) {
        ctx.check_cancelled();
        quantize_one(linears[i], nullptr, ctx);
        progress.update("Quantizing (RTN)", static_cast<int64_t>(i + 1), static_cast<int64_t>(linears.size()), "tensors");
      }
      progress.finish("Quantizing (RTN)");
      flush_staged();
      summary.quantize_seconds = gp_seconds_since(t0);
      done = true;
      return;
    }
    if (!have_data) set_calibration(quant_impl::calibration_text(cfg.calibration_data, progress));
    const int64_t n_chunks = static_cast<int64_t>(chunks.size());
    progress.message(fmt::format("GPTQ: {} blocks, {} chunks of {} tokens from {}", mc.n_layer, n_chunks, cfg.ctx,
                                 summary.calibration_source));
    double calib = 0;
    int64_t tokens = 0;
    progress.update("GPTQ", 0, mc.n_layer, "blocks");
    for (int64_t L = 0; L < mc.n_layer; ++L) {
      const auto tc = std::chrono::steady_clock::now();
      const int64_t widths[4] = {mc.n_embd, mc.n_head * mc.head_dim, mc.n_embd, mc.n_ff};
      std::vector<RowMat> H(4);
      for (int k = 0; k < 4; ++k) H[static_cast<size_t>(k)] = RowMat::Zero(widths[k], widths[k]);
      int64_t seen[4] = {0, 0, 0, 0};
      bool non_finite = false;
      {
        SessionOptions so;
        so.n_ctx = cfg.ctx;
        so.hook_inputs_only = true;
        so.bf16_activations = cfg.bf16_activations.value_or(false);
        Session session(*model, so, ctx);
        const GpGemmFn gemm = engine::Exec::from(ctx).ops.gemm;
        const float* last_input = nullptr;
        int last_site = -1;
        session.set_linear_hook([&](const LinearEvent& ev) {
          const LinearInfo& l = *ev.linear;
          if (l.layer != L) return;
          const int k = linear_input_site(l.role);
          if (k < 0) return;
          if (!(ev.input == last_input && k == last_site)) {
            last_input = ev.input;
            last_site = k;
            if (!Eigen::Map<const RowMat>(ev.input, ev.n_tokens, l.n_in).allFinite()) non_finite = true;
            gp_add_gram(H[static_cast<size_t>(k)], ev.input, ev.n_tokens, l.n_in, ctx.thread_count(), gemm);
            seen[k] += ev.n_tokens;
          }
          if (k == 3) throw GpStopForward{};
        });
        for (int64_t i = 0; i < n_chunks; ++i) {
          ctx.check_cancelled();
          const auto& ch = chunks[static_cast<size_t>(i)];
          session.clear();
          last_input = nullptr;
          last_site = -1;
          try {
            session.eval(ch, static_cast<int64_t>(ch.size()));
          } catch (const GpStopForward&) {
          }
          if (L == 0) tokens += static_cast<int64_t>(ch.size());
        }
      }
      calib += gp_seconds_since(tc);
      if (non_finite)
        fail(Errc::smoothquant_failed, "gptq: block {} sees NaN or infinite activations on the calibration data; nothing "
             "was written", L);
      for (int k = 0; k < 4; ++k) {
        if (seen[k] == 0) fail(Errc::calibration_error, "gptq: block {} saw no calibration tokens", L);
        gp_finish_gram(H[static_cast<size_t>(k)], 2.0f / static_cast<float>(seen[k]));
      }
      for (const GpLinear& x : linears) {
        if (x.layer != L) continue;
        ctx.check_cancelled();
        quantize_one(x, H[static_cast<size_t>(x.site)].data(), ctx);
      }
      progress.update("GPTQ", L + 1, mc.n_layer, "blocks");
    }
    progress.finish("GPTQ");
    summary.calibration_seconds = calib;
    summary.quantize_seconds = gp_seconds_since(t0) - calib;
    summary.chunks = n_chunks;
    summary.ctx = cfg.ctx;
    summary.tokens = tokens;
    done = true;
  }

  GptqResult write(const fs::path& dir_in, const Context& ctx);
};

namespace gptq_impl {

void gp_check_layout(const GptqConfig& cfg) {
  if (cfg.layout != GptqLayout::awq) return;
  if (cfg.params.bits != 4) fail(Errc::invalid_argument, "gptq: the AWQ layout stores 4-bit codes only, not {}-bit", cfg.params.bits);
  if (cfg.params.group_size < 1)
    fail(Errc::invalid_argument, "gptq: the AWQ layout needs a group size (AutoAWQ's kernels have no per-channel form)");
  if (cfg.params.act_order == GptqActOrder::group)
    fail(Errc::invalid_argument, "gptq: the AWQ layout has no g_idx: use --act-order (static groups), not --act-order-group");
}

std::vector<std::string> gp_config_warnings(const GptqConfig& cfg, int64_t n_ctx_train) {
  std::vector<std::string> w;
  if (n_ctx_train > 0 && cfg.ctx > n_ctx_train && !cfg.params.rtn)
    w.push_back(fmt::format("the model was trained on {} context tokens ({} asked)", n_ctx_train, cfg.ctx));
  if (cfg.params.rtn && cfg.params.act_order != GptqActOrder::none) w.push_back("act-order has no effect on round to nearest");
  if (!cfg.params.rtn && cfg.params.act_order == GptqActOrder::group)
    w.push_back("group act-order (a permuted g_idx, desc_act) is refused by vLLM (0.32: \"no longer supported\"); "
                "transformers and lq read it, and --act-order (static groups) loads in vLLM too");
  return w;
}

void gp_check_linear(const GptqConfig& cfg, const std::string& module, int64_t rows, int64_t cols, QuantType type,
                     int& scale_storage) {
  const bool gptq_layout = cfg.layout != GptqLayout::compressed_tensors;
  const int64_t g = cfg.params.group_size;
  if (g > 0 && cols % g != 0)
    fail(Errc::invalid_argument, "gptq: group size {} does not divide the row length {} of {}", g, cols, module);
  if (gptq_layout && ((cols * cfg.params.bits) % 32 != 0 || (rows * cfg.params.bits) % 32 != 0))
    fail(Errc::invalid_argument, "gptq: {} ({} x {}) does not fill whole int32 words at {} bits (the GPTQ layout "
         "packs 32 / bits values a word along both axes)", module, rows, cols, cfg.params.bits);
  if (!gptq_layout) {
    if (type == QuantType::BF16) scale_storage = 17;
    else if (type == QuantType::F16) scale_storage = 16;
    else if (type == QuantType::F32) scale_storage = 0;
    else fail(Errc::invalid_model, "gptq: {} is stored as {}, not a float type", module, type_info(type).name);
  }
}

GpDirectory gp_write_directory(const fs::path& src_path, OutputDir& od, const GptqConfig& cfg,
                               const std::map<std::string, GptqMatrix>& shapes,
                               const std::function<const GptqMatrix&(const std::string& module, GptqMatrix& scratch)>& fetch,
                               const std::map<std::string, std::vector<float>>& floats, const Context& ctx,
                               const std::map<std::string, float>& input_scales) {
  Progress& progress = ctx.progress_sink();
  std::error_code ec;
  const fs::path src_dir = fs::is_regular_file(src_path, ec) ? src_path.parent_path() : src_path;
  const auto files = sq_impl::sq_source_files(src_path);
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(read_file(src_dir / "config.json"), nullptr, false);
  if (config.is_discarded() || !config.is_object())
    fail(Errc::invalid_model, "{}: malformed config.json", (src_dir / "config.json").string());

  const int bits = cfg.params.bits;
  GpWriteSpec ws;
  ws.layout = cfg.layout;
  ws.sym = cfg.params.sym;
  ws.g_idx = cfg.params.act_order == GptqActOrder::group;
  ws.int8 = cfg.smoothquant.has_value();
  ws.static_input = ws.int8 && cfg.smoothquant->static_activations;
  if (ws.int8 && (bits != 8 || !cfg.params.sym || cfg.layout != GptqLayout::compressed_tensors))
    fail(Errc::invalid_argument, "gptq: W8A8 needs symmetric 8-bit codes in the compressed-tensors layout");
  struct Item {
    const SafetensorsFile* file;
    const StTensor* t;
    const GptqMatrix* q = nullptr;  // the linear's shape (its codes come from fetch)
    std::string module;             // as the checkpoint names it
    std::string key;                // as the quantizer does (no multimodal wrapper)
  };
  GpDirectory d;
  std::vector<std::unique_ptr<SafetensorsFile>> open;
  std::vector<Item> items;
  std::vector<StTensorSpec> specs;
  std::set<std::string> written, untouched;
  for (const auto& f : files) {
    open.push_back(std::make_unique<SafetensorsFile>(f));
    std::vector<const StTensor*> order;
    for (const auto& t : open.back()->tensors()) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
    for (const StTensor* t : order) {
      Item it{open.back().get(), t};
      const std::string& name = t->name;
      d.n_parameters += static_cast<int64_t>(t->nbytes / st_dtype_size(t->dtype));
      if (name.size() > 7 && name.ends_with(".weight")) {
        const std::string mod = name.substr(0, name.size() - 7);
        // Gemma 3's multimodal checkpoints keep the text model under language_model.
        const std::string key = names::text_model_name(mod);
        if (auto r = shapes.find(key); r != shapes.end()) {
          it.q = &r->second;
          it.module = mod;
          it.key = key;
          written.insert(key);
        } else if (names::multimodal_part(name)) {
          // the vision tower and projector are not quantized, so compressed-tensors' "Linear"
          // target must leave them out, as llm-compressor's Gemma 3 recipe does (under any
          // prefix: transformers 5 names them model.vision_tower... at run time)
          const size_t from = name.starts_with("model.") ? 6 : 0;
          untouched.insert("re:.*" + name.substr(from, name.find('.', from) - from) + ".*");
        } else if (const std::string r = names::moe_router_module(key); !r.empty()) {
          // the routers (and Qwen2-MoE's shared-expert gate) stay float, on the ignore list as in
          // llm-compressor's MoE recipes ("re:.*block_sparse_moe.gate$", "re:.*mlp.gate$")
          untouched.insert("re:.*" + r + "$");
        }
      }
      if (!it.q) {
        if (auto f = floats.find(name); f != floats.end() && f->second.size() * st_dtype_size(t->dtype) != t->nbytes)
          fail(Errc::invalid_model, "gptq: {} holds {} bytes, not {} values", name, t->nbytes, f->second.size());
        specs.push_back({name, t->dtype, t->shape});
        items.push_back(it);
        continue;
      }
      const GptqMatrix& q = *it.q;
      if (t->shape.size() != 2 || t->shape[0] != q.rows || t->shape[1] != q.cols)
        fail(Errc::invalid_model, "gptq: {} has shape [{}], not [{}, {}]", name, fmt::join(t->shape, ", "), q.rows, q.cols);
      ws.scale_dtype = t->dtype;
      gp_specs(it.module, q, ws, specs);
      d.n_quantized += q.rows * q.cols;
      items.push_back(it);
    }
  }
  for (const auto& [m, q] : shapes)
    if (!written.count(m)) fail(Errc::invalid_model, "gptq: {}.weight is not in the checkpoint's files", m);
  for (const auto& f : open) d.source_bytes += f->file_size();

  const fs::path& tmp = od.make_tmp();
  progress.message(fmt::format("Writing {} ({} tensors)", od.dir().string(), specs.size()));
  for (const auto& s : specs) d.data_bytes += s.nbytes();
  {
    ShardedSafetensorsWriter out(tmp, specs);
    std::vector<uint8_t> raw;
    GptqMatrix scratch;
    progress.update("Writing", 0, static_cast<int64_t>(items.size()), "tensors");
    for (size_t i = 0; i < items.size(); ++i) {
      ctx.check_cancelled();
      const Item& it = items[i];
      const StTensor& t = *it.t;
      if (auto f = floats.find(t.name); !it.q && f != floats.end()) {
        const size_t es = st_dtype_size(t.dtype);
        raw.assign(t.nbytes, 0);
        for (size_t k = 0; k < f->second.size(); ++k) gp_store(t.dtype, f->second[k], raw.data() + k * es);
        out.write(t.name, raw.data(), raw.size());
      } else if (!it.q) {
        raw.resize(t.nbytes);
        if (t.nbytes) it.file->read(t.begin, t.nbytes, raw.data());
        out.write(t.name, raw.data(), raw.size());
      } else {
        ws.scale_dtype = t.dtype;
        if (ws.static_input) {
          const auto is = input_scales.find(it.key);
          if (is == input_scales.end()) fail(Errc::invalid_argument, "gptq: no input scale for {}", it.module);
          const float stored = gp_round_scale(is->second, t.dtype == StDtype::BF16 ? 17 : t.dtype == StDtype::F16 ? 16 : 0);
          if (!std::isfinite(stored) || stored <= 0)
            fail(Errc::smoothquant_failed, "gptq: {}: input scale {} is not a positive finite {}; nothing was written",
                 it.module, is->second, st_dtype_name(t.dtype));
          ws.input_scale = is->second;
        }
        gp_write(out, it.module, fetch(it.key, scratch), ws);
      }
      progress.update("Writing", static_cast<int64_t>(i + 1), static_cast<int64_t>(items.size()), "tensors");
    }
    out.commit();
    d.files = out.file_names();
  }
  progress.finish("Writing");

  const GptqParams& pp = cfg.params;
  if (ws.int8) {
    config["quantization_config"] = ct::w8a8_quantization_config(ct::W8A8Scheme{true, ws.static_input});
  } else if (cfg.layout == GptqLayout::compressed_tensors) {
    const std::string ao = pp.act_order == GptqActOrder::group ? "group"
                           : pp.act_order == GptqActOrder::static_groups ? "static" : "";
    config["quantization_config"] = gptq_pack::ct_pack_quantization_config(bits, pp.group_size, pp.sym, ao);
  } else if (cfg.layout == GptqLayout::awq) {
    config["quantization_config"] = gptq_pack::awq_quantization_config(pp.group_size);
  } else {
    const auto qc = gptq_pack::gptq_quantize_config(bits, pp.group_size, pp.sym, pp.act_order != GptqActOrder::none,
                                                    pp.act_order == GptqActOrder::static_groups, pp.damp,
                                                    cfg.layout == GptqLayout::gptq_v2);
    config["quantization_config"] = qc;
    write_file_atomic(tmp / "quantize_config.json", qc.dump(2) + "\n");
    d.files.insert(d.files.begin(), "quantize_config.json");
  }
  if (config["quantization_config"].contains("ignore"))
    for (const auto& u : untouched) config["quantization_config"]["ignore"].push_back(u);
  write_file_atomic(tmp / "config.json", config.dump(2) + "\n");
  d.files.insert(d.files.begin(), "config.json");
  for (const auto& e : fs::directory_iterator(src_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && sq_impl::sq_copied_file(name)) {
      fs::copy_file(e.path(), tmp / name, fs::copy_options::overwrite_existing, ec);
      if (ec) fail(Errc::output_error, "cannot copy {} into {}: {}", e.path().string(), tmp.string(), ec.message());
      d.files.push_back(name);
    }
  }
  return d;
}

}  // namespace gptq_impl

GptqResult GptqQuantizer::Impl::write(const fs::path& dir_in, const Context& ctx) {
  if (!done) fail(Errc::invalid_argument, "gptq: write() before run()");
  const auto t0 = std::chrono::steady_clock::now();
  OutputDir od(dir_in, {"compressed-tensors", "gptq", "awq"}, "quantized output");
  const GpDirectory d = gp_write_directory(
      src.path(), od, cfg, results,
      [this](const std::string& m, GptqMatrix&) -> const GptqMatrix& { return results.at(m); }, floats, ctx);
  ctx.check_cancelled();
  od.publish();
  GptqResult& r = summary;
  r.n_parameters = d.n_parameters;
  r.n_quantized = d.n_quantized;
  r.source_bytes = d.source_bytes;
  r.files = d.files;
  r.output = od.dir();
  r.output_bytes = 0;
  std::error_code ec;
  for (const auto& f : r.files) r.output_bytes += fs::file_size(od.dir() / f, ec);
  r.bpw = r.n_parameters > 0 ? 8.0 * static_cast<double>(d.data_bytes) / static_cast<double>(r.n_parameters) : 0;
  r.seconds = r.calibration_seconds + r.quantize_seconds + gp_seconds_since(t0);
  return r;
}

GptqQuantizer::GptqQuantizer(const ModelSource& source, GptqConfig config)
    : impl_(std::make_unique<Impl>(source, std::move(config))) {}
GptqQuantizer::~GptqQuantizer() = default;
void GptqQuantizer::set_calibration(const CalibrationData& data) { impl_->set_calibration(data); }
void GptqQuantizer::run(const Context& ctx) { impl_->run(ctx); }
GptqResult GptqQuantizer::write(const fs::path& dir, const Context& ctx) { return impl_->write(dir, ctx); }
const GptqMatrix& GptqQuantizer::matrix(const std::string& module) const {
  auto it = impl_->results.find(module);
  if (it == impl_->results.end()) fail(Errc::invalid_argument, "gptq: no quantized matrix for {}", module);
  return it->second;
}
Model& GptqQuantizer::model() { return *impl_->model; }

void GptqQuantizer::set_matrix(const std::string& module, GptqMatrix q, const GptqLayerReport& report) {
  Impl& im = *impl_;
  auto x = std::find_if(im.linears.begin(), im.linears.end(), [&](const GpLinear& l) { return l.module == module; });
  if (x == im.linears.end()) fail(Errc::invalid_argument, "gptq: no decoder linear {}", module);
  if (q.rows != x->rows || q.cols != x->cols)
    fail(Errc::invalid_argument, "gptq: {} is {} x {}, not {} x {}", module, x->rows, x->cols, q.rows, q.cols);
  im.apply(*x, q);
  im.summary.layers.push_back(report);
  im.summary.damp_raises += report.damp_raises;
  im.results[module] = std::move(q);
}

std::vector<float> gptq_impl::gp_checkpoint_floats(const ModelTensor& t, std::vector<float>& values) {
  const QuantType st = t.checkpoint_type();
  std::vector<float> stored(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    float v = t.plus_one ? values[i] - 1.0f : values[i];
    if (st == QuantType::BF16) v = bf16_to_f32(f32_to_bf16(v));
    else if (st == QuantType::F16) v = fp16_to_f32(f32_to_fp16(v));
    stored[i] = v;
    values[i] = t.plus_one ? v + 1.0f : v;
  }
  return stored;
}

void GptqQuantizer::set_float_tensor(const std::string& gguf_name, std::vector<float> values) {
  Impl& im = *impl_;
  const ModelTensor& t = im.src.at(gguf_name);
  if (static_cast<int64_t>(values.size()) != t.n_elements())
    fail(Errc::invalid_argument, "gptq: {} has {} values, not {}", gguf_name, t.n_elements(), values.size());
  std::vector<float> stored = gp_checkpoint_floats(t, values);
  im.model->replace_tensor(gguf_name, values, QuantType::F32);
  im.floats[t.source_name] = std::move(stored);
}

void GptqQuantizer::finish_external(const GptqResult& stats) { impl_->finish(stats); }
const GptqResult& GptqQuantizer::summary() const { return impl_->summary; }

}  // namespace lq
