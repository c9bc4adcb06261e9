// The CPU back-end's kernel entry points (run-time dispatched) and their KernelSet per type.
// An empty slot means the scalar reference from the type table is used.
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::cpu {

void dequantize_bf16(const void* src, float* dst, int64_t n);
float dot_f32(int64_t n, const void* x, const void* y);
void quantize_q8_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
float dot_q8_0(int64_t n, const void* x, const void* y);
float dot_q4_0(int64_t n, const void* x, const void* y);
float dot_q4_1(int64_t n, const void* x, const void* y);
float dot_q5_0(int64_t n, const void* x, const void* y);
float dot_q5_1(int64_t n, const void* x, const void* y);

constexpr KernelSet kernels_f32() { return {nullptr, nullptr, dot_f32}; }
constexpr KernelSet kernels_f16() { return {}; }
constexpr KernelSet kernels_bf16() { return {nullptr, dequantize_bf16, nullptr}; }
constexpr KernelSet kernels_q4_0() { return {nullptr, nullptr, dot_q4_0}; }
constexpr KernelSet kernels_q4_1() { return {nullptr, nullptr, dot_q4_1}; }
constexpr KernelSet kernels_q5_0() { return {nullptr, nullptr, dot_q5_0}; }
constexpr KernelSet kernels_q5_1() { return {nullptr, nullptr, dot_q5_1}; }
constexpr KernelSet kernels_q8_0() { return {quantize_q8_0, nullptr, dot_q8_0}; }

}  // namespace lq::cpu
