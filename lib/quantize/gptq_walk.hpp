// Internal: the parts of GPTQ's column walk that its own grid (gptq.cpp) and the GGUF grids
// (gptq_gguf.cpp) share: the Hessian's dead columns, the Cholesky factor of its inverse, and the
// error feedback in lazy batches of columns.
#pragma once

#include <lq/error.hpp>
#include <lq/gptq.hpp>
#include <lq/threads.hpp>

#include "backend/ops.hpp"
#include "core/fail.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

namespace lq::gptq_impl {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
/// A contiguous row-major matrix held by a RowMat or mapped over storage of its own (a streamed
/// run's Hessian or weights handed over).
using RowRef = Eigen::Ref<RowMat>;

/// GPTQ's dead columns (H_ii = 0: no signal): their weights in W are zeroed, each counted in dead.
inline void gp_dead_columns(const float* h, int64_t cols, RowRef W, int64_t& dead) {
  for (int64_t c = 0; c < cols; ++c)
    if (h[c * cols + c] == 0) {
      W.col(c).setZero();
      ++dead;
    }
}

/// H (cols x cols) as GPTQ factors it, into A in walk order (walk position j is column perm[j];
/// an empty perm keeps the order), a dead column's H_ii set to 1. Errc::smoothquant_failed when H
/// holds NaN or infinite values.
inline void gp_live_hessian(const float* h, int64_t cols, const std::vector<int32_t>& perm, RowMat& A) {
  A.resize(cols, cols);
  for (int64_t j = 0; j < cols; ++j) {
    const int64_t pj = perm.empty() ? j : perm[static_cast<size_t>(j)];
    const float* src = h + pj * cols;
    float* dst = A.row(j).data();
    if (perm.empty()) std::copy(src, src + cols, dst);
    else
      for (int64_t k = 0; k < cols; ++k) dst[k] = src[perm[static_cast<size_t>(k)]];
    for (int64_t k = 0; k < cols; ++k)
      if (!std::isfinite(dst[k])) fail(Errc::smoothquant_failed, "gptq: the Hessian holds NaN or infinite values");
    if (dst[j] == 0) dst[j] = 1;
  }
}

/// gp_live_hessian in H's own storage: rows and columns permuted in place (one row of scratch).
inline void gp_live_hessian_inplace(RowRef H, const std::vector<int32_t>& perm) {
  const int64_t cols = H.rows();
  if (!perm.empty()) {
    std::vector<float> tmp(static_cast<size_t>(cols));
    std::vector<char> done(static_cast<size_t>(cols), 0);
    for (int64_t s = 0; s < cols; ++s) {  // row j <- row perm[j], cycle by cycle
      if (done[static_cast<size_t>(s)]) continue;
      std::copy(H.row(s).data(), H.row(s).data() + cols, tmp.data());
      int64_t j = s;
      for (;;) {
        done[static_cast<size_t>(j)] = 1;
        const int64_t from = perm[static_cast<size_t>(j)];
        if (from == s) {
          std::copy(tmp.begin(), tmp.end(), H.row(j).data());
          break;
        }
        std::copy(H.row(from).data(), H.row(from).data() + cols, H.row(j).data());
        j = from;
      }
    }
    for (int64_t j = 0; j < cols; ++j) {
      float* r = H.row(j).data();
      for (int64_t k = 0; k < cols; ++k) tmp[static_cast<size_t>(k)] = r[perm[static_cast<size_t>(k)]];
      std::copy(tmp.begin(), tmp.end(), r);
    }
  }
  for (int64_t j = 0; j < cols; ++j) {
    float* r = H.row(j).data();
    for (int64_t k = 0; k < cols; ++k)
      if (!std::isfinite(r[k])) fail(Errc::smoothquant_failed, "gptq: the Hessian holds NaN or infinite values");
    if (r[j] == 0) r[j] = 1;
  }
}

/// diag(H) with GPTQ's dead columns (H_ii = 0) set to 1: the act-order key.
inline std::vector<float> gp_live_diagonal(const float* h, int64_t cols) {
  std::vector<float> d(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) {
    const float v = h[c * cols + c];
    d[static_cast<size_t>(c)] = v == 0 ? 1.0f : v;
  }
  return d;
}

/// The back-end's float GEMM, C = A·Bᵀ (+ C) (EngineOps::gemm).
using GpGemmFn = void (*)(const detail::GemmArgs&);

/// The lower triangle of H += XᵀX for the n rows (tokens) of x, cols inputs each (gp_finish_gram
/// completes H): Xᵀ is formed once (tiled, on the threads), then each stripe of rows of H is one product of the back-end's
/// GEMM (vectorised for the CPU it runs on), the stripes on the threads. Each product packs the
/// rows of Xᵀ its stripe reaches, so the stripes are as tall as keeps four a thread (128 to 512
/// rows): at 8192 columns on two threads, 512-row stripes pack a quarter of what 128-row ones did.
/// An entry's sum runs over the tokens in the GEMM's own order whatever the stripe it falls in, so
/// H is the same for any stripe height and thread count. `stripe` > 0 sets the height (the
/// benchmark's comparison).
inline void gp_add_gram(RowMat& H, const float* x, int64_t n, int64_t cols, int threads, GpGemmFn gemm,
                        int64_t stripe = 0) {
  const int64_t nt = std::max(1, threads > 0 ? threads : hardware_threads());
  const int64_t kStripe = stripe > 0 ? stripe : 128 * std::clamp<int64_t>(cols / (128 * 4 * nt), 1, 4);
  // Xᵀ in 32 x 32 tiles, blocks of columns on the threads (a plain transposing copy ran at a sixth
  // of this speed, single-threaded: at 4096 tokens x 2048 columns it took longer than the products).
  constexpr int64_t kTile = 32;
  RowMat Xt(cols, n);
  parallel_for((cols + kTile - 1) / kTile, threads, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t c0 = b0 * kTile; c0 < std::min(cols, b1 * kTile); c0 += kTile)
      for (int64_t t0 = 0; t0 < n; t0 += kTile) {
        const int64_t c1 = std::min(c0 + kTile, cols), t1 = std::min(t0 + kTile, n);
        for (int64_t c = c0; c < c1; ++c) {
          float* dst = Xt.data() + c * n;
          for (int64_t t = t0; t < t1; ++t) dst[t] = x[t * cols + c];
        }
      }
  });
  const int64_t stripes = (cols + kStripe - 1) / kStripe;
  parallel_for(stripes, threads, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t i = s0; i < s1; ++i) {  // the longer stripes first (handed out in this order)
      const int64_t r0 = (stripes - 1 - i) * kStripe, h = std::min(kStripe, cols - r0);
      detail::GemmArgs g{h, r0 + h, n, Xt.data() + r0 * n, n, Xt.data(), QuantType::F32, n, H.data() + r0 * cols, cols, true};
      g.c_causal = r0;  // row r0 + i needs columns 0 .. r0 + i (the lower triangle)
      gemm(g);
    }
  });
}

