// CPU kernels: k-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K).
//
// Variants, per type, instantiated for every ISA in isa.cpp.in (LQ_CPU_KQUANT_KERNELS):
//   Quantize<T>  the reference search (lib/types/ref/kquant_search.hpp) run 8 or 16 lanes at a time;
//                byte-identical to ref::quantize_<t> (tests/cpu_isa_kernels_test.cpp checks it).
//   Dequant<T>   decoders written for auto-vectorisation; bit-identical to the reference
//                (same float operations per value; the ISA TUs are built with -ffp-contract=off).
//   Dot<T>       dot product against Q8_K. xsimd 8.1 has no widening byte multiply, so the
//                products are formed in 16-bit lanes from the even and odd bytes of each pair
//                (u_even * y_even + u_odd * y_odd, exact), widened to 32 bits, scaled by the
//                integer sub-block scales and summed; constant level offsets (Q3_K -4, Q6_K -32)
//                and the Q2_K/Q4_K/Q5_K mins go through the Q8_K group sums (bsums). AVX-512
//                runs the integer part on 256-bit registers (a sub-block chunk is 32 bytes).
// Run: ./build/tests/lq_tests "[kquants]"; throughput: ./build/benchmarks/quantize_bench.
#pragma once

#include "arch.hpp"
#include "block_formats.hpp"
#include "signatures.hpp"

