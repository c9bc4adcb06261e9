// K-quants: decoders and Q8_K dot products. Decoders evaluate exactly the expressions of
// llama.cpp's format definition (same operation order), so they are bit-identical to it.
#include "types/ref/kquants.hpp"

#include "core/half.hpp"
#include "types/ref/block_sums.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/kquant_search.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace lq::ref {
namespace {

// Per type: scales(b, s), per sub-block of kG values the integer scale sc (and min m where the
// type has mins, kMin), and value(b, e), the signed integer level of value e (offsets taken off).
// Decoders and dots below are written once over these; per value they evaluate llama.cpp's
// expressions.
struct Scales {
  float d = 0, dmin = 0;
  int sc[16] = {}, m[16] = {};
};

template <class Block, int G, bool Min>
struct Traits {
  using block = Block;
  static constexpr int kG = G;
  static constexpr bool kMin = Min;
};

template <class F>
Scales read_scales(const typename F::block& b) {
  Scales s;
  s.d = fp16_to_f32(b.d);
  if constexpr (F::kMin) s.dmin = fp16_to_f32(b.dmin);
  F::scales(b, s);
  return s;
}

struct Q2K : Traits<block_q2_K, 16, true> {
  static void scales(const block& b, Scales& s) {
    for (int g = 0; g < 16; ++g) {
      s.sc[g] = b.scales[g] & 15;
      s.m[g] = b.scales[g] >> 4;
    }
  }
  static int value(const block& b, int e) { return (b.qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3; }
};

struct Q3K : Traits<block_q3_K, 16, false> {
  // The 16 signed 6-bit scales (stored value - 32).
  static void scales(const block& b, Scales& s) {
    for (int j = 0; j < 16; ++j) {
      const int lo = j < 8 ? (b.scales[j] & 15) : (b.scales[j - 8] >> 4);
      const int hi = (b.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
      s.sc[j] = (lo | (hi << 4)) - 32;
    }
  }
  static int value(const block& b, int e) {
    const int h = e / 128, j = (e % 128) / 32, l = e % 32;
    const int lo = (b.qs[32 * h + l] >> (2 * j)) & 3;
    const int hi = (b.hmask[l] >> (4 * h + j)) & 1;
    return lo - (hi ? 0 : 4);
  }
};

// Q4_K and Q5_K: value 32 j + l is nibble j % 2 of byte 32 (j / 2) + l; Q5_K's fifth bit is bit j of qh[l].
struct Q4K : Traits<block_q4_K, 32, true> {
  template <class Block>
  static void scales(const Block& b, Scales& s) {
    for (int j = 0; j < 8; ++j) q4k_scale_min(b.scales, j, s.sc[j], s.m[j]);
  }
  template <class Block>
  static int value(const Block& b, int e) { return (b.qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) % 2))) & 15; }
};

struct Q5K : Q4K {
  using block = block_q5_K;  // read_scales takes F::block
  static int value(const block& b, int e) { return Q4K::value(b, e) | (((b.qh[e % 32] >> (e / 32)) & 1) << 4); }
};

struct Q6K : Traits<block_q6_K, 16, false> {
  static void scales(const block& b, Scales& s) {
    for (int g = 0; g < 16; ++g) s.sc[g] = b.scales[g];
  }
  static int value(const block& b, int e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32;
    const int lo = (b.ql[64 * h + l + 32 * (k % 2)] >> (4 * (k / 2))) & 15;
    const int hi = (b.qh[32 * h + l] >> (2 * k)) & 3;
    return (lo | (hi << 4)) - 32;
  }
};

template <class F>
void dequantize_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const typename F::block*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const Scales s = read_scales<F>(x[i]);
    for (int e = 0; e < QK_K; ++e) {
      const float dl = s.d * s.sc[e / F::kG];
      if constexpr (F::kMin) {
        const float ml = s.dmin * s.m[e / F::kG];
        dst[e] = dl * F::value(x[i], e) - ml;
      } else {
        dst[e] = dl * F::value(x[i], e);
      }
    }
  }
}

// Integer sums per super-block, then one float multiply-add with the two scales. The min term of
// the affine types uses the Q8_K group sums (bsums), as the kernels do.
template <class F>
float dot_k(int64_t n, const void* xv, const void* yv) {
  return sum_blocks<typename F::block, block_q8_K, QK_K>(n, xv, yv, [](const auto& x, const block_q8_K& y) {
    const Scales sc = read_scales<F>(x);
    int sumq = 0, summ = 0;
    for (int g = 0; g < QK_K / F::kG; ++g) {
      int acc = 0;
      for (int l = 0; l < F::kG; ++l) acc += F::value(x, F::kG * g + l) * y.qs[F::kG * g + l];
      sumq += sc.sc[g] * acc;
      for (int k = 0; k < F::kG / 16; ++k) summ += sc.m[g] * y.bsums[F::kG / 16 * g + k];
    }
    if constexpr (F::kMin)
      return y.d * sc.d * sumq - y.d * sc.dmin * summ;
    else
      return y.d * sc.d * sumq;
  });
}

}  // namespace

void dequantize_q2_k(const void* src, float* dst, int64_t n) { dequantize_k<Q2K>(src, dst, n); }
float dot_q2_k(int64_t n, const void* x, const void* y) { return dot_k<Q2K>(n, x, y); }
void dequantize_q3_k(const void* src, float* dst, int64_t n) { dequantize_k<Q3K>(src, dst, n); }
float dot_q3_k(int64_t n, const void* x, const void* y) { return dot_k<Q3K>(n, x, y); }
void dequantize_q4_k(const void* src, float* dst, int64_t n) { dequantize_k<Q4K>(src, dst, n); }
float dot_q4_k(int64_t n, const void* x, const void* y) { return dot_k<Q4K>(n, x, y); }
void dequantize_q5_k(const void* src, float* dst, int64_t n) { dequantize_k<Q5K>(src, dst, n); }
float dot_q5_k(int64_t n, const void* x, const void* y) { return dot_k<Q5K>(n, x, y); }
void dequantize_q6_k(const void* src, float* dst, int64_t n) { dequantize_k<Q6K>(src, dst, n); }
float dot_q6_k(int64_t n, const void* x, const void* y) { return dot_k<Q6K>(n, x, y); }

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
void quantize_q6_k_by_square(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float*) {
  RefBlocks::quantize_q6_k_by_square(src, dst, nrows, n_per_row);
}

}  // namespace lq::ref
