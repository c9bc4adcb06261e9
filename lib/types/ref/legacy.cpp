// Legacy 32-value block types. Without importance weights the quantizers use the classic
// max-based formulas (bit-identical with llama.cpp's reference rows). With importance weights
// they run a weighted least-squares scale search whose objective is sum_j w_j (x_j - xhat_j)^2,
// w_j the column importance, and re-round every level against the stored fp16 scale.
#include "types/ref/legacy.hpp"

#include "core/float_cast.hpp"
#include "core/half.hpp"
#include "types/ref/block_sums.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/search.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace lq::ref {
namespace {

// Symmetric 32-value block: finds d and levels (0..2*nmax-1, offset nmax) for one block.
void block_symmetric(const float* x, const float* w, int nmax, float& d_out, uint8_t* L) {
  if (!w) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(x[j]) > amax) { amax = std::fabs(x[j]); max = x[j]; }
    }
    const float d = max / -nmax;
    const float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; ++j) {
      const int q = trunc_i8(x[j] * id + (nmax + 0.5f));
      L[j] = static_cast<uint8_t>(std::min(2 * nmax - 1, q));
    }
    d_out = d;
    return;
  }
  const float d = search_symmetric(32, nmax, x, w, L, 12, 0.1f);
  d_out = fp16_to_f32(f32_to_fp16(d));
  round_symmetric(32, nmax, x, d_out, L);
}

// Affine 32-value block: xhat = d * q + m, q in 0..nmax.
void block_affine(const float* x, const float* w, int nmax, float& d_out, float& m_out, uint8_t* L) {
  if (!w) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < 32; ++j) { mn = std::min(mn, x[j]); mx = std::max(mx, x[j]); }
    const float d = (mx - mn) / nmax;
    const float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; ++j) {
      const int q = trunc_i8((x[j] - mn) * id + 0.5f);
      L[j] = static_cast<uint8_t>(std::min(nmax, q));
    }
    d_out = d;
    m_out = mn;
    return;
  }
  float m;
  const float d = search_affine(32, nmax, x, w, L, &m, -1.0f, 0.05f, 40);
  d_out = fp16_to_f32(f32_to_fp16(d));
  m_out = fp16_to_f32(f32_to_fp16(m));
  round_affine(32, nmax, x, d_out, m_out, L);
}

template <typename Block, typename Fn>
void for_each_block(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix,
                    Fn&& fn) {
  const int64_t nb = n_per_row / 32;
  auto* y = static_cast<Block*>(dst);
  for (int64_t r = 0; r < nrows; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      fn(src + r * n_per_row + b * 32, imatrix ? imatrix + b * 32 : nullptr, y[r * nb + b]);
    }
  }
}

// Levels 0..15 as nibbles, bit 4 (5-bit types) in qh.
template <typename Block>
void pack_levels(const uint8_t* L, Block& b) {
  if constexpr (requires { b.qh; }) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      b.qs[j] = static_cast<uint8_t>((L[j] & 15) | ((L[j + 16] & 15) << 4));
      qh |= static_cast<uint32_t>((L[j] >> 4) & 1) << j;
      qh |= static_cast<uint32_t>((L[j + 16] >> 4) & 1) << (j + 16);
    }
    std::memcpy(b.qh, &qh, 4);
  } else {
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  }
}

// Q4_0 / Q5_0 (nmax 8, 16) and Q4_1 / Q5_1 (nmax 15, 31: the blocks with a min m).
template <typename Block, int kNmax>
void quantize_blocks(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  for_each_block<Block>(src, dst, nrows, n_per_row, imatrix, [](const float* x, const float* w, Block& b) {
    uint8_t L[32];
    float d, m;
    if constexpr (requires { b.m; }) {
      block_affine(x, w, kNmax, d, m, L);
      b.m = f32_to_fp16(m);
    } else {
      block_symmetric(x, w, kNmax, d, L);
    }
    b.d = f32_to_fp16(d);
    pack_levels(L, b);
  });
}

// Q8_0 / Q8_1 ignore importance weights (as in llama.cpp): d = absmax / 127, round half away
// from zero; Q8_1 also stores s = d * (sum of the levels).
template <typename Block>
void quantize_q8(const float* src, void* dst, int64_t nrows, int64_t n_per_row) {
  for_each_block<Block>(src, dst, nrows, n_per_row, nullptr, [](const float* x, const float*, Block& b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      b.qs[j] = trunc_i8(std::roundf(x[j] * id));
      sum += b.qs[j];
    }
    b.d = f32_to_fp16(d);
    if constexpr (requires { b.s; }) b.s = f32_to_fp16(static_cast<float>(sum) * d);
  });
}

