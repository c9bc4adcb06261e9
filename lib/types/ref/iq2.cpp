// IQ2_XXS / IQ2_XS / IQ2_S: signs are split off, the magnitudes are matched against the
// codebook (levels 8, 25, 43) with per-unit 4-bit scale codes, value = d * (2l+1)/8 * level.
// IQ2_XXS and IQ2_XS store 7 sign bits per 8 values (an even number of negatives), IQ2_S all 8.
#include "types/ref/iq2.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"

#include "core/half.hpp"
#include "types/ref/block_sums.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/iq_search.hpp"
#include "types/ref/iq_tables.hpp"

#include <bit>
#include <cmath>
#include <cstring>

namespace lq::ref {
namespace {

// Trial range: the unit's largest magnitude lands between 0.7 and 1.4 times the top level.
// IQ2_S runs the lighter search (3 starts, 1 round): the heavier one gains ~0.5% weighted error
// for 1.5x the time.
constexpr IqFormat kXxs = {IqCodebook::iq2xxs, 32, 15, 0.125f, 1, false, {{8, 25, 43}, {8, 25, 43}}, 4, 0.7f, 1.4f, 2, 2};
constexpr IqFormat kXs = {IqCodebook::iq2xs, 16, 15, 0.125f, 1, false, {{8, 25, 43}, {8, 25, 43}}, 4, 0.7f, 1.4f, 2, 2};
constexpr IqFormat kS = {IqCodebook::iq2s, 16, 15, 0.125f, 1, false, {{8, 25, 43}, {8, 25, 43}}, 3, 0.7f, 1.4f, 1, 2};

// Magnitudes and sign masks of 256 values. With `even`, a group of 8 with an odd number of
// negatives keeps one value at the wrong sign (its target becomes -|x|): the one whose error
// costs least, w x^2.
void split_signs(const float* x, const float* w, bool even, float* a, uint8_t* signs) {
  for (int g = 0; g < 32; ++g) {
    uint8_t s = 0;
    for (int k = 0; k < 8; ++k) {
      const float v = x[8 * g + k];
      a[8 * g + k] = std::fabs(v);
      if (v < 0) s |= static_cast<uint8_t>(1u << k);
    }
    if (even && (std::popcount(s) & 1)) {
      int kmin = 0;
      float cmin = w[8 * g] * x[8 * g] * x[8 * g];
      for (int k = 1; k < 8; ++k) {
        const float c = w[8 * g + k] * x[8 * g + k] * x[8 * g + k];
        if (c < cmin) { cmin = c; kmin = k; }
      }
      a[8 * g + kmin] = -a[8 * g + kmin];
      s ^= static_cast<uint8_t>(1u << kmin);
    }
    signs[g] = s;
  }
}

template <class Block, class Encode>
void quantize_rows(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix,
                   const IqFormat& f, float sigma_mult, bool even, Encode&& encode) {
  const int64_t nb = n_per_row / QK_K;
  const float floor = iq_importance_floor(imatrix, n_per_row);
  auto* y = static_cast<Block*>(dst);
  float w[QK_K], a[QK_K];
  uint8_t signs[QK_K / 8];
  IqSolution sol;
  for (int64_t r = 0; r < nrows; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* x = src + r * n_per_row + b * QK_K;
      iq_weights(x, imatrix ? imatrix + b * QK_K : nullptr, floor, sigma_mult, w);
      split_signs(x, w, even, a, signs);
      iq_solve(f, a, w, sol);
      Block& blk = y[r * nb + b];
      std::memset(&blk, 0, sizeof(Block));
      if (sol.d > 0) encode(sol, signs, blk);
    }
  }
}

void require_imatrix(const float* imatrix, const char* type) {
  if (!imatrix)
    fail(Errc::imatrix_error, "quantizing to {} needs importance data (an imatrix); none was given", type);
}

inline float sign_of(uint8_t mask, int k) { return mask & kmask_iq2xs[k] ? -1.f : 1.f; }

}  // namespace

void quantize_iq2_xxs(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  require_imatrix(imatrix, "IQ2_XXS");
  quantize_rows<block_iq2_xxs>(src, dst, nrows, n_per_row, imatrix, kXxs, 1.f, true,
                               [](const IqSolution& s, const uint8_t* signs, block_iq2_xxs& b) {
    b.d = f32_to_fp16(s.d);
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      uint32_t q[2] = {0, static_cast<uint32_t>(s.l[ib]) << 28};
      for (int k = 0; k < 4; ++k) {
        q[0] |= static_cast<uint32_t>(s.index[4 * ib + k]) << (8 * k);
        q[1] |= static_cast<uint32_t>(signs[4 * ib + k] & 127) << (7 * k);
      }
      std::memcpy(b.qs + 4 * ib, q, sizeof(q));
    }
  });
}

void quantize_iq2_xs(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  require_imatrix(imatrix, "IQ2_XS");
  quantize_rows<block_iq2_xs>(src, dst, nrows, n_per_row, imatrix, kXs, 1.f, true,
                              [](const IqSolution& s, const uint8_t* signs, block_iq2_xs& b) {
    b.d = f32_to_fp16(s.d);
    for (int g = 0; g < QK_K / 8; ++g) b.qs[g] = static_cast<uint16_t>(s.index[g] | (signs[g] & 127) << 9);
    for (int ib = 0; ib < QK_K / 32; ++ib) b.scales[ib] = static_cast<uint8_t>(s.l[2 * ib] | s.l[2 * ib + 1] << 4);
  });
}

