// CPU kernels: IQ1_S / IQ1_M, dequantize and dot against Q8_K.
//
// Variants: DequantIq1S, DequantIq1M, DotIq1SQ8K, DotIq1MQ8K, each instantiated for SSE2, AVX2
// and AVX-512 (isa.cpp.in) and chosen at run time (dispatch.cpp). Codebook entries are 8 signed
// bytes (-1, 0, +1) read in place; the loops over them are left to the vectoriser under
// each ISA's flags. Dequantized values equal the scalar references bit for bit; dots have exact
// integer sums and the reference's per-block float steps (which an FMA ISA may fuse).
// Tests: ./build/tests/lq_tests "[iquants],[isa]" (tests/iq1_iq2_test.cpp, cpu_isa_kernels_test.cpp)
#pragma once

#include "arch.hpp"
#include "signatures.hpp"

#include "core/half.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/iq_tables.hpp"

#include <cstdint>
#include <cstring>

namespace lq::cpu {

// Members of an Arch-templated struct so that every ISA's object file keeps its own copy.
// Codebook rows are gathered as 64-bit words, then the loops run over 16 or 32 bytes at a time:
// the vectoriser leaves 8-value loops with int8 -> float conversion scalar.
template <class Arch>
struct Iq1Ops {
  static constexpr float kDelta = 0.125f;
  // Per-value scale and shift arrays keep these loops uniform (and the float steps those of
  // the reference: dl * (entry + shift)).
  static void shifted32(const int8_t* __restrict v, const float* __restrict dl, const float* __restrict delta,
                        float* __restrict y) {
    for (int j = 0; j < 32; ++j) y[j] = dl[j] * (static_cast<float>(v[j]) + delta[j]);
  }
  static void scaled32(const int8_t* __restrict v, const int16_t* __restrict ls, int16_t* __restrict w) {
    for (int j = 0; j < 32; ++j) w[j] = static_cast<int16_t>(v[j] * ls[j]);
  }
  template <class T>
  static void fill(T value, int count, T* out) {
    for (int j = 0; j < count; ++j) out[j] = value;
  }
  static int32_t dot256(const int16_t* w, const int8_t* q8) {
    int32_t s = 0;
    for (int j = 0; j < ref::QK_K; ++j) s += w[j] * static_cast<int16_t>(q8[j]);
    return s;
  }
  static float scale_m(const uint16_t* sc) {
    return fp16_to_f32(static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) |
                                             (sc[3] & 0xf000)));
  }
};

// The two layouts. Per sub-block ib of 32 values: four codebook rows grid(b, ib, k) and the sign
// of each row's shift (+-kDelta), negative where neg(b, ib, k); runs(b, ls) gives the odd scales
// of the 16 runs of 16 values. IQ1_S has one scale and one sign per sub-block (kPer32), IQ1_M a
// scale per run and a sign per row.
template <class Arch>
struct Iq1S {
  using block = ref::block_iq1_s;
  static constexpr bool kPer32 = true;
  static float d(const block& b) { return fp16_to_f32(b.d); }
  static void runs(const block& b, int* ls) {
    for (int h = 0; h < 16; ++h) ls[h] = 2 * ((b.qh[h / 2] >> 12) & 7) + 1;
  }
  static uint64_t grid(const block& b, int ib, int k) {
    return ref::iq1s_grid[b.qs[4 * ib + k] | ((b.qh[ib] >> (3 * k)) & 7) << 8];
  }
  static bool neg(const block& b, int ib, int) { return b.qh[ib] & 0x8000; }
};

template <class Arch>
struct Iq1M {
  using block = ref::block_iq1_m;
  static constexpr bool kPer32 = false;
  static float d(const block& b) {
    uint16_t sc[4];
    std::memcpy(sc, b.scales, sizeof(sc));
    return Iq1Ops<Arch>::scale_m(sc);
  }
  static void runs(const block& b, int* ls) {
    uint16_t sc[4];
    std::memcpy(sc, b.scales, sizeof(sc));
    for (int h = 0; h < 16; ++h) ls[h] = 2 * ((sc[h / 4] >> (6 * ((h / 2) % 2) + 3 * (h % 2))) & 7) + 1;
  }
  static int nibble(const block& b, int g) { return (b.qh[g / 2] >> (4 * (g % 2))) & 15; }
  static uint64_t grid(const block& b, int ib, int k) {
    return ref::iq1s_grid[b.qs[4 * ib + k] | (nibble(b, 4 * ib + k) & 7) << 8];
  }
  static bool neg(const block& b, int ib, int k) { return nibble(b, 4 * ib + k) & 8; }
};