#include "types/ref/blocks.hpp"
#include "types/ref/kquant_search.hpp"

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace lq::cpu {

namespace kqk {

template <class Arch>
using QBlocks = ref::kq::Blocks<Arch, static_cast<int>(xsimd::batch<float, Arch>::size)>;

// Integer part of the dot products: 128- or 256-bit registers.
template <class Arch>
using IntArch = std::conditional_t<kAvx512<Arch>, Avx2, Arch>;

template <class Arch>
struct Int {
  using A = IntArch<Arch>;
  using B16 = xsimd::batch<int16_t, A>;
  using B32 = xsimd::batch<int32_t, A>;
  using BF = xsimd::batch<float, A>;
  static constexpr int kBytes = static_cast<int>(B16::size) * 2;  // 16 or 32

  static B16 load(const void* p) { return B16::load_unaligned(static_cast<const int16_t*>(p)); }
  // Pairwise u[2i] * y[2i] + u[2i+1] * y[2i+1] per 16-bit lane: u bytes in [0, 127], y signed.
  static B16 pair_dot(B16 u, B16 y) { return (u & B16(0xff)) * ((y << 8) >> 8) + (u >> 8) * (y >> 8); }
  // Sums adjacent 16-bit lanes into 32-bit lanes.
  static B32 widen(B16 p) {
    const B32 q = xsimd::bitwise_cast<B32>(p);
    return ((q << 16) >> 16) + (q >> 16);
  }
  // Per 32-bit lane, the scale of the 16-value sub-block it covers: the register starts at
  // sub-block sb and spans one (16 bytes) or two (32 bytes) sub-blocks.
  static B32 sub_scales(const int* s, int sb) {
    if constexpr (B32::size == 4) {
      return B32(s[sb]);
    } else {
      alignas(32) static constexpr int32_t lane[8] = {0, 1, 2, 3, 4, 5, 6, 7};
      return xsimd::select(B32::load_aligned(lane) < B32(4), B32(s[sb]), B32(s[sb + 1]));
    }
  }
  static float reduce(BF v) { return xsimd::hadd(v); }
};

// Helpers are templates on the ISA so that each ISA's translation unit keeps its own copy (an
// inline function compiled with AVX-512 flags must never be the one the linker keeps for all).

// fp16 -> f32 (exact).
template <class Arch>
float half(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    float f = static_cast<float>(man) * 5.9604644775390625e-8f;  // man * 2^-24, exact
    std::memcpy(&bits, &f, 4);
    bits |= sign;
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <class Arch>
void q3k_scales(const uint8_t* s, int* out) {
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? (s[j] & 15) : (s[j - 8] >> 4);
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = (lo | (hi << 4)) - 32;
  }
}

}  // namespace kqk

// ---- quantize: the reference search, wider -----------------------------------------------------

template <class Arch> void QuantizeQ2K<Arch>::run(const float* x, void* y, int64_t rows, int64_t n, const float* im) { kqk::QBlocks<Arch>::quantize_q2_k(x, y, rows, n, im); }
template <class Arch> void QuantizeQ3K<Arch>::run(const float* x, void* y, int64_t rows, int64_t n, const float* im) { kqk::QBlocks<Arch>::quantize_q3_k(x, y, rows, n, im); }
template <class Arch> void QuantizeQ4K<Arch>::run(const float* x, void* y, int64_t rows, int64_t n, const float* im) { kqk::QBlocks<Arch>::quantize_q4_k(x, y, rows, n, im); }
template <class Arch> void QuantizeQ5K<Arch>::run(const float* x, void* y, int64_t rows, int64_t n, const float* im) { kqk::QBlocks<Arch>::quantize_q5_k(x, y, rows, n, im); }
template <class Arch> void QuantizeQ6K<Arch>::run(const float* x, void* y, int64_t rows, int64_t n, const float* im) { kqk::QBlocks<Arch>::quantize_q6_k(x, y, rows, n, im); }

// ---- dequantize ----------------------------------------------------------------------------------
// Per super-block: the levels are unpacked to bytes in value order (block_formats.hpp) and the
// sub-block scales expanded to one per value, then one flat loop does the float arithmetic; every
// loop is affine and alias-free, so the compiler vectorises all of them. Per value the expression
// is the reference's (so the results are bit-identical): d * sc * q - dmin * m with mins, else
// d * sc * (level - offset), the integer value converted exactly.

namespace kqk {

template <class Arch, class Fmt>
void dequant(const void* src, float* dst, int64_t n) {
  using B = xsimd::batch<float, Arch>;
  constexpr int G = Fmt::kG;
  const auto* x = static_cast<const typename Fmt::block*>(src);
  alignas(64) float dl[ref::QK_K], ml[ref::QK_K];
  alignas(64) uint8_t q[ref::QK_K];
  for (int64_t i = 0; i < n / ref::QK_K; ++i, dst += ref::QK_K) {
    qg::BlockScales s;
    qg::read_scales<Fmt>(x[i], s);
    for (int g = 0; g < ref::QK_K / G; ++g)
      for (int l = 0; l < G; l += static_cast<int>(B::size)) {
        B(s.d * s.sc[g]).store_aligned(dl + G * g + l);
        if constexpr (Fmt::kMin) B(s.dmin * s.m[g]).store_aligned(ml + G * g + l);
      }
    Fmt::levels(x[i], q);
    if constexpr (Fmt::kMin) {
      for (int e = 0; e < ref::QK_K; ++e) dst[e] = dl[e] * q[e] - ml[e];
    } else {
      for (int e = 0; e < ref::QK_K; ++e) dst[e] = dl[e] * static_cast<float>(q[e] - Fmt::kOff);
    }
  }
}

}  // namespace kqk

template <class Arch> void DequantQ2K<Arch>::run(const void* src, float* dst, int64_t n) { kqk::dequant<Arch, qg::FmtQ2K<Arch>>(src, dst, n); }
template <class Arch> void DequantQ3K<Arch>::run(const void* src, float* dst, int64_t n) { kqk::dequant<Arch, qg::FmtQ3K<Arch>>(src, dst, n); }
template <class Arch> void DequantQ4K<Arch>::run(const void* src, float* dst, int64_t n) { kqk::dequant<Arch, qg::FmtQ4K<Arch>>(src, dst, n); }
template <class Arch> void DequantQ5K<Arch>::run(const void* src, float* dst, int64_t n) { kqk::dequant<Arch, qg::FmtQ5K<Arch>>(src, dst, n); }
template <class Arch> void DequantQ6K<Arch>::run(const void* src, float* dst, int64_t n) { kqk::dequant<Arch, qg::FmtQ6K<Arch>>(src, dst, n); }

// ---- dot products against Q8_K -------------------------------------------------------------------
// Per super-block a codec C gives the integer scales (scales(), which returns the integer sum that
// the float correction scales: the mins' sum, or the level offset's) and the unpacked levels;
// dot_q8k does the products and sums d * isum - correction over the super-blocks.

namespace kqk {

// Sum over the 16 sub-blocks of scale * (sum of the sub-block's Q8_K values).
template <class Arch>
int bsum_dot(const int* sc, const int16_t* bsums) {
  int s = 0;
  for (int g = 0; g < 16; ++g) s += sc[g] * bsums[g];
  return s;
}

template <class Arch, class C>
float dot_q8k(int64_t n, const void* xv, const void* yv) {
  using I = Int<Arch>;
  using B16 = typename I::B16;
  using B32 = typename I::B32;
  const auto* x = static_cast<const typename C::block*>(xv);
  const auto* y = static_cast<const ref::block_q8_K*>(yv);
  typename I::BF acc(0.f);
  float correction = 0;
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    int sc[16];
    const int csum = C::scales(x[i], y[i].bsums, sc);
    B32 isum(0);
    for (int h = 0; h < 2; ++h)
      for (int b = 0; b < 32; b += I::kBytes) {
        B16 u[4];  // sub-blocks 0..3 of this half, bytes b.. of each
        C::template levels<I>(x[i], h, b, u);
        for (int j = 0; j < 4; ++j) {
          const int e = 128 * h + 32 * j + b;
          if constexpr (C::kPairScales) {  // 32-value sub-blocks: scale index j of 8 per half
            isum += I::widen(I::pair_dot(u[j], I::load(y[i].qs + e))) * B32(sc[4 * h + j]);
          } else {
            isum += I::widen(I::pair_dot(u[j], I::load(y[i].qs + e))) * I::sub_scales(sc, e / 16);
          }
        }
      }
    const float dd = y[i].d * half<Arch>(x[i].d);
    acc = xsimd::fma(xsimd::batch_cast<float>(isum), typename I::BF(dd), acc);
    correction += C::correction(x[i], y[i].d, dd, csum);
  }
  return I::reduce(acc) - correction;
}

// Q3_K: 2 low bits and a high bit (hmask) per level, stored + 4; 6-bit signed scales.
template <class Arch>
struct DotCodecQ3K {
  using block = ref::block_q3_K;
  static constexpr bool kPairScales = false;
  static int scales(const block& x, const int16_t* bsums, int* sc) {
    q3k_scales<Arch>(x.scales, sc);
    return bsum_dot<Arch>(sc, bsums);
  }
  static float correction(const block&, float, float dd, int offset) { return dd * static_cast<float>(4 * offset); }
  template <class I>
  static void levels(const block& x, int h, int b, typename I::B16* u) {
    using B16 = typename I::B16;
    const B16 qv = I::load(x.qs + 32 * h + b), hv = I::load(x.hmask + b);
    for (int j = 0; j < 4; ++j) u[j] = ((qv >> (2 * j)) & B16(0x0303)) | (((hv >> (4 * h + j)) & B16(0x0101)) << 2);
  }
};

// Q4_K and Q5_K: 4 low bits per level (and a fifth in qh for Q5_K), a 6-bit scale and min per
// 32 values.
template <class Arch, class Block, bool kFifthBit>
struct DotCodecQ45K {
  using block = Block;
  static constexpr bool kPairScales = true;
  static int scales(const block& x, const int16_t* bsums, int* sc) {
    int m[8], summ = 0;
    for (int j = 0; j < 8; ++j) {
      ref::q4k_scale_min(x.scales, j, sc[j], m[j]);
      summ += m[j] * (bsums[2 * j] + bsums[2 * j + 1]);
    }
    return summ;
  }
  static float correction(const block& x, float dy, float, int summ) { return dy * half<Arch>(x.dmin) * summ; }
  // Bytes b.. of chunk c = 2 h + j / 2: low nibbles are sub-block 2 c, high nibbles 2 c + 1.
  template <class I>
  static void levels(const block& x, int h, int b, typename I::B16* u) {
    using B16 = typename I::B16;
    for (int j = 0; j < 4; j += 2) {
      const int c = 2 * h + j / 2;
      const B16 qv = I::load(x.qs + 32 * c + b);
      u[j] = qv & B16(0x0f0f);
      u[j + 1] = (qv >> 4) & B16(0x0f0f);
      if constexpr (kFifthBit) {
        const B16 hv = I::load(x.qh + b);
        u[j] = u[j] | (((hv >> (2 * c)) & B16(0x0101)) << 4);
        u[j + 1] = u[j + 1] | (((hv >> (2 * c + 1)) & B16(0x0101)) << 4);
      }
    }
  }
};

}  // namespace kqk

