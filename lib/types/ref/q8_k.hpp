// Scalar reference kernels: Q8_K, the 8-bit activation format the k-quant and i-quant dot
// products run against (never stored in files).
#pragma once

#include <cstdint>

namespace lq::ref {

void quantize_q8_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void dequantize_q8_k(const void* src, float* dst, int64_t n);

}  // namespace lq::ref
