// Scalar reference kernels: W8 and A8, int8 rows with one float scale each (compressed-tensors'
// per-channel int8 weights and per-token int8 activations). A row is its scale (4 bytes) and
// then its n int8 values; value = q * scale. Never written to GGUF.
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::ref {

/// Weights as compressed-tensors quantizes them: scale = max(max|w| / 127.5, FLT_EPSILON),
/// q = clamp(round_half_even(w / scale), -128, 127).
QuantizeKernel quantize_w8;
/// Activations per token: scale = max|x| / 127 (0 for a zero row), q = round_half_even(x / scale)
/// clamped to [-127, 127].
QuantizeKernel quantize_a8;
/// Activations with one fixed scale (static W8A8, compressed-tensors' input_scale > 0): A8 rows
/// whose header is `scale`, q = clamp(round_half_even(x / scale), -128, 127).
void quantize_a8_static(const float* src, void* dst, int64_t nrows, int64_t n, float scale);
/// One row (n = the row length): q * scale.
DequantizeKernel dequantize_i8_row;
/// float(sum of q_w * q_a in int32) * (scale_w * scale_a).
DotKernel dot_w8_a8;

}  // namespace lq::ref
