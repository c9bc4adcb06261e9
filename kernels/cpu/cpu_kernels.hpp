// The CPU back-end's kernel entry points (run-time dispatched) and their KernelSet per type.
// An empty slot means the scalar reference from the type table is used.
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::cpu {

void dequantize_bf16(const void* src, float* dst, int64_t n);
float dot_f32(int64_t n, const void* x, const void* y);
void quantize_q8_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);

void quantize_iq4_nl(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_iq4_xs(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_tq1_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_tq2_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void dequantize_iq3_xxs(const void* src, float* dst, int64_t n);
float dot_iq3_xxs(int64_t n, const void* x, const void* y);
void dequantize_iq3_s(const void* src, float* dst, int64_t n);
float dot_iq3_s(int64_t n, const void* x, const void* y);
void dequantize_iq4_nl(const void* src, float* dst, int64_t n);
float dot_iq4_nl(int64_t n, const void* x, const void* y);
void dequantize_iq4_xs(const void* src, float* dst, int64_t n);
float dot_iq4_xs(int64_t n, const void* x, const void* y);
void dequantize_tq1_0(const void* src, float* dst, int64_t n);
float dot_tq1_0(int64_t n, const void* x, const void* y);
void dequantize_tq2_0(const void* src, float* dst, int64_t n);
float dot_tq2_0(int64_t n, const void* x, const void* y);

constexpr KernelSet kernels_f32() { return {nullptr, nullptr, dot_f32}; }
constexpr KernelSet kernels_f16() { return {}; }
constexpr KernelSet kernels_bf16() { return {nullptr, dequantize_bf16, nullptr}; }
constexpr KernelSet kernels_q4_0() { return {}; }
constexpr KernelSet kernels_q4_1() { return {}; }
constexpr KernelSet kernels_q5_0() { return {}; }
constexpr KernelSet kernels_q5_1() { return {}; }
constexpr KernelSet kernels_q8_0() { return {quantize_q8_0, nullptr, nullptr}; }
constexpr KernelSet kernels_iq3_xxs() { return {nullptr, dequantize_iq3_xxs, dot_iq3_xxs}; }
constexpr KernelSet kernels_iq3_s() { return {nullptr, dequantize_iq3_s, dot_iq3_s}; }
constexpr KernelSet kernels_iq4_nl() { return {quantize_iq4_nl, dequantize_iq4_nl, dot_iq4_nl}; }
constexpr KernelSet kernels_iq4_xs() { return {quantize_iq4_xs, dequantize_iq4_xs, dot_iq4_xs}; }
constexpr KernelSet kernels_tq1_0() { return {quantize_tq1_0, dequantize_tq1_0, dot_tq1_0}; }
constexpr KernelSet kernels_tq2_0() { return {quantize_tq2_0, dequantize_tq2_0, dot_tq2_0}; }

}  // namespace lq::cpu
