// Summation order shared by the scalar quantizers and their xsimd twins.
//
// Floating-point sums depend on their order, and a quantizer's decisions depend on its sums. To
// let a vectorised quantizer write the same bytes as the scalar one, every search sum is taken in
// 16 interleaved partial sums (element j goes to lane j % 16, in increasing j) and the 16 lanes are
// then added pairwise by reduce_lanes(). A 4-, 8- or 16-wide vector unit reproduces this exactly:
// it keeps 16 / width accumulators, stores them to 16 floats and calls reduce_lanes().
// Everything here has internal linkage: the per-ISA kernel TUs include this header too, and an
// inline function with external linkage could be merged across them and run AVX code on the
// SSE2 path (or in the reference).
#pragma once

#include <bit>
#include <cstdint>

namespace lq::ref {
namespace {

inline constexpr int kLanes = 16;

/// Adds 16 partial sums in the fixed order (l, l+8), (l, l+4), (l, l+2), (0, 1).
inline float reduce_lanes(const float* a) {
  float s[8];
  for (int l = 0; l < 8; ++l) s[l] = a[l] + a[l + 8];
  for (int l = 0; l < 4; ++l) s[l] = s[l] + s[l + 4];
  for (int l = 0; l < 2; ++l) s[l] = s[l] + s[l + 2];
  return s[0] + s[1];
}

/// v when c holds, else +0 (a bit mask, like a vector select; compilers vectorise it).
inline float keep_if(bool c, float v) {
  return std::bit_cast<float>(std::bit_cast<uint32_t>(v) & (0u - static_cast<uint32_t>(c)));
}

}  // namespace
}  // namespace lq::ref
