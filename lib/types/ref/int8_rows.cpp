// Scalar reference kernels of W8 and A8 (int8_rows.hpp): the oracles of the CPU int8 GEMM.
#include "types/ref/int8_rows.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

namespace lq::ref {
namespace {

// Rows of `n`: a float scale from the row's max |x|, then int8 values of x / scale rounded half
// to even and clamped.
template <class ScaleOf>
void quantize_i8_rows(const float* src, void* dst, int64_t nrows, int64_t n, ScaleOf scale_of, float qmin) {
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t r = 0; r < nrows; ++r) {
    const float* x = src + r * n;
    uint8_t* row = out + static_cast<size_t>(r) * static_cast<size_t>(n + 4);
    float amax = 0.f;
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = scale_of(amax);
    std::memcpy(row, &d, 4);
    auto* q = reinterpret_cast<int8_t*>(row + 4);
    for (int64_t i = 0; i < n; ++i) {
      const float v = d != 0.f ? std::nearbyint(x[i] / d) : 0.f;
      q[i] = static_cast<int8_t>(std::min(127.f, std::max(qmin, v)));
    }
  }
}

}  // namespace

void quantize_w8(const float* src, void* dst, int64_t nrows, int64_t n, const float*) {
  quantize_i8_rows(src, dst, nrows, n, [](float amax) { return std::max(amax / 127.5f, FLT_EPSILON); }, -128.f);
}

void quantize_a8(const float* src, void* dst, int64_t nrows, int64_t n, const float*) {
  quantize_i8_rows(src, dst, nrows, n, [](float amax) { return amax / 127.f; }, -127.f);
}

void quantize_a8_static(const float* src, void* dst, int64_t nrows, int64_t n, float scale) {
  quantize_i8_rows(src, dst, nrows, n, [scale](float) { return scale; }, -128.f);
}

void dequantize_i8_row(const void* src, float* dst, int64_t n) {
  const auto* row = static_cast<const uint8_t*>(src);
  float d;
  std::memcpy(&d, row, 4);
  const auto* q = reinterpret_cast<const int8_t*>(row + 4);
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(q[i]) * d;
}

float dot_w8_a8(int64_t n, const void* x, const void* y) {
  const auto* wr = static_cast<const uint8_t*>(x);
  const auto* ar = static_cast<const uint8_t*>(y);
  float dw, da;
  std::memcpy(&dw, wr, 4);
  std::memcpy(&da, ar, 4);
  const auto* qw = reinterpret_cast<const int8_t*>(wr + 4);
  const auto* qa = reinterpret_cast<const int8_t*>(ar + 4);
  int32_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<int32_t>(qw[i]) * qa[i];
  return static_cast<float>(s) * (dw * da);
}

}  // namespace lq::ref