/// H from gp_add_gram's sums: scaled (GPTQ's 2 / tokens) and mirrored into its upper triangle.
inline void gp_finish_gram(RowMat& H, float scale) {
  for (int64_t i = 0; i < H.rows(); ++i)
    for (int64_t j = 0; j <= i; ++j) H(j, i) = H(i, j) = H(i, j) * scale;
}

/// The upper Cholesky factor U of (H + λI)^-1 (H^-1 = UᵀU), in place: A holds the live Hessian
/// (gp_live_hessian) and ends as U (the same for any thread count); λ = damp x mean(diag H) is
/// raised x10 on failure, H restored from the triangle the attempt left alone. The factorization's
/// and the inverse's large products run on `gemm` (the back-end's), in fixed stripes. False when
/// every attempt failed (A then holds no factor).
bool gp_inverse_factor(RowRef A, double damp0, int max_raises, double& damp_used, int& raises, int threads,
                       GpGemmFn gemm);

/// gptq_quantize_matrix on the weights w (rows x cols), whose storage becomes the walk's matrix
/// and is released, and the Hessian H (cols x cols), whose storage, with take_h, becomes the
/// inverse's factor and is released: the streamed quantizer holds no second copy of either (the
/// last linear on an input takes its Hessian).
GptqMatrix gp_quantize_consuming(std::vector<float>& w, int64_t rows, int64_t cols, RowMat& H, bool take_h,
                                 const GptqParams& p, const Context& ctx);

