// IQ1_S / IQ1_M: groups of 8 values are entries of the ternary codebook (-1, 0, +1) shifted by
// +-0.125, value = d * (2l+1) * (entry + shift). IQ1_S has one 3-bit scale code and one shift
// sign per 32 values; IQ1_M a 3-bit code per 16 values and a shift sign per 8 values, with the
// fp16 super-block scale spread over the top nibbles of its four scale words.
#include "types/ref/iq1.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"

#include "core/half.hpp"
#include "types/ref/block_sums.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/iq_search.hpp"
#include "types/ref/iq_tables.hpp"

#include <cstring>

namespace lq::ref {
namespace {

constexpr float kDelta = 0.125f;  // IQ1S_DELTA = IQ1M_DELTA

// Variant 0: shift +0.125 (sign bit clear), variant 1: shift -0.125.
// Trial range: the unit's largest magnitude lands between 0.7 and 2.2 times the top level.
// IQ1_S runs the lighter search (3 starts, 1 round, 1 refit of d), which keeps it among the
// fastest quantizers; the heavier one gains under 1% weighted error.
constexpr IqFormat kS = {IqCodebook::iq1s, 32, 7, 1.f, 2, false,
                         {{-1 + kDelta, kDelta, 1 + kDelta}, {-1 - kDelta, -kDelta, 1 - kDelta}}, 3, 0.7f, 2.2f, 1, 1};
constexpr IqFormat kM = {IqCodebook::iq1s, 16, 7, 1.f, 2, true,
                         {{-1 + kDelta, kDelta, 1 + kDelta}, {-1 - kDelta, -kDelta, 1 - kDelta}}, 4, 0.7f, 2.2f, 2, 2};

template <class Block, class Encode>
void quantize_rows(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix,
                   const IqFormat& f, Encode&& encode) {
  const int64_t nb = n_per_row / QK_K;
  const float floor = iq_importance_floor(imatrix, n_per_row);
  auto* y = static_cast<Block*>(dst);
  float w[QK_K];
  IqSolution sol;
  for (int64_t r = 0; r < nrows; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* x = src + r * n_per_row + b * QK_K;
      iq_weights(x, imatrix ? imatrix + b * QK_K : nullptr, floor, 2.f, w);
      iq_solve(f, x, w, sol);
      Block& blk = y[r * nb + b];
      std::memset(&blk, 0, sizeof(Block));
      if (sol.d > 0) encode(sol, blk);
    }
  }
}

inline const int8_t* grid_row(int index) { return reinterpret_cast<const int8_t*>(iq1s_grid + index); }

// The fp16 super-block scale of an IQ1_M block, from the top nibbles of its scale words.
inline float iq1m_scale(const uint16_t* sc) {
  const uint16_t bits = static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) |
                                              (sc[3] & 0xf000));
  return fp16_to_f32(bits);
}

}  // namespace

void quantize_iq1_s(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  if (!imatrix)
    fail(Errc::imatrix_error, "quantizing to IQ1_S needs importance data (an imatrix); none was given");
  quantize_rows<block_iq1_s>(src, dst, nrows, n_per_row, imatrix, kS, [](const IqSolution& s, block_iq1_s& b) {
    b.d = f32_to_fp16(s.d);
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      uint32_t h = static_cast<uint32_t>(s.l[ib]) << 12 | static_cast<uint32_t>(s.variant[4 * ib]) << 15;
      for (int k = 0; k < 4; ++k) {
        const int idx = s.index[4 * ib + k];
        b.qs[4 * ib + k] = static_cast<uint8_t>(idx & 255);
        h |= static_cast<uint32_t>(idx >> 8) << (3 * k);
      }
      b.qh[ib] = static_cast<uint16_t>(h);
    }
  });
}

void quantize_iq1_m(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  quantize_rows<block_iq1_m>(src, dst, nrows, n_per_row, imatrix, kM, [](const IqSolution& s, block_iq1_m& b) {
    uint16_t sc[4] = {};
    for (int u = 0; u < QK_K / 16; ++u) {
      const int ib = u / 2;
      sc[ib / 2] |= static_cast<uint16_t>(s.l[u] << (6 * (ib % 2) + 3 * (u % 2)));
    }
    for (int g = 0; g < QK_K / 8; ++g) {
      const int idx = s.index[g];
      b.qs[g] = static_cast<uint8_t>(idx & 255);
      b.qh[g / 2] |= static_cast<uint8_t>(((idx >> 8) | s.variant[g] << 3) << (4 * (g % 2)));
    }
    const uint16_t d = f32_to_fp16(s.d);
    for (int k = 0; k < 4; ++k) sc[k] |= static_cast<uint16_t>(((d >> (4 * k)) & 15) << 12);
    std::memcpy(b.scales, sc, sizeof(sc));
  });
}