template <class Arch, class C>
void iq1_dequant(const void* src, float* dst, int64_t n) {
  using Ops = Iq1Ops<Arch>;
  const auto* x = static_cast<const typename C::block*>(src);
  alignas(32) uint64_t v[4];
  alignas(32) float dl[32], delta[32];
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    const float d = C::d(x[i]);
    int ls[16];
    C::runs(x[i], ls);
    for (int ib = 0; ib < ref::QK_K / 32; ++ib, dst += 32) {
      for (int k = 0; k < 4; ++k) v[k] = C::grid(x[i], ib, k);
      if constexpr (C::kPer32) {
        Ops::fill(d * static_cast<float>(ls[2 * ib]), 32, dl);
        Ops::fill(C::neg(x[i], ib, 0) ? -Ops::kDelta : Ops::kDelta, 32, delta);
      } else {
        Ops::fill(d * static_cast<float>(ls[2 * ib]), 16, dl);
        Ops::fill(d * static_cast<float>(ls[2 * ib + 1]), 16, dl + 16);
        for (int k = 0; k < 4; ++k) Ops::fill(C::neg(x[i], ib, k) ? -Ops::kDelta : Ops::kDelta, 8, delta + 8 * k);
      }
      Ops::shifted32(reinterpret_cast<const int8_t*>(v), dl, delta, dst);
    }
  }
}

// The dots scale the codebook values per run in int16 and reduce once per super-block; the
// shifts' sum comes from the Q8_K group sums where a sub-block has one sign, else from a second
// int16 product.
template <class Arch, class C>
float iq1_dot(int64_t n, const void* vx, const void* vy) {
  using Ops = Iq1Ops<Arch>;
  const auto* x = static_cast<const typename C::block*>(vx);
  const auto* y = static_cast<const ref::block_q8_K*>(vy);
  float sum = 0;
  alignas(64) int16_t w[ref::QK_K], wd[ref::QK_K];
  alignas(32) int16_t lsv[32];
  alignas(32) int8_t shift[32];
  alignas(32) uint64_t v[4];
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    int ls[16];
    C::runs(x[i], ls);
    int32_t sumd = 0;
    for (int ib = 0; ib < ref::QK_K / 32; ++ib) {
      for (int k = 0; k < 4; ++k) v[k] = C::grid(x[i], ib, k);
      if constexpr (C::kPer32) {
        Ops::fill(static_cast<int16_t>(ls[2 * ib]), 32, lsv);
        Ops::scaled32(reinterpret_cast<const int8_t*>(v), lsv, w + 32 * ib);
        const int32_t bs = y[i].bsums[2 * ib] + y[i].bsums[2 * ib + 1];
        sumd += (C::neg(x[i], ib, 0) ? -ls[2 * ib] : ls[2 * ib]) * bs;
      } else {
        Ops::fill(static_cast<int16_t>(ls[2 * ib]), 16, lsv);
        Ops::fill(static_cast<int16_t>(ls[2 * ib + 1]), 16, lsv + 16);
        for (int k = 0; k < 4; ++k) Ops::fill(static_cast<int8_t>(C::neg(x[i], ib, k) ? -1 : 1), 8, shift + 8 * k);
        Ops::scaled32(reinterpret_cast<const int8_t*>(v), lsv, w + 32 * ib);
        Ops::scaled32(shift, lsv, wd + 32 * ib);
      }
    }
    const int32_t sumi = Ops::dot256(w, y[i].qs);
    if constexpr (!C::kPer32) sumd = Ops::dot256(wd, y[i].qs);
    sum += C::d(x[i]) * y[i].d * (static_cast<float>(sumi) + Ops::kDelta * static_cast<float>(sumd));
  }
  return sum;
}

template <class Arch> void DequantIq1S<Arch>::run(const void* src, float* dst, int64_t n) { iq1_dequant<Arch, Iq1S<Arch>>(src, dst, n); }
template <class Arch> void DequantIq1M<Arch>::run(const void* src, float* dst, int64_t n) { iq1_dequant<Arch, Iq1M<Arch>>(src, dst, n); }
template <class Arch> float DotIq1SQ8K<Arch>::run(int64_t n, const void* x, const void* y) { return iq1_dot<Arch, Iq1S<Arch>>(n, x, y); }
template <class Arch> float DotIq1MQ8K<Arch>::run(int64_t n, const void* x, const void* y) { return iq1_dot<Arch, Iq1M<Arch>>(n, x, y); }

#define LQ_CPU_IQ1_KERNELS(X) X(DequantIq1S) X(DequantIq1M) X(DotIq1SQ8K) X(DotIq1MQ8K)

}  // namespace lq::cpu