// Per type: value j of a block is level j - kOff, times d (plus m where the block has one);
// levels(b, q) writes the 32 levels; Act is the activation type of its dot.
template <typename Block, typename ActBlock, int Off>
struct Legacy {
  using block = Block;
  using Act = ActBlock;
  static constexpr int kOff = Off;
  static void levels(const block& b, int* q) {
    if constexpr (sizeof(b.qs) == 32) {
      for (int j = 0; j < 32; ++j) q[j] = b.qs[j];
    } else {
      uint32_t qh = 0;  // the fifth bits (5-bit types)
      if constexpr (requires { b.qh; }) std::memcpy(&qh, b.qh, 4);
      for (int j = 0; j < 16; ++j) {
        q[j] = (b.qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
        q[j + 16] = (b.qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
      }
    }
  }
};

template <typename T>
void dequantize_blocks(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const typename T::block*>(src);
  int q[32];
  for (int64_t i = 0; i < n / 32; ++i, dst += 32) {
    T::levels(x[i], q);
    const float d = fp16_to_f32(x[i].d);
    if constexpr (requires { x[i].m; }) {
      const float m = fp16_to_f32(x[i].m);
      for (int j = 0; j < 32; ++j) dst[j] = q[j] * d + m;
    } else {
      for (int j = 0; j < 32; ++j) dst[j] = (q[j] - T::kOff) * d;
    }
  }
}

template <typename T>
float dot_blocks(int64_t n, const void* xv, const void* yv) {
  using Act = typename T::Act;
  return sum_blocks<typename T::block, Act, 32>(n, xv, yv, [](const typename T::block& x, const Act& y) {
    int q[32];
    T::levels(x, q);
    int acc = 0;
    for (int j = 0; j < 32; ++j) acc += (q[j] - T::kOff) * y.qs[j];
    if constexpr (requires { x.m; })
      return acc * fp16_to_f32(x.d) * fp16_to_f32(y.d) + fp16_to_f32(x.m) * fp16_to_f32(y.s);
    else
      return acc * fp16_to_f32(x.d) * fp16_to_f32(y.d);
  });
}

using Q4_0 = Legacy<block_q4_0, block_q8_0, 8>;
using Q4_1 = Legacy<block_q4_1, block_q8_1, 0>;
using Q5_0 = Legacy<block_q5_0, block_q8_0, 16>;
using Q5_1 = Legacy<block_q5_1, block_q8_1, 0>;
using Q8_0 = Legacy<block_q8_0, block_q8_0, 0>;
using Q8_1 = Legacy<block_q8_1, block_q8_1, 0>;

}  // namespace

void quantize_q4_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  quantize_blocks<block_q4_0, 8>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q5_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  quantize_blocks<block_q5_0, 16>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q4_1(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  quantize_blocks<block_q4_1, 15>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q5_1(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  quantize_blocks<block_q5_1, 31>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q8_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float*) {
  quantize_q8<block_q8_0>(src, dst, nrows, n_per_row);
}
void quantize_q8_1(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float*) {
  quantize_q8<block_q8_1>(src, dst, nrows, n_per_row);
}

void dequantize_q4_0(const void* src, float* dst, int64_t n) { dequantize_blocks<Q4_0>(src, dst, n); }
float dot_q4_0(int64_t n, const void* x, const void* y) { return dot_blocks<Q4_0>(n, x, y); }
void dequantize_q4_1(const void* src, float* dst, int64_t n) { dequantize_blocks<Q4_1>(src, dst, n); }
float dot_q4_1(int64_t n, const void* x, const void* y) { return dot_blocks<Q4_1>(n, x, y); }
void dequantize_q5_0(const void* src, float* dst, int64_t n) { dequantize_blocks<Q5_0>(src, dst, n); }
float dot_q5_0(int64_t n, const void* x, const void* y) { return dot_blocks<Q5_0>(n, x, y); }
void dequantize_q5_1(const void* src, float* dst, int64_t n) { dequantize_blocks<Q5_1>(src, dst, n); }
float dot_q5_1(int64_t n, const void* x, const void* y) { return dot_blocks<Q5_1>(n, x, y); }
void dequantize_q8_0(const void* src, float* dst, int64_t n) { dequantize_blocks<Q8_0>(src, dst, n); }
float dot_q8_0(int64_t n, const void* x, const void* y) { return dot_blocks<Q8_0>(n, x, y); }
void dequantize_q8_1(const void* src, float* dst, int64_t n) { dequantize_blocks<Q8_1>(src, dst, n); }

}  // namespace lq::ref
