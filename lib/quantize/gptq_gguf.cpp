// GPTQ on GGUF block types (gptq_gguf.hpp): the lazy-batch column walk of gptq.cpp with the grid
// of a GGUF type. At a block's first column the type's quantizer (registry kernel, one block,
// importance weights of its columns) fixes the block's scales and mins from the current weights;
// the walk keeps those header bytes, rounds each column to the nearest level of that grid (scalar
// grids: gg_grids, gg_store; lattice i-quants: a group of 8 at a time, gg_lattice_group),
// propagates the error, and writes the codes where the dequantizer reads them. Also the
// whole-model pass that feeds Quantizer::quantize (QuantizeOptions::tensor_bytes).
#include <lq/gptq_gguf.hpp>

#include <lq/backend.hpp>
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/threads.hpp>

#include "core/fail.hpp"
#include "engine/impl.hpp"
#include "core/half.hpp"
#include "model/architecture.hpp"
#include "model/tensor_names.hpp"
#include "quantize/checkpoint.hpp"
#include "quantize/gptq_stream.hpp"
#include "quantize/gptq_walk.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/iq3.hpp"
#include "types/ref/iq_search.hpp"
#include "types/ref/iq_tables.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <set>
#include <limits>
#include <optional>
#include <cmath>
#include <cstring>

