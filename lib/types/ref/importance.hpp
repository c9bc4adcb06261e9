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

/// One block of a row walk (WeightedBlocks): i its index over all rows (row-major), x its values,
/// qw its importance values (null where none were given or their floor is 0).
struct WeightedBlock {
  int64_t i;
  const float* x;
  const float* qw;
};

/// The blocks of kBlock values of rows of n_per_row values, in order, for a range-for; qfloor is
/// the importance floor of the rows.
template <int kBlock>
class WeightedBlocks {
 public:
  WeightedBlocks(const float* src, int64_t nrows, int64_t n_per_row, const float* imatrix)
      : qfloor(imatrix ? importance_floor(imatrix, n_per_row) : 0.f),
        src_(src),
        imatrix_(qfloor > 0 ? imatrix : nullptr),
        nrows_(nrows),
        n_per_row_(n_per_row),
        nb_(n_per_row / kBlock) {}

  class iterator {
   public:
    iterator(const WeightedBlocks& w, int64_t r) : w_(w), r_(r) {}
    WeightedBlock operator*() const {
      return {r_ * w_.nb_ + b_, w_.src_ + r_ * w_.n_per_row_ + b_ * kBlock,
              w_.imatrix_ ? w_.imatrix_ + b_ * kBlock : nullptr};
    }
    iterator& operator++() {
      if (++b_ == w_.nb_) {
        b_ = 0;
        ++r_;
      }
      return *this;
    }
    bool operator!=(const iterator& o) const { return r_ != o.r_ || b_ != o.b_; }

   private:
    const WeightedBlocks& w_;
    int64_t r_, b_ = 0;
  };
  iterator begin() const { return {*this, nb_ > 0 ? 0 : nrows_}; }
  iterator end() const { return {*this, nrows_}; }

  const float qfloor;

 private:
  const float* src_;
  const float* imatrix_;
  int64_t nrows_, n_per_row_, nb_;
};

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
