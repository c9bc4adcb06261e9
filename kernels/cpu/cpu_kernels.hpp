// The CPU back-end's quantize / dequantize / dot entry points (run-time dispatched). Which type
// uses which is the CPU back-end's row table (rows.hpp); a type without one uses the scalar
// reference from the type table.
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

}  // namespace lq::cpu
