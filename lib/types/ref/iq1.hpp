// Scalar reference kernels: the ternary codebook types IQ1_S and IQ1_M.
#pragma once

#include <cstdint>

namespace lq::ref {

// imatrix: one importance weight per column (n_per_row values). IQ1_S requires it
// (Errc::imatrix_error when nullptr); IQ1_M falls back to magnitude-based weights.
void quantize_iq1_s(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_iq1_m(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);

void dequantize_iq1_s(const void* src, float* dst, int64_t n);
void dequantize_iq1_m(const void* src, float* dst, int64_t n);

float dot_iq1_s(int64_t n, const void* x, const void* y);  // y: Q8_K
float dot_iq1_m(int64_t n, const void* x, const void* y);  // y: Q8_K

}  // namespace lq::ref
