// Primitives the i-quant and ternary kernels need beyond xsimd 8.1's portable set (a native
// gather, byte table lookups, int8 dot products). Each is one function template with a branch per
// instruction set, chosen at compile time from the Arch parameter; the branches of other ISAs are
// never instantiated, so each isa_*.cpp only sees the instructions its flags allow. The x86
// forms are compiled for x86-64 only; elsewhere (NEON) Bytes is declared and never instantiated,
// and the kernels that need it take their scalar-reference branch (kByteSimd is false).
#pragma once

#include "arch.hpp"

#if LQ_CPU_X86
#include <immintrin.h>
#endif

#include <cstdint>
#include <type_traits>

namespace lq::cpu {

/// t[i] for every lane (vgatherdps on AVX2/AVX-512; element loads on SSE2).
template <class Arch>
inline xsimd::batch<float, Arch> gather(const float* t, const xsimd::batch<int32_t, Arch>& i) {
  if constexpr (kAvx512<Arch>) {
    return _mm512_i32gather_ps(i, t, 4);
  } else if constexpr (std::is_same_v<Arch, Avx2>) {
    return _mm256_i32gather_ps(t, i, 4);
  } else {
    return xsimd::batch<float, Arch>::gather(t, i);
  }
}

/// The 16 partial sums held in 16 / width batches (lane l of the 16-lane layout in batch l / width),
/// added in ref::reduce_lanes()'s order: (l, l+8), (l, l+4), (l, l+2), (0, 1).
#if LQ_CPU_X86
template <class Arch>
inline float reduce16(const xsimd::batch<float, Arch>* acc) {
  __m128 s4;
  if constexpr (kAvx512<Arch>) {
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
#else
template <class Arch>
inline float reduce16(const xsimd::batch<float, Arch>* acc) {
  constexpr int W = static_cast<int>(xsimd::batch<float, Arch>::size);
  alignas(64) float v[16];
  for (int b = 0; b < 16 / W; ++b) acc[b].store_aligned(v + b * W);
  for (int h = 8; h >= 1; h /= 2)
    for (int l = 0; l < h; ++l) v[l] += v[l + h];
  return v[0];
}
#endif

/// Whether Arch has the 256-bit integer instructions the byte kernels use (the AVX-512 build has
/// them too; its 512-bit units gain little on these short blocks). Without them the kernels call
/// the scalar reference.
template <class Arch>
inline constexpr bool kByteSimd = std::is_same_v<Arch, Avx2> || kAvx512<Arch>;

/// 32 int8 lanes in one 256-bit register. A template only so that its AVX2 instructions are
/// compiled into the translation units whose flags allow them (kByteSimd<Arch>); declared only
/// on other processors.
template <class Arch>
struct Bytes;

#if LQ_CPU_X86
template <class Arch>
struct Bytes {
  using V = __m256i;
  using F = __m256;

  static V zero() { return _mm256_setzero_si256(); }
  static F fzero() { return _mm256_setzero_ps(); }

  static V load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  /// The 32 nibbles of 16 bytes: low nibbles first, then high nibbles (IQ4 element order).
  static V nibbles(const uint8_t* q) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    const V both = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
  }
  /// table[idx] for indices 0..15 (16 int8 values).
  static V lut16(V idx, const int8_t* table) {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(table));
    return _mm256_shuffle_epi8(_mm256_set_m128i(t, t), idx);
  }
  /// Sums of products in 8 int32 lanes, a and b signed with |a|, |b| <= 127.
  static V dot(V a, V b) {
    const V p = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
  }
  /// Same with a unsigned and small (a * |b| pairs below 2^15).
  static V dot_unsigned(V a, V b) { return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)); }
  /// Negates the lanes whose byte in m is 0xff.
  static V negate_where(V v, V m) { return _mm256_sub_epi8(_mm256_xor_si256(v, m), m); }
  /// 0xff in lane j where bit (j % 8) of byte (j / 8) of the 32-bit sign word is set.
  static V sign_mask(uint32_t bits) {
    const V spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                         _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                           0x0101010101010101, 0));
    const V bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  }
  static V madd_scale(V acc, V p, int scale) { return _mm256_add_epi32(acc, _mm256_mullo_epi32(p, _mm256_set1_epi32(scale))); }
  static __m256 fma(V p, float scale, __m256 acc) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(scale), acc);
  }
  static float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
  }
  /// Writes the 32 int8 lanes times scale as floats.
  static void store_scaled(V v, float scale, float* dst) {
    const __m256 sc = _mm256_set1_ps(scale);
    const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    _mm256_storeu_ps(dst, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), sc));
    _mm256_storeu_ps(dst + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), sc));
    _mm256_storeu_ps(dst + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), sc));
    _mm256_storeu_ps(dst + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), sc));
  }
};
#endif  // LQ_CPU_X86

}  // namespace lq::cpu