namespace {

// The two layouts: group g of 8 values is codebook row grid_index(b, g) shifted by -kDelta where
// neg(b, g), else +kDelta; run h of 16 values has the odd scale ls(b, h); d(b) the block scale.
struct S {
  using block = block_iq1_s;
  static float d(const block& b) { return fp16_to_f32(b.d); }
  static int grid_index(const block& b, int g) { return b.qs[g] | ((b.qh[g / 4] >> (3 * (g % 4))) & 7) << 8; }
  static bool neg(const block& b, int g) { return b.qh[g / 4] & 0x8000; }
  static int ls(const block& b, int h) { return 2 * ((b.qh[h / 2] >> 12) & 7) + 1; }
};

struct M {
  using block = block_iq1_m;
  static uint16_t scale_word(const block& b, int k) {
    uint16_t sc;
    std::memcpy(&sc, b.scales + 2 * k, sizeof(sc));
    return sc;
  }
  static float d(const block& b) {
    uint16_t sc[4];
    std::memcpy(sc, b.scales, sizeof(sc));
    return iq1m_scale(sc);
  }
  static int nibble(const block& b, int g) { return (b.qh[g / 2] >> (4 * (g % 2))) & 15; }
  static int grid_index(const block& b, int g) { return b.qs[g] | (nibble(b, g) & 7) << 8; }
  static bool neg(const block& b, int g) { return nibble(b, g) & 8; }
  static int ls(const block& b, int h) {
    const int ib = h / 2;
    return 2 * ((scale_word(b, ib / 2) >> (6 * (ib % 2) + 3 * (h % 2))) & 7) + 1;
  }
};

template <class C>
void dequantize_blocks(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const typename C::block*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = C::d(x[i]);
    for (int h = 0; h < QK_K / 16; ++h) {
      const float dl = d * static_cast<float>(C::ls(x[i], h));
      for (int g = 2 * h; g < 2 * h + 2; ++g) {
        const int8_t* grid = grid_row(C::grid_index(x[i], g));
        const float delta = C::neg(x[i], g) ? -kDelta : kDelta;
        for (int j = 0; j < 8; ++j) *dst++ = dl * (static_cast<float>(grid[j]) + delta);
      }
    }
  }
}

// Dot products against Q8_K: the entry part and the shift part (signed sums of the activations)
// are integer sums per run of 16, times its scale.
template <class C>
float dot_blocks(int64_t n, const void* vx, const void* vy) {
  return sum_blocks<typename C::block, block_q8_K, QK_K>(n, vx, vy, [](const auto& x, const block_q8_K& y) {
    const int8_t* q8 = y.qs;
    int32_t sumi = 0, sumd = 0;
    for (int h = 0; h < QK_K / 16; ++h) {
      int32_t s = 0, sd = 0;
      for (int g = 2 * h; g < 2 * h + 2; ++g, q8 += 8) {
        const int8_t* grid = grid_row(C::grid_index(x, g));
        int32_t qsum = 0;
        for (int j = 0; j < 8; ++j) {
          s += grid[j] * q8[j];
          qsum += q8[j];
        }
        sd += C::neg(x, g) ? -qsum : qsum;
      }
      const int ls = C::ls(x, h);
      sumi += ls * s;
      sumd += ls * sd;
    }
    return C::d(x) * y.d * (static_cast<float>(sumi) + kDelta * static_cast<float>(sumd));
  });
}

}  // namespace

void dequantize_iq1_s(const void* src, float* dst, int64_t n) { dequantize_blocks<S>(src, dst, n); }
float dot_iq1_s(int64_t n, const void* x, const void* y) { return dot_blocks<S>(n, x, y); }
void dequantize_iq1_m(const void* src, float* dst, int64_t n) { dequantize_blocks<M>(src, dst, n); }
float dot_iq1_m(int64_t n, const void* x, const void* y) { return dot_blocks<M>(n, x, y); }

}  // namespace lq::ref
