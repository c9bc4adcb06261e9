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

template <class Arch>
struct DequantIq1S {
  static void run(const void* src, float* dst, int64_t n);
};
template <class Arch>
struct DequantIq1M {
  static void run(const void* src, float* dst, int64_t n);
};
template <class Arch>
struct DotIq1SQ8K {
  static float run(int64_t n, const void* x, const void* y);
};
template <class Arch>
struct DotIq1MQ8K {
  static float run(int64_t n, const void* x, const void* y);
};

template <class Arch>
void DequantIq1S<Arch>::run(const void* src, float* dst, int64_t n) {
  using Ops = Iq1Ops<Arch>;
  const auto* x = static_cast<const ref::block_iq1_s*>(src);
  alignas(32) uint64_t v[4];
  alignas(32) float dl[32], delta[32];
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < ref::QK_K / 32; ++ib, dst += 32) {
      const uint16_t h = x[i].qh[ib];
      Ops::fill(d * static_cast<float>(2 * ((h >> 12) & 7) + 1), 32, dl);
      Ops::fill(h & 0x8000 ? -Ops::kDelta : Ops::kDelta, 32, delta);
      for (int k = 0; k < 4; ++k) v[k] = ref::iq1s_grid[x[i].qs[4 * ib + k] | ((h >> (3 * k)) & 7) << 8];
      Ops::shifted32(reinterpret_cast<const int8_t*>(v), dl, delta, dst);
    }
  }
}

template <class Arch>
void DequantIq1M<Arch>::run(const void* src, float* dst, int64_t n) {
  using Ops = Iq1Ops<Arch>;
  const auto* x = static_cast<const ref::block_iq1_m*>(src);
  alignas(32) uint64_t v[4];
  alignas(32) float dl[32], delta[32];
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    uint16_t sc[4];
    std::memcpy(sc, x[i].scales, sizeof(sc));
    const float d = Ops::scale_m(sc);
    for (int ib = 0; ib < ref::QK_K / 32; ++ib, dst += 32) {
      Ops::fill(d * static_cast<float>(2 * ((sc[ib / 2] >> (6 * (ib % 2))) & 7) + 1), 16, dl);
      Ops::fill(d * static_cast<float>(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1), 16, dl + 16);
      for (int k = 0; k < 4; ++k) {
        const int g = 4 * ib + k;
        const int nib = (x[i].qh[g / 2] >> (4 * (g % 2))) & 15;
        v[k] = ref::iq1s_grid[x[i].qs[g] | (nib & 7) << 8];
        Ops::fill(nib & 8 ? -Ops::kDelta : Ops::kDelta, 8, delta + 8 * k);
      }
      Ops::shifted32(reinterpret_cast<const int8_t*>(v), dl, delta, dst);
    }
  }
}

// The dots scale the codebook values per run in int16 and reduce once per super-block.
template <class Arch>
float DotIq1SQ8K<Arch>::run(int64_t n, const void* vx, const void* vy) {
  using Ops = Iq1Ops<Arch>;
  const auto* x = static_cast<const ref::block_iq1_s*>(vx);
  const auto* y = static_cast<const ref::block_q8_K*>(vy);
  float sum = 0;
  alignas(64) int16_t w[ref::QK_K];
  alignas(32) int16_t lsv[32];
  alignas(32) uint64_t v[4];
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    int32_t sumd = 0;
    for (int ib = 0; ib < ref::QK_K / 32; ++ib) {
      const uint16_t h = x[i].qh[ib];
      const auto ls = static_cast<int16_t>(2 * ((h >> 12) & 7) + 1);
      Ops::fill(ls, 32, lsv);
      for (int k = 0; k < 4; ++k) v[k] = ref::iq1s_grid[x[i].qs[4 * ib + k] | ((h >> (3 * k)) & 7) << 8];
      Ops::scaled32(reinterpret_cast<const int8_t*>(v), lsv, w + 32 * ib);
      const int32_t bs = y[i].bsums[2 * ib] + y[i].bsums[2 * ib + 1];
      sumd += (h & 0x8000 ? -ls : ls) * bs;
    }
    const int32_t sumi = Ops::dot256(w, y[i].qs);
    sum += fp16_to_f32(x[i].d) * y[i].d * (static_cast<float>(sumi) + Ops::kDelta * static_cast<float>(sumd));
  }
  return sum;
}

template <class Arch>
float DotIq1MQ8K<Arch>::run(int64_t n, const void* vx, const void* vy) {
  using Ops = Iq1Ops<Arch>;
  const auto* x = static_cast<const ref::block_iq1_m*>(vx);
  const auto* y = static_cast<const ref::block_q8_K*>(vy);
  float sum = 0;
  alignas(64) int16_t w[ref::QK_K], wd[ref::QK_K];
  alignas(32) int16_t lsv[32];
  alignas(32) int8_t shift[32];
  alignas(32) uint64_t v[4];
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    uint16_t sc[4];
    std::memcpy(sc, x[i].scales, sizeof(sc));
    for (int ib = 0; ib < ref::QK_K / 32; ++ib) {
      Ops::fill(static_cast<int16_t>(2 * ((sc[ib / 2] >> (6 * (ib % 2))) & 7) + 1), 16, lsv);
      Ops::fill(static_cast<int16_t>(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1), 16, lsv + 16);
      for (int k = 0; k < 4; ++k) {
        const int g = 4 * ib + k;
        const int nib = (x[i].qh[g / 2] >> (4 * (g % 2))) & 15;
        v[k] = ref::iq1s_grid[x[i].qs[g] | (nib & 7) << 8];
        Ops::fill(static_cast<int8_t>(nib & 8 ? -1 : 1), 8, shift + 8 * k);
      }
      Ops::scaled32(reinterpret_cast<const int8_t*>(v), lsv, w + 32 * ib);
      Ops::scaled32(shift, lsv, wd + 32 * ib);
    }
    const int32_t sumi = Ops::dot256(w, y[i].qs), sumd = Ops::dot256(wd, y[i].qs);
    sum += Ops::scale_m(sc) * y[i].d * (static_cast<float>(sumi) + Ops::kDelta * static_cast<float>(sumd));
  }
  return sum;
}

#define LQ_CPU_IQ1_KERNELS(X) X(DequantIq1S) X(DequantIq1M) X(DotIq1SQ8K) X(DotIq1MQ8K)

}  // namespace lq::cpu
