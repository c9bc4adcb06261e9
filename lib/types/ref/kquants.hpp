// Scalar reference kernels: k-quants (256-value super-blocks with quantized sub-block scales).
// Quantizers take optional per-column importance weights (n_per_row values, the same for every
// row) and minimise sum_j w_j (x_j - xhat_j)^2 (w_j = 1 without them). Dot products run against
// Q8_K activations.
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::ref {

QuantizeKernel quantize_q2_k, quantize_q3_k, quantize_q4_k, quantize_q5_k, quantize_q6_k;

DequantizeKernel dequantize_q2_k, dequantize_q3_k, dequantize_q4_k, dequantize_q5_k, dequantize_q6_k;

DotKernel dot_q2_k, dot_q3_k, dot_q4_k, dot_q5_k, dot_q6_k;

/// Q6_K minimising sum x_j^2 (x_j - xhat_j)^2: llama.cpp's Q6_K objective without an imatrix,
/// used for the tensors an importance matrix has no entry for (`imatrix` is ignored).
QuantizeKernel quantize_q6_k_by_square;

}  // namespace lq::ref
