// Scalar reference kernels: 3-bit grid types IQ3_XXS (256-point grid, even sign parity, 3.06 bpw)
// and IQ3_S (512-point grid, free signs, 3.44 bpw).
#pragma once

#include <cstdint>

namespace lq::ref {

void quantize_iq3_xxs(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_iq3_s(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void dequantize_iq3_xxs(const void* src, float* dst, int64_t n);
void dequantize_iq3_s(const void* src, float* dst, int64_t n);
float dot_iq3_xxs(int64_t n, const void* x, const void* y);  // y: Q8_K
float dot_iq3_s(int64_t n, const void* x, const void* y);    // y: Q8_K

}  // namespace lq::ref
