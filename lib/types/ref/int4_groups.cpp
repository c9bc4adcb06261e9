// Scalar reference kernels of W4G (int4_groups.hpp).
#include "types/ref/int4_groups.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace lq::ref {

void w4g_block(const uint8_t* codes, float d, int32_t zero, BlockW4G& out) {
  out.d = d;
  out.z = static_cast<float>(zero);
  for (int j = 0; j < 16; ++j)
    out.qs[j] = static_cast<uint8_t>((codes[j] & 0x0f) | ((codes[16 + j] & 0x0f) << 4));
}

namespace {
// A min-max asymmetric grid of 32 values with codes 0 .. maxq (0 always on the grid).
void minmax_block(const float* x, int maxq, float& d, int32_t& zero, uint8_t* q) {
  const auto [lo, hi] = std::minmax_element(x, x + 32);
  const float mn = std::min(*lo, 0.0f), mx = std::max(*hi, 0.0f), top = static_cast<float>(maxq);
  d = mx > mn ? (mx - mn) / top : 1.0f;
  zero = static_cast<int32_t>(std::clamp(std::nearbyint(-mn / d), 0.0f, top));
  for (int j = 0; j < 32; ++j)
    q[j] = static_cast<uint8_t>(std::clamp(std::nearbyint(x[j] / d) + static_cast<float>(zero), 0.0f, top));
}
}  // namespace

void quantize_w4g(const float* src, void* dst, int64_t nrows, int64_t n, const float*) {
  auto* out = static_cast<BlockW4G*>(dst);
  for (int64_t b = 0; b < nrows * n / 32; ++b) {
    float d;
    int32_t zero;
    uint8_t q[32];
    minmax_block(src + b * 32, 15, d, zero, q);
    w4g_block(q, d, zero, out[b]);
  }
}

void quantize_w8g(const float* src, void* dst, int64_t nrows, int64_t n, const float*) {
  auto* out = static_cast<BlockW8G*>(dst);
  for (int64_t b = 0; b < nrows * n / 32; ++b) {
    int32_t zero;
    minmax_block(src + b * 32, 255, out[b].d, zero, out[b].q);
    out[b].z = static_cast<float>(zero);
  }
}

void dequantize_w8g(const void* src, float* dst, int64_t n) {
  const auto* in = static_cast<const BlockW8G*>(src);
  for (int64_t b = 0; b < n / 32; ++b)
    for (int j = 0; j < 32; ++j) dst[b * 32 + j] = in[b].d * (static_cast<float>(in[b].q[j]) - in[b].z);
}

void dequantize_w4g(const void* src, float* dst, int64_t n) {
  const auto* in = static_cast<const BlockW4G*>(src);
  for (int64_t b = 0; b < n / 32; ++b) {
    const BlockW4G& blk = in[b];
    float* y = dst + b * 32;
    for (int j = 0; j < 16; ++j) {
      y[j] = blk.d * (static_cast<float>(blk.qs[j] & 0x0f) - blk.z);
      y[16 + j] = blk.d * (static_cast<float>(blk.qs[j] >> 4) - blk.z);
    }
  }
}

}  // namespace lq::ref
