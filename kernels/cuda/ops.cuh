// Entry points of the CUDA kernels (C++17, no liblq headers: nvcc compiles these TUs).
// Each returns a cudaError_t status as int; cuda_backend.cpp turns failures into lq::Error.
// Variants: one TU per quant type (q8_0.cu, q4_0.cu); one thread per 32-value block.
#pragma once

#include <cstdint>

namespace lq::cuda::ops {

int dequantize_q8_0(const void* src, float* dst, int64_t n);
int quantize_q8_0(const float* src, void* dst, int64_t n);
int dequantize_q4_0(const void* src, float* dst, int64_t n);

}  // namespace lq::cuda::ops
