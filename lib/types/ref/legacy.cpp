// Legacy 32-value block types. Without importance weights the quantizers use the classic
// max-based formulas (bit-identical with llama.cpp's reference rows). With importance weights
// they run a weighted least-squares scale search whose objective is sum_j w_j (x_j - xhat_j)^2,
// w_j the column importance, and re-round every level against the stored fp16 scale.
#include "types/ref/legacy.hpp"

#include "core/half.hpp"
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
      const int q = static_cast<int8_t>(x[j] * id + (nmax + 0.5f));
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
      const int q = static_cast<int8_t>((x[j] - mn) * id + 0.5f);
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

}  // namespace

void quantize_q4_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  for_each_block<block_q4_0>(src, dst, nrows, n_per_row, imatrix, [](const float* x, const float* w, block_q4_0& b) {
    uint8_t L[32];
    float d;
    block_symmetric(x, w, 8, d, L);
    b.d = f32_to_fp16(d);
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  });
}

void quantize_q5_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  for_each_block<block_q5_0>(src, dst, nrows, n_per_row, imatrix, [](const float* x, const float* w, block_q5_0& b) {
    uint8_t L[32];
    float d;
    block_symmetric(x, w, 16, d, L);
    b.d = f32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      b.qs[j] = static_cast<uint8_t>((L[j] & 15) | ((L[j + 16] & 15) << 4));
      qh |= static_cast<uint32_t>((L[j] >> 4) & 1) << j;
      qh |= static_cast<uint32_t>((L[j + 16] >> 4) & 1) << (j + 16);
    }
    std::memcpy(b.qh, &qh, 4);
  });
}

void quantize_q4_1(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  for_each_block<block_q4_1>(src, dst, nrows, n_per_row, imatrix, [](const float* x, const float* w, block_q4_1& b) {
    uint8_t L[32];
    float d, m;
    block_affine(x, w, 15, d, m, L);
    b.d = f32_to_fp16(d);
    b.m = f32_to_fp16(m);
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  });
}

void quantize_q5_1(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  for_each_block<block_q5_1>(src, dst, nrows, n_per_row, imatrix, [](const float* x, const float* w, block_q5_1& b) {
    uint8_t L[32];
    float d, m;
    block_affine(x, w, 31, d, m, L);
    b.d = f32_to_fp16(d);
    b.m = f32_to_fp16(m);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      b.qs[j] = static_cast<uint8_t>((L[j] & 15) | ((L[j + 16] & 15) << 4));
      qh |= static_cast<uint32_t>((L[j] >> 4) & 1) << j;
      qh |= static_cast<uint32_t>((L[j + 16] >> 4) & 1) << (j + 16);
    }
    std::memcpy(b.qh, &qh, 4);
  });
}

// Q8_0 ignores importance weights (as in llama.cpp): d = absmax / 127, round half away from zero.
void quantize_q8_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float*) {
  for_each_block<block_q8_0>(src, dst, nrows, n_per_row, nullptr, [](const float* x, const float*, block_q8_0& b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d ? 1.0f / d : 0.0f;
    b.d = f32_to_fp16(d);
    for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  });
}

void quantize_q8_1(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float*) {
  for_each_block<block_q8_1>(src, dst, nrows, n_per_row, nullptr, [](const float* x, const float*, block_q8_1& b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      b.qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
      sum += b.qs[j];
    }
    b.d = f32_to_fp16(d);
    b.s = f32_to_fp16(static_cast<float>(sum) * d);
  });
}

void dequantize_q4_0(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q4_0*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int j = 0; j < 16; ++j) {
      dst[i * 32 + j] = ((x[i].qs[j] & 0x0F) - 8) * d;
      dst[i * 32 + j + 16] = ((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_q4_1(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q4_1*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = fp16_to_f32(x[i].d), m = fp16_to_f32(x[i].m);
    for (int j = 0; j < 16; ++j) {
      dst[i * 32 + j] = (x[i].qs[j] & 0x0F) * d + m;
      dst[i * 32 + j + 16] = (x[i].qs[j] >> 4) * d + m;
    }
  }
}

void dequantize_q5_0(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q5_0*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = fp16_to_f32(x[i].d);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int x0 = (x[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
      const int x1 = (x[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
      dst[i * 32 + j] = (x0 - 16) * d;
      dst[i * 32 + j + 16] = (x1 - 16) * d;
    }
  }
}

void dequantize_q5_1(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q5_1*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = fp16_to_f32(x[i].d), m = fp16_to_f32(x[i].m);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int x0 = (x[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
      const int x1 = (x[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
      dst[i * 32 + j] = x0 * d + m;
      dst[i * 32 + j + 16] = x1 * d + m;
    }
  }
}

void dequantize_q8_0(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q8_0*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int j = 0; j < 32; ++j) dst[i * 32 + j] = x[i].qs[j] * d;
  }
}

void dequantize_q8_1(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q8_1*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int j = 0; j < 32; ++j) dst[i * 32 + j] = x[i].qs[j] * d;
  }
}

float dot_q4_0(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q4_0*>(xv);
  const auto* y = static_cast<const block_q8_0*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    int acc = 0;
    for (int j = 0; j < 16; ++j) {
      acc += ((x[i].qs[j] & 0x0F) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
    }
    s += acc * fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d);
  }
  return s;
}

float dot_q4_1(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q4_1*>(xv);
  const auto* y = static_cast<const block_q8_1*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    int acc = 0;
    for (int j = 0; j < 16; ++j) {
      acc += (x[i].qs[j] & 0x0F) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
    }
    s += acc * fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d) + fp16_to_f32(x[i].m) * fp16_to_f32(y[i].s);
  }
  return s;
}

float dot_q5_0(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q5_0*>(xv);
  const auto* y = static_cast<const block_q8_0*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    int acc = 0;
    for (int j = 0; j < 16; ++j) {
      const int x0 = ((x[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10)) - 16;
      const int x1 = ((x[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
      acc += x0 * y[i].qs[j] + x1 * y[i].qs[j + 16];
    }
    s += acc * fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d);
  }
  return s;
}

float dot_q5_1(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q5_1*>(xv);
  const auto* y = static_cast<const block_q8_1*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    int acc = 0;
    for (int j = 0; j < 16; ++j) {
      const int x0 = (x[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
      const int x1 = (x[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
      acc += x0 * y[i].qs[j] + x1 * y[i].qs[j + 16];
    }
    s += acc * fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d) + fp16_to_f32(x[i].m) * fp16_to_f32(y[i].s);
  }
  return s;
}

float dot_q8_0(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q8_0*>(xv);
  const auto* y = static_cast<const block_q8_0*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    int acc = 0;
    for (int j = 0; j < 32; ++j) acc += x[i].qs[j] * y[i].qs[j];
    s += acc * fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d);
  }
  return s;
}

}  // namespace lq::ref
