// CPU kernels: IQ3_XXS and IQ3_S (the quantizers are scalar: ref/iq3.cpp).
//   DequantIq3Xxs, DequantIq3S  grid entries gathered 8 at a time, signs applied as byte masks,
//                               then floats; bit-identical to the reference decoders.
//   DotIq3Xxs, DotIq3S (x Q8_K) the same int8 values times the activations, int32 sums per
//                               sub-block scaled by its multiplier, one float FMA per block.
// Run: ./build/tests/lq_tests "[iquants],[isa]".
#pragma once

#include "arch.hpp"
#include "signatures.hpp"
#include "iq_superblock.hpp"

#include "core/half.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/iq3.hpp"
#include "types/ref/iq_tables.hpp"

#include <cstdint>
#include <cstring>

namespace lq::cpu {

// Codecs for superblock_dequant / superblock_dot (iq_superblock.hpp). x86 only (they gather with
// AVX2): other processors declare them, and the loops take the scalar reference there.
template <class Arch>
struct Iq3Xxs;
template <class Arch>
struct Iq3S;

#if LQ_CPU_X86
template <class Arch>
struct Iq3Xxs {
  using block = ref::block_iq3_xxs;
  static constexpr float kDotScale = 0.25f;

  // Sub-block ib as 32 signed int8 values (grid bytes 4..62); its multiplier.
  static __m256i values(const block& b, int ib, int& mult) {
    uint32_t aux;
    std::memcpy(&aux, b.qs + 64 + 4 * ib, 4);
    mult = 2 * static_cast<int>(aux >> 28) + 1;
    const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 8 * ib)));
    const __m256i grid = _mm256_i32gather_epi32(reinterpret_cast<const int*>(ref::iq3xxs_grid), idx, 4);
    const uint32_t signs = ref::ksigns_iq2xs[aux & 127] | (ref::ksigns_iq2xs[(aux >> 7) & 127] << 8) |
                           (ref::ksigns_iq2xs[(aux >> 14) & 127] << 16) |
                           (static_cast<uint32_t>(ref::ksigns_iq2xs[(aux >> 21) & 127]) << 24);
    return Bytes<Arch>::negate_where(grid, Bytes<Arch>::sign_mask(signs));
  }
  static float dequant_scale(float d, int mult) { return d * (0.5f + static_cast<float>(mult / 2)) * 0.5f; }
};

template <class Arch>
struct Iq3S {
  using block = ref::block_iq3_s;
  static constexpr float kDotScale = 1.f;

  static __m256i values(const block& b, int ib, int& mult) {
    mult = 2 * ((b.scales[ib / 2] >> (4 * (ib % 2))) & 15) + 1;
    const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 8 * ib)));
    const __m256i hi = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32(b.qh[ib]), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), _mm256_set1_epi32(1));
    const __m256i idx = _mm256_or_si256(lo, _mm256_slli_epi32(hi, 8));
    const __m256i grid = _mm256_i32gather_epi32(reinterpret_cast<const int*>(ref::iq3s_grid), idx, 4);
    uint32_t signs;
    std::memcpy(&signs, b.signs + 4 * ib, 4);
    return Bytes<Arch>::negate_where(grid, Bytes<Arch>::sign_mask(signs));
  }
  static float dequant_scale(float d, int mult) { return d * static_cast<float>(mult); }
};
#endif  // LQ_CPU_X86

template <class Arch> void DequantIq3Xxs<Arch>::run(const void* src, float* dst, int64_t n) { superblock_dequant<Arch, Iq3Xxs<Arch>, ref::dequantize_iq3_xxs>(src, dst, n); }
template <class Arch> void DequantIq3S<Arch>::run(const void* src, float* dst, int64_t n) { superblock_dequant<Arch, Iq3S<Arch>, ref::dequantize_iq3_s>(src, dst, n); }
template <class Arch> float DotIq3Xxs<Arch>::run(int64_t n, const void* x, const void* y) { return superblock_dot<Arch, Iq3Xxs<Arch>, ref::dot_iq3_xxs>(n, x, y); }
template <class Arch> float DotIq3S<Arch>::run(int64_t n, const void* x, const void* y) { return superblock_dot<Arch, Iq3S<Arch>, ref::dot_iq3_s>(n, x, y); }

#define LQ_CPU_IQ3_KERNELS(X) X(DequantIq3Xxs) X(DequantIq3S) X(DotIq3Xxs) X(DotIq3S)

}  // namespace lq::cpu
