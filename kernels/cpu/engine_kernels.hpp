// Run-time dispatched entry points of the inference engine's CPU kernels (matmul.hpp, qgemm.hpp,
// amx.cpp). Which type uses which of them is the CPU back-end's row table (rows.hpp), not here.
#pragma once

#include "matmul.hpp"
#include "qgemm.hpp"

#include <cstddef>
#include <cstdint>

namespace lq::cpu {

/// C[m x n] (+)= A[m x k] * B[n x k]^T with B rows in F32, F16 or BF16 (see GemmArgs).
void gemm_nt(const GemmArgs& g);
/// 4 x 4 dots of weight rows (Q8_0, Q4_0, Q5_0; `ws` bytes apart) with Q8_0 activation rows
/// (`xs` bytes apart): y[t * ldy + r] for r, t < 4.
using TileFn = void (*)(int64_t k, const void* w, size_t ws, const void* x, size_t xs, float* y, int64_t ldy);
void tile_q8_0(int64_t k, const void* w, size_t ws, const void* x, size_t xs, float* y, int64_t ldy);
void tile_q4_0(int64_t k, const void* w, size_t ws, const void* x, size_t xs, float* y, int64_t ldy);
void tile_q5_0(int64_t k, const void* w, size_t ws, const void* x, size_t xs, float* y, int64_t ldy);
/// Record layout of activations for the panel kernels: k values (a multiple of `block`, the
/// activation type's block: 32 for Q8_0, 256 for Q8_K); bf16_act_layout for GemmBf16.
QActLayout qact_layout(int64_t k, int block);
QActLayout bf16_act_layout(int64_t k);
/// Panel GEMM of one weight type against activation records (qgemm.hpp).
using QGemmFn = void (*)(const QGemmArgs& args);
void qgemm_q4_0(const QGemmArgs& args);
void qgemm_q5_0(const QGemmArgs& args);
void qgemm_q8_0(const QGemmArgs& args);
void qgemm_q2_k(const QGemmArgs& args);
void qgemm_q3_k(const QGemmArgs& args);
void qgemm_q4_k(const QGemmArgs& args);
void qgemm_q5_k(const QGemmArgs& args);
void qgemm_q6_k(const QGemmArgs& args);
void gemm_bf16(const QGemmArgs& args);
/// W8 weights against i8_token activation records (int8_gemm.hpp): int32 sums, one float scale
/// per weight row and per token.
void gemm_w8(const QGemmArgs& args);
QActLayout i8_token_act_layout(int64_t k);
void quantize_act_i8_token(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst);
/// GemmBf16 on Intel AMX tiles (amx.cpp), where has_amx_bf16(): the CPU has AMX-BF16 and the
/// OS granted this process the tile state.
void gemm_bf16_amx(const QGemmArgs& args);
bool has_amx_bf16() noexcept;
/// BF16 weights times float activations on AMX: records from quantize_act_bf16x3 (each value as
/// three bf16 parts summing to it exactly, bf16x3_act_layout), k a multiple of 32.
void gemm_bf16x3_amx(const QGemmArgs& args);
void quantize_act_bf16x3(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst);
QActLayout bf16x3_act_layout(int64_t k);
/// Panels of 16 weight rows that the AMX kernels pack at once.
inline constexpr int kAmxGroup = 4;
/// m float rows (lay.k values each) -> m activation records, lay.bytes apart.
using QuantizeActFn = void (*)(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst);
void quantize_act_q8_0(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst);
void quantize_act_q8_k(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst);
void quantize_act_bf16(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst);
/// In place: x = softmax(scale * x) over n values.
void softmax_row(int64_t n, float* x, float scale);
/// out = silu(gate) * up over n values.
void silu_mul(int64_t n, const float* gate, const float* up, float* out);
/// out = gelu_tanh(gate) * up over n values.
void gelu_tanh_mul(int64_t n, const float* gate, const float* up, float* out);
/// In place: x = cap * tanh(scale * x / cap) over n values.
void soft_cap(int64_t n, float* x, float scale, float cap);
/// A row's max (its first index in *argmax) and sum exp(x - max) in double (EngineOps::sum_exp_row).
double sum_exp_row(int64_t n, const float* x, float* max, int64_t* argmax);
/// One position's KL divergence from two rows of logits (EngineOps::kld_row).
double kld_row(int64_t n, const float* r, const float* m, float rmax, float rls, double k);
/// acc[i] += x[r * ldx + i]^2 (in double) for i < n, over rows r = 0 .. rows - 1 in order.
void add_squares(int64_t n, const float* x, int64_t ldx, int64_t rows, double* acc);
/// y = x / sqrt(mean(x^2) + eps) * g over d values; returns the scale 1 / sqrt(mean(x^2) + eps).
float rms_norm_row(int64_t d, const float* x, const float* g, float eps, float* y);
/// y[i] = x[i] rounded to the nearest binary16 (ties to even), as a float, for i < n; y may be x.
void round_half(int64_t n, const float* x, float* y);
/// d[i] = s (q - z) - x[i], q = clamp(round_half_even(clamp(x[i], lo, hi) / s) + z, 0, maxq), i < n (lo <= hi).
void grid_error(int64_t n, const float* x, float lo, float hi, float s, float z, float maxq, float* d);
/// Number of NaN or Inf values in x[0..n) (dispatch.cpp).
int64_t count_non_finite(const float* x, int64_t n);

}  // namespace lq::cpu
