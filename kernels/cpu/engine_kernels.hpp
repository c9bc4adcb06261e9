// Run-time dispatched entry points of the inference engine's CPU kernels (matmul.hpp).
#pragma once

#include "matmul.hpp"

#include <cstdint>

namespace lq::cpu {

/// C[m x n] (+)= A[m x k] * B[n x k]^T with B rows in F32, F16 or BF16 (see GemmArgs).
void gemm_nt(const GemmArgs& g);
/// In place: x = softmax(scale * x) over n values.
void softmax_row(int64_t n, float* x, float scale);
/// out = silu(gate) * up over n values.
void silu_mul(int64_t n, const float* gate, const float* up, float* out);

}  // namespace lq::cpu
