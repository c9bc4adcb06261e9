// CPU kernels: IQ2_XXS / IQ2_XS / IQ2_S, dequantize and dot against Q8_K.
//
// Variants: DequantIq2Xxs, DequantIq2Xs, DequantIq2S, DotIq2XxsQ8K, DotIq2XsQ8K, DotIq2SQ8K, each
// instantiated for SSE2, AVX2 and AVX-512 (isa.cpp.in) and chosen at run time (dispatch.cpp).
// A group of 8 codebook magnitudes gets its signs applied as bytes in one 64-bit word; the loops
// over the int8 values are left to the vectoriser under each ISA's flags (xsimd 8 has no
// widening int8 products). Dequantized values equal the scalar references bit for bit; dots have
// exact integer sums and the reference's per-block float steps (which an FMA ISA may fuse).
// Tests: ./build/tests/lq_tests "[iquants],[isa]" (tests/iq1_iq2_test.cpp, cpu_isa_kernels_test.cpp)
#pragma once

#include "arch.hpp"

#include "core/half.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/iq_tables.hpp"

#include <array>
#include <cstdint>
#include <cstring>

namespace lq::cpu {

namespace iq_detail {

// Byte masks (0xff where the bit is set) of every 8-bit sign pattern; the second table indexes
// IQ2_XXS/XS 7-bit sign codes, whose bit 7 is the parity of the other seven.
constexpr std::array<uint64_t, 256> make_sign_bytes() {
  std::array<uint64_t, 256> t{};
  for (int m = 0; m < 256; ++m)
    for (int k = 0; k < 8; ++k)
      if (m >> k & 1) t[m] |= uint64_t{0xff} << (8 * k);
  return t;
}
constexpr std::array<uint64_t, 128> make_even_sign_bytes() {
  std::array<uint64_t, 128> t{};
  const auto all = make_sign_bytes();
  for (int c = 0; c < 128; ++c) {
    int parity = 0;
    for (int k = 0; k < 7; ++k) parity ^= c >> k & 1;
    t[c] = all[c | parity << 7];
  }
  return t;
}
inline constexpr std::array<uint64_t, 256> kSignBytes = make_sign_bytes();
inline constexpr std::array<uint64_t, 128> kEvenSignBytes = make_even_sign_bytes();

}  // namespace iq_detail

// Helpers are members of an Arch-templated struct so that every ISA's object file keeps its own
// copy (a shared inline function could be merged across ISAs by the linker).
template <class Arch>
struct Iq2Ops {
  // Signed int8 values of a group: magnitudes (all >= 8) negated where the mask byte is 0xff.
  // Per byte, ~m + 1 never carries into the next byte.
  static uint64_t apply_signs(uint64_t mag, uint64_t mask) {
    return (mag ^ mask) + (mask & 0x0101010101010101ull);
  }
  static void scale8(const int8_t* __restrict v, float db, float* __restrict y) {
    for (int j = 0; j < 8; ++j) y[j] = db * static_cast<float>(v[j]);
  }
  // w[j] = v[j] * (odd scale of j's run of `run` values); |w| <= 43 * 31 fits int16.
  static void scale_runs(const int8_t* __restrict v, const int32_t* __restrict ls, int run, int16_t* __restrict w) {
    for (int r = 0; r < ref::QK_K / run; ++r)
      for (int j = 0; j < run; ++j)
        w[run * r + j] = static_cast<int16_t>(v[run * r + j] * static_cast<int16_t>(ls[r]));
  }
  // One reduction per super-block: sum w * q8 (|sum| < 256 * 1333 * 127).
  static int32_t dot256(const int16_t* w, const int8_t* q8) {
    int32_t s = 0;
    for (int j = 0; j < ref::QK_K; ++j) s += w[j] * static_cast<int16_t>(q8[j]);
    return s;
  }
};

template <class Arch>
struct DequantIq2Xxs {
  static void run(const void* src, float* dst, int64_t n);
};
template <class Arch>
struct DequantIq2Xs {
  static void run(const void* src, float* dst, int64_t n);
};
template <class Arch>
struct DequantIq2S {
  static void run(const void* src, float* dst, int64_t n);
};
template <class Arch>
struct DotIq2XxsQ8K {
  static float run(int64_t n, const void* x, const void* y);
};
template <class Arch>
struct DotIq2XsQ8K {
  static float run(int64_t n, const void* x, const void* y);
};
template <class Arch>
struct DotIq2SQ8K {
  static float run(int64_t n, const void* x, const void* y);
};

template <class Arch>
void DequantIq2Xxs<Arch>::run(const void* src, float* dst, int64_t n) {
  using Ops = Iq2Ops<Arch>;
  const auto* x = static_cast<const ref::block_iq2_xxs*>(src);
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < ref::QK_K / 32; ++ib, dst += 32) {
      uint32_t q[2];
      std::memcpy(q, x[i].qs + 4 * ib, sizeof(q));
      const float db = d * (0.5f + static_cast<float>(q[1] >> 28)) * 0.25f;
      alignas(32) int8_t v[32];
      for (int k = 0; k < 4; ++k) {
        const uint64_t g = Ops::apply_signs(ref::iq2xxs_grid[(q[0] >> (8 * k)) & 255],
                                            iq_detail::kEvenSignBytes[(q[1] >> (7 * k)) & 127]);
        std::memcpy(v + 8 * k, &g, 8);
      }
      for (int k = 0; k < 4; ++k) Ops::scale8(v + 8 * k, db, dst + 8 * k);
    }
  }
}

