// CPU kernels: IQ1_S / IQ1_M, dequantize and dot against Q8_K.
//
// Variants: DequantIq1S, DequantIq1M, DotIq1SQ8K, DotIq1MQ8K, each instantiated for SSE2, AVX2
// and AVX-512 (isa.cpp.in) and chosen at run time (dispatch.cpp). Codebook entries are 8 signed
// bytes (-1, 0, +1) copied side by side; the loops over them are left to the vectoriser under
// each ISA's flags. The results equal the scalar references exactly (exact integer sums, the
// reference's float steps in the same order).
// Tests: ./build/tests/lq_tests "[iquants-b]"
#pragma once

#include "arch.hpp"

#include "half.hpp"
#include "ref/blocks.hpp"
#include "ref/iq_tables.hpp"

#include <cstdint>
#include <cstring>

namespace lq::cpu {

// Members of an Arch-templated struct so that every ISA's object file keeps its own copy.
template <class Arch>
struct Iq1Ops {
  static constexpr float kDelta = 0.125f;
  static void entries(const uint16_t* idx, int count, int8_t* v) {
    for (int k = 0; k < count; ++k) std::memcpy(v + 8 * k, &ref::iq1s_grid[idx[k]], 8);
  }
  static void shifted8(const int8_t* v, float dl, float delta, float* y) {
    for (int j = 0; j < 8; ++j) y[j] = dl * (static_cast<float>(v[j]) + delta);
  }
  static int32_t dot(const int8_t* v, const int8_t* q8, int count) {
    int32_t s = 0;
    for (int j = 0; j < count; ++j) s += static_cast<int16_t>(v[j]) * static_cast<int16_t>(q8[j]);
    return s;
  }
  static int32_t sum8(const int8_t* q8) {
    int32_t s = 0;
    for (int j = 0; j < 8; ++j) s += q8[j];
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
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < ref::QK_K / 32; ++ib, dst += 32) {
      const uint16_t h = x[i].qh[ib];
      const float dl = d * static_cast<float>(2 * ((h >> 12) & 7) + 1);
      const float delta = h & 0x8000 ? -Ops::kDelta : Ops::kDelta;
      uint16_t idx[4];
      for (int k = 0; k < 4; ++k) idx[k] = static_cast<uint16_t>(x[i].qs[4 * ib + k] | ((h >> (3 * k)) & 7) << 8);
      alignas(32) int8_t v[32];
      Ops::entries(idx, 4, v);
      for (int k = 0; k < 4; ++k) Ops::shifted8(v + 8 * k, dl, delta, dst + 8 * k);
    }
  }
}

template <class Arch>
void DequantIq1M<Arch>::run(const void* src, float* dst, int64_t n) {
  using Ops = Iq1Ops<Arch>;
  const auto* x = static_cast<const ref::block_iq1_m*>(src);
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    uint16_t sc[4];
    std::memcpy(sc, x[i].scales, sizeof(sc));
    const float d = Ops::scale_m(sc);
    for (int ib = 0; ib < ref::QK_K / 32; ++ib, dst += 32) {
      const float dl[2] = {d * static_cast<float>(2 * ((sc[ib / 2] >> (6 * (ib % 2))) & 7) + 1),
                           d * static_cast<float>(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1)};
      uint16_t idx[4];
      float delta[4];
      for (int k = 0; k < 4; ++k) {
        const int g = 4 * ib + k;
        const int nib = (x[i].qh[g / 2] >> (4 * (g % 2))) & 15;
        idx[k] = static_cast<uint16_t>(x[i].qs[g] | (nib & 7) << 8);
        delta[k] = nib & 8 ? -Ops::kDelta : Ops::kDelta;
      }
      alignas(32) int8_t v[32];
      Ops::entries(idx, 4, v);
      for (int k = 0; k < 4; ++k) Ops::shifted8(v + 8 * k, dl[k / 2], delta[k], dst + 8 * k);
    }
  }
}

template <class Arch>
float DotIq1SQ8K<Arch>::run(int64_t n, const void* vx, const void* vy) {
  using Ops = Iq1Ops<Arch>;
  const auto* x = static_cast<const ref::block_iq1_s*>(vx);
  const auto* y = static_cast<const ref::block_q8_K*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    int32_t sumi = 0, sumd = 0;
    for (int ib = 0; ib < ref::QK_K / 32; ++ib) {
      const uint16_t h = x[i].qh[ib];
      const int ls = 2 * ((h >> 12) & 7) + 1;
      uint16_t idx[4];
      for (int k = 0; k < 4; ++k) idx[k] = static_cast<uint16_t>(x[i].qs[4 * ib + k] | ((h >> (3 * k)) & 7) << 8);
      alignas(32) int8_t v[32];
      Ops::entries(idx, 4, v);
      sumi += ls * Ops::dot(v, y[i].qs + 32 * ib, 32);
      const int32_t bs = y[i].bsums[2 * ib] + y[i].bsums[2 * ib + 1];
      sumd += (h & 0x8000 ? -ls : ls) * bs;
    }
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
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    uint16_t sc[4];
    std::memcpy(sc, x[i].scales, sizeof(sc));
    int32_t sumi = 0, sumd = 0;
    for (int ib = 0; ib < ref::QK_K / 32; ++ib) {
      uint16_t idx[4];
      int nib[4];
      for (int k = 0; k < 4; ++k) {
        const int g = 4 * ib + k;
        nib[k] = (x[i].qh[g / 2] >> (4 * (g % 2))) & 15;
        idx[k] = static_cast<uint16_t>(x[i].qs[g] | (nib[k] & 7) << 8);
      }
      alignas(32) int8_t v[32];
      Ops::entries(idx, 4, v);
      const int8_t* q8 = y[i].qs + 32 * ib;
      for (int half = 0; half < 2; ++half) {
        const int ls = 2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3 * half)) & 7) + 1;
        int32_t sd = 0;
        for (int k = 2 * half; k < 2 * half + 2; ++k) {
          const int32_t qsum = Ops::sum8(q8 + 8 * k);
          sd += nib[k] & 8 ? -qsum : qsum;
        }
        sumi += ls * Ops::dot(v + 16 * half, q8 + 16 * half, 16);
        sumd += ls * sd;
      }
    }
    sum += Ops::scale_m(sc) * y[i].d * (static_cast<float>(sumi) + Ops::kDelta * static_cast<float>(sumd));
  }
  return sum;
}

#define LQ_CPU_IQ1_KERNELS(X) X(DequantIq1S) X(DequantIq1M) X(DotIq1SQ8K) X(DotIq1MQ8K)

}  // namespace lq::cpu
