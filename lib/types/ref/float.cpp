// Float types (F32, F16, BF16, F64): conversions, and dot products summed in double.
#include "types/ref/float.hpp"

#include "core/half.hpp"

#include <cstring>

namespace lq::ref {

void quantize_f32(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float*) {
  std::memcpy(dst, src, static_cast<size_t>(nrows * n_per_row) * sizeof(float));
}

void quantize_f16(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float*) {
  auto* y = static_cast<uint16_t*>(dst);
  for (int64_t i = 0, n = nrows * n_per_row; i < n; ++i) y[i] = f32_to_fp16(src[i]);
}

void quantize_bf16(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float*) {
  auto* y = static_cast<uint16_t*>(dst);
  for (int64_t i = 0, n = nrows * n_per_row; i < n; ++i) y[i] = f32_to_bf16(src[i]);
}

void dequantize_f32(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void dequantize_f16(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(x[i]);
}

void dequantize_bf16(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(x[i]);
}

void dequantize_f64(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const double*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(x[i]);
}

float dot_f32(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const float*>(xv);
  const auto* y = static_cast<const float*>(yv);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * y[i];
  return static_cast<float>(s);
}

namespace {

// 16-bit floats widened exactly, products summed in double.
template <float (*Widen)(uint16_t)>
float dot_16bit(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const uint16_t*>(xv);
  const auto* y = static_cast<const uint16_t*>(yv);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(Widen(x[i])) * Widen(y[i]);
  return static_cast<float>(s);
}

}  // namespace

float dot_f16(int64_t n, const void* x, const void* y) { return dot_16bit<fp16_to_f32>(n, x, y); }
float dot_bf16(int64_t n, const void* x, const void* y) { return dot_16bit<bf16_to_f32>(n, x, y); }

}  // namespace lq::ref
