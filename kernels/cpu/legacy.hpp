// CPU kernels: legacy 32-value block types, and W4G's and W8G's blocks (third-party integer
// weights held exactly: d * (q - z)).
#pragma once

#include "arch.hpp"
#include "iq_simd.hpp"
#include "signatures.hpp"

#include "core/float_cast.hpp"
#include "core/half.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/int4_groups.hpp"
#include "types/ref/legacy.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace lq::cpu {

// Q8_0 quantizer, byte-identical to ref::quantize_q8_0 (same operations in the same order:
// absmax, d = amax / 127, id = 1 / d, round half away from zero).

template <class Arch>
void QuantizeQ8_0<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float*) {
    using B = xsimd::batch<float, Arch>;
    constexpr int W = static_cast<int>(B::size);
    auto* y = static_cast<ref::block_q8_0*>(dst);
    const int64_t nb = nrows * n_per_row / 32;
    for (int64_t ib = 0; ib < nb; ++ib) {
      const float* x = src + ib * 32;
      B vmax(0.f);
      for (int j = 0; j < 32; j += W) vmax = xsimd::max(vmax, xsimd::abs(B::load_unaligned(x + j)));
      const float amax = hmax(vmax);
      const float d = amax / 127.f;
      const float id = d ? 1.0f / d : 0.0f;
      y[ib].d = f32_to_fp16(d);
      const B vid(id);
      alignas(64) float tmp[32];
      for (int j = 0; j < 32; j += W) xsimd::round(B::load_unaligned(x + j) * vid).store_aligned(tmp + j);
      for (int j = 0; j < 32; ++j) y[ib].qs[j] = trunc_i8(tmp[j]);  // NaN (a hostile row): the reference's 0
    }
}

// Q4_0/Q4_1/Q5_0/Q5_1 without importance weights: the classic max-based formulas of
// ref::quantize_q*_*, vectorised with the same operations in the same order (so the bytes are
// identical; contraction into FMA is off for these TUs). With importance weights they run the
// reference search.
template <class Arch, int kNmax, bool kAffine>
struct LegacyBlocks {
  using B = xsimd::batch<float, Arch>;
  using BI = xsimd::batch<int32_t, Arch>;
  // A block whose inverse scale overflows (|d| <= 2^-128, a maximum in the denormals: 1/d is
  // inf) gives levels outside int8; there the reference's truncation decides (trunc_i8: x86's
  // result, which the vector conversions do not give), so such a block's levels are redone with
  // the reference's scalar arithmetic, on every ISA.
  static bool overflows(float d) { return d != 0 && !(std::fabs(d) > 0x1p-128f); }
  [[gnu::noinline, gnu::cold]] static void scalar_levels(const float* x, float d, float m, int32_t* L) {
    const float id = 1.0f / d;
    for (int j = 0; j < 32; ++j) {
      const float v = kAffine ? (x[j] - m) * id + 0.5f : x[j] * id + (kNmax + 0.5f);
      L[j] = std::min<int32_t>(kAffine ? kNmax : 2 * kNmax - 1, trunc_i8(v));
    }
  }