namespace lq {

namespace fs = std::filesystem;

bool gptq_gguf_supported(QuantType t) {
  switch (t) {
    case QuantType::Q4_0: case QuantType::Q4_1: case QuantType::Q5_0: case QuantType::Q5_1: case QuantType::Q8_0:
    case QuantType::Q2_K: case QuantType::Q3_K: case QuantType::Q4_K: case QuantType::Q5_K: case QuantType::Q6_K:
    case QuantType::IQ4_NL: case QuantType::IQ4_XS:
    case QuantType::IQ2_XXS: case QuantType::IQ2_XS: case QuantType::IQ2_S: case QuantType::IQ3_XXS:
    case QuantType::IQ3_S: case QuantType::IQ1_S: case QuantType::IQ1_M:
      return true;
    default:
      return false;
  }
}

namespace gguf_gptq_impl {

// The grid of one sub-block (the values that share a scale): value(q) = (q - off) * d (Q4_0,
// Q8_0; Q3_K and Q6_K with off 0 and signed codes), q * d + m (Q4_1), d * q - m (Q2_K, Q4_K,
// Q5_K) or d * K[q] (IQ4_NL, IQ4_XS: K the format's 16 non-uniform levels), q in [qmin, qmax];
// each expression is the dequantizer's own, in its order.
struct GgGrid {
  int kind = 0;  // 0: (q - off) * d, 1: q * d + m, 2: d * q - m, 3: d * K[q]
  float d = 0, m = 0;
  int off = 0, qmin = 0, qmax = 15;
  float value(int q) const {
    if (kind == 0) return static_cast<float>(q - off) * d;
    if (kind == 1) return static_cast<float>(q) * d + m;
    if (kind == 2) return d * static_cast<float>(q) - m;
    return d * static_cast<float>(ref::kvalues_iq4nl[q]);
  }
  int nearest(float w) const {
    if (kind == 3) {  // 16 levels: look at each
      int q = 0;
      float best = std::fabs(w - value(0));
      for (int c = 1; c < 16; ++c)
        if (std::fabs(w - value(c)) < best) best = std::fabs(w - value(c)), q = c;
      return q;
    }
    if (d == 0) return kind == 0 ? std::clamp(off, qmin, qmax) : qmin;
    float t = kind == 0 ? w / d + static_cast<float>(off) : kind == 1 ? (w - m) / d : (w + m) / d;
    if (!std::isfinite(t)) t = 0;
    int q = static_cast<int>(std::clamp(std::nearbyint(t), static_cast<float>(qmin), static_cast<float>(qmax)));
    // Rounding of the division can miss the nearest level by one: look at the neighbours.
    float best = std::fabs(w - value(q));
    for (int c : {q - 1, q + 1})
      if (c >= qmin && c <= qmax && std::fabs(w - value(c)) < best) best = std::fabs(w - value(c)), q = c;
    return q;
  }
};

// Values per sub-block (one grid each).
int gg_group(QuantType t) {
  return t == QuantType::Q2_K || t == QuantType::Q3_K || t == QuantType::Q6_K ? 16 : 32;
}

// The one grid of a legacy 32-value block: scale d (and min m where the block has one).
template <class Block>
GgGrid legacy_grid(const uint8_t* blk, int kind, int off, int qmin, int qmax) {
  const auto* b = reinterpret_cast<const Block*>(blk);
  float m = 0;
  if constexpr (requires { b->m; }) m = fp16_to_f32(b->m);
  return {kind, fp16_to_f32(b->d), m, off, qmin, qmax};
}

// The grids of the sub-blocks of one block (block_values / gg_group of them).
void gg_grids(QuantType t, const uint8_t* blk, GgGrid* g) {
  switch (t) {
    case QuantType::Q4_0: g[0] = legacy_grid<ref::block_q4_0>(blk, 0, 8, 0, 15); break;
    case QuantType::Q8_0: g[0] = legacy_grid<ref::block_q8_0>(blk, 0, 0, -128, 127); break;
    case QuantType::Q4_1: g[0] = legacy_grid<ref::block_q4_1>(blk, 1, 0, 0, 15); break;
    case QuantType::Q5_0: g[0] = legacy_grid<ref::block_q5_0>(blk, 0, 16, 0, 31); break;
    case QuantType::Q5_1: g[0] = legacy_grid<ref::block_q5_1>(blk, 1, 0, 0, 31); break;
    case QuantType::Q2_K: {
      const auto* b = reinterpret_cast<const ref::block_q2_K*>(blk);
      const float d = fp16_to_f32(b->d), dmin = fp16_to_f32(b->dmin);
      for (int j = 0; j < 16; ++j)
        g[j] = {2, d * static_cast<float>(b->scales[j] & 15), dmin * static_cast<float>(b->scales[j] >> 4), 0, 0, 3};
      break;
    }
    case QuantType::Q3_K: {
      const auto* b = reinterpret_cast<const ref::block_q3_K*>(blk);
      const float d = fp16_to_f32(b->d);
      for (int j = 0; j < 16; ++j) {  // signed 6-bit scales, stored + 32
        const int lo = j < 8 ? (b->scales[j] & 15) : (b->scales[j - 8] >> 4);
        const int hi = (b->scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        g[j] = {0, d * static_cast<float>((lo | (hi << 4)) - 32), 0, 0, -4, 3};
      }
      break;
    }
    case QuantType::Q4_K:
    case QuantType::Q5_K: {
      // Q5_K starts with Q4_K's d, dmin and packed 6-bit scales and mins.
      const auto* b = reinterpret_cast<const ref::block_q4_K*>(blk);
      const float d = fp16_to_f32(b->d), dmin = fp16_to_f32(b->dmin);
      for (int j = 0; j < 8; ++j) {
        int sc = 0, mn = 0;
        ref::q4k_scale_min(b->scales, j, sc, mn);
        g[j] = {2, d * static_cast<float>(sc), dmin * static_cast<float>(mn), 0, 0, t == QuantType::Q4_K ? 15 : 31};
      }
      break;
    }
    case QuantType::Q6_K: {
      const auto* b = reinterpret_cast<const ref::block_q6_K*>(blk);
      const float d = fp16_to_f32(b->d);
      for (int j = 0; j < 16; ++j) g[j] = {0, d * static_cast<float>(b->scales[j]), 0, 0, -32, 31};
      break;
    }
    case QuantType::IQ4_NL: {
      const auto* b = reinterpret_cast<const ref::block_iq4_nl*>(blk);
      g[0] = {3, fp16_to_f32(b->d), 0, 0, 0, 15};
      break;
    }
    case QuantType::IQ4_XS: {
      const auto* b = reinterpret_cast<const ref::block_iq4_xs*>(blk);
      const float d = fp16_to_f32(b->d);
      for (int j = 0; j < 8; ++j) {
        const int sc = (((b->scales_l[j / 2] >> (4 * (j % 2))) & 15) | (((b->scales_h >> (2 * j)) & 3) << 4)) - 32;
        g[j] = {3, d * static_cast<float>(sc), 0, 0, 0, 15};
      }
      break;
    }
    default:
      fail(Errc::general, "gptq: no grid for {}", type_info(t).name);
  }
}

// Sets `bits` bits of byte `p` at `shift` to v.
inline void put_bits(uint8_t& p, int shift, int bits, int v) {
  const int mask = ((1 << bits) - 1) << shift;
  p = static_cast<uint8_t>((p & ~mask) | ((v << shift) & mask));
}

// Stores code q of value e (0-based in the block), where the dequantizers read it.
void gg_store(QuantType t, uint8_t* blk, int e, int q) {
  switch (t) {
    case QuantType::Q8_0:
      reinterpret_cast<ref::block_q8_0*>(blk)->qs[e] = static_cast<int8_t>(q);
      return;
    case QuantType::Q4_0:  // value j in the low nibble of byte j, value j + 16 in its high one
      put_bits(reinterpret_cast<ref::block_q4_0*>(blk)->qs[e % 16], e >= 16 ? 4 : 0, 4, q);
      return;
    case QuantType::Q4_1:
      put_bits(reinterpret_cast<ref::block_q4_1*>(blk)->qs[e % 16], e >= 16 ? 4 : 0, 4, q);
      return;
    case QuantType::Q5_0: {  // as Q4_0, the fifth bit of value e at bit e of qh
      auto* b = reinterpret_cast<ref::block_q5_0*>(blk);
      put_bits(b->qs[e % 16], e >= 16 ? 4 : 0, 4, q & 15);
      put_bits(b->qh[e / 8], e % 8, 1, q >> 4);
      return;
    }
    case QuantType::Q5_1: {
      auto* b = reinterpret_cast<ref::block_q5_1*>(blk);
      put_bits(b->qs[e % 16], e >= 16 ? 4 : 0, 4, q & 15);
      put_bits(b->qh[e / 8], e % 8, 1, q >> 4);
      return;
    }
    case QuantType::IQ4_NL:
      put_bits(reinterpret_cast<ref::block_iq4_nl*>(blk)->qs[e % 16], e >= 16 ? 4 : 0, 4, q);
      return;
    case QuantType::IQ4_XS: {  // sub-block j's 32 values in bytes 16 j .. 16 j + 15, as IQ4_NL
      const int l = e % 32;
      put_bits(reinterpret_cast<ref::block_iq4_xs*>(blk)->qs[16 * (e / 32) + l % 16], l >= 16 ? 4 : 0, 4, q);
      return;
    }
    case QuantType::Q2_K:  // 2 bits at 2 ((e % 128) / 32) of byte 32 (e / 128) + e % 32
      put_bits(reinterpret_cast<ref::block_q2_K*>(blk)->qs[32 * (e / 128) + e % 32], 2 * ((e % 128) / 32), 2, q);
      return;
    case QuantType::Q3_K: {  // q + 4: low 2 bits as Q2_K, the third in hmask[e % 32] at bit 4 (e / 128) + (e % 128) / 32
      auto* b = reinterpret_cast<ref::block_q3_K*>(blk);
      const int u = q + 4, h = e / 128, j = (e % 128) / 32, l = e % 32;
      put_bits(b->qs[32 * h + l], 2 * j, 2, u & 3);
      put_bits(b->hmask[l], 4 * h + j, 1, u >> 2);
      return;
    }
    case QuantType::Q4_K:
    case QuantType::Q5_K: {  // nibble (e / 32) % 2 of byte 32 (e / 64) + e % 32; Q5_K's fifth bit at bit e / 32 of qh[e % 32]
      uint8_t* qs = t == QuantType::Q4_K ? reinterpret_cast<ref::block_q4_K*>(blk)->qs
                                         : reinterpret_cast<ref::block_q5_K*>(blk)->qs;
      put_bits(qs[32 * (e / 64) + e % 32], 4 * ((e / 32) % 2), 4, q & 15);
      if (t == QuantType::Q5_K) put_bits(reinterpret_cast<ref::block_q5_K*>(blk)->qh[e % 32], e / 32, 1, q >> 4);
      return;
    }
    case QuantType::Q6_K: {  // q + 32: low 4 bits in ql, high 2 in qh
      auto* b = reinterpret_cast<ref::block_q6_K*>(blk);
      const int u = q + 32, h = e / 128, k = (e % 128) / 32, l = e % 32;
      put_bits(b->ql[64 * h + l + 32 * (k % 2)], 4 * (k / 2), 4, u & 15);
      put_bits(b->qh[32 * h + l], 2 * k, 2, u >> 4);
      return;
    }
    default:
      fail(Errc::general, "gptq: no layout for {}", type_info(t).name);
  }
}

// The lattice types (IQ1_S to IQ3_S) code 8 values at a time (codebook entries of 8, or two of 4,
// with their signs), so their walk decides a group of 8 at its first column: the codebook entry
// nearest to the group's current weights at the block's stored scales (and, for IQ1_M, the better
// shift sign), written into the block; the group's columns then take the values the dequantizer
// gives. Later columns of the group do not re-round after the feedback of earlier ones, but their
// errors are still spread over the columns to come.
bool gg_lattice(QuantType t) {
  switch (t) {
    case QuantType::IQ2_XXS: case QuantType::IQ2_XS: case QuantType::IQ2_S: case QuantType::IQ3_XXS:
    case QuantType::IQ3_S: case QuantType::IQ1_S: case QuantType::IQ1_M:
      return true;
    default:
      return false;
  }
}

uint32_t load32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
void store32(void* p, uint32_t v) { std::memcpy(p, &v, sizeof(v)); }

// Nearest entry of an 8-vector codebook (IQ2, IQ1) to targets a (in units of the scale; v: the
// value of each level index): the per-coordinate rounding's entry, or off the codebook the best of
// its neighbour list, by squared distance weighted by w. *cost gets that distance.
int nearest_entry8(const ref::IqGrid& g, const float* a, const float* w, const float* v, float* cost) {
  const float t1 = 0.5f * (v[0] + v[1]), t2 = 0.5f * (v[1] + v[2]);
  int key = 0;
  for (int k = 0, p = 1; k < 8; ++k, p *= 3) key += ((a[k] > t1) + (a[k] > t2)) * p;
  auto dist = [&](int e) {
    float s = 0;
    for (int k = 0; k < 8; ++k) {
      const float d = a[k] - v[g.levels[static_cast<size_t>(e) * 8 + k]];
      s += w[k] * d * d;
    }
    return s;
  };
  int e = g.map[static_cast<size_t>(key)];
  if (e >= 0) {
    *cost = dist(e);
    return e;
  }
  const uint32_t* nb = &g.neighbours[static_cast<size_t>(-e - 1)];
  int best = static_cast<int>(nb[1] >> 16);
  float bc = dist(best);
  for (uint32_t j = 2; j <= nb[0]; ++j) {
    const int c = static_cast<int>(nb[j] >> 16);
    const float dc = dist(c);
    if (dc < bc) bc = dc, best = c;
  }
  *cost = bc;
  return best;
}

// Signs of 8 values as a bit mask and their magnitudes; with `even` an odd number of negatives
// leaves the value of least weighted square at the wrong sign (its target becomes -|x|), as the
// formats' 7 stored sign bits require.
uint8_t split_signs8(const float* x, const float* w, bool even, float* a) {
  uint8_t s = 0;
  int kmin = 0;
  for (int k = 0; k < 8; ++k) {
    a[k] = std::fabs(x[k]);
    if (x[k] < 0) s = static_cast<uint8_t>(s | (1u << k));
    if (w[k] * a[k] * a[k] < w[kmin] * a[kmin] * a[kmin]) kmin = k;
  }
  if (even && (std::popcount(s) & 1)) {
    a[kmin] = -a[kmin];
    s = static_cast<uint8_t>(s ^ (1u << kmin));
  }
  return s;
}

// Divides the targets by a scale (a zero or non-finite scale: every target 0).
void in_units(float* a, int n, float scale) {
  const bool ok = scale != 0 && std::isfinite(scale);
  for (int k = 0; k < n; ++k) a[k] = ok ? a[k] / scale : 0.f;
}

// The IQ2 codebook entry for 8 weights x at the group's scale code ls (value = d (0.5 + ls) / 4 x
// level): the signs (even count with `even`) in *signs, the entry returned.
int iq2_entry(ref::IqCodebook cb, uint16_t d_bits, int ls, const float* x, const float* w, bool even, uint8_t* signs) {
  static constexpr float kIq2[3] = {8.f, 25.f, 43.f};
  float a[8];
  const float db = fp16_to_f32(d_bits) * (0.5f + static_cast<float>(ls)) * 0.25f;
  *signs = split_signs8(x, w, even, a);
  in_units(a, 8, db);
  float c;
  return nearest_entry8(ref::iq_grid(cb), a, w, kIq2, &c);
}

// Chooses and writes the code of group g (values 8 g .. 8 g + 7 of the block) for the weights x,
// at the scales the block stores, the distance weighted by w (the importance of the 8 columns).
void gg_lattice_group(QuantType t, uint8_t* blk, int g, const float* x, const float* w) {
  float a[8];
  switch (t) {
    case QuantType::IQ2_XXS: {
      auto* b = reinterpret_cast<ref::block_iq2_xxs*>(blk);
      uint8_t* words = reinterpret_cast<uint8_t*>(b->qs) + 8 * (g / 4);  // grid bytes, then signs and scale
      uint32_t w0 = load32(words), w1 = load32(words + 4);
      const int slot = g % 4;
      uint8_t s = 0;
      const int e = iq2_entry(ref::IqCodebook::iq2xxs, b->d, static_cast<int>(w1 >> 28), x, w, true, &s);
      w0 = (w0 & ~(0xffu << (8 * slot))) | static_cast<uint32_t>(e) << (8 * slot);
      w1 = (w1 & ~(0x7fu << (7 * slot))) | static_cast<uint32_t>(s & 127) << (7 * slot);
      store32(words, w0);
      store32(words + 4, w1);
      return;
    }
    case QuantType::IQ2_XS: {  // a 4-bit scale per 16 values
      auto* b = reinterpret_cast<ref::block_iq2_xs*>(blk);
      uint8_t s = 0;
      const int e = iq2_entry(ref::IqCodebook::iq2xs, b->d, (b->scales[g / 4] >> (4 * ((g / 2) % 2))) & 15, x, w, true, &s);
      b->qs[g] = static_cast<uint16_t>(e | (s & 127) << 9);
      return;
    }
    case QuantType::IQ2_S: {
      auto* b = reinterpret_cast<ref::block_iq2_s*>(blk);
      uint8_t s = 0;
      const int e = iq2_entry(ref::IqCodebook::iq2s, b->d, (b->scales[g / 4] >> (4 * ((g / 2) % 2))) & 15, x, w, false, &s);
      b->qs[g] = static_cast<uint8_t>(e & 255);
      put_bits(b->qh[g / 4], 2 * (g % 4), 2, e >> 8);
      b->qs[ref::QK_K / 8 + g] = s;
      return;
    }
    case QuantType::IQ3_XXS: {
      auto* b = reinterpret_cast<ref::block_iq3_xxs*>(blk);
      const int ib = g / 4, l = g % 4;
      uint32_t aux = load32(b->qs + 64 + 4 * ib);
      const float db = fp16_to_f32(b->d) * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
      const uint8_t s = split_signs8(x, w, true, a);
      in_units(a, 8, db);
      for (int h = 0; h < 2; ++h)
        b->qs[8 * ib + 2 * l + h] = static_cast<uint8_t>(ref::iq3_nearest_point(false, a + 4 * h, w + 4 * h));
      aux = (aux & ~(0x7fu << (7 * l))) | static_cast<uint32_t>(s & 127) << (7 * l);
      store32(b->qs + 64 + 4 * ib, aux);
      return;
    }
    case QuantType::IQ3_S: {
      auto* b = reinterpret_cast<ref::block_iq3_s*>(blk);
      const int ib = g / 4;
      const float db = fp16_to_f32(b->d) * static_cast<float>(2 * ((b->scales[ib / 2] >> (4 * (ib % 2))) & 15) + 1);
      const uint8_t s = split_signs8(x, w, false, a);
      in_units(a, 8, db);
      for (int h = 0; h < 2; ++h) {
        const int k = 2 * (g % 4) + h, e = ref::iq3_nearest_point(true, a + 4 * h, w + 4 * h);
        b->qs[8 * ib + k] = static_cast<uint8_t>(e & 255);
        put_bits(b->qh[ib], k, 1, e >> 8);
      }
      b->signs[g] = s;  // signs[4 ib + g % 4]
      return;
    }
    case QuantType::IQ1_S: {
      auto* b = reinterpret_cast<ref::block_iq1_s*>(blk);
      const uint16_t qh = b->qh[g / 4];
      const float delta = (qh & 0x8000) ? -0.125f : 0.125f;
      const float dl = fp16_to_f32(b->d) * static_cast<float>(2 * ((qh >> 12) & 7) + 1);
      const float v[3] = {-1 + delta, delta, 1 + delta};
      std::memcpy(a, x, sizeof(a));
      in_units(a, 8, dl);
      float c;
      const int e = nearest_entry8(ref::iq_grid(ref::IqCodebook::iq1s), a, w, v, &c);
      b->qs[g] = static_cast<uint8_t>(e & 255);
      b->qh[g / 4] = static_cast<uint16_t>((qh & ~(7u << (3 * (g % 4)))) | static_cast<uint32_t>(e >> 8) << (3 * (g % 4)));
      return;
    }
    case QuantType::IQ1_M: {
      auto* b = reinterpret_cast<ref::block_iq1_m*>(blk);
      uint16_t sc[4];
      std::memcpy(sc, b->scales, sizeof(sc));
      const uint16_t dbits = static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) |
                                                   (sc[3] & 0xf000));
      const int h = g / 2, ib = h / 2;
      const int ls = 2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3 * (h % 2))) & 7) + 1;
      const float dl = fp16_to_f32(dbits) * static_cast<float>(ls);
      std::memcpy(a, x, sizeof(a));
      in_units(a, 8, dl);
      int best = 0, neg = 0;
      float bc = std::numeric_limits<float>::max();
      for (int n = 0; n < 2; ++n) {
        const float delta = n ? -0.125f : 0.125f;
        const float v[3] = {-1 + delta, delta, 1 + delta};
        float c;
        const int e = nearest_entry8(ref::iq_grid(ref::IqCodebook::iq1s), a, w, v, &c);
        if (c < bc) bc = c, best = e, neg = n;
      }
      b->qs[g] = static_cast<uint8_t>(best & 255);
      put_bits(b->qh[g / 2], 4 * (g % 2), 4, (best >> 8) | neg << 3);
      return;
    }
    default:
      fail(Errc::general, "gptq: no lattice walk for {}", type_info(t).name);
  }
}

}  // namespace gguf_gptq_impl