void quantize_iq2_s(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  quantize_rows<block_iq2_s>(src, dst, nrows, n_per_row, imatrix, kS, 2.f, false,
                             [](const IqSolution& s, const uint8_t* signs, block_iq2_s& b) {
    b.d = f32_to_fp16(s.d);
    for (int g = 0; g < QK_K / 8; ++g) {
      b.qs[g] = static_cast<uint8_t>(s.index[g] & 255);
      b.qh[g / 4] |= static_cast<uint8_t>((s.index[g] >> 8) << (2 * (g % 4)));
      b.qs[QK_K / 8 + g] = signs[g];
    }
    for (int ib = 0; ib < QK_K / 32; ++ib) b.scales[ib] = static_cast<uint8_t>(s.l[2 * ib] | s.l[2 * ib + 1] << 4);
  });
}

namespace {

// The three layouts: group g's 8 codebook magnitudes grid(b, g) and sign bits signs(b, g), and the
// 4-bit scale l of run h of 16 values, scale(b, h) (IQ2_XXS has one per 32 values, read by both runs).
struct Xxs {
  using block = block_iq2_xxs;
  static uint32_t word(const block& b, int ib, int w) {
    uint32_t q;
    std::memcpy(&q, b.qs + 4 * ib + 2 * w, sizeof(q));
    return q;
  }
  static uint64_t grid(const block& b, int g) { return iq2xxs_grid[(word(b, g / 4, 0) >> (8 * (g % 4))) & 255]; }
  static uint8_t signs(const block& b, int g) { return ksigns_iq2xs[(word(b, g / 4, 1) >> (7 * (g % 4))) & 127]; }
  static int scale(const block& b, int h) { return static_cast<int>(word(b, h / 2, 1) >> 28); }
};

struct Xs {
  using block = block_iq2_xs;
  static uint64_t grid(const block& b, int g) { return iq2xs_grid[b.qs[g] & 511]; }
  static uint8_t signs(const block& b, int g) { return ksigns_iq2xs[b.qs[g] >> 9]; }
  static int scale(const block& b, int h) { return (b.scales[h / 2] >> (4 * (h % 2))) & 15; }
};

struct S {
  using block = block_iq2_s;
  static uint64_t grid(const block& b, int g) { return iq2s_grid[b.qs[g] | ((b.qh[g / 4] >> (2 * (g % 4))) & 3) << 8]; }
  static uint8_t signs(const block& b, int g) { return b.qs[QK_K / 8 + g]; }
  static int scale(const block& b, int h) { return (b.scales[h / 2] >> (4 * (h % 2))) & 15; }
};

template <class C>
void dequantize_blocks(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const typename C::block*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int h = 0; h < QK_K / 16; ++h) {
      const float db = d * (0.5f + static_cast<float>(C::scale(x[i], h))) * 0.25f;
      for (int g = 2 * h; g < 2 * h + 2; ++g) {
        const uint64_t grid = C::grid(x[i], g);
        const uint8_t signs = C::signs(x[i], g);
        for (int j = 0; j < 8; ++j) *dst++ = db * static_cast<float>((grid >> (8 * j)) & 255) * sign_of(signs, j);
      }
    }
  }
}

inline int group_dot(uint64_t grid, uint8_t signs, const int8_t* q8) {
  int s = 0;
  for (int j = 0; j < 8; ++j) {
    const int v = static_cast<int>((grid >> (8 * j)) & 255) * q8[j];
    s += signs & kmask_iq2xs[j] ? -v : v;
  }
  return s;
}

// Dot products against Q8_K: integer sums per run of 16, times (2l+1); the common factor
// d_x * d_y / 8 is applied once per super-block.
template <class C>
float dot_blocks(int64_t n, const void* vx, const void* vy) {
  return 0.125f * sum_blocks<typename C::block, block_q8_K, QK_K>(n, vx, vy, [](const auto& x, const block_q8_K& y) {
    int32_t bsum = 0;
    for (int h = 0; h < QK_K / 16; ++h) {
      int s = 0;
      for (int g = 2 * h; g < 2 * h + 2; ++g) s += group_dot(C::grid(x, g), C::signs(x, g), y.qs + 8 * g);
      bsum += s * (2 * C::scale(x, h) + 1);
    }
    return fp16_to_f32(x.d) * y.d * static_cast<float>(bsum);
  });
}

}  // namespace

void dequantize_iq2_xxs(const void* src, float* dst, int64_t n) { dequantize_blocks<Xxs>(src, dst, n); }
float dot_iq2_xxs(int64_t n, const void* x, const void* y) { return dot_blocks<Xxs>(n, x, y); }
void dequantize_iq2_xs(const void* src, float* dst, int64_t n) { dequantize_blocks<Xs>(src, dst, n); }
float dot_iq2_xs(int64_t n, const void* x, const void* y) { return dot_blocks<Xs>(n, x, y); }
void dequantize_iq2_s(const void* src, float* dst, int64_t n) { dequantize_blocks<S>(src, dst, n); }
float dot_iq2_s(int64_t n, const void* x, const void* y) { return dot_blocks<S>(n, x, y); }

}  // namespace lq::ref