template <class Arch>
void DequantIq2Xs<Arch>::run(const void* src, float* dst, int64_t n) {
  using Ops = Iq2Ops<Arch>;
  const auto* x = static_cast<const ref::block_iq2_xs*>(src);
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < ref::QK_K / 32; ++ib, dst += 32) {
      const float db[2] = {d * (0.5f + static_cast<float>(x[i].scales[ib] & 15)) * 0.25f,
                           d * (0.5f + static_cast<float>(x[i].scales[ib] >> 4)) * 0.25f};
      alignas(32) int8_t v[32];
      for (int k = 0; k < 4; ++k) {
        const uint16_t q = x[i].qs[4 * ib + k];
        const uint64_t g = Ops::apply_signs(ref::iq2xs_grid[q & 511], iq_detail::kEvenSignBytes[q >> 9]);
        std::memcpy(v + 8 * k, &g, 8);
      }
      for (int k = 0; k < 4; ++k) Ops::scale8(v + 8 * k, db[k / 2], dst + 8 * k);
    }
  }
}

template <class Arch>
void DequantIq2S<Arch>::run(const void* src, float* dst, int64_t n) {
  using Ops = Iq2Ops<Arch>;
  const auto* x = static_cast<const ref::block_iq2_s*>(src);
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < ref::QK_K / 32; ++ib, dst += 32) {
      const float db[2] = {d * (0.5f + static_cast<float>(x[i].scales[ib] & 15)) * 0.25f,
                           d * (0.5f + static_cast<float>(x[i].scales[ib] >> 4)) * 0.25f};
      alignas(32) int8_t v[32];
      for (int k = 0; k < 4; ++k) {
        const int g8 = 4 * ib + k;
        const uint64_t g = Ops::apply_signs(ref::iq2s_grid[x[i].qs[g8] | ((x[i].qh[ib] >> (2 * k)) & 3) << 8],
                                            iq_detail::kSignBytes[x[i].qs[ref::QK_K / 8 + g8]]);
        std::memcpy(v + 8 * k, &g, 8);
      }
      for (int k = 0; k < 4; ++k) Ops::scale8(v + 8 * k, db[k / 2], dst + 8 * k);
    }
  }
}

