// Scalar reference kernels: legacy 32-value block types.
#pragma once

#include <cstdint>

namespace lq::ref {

void quantize_q4_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_q4_1(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_q5_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_q5_1(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_q8_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_q8_1(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);

void dequantize_q4_0(const void* src, float* dst, int64_t n);
void dequantize_q4_1(const void* src, float* dst, int64_t n);
void dequantize_q5_0(const void* src, float* dst, int64_t n);
void dequantize_q5_1(const void* src, float* dst, int64_t n);
void dequantize_q8_0(const void* src, float* dst, int64_t n);
void dequantize_q8_1(const void* src, float* dst, int64_t n);

float dot_q4_0(int64_t n, const void* x, const void* y);  // y: Q8_0
float dot_q4_1(int64_t n, const void* x, const void* y);  // y: Q8_1
float dot_q5_0(int64_t n, const void* x, const void* y);  // y: Q8_0
float dot_q5_1(int64_t n, const void* x, const void* y);  // y: Q8_1
float dot_q8_0(int64_t n, const void* x, const void* y);  // y: Q8_0

}  // namespace lq::ref