using namespace gguf_gptq_impl;

namespace gguf_gptq_impl {

// gptq_gguf_quantize_matrix; with w_own (w is its data) the weights' storage is the walk's matrix
// and is released at the end, and with h_own (h is it) H's storage becomes the factor: no second
// copy of either (the streamed run hands over the last reader's Hessian).
GptqGgufMatrix gg_quantize(QuantType type, const float* w, std::vector<float>* w_own, int64_t rows, int64_t cols,
                           const float* h, float* h_own, const float* imatrix, const GptqParams& p, const Context& ctx) {
  if (!gptq_gguf_supported(type))
    fail(Errc::invalid_argument,
         "gptq: no GPTQ walk for GGUF type {} (the legacy 4- and 8-bit types, the k-quants and the i-quants have one)",
         type_info(type).name);
  const TypeInfo& ti = type_info(type);
  const int64_t QK = ti.block_size;
  if (rows < 1 || cols < 1 || cols % QK != 0)
    fail(Errc::invalid_argument, "gptq: {} x {} matrix: the row length is not a multiple of {}'s block size {}", rows,
         cols, ti.name, QK);
  if (!h) fail(Errc::invalid_argument, "gptq: no Hessian given");
  if (!(p.damp > 0 && p.damp < 100)) fail(Errc::invalid_argument, "gptq: damp must be in (0, 100), got {}", p.damp);
  const QuantizeFn qfn = ctx.kernels(type).quantize;
  if (!qfn) fail(Errc::invalid_argument, "gptq: type {} cannot be quantized to", ti.name);
  const size_t rb = ti.row_bytes(cols), bb = ti.block_bytes;
  GptqGgufMatrix m;
  m.bytes.assign(static_cast<size_t>(rows) * rb, 0);
  m.values.assign(static_cast<size_t>(rows * cols), 0.0f);

  using gptq_impl::RowMat;
  RowMat w_copy, h_copy;
  if (!w_own) w_copy = Eigen::Map<const RowMat>(w, rows, cols);
  Eigen::Map<RowMat> W(w_own ? w_own->data() : w_copy.data(), rows, cols);
  gptq_impl::gp_dead_columns(h, cols, W, m.dead_columns);
  if (h_own) gptq_impl::gp_live_hessian_inplace(Eigen::Map<RowMat>(h_own, cols, cols), {});
  else gptq_impl::gp_live_hessian(h, cols, {}, h_copy);
  Eigen::Map<RowMat> U(h_own ? h_own : h_copy.data(), cols, cols);
  if (!gptq_impl::gp_inverse_factor(U, p.damp, p.max_damp_raises, m.damp, m.damp_raises, ctx.thread_count(),
                                    engine::Exec::from(ctx).ops.gemm))
    fail(Errc::smoothquant_failed,
         "gptq: the Hessian is not positive definite even with dampening {} x mean(diag H); use more calibration "
         "samples or a larger --damp",
         p.damp * std::pow(10.0, p.max_damp_raises));

  // Lazy batches of whole blocks, so a block's scales see every earlier column's feedback.
  const int64_t B = std::max<int64_t>(QK, (128 / QK) * QK);
  const bool lattice = gg_lattice(type);
  const int G = lattice ? 8 : gg_group(type);
  const DequantizeFn dequantize = ctx.kernels(type).dequantize;
  const int64_t n_grid = QK / G;
  // B is whole blocks, so every row's batch starts a block (e == 0) before it rounds in it.
  m.loss += gptq_impl::gp_feedback_walk(W, U, B, ctx.thread_count(), engine::Exec::from(ctx).ops.gemm, [&] {
    return [&, grid = std::vector<GgGrid>(static_cast<size_t>(n_grid)), decoded = std::vector<float>(static_cast<size_t>(QK)),
            blk = static_cast<uint8_t*>(nullptr)](int64_t r, int64_t i, float* wr) mutable {
      const int64_t e = i % QK;
      if (e == 0) {
        blk = m.bytes.data() + static_cast<size_t>(r) * rb + static_cast<size_t>(i / QK) * bb;
        qfn(wr + i, blk, 1, QK, imatrix ? imatrix + i : nullptr);
        if (!lattice) gg_grids(type, blk, grid.data());
      }
      if (lattice) {
        if (e % 8 == 0) {
          static constexpr float kOnes[8] = {1, 1, 1, 1, 1, 1, 1, 1};
          gg_lattice_group(type, blk, static_cast<int>(e / 8), wr + i, imatrix ? imatrix + i : kOnes);
          dequantize(blk, decoded.data(), QK);  // the group's values exactly as the format decodes them
        }
        const float dq = decoded[static_cast<size_t>(e)];
        m.values[static_cast<size_t>(r * cols + i)] = dq;
        return dq;
      }
      const GgGrid& g = grid[static_cast<size_t>(e / G)];
      const int q = g.nearest(wr[i]);
      gg_store(type, blk, static_cast<int>(e), q);
      const float dq = g.value(q);
      m.values[static_cast<size_t>(r * cols + i)] = dq;
      return dq;
    };
  });
  if (w_own) std::vector<float>().swap(*w_own);
  return m;
}

}  // namespace gguf_gptq_impl

