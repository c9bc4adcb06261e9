// CPU kernels: legacy 32-value block types.
//   QuantizeQ8_0                 byte-identical to the reference quantizer.
//   DotQ8_0, DotQ4_0, DotQ5_0    against Q8_0 activations; DotQ4_1, DotQ5_1 against Q8_1.
// The dots need AVX2 integer instructions; the SSE2 instantiation calls the scalar reference.
// Check them with `lq_tests "[engine]"` (quantized dot vs reference).
#pragma once

#include "arch.hpp"

#include "half.hpp"
#include "ref/blocks.hpp"
#include "ref/legacy.hpp"

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

namespace lq::cpu {

// Q8_0 quantizer, byte-identical to ref::quantize_q8_0 (same operations in the same order:
// absmax, d = amax / 127, id = 1 / d, round half away from zero).
template <class Arch>
struct QuantizeQ8_0 {
  static void run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
};

template <class Arch>
void QuantizeQ8_0<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float*) {
    using B = xsimd::batch<float, Arch>;
    constexpr int W = static_cast<int>(B::size);
    auto* y = static_cast<ref::block_q8_0*>(dst);
    const int64_t nb = nrows * n_per_row / 32;
    for (int64_t ib = 0; ib < nb; ++ib) {
      const float* x = src + ib * 32;
      B vmax(0.f);
      for (int j = 0; j < 32; j += W) vmax = xsimd::max(vmax, xsimd::abs(B::load_unaligned(x + j)));
      const float amax = hmax(vmax);
      const float d = amax / 127.f;
      const float id = d ? 1.0f / d : 0.0f;
      y[ib].d = f32_to_fp16(d);
      const B vid(id);
      alignas(64) float tmp[32];
      for (int j = 0; j < 32; j += W) xsimd::round(B::load_unaligned(x + j) * vid).store_aligned(tmp + j);
      for (int j = 0; j < 32; ++j) y[ib].qs[j] = static_cast<int8_t>(tmp[j]);
    }
}

template <class Arch>
struct DotQ8_0 {
  static float run(int64_t n, const void* x, const void* y);
};
template <class Arch>
struct DotQ4_0 {
  static float run(int64_t n, const void* x, const void* y);
};
template <class Arch>
struct DotQ4_1 {
  static float run(int64_t n, const void* x, const void* y);
};
template <class Arch>
struct DotQ5_0 {
  static float run(int64_t n, const void* x, const void* y);
};
template <class Arch>
struct DotQ5_1 {
  static float run(int64_t n, const void* x, const void* y);
};

namespace detail {

template <class Arch>
inline constexpr bool has_avx2 = Arch::version() >= xsimd::avx2::version();

// Integer block products (xsimd 8.1 has no widening int8 multiply-add). 32 signed x 32 signed
// bytes: |x| * sign(y, x) through maddubs (each int16 pair sum stays below 2 * 127 * 128), then
// madd with ones gives 8 int32 lanes. Only instantiated for AVX2-capable Arch.
template <class Arch>
inline __m256i i8_pair_sums(__m256i x, __m256i y) {
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
// 32 unsigned (0..31) x 32 signed bytes.
template <class Arch>
inline __m256i u8_pair_sums(__m256i x, __m256i y) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));
}
// 16 bytes of packed nibbles -> 32 bytes: low nibbles of bytes 0..15, then the high nibbles.
template <class Arch>
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}
// 32 bits -> 32 bytes, 0x10 where bit j of qh is set.
template <class Arch>
inline __m256i fifth_bits(const uint8_t* qh4) {
  uint32_t qh;
  std::memcpy(&qh, qh4, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(qh)), shuf);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}
template <class Arch>
inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
template <class Arch>
inline __m256i load32(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
template <class Arch>
inline float hsum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

}  // namespace detail

template <class Arch>
float DotQ8_0<Arch>::run(int64_t n, const void* xv, const void* yv) {
  if constexpr (!detail::has_avx2<Arch>) {
    return ref::dot_q8_0(n, xv, yv);
  } else {
    const auto* x = static_cast<const ref::block_q8_0*>(xv);
    const auto* y = static_cast<const ref::block_q8_0*>(yv);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; ++i) {
      const __m256i s = detail::i8_pair_sums<Arch>(detail::load32<Arch>(x[i].qs), detail::load32<Arch>(y[i].qs));
      const __m256 d = _mm256_set1_ps(detail::h2f<Arch>(x[i].d) * detail::h2f<Arch>(y[i].d));
      acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc);
    }
    return detail::hsum8<Arch>(acc);
  }
}

