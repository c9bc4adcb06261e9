// Primitives the i-quant and ternary kernels need beyond xsimd 8.1's portable set (a native
// gather, byte table lookups, int8 dot products). Each is one function template with a branch per
// instruction set, chosen at compile time from the Arch parameter; the branches of other ISAs are
// never instantiated, so each isa_*.cpp only sees the instructions its flags allow.
#pragma once

#include "arch.hpp"

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

namespace lq::cpu {

/// t[i] for every lane (vgatherdps on AVX2/AVX-512; element loads on SSE2).
template <class Arch>
inline xsimd::batch<float, Arch> gather(const float* t, const xsimd::batch<int32_t, Arch>& i) {
  if constexpr (std::is_same_v<Arch, Avx512>) {
    return _mm512_i32gather_ps(i, t, 4);
  } else if constexpr (std::is_same_v<Arch, Avx2>) {
    return _mm256_i32gather_ps(t, i, 4);
  } else {
    return xsimd::batch<float, Arch>::gather(t, i);
  }
}

/// The 16 partial sums held in 16 / width batches (lane l of the 16-lane layout in batch l / width),
/// added in ref::reduce_lanes()'s order: (l, l+8), (l, l+4), (l, l+2), (0, 1).
template <class Arch>
inline float reduce16(const xsimd::batch<float, Arch>* acc) {
  __m128 s4;
  if constexpr (std::is_same_v<Arch, Avx512>) {
    const __m512 v = acc[0];
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  } else if constexpr (std::is_same_v<Arch, Avx2>) {
    const __m256 s8 = _mm256_add_ps(acc[0], acc[1]);
    s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  } else {
    s4 = _mm_add_ps(_mm_add_ps(acc[0], acc[2]), _mm_add_ps(acc[1], acc[3]));
  }
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

}  // namespace lq::cpu
