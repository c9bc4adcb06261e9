// Scalar reference kernels: k-quants (256-value super-blocks with quantized sub-block scales).
// Quantizers take optional per-column importance weights (n_per_row values, the same for every
// row) and minimise sum_j w_j (x_j - xhat_j)^2 (w_j = 1 without them). Dot products run against
// Q8_K activations.
#pragma once

#include <cstdint>

namespace lq::ref {

void quantize_q2_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_q3_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_q4_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_q5_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_q6_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);

void dequantize_q2_k(const void* src, float* dst, int64_t n);
void dequantize_q3_k(const void* src, float* dst, int64_t n);
void dequantize_q4_k(const void* src, float* dst, int64_t n);
void dequantize_q5_k(const void* src, float* dst, int64_t n);
void dequantize_q6_k(const void* src, float* dst, int64_t n);

float dot_q2_k(int64_t n, const void* x, const void* y);  // y: Q8_K
float dot_q3_k(int64_t n, const void* x, const void* y);  // y: Q8_K
float dot_q4_k(int64_t n, const void* x, const void* y);  // y: Q8_K
float dot_q5_k(int64_t n, const void* x, const void* y);  // y: Q8_K
float dot_q6_k(int64_t n, const void* x, const void* y);  // y: Q8_K

}  // namespace lq::ref
