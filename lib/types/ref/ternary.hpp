// Scalar reference kernels: ternary types TQ1_0 and TQ2_0 (values in {-d, 0, +d} per 256 values).
#pragma once

#include <cstdint>

namespace lq::ref {

void quantize_tq1_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_tq2_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void dequantize_tq1_0(const void* src, float* dst, int64_t n);
void dequantize_tq2_0(const void* src, float* dst, int64_t n);
float dot_tq1_0(int64_t n, const void* x, const void* y);  // y: Q8_K
float dot_tq2_0(int64_t n, const void* x, const void* y);  // y: Q8_K

}  // namespace lq::ref
