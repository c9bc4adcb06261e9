// Search of the TQ1_0 / TQ2_0 quantizers, written once for the scalar reference and its xsimd
// twins, which supply only the per-element passes (same operations, same 16-lane order).
//
// Values are t * d with t in {-1, 0, 1}. For a threshold th (t = 0 where |x| <= th) the best
// scale is d = sum_{|x|>th} w|x| / sum_{|x|>th} w and the error falls by (sum w|x|)^2 / sum w.
// Lloyd's iteration (th <- d / 2) never increases the error; it starts from 3/4 of the weighted
// mean |x| and converges in two or three passes on weight-like data. d = absmax, the simple
// alternative, leaves most values at zero.
// Everything here has internal linkage: the per-ISA kernel TUs include this header too, and an
// inline function with external linkage could be merged across them and run AVX code on the
// SSE2 path (or in the reference).
#pragma once

#include "core/half.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/importance.hpp"
#include "types/ref/lanes.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace lq::ref::ternary {
namespace {

inline constexpr int kMaxPasses = 3;
inline constexpr float kMaxScale = 65504.f;

/// Scalar passes. a = |x|; wv = importance + qfloor (importance.hpp; nullptr: unit weights);
/// wa = wv * a (a when unit).
struct RefOps {
  static void prepare(const float* x, const float* qw, float qfloor, float* a, float* wv, float* wa) {
    for (int j = 0; j < QK_K; ++j) {
      a[j] = std::fabs(x[j]);
      if (qw) {
        wv[j] = sanitize_importance(qw[j]) + qfloor;
        wa[j] = wv[j] * a[j];
      }
    }
  }
  /// Sums of wa and wv over the values with a > th (all values when th < 0).
  static void sums(const float* a, const float* wv, const float* wa, float th, float& sa, float& sw) {
    float la[kLanes] = {}, lw[kLanes] = {};
    for (int j = 0; j < QK_K; j += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        const bool on = a[j + l] > th;
        la[l] = la[l] + keep_if(on, wa[j + l]);
        lw[l] = lw[l] + keep_if(on, wv ? wv[j + l] : 1.f);
      }
    }
    sa = reduce_lanes(la);
    sw = reduce_lanes(lw);
  }
  /// Trits (0, 1, 2 for -1, 0, +1) of a block against half the stored scale, packed.
  template <class Block>
  static void pack_block(const float* x, float half_d, Block& b);
};

/// Least-squares scale of a 256-value block (already prepared).
template <class Ops>
float block_scale(const float* a, const float* wv, const float* wa) {
  float sa, sw;
  Ops::sums(a, wv, wa, -1.f, sa, sw);
  if (!(sa > 0 && sw > 0)) return 0.f;
  float th = 0.75f * (sa / sw), d = 0, best = 0;
  for (int pass = 0; pass < kMaxPasses; ++pass) {
    Ops::sums(a, wv, wa, th, sa, sw);
    if (!(sw > 0)) break;
    const float gain = sa * (sa / sw);
    if (!(gain > best)) break;
    best = gain;
    d = sa / sw;
    if (0.5f * d == th) break;
    th = 0.5f * d;
  }
  return std::min(d, kMaxScale);
}

inline uint8_t pack5(const uint8_t* t, int stride, int count) {
  int v = 0;
  for (int n = 0; n < 5; ++n) v = 3 * v + (n < count ? t[n * stride] : 0);
  return static_cast<uint8_t>((v * 256 + 242) / 243);  // ceil(v * 256 / 243)
}

inline void pack(const uint8_t* t, block_tq1_0& b) {
  for (int m = 0; m < 32; ++m) b.qs[m] = pack5(t + m, 32, 5);
  for (int m = 0; m < 16; ++m) b.qs[32 + m] = pack5(t + 160 + m, 16, 5);
  for (int j = 0; j < 4; ++j) b.qh[j] = pack5(t + 240 + j, 4, 4);
}

inline void pack(const uint8_t* t, block_tq2_0& b) {
  for (int g = 0; g < 2; ++g)
    for (int m = 0; m < 32; ++m) {
      const uint8_t* v = t + 128 * g + m;
      b.qs[32 * g + m] = static_cast<uint8_t>(v[0] | (v[32] << 2) | (v[64] << 4) | (v[96] << 6));
    }
}

template <class Block>
void RefOps::pack_block(const float* x, float half_d, Block& b) {
  uint8_t t[QK_K];
  for (int j = 0; j < QK_K; ++j)
    t[j] = static_cast<uint8_t>(half_d > 0 ? 1 + static_cast<int>(x[j] > half_d) - static_cast<int>(x[j] < -half_d) : 1);
  pack(t, b);
}

/// Quantizes rows of 256-value blocks into Block (block_tq1_0 or block_tq2_0).
template <class Ops, class Block>
void quantize_rows(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  auto* y = static_cast<Block*>(dst);
  const WeightedBlocks<QK_K> blocks(src, nrows, n_per_row, imatrix);
  alignas(64) float a[QK_K], wv[QK_K], wa[QK_K];
  for (const WeightedBlock b : blocks) {
    Ops::prepare(b.x, b.qw, blocks.qfloor, a, wv, wa);
    const float d = b.qw ? block_scale<Ops>(a, wv, wa) : block_scale<Ops>(a, nullptr, a);
    Block& blk = y[b.i];
    blk.d = f32_to_fp16(d);
    Ops::pack_block(b.x, 0.5f * fp16_to_f32(blk.d), blk);
  }
}

}  // namespace
}  // namespace lq::ref::ternary
