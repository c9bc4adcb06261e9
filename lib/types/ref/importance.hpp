// Importance weights of the i-quant and ternary quantizers.
//
// An imatrix entry is the mean square of one input column's activations, so sum_j q_j e_j^2 is
// the expected output error of a row with weight errors e_j. Columns the calibration text hardly
// used get q_j near zero, and the search then spends nothing on them although other inputs may
// use them; on tensors with very uneven imatrix values (ffn_down) that raises the plain RMSE
// above that of llama.cpp's files. Adding half the row's mean importance to every column keeps
// the imatrix-weighted error essentially unchanged while bounding that loss.
// Everything here has internal linkage: the per-ISA kernel TUs include this header too, and an
// inline function with external linkage could be merged across them and run AVX code on the
// SSE2 path (or in the reference).
#pragma once

#include "types/ref/lanes.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace lq::ref {
namespace {

inline constexpr float kImportanceFloor = 0.5f;

/// An importance value with NaN or negative entries as 0 and huge ones capped.
inline float sanitize_importance(float q) { return q >= 0 ? std::min(q, 1e15f) : 0.f; }

/// kImportanceFloor times the mean of the n (a multiple of 16) sanitised importance values. The
/// quantizers ignore an importance vector whose floor is 0 (all zero or invalid).
inline float importance_floor(const float* qw, int64_t n) {
  float acc[kLanes] = {};
  for (int64_t j = 0; j < n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] = acc[l] + sanitize_importance(qw[j + l]);
  return kImportanceFloor * (reduce_lanes(acc) / static_cast<float>(n));
}

/// Walks rows of n_per_row values in blocks of kBlock: f(i, x, qw, qfloor) for block i (row-major
/// over all rows) with x its values, qw its importance values (null where none were given or
/// their floor is 0) and qfloor the importance floor of the rows.
template <int kBlock, class F>
inline void for_each_weighted_block(const float* src, int64_t nrows, int64_t n_per_row, const float* imatrix, F&& f) {
  const int64_t nb = n_per_row / kBlock;
  const float qfloor = imatrix ? importance_floor(imatrix, n_per_row) : 0.f;
  if (!(qfloor > 0)) imatrix = nullptr;  // no usable importance in these rows
  for (int64_t r = 0; r < nrows; ++r)
    for (int64_t b = 0; b < nb; ++b)
      f(r * nb + b, src + r * n_per_row + b * kBlock, imatrix ? imatrix + b * kBlock : nullptr, qfloor);
}

/// Per-value weights of one 256-value super-block: qw[i] * sqrt(sigma2 + x[i]^2) with sigma2 =
/// sigma_mult * mean(x^2) (qw null: the magnitude factor alone), plus `floor` added to qw. The
/// imatrix weighs the expected output error of a column; the magnitude factor further weighs
/// each error by its value's size, which the diagonal imatrix objective misses: large weights
/// carry the coherent part of a row's output and their errors do the most harm (measured: KL
/// divergence of whole models, level_quality_bench). Llama.cpp's quantizers weigh the same way.
/// The factor is evaluated on x / max|x| (only relative weights matter), so it neither overflows
/// nor underflows.
inline void magnitude_weights(const float* x, const float* qw, float floor, float sigma_mult, float* w) {
  constexpr int n = 256;
  float amax = 0, xn[n];
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const bool scaled = amax > 0 && std::isfinite(amax);
  float sumx2 = 0;
  for (int i = 0; i < n; ++i) {
    xn[i] = scaled ? x[i] / amax : 0.f;  // a division: 1 / amax overflows for subnormal amax
    sumx2 += xn[i] * xn[i];
  }
  const float sigma2 = sigma_mult * sumx2 / n;
  for (int i = 0; i < n; ++i) {
    const float m = std::sqrt(sigma2 + xn[i] * xn[i]);
    w[i] = qw ? (qw[i] + floor) * m : m;
  }
}

}  // namespace
}  // namespace lq::ref
