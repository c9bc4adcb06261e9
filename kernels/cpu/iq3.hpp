// CPU kernels: IQ3_XXS and IQ3_S (the quantizers are scalar: ref/iq3.cpp).
//   DequantIq3Xxs, DequantIq3S  grid entries gathered 8 at a time, signs applied as byte masks,
//                               then floats; bit-identical to the reference decoders.
//   DotIq3Xxs, DotIq3S (x Q8_K) the same int8 values times the activations, int32 sums per
//                               sub-block scaled by its multiplier, one float FMA per block.
// Run: ./build/tests/lq_tests "[iquants-a]".
#pragma once

#include "arch.hpp"
#include "iq_simd.hpp"

#include "core/half.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/iq3.hpp"
#include "types/ref/iq_tables.hpp"

#include <cstdint>
#include <cstring>

namespace lq::cpu {

// x86 only (it gathers with AVX2); the kernels use it where kByteSimd<Arch>.
template <class Arch>
struct Iq3Decode;

#if LQ_CPU_X86
template <class Arch>
struct Iq3Decode {
  using V = Bytes<Arch>;
  using R = __m256i;

  // Sub-block ib of an IQ3_XXS block as 32 signed int8 values (grid bytes 4..62); its multiplier.
  static R xxs(const ref::block_iq3_xxs& b, int ib, int& mult) {
    uint32_t aux;
    std::memcpy(&aux, b.qs + 64 + 4 * ib, 4);
    mult = 2 * static_cast<int>(aux >> 28) + 1;
    const R idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 8 * ib)));
    const R grid = _mm256_i32gather_epi32(reinterpret_cast<const int*>(ref::iq3xxs_grid), idx, 4);
    const uint32_t signs = ref::ksigns_iq2xs[aux & 127] | (ref::ksigns_iq2xs[(aux >> 7) & 127] << 8) |
                           (ref::ksigns_iq2xs[(aux >> 14) & 127] << 16) |
                           (static_cast<uint32_t>(ref::ksigns_iq2xs[(aux >> 21) & 127]) << 24);
    return V::negate_where(grid, V::sign_mask(signs));
  }

  static R s(const ref::block_iq3_s& b, int ib, int& mult) {
    mult = 2 * ((b.scales[ib / 2] >> (4 * (ib % 2))) & 15) + 1;
    const R lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 8 * ib)));
    const R hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(b.qh[ib]), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                                  _mm256_set1_epi32(1));
    const R idx = _mm256_or_si256(lo, _mm256_slli_epi32(hi, 8));
    const R grid = _mm256_i32gather_epi32(reinterpret_cast<const int*>(ref::iq3s_grid), idx, 4);
    uint32_t signs;
    std::memcpy(&signs, b.signs + 4 * ib, 4);
    return V::negate_where(grid, V::sign_mask(signs));
  }
};
#endif  // LQ_CPU_X86

template <class Arch>
struct DequantIq3Xxs {
  static void run(const void* src, float* dst, int64_t n);
};
template <class Arch>
struct DequantIq3S {
  static void run(const void* src, float* dst, int64_t n);
};
template <class Arch>
struct DotIq3Xxs {
  static float run(int64_t n, const void* x, const void* y);
};
template <class Arch>
struct DotIq3S {
  static float run(int64_t n, const void* x, const void* y);
};

template <class Arch>
void DequantIq3Xxs<Arch>::run(const void* src, float* dst, int64_t n) {
  if constexpr (!kByteSimd<Arch>) {
    ref::dequantize_iq3_xxs(src, dst, n);
  } else {
    const auto* x = static_cast<const ref::block_iq3_xxs*>(src);
    for (int64_t i = 0; i < n / ref::QK_K; ++i) {
      const float d = fp16_to_f32(x[i].d);
      for (int ib = 0; ib < 8; ++ib) {
        int mult;
        const auto q = Iq3Decode<Arch>::xxs(x[i], ib, mult);
        Bytes<Arch>::store_scaled(q, d * (0.5f + static_cast<float>(mult / 2)) * 0.5f, dst + i * ref::QK_K + 32 * ib);
      }
    }
  }
}

template <class Arch>
void DequantIq3S<Arch>::run(const void* src, float* dst, int64_t n) {
  if constexpr (!kByteSimd<Arch>) {
    ref::dequantize_iq3_s(src, dst, n);
  } else {
    const auto* x = static_cast<const ref::block_iq3_s*>(src);
    for (int64_t i = 0; i < n / ref::QK_K; ++i) {
      const float d = fp16_to_f32(x[i].d);
      for (int ib = 0; ib < 8; ++ib) {
        int mult;
        const auto q = Iq3Decode<Arch>::s(x[i], ib, mult);
        Bytes<Arch>::store_scaled(q, d * static_cast<float>(mult), dst + i * ref::QK_K + 32 * ib);
      }
    }
  }
}

template <class Arch>
float DotIq3Xxs<Arch>::run(int64_t n, const void* xv, const void* yv) {
  if constexpr (!kByteSimd<Arch>) {
    return ref::dot_iq3_xxs(n, xv, yv);
  } else {
    using V = Bytes<Arch>;
    const auto* x = static_cast<const ref::block_iq3_xxs*>(xv);
    const auto* y = static_cast<const ref::block_q8_K*>(yv);
    auto acc = V::fzero();
    for (int64_t i = 0; i < n / ref::QK_K; ++i) {
      auto sum = V::zero();
      for (int ib = 0; ib < 8; ++ib) {
        int mult;
        const auto q = Iq3Decode<Arch>::xxs(x[i], ib, mult);
        sum = V::madd_scale(sum, V::dot(q, V::load(y[i].qs + 32 * ib)), mult);
      }
      acc = V::fma(sum, fp16_to_f32(x[i].d) * y[i].d, acc);
    }
    return 0.25f * V::hsum(acc);
  }
}

template <class Arch>
float DotIq3S<Arch>::run(int64_t n, const void* xv, const void* yv) {
  if constexpr (!kByteSimd<Arch>) {
    return ref::dot_iq3_s(n, xv, yv);
  } else {
    using V = Bytes<Arch>;
    const auto* x = static_cast<const ref::block_iq3_s*>(xv);
    const auto* y = static_cast<const ref::block_q8_K*>(yv);
    auto acc = V::fzero();
    for (int64_t i = 0; i < n / ref::QK_K; ++i) {
      auto sum = V::zero();
      for (int ib = 0; ib < 8; ++ib) {
        int mult;
        const auto q = Iq3Decode<Arch>::s(x[i], ib, mult);
        sum = V::madd_scale(sum, V::dot(q, V::load(y[i].qs + 32 * ib)), mult);
      }
      acc = V::fma(sum, fp16_to_f32(x[i].d) * y[i].d, acc);
    }
    return V::hsum(acc);
  }
}

#define LQ_CPU_IQ3_KERNELS(X) X(DequantIq3Xxs) X(DequantIq3S) X(DotIq3Xxs) X(DotIq3S)

}  // namespace lq::cpu