/// GPTQ's error feedback over the rows of W (updated in place), column after column in lazy batches
/// of B columns: quant(r, i, wr) rounds column i of row r (wr: the row's weights with the feedback
/// of the earlier columns) and returns the value it stands for; the error, over U_ii, moves to the
/// later columns through U (the upper Cholesky factor of H^-1). Per batch, the rows walk its
/// columns in fixed chunks of rows (make_quant() gives each chunk its own rounding state, kept
/// across batches), then the later columns take the batch's errors in one product per fixed stripe
/// of columns on the back-end's GEMM: U is transposed in place for that (its rows then give the
/// product's operand directly). Chunks and stripes, not the thread count, fix every sum's order.
/// Returns the loss, the sum of err² / 2.
template <class Mat, class UMat, class MakeQuant>
double gp_feedback_walk(Mat& W, UMat& U, int64_t B, int threads, GpGemmFn gemm, const MakeQuant& make_quant) {
  constexpr int64_t kRows = 32, kCols = 256;
  const int64_t rows = W.rows(), cols = W.cols();
  U.transposeInPlace();  // lower: row j holds U(., j)
  const UMat& Ut = U;
  const int64_t chunks = (rows + kRows - 1) / kRows;
  std::vector<decltype(make_quant())> quants;
  quants.reserve(static_cast<size_t>(chunks));
  for (int64_t c = 0; c < chunks; ++c) quants.push_back(make_quant());
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  RowMat E(rows, B), D(B, B);  // the batch's negated errors; its block of U
  for (int64_t i1 = 0; i1 < cols; i1 += B) {
    const int64_t i2 = std::min(i1 + B, cols), cnt = i2 - i1;
    for (int64_t a = 0; a < cnt; ++a)
      for (int64_t b = 0; b < cnt; ++b) D(a, b) = Ut(i1 + b, i1 + a);
    parallel_for(chunks, threads, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        auto& quant = quants[static_cast<size_t>(c)];
        for (int64_t r = c * kRows; r < std::min(rows, (c + 1) * kRows); ++r) {
          float* wr = W.row(r).data();
          double loss = 0;
          for (int64_t i = i1; i < i2; ++i) {
            const float dq = quant(r, i, wr);
            const float* di = D.row(i - i1).data() - i1;
            const float err = (wr[i] - dq) / di[i];
            loss += static_cast<double>(err) * err / 2;
            for (int64_t k2 = i + 1; k2 < i2; ++k2) wr[k2] -= err * di[k2];
            E(r, i - i1) = -err;
          }
          row_loss[static_cast<size_t>(r)] += loss;
        }
      }
    });
    if (i2 < cols) {
      const int64_t stripes = (cols - i2 + kCols - 1) / kCols;
      parallel_for(stripes, threads, 1, [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0; s < s1; ++s) {
          const int64_t j0 = i2 + s * kCols, nj = std::min(kCols, cols - j0);
          detail::GemmArgs g{rows, nj, cnt, E.data(), B, Ut.data() + j0 * cols + i1, QuantType::F32, cols,
                             W.data() + j0, cols, true};
          gemm(g);
        }
      });
    }
  }
  double total = 0;
  for (double l : row_loss) total += l;
  return total;
}

}  // namespace lq::gptq_impl
