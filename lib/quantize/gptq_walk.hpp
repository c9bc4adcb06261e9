// Internal: the parts of GPTQ's column walk that its own grid (gptq.cpp) and the GGUF grids
// (gptq_gguf.cpp) share: the Hessian's dead columns, the Cholesky factor of its inverse, and the
// error feedback in lazy batches of columns.
#pragma once

#include <lq/error.hpp>
#include <lq/threads.hpp>

#include "core/fail.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace lq::gptq_impl {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// H (cols x cols) as GPTQ factors it: a dead column (H_ii = 0, no signal) gets H_ii = 1 and its
/// weights in W are zeroed, each counted in `dead`. Errc::smoothquant_failed when H holds NaN or
/// infinite values.
inline std::vector<float> gp_live_hessian(const float* h, int64_t cols, RowMat& W, int64_t& dead) {
  std::vector<float> hh(h, h + cols * cols);
  for (int64_t c = 0; c < cols; ++c)
    if (hh[static_cast<size_t>(c * cols + c)] == 0) {
      hh[static_cast<size_t>(c * cols + c)] = 1;
      W.col(c).setZero();
      ++dead;
    }
  for (float v : hh)
    if (!std::isfinite(v)) fail(Errc::smoothquant_failed, "gptq: the Hessian holds NaN or infinite values");
  return hh;
}

/// The upper Cholesky factor of (H + λI)^-1 (gptq.cpp), raising λ x10 on failure; false when every
/// attempt failed.
bool gp_inverse_factor(const float* h, int64_t n, double damp0, int max_raises, RowMat& U, double& damp_used,
                       int& raises);

/// GPTQ's error feedback over the rows of W (updated in place), column after column in lazy batches
/// of B columns: quant(r, i, wr) rounds column i of row r (wr: the row's weights with the feedback
/// of the earlier columns) and returns the value it stands for; the error, over U_ii, moves to the
/// later columns through U (the upper Cholesky factor of H^-1). make_quant() gives each parallel
/// chunk of rows its own rounding state. Returns the loss, the sum of err² / 2.
template <class MakeQuant>
double gp_feedback_walk(RowMat& W, const RowMat& U, int64_t B, int threads, const MakeQuant& make_quant) {
  const int64_t rows = W.rows(), cols = W.cols();
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  // Rows are independent: each chunk of rows walks all columns with its own error block.
  parallel_for(rows, threads, 8, [&](int64_t r0, int64_t r1) {
    const int64_t R = r1 - r0;
    auto Wc = W.middleRows(r0, R);
    RowMat E(R, B);
    auto quant = make_quant();
    for (int64_t i1 = 0; i1 < cols; i1 += B) {
      const int64_t i2 = std::min(i1 + B, cols), cnt = i2 - i1;
      for (int64_t rr = 0; rr < R; ++rr) {
        const int64_t r = r0 + rr;
        float* wr = Wc.row(rr).data();
        double loss = 0;
        for (int64_t i = i1; i < i2; ++i) {
          const float dq = quant(r, i, wr);
          const float err = (wr[i] - dq) / U(i, i);
          loss += static_cast<double>(err) * err / 2;
          const float* ui = U.row(i).data();
          for (int64_t k2 = i + 1; k2 < i2; ++k2) wr[k2] -= err * ui[k2];
          E(rr, i - i1) = err;
        }
        row_loss[static_cast<size_t>(r)] += loss;
      }
      if (i2 < cols) Wc.rightCols(cols - i2).noalias() -= E.leftCols(cnt) * U.block(i1, i2, cnt, cols - i2);
    }
  });
  double total = 0;
  for (double l : row_loss) total += l;
  return total;
}

}  // namespace lq::gptq_impl