  // Levels of one 32-value block (0..2*kNmax-1 symmetric, 0..kNmax affine), d and m.
  static void block(const float* x, int32_t* L, float& d_out, float& m_out) {
    constexpr int W = static_cast<int>(B::size);
    if constexpr (!kAffine) {
      B vhi = B::load_unaligned(x), vlo = vhi;
      for (int j = W; j < 32; j += W) {
        const B v = B::load_unaligned(x + j);
        vhi = xsimd::max(vhi, v);
        vlo = xsimd::min(vlo, v);
      }
      const B bhi = allmax(vhi), blo = -allmax(-vlo);
      B bmax = xsimd::select(bhi > -blo, bhi, blo);  // in vectors: the sign is a coin toss
      // The reference keeps the first value of largest magnitude; only a tie between +a and -a
      // needs the order, and that is rare enough for a scalar scan.
      const float hi = bhi.get(0), lo = blo.get(0);
      if (hi == -lo) [[unlikely]] {
        float max = 0;
        if (hi != 0)
          for (int j = 0; j < 32; ++j)
            if (std::fabs(x[j]) == hi) {
              max = x[j];
              break;
            }
        bmax = B(max);
      }
      const B bd = div_exact(bmax, B(static_cast<float>(-kNmax)));
      const B vid = xsimd::select(bd != B(0.f), div_exact(B(1.0f), bd), B(0.f));
      const float d = bd.get(0);
      const B off(kNmax + 0.5f);
      const BI top(2 * kNmax - 1);
      for (int j = 0; j < 32; j += W) {
        const B v = B::load_unaligned(x + j) * vid + off;
        xsimd::min(xsimd::batch_cast<int32_t>(v), top).store_unaligned(L + j);
      }
      d_out = d;
      m_out = 0;
    } else {
      B vmin = B::load_unaligned(x), vmax = vmin;
      for (int j = W; j < 32; j += W) {
        const B v = B::load_unaligned(x + j);
        vmin = xsimd::min(vmin, v);
        vmax = xsimd::max(vmax, v);
      }
      // + 0.f: a minimum of +0 must stay +0 as in the reference (xsimd's AVX-512 negation is
      // 0 - x, which turns +0 into +0 and its negation into -0, written as m = 0x8000).
      const float mn = -hmax(-vmin) + 0.f, mx = hmax(vmax);
      const float d = (mx - mn) / kNmax;
      const float id = d ? 1.0f / d : 0.0f;
      const B vid(id), vmn(mn), half(0.5f);
      const BI top(kNmax);
      for (int j = 0; j < 32; j += W) {
        const B v = (B::load_unaligned(x + j) - vmn) * vid + half;
        xsimd::min(xsimd::batch_cast<int32_t>(v), top).store_unaligned(L + j);
      }
      d_out = d;
      m_out = mn;
    }
  }
};

// qs[j] = L[j] | L[j + 16] << 4 for j < 16, combined in 32-bit lanes then narrowed.
template <class Arch>
inline void pack_nibbles(const int32_t* L, uint8_t* qs) {
  using BI = xsimd::batch<int32_t, Arch>;
  constexpr int W = static_cast<int>(BI::size);
  alignas(64) int32_t t[16];
  for (int j = 0; j < 16; j += W)
    (BI::load_aligned(L + j) | (BI::load_aligned(L + 16 + j) << 4)).store_aligned(t + j);
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(t[j]);
}

// qh bit j = bit 4 of level j (5-bit types).
template <class Arch>
uint32_t fifth_bits(const int32_t* L) {
  uint32_t qh = 0;
  for (int j = 0; j < 32; ++j) qh |= static_cast<uint32_t>((L[j] >> 4) & 1) << j;
  return qh;
}

// One 32-value block type: kNmax and kAffine as in LegacyBlocks; Block has a min m when affine
// and the fifth bits qh when its levels exceed 15.
template <class Arch, class Block, int kNmax, bool kAffine>
void quantize_legacy(const float* src, void* dst, int64_t nrows, int64_t n_per_row) {
  constexpr bool kFiveBits = (kAffine ? kNmax : 2 * kNmax - 1) > 15;
  auto* y = static_cast<Block*>(dst);
  alignas(64) int32_t L[32];
  for (int64_t ib = 0, nb = nrows * n_per_row / 32; ib < nb; ++ib) {
    float d, m;
    using Blocks = LegacyBlocks<Arch, kNmax, kAffine>;
    Blocks::block(src + ib * 32, L, d, m);
    if (Blocks::overflows(d)) [[unlikely]] Blocks::scalar_levels(src + ib * 32, d, m, L);
    y[ib].d = f32_to_fp16(d);
    if constexpr (kAffine) y[ib].m = f32_to_fp16(m);
    if constexpr (kFiveBits) {
      for (int j = 0; j < 16; ++j) y[ib].qs[j] = static_cast<uint8_t>((L[j] & 15) | ((L[j + 16] & 15) << 4));
      const uint32_t qh = fifth_bits<Arch>(L);
      std::memcpy(y[ib].qh, &qh, 4);
    } else {
      pack_nibbles<Arch>(L, y[ib].qs);
    }
  }
}

