// The few operations xsimd 8.1 has no portable form for, one specialisation per instruction
// set: byte dot products (vpdpbusd on AVX512-VNNI, vpmaddubsw + vpmaddwd on AVX2/AVX-512BW,
// 16-bit lane arithmetic elsewhere) and bf16 pair dot products (vdpbf16ps on AVX512-BF16,
// two FMAs on the widened halves elsewhere). Kernels are written once on xsimd batches and call
// IsaOps<Arch>; no other kernel file uses intrinsics for these.
//
// The specialisations are partial (templates on Arch), so each per-ISA translation unit
// instantiates only its own and the instructions never leak into a TU built without their flags.
// The x86 ones are compiled for x86-64 only; NEON (and SSE2) take the generic xsimd forms.
#pragma once

#include "arch.hpp"

#if LQ_CPU_X86
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace lq::cpu {

enum class IsaLevel { generic, avx2, avx512, vnni };

template <class Arch>
inline constexpr IsaLevel kIsaLevel = std::is_base_of_v<Avx512Vnni, Arch> ? IsaLevel::vnni
                                      : kAvx512<Arch>                    ? IsaLevel::avx512
                                      : std::is_base_of_v<xsimd::avx2, Arch> ? IsaLevel::avx2
                                                                            : IsaLevel::generic;

/// Primitives on the batches of Arch:
///   I dot4<kMaxU>(acc, u, s)  acc + sum over the 4 bytes of each 32-bit lane of u[j] * s[j],
///                             u unsigned bytes in [0, kMaxU], s signed bytes; exact (int32).
///   I dot2_i16(acc, a, b)     acc + a.lo * b.lo + a.hi * b.hi per 32-bit lane of int16 pairs.
///   F dot2_bf16(acc, w, x)    acc + w.hi * x.hi + w.lo * x.lo per 32-bit lane of bf16 pairs.
///   I broadcast4(p)           the 4 bytes at p in every 32-bit lane.
///   F fma(a, b, c)            a * b + c with one rounding where the ISA has FMA (xsimd 8.1's
///                             AVX-512 kernels lack fma and fall back to a multiply and an add).
///   F fnma(a, b, c)           c - a * b, likewise.
template <class Arch, IsaLevel L = kIsaLevel<Arch>>
struct IsaOps;

template <class Arch>
struct IsaOpsCommon {
  using I = xsimd::batch<int32_t, Arch>;
  using F = xsimd::batch<float, Arch>;
  static I broadcast4(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return I(v);
  }
};

// bf16 pairs through two multiply-adds on the exact fp32 widenings (the product of two bf16
// values is exact in fp32, so each step rounds once, as the hardware dot product does).
template <class Ops, class I, class F>
F dot2_bf16_widened(F acc, I w, I x) {
  const I hi(static_cast<int32_t>(0xffff0000u));
  acc = Ops::fma(xsimd::bitwise_cast<F>(w & hi), xsimd::bitwise_cast<F>(x & hi), acc);
  return Ops::fma(xsimd::bitwise_cast<F>(w << 16), xsimd::bitwise_cast<F>(x << 16), acc);
}

template <class Arch>
struct IsaOps<Arch, IsaLevel::generic> : IsaOpsCommon<Arch> {
  using typename IsaOpsCommon<Arch>::I;
  using typename IsaOpsCommon<Arch>::F;
  static F fma(F a, F b, F c) { return xsimd::fma(a, b, c); }
  static F fnma(F a, F b, F c) { return xsimd::fnma(a, b, c); }
  using H = xsimd::batch<int16_t, Arch>;
  // Even and odd bytes in 16-bit lanes: |u * s| <= 255 * 128 fits, the sums are taken in 32 bits.
  template <int kMaxU>
  static I dot4(I acc, I u, I s) {
    const H uh = xsimd::bitwise_cast<H>(u), sh = xsimd::bitwise_cast<H>(s);
    const H pe = (uh & H(0xff)) * ((sh << 8) >> 8);
    const H po = ((uh >> 8) & H(0xff)) * (sh >> 8);
    const I qe = xsimd::bitwise_cast<I>(pe), qo = xsimd::bitwise_cast<I>(po);
    return acc + ((qe << 16) >> 16) + (qe >> 16) + ((qo << 16) >> 16) + (qo >> 16);
  }
  static I dot2_i16(I acc, I a, I b) { return acc + ((a << 16) >> 16) * ((b << 16) >> 16) + (a >> 16) * (b >> 16); }
  static F dot2_bf16(F acc, I w, I x) { return dot2_bf16_widened<IsaOps>(acc, w, x); }
};

#if LQ_CPU_X86
// AVX2 and AVX-512BW: the same instructions at 256 or 512 bits. vpmaddubsw saturates its int16
// pair sums: exact while u <= 127. Larger u are split into the low 7 bits and the top bit (128 *
// the sum of the s bytes where it is set).
template <class Arch>
struct IsaOpsX86 : IsaOpsCommon<Arch> {
  using typename IsaOpsCommon<Arch>::I;
  using typename IsaOpsCommon<Arch>::F;
  static constexpr bool k512 = kAvx512<Arch>;
  static F fma(F a, F b, F c) {
    if constexpr (k512) return _mm512_fmadd_ps(a, b, c);
    else return _mm256_fmadd_ps(a, b, c);
  }
  static F fnma(F a, F b, F c) {
    if constexpr (k512) return _mm512_fnmadd_ps(a, b, c);
    else return _mm256_fnmadd_ps(a, b, c);
  }
  // Unsigned u bytes times signed s bytes, adjacent pairs summed into int16 lanes (saturating).
  static I maddubs(I u, I s) {
    if constexpr (k512) return _mm512_maddubs_epi16(u, s);
    else return _mm256_maddubs_epi16(u, s);
  }
  // int16 lanes multiplied, adjacent pairs summed into int32 lanes.
  static I madd(I a, I b) {
    if constexpr (k512) return _mm512_madd_epi16(a, b);
    else return _mm256_madd_epi16(a, b);
  }
  template <int kMaxU>
  static I dot4(I acc, I u, I s) {
    const I ones(0x00010001);  // int16 lanes of 1
    if constexpr (kMaxU <= 127) {
      return acc + madd(maddubs(u, s), ones);
    } else {
      const I lo = maddubs(u & I(0x7f7f7f7f), s);
      const I top = (u >> 7) & I(0x01010101);  // bit 7 of each byte (the shift's fill is masked off)
      return acc + madd(lo, ones) + madd(maddubs(top, s), I(0x00800080));
    }
  }
  static I dot2_i16(I acc, I a, I b) { return acc + madd(a, b); }
  static F dot2_bf16(F acc, I w, I x) { return dot2_bf16_widened<IsaOpsX86>(acc, w, x); }
};

template <class Arch>
struct IsaOps<Arch, IsaLevel::avx2> : IsaOpsX86<Arch> {};
template <class Arch>
struct IsaOps<Arch, IsaLevel::avx512> : IsaOpsX86<Arch> {};

template <class Arch>
struct IsaOps<Arch, IsaLevel::vnni> : IsaOps<Arch, IsaLevel::avx512> {
  using typename IsaOpsCommon<Arch>::I;
  using typename IsaOpsCommon<Arch>::F;
  template <int kMaxU>
  static I dot4(I acc, I u, I s) {
    return _mm512_dpbusd_epi32(acc, u, s);
  }
  static I dot2_i16(I acc, I a, I b) { return _mm512_dpwssd_epi32(acc, a, b); }
  static F dot2_bf16(F acc, I w, I x) {
    return _mm512_dpbf16_ps(acc, (__m512bh) static_cast<__m512i>(w), (__m512bh) static_cast<__m512i>(x));
  }
};
#endif  // LQ_CPU_X86

}  // namespace lq::cpu
