// Scalar reference kernels: 4-bit non-linear types IQ4_NL (32-value blocks) and IQ4_XS
// (256-value super-blocks with 6-bit sub-block scales).
#pragma once

#include <cstdint>

namespace lq::ref {

void quantize_iq4_nl(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_iq4_xs(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void dequantize_iq4_nl(const void* src, float* dst, int64_t n);
void dequantize_iq4_xs(const void* src, float* dst, int64_t n);
float dot_iq4_nl(int64_t n, const void* x, const void* y);  // y: Q8_0
float dot_iq4_xs(int64_t n, const void* x, const void* y);  // y: Q8_K

}  // namespace lq::ref