template <class Arch>
float DotQ4_0<Arch>::run(int64_t n, const void* xv, const void* yv) {
  if constexpr (!detail::has_avx2<Arch>) {
    return ref::dot_q4_0(n, xv, yv);
  } else {
    const auto* x = static_cast<const ref::block_q4_0*>(xv);
    const auto* y = static_cast<const ref::block_q8_0*>(yv);
    __m256 acc = _mm256_setzero_ps();
    const __m256i eight = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < n / 32; ++i) {
      const __m256i q = _mm256_sub_epi8(detail::unpack_nibbles<Arch>(x[i].qs), eight);
      const __m256i s = detail::i8_pair_sums<Arch>(q, detail::load32<Arch>(y[i].qs));
      const __m256 d = _mm256_set1_ps(detail::h2f<Arch>(x[i].d) * detail::h2f<Arch>(y[i].d));
      acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc);
    }
    return detail::hsum8<Arch>(acc);
  }
}

template <class Arch>
float DotQ4_1<Arch>::run(int64_t n, const void* xv, const void* yv) {
  if constexpr (!detail::has_avx2<Arch>) {
    return ref::dot_q4_1(n, xv, yv);
  } else {
    const auto* x = static_cast<const ref::block_q4_1*>(xv);
    const auto* y = static_cast<const ref::block_q8_1*>(yv);
    __m256 acc = _mm256_setzero_ps();
    float offs = 0;
    for (int64_t i = 0; i < n / 32; ++i) {
      const __m256i s = detail::u8_pair_sums<Arch>(detail::unpack_nibbles<Arch>(x[i].qs), detail::load32<Arch>(y[i].qs));
      const __m256 d = _mm256_set1_ps(detail::h2f<Arch>(x[i].d) * detail::h2f<Arch>(y[i].d));
      acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc);
      offs += detail::h2f<Arch>(x[i].m) * detail::h2f<Arch>(y[i].s);
    }
    return detail::hsum8<Arch>(acc) + offs;
  }
}

template <class Arch>
float DotQ5_0<Arch>::run(int64_t n, const void* xv, const void* yv) {
  if constexpr (!detail::has_avx2<Arch>) {
    return ref::dot_q5_0(n, xv, yv);
  } else {
    const auto* x = static_cast<const ref::block_q5_0*>(xv);
    const auto* y = static_cast<const ref::block_q8_0*>(yv);
    __m256 acc = _mm256_setzero_ps();
    const __m256i sixteen = _mm256_set1_epi8(16);
    for (int64_t i = 0; i < n / 32; ++i) {
      const __m256i q = _mm256_sub_epi8(_mm256_or_si256(detail::unpack_nibbles<Arch>(x[i].qs), detail::fifth_bits<Arch>(x[i].qh)),
                                        sixteen);
      const __m256i s = detail::i8_pair_sums<Arch>(q, detail::load32<Arch>(y[i].qs));
      const __m256 d = _mm256_set1_ps(detail::h2f<Arch>(x[i].d) * detail::h2f<Arch>(y[i].d));
      acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc);
    }
    return detail::hsum8<Arch>(acc);
  }
}

template <class Arch>
float DotQ5_1<Arch>::run(int64_t n, const void* xv, const void* yv) {
  if constexpr (!detail::has_avx2<Arch>) {
    return ref::dot_q5_1(n, xv, yv);
  } else {
    const auto* x = static_cast<const ref::block_q5_1*>(xv);
    const auto* y = static_cast<const ref::block_q8_1*>(yv);
    __m256 acc = _mm256_setzero_ps();
    float offs = 0;
    for (int64_t i = 0; i < n / 32; ++i) {
      const __m256i q = _mm256_or_si256(detail::unpack_nibbles<Arch>(x[i].qs), detail::fifth_bits<Arch>(x[i].qh));
      const __m256i s = detail::u8_pair_sums<Arch>(q, detail::load32<Arch>(y[i].qs));
      const __m256 d = _mm256_set1_ps(detail::h2f<Arch>(x[i].d) * detail::h2f<Arch>(y[i].d));
      acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc);
      offs += detail::h2f<Arch>(x[i].m) * detail::h2f<Arch>(y[i].s);
    }
    return detail::hsum8<Arch>(acc) + offs;
  }
}

#define LQ_CPU_LEGACY_KERNELS(X) X(QuantizeQ8_0) X(DotQ8_0) X(DotQ4_0) X(DotQ4_1) X(DotQ5_0) X(DotQ5_1)

}  // namespace lq::cpu
