// Scalar reference kernels: the 2-bit codebook types IQ2_XXS, IQ2_XS and IQ2_S.
#pragma once

#include <cstdint>

namespace lq::ref {

// imatrix: one importance weight per column (n_per_row values). IQ2_XXS and IQ2_XS require it
// (Errc::imatrix_error when nullptr); IQ2_S falls back to magnitude-based weights.
void quantize_iq2_xxs(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_iq2_xs(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_iq2_s(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);

void dequantize_iq2_xxs(const void* src, float* dst, int64_t n);
void dequantize_iq2_xs(const void* src, float* dst, int64_t n);
void dequantize_iq2_s(const void* src, float* dst, int64_t n);

float dot_iq2_xxs(int64_t n, const void* x, const void* y);  // y: Q8_K
float dot_iq2_xs(int64_t n, const void* x, const void* y);   // y: Q8_K
float dot_iq2_s(int64_t n, const void* x, const void* y);    // y: Q8_K

}  // namespace lq::ref
