// The CPU back-end's kernel entry points (run-time dispatched) and their KernelSet per type.
// An empty slot means the scalar reference from the type table is used.
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::cpu {

void dequantize_bf16(const void* src, float* dst, int64_t n);
float dot_f32(int64_t n, const void* x, const void* y);
/// Number of NaN or Inf values in x[0..n).
int64_t count_non_finite(const float* x, int64_t n);
void quantize_q8_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_q4_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_q4_1(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_q5_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void quantize_q5_1(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void dequantize_iq2_xxs(const void* src, float* dst, int64_t n);
void dequantize_iq2_xs(const void* src, float* dst, int64_t n);
void dequantize_iq2_s(const void* src, float* dst, int64_t n);
void dequantize_iq1_s(const void* src, float* dst, int64_t n);
void dequantize_iq1_m(const void* src, float* dst, int64_t n);
float dot_iq2_xxs(int64_t n, const void* x, const void* y);
float dot_iq2_xs(int64_t n, const void* x, const void* y);
float dot_iq2_s(int64_t n, const void* x, const void* y);
float dot_iq1_s(int64_t n, const void* x, const void* y);
float dot_iq1_m(int64_t n, const void* x, const void* y);
void quantize_q2_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void dequantize_q2_k(const void* src, float* dst, int64_t n);
float dot_q2_k(int64_t n, const void* x, const void* y);
void quantize_q3_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void dequantize_q3_k(const void* src, float* dst, int64_t n);
float dot_q3_k(int64_t n, const void* x, const void* y);
void quantize_q4_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void dequantize_q4_k(const void* src, float* dst, int64_t n);
float dot_q4_k(int64_t n, const void* x, const void* y);
void quantize_q5_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void dequantize_q5_k(const void* src, float* dst, int64_t n);
float dot_q5_k(int64_t n, const void* x, const void* y);
void quantize_q6_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
void dequantize_q6_k(const void* src, float* dst, int64_t n);
float dot_q6_k(int64_t n, const void* x, const void* y);

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
float dot_q8_0(int64_t n, const void* x, const void* y);
float dot_q4_0(int64_t n, const void* x, const void* y);
float dot_q4_1(int64_t n, const void* x, const void* y);
float dot_q5_0(int64_t n, const void* x, const void* y);
float dot_q5_1(int64_t n, const void* x, const void* y);

constexpr KernelSet kernels_f32() { return {nullptr, nullptr, dot_f32}; }
constexpr KernelSet kernels_f16() { return {}; }
constexpr KernelSet kernels_bf16() { return {nullptr, dequantize_bf16, nullptr}; }
constexpr KernelSet kernels_q4_0() { return {quantize_q4_0, nullptr, dot_q4_0}; }
constexpr KernelSet kernels_q4_1() { return {quantize_q4_1, nullptr, dot_q4_1}; }
constexpr KernelSet kernels_q5_0() { return {quantize_q5_0, nullptr, dot_q5_0}; }
constexpr KernelSet kernels_q5_1() { return {quantize_q5_1, nullptr, dot_q5_1}; }
constexpr KernelSet kernels_q8_0() { return {quantize_q8_0, nullptr, dot_q8_0}; }
constexpr KernelSet kernels_iq2_xxs() { return {nullptr, dequantize_iq2_xxs, dot_iq2_xxs}; }
constexpr KernelSet kernels_iq2_xs() { return {nullptr, dequantize_iq2_xs, dot_iq2_xs}; }
constexpr KernelSet kernels_iq2_s() { return {nullptr, dequantize_iq2_s, dot_iq2_s}; }
constexpr KernelSet kernels_iq1_s() { return {nullptr, dequantize_iq1_s, dot_iq1_s}; }
constexpr KernelSet kernels_iq1_m() { return {nullptr, dequantize_iq1_m, dot_iq1_m}; }
constexpr KernelSet kernels_q2_k() { return {quantize_q2_k, dequantize_q2_k, dot_q2_k}; }
constexpr KernelSet kernels_q3_k() { return {quantize_q3_k, dequantize_q3_k, dot_q3_k}; }
constexpr KernelSet kernels_q4_k() { return {quantize_q4_k, dequantize_q4_k, dot_q4_k}; }
constexpr KernelSet kernels_q5_k() { return {quantize_q5_k, dequantize_q5_k, dot_q5_k}; }
constexpr KernelSet kernels_q6_k() { return {quantize_q6_k, dequantize_q6_k, dot_q6_k}; }
constexpr KernelSet kernels_iq3_xxs() { return {nullptr, dequantize_iq3_xxs, dot_iq3_xxs}; }
constexpr KernelSet kernels_iq3_s() { return {nullptr, dequantize_iq3_s, dot_iq3_s}; }
constexpr KernelSet kernels_iq4_nl() { return {quantize_iq4_nl, dequantize_iq4_nl, dot_iq4_nl}; }
constexpr KernelSet kernels_iq4_xs() { return {quantize_iq4_xs, dequantize_iq4_xs, dot_iq4_xs}; }
constexpr KernelSet kernels_tq1_0() { return {quantize_tq1_0, dequantize_tq1_0, dot_tq1_0}; }
constexpr KernelSet kernels_tq2_0() { return {quantize_tq2_0, dequantize_tq2_0, dot_tq2_0}; }

}  // namespace lq::cpu
