// IQ3_XXS and IQ3_S. Every group of 4 magnitudes is a point of a fixed grid (256 or 512 points
// whose coordinates take 8 levels), each 32-value sub-block has a 4-bit odd multiplier 2s+1 of
// the fp16 super-scale d, and signs are stored per value (IQ3_XXS: an even number of negatives
// per 8 values). The quantizer
//   1. finds each sub-block's best continuous scale: candidate scales plus Lloyd's iteration,
//      each group taking the grid point nearest (in weighted distance) to x / scale;
//   2. chooses d among a few candidates and, for each d, each multiplier among the neighbours of
//      its rounded value, re-picking every grid point against the scale actually stored.
// Nearest grid points: round each coordinate to its level; when that point is not on the grid,
// search a precomputed list of the grid points closest to it (built once, thread-safe).
#include "types/ref/iq3.hpp"

#include "core/half.hpp"
#include "types/ref/block_sums.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/importance.hpp"
#include "types/ref/iq_tables.hpp"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

namespace lq::ref {
namespace {

constexpr int kMapSize = 4096;  // 8 levels ^ 4 coordinates

struct Grid {
  int size = 0;
  float levels[8] = {};
  float mids[7] = {};
  float point[512][4] = {};
  int32_t map[kMapSize] = {};  // grid index, or -(1 + offset of the neighbour list)
  std::vector<uint16_t> lists;  // per off-grid point: count, then grid indices

