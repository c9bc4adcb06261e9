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
#include "signatures.hpp"

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

// The three layouts: sub(b, ib, v, s) decodes sub-block ib (32 values): v[k] the signed values of
// its group k of 8 as the bytes of one word, s[0], s[1] the 4-bit scales of its two halves
// (multiplier 2 s + 1 in the dots, d (0.5 + s) / 4 in the decoders). kRun: the values one scale
// covers (IQ2_XXS: 32, both halves share it; the dots scale whole runs, which is faster).
template <class Arch>
struct Iq2Xxs {
  using block = ref::block_iq2_xxs;
  static constexpr int kRun = 32;
  static void sub(const block& b, int ib, uint64_t* v, int* s) {
    uint32_t q[2];
    std::memcpy(q, b.qs + 4 * ib, sizeof(q));
    for (int k = 0; k < 4; ++k)
      v[k] = Iq2Ops<Arch>::apply_signs(ref::iq2xxs_grid[(q[0] >> (8 * k)) & 255],
                                       iq_detail::kEvenSignBytes[(q[1] >> (7 * k)) & 127]);
    s[0] = s[1] = static_cast<int>(q[1] >> 28);
  }
};

template <class Arch>
struct Iq2Xs {
  using block = ref::block_iq2_xs;
  static constexpr int kRun = 16;
  static void sub(const block& b, int ib, uint64_t* v, int* s) {
    for (int k = 0; k < 4; ++k) {
      const uint16_t q = b.qs[4 * ib + k];
      v[k] = Iq2Ops<Arch>::apply_signs(ref::iq2xs_grid[q & 511], iq_detail::kEvenSignBytes[q >> 9]);
    }
    s[0] = b.scales[ib] & 15;
    s[1] = b.scales[ib] >> 4;
  }
};

template <class Arch>
struct Iq2S {
  using block = ref::block_iq2_s;
  static constexpr int kRun = 16;
  static void sub(const block& b, int ib, uint64_t* v, int* s) {
    for (int k = 0; k < 4; ++k) {
      const int g = 4 * ib + k;
      v[k] = Iq2Ops<Arch>::apply_signs(ref::iq2s_grid[b.qs[g] | ((b.qh[ib] >> (2 * k)) & 3) << 8],
                                       iq_detail::kSignBytes[b.qs[ref::QK_K / 8 + g]]);
    }
    s[0] = b.scales[ib] & 15;
    s[1] = b.scales[ib] >> 4;
  }
};

template <class Arch, class C>
void iq2_dequant(const void* src, float* dst, int64_t n) {
  using Ops = Iq2Ops<Arch>;
  const auto* x = static_cast<const typename C::block*>(src);
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < ref::QK_K / 32; ++ib, dst += 32) {
      alignas(32) uint64_t v[4];
      int sc[2];
      C::sub(x[i], ib, v, sc);
      const float db[2] = {d * (0.5f + static_cast<float>(sc[0])) * 0.25f, d * (0.5f + static_cast<float>(sc[1])) * 0.25f};
      for (int k = 0; k < 4; ++k) Ops::scale8(reinterpret_cast<const int8_t*>(v + k), db[k / 2], dst + 8 * k);
    }
  }
}

// The dots write a whole super-block of signed values, scale them per run in int16 and reduce
// once against the activations (small writes read back at once stall on store forwarding, and a
// reduction per run of 16 or 32 costs more than the products).
template <class Arch, class C>
float iq2_dot(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const typename C::block*>(vx);
  const auto* y = static_cast<const ref::block_q8_K*>(vy);
  float sum = 0;
  alignas(64) uint64_t v[ref::QK_K / 8];
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    int32_t ls[ref::QK_K / 16];
    for (int ib = 0; ib < ref::QK_K / 32; ++ib) {
      int sc[2];
      C::sub(x[i], ib, v + 4 * ib, sc);
      for (int h = 0; h < 32 / C::kRun; ++h) ls[32 / C::kRun * ib + h] = 2 * sc[h] + 1;
    }
    alignas(64) int16_t w[ref::QK_K];
    Iq2Ops<Arch>::scale_runs(reinterpret_cast<const int8_t*>(v), ls, C::kRun, w);
    const int32_t bsum = Iq2Ops<Arch>::dot256(w, y[i].qs);
    sum += fp16_to_f32(x[i].d) * y[i].d * static_cast<float>(bsum);
  }
  return 0.125f * sum;
}

template <class Arch> void DequantIq2Xxs<Arch>::run(const void* src, float* dst, int64_t n) { iq2_dequant<Arch, Iq2Xxs<Arch>>(src, dst, n); }
template <class Arch> void DequantIq2Xs<Arch>::run(const void* src, float* dst, int64_t n) { iq2_dequant<Arch, Iq2Xs<Arch>>(src, dst, n); }
template <class Arch> void DequantIq2S<Arch>::run(const void* src, float* dst, int64_t n) { iq2_dequant<Arch, Iq2S<Arch>>(src, dst, n); }
template <class Arch> float DotIq2XxsQ8K<Arch>::run(int64_t n, const void* x, const void* y) { return iq2_dot<Arch, Iq2Xxs<Arch>>(n, x, y); }
template <class Arch> float DotIq2XsQ8K<Arch>::run(int64_t n, const void* x, const void* y) { return iq2_dot<Arch, Iq2Xs<Arch>>(n, x, y); }
template <class Arch> float DotIq2SQ8K<Arch>::run(int64_t n, const void* x, const void* y) { return iq2_dot<Arch, Iq2S<Arch>>(n, x, y); }

#define LQ_CPU_IQ2_KERNELS(X) \
  X(DequantIq2Xxs) X(DequantIq2Xs) X(DequantIq2S) X(DotIq2XxsQ8K) X(DotIq2XsQ8K) X(DotIq2SQ8K)

}  // namespace lq::cpu