// The dots write a whole super-block of signed values, scale them per run in int16 and reduce
// once against the activations (small writes read back at once stall on store forwarding, and a
// reduction per run of 16 or 32 costs more than the products).
template <class Arch>
float DotIq2XxsQ8K<Arch>::run(int64_t n, const void* vx, const void* vy) {
  using Ops = Iq2Ops<Arch>;
  const auto* x = static_cast<const ref::block_iq2_xxs*>(vx);
  const auto* y = static_cast<const ref::block_q8_K*>(vy);
  float sum = 0;
  alignas(64) uint64_t v[ref::QK_K / 8];
  int32_t ls[ref::QK_K / 32];
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    for (int ib = 0; ib < ref::QK_K / 32; ++ib) {
      uint32_t q[2];
      std::memcpy(q, x[i].qs + 4 * ib, sizeof(q));
      for (int k = 0; k < 4; ++k)
        v[4 * ib + k] = Ops::apply_signs(ref::iq2xxs_grid[(q[0] >> (8 * k)) & 255],
                                         iq_detail::kEvenSignBytes[(q[1] >> (7 * k)) & 127]);
      ls[ib] = static_cast<int32_t>(2 * (q[1] >> 28) + 1);
    }
    alignas(64) int16_t w[ref::QK_K];
    Ops::scale_runs(reinterpret_cast<const int8_t*>(v), ls, 32, w);
    const int32_t bsum = Ops::dot256(w, y[i].qs);
    sum += fp16_to_f32(x[i].d) * y[i].d * static_cast<float>(bsum);
  }
  return 0.125f * sum;
}

template <class Arch>
float DotIq2XsQ8K<Arch>::run(int64_t n, const void* vx, const void* vy) {
  using Ops = Iq2Ops<Arch>;
  const auto* x = static_cast<const ref::block_iq2_xs*>(vx);
  const auto* y = static_cast<const ref::block_q8_K*>(vy);
  float sum = 0;
  alignas(64) uint64_t v[ref::QK_K / 8];
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    for (int g = 0; g < ref::QK_K / 8; ++g) {
      const uint16_t q = x[i].qs[g];
      v[g] = Ops::apply_signs(ref::iq2xs_grid[q & 511], iq_detail::kEvenSignBytes[q >> 9]);
    }
    int32_t ls[ref::QK_K / 16];
    for (int h = 0; h < ref::QK_K / 16; ++h) ls[h] = 2 * ((x[i].scales[h / 2] >> (4 * (h % 2))) & 15) + 1;
    alignas(64) int16_t w[ref::QK_K];
    Ops::scale_runs(reinterpret_cast<const int8_t*>(v), ls, 16, w);
    const int32_t bsum = Ops::dot256(w, y[i].qs);
    sum += fp16_to_f32(x[i].d) * y[i].d * static_cast<float>(bsum);
  }
  return 0.125f * sum;
}

template <class Arch>
float DotIq2SQ8K<Arch>::run(int64_t n, const void* vx, const void* vy) {
  using Ops = Iq2Ops<Arch>;
  const auto* x = static_cast<const ref::block_iq2_s*>(vx);
  const auto* y = static_cast<const ref::block_q8_K*>(vy);
  float sum = 0;
  alignas(64) uint64_t v[ref::QK_K / 8];
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    for (int g = 0; g < ref::QK_K / 8; ++g)
      v[g] = Ops::apply_signs(ref::iq2s_grid[x[i].qs[g] | ((x[i].qh[g / 4] >> (2 * (g % 4))) & 3) << 8],
                              iq_detail::kSignBytes[x[i].qs[ref::QK_K / 8 + g]]);
    int32_t ls[ref::QK_K / 16];
    for (int h = 0; h < ref::QK_K / 16; ++h) ls[h] = 2 * ((x[i].scales[h / 2] >> (4 * (h % 2))) & 15) + 1;
    alignas(64) int16_t w[ref::QK_K];
    Ops::scale_runs(reinterpret_cast<const int8_t*>(v), ls, 16, w);
    const int32_t bsum = Ops::dot256(w, y[i].qs);
    sum += fp16_to_f32(x[i].d) * y[i].d * static_cast<float>(bsum);
  }
  return 0.125f * sum;
}

#define LQ_CPU_IQ2_KERNELS(X) \
  X(DequantIq2Xxs) X(DequantIq2Xs) X(DequantIq2S) X(DotIq2XxsQ8K) X(DotIq2XsQ8K) X(DotIq2SQ8K)

}  // namespace lq::cpu
