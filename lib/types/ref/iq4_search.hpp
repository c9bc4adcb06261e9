// Search of the IQ4_NL / IQ4_XS quantizers, written once for the scalar reference and its xsimd
// twins. An Ops type supplies the per-element work (prepare, signed_max, pack, and eval: the sums
// of a few candidate scales over a 32-value block); RefOps is the scalar version, and a twin must
// compute the same values with the same operations in the same order (lanes.hpp), so that every
// decision below, and therefore every byte written, is the same.
//
// Levels are d * K[i] with K = kvalues_iq4nl (non-uniform, -127..113). For an inverse scale id the
// level of x is the one nearest to id * x; with xhat = d * K, the weighted error of a fixed level
// choice is minimised by d = S1 / S2 (S1 = sum w x K, S2 = sum w K^2) and falls by S1^2 / S2.
// The search evaluates a few candidates for each orientation of the block's largest value (onto
// -127 or onto +113), then runs Lloyd's iteration (d <- S1/S2, re-pick levels) from the best.
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

namespace lq::ref::iq4 {
namespace {

inline constexpr int kBlock = 32;
inline constexpr int kCells = 512;

/// Cell of a value already scaled by 2 * id: the nearest level depends only on floor(2 * id * x)
/// because every midpoint between two levels is a multiple of 1/2. The clamps are written as
/// x86 max/min operate (NaN yields the second operand), so NaN maps to cell 0 everywhere.
inline int cell(float v2) {
  v2 = v2 > -256.f ? v2 : -256.f;
  v2 = v2 < 254.f ? v2 : 254.f;
  return static_cast<int>(v2 + 256.f);
}

/// The levels (kvalues_iq4nl, a format constant; tests check the copy).
inline constexpr int8_t kValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/// Level value and level index of each cell (ties between two levels go up); the index is also
/// kept as float for vector gathers.
struct CellTables {
  float value[kCells];
  float findex[kCells];
  uint8_t index[kCells];
};
inline constexpr CellTables kCellTables = [] {
  CellTables t{};
  for (int c = 0; c < kCells; ++c) {
    int i = 0;
    while (i < 15 && kValues[i] + kValues[i + 1] <= c - 256) ++i;  // 2 * midpoint <= floor(2 * id * x)
    t.index[c] = static_cast<uint8_t>(i);
    t.findex[c] = static_cast<float>(i);
    t.value[c] = kValues[i];
  }
  return t;
}();

/// Sums of one candidate over a 32-value block.
struct Sums {
  float s1 = 0;  ///< sum w x K
  float s2 = 0;  ///< sum w K^2
};

/// Scalar evaluation of n candidates (inverse scales id2[c] / 2) over a 32-value block, in the
/// order every twin reproduces: element j in lane j % 16, then reduce_lanes. w == nullptr means
/// unit weights (then wx is x; 1 * v is v exactly, so twins may skip those products).
inline void eval_ref(const float* x, const float* w, const float* wx, const float* id2, int n, Sums* out) {
  const CellTables& t = kCellTables;
  for (int c = 0; c < n; ++c) {
    float a[kLanes] = {}, b[kLanes] = {};
    for (int j = 0; j < kBlock; j += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        const float v = t.value[cell(id2[c] * x[j + l])];
        a[l] = a[l] + wx[j + l] * v;
        b[l] = b[l] + (w ? w[j + l] * (v * v) : v * v);
      }
    }
    out[c] = {reduce_lanes(a), reduce_lanes(b)};
  }
}

/// Candidates per orientation, their spacing (in levels at the largest value), Lloyd steps.
/// Measured on real weights, IQ4_NL's setting leaves the RMSE about 0.7% above an exhaustive
/// scan of the scale at a twentieth of the evaluations (a second Lloyd step gains 0.02%);
/// IQ4_XS, which is less speed-critical, uses more candidates.
struct Params {
  int per_side;
  float step;
  int lloyd;
};
inline constexpr Params kNlParams{3, 10.f, 1};
inline constexpr Params kXsParams{5, 8.f, 3};
/// IQ4_XS super-scale candidates on each side of (largest sub-block scale) / 32.
inline constexpr int kXsSuperCandidates = 2;

inline constexpr int kMaxCandidates = 16;

/// Best (unrounded) scale of a 32-value block; 0 for an all-zero block. max: the signed value of
/// largest magnitude. eval(id2, n, out) evaluates n candidates.
template <class Eval>
float best_scale(float max, const Params& p, Eval&& eval) {
  if (!(std::fabs(max) >= 1e-15f)) return 0.f;
  float best = 0, d = 0;
  auto consider = [&](const Sums& s) {
    if (s.s2 > 0 && s.s1 * s.s1 > best * s.s2) {
      best = s.s1 * (s.s1 / s.s2);
      d = s.s1 / s.s2;
      return true;
    }
    return false;
  };
  float id2[kMaxCandidates];
  Sums sums[kMaxCandidates];
  int n = 0;
  for (int k = 0; k < p.per_side; ++k) {
    const float off = p.step * (static_cast<float>(k) - 0.5f * static_cast<float>(p.per_side - 1));
    id2[n++] = -2.f * (127.f + off) / max;
    id2[n++] = 2.f * (113.f + off) / max;
  }
  eval(id2, n, sums);
  for (int c = 0; c < n; ++c) consider(sums[c]);
  for (int it = 0; it < p.lloyd && d != 0; ++it) {
    id2[0] = 2.f / d;
    if (!std::isfinite(id2[0])) break;
    eval(id2, 1, sums);
    if (!consider(sums[0])) break;
  }
  return d;
}

/// Values with NaN replaced by 0 and magnitudes capped, so that every product stays finite.
inline float sanitize(float v) { return v == v ? std::clamp(v, -1e15f, 1e15f) : 0.f; }

/// Largest representable scale (fp16 max).
inline constexpr float kMaxScale = 65504.f;

/// Search inputs of n values (n = 32 or 256): sanitised x, and with importance data qw the
/// weights w = (qw + qfloor) * sqrt(sigma2 + x^2) and w * x, sigma2 twice the mean square of the
/// n values, which keeps large values accurate where the imatrix is small (llama.cpp weighs the
/// same way; qfloor: importance.hpp). Without importance data all weights are 1 (plain squared
/// error) and w, wx are not used.
inline void prepare(const float* src, const float* qw, float qfloor, int n, float* x, float* w, float* wx) {
  for (int j = 0; j < n; ++j) x[j] = sanitize(src[j]);
  if (!qw) return;
  float acc[kLanes] = {};
  for (int j = 0; j < n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] = acc[l] + x[j + l] * x[j + l];
  const float sigma2 = 2.f * reduce_lanes(acc) / static_cast<float>(n);
  for (int j = 0; j < n; ++j) {
    w[j] = (sanitize_importance(qw[j]) + qfloor) * std::sqrt(sigma2 + x[j] * x[j]);
    wx[j] = w[j] * x[j];
  }
}

/// The value of largest magnitude (the first one on ties).
inline float signed_max(const float* x, int n) {
  float amax = 0;
  for (int j = 0; j < n; ++j) amax = std::max(amax, std::fabs(x[j]));
  for (int j = 0; j < n; ++j)
    if (std::fabs(x[j]) == amax) return x[j];
  return 0.f;
}

inline float clamp_scale(float d) { return std::clamp(d, -kMaxScale, kMaxScale); }

/// Levels of 32 values against the stored scale d, packed as two nibble halves.
inline void pack_nibbles(const float* x, float d, uint8_t* qs) {
  const float id2 = d != 0 ? 2.f / d : 0.f;
  uint8_t L[kBlock];
  for (int j = 0; j < kBlock; ++j) L[j] = kCellTables.index[cell(id2 * x[j])];
  for (int j = 0; j < kBlock / 2; ++j) qs[j] = static_cast<uint8_t>(L[j] | (L[j + kBlock / 2] << 4));
}

/// The scalar operations; a twin replaces prepare/eval by ones giving identical results.
struct RefOps {
  static void prepare(const float* src, const float* qw, float qfloor, int n, float* x, float* w, float* wx) {
    iq4::prepare(src, qw, qfloor, n, x, w, wx);
  }
  static float signed_max(const float* x, int n) { return iq4::signed_max(x, n); }
  static void pack(const float* x, float d, uint8_t* qs) { pack_nibbles(x, d, qs); }
  static void eval(const float* x, const float* w, const float* wx, const float* id2, int n, Sums* out) {
    eval_ref(x, w, wx, id2, n, out);
  }
};

template <class Ops>
void quantize_nl_rows(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  auto* y = static_cast<block_iq4_nl*>(dst);
  const WeightedBlocks<kBlock> blocks(src, nrows, n_per_row, imatrix);
  alignas(64) float x[kBlock], w[kBlock], wx[kBlock];
  for (const WeightedBlock b : blocks) {
    block_iq4_nl& blk = y[b.i];
    Ops::prepare(b.x, b.qw, blocks.qfloor, kBlock, x, w, wx);
    const float* pw = b.qw ? w : nullptr;
    const float* pwx = b.qw ? wx : x;
    const float d = best_scale(Ops::signed_max(x, kBlock), kNlParams,
                               [&](const float* id2, int n, Sums* out) { Ops::eval(x, pw, pwx, id2, n, out); });
    blk.d = f32_to_fp16(clamp_scale(d));
    Ops::pack(x, fp16_to_f32(blk.d), blk.qs);
  }
}

/// IQ4_XS super-block scale given the sub-block scales: returns the fp16 super-scale and writes
/// the signed 6-bit sub-block scales (-32..31). eval(b, id2) evaluates sub-block b.
template <class Eval>
uint16_t choose_xs_scales(const float* scales, int* ls, Eval&& eval) {
  float smax = 0;
  for (int b = 0; b < 8; ++b)
    if (std::fabs(scales[b]) > std::fabs(smax)) smax = scales[b];
  std::fill(ls, ls + 8, 0);
  if (smax == 0) return 0;
  uint16_t best_dh = 0;
  float best = 0;
  for (int k = -kXsSuperCandidates; k <= kXsSuperCandidates; ++k) {
    const uint16_t dh = f32_to_fp16(clamp_scale(-smax / (32.f + 0.5f * static_cast<float>(k))));
    const float d = fp16_to_f32(dh);
    if (d == 0) continue;
    float total = 0;
    int cand[8];
    for (int b = 0; b < 8; ++b) {
      const int l0 = std::clamp(static_cast<int>(std::lrint(scales[b] / d)), -32, 31);
      int lv[3], n = 0;
      float id2[3];
      Sums sums[3];
      for (int l = std::max(-32, l0 - 1); l <= std::min(31, l0 + 1); ++l) {
        if (l == 0) continue;
        lv[n] = l;
        id2[n++] = 2.f / (d * static_cast<float>(l));
      }
      eval(b, id2, n, sums);
      float be = 0;  // error change of the sub-block relative to all-zero
      int bl = 0;
      for (int c = 0; c < n; ++c) {
        const float dl = d * static_cast<float>(lv[c]);
        const float e = dl * (dl * sums[c].s2 - 2.f * sums[c].s1);
        if (e < be) {
          be = e;
          bl = lv[c];
        }
      }
      cand[b] = bl;
      total += be;
    }
    if (total < best) {
      best = total;
      best_dh = dh;
      std::copy(cand, cand + 8, ls);
    }
  }
  return best_dh;
}

template <class Ops>
void quantize_xs_rows(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  auto* y = static_cast<block_iq4_xs*>(dst);
  alignas(64) float x[QK_K], w[QK_K], wx[QK_K];
  float scales[8];
  int ls[8];
  const WeightedBlocks<QK_K> blocks(src, nrows, n_per_row, imatrix);
  for (const WeightedBlock b : blocks) {
    block_iq4_xs& blk = y[b.i];
    Ops::prepare(b.x, b.qw, blocks.qfloor, QK_K, x, w, wx);
    auto eval = [&](int ib, const float* id2, int n, Sums* out) {
      const int o = ib * kBlock;
      Ops::eval(x + o, b.qw ? w + o : nullptr, b.qw ? wx + o : x + o, id2, n, out);
    };
    for (int ib = 0; ib < 8; ++ib)
      scales[ib] = best_scale(Ops::signed_max(x + ib * kBlock, kBlock), kXsParams,
                              [&](const float* id2, int n, Sums* out) { eval(ib, id2, n, out); });
    blk.d = choose_xs_scales(scales, ls, eval);
    const float d = fp16_to_f32(blk.d);
    blk.scales_h = 0;
    for (auto& v : blk.scales_l) v = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const int l = ls[ib] + 32;
      blk.scales_l[ib / 2] |= static_cast<uint8_t>((l & 15) << (4 * (ib % 2)));
      blk.scales_h |= static_cast<uint16_t>((l >> 4) << (2 * ib));
      Ops::pack(x + ib * kBlock, d * static_cast<float>(ls[ib]), blk.qs + ib * 16);
    }
  }
}

}  // namespace
}  // namespace lq::ref::iq4