template <class Arch>
void QuantizeQ4_0<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  if (imatrix) return ref::quantize_q4_0(src, dst, nrows, n_per_row, imatrix);
  quantize_legacy<Arch, ref::block_q4_0, 8, false>(src, dst, nrows, n_per_row);
}
template <class Arch>
void QuantizeQ4_1<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  if (imatrix) return ref::quantize_q4_1(src, dst, nrows, n_per_row, imatrix);
  quantize_legacy<Arch, ref::block_q4_1, 15, true>(src, dst, nrows, n_per_row);
}
template <class Arch>
void QuantizeQ5_0<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  if (imatrix) return ref::quantize_q5_0(src, dst, nrows, n_per_row, imatrix);
  quantize_legacy<Arch, ref::block_q5_0, 16, false>(src, dst, nrows, n_per_row);
}
template <class Arch>
void QuantizeQ5_1<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  if (imatrix) return ref::quantize_q5_1(src, dst, nrows, n_per_row, imatrix);
  quantize_legacy<Arch, ref::block_q5_1, 31, true>(src, dst, nrows, n_per_row);
}

// W4G: each value d * (float(q) - z), as ref::dequantize_w4g, bit for bit: q - z is an exact small
// integer (a byte table lookup of the nibble, one 16-entry table per zero point), then one product.
// Byte tables need AVX2 or AVX-512; other ISAs take the reference.
template <class Arch>
void DequantW4G<Arch>::run(const void* src, float* dst, int64_t n) {
  if constexpr (!kByteSimd<Arch>) {
    ref::dequantize_w4g(src, dst, n);
  } else {
    using V = Bytes<Arch>;
    struct Tables {
      int8_t t[16][16];  // t[z][q] = q - z
      constexpr Tables() : t{} {
        for (int z = 0; z < 16; ++z)
          for (int q = 0; q < 16; ++q) t[z][q] = static_cast<int8_t>(q - z);
      }
    };
    static constexpr Tables kMinusZero;
    const auto* in = static_cast<const ref::BlockW4G*>(src);
    for (int64_t b = 0; b < n / 32; ++b) {
      const ref::BlockW4G& blk = in[b];
      V::store_scaled(V::lut16(V::nibbles(blk.qs), kMinusZero.t[static_cast<int>(blk.z)]), blk.d, dst + 32 * b);
    }
  }
}

// W8G: d * (float(q) - z) as ref::dequantize_w8g; the block's codes, scale and zero copied out
// first, so the loop has no aliasing to rule out and vectorises.
template <class Arch>
void DequantW8G<Arch>::run(const void* src, float* dst, int64_t n) {
  const auto* in = static_cast<const ref::BlockW8G*>(src);
  for (int64_t b = 0; b < n / 32; ++b) {
    uint8_t q[32];
    std::memcpy(q, in[b].q, 32);
    const float d = in[b].d, z = in[b].z;
    float* y = dst + b * 32;
    for (int j = 0; j < 32; ++j) y[j] = d * (static_cast<float>(q[j]) - z);
  }
}

#define LQ_CPU_LEGACY_KERNELS(X) X(QuantizeQ8_0) X(QuantizeQ4_0) X(QuantizeQ4_1) X(QuantizeQ5_0) X(QuantizeQ5_1) \
  X(DequantW4G) X(DequantW8G)

}  // namespace lq::cpu
