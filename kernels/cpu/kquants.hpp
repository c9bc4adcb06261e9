// CPU kernels: k-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K).
//
// Variants, per type, instantiated for every ISA in isa.cpp.in (LQ_CPU_KQUANT_KERNELS):
//   Quantize<T>  the reference search (lib/types/ref/kquant_search.hpp) run 8 or 16 lanes at a time;
//                byte-identical to ref::quantize_<t> (tests/kquants_test.cpp checks it).
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
#include <type_traits>

namespace lq::cpu {

template <class Arch> struct QuantizeQ2K { static QuantizeSig run; };
template <class Arch> struct DequantQ2K { static DequantSig run; };
template <class Arch> struct DotQ2K { static DotSig run; };
template <class Arch> struct QuantizeQ3K { static QuantizeSig run; };
template <class Arch> struct DequantQ3K { static DequantSig run; };
template <class Arch> struct DotQ3K { static DotSig run; };
template <class Arch> struct QuantizeQ4K { static QuantizeSig run; };
template <class Arch> struct DequantQ4K { static DequantSig run; };
template <class Arch> struct DotQ4K { static DotSig run; };
template <class Arch> struct QuantizeQ5K { static QuantizeSig run; };
template <class Arch> struct DequantQ5K { static DequantSig run; };
template <class Arch> struct DotQ5K { static DotSig run; };
template <class Arch> struct QuantizeQ6K { static QuantizeSig run; };
template <class Arch> struct DequantQ6K { static DequantSig run; };
template <class Arch> struct DotQ6K { static DotSig run; };

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

}  // namespace kqk

// ---- quantize: the reference search, wider -----------------------------------------------------

template <class Arch>
void QuantizeQ2K<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* im) {
  kqk::QBlocks<Arch>::quantize_q2_k(src, dst, nrows, n_per_row, im);
}
template <class Arch>
void QuantizeQ3K<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* im) {
  kqk::QBlocks<Arch>::quantize_q3_k(src, dst, nrows, n_per_row, im);
}
template <class Arch>
void QuantizeQ4K<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* im) {
  kqk::QBlocks<Arch>::quantize_q4_k(src, dst, nrows, n_per_row, im);
}
template <class Arch>
void QuantizeQ5K<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* im) {
  kqk::QBlocks<Arch>::quantize_q5_k(src, dst, nrows, n_per_row, im);
}
template <class Arch>
void QuantizeQ6K<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* im) {
  kqk::QBlocks<Arch>::quantize_q6_k(src, dst, nrows, n_per_row, im);
}

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

// ---- dot products against Q8_K ----
// Per super-block the integer part runs over register-wide chunks of values; what the level
// offset (Q3_K 4, Q6_K 32) or the mins (Q2_K, Q4_K, Q5_K) take away goes through the Q8_K group
// sums: corr = offset * sum sc_j bsum_j, scaled by d, or sum m_j bsum_j, scaled by dmin.
template <class Arch, class Fmt>
float dot(int64_t n, const void* xv, const void* yv) {
  using I = Int<Arch>;
  using B32 = typename I::B32;
  using BF = typename I::BF;
  constexpr int G = Fmt::kG;
  const auto* x = static_cast<const typename Fmt::block*>(xv);
  const auto* y = static_cast<const ref::block_q8_K*>(yv);
  BF acc(0.f);
  float corr = 0;
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    qg::BlockScales s;
    qg::read_scales<Fmt>(x[i], s);
    int sum = 0;
    for (int j = 0; j < ref::QK_K / G; ++j) {
      const int bsum = G == 16 ? y[i].bsums[j] : y[i].bsums[2 * j] + y[i].bsums[2 * j + 1];
      sum += (Fmt::kMin ? s.m[j] : s.sc[j]) * bsum;
    }
    // In layout order, so that the chunks reading the same bytes are next to each other.
    constexpr int S = Fmt::kSlices;
    B32 isum(0);
#pragma GCC unroll 4
    for (int r = 0; r < ref::QK_K / (32 * S); ++r)
#pragma GCC unroll 2
      for (int b = 0; b < 32; b += I::kBytes)
#pragma GCC unroll 4
        for (int k = 0; k < S; ++k) {
          const int e = 32 * (S * r + k) + b;
          const B32 p = I::widen(I::pair_dot(Fmt::template chunk<typename I::B16>(x[i], e), I::load(y[i].qs + e)));
          isum += p * (G == 16 ? I::sub_scales(s.sc, e / 16) : B32(s.sc[e / 32]));
        }
    const float dy = y[i].d;
    acc = xsimd::fma(xsimd::batch_cast<float>(isum), BF(dy * s.d), acc);
    corr += Fmt::kMin ? dy * s.dmin * static_cast<float>(sum) : dy * s.d * static_cast<float>(Fmt::kOff * sum);
  }
  return I::reduce(acc) - corr;
}

}  // namespace kqk

template <class Arch>
void DequantQ2K<Arch>::run(const void* src, float* dst, int64_t n) { kqk::dequant<Arch, qg::FmtQ2K<Arch>>(src, dst, n); }
template <class Arch>
void DequantQ3K<Arch>::run(const void* src, float* dst, int64_t n) { kqk::dequant<Arch, qg::FmtQ3K<Arch>>(src, dst, n); }
template <class Arch>
void DequantQ4K<Arch>::run(const void* src, float* dst, int64_t n) { kqk::dequant<Arch, qg::FmtQ4K<Arch>>(src, dst, n); }
template <class Arch>
void DequantQ5K<Arch>::run(const void* src, float* dst, int64_t n) { kqk::dequant<Arch, qg::FmtQ5K<Arch>>(src, dst, n); }
template <class Arch>
void DequantQ6K<Arch>::run(const void* src, float* dst, int64_t n) { kqk::dequant<Arch, qg::FmtQ6K<Arch>>(src, dst, n); }

template <class Arch>
float DotQ2K<Arch>::run(int64_t n, const void* x, const void* y) { return kqk::dot<Arch, qg::FmtQ2K<Arch>>(n, x, y); }
template <class Arch>
float DotQ3K<Arch>::run(int64_t n, const void* x, const void* y) { return kqk::dot<Arch, qg::FmtQ3K<Arch>>(n, x, y); }
template <class Arch>
float DotQ4K<Arch>::run(int64_t n, const void* x, const void* y) { return kqk::dot<Arch, qg::FmtQ4K<Arch>>(n, x, y); }
template <class Arch>
float DotQ5K<Arch>::run(int64_t n, const void* x, const void* y) { return kqk::dot<Arch, qg::FmtQ5K<Arch>>(n, x, y); }
template <class Arch>
float DotQ6K<Arch>::run(int64_t n, const void* x, const void* y) { return kqk::dot<Arch, qg::FmtQ6K<Arch>>(n, x, y); }

#define LQ_CPU_KQUANT_KERNELS(X)                                                                     \
  X(QuantizeQ2K) X(QuantizeQ3K) X(QuantizeQ4K) X(QuantizeQ5K) X(QuantizeQ6K) X(DequantQ2K) X(DequantQ3K) \
  X(DequantQ4K) X(DequantQ5K) X(DequantQ6K) X(DotQ2K) X(DotQ3K) X(DotQ4K) X(DotQ5K) X(DotQ6K)

}  // namespace lq::cpu
