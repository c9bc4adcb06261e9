// K-quants: decoders and Q8_K dot products. Decoders evaluate exactly the expressions of
// llama.cpp's format definition (same operation order), so they are bit-identical to it.
#include "types/ref/kquants.hpp"

#include "core/half.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/kquant_search.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace lq::ref {
namespace {

// Q3_K: the 16 signed 6-bit scales (stored value - 32).
inline void unpack_q3_scales(const uint8_t* s, int* out) {
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? (s[j] & 15) : (s[j - 8] >> 4);
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = (lo | (hi << 4)) - 32;
  }
}

}  // namespace

// ---- decoders --------------------------------------------------------------------------------

void dequantize_q2_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q2_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_f32(x[i].d), dmin = fp16_to_f32(x[i].dmin);
    for (int e = 0; e < QK_K; ++e) {
      const int q = (x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
      const int sc = x[i].scales[e / 16];
      const float dl = d * (sc & 15), ml = dmin * (sc >> 4);
      dst[e] = dl * q - ml;
    }
  }
}

void dequantize_q3_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q3_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_f32(x[i].d);
    int sc[16];
    unpack_q3_scales(x[i].scales, sc);
    for (int e = 0; e < QK_K; ++e) {
      const int h = e / 128, j = (e % 128) / 32, l = e % 32;
      const int lo = (x[i].qs[32 * h + l] >> (2 * j)) & 3;
      const int hi = (x[i].hmask[l] >> (4 * h + j)) & 1;
      const float dl = d * sc[e / 16];
      dst[e] = dl * (lo - (hi ? 0 : 4));
    }
  }
}

void dequantize_q4_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q4_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_f32(x[i].d), dmin = fp16_to_f32(x[i].dmin);
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      q4k_scale_min(x[i].scales, j, sc, m);
      const float dl = d * sc, ml = dmin * m;
      const uint8_t* q = x[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) dst[32 * j + l] = dl * ((q[l] >> shift) & 15) - ml;
    }
  }
}

void dequantize_q5_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q5_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_f32(x[i].d), dmin = fp16_to_f32(x[i].dmin);
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      q4k_scale_min(x[i].scales, j, sc, m);
      const float dl = d * sc, ml = dmin * m;
      const uint8_t* q = x[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 15) | (((x[i].qh[l] >> j) & 1) << 4);
        dst[32 * j + l] = dl * v - ml;
      }
    }
  }
}

void dequantize_q6_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q6_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_f32(x[i].d);
    for (int e = 0; e < QK_K; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const uint8_t ql = x[i].ql[64 * h + l + 32 * (k % 2)];
      const int lo = (ql >> (4 * (k / 2))) & 15;
      const int hi = (x[i].qh[32 * h + l] >> (2 * k)) & 3;
      dst[e] = d * x[i].scales[e / 16] * ((lo | (hi << 4)) - 32);
    }
  }
}

// ---- dot products against Q8_K ----------------------------------------------------------------
// Integer sums per super-block, then one float multiply-add with the two scales. The min term of
// the affine types uses the Q8_K group sums (bsums), as the kernels do.

float dot_q2_k(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q2_K*>(xv);
  const auto* y = static_cast<const block_q8_K*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sumq = 0, summ = 0;
    for (int g = 0; g < 16; ++g) {
      int acc = 0;
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * g + l;
        acc += ((x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) * y[i].qs[e];
      }
      sumq += (x[i].scales[g] & 15) * acc;
      summ += (x[i].scales[g] >> 4) * y[i].bsums[g];
    }
    s += y[i].d * fp16_to_f32(x[i].d) * sumq - y[i].d * fp16_to_f32(x[i].dmin) * summ;
  }
  return s;
}

float dot_q3_k(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q3_K*>(xv);
  const auto* y = static_cast<const block_q8_K*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sc[16];
    unpack_q3_scales(x[i].scales, sc);
    int sumq = 0;
    for (int g = 0; g < 16; ++g) {
      int acc = 0;
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * g + l, h = e / 128, j = (e % 128) / 32, p = e % 32;
        const int lo = (x[i].qs[32 * h + p] >> (2 * j)) & 3;
        const int hi = (x[i].hmask[p] >> (4 * h + j)) & 1;
        acc += (lo - (hi ? 0 : 4)) * y[i].qs[e];
      }
      sumq += sc[g] * acc;
    }
    s += y[i].d * fp16_to_f32(x[i].d) * sumq;
  }
  return s;
}

float dot_q4_k(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q4_K*>(xv);
  const auto* y = static_cast<const block_q8_K*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sumq = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      q4k_scale_min(x[i].scales, j, sc, m);
      const uint8_t* q = x[i].qs + 32 * (j / 2);
      int acc = 0;
      for (int l = 0; l < 32; ++l) acc += ((q[l] >> (4 * (j % 2))) & 15) * y[i].qs[32 * j + l];
      sumq += sc * acc;
      summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    s += y[i].d * fp16_to_f32(x[i].d) * sumq - y[i].d * fp16_to_f32(x[i].dmin) * summ;
  }
  return s;
}

float dot_q5_k(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q5_K*>(xv);
  const auto* y = static_cast<const block_q8_K*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sumq = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      q4k_scale_min(x[i].scales, j, sc, m);
      const uint8_t* q = x[i].qs + 32 * (j / 2);
      int acc = 0;
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> (4 * (j % 2))) & 15) | (((x[i].qh[l] >> j) & 1) << 4);
        acc += v * y[i].qs[32 * j + l];
      }
      sumq += sc * acc;
      summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    s += y[i].d * fp16_to_f32(x[i].d) * sumq - y[i].d * fp16_to_f32(x[i].dmin) * summ;
  }
  return s;
}

float dot_q6_k(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q6_K*>(xv);
  const auto* y = static_cast<const block_q8_K*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sumq = 0;
    for (int g = 0; g < 16; ++g) {
      int acc = 0;
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * g + l, h = e / 128, k = (e % 128) / 32, p = e % 32;
        const uint8_t ql = x[i].ql[64 * h + p + 32 * (k % 2)];
        const int lo = (ql >> (4 * (k / 2))) & 15;
        const int hi = (x[i].qh[32 * h + p] >> (2 * k)) & 3;
        acc += ((lo | (hi << 4)) - 32) * y[i].qs[e];
      }
      sumq += x[i].scales[g] * acc;
    }
    s += y[i].d * fp16_to_f32(x[i].d) * sumq;
  }
  return s;
}

// ---- quantizers --------------------------------------------------------------------------------
// The search and the packing are in kquant_search.hpp; the reference runs it 4 lanes at a time.
namespace {
struct RefTag {};
using RefBlocks = kq::Blocks<RefTag, 4>;
}  // namespace

void quantize_q2_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  RefBlocks::quantize_q2_k(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q3_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  RefBlocks::quantize_q3_k(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q4_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  RefBlocks::quantize_q4_k(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q5_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  RefBlocks::quantize_q5_k(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q6_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  RefBlocks::quantize_q6_k(src, dst, nrows, n_per_row, imatrix);
}

}  // namespace lq::ref
