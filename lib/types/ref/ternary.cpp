// Ternary types. The quantizers pick the least-squares scale, imatrix-weighted when given
// (ternary_search.hpp); values are then rounded against the stored fp16 scale.
#include "types/ref/ternary.hpp"

#include "core/half.hpp"
#include "types/ref/block_sums.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/ternary_search.hpp"

namespace lq::ref {
namespace {

inline int trit_at(uint8_t byte, int n) {
  static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  const auto q = static_cast<uint8_t>(byte * kPow3[n]);
  return (q * 3) >> 8;
}

// Trits of one TQ1_0 block in value order.
void unpack_tq1_0(const block_tq1_0& b, int8_t* t) {
  for (int n = 0; n < 5; ++n)
    for (int m = 0; m < 32; ++m) t[m + 32 * n] = static_cast<int8_t>(trit_at(b.qs[m], n));
  for (int n = 0; n < 5; ++n)
    for (int m = 0; m < 16; ++m) t[160 + m + 16 * n] = static_cast<int8_t>(trit_at(b.qs[32 + m], n));
  for (int n = 0; n < 4; ++n)
    for (int j = 0; j < 4; ++j) t[240 + j + 4 * n] = static_cast<int8_t>(trit_at(b.qh[j], n));
}

void unpack_tq2_0(const block_tq2_0& b, int8_t* t) {
  for (int g = 0; g < 2; ++g)
    for (int k = 0; k < 4; ++k)
      for (int m = 0; m < 32; ++m) t[128 * g + 32 * k + m] = static_cast<int8_t>((b.qs[32 * g + m] >> (2 * k)) & 3);
}

}  // namespace

void quantize_tq1_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  ternary::quantize_rows<ternary::RefOps, block_tq1_0>(src, dst, nrows, n_per_row, imatrix);
}

void quantize_tq2_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  ternary::quantize_rows<ternary::RefOps, block_tq2_0>(src, dst, nrows, n_per_row, imatrix);
}

namespace {

template <typename Block, typename Unpack>
void dequant_ternary(const void* src, float* dst, int64_t n, Unpack&& unpack) {
  const auto* x = static_cast<const Block*>(src);
  int8_t t[QK_K];
  for (int64_t i = 0; i < n / QK_K; ++i) {
    unpack(x[i], t);
    const float d = fp16_to_f32(x[i].d);
    for (int j = 0; j < QK_K; ++j) dst[i * QK_K + j] = static_cast<float>(t[j] - 1) * d;
  }
}

template <typename Block, typename Unpack>
float dot_ternary(int64_t n, const void* xv, const void* yv, Unpack&& unpack) {
  return sum_blocks<Block, block_q8_K, QK_K>(n, xv, yv, [&](const Block& x, const block_q8_K& y) {
    int8_t t[QK_K];
    unpack(x, t);
    int acc = 0;
    for (int j = 0; j < QK_K; ++j) acc += (t[j] - 1) * y.qs[j];
    return static_cast<float>(acc) * fp16_to_f32(x.d) * y.d;
  });
}

}  // namespace

void dequantize_tq1_0(const void* src, float* dst, int64_t n) { dequant_ternary<block_tq1_0>(src, dst, n, unpack_tq1_0); }
void dequantize_tq2_0(const void* src, float* dst, int64_t n) { dequant_ternary<block_tq2_0>(src, dst, n, unpack_tq2_0); }
float dot_tq1_0(int64_t n, const void* x, const void* y) { return dot_ternary<block_tq1_0>(n, x, y, unpack_tq1_0); }
float dot_tq2_0(int64_t n, const void* x, const void* y) { return dot_ternary<block_tq2_0>(n, x, y, unpack_tq2_0); }

}  // namespace lq::ref
