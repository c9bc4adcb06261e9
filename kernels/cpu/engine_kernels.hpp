// Run-time dispatched entry points of the inference engine's CPU kernels (matmul.hpp).
#pragma once

#include "matmul.hpp"

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
/// In place: x = softmax(scale * x) over n values.
void softmax_row(int64_t n, float* x, float scale);
/// out = silu(gate) * up over n values.
void silu_mul(int64_t n, const float* gate, const float* up, float* out);

}  // namespace lq::cpu
