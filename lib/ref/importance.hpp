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

#include "ref/lanes.hpp"

#include <algorithm>
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

}  // namespace
}  // namespace lq::ref