GptqGgufMatrix gptq_gguf_quantize_matrix(QuantType type, const float* w, int64_t rows, int64_t cols, const float* h,
                                         const float* imatrix, const GptqParams& p, const Context& ctx) {
  return gg_quantize(type, w, nullptr, rows, cols, h, nullptr, imatrix, p, ctx);
}

namespace gguf_gptq_impl {

// A walked (or plain) tensor's record in the checkpoint's gguf-tensors/: "LQGG", a byte 1 (walked)
// or 0 (quantized as without --gptq: no bytes kept), the byte count (u64), the bytes.
constexpr char kRecordMagic[4] = {'L', 'Q', 'G', 'G'};

void write_record(const fs::path& dir, const std::string& name, bool walked, const std::vector<uint8_t>& bytes) {
  std::vector<uint8_t> r(13 + (walked ? bytes.size() : 0));
  std::memcpy(r.data(), kRecordMagic, 4);
  r[4] = walked ? 1 : 0;
  const uint64_t n = walked ? bytes.size() : 0;
  std::memcpy(r.data() + 5, &n, 8);
  if (walked) std::memcpy(r.data() + 13, bytes.data(), bytes.size());
  // The directory inside the checkpoint, which the calibration's run creates (or replaces) first.
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(Errc::output_error, "--gptq: cannot create {}: {}", dir.string(), ec.message());
  write_file_atomic(dir / (name + ".bin"), std::span<const uint8_t>(r));
}

// Reads a record; nullopt when it is missing. A malformed one (a torn or foreign file): Errc::
// invalid_argument, naming the checkpoint.
std::optional<std::pair<bool, std::vector<uint8_t>>> read_record(const fs::path& dir, const std::string& name,
                                                                 size_t expect) {
  std::error_code ec;
  const fs::path f = dir / (name + ".bin");
  if (!fs::is_regular_file(f, ec)) return std::nullopt;
  const std::string t = read_file(f);
  uint64_t n = 0;
  if (t.size() >= 13) std::memcpy(&n, t.data() + 5, 8);
  const bool walked = t.size() >= 13 && t[4] == 1;
  if (t.size() < 13 || std::memcmp(t.data(), kRecordMagic, 4) != 0 || (t[4] != 0 && t[4] != 1) ||
      n != t.size() - 13 || (walked && n != expect))
    fail(Errc::invalid_argument, "--resume: {} is not a tensor record of this run; start again without --resume",
         f.string());
  return std::make_pair(walked, std::vector<uint8_t>(t.begin() + 13, t.end()));
}

// What a checkpoint must match besides the calibration: every planned tensor's name and type, and
// the importance each walked type's scales see.
std::string checkpoint_tag(const std::vector<TensorPlan>& plans, const QuantizeOptions& options) {
  quantize_ckpt::StreamHash h;
  for (const auto& p : plans) {
    h.add(p.name.data(), p.name.size());
    const int32_t t[3] = {static_cast<int32_t>(p.type), p.quantize, p.uses_imatrix};
    h.add(t, sizeof(t));
    if (p.uses_imatrix && options.imatrix && !p.ne.empty()) {
      if (const auto w = options.imatrix->column_weights(p.name, p.ne[0])) h.add(w->data(), w->size() * 4);
    }
  }
  return fmt::format("gguf-gptq {:016x}", h.value());
}

}  // namespace gguf_gptq_impl