// Q2_K and Q6_K keep their own loops: through dot_q8k's codecs (levels of four sub-blocks first,
// then the products) their single-token dots ran 11-12% slower (matmul_bench --m 1, Zen 4).
template <class Arch>
float DotQ2K<Arch>::run(int64_t n, const void* xv, const void* yv) {
  using I = kqk::Int<Arch>;
  using B16 = typename I::B16;
  using B32 = typename I::B32;
  using BF = typename I::BF;
  const auto* x = static_cast<const ref::block_q2_K*>(xv);
  const auto* y = static_cast<const ref::block_q8_K*>(yv);
  BF acc(0.f);
  float mins = 0;
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    int sc[16];
    int summ = 0;
    for (int g = 0; g < 16; ++g) {
      sc[g] = x[i].scales[g] & 15;
      summ += (x[i].scales[g] >> 4) * y[i].bsums[g];
    }
    B32 isum(0);
    for (int h = 0; h < 2; ++h)
      for (int b = 0; b < 32; b += I::kBytes) {
        const B16 qv = I::load(x[i].qs + 32 * h + b);
        for (int j = 0; j < 4; ++j) {
          const int e = 128 * h + 32 * j + b;
          const B16 u = (qv >> (2 * j)) & B16(0x0303);
          isum += I::widen(I::pair_dot(u, I::load(y[i].qs + e))) * I::sub_scales(sc, e / 16);
        }
      }
    const float dy = y[i].d;
    acc = xsimd::fma(xsimd::batch_cast<float>(isum), BF(dy * kqk::half<Arch>(x[i].d)), acc);
    mins += dy * kqk::half<Arch>(x[i].dmin) * summ;
  }
  return I::reduce(acc) - mins;
}

