#include "types/ref/q8_k.hpp"

#include "types/ref/blocks.hpp"
#include "types/ref/search.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>

namespace lq::ref {

// d = max / -127 on the signed value of largest magnitude (so that value maps to -127 exactly),
// q = min(127, round(x / d)); bsums[k] = sum of the 16 quants of group k.
void quantize_q8_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float*) {
  auto* y = static_cast<block_q8_K*>(dst);
  const int64_t nb = nrows * n_per_row / QK_K;
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * QK_K;
    float amax = 0, max = 0;
    for (int j = 0; j < QK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) { amax = ax; max = x[j]; }
    }
    if (amax == 0) {
      y[i].d = 0;
      std::fill(std::begin(y[i].qs), std::end(y[i].qs), 0);
      std::fill(std::begin(y[i].bsums), std::end(y[i].bsums), 0);
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; ++j) y[i].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
    for (int k = 0; k < QK_K / 16; ++k) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += y[i].qs[16 * k + j];
      y[i].bsums[k] = static_cast<int16_t>(s);
    }
    y[i].d = 1 / iscale;
  }
}

void dequantize_q8_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q8_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i)
    for (int j = 0; j < QK_K; ++j) dst[i * QK_K + j] = x[i].d * x[i].qs[j];
}

}  // namespace lq::ref