  // Nearest level: levels are 1, 3, ..., 15 (IQ3_S) or 1, ..., 13, 15.5 (IQ3_XXS), so below the
  // top the midpoints are the even numbers; ties go up.
  int level_index(float v) const {
    const int l = std::clamp(static_cast<int>(0.5f * std::clamp(v, 0.f, 16.f)), 0, 7);
    return l - static_cast<int>(l == 7 && v < mids[6]);
  }
};

// Builds the grid tables: level values are byte / byte_scale; each off-grid lattice point lists
// the grid points within its `shells` smallest distinct distances.
Grid make_grid(const uint32_t* table, int size, float byte_scale, int shells) {
  Grid g;
  g.size = size;
  for (int l = 0; l < 8; ++l) g.levels[l] = -1.f;
  for (int k = 0; k < size; ++k) {
    for (int i = 0; i < 4; ++i) {
      const float v = static_cast<float>((table[k] >> (8 * i)) & 0xff) / byte_scale;
      g.point[k][i] = v;
      const int l = std::min(7, static_cast<int>(v / 2.f));  // levels are 1, 3, ..., 13, 15 (or 15.5)
      g.levels[l] = v;
    }
  }
  for (int l = 0; l < 7; ++l) g.mids[l] = 0.5f * (g.levels[l] + g.levels[l + 1]);
  std::fill(std::begin(g.map), std::end(g.map), -1);
  for (int k = 0; k < size; ++k) {
    int key = 0;
    for (int i = 0; i < 4; ++i) key |= g.level_index(g.point[k][i]) << (3 * i);
    g.map[key] = k;
  }
  std::vector<float> dist(static_cast<size_t>(size));
  for (int key = 0; key < kMapSize; ++key) {
    if (g.map[key] >= 0) continue;
    float p[4];
    for (int i = 0; i < 4; ++i) p[i] = g.levels[(key >> (3 * i)) & 7];
    float shell[4] = {FLT_MAX, FLT_MAX, FLT_MAX, FLT_MAX};  // the smallest distinct distances
    for (int k = 0; k < size; ++k) {
      float d2 = 0;
      for (int i = 0; i < 4; ++i) d2 += (g.point[k][i] - p[i]) * (g.point[k][i] - p[i]);
      dist[static_cast<size_t>(k)] = d2;
      for (int s = 0; s < shells; ++s) {
        if (d2 == shell[s]) break;
        if (d2 < shell[s]) {
          std::copy_backward(shell + s, shell + shells - 1, shell + shells);
          shell[s] = d2;
          break;
        }
      }
    }
    g.map[key] = -1 - static_cast<int32_t>(g.lists.size());
    const size_t head = g.lists.size();
    g.lists.push_back(0);
    for (int k = 0; k < size; ++k)
      if (dist[static_cast<size_t>(k)] <= shell[shells - 1]) g.lists.push_back(static_cast<uint16_t>(k));
    g.lists[head] = static_cast<uint16_t>(g.lists.size() - head - 1);
  }
  return g;
}

const Grid& grid_xxs() {
  static const Grid g = make_grid(iq3xxs_grid, 256, 4.f, 2);
  return g;
}
const Grid& grid_s() {
  static const Grid g = make_grid(iq3s_grid, 512, 1.f, 3);
  return g;
}

struct Sums {
  float s1 = 0;  // sum w x g
  float s2 = 0;  // sum w g^2
};

// Grid point for the 4 magnitudes xv (weights w) at scale D = 1 / id.
int best_point(const Grid& g, const float* xv, const float* w, float id, float D) {
  int key = 0;
  for (int i = 0; i < 4; ++i) key |= g.level_index(id * xv[i]) << (3 * i);
  const int32_t m = g.map[key];
  if (m >= 0) return m;
  const uint16_t* list = g.lists.data() + (-1 - m);
  int best_k = list[1];
  float best = FLT_MAX;
  for (int n = 1; n <= list[0]; ++n) {
    const float* p = g.point[list[n]];
    float e = 0;
    for (int i = 0; i < 4; ++i) {
      const float diff = xv[i] - D * p[i];
      e += w[i] * diff * diff;
    }
    if (e < best) {
      best = e;
      best_k = list[n];
    }
  }
  return best_k;
}

// Grid points of a 32-value sub-block at scale D and their sums.
Sums assign(const Grid& g, const float* xv, const float* w, float D, int* idx) {
  const float id = 1.f / D;
  Sums s;
  for (int k = 0; k < 8; ++k) {
    const int p = best_point(g, xv + 4 * k, w + 4 * k, id, D);
    if (idx) idx[k] = p;
    for (int i = 0; i < 4; ++i) {
      const float q = g.point[p][i];
      s.s1 += w[4 * k + i] * xv[4 * k + i] * q;
      s.s2 += w[4 * k + i] * q * q;
    }
  }
  return s;
}

// Search effort. Measured on real weights, wider searches (more candidates, more super-scales,
// three multipliers per sub-block) lower the error by less than 0.1% at twice the time.
struct Params {
  int per_side;  // scale candidates on each side of max / top level
  float step;    // their spacing, in levels
  int lloyd;     // Lloyd steps
  int d_cands;   // super-scale candidates on each side of the largest sub-block scale / 31
  float d_step;  // their relative spacing
};
constexpr Params kParams{2, 1.5f, 3, 1, 0.015f};

float best_scale(const Grid& g, const float* xv, const float* w) {
  float max = 0;
  for (int j = 0; j < 32; ++j) max = std::max(max, xv[j]);
  if (!(max >= 1e-8f)) return 0.f;
  float best = 0, d = 0;
  auto consider = [&](float D) {
    const Sums s = assign(g, xv, w, D, nullptr);
    if (s.s2 > 0 && s.s1 > 0 && s.s1 * s.s1 > best * s.s2) {
      best = s.s1 * (s.s1 / s.s2);
      d = s.s1 / s.s2;
      return true;
    }
    return false;
  };
  const float top = g.levels[7];
  for (int k = -kParams.per_side; k <= kParams.per_side; ++k) consider(max / (top + kParams.step * static_cast<float>(k)));
  for (int it = 0; it < kParams.lloyd && d > 0; ++it)
    if (!consider(d)) break;
  return d;
}

// One 256-value super-block: magnitudes and signs, weights, then the two-stage search.
// Writes the fp16 d, the 4-bit multipliers, grid indices and sign bits (one bit per value).
struct Choice {
  uint16_t dh = 0;
  int s[8] = {};
  int idx[64] = {};
  uint8_t signs[32] = {};  // bit i of byte k: value 8k + i is negative
};

void quantize_block(const Grid& g, bool even_signs, const float* x, const float* qw, float qfloor, Choice& c) {
  float v[QK_K], xv[QK_K], w[QK_K];
  float sumx2 = 0;
  for (int j = 0; j < QK_K; ++j) {
    v[j] = x[j] == x[j] ? std::clamp(x[j], -1e15f, 1e15f) : 0.f;  // NaN as 0, products stay finite
    sumx2 += v[j] * v[j];
  }
  const float sigma2 = 2.f * sumx2 / QK_K;
  for (int j = 0; j < QK_K; ++j) {
    w[j] = qw ? (sanitize_importance(qw[j]) + qfloor) * std::sqrt(sigma2 + v[j] * v[j]) : 1.f;
    xv[j] = std::fabs(v[j]);
    if (v[j] < 0) c.signs[j / 8] |= static_cast<uint8_t>(1 << (j % 8));
  }
  if (even_signs) {
    // An odd count of negatives cannot be stored: the value with the least weighted magnitude
    // takes the wrong sign (its magnitude becomes -|x|, so it rounds to the smallest level).
    for (int k = 0; k < 32; ++k) {
      if (!(std::popcount(c.signs[k]) & 1)) continue;
      int imin = 8 * k;
      for (int j = 8 * k + 1; j < 8 * k + 8; ++j)
        if (w[j] * xv[j] < w[imin] * xv[imin]) imin = j;
      xv[imin] = -xv[imin];
      c.signs[k] ^= static_cast<uint8_t>(1 << (imin % 8));
    }
  }
  float scales[8], smax = 0;
  for (int b = 0; b < 8; ++b) {
    scales[b] = best_scale(g, xv + 32 * b, w + 32 * b);
    smax = std::max(smax, scales[b]);
  }
  c.dh = 0;
  std::fill(std::begin(c.s), std::end(c.s), 0);
  if (smax == 0) {
    for (int b = 0; b < 8; ++b) assign(g, xv + 32 * b, w + 32 * b, 1.f, c.idx + 8 * b);  // all-zero: any d = 0
    return;
  }
  float best_total = FLT_MAX;
  for (int k = -kParams.d_cands; k <= kParams.d_cands; ++k) {
    const uint16_t dh = f32_to_fp16(std::min(smax / 31.f * (1.f + kParams.d_step * static_cast<float>(k)), 65504.f));
    const float d = fp16_to_f32(dh);
    if (d == 0) continue;
    float total = 0;
    int cs[8], cidx[64];
    for (int b = 0; b < 8; ++b) {
      const float* xb = xv + 32 * b;
      const float* wb = w + 32 * b;
      // The two multipliers around the continuous one.
      const int s0 = static_cast<int>(std::floor(std::clamp(0.5f * (scales[b] / d - 1.f), 0.f, 15.f)));
      float be = FLT_MAX;
      for (int s = s0; s <= std::min(15, s0 + 1); ++s) {
        const float D = d * static_cast<float>(2 * s + 1);
        int idx[8];
        const Sums sm = assign(g, xb, wb, D, idx);
        const float e = D * (D * sm.s2 - 2.f * sm.s1);
        if (e < be) {
          be = e;
          cs[b] = s;
          std::copy(idx, idx + 8, cidx + 8 * b);
        }
      }
      total += be;
    }
    if (total < best_total) {
      best_total = total;
      c.dh = dh;
      std::copy(cs, cs + 8, c.s);
      std::copy(cidx, cidx + 64, c.idx);
    }
  }
}

template <class Emit>
void quantize_rows(const Grid& g, bool even_signs, const float* src, int64_t nrows, int64_t n_per_row,
                   const float* imatrix, Emit&& emit) {
  const WeightedBlocks<QK_K> blocks(src, nrows, n_per_row, imatrix);
  for (const WeightedBlock b : blocks) {
    Choice c;
    quantize_block(g, even_signs, b.x, b.qw, blocks.qfloor, c);
    emit(b.i, c);
  }
}

}  // namespace

void quantize_iq3_xxs(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  auto* y = static_cast<block_iq3_xxs*>(dst);
  quantize_rows(grid_xxs(), true, src, nrows, n_per_row, imatrix, [&](int64_t i, const Choice& c) {
    block_iq3_xxs& b = y[i];
    b.d = c.dh;
    for (int k = 0; k < 64; ++k) b.qs[k] = static_cast<uint8_t>(c.idx[k]);
    for (int ib = 0; ib < 8; ++ib) {
      uint32_t v = static_cast<uint32_t>(c.s[ib]) << 28;
      for (int l = 0; l < 4; ++l) v |= static_cast<uint32_t>(c.signs[4 * ib + l] & 127) << (7 * l);
      std::memcpy(b.qs + 64 + 4 * ib, &v, 4);
    }
  });
}

void quantize_iq3_s(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  auto* y = static_cast<block_iq3_s*>(dst);
  quantize_rows(grid_s(), false, src, nrows, n_per_row, imatrix, [&](int64_t i, const Choice& c) {
    block_iq3_s& b = y[i];
    std::memset(&b, 0, sizeof(b));
    b.d = c.dh;
    for (int k = 0; k < 64; ++k) {
      b.qs[k] = static_cast<uint8_t>(c.idx[k] & 255);
      b.qh[k / 8] |= static_cast<uint8_t>((c.idx[k] >> 8) << (k % 8));
    }
    std::memcpy(b.signs, c.signs, 32);
    for (int ib = 0; ib < 8; ib += 2) b.scales[ib / 2] = static_cast<uint8_t>(c.s[ib] | (c.s[ib + 1] << 4));
  });
}

namespace {

// Values of one super-block as integers: grid byte * sign, with the sub-block multiplier 2s+1.
void decode_xxs(const block_iq3_xxs& b, int* q, int* mult) {
  for (int ib = 0; ib < 8; ++ib) {
    uint32_t aux;
    std::memcpy(&aux, b.qs + 64 + 4 * ib, 4);
    mult[ib] = 2 * static_cast<int>(aux >> 28) + 1;
    for (int l = 0; l < 4; ++l) {
      const uint8_t signs = ksigns_iq2xs[(aux >> (7 * l)) & 127];
      for (int h = 0; h < 2; ++h) {
        const uint32_t gp = iq3xxs_grid[b.qs[8 * ib + 2 * l + h]];
        for (int j = 0; j < 4; ++j) {
          const int v = static_cast<int>((gp >> (8 * j)) & 0xff);
          q[32 * ib + 8 * l + 4 * h + j] = (signs & kmask_iq2xs[4 * h + j]) ? -v : v;
        }
      }
    }
  }
}

void decode_s(const block_iq3_s& b, int* q, int* mult) {
  for (int ib = 0; ib < 8; ++ib) {
    mult[ib] = 2 * ((b.scales[ib / 2] >> (4 * (ib % 2))) & 15) + 1;
    for (int k = 0; k < 8; ++k) {
      const int gi = b.qs[8 * ib + k] | (((b.qh[ib] >> k) & 1) << 8);
      const uint32_t gp = iq3s_grid[gi];
      const uint8_t signs = b.signs[4 * ib + k / 2];
      for (int j = 0; j < 4; ++j) {
        const int v = static_cast<int>((gp >> (8 * j)) & 0xff);
        q[32 * ib + 4 * k + j] = (signs & kmask_iq2xs[4 * (k % 2) + j]) ? -v : v;
      }
    }
  }
}

// The two formats for the loops below: decode(b, q, mult) gives the 256 signed values and the 8
// sub-block multipliers, sub_scale(d, mult) a sub-block's float scale, kDotScale the dot's factor.
// Decoding follows llama.cpp's float operations exactly (bit-identical output): IQ3_XXS scales
// are d * (0.5 + s) * 0.5, IQ3_S scales d * (1 + 2s).
struct Xxs {
  using block = block_iq3_xxs;
  static constexpr float kDotScale = 0.25f;
  static void decode(const block& b, int* q, int* mult) { decode_xxs(b, q, mult); }
  static float sub_scale(float d, int mult) { return d * (0.5f + static_cast<float>((mult - 1) / 2)) * 0.5f; }
};

struct S {
  using block = block_iq3_s;
  static constexpr float kDotScale = 1.f;
  static void decode(const block& b, int* q, int* mult) { decode_s(b, q, mult); }
  static float sub_scale(float d, int mult) { return d * static_cast<float>(mult); }
};

template <class F>
void dequantize_blocks(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const typename F::block*>(src);
  int q[QK_K], mult[8];
  for (int64_t i = 0; i < n / QK_K; ++i) {
    F::decode(x[i], q, mult);
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < 8; ++ib) {
      const float db = F::sub_scale(d, mult[ib]);
      for (int j = 0; j < 32; ++j) {
        const int v = q[32 * ib + j];
        dst[i * QK_K + 32 * ib + j] = db * static_cast<float>(v < 0 ? -v : v) * (v < 0 ? -1.f : 1.f);
      }
    }
  }
}

template <class F>
float dot_blocks(int64_t n, const void* xv, const void* yv) {
  return F::kDotScale * sum_blocks<typename F::block, block_q8_K, QK_K>(n, xv, yv, [](const auto& x, const block_q8_K& y) {
    int q[QK_K], mult[8];
    F::decode(x, q, mult);
    int acc = 0;
    for (int ib = 0; ib < 8; ++ib) {
      int sub = 0;
      for (int j = 0; j < 32; ++j) sub += q[32 * ib + j] * y.qs[32 * ib + j];
      acc += sub * mult[ib];
    }
    return static_cast<float>(acc) * (fp16_to_f32(x.d) * y.d);
  });
}

}  // namespace

int iq3_nearest_point(bool s, const float* a, const float* w) {
  // Grid coordinates are bytes / byte_scale (4 for IQ3_XXS, 1 for IQ3_S): at D = byte_scale the
  // search's D * point is the byte itself.
  const float byte_scale = s ? 1.f : 4.f;
  return best_point(s ? grid_s() : grid_xxs(), a, w, 1.f / byte_scale, byte_scale);
}

void dequantize_iq3_xxs(const void* src, float* dst, int64_t n) { dequantize_blocks<Xxs>(src, dst, n); }
float dot_iq3_xxs(int64_t n, const void* x, const void* y) { return dot_blocks<Xxs>(n, x, y); }
void dequantize_iq3_s(const void* src, float* dst, int64_t n) { dequantize_blocks<S>(src, dst, n); }
float dot_iq3_s(int64_t n, const void* x, const void* y) { return dot_blocks<S>(n, x, y); }

}  // namespace lq::ref
