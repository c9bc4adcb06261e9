// Scalar reference kernels: ternary types TQ1_0 and TQ2_0 (values in {-d, 0, +d} per 256 values).
#pragma once

#include <cstdint>

namespace lq::ref {

void quantize_tq1_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_tq2_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void dequantize_tq1_0(const void* src, float* dst, int64_t n);
void dequantize_tq2_0(const void* src, float* dst, int64_t n);
float dot_tq1_0(int64_t n, const void* x, const void* y);  // y: Q8_K
float dot_tq2_0(int64_t n, const void* x, const void* y);  // y: Q8_K

/// Scale search of the ternary quantizers, shared with their xsimd twins. For a threshold t the
/// best scale is d = sum_{|x|>t} w|x| / sum_{|x|>t} w and the error falls by (sum w|x|)^2 / sum w;
/// the next threshold is d / 2 (Lloyd's iteration, which never increases the error).
struct TernarySearch {
  float t = 0;      ///< threshold of the next pass
  float d = 0;      ///< best scale so far
  float best = 0;   ///< its error reduction
  bool more = false;

  /// Starts from the block's weighted mean |x| (a = sum w|x|, s = sum w).
  void start(float a, float s) {
    more = a > 0 && s > 0;
    t = more ? 0.75f * (a / s) : 0.f;
  }
  /// Takes the masked sums of the pass at threshold t; returns whether another pass is wanted.
  bool step(float sa, float sw, int pass) {
    more = false;
    if (!(sw > 0)) return false;
    const float gain = sa * (sa / sw);
    if (!(gain > best)) return false;
    best = gain;
    d = sa / sw;
    const float next = 0.5f * d;
    more = next != t && pass + 1 < kMaxPasses;
    t = next;
    return more;
  }
  static constexpr int kMaxPasses = 3;
};

/// Trit (0, 1, 2 for -1, 0, +1) of x against the stored scale: nonzero when |x| > d/2.
inline int ternary_trit(float x, float half_d) {
  return 1 + static_cast<int>(x > half_d) - static_cast<int>(x < -half_d);
}

}  // namespace lq::ref