bool gptq_gguf_streams(const ModelSource& src) { return !src.is_gguf() && gptq_streams(src); }

GptqGgufResult gptq_gguf_tensors(const ModelSource& src, const QuantizeOptions& options, const GptqGgufConfig& config,
                                 const Context& ctx) {
  if (src.is_gguf())
    fail(Errc::invalid_argument, "--gptq: {} is a GGUF file; GPTQ needs the Hugging Face checkpoint's weights",
         src.path().string());
  const std::vector<TensorPlan> plans = Quantizer(options).plan(src);
  std::map<std::string, const TensorPlan*> by_name;
  for (const auto& p : plans) by_name[p.name] = &p;

  GptqGgufResult res;
  GptqConfig gc;
  gc.params.group_size = 32;  // every GGUF block type's rows are multiples of 32
  gc.params.damp = config.damp;
  gc.calibration_samples = config.calibration_samples;
  gc.ctx = config.ctx;
  gc.calibration_data = config.calibration_data;
  gc.expert_hessian_bytes = config.expert_hessian_bytes;
  gc.bf16_activations = false;  // the GGUF walks' files stay byte for byte what they were
  const bool checkpointed = !config.checkpoint_dir.empty();
  const fs::path records = config.checkpoint_dir / "gguf-tensors";
  if (checkpointed) {
    if (config.work_dir.empty() || !gptq_streams(src))
      fail(Errc::invalid_argument,
           "--gptq: a checkpoint needs the streamed calibration, which this model's blocks do not allow (run it "
           "without --checkpoint-dir / --resume)");
    gc.checkpoint_dir = config.checkpoint_dir;
    gc.resume = config.resume;
    gc.checkpoint_tag = checkpoint_tag(plans, options);
  }
  std::set<std::string> plain;  // the linears quantized as without --gptq
  // A merged expert tensor's bytes while its experts are walked one after another (the hook sees
  // expert 0, 1, ... in order); the tensor is done with its last.
  struct ExpertBytes {
    std::vector<uint8_t> bytes;
    int64_t next = 0;
  };
  std::map<std::string, ExpertBytes> experts;
  gc.matrix_hook = [&](const std::string& name, std::vector<float>& w, int64_t rows, int64_t cols, float* h, bool h_last,
                       const Context& c) -> std::vector<float> {
    auto it = by_name.find(name);
    if (it == by_name.end()) fail(Errc::invalid_model, "--gptq: {} is not in the plan", name);
    const TensorPlan& p = *it->second;
    const int64_t n_mat = p.ne.size() == 3 ? p.ne[2] : 1;
    std::optional<std::vector<float>> iw;
    if (p.uses_imatrix)  // one row of importance per expert
      iw = n_mat > 1 ? options.imatrix->column_weights(p.name, cols, n_mat) : options.imatrix->column_weights(p.name, cols);
    const TypeInfo& ti = type_info(p.type);
    if (n_mat > 1) {  // expert e of a merged tensor: walked (or, never routed to, quantized plainly) into its slice
      ExpertBytes& x = experts[name];
      const int64_t e = x.next++;
      if (e >= n_mat || rows * n_mat * cols != p.n_elements())
        fail(Errc::invalid_model, "--gptq: {}: expert {} of {} ({} x {})", name, e, n_mat, rows, cols);
      const float* im = iw ? iw->data() + e * cols : nullptr;
      const size_t bytes = ti.row_bytes(cols) * static_cast<size_t>(rows);
      const bool walk = p.quantize && gptq_gguf_supported(p.type) && p.ne[0] == cols;
      std::vector<float> out = w;
      if (walk && h) {
        GptqParams gp;
        gp.damp = config.damp;
        GptqGgufMatrix q = gptq_gguf_quantize_matrix(p.type, w.data(), rows, cols, h, im, gp, c);
        if (q.damp_raises > 0)
          c.progress_sink().message(fmt::format("warning: {} expert {}: Cholesky failed, dampening raised {} time(s) to {}",
                                                name, e, q.damp_raises, q.damp));
        x.bytes.insert(x.bytes.end(), q.bytes.begin(), q.bytes.end());
        out = std::move(q.values);
      } else if (p.quantize && !ti.is_float()) {
        std::vector<uint8_t> b(bytes);
        Quantizer::quantize_rows(p.type, w.data(), b.data(), rows, cols, im, c, options.imatrix != nullptr, false);
        c.kernels(p.type).dequantize(b.data(), out.data(), rows * cols);
        x.bytes.insert(x.bytes.end(), b.begin(), b.end());
      }
      if (e + 1 == n_mat) {  // the whole tensor: walked when its type has a walk
        if (walk) {
          if (checkpointed) write_record(records, name, true, x.bytes);
          res.tensor_bytes[name] = std::move(x.bytes);
        } else {
          if (checkpointed) write_record(records, name, false, {});
          plain.insert(name);
        }
        experts.erase(name);
      }
      return out;
    }
    const float* im = iw ? iw->data() : nullptr;
    std::vector<float> out;
    if (p.quantize && gptq_gguf_supported(p.type) && p.ne[0] == cols) {
      GptqParams gp;
      gp.damp = config.damp;
      // The walk in w's storage and, for the last linear reading its input, in H's.
      GptqGgufMatrix q = gg_quantize(p.type, w.data(), &w, rows, cols, h, h_last ? h : nullptr, im, gp, c);
      if (q.damp_raises > 0)
        c.progress_sink().message(fmt::format("warning: {}: Cholesky failed, dampening raised {} time(s) to {}", name,
                                              q.damp_raises, q.damp));
      if (checkpointed) write_record(records, name, true, q.bytes);
      res.tensor_bytes[name] = std::move(q.bytes);
      out = std::move(q.values);
    } else {
      // As the plain run quantizes it: its values feed the next blocks' calibration.
      out = w;
      if (p.quantize && !ti.is_float()) {
        std::vector<uint8_t> b(ti.row_bytes(cols) * static_cast<size_t>(rows));
        Quantizer::quantize_rows(p.type, w.data(), b.data(), rows, cols, im, c, options.imatrix != nullptr, false);
        c.kernels(p.type).dequantize(b.data(), out.data(), rows * cols);
      }
      if (checkpointed) write_record(records, name, false, {});
      plain.insert(name);
    }
    return out;
  };
  GptqResult s;
  if (!config.work_dir.empty() && gptq_streams(src)) {
    s = gptq_stream_hook(src.path(), config.work_dir, gc, ctx);
  } else if (src.config().n_expert > 0 && gptq_streams(src)) {
    // Experts: the streamed calibration without loading the model (GptqQuantizer would load it
    // whole, then stream the same way), in a folder of its own under the system's temporary
    // directory (unique per call), removed afterwards.
    const StreamWorkDir work("lq-gptq-gguf");
    s = gptq_stream_hook(src.path(), work.path(), gc, ctx);
  } else {
    GptqQuantizer gq(src, gc);
    gq.run(ctx);
    s = gq.summary();
  }
  res.resumed_blocks = s.resumed_blocks;
  // The linears of the blocks a resume skipped: their records; then the lists in plan order.
  const Architecture& arch = architecture_of(src.config(), "--gptq");
  auto walked = [&](const std::string& name) {  // the walk's linears, not norms, biases or routers
    const std::string_view rest = names::split(name).rest;
    for (const std::span<const char* const> roles : {block_linear_roles(arch), expert_linear_roles(arch)})
      for (const char* r : roles)
        if (rest == std::string(r) + ".weight") return true;
    return false;
  };
  for (const auto& p : plans) {
    if (!p.quantize || p.name.rfind("blk.", 0) != 0 || !walked(p.name) || res.tensor_bytes.count(p.name) ||
        plain.count(p.name))
      continue;
    if (!checkpointed || !config.resume) continue;
    const auto r = read_record(records, p.name, type_info(p.type).row_bytes(p.ne[0]) * static_cast<size_t>(p.n_elements() / p.ne[0]));
    if (!r)  // its block was logged, its record is gone (a crash of the machine, or a hand)
      fail(Errc::invalid_argument, "--resume: the checkpoint {} has no record of {}; start again without --resume",
           config.checkpoint_dir.string(), p.name);
    if (r->first)
      res.tensor_bytes[p.name] = std::move(r->second);
    else
      plain.insert(p.name);
  }
  for (const auto& p : plans) {
    if (res.tensor_bytes.count(p.name)) res.gptq_tensors.push_back(fmt::format("{} ({})", p.name, type_info(p.type).name));
    if (plain.count(p.name)) res.plain_tensors.push_back(fmt::format("{} ({})", p.name, type_info(p.type).name));
  }
  res.calibration_source = s.calibration_source;
  res.chunks = s.chunks;
  res.ctx = s.ctx;
  res.tokens = s.tokens;
  res.calibration_seconds = s.calibration_seconds;
  res.quantize_seconds = s.quantize_seconds;
  if (!res.plain_tensors.empty())
    ctx.progress_sink().message(fmt::format("--gptq: {} linears by GPTQ, {} quantized as without --gptq (their type "
                                            "has no GPTQ walk)",
                                            res.gptq_tensors.size(), res.plain_tensors.size()));
  return res;
}

}  // namespace lq