template <class Arch>
float DotQ6K<Arch>::run(int64_t n, const void* xv, const void* yv) {
  using I = kqk::Int<Arch>;
  using B16 = typename I::B16;
  using B32 = typename I::B32;
  using BF = typename I::BF;
  const auto* x = static_cast<const ref::block_q6_K*>(xv);
  const auto* y = static_cast<const ref::block_q8_K*>(yv);
  BF acc(0.f);
  float offs = 0;
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    int sc[16];
    int offset = 0;  // levels are stored + 32
    for (int g = 0; g < 16; ++g) {
      sc[g] = x[i].scales[g];
      offset += sc[g] * y[i].bsums[g];
    }
    B32 isum(0);
    for (int h = 0; h < 2; ++h)
      for (int b = 0; b < 32; b += I::kBytes) {
        const B16 l0 = I::load(x[i].ql + 64 * h + b), l1 = I::load(x[i].ql + 64 * h + 32 + b);
        const B16 hv = I::load(x[i].qh + 32 * h + b);
        for (int k = 0; k < 4; ++k) {
          const B16 lv = k % 2 ? l1 : l0;
          const B16 u = ((lv >> (4 * (k / 2))) & B16(0x0f0f)) | (((hv >> (2 * k)) & B16(0x0303)) << 4);
          const int e = 128 * h + 32 * k + b;
          isum += I::widen(I::pair_dot(u, I::load(y[i].qs + e))) * I::sub_scales(sc, e / 16);
        }
      }
    const float dd = y[i].d * kqk::half<Arch>(x[i].d);
    acc = xsimd::fma(xsimd::batch_cast<float>(isum), BF(dd), acc);
    offs += dd * static_cast<float>(32 * offset);
  }
  return I::reduce(acc) - offs;
}

template <class Arch> float DotQ3K<Arch>::run(int64_t n, const void* x, const void* y) { return kqk::dot_q8k<Arch, kqk::DotCodecQ3K<Arch>>(n, x, y); }
template <class Arch> float DotQ4K<Arch>::run(int64_t n, const void* x, const void* y) { return kqk::dot_q8k<Arch, kqk::DotCodecQ45K<Arch, ref::block_q4_K, false>>(n, x, y); }
template <class Arch> float DotQ5K<Arch>::run(int64_t n, const void* x, const void* y) { return kqk::dot_q8k<Arch, kqk::DotCodecQ45K<Arch, ref::block_q5_K, true>>(n, x, y); }

#define LQ_CPU_KQUANT_KERNELS(X)                                                                     \
  X(QuantizeQ2K) X(QuantizeQ3K) X(QuantizeQ4K) X(QuantizeQ5K) X(QuantizeQ6K) X(DequantQ2K) X(DequantQ3K) \
  X(DequantQ4K) X(DequantQ5K) X(DequantQ6K) X(DotQ2K) X(DotQ3K) X(DotQ4K) X(DotQ5K) X(DotQ6K)

}  // namespace lq::cpu
