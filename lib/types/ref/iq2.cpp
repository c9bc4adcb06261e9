// IQ2_XXS / IQ2_XS / IQ2_S: signs are split off, the magnitudes are matched against the
// codebook (levels 8, 25, 43) with per-unit 4-bit scale codes, value = d * (2l+1)/8 * level.
// IQ2_XXS and IQ2_XS store 7 sign bits per 8 values (an even number of negatives), IQ2_S all 8.
#include "types/ref/iq2.hpp"

#include <lq/error.hpp>

#include "core/half.hpp"
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

void dequantize_iq2_xxs(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_iq2_xxs*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      uint32_t q[2];
      std::memcpy(q, x[i].qs + 4 * ib, sizeof(q));
      const float db = d * (0.5f + static_cast<float>(q[1] >> 28)) * 0.25f;
      for (int k = 0; k < 4; ++k) {
        const uint64_t grid = iq2xxs_grid[(q[0] >> (8 * k)) & 255];
        const uint8_t signs = ksigns_iq2xs[(q[1] >> (7 * k)) & 127];
        for (int j = 0; j < 8; ++j) *dst++ = db * static_cast<float>((grid >> (8 * j)) & 255) * sign_of(signs, j);
      }
    }
  }
}

void dequantize_iq2_xs(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_iq2_xs*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const float db[2] = {d * (0.5f + static_cast<float>(x[i].scales[ib] & 15)) * 0.25f,
                           d * (0.5f + static_cast<float>(x[i].scales[ib] >> 4)) * 0.25f};
      for (int k = 0; k < 4; ++k) {
        const uint16_t q = x[i].qs[4 * ib + k];
        const uint64_t grid = iq2xs_grid[q & 511];
        const uint8_t signs = ksigns_iq2xs[q >> 9];
        for (int j = 0; j < 8; ++j)
          *dst++ = db[k / 2] * static_cast<float>((grid >> (8 * j)) & 255) * sign_of(signs, j);
      }
    }
  }
}

void dequantize_iq2_s(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_iq2_s*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const float db[2] = {d * (0.5f + static_cast<float>(x[i].scales[ib] & 15)) * 0.25f,
                           d * (0.5f + static_cast<float>(x[i].scales[ib] >> 4)) * 0.25f};
      for (int k = 0; k < 4; ++k) {
        const int g = 4 * ib + k;
        const uint64_t grid = iq2s_grid[x[i].qs[g] | ((x[i].qh[ib] >> (2 * k)) & 3) << 8];
        const uint8_t signs = x[i].qs[QK_K / 8 + g];
        for (int j = 0; j < 8; ++j)
          *dst++ = db[k / 2] * static_cast<float>((grid >> (8 * j)) & 255) * sign_of(signs, j);
      }
    }
  }
}

// Dot products against Q8_K: integer sums per scale unit, times (2l+1); the common factor
// d_x * d_y / 8 is applied once per super-block.
namespace {

inline int group_dot(uint64_t grid, uint8_t signs, const int8_t* q8) {
  int s = 0;
  for (int j = 0; j < 8; ++j) {
    const int v = static_cast<int>((grid >> (8 * j)) & 255) * q8[j];
    s += signs & kmask_iq2xs[j] ? -v : v;
  }
  return s;
}

}  // namespace

float dot_iq2_xxs(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_iq2_xxs*>(vx);
  const auto* y = static_cast<const block_q8_K*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const int8_t* q8 = y[i].qs;
    int32_t bsum = 0;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      uint32_t q[2];
      std::memcpy(q, x[i].qs + 4 * ib, sizeof(q));
      int32_t s = 0;
      for (int k = 0; k < 4; ++k, q8 += 8)
        s += group_dot(iq2xxs_grid[(q[0] >> (8 * k)) & 255], ksigns_iq2xs[(q[1] >> (7 * k)) & 127], q8);
      bsum += s * static_cast<int32_t>(2 * (q[1] >> 28) + 1);
    }
    sum += fp16_to_f32(x[i].d) * y[i].d * static_cast<float>(bsum);
  }
  return 0.125f * sum;
}

float dot_iq2_xs(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_iq2_xs*>(vx);
  const auto* y = static_cast<const block_q8_K*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const int8_t* q8 = y[i].qs;
    int32_t bsum = 0;
    for (int g = 0; g < QK_K / 8; g += 2, q8 += 16) {
      const uint16_t* q = x[i].qs + g;
      const int s = group_dot(iq2xs_grid[q[0] & 511], ksigns_iq2xs[q[0] >> 9], q8) +
                    group_dot(iq2xs_grid[q[1] & 511], ksigns_iq2xs[q[1] >> 9], q8 + 8);
      const int l = (x[i].scales[g / 4] >> (4 * ((g / 2) % 2))) & 15;
      bsum += s * (2 * l + 1);
    }
    sum += fp16_to_f32(x[i].d) * y[i].d * static_cast<float>(bsum);
  }
  return 0.125f * sum;
}

float dot_iq2_s(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_iq2_s*>(vx);
  const auto* y = static_cast<const block_q8_K*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const int8_t* q8 = y[i].qs;
    int32_t bsum = 0;
    for (int g = 0; g < QK_K / 8; g += 2, q8 += 16) {
      int s = 0;
      for (int k = 0; k < 2; ++k) {
        const int gg = g + k;
        const uint64_t grid = iq2s_grid[x[i].qs[gg] | ((x[i].qh[gg / 4] >> (2 * (gg % 4))) & 3) << 8];
        s += group_dot(grid, x[i].qs[QK_K / 8 + gg], q8 + 8 * k);
      }
      const int l = (x[i].scales[g / 4] >> (4 * ((g / 2) % 2))) & 15;
      bsum += s * (2 * l + 1);
    }
    sum += fp16_to_f32(x[i].d) * y[i].d * static_cast<float>(bsum);
  }
  return 0.125f * sum;
}

}  // namespace lq::ref
