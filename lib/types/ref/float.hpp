// Scalar reference kernels: plain float types (no blocks).
#pragma once

#include <cstdint>

namespace lq::ref {

void quantize_f32(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_f16(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_bf16(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void dequantize_f32(const void* src, float* dst, int64_t n);
void dequantize_f16(const void* src, float* dst, int64_t n);
void dequantize_bf16(const void* src, float* dst, int64_t n);
void dequantize_f64(const void* src, float* dst, int64_t n);
float dot_f32(int64_t n, const void* x, const void* y);
float dot_f16(int64_t n, const void* x, const void* y);
float dot_bf16(int64_t n, const void* x, const void* y);

}  // namespace lq::ref
