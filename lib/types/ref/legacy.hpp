// Scalar reference kernels: legacy 32-value block types.
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::ref {

QuantizeKernel quantize_q4_0, quantize_q4_1, quantize_q5_0, quantize_q5_1, quantize_q8_0, quantize_q8_1;

DequantizeKernel dequantize_q4_0, dequantize_q4_1, dequantize_q5_0, dequantize_q5_1, dequantize_q8_0,
                 dequantize_q8_1;

DotKernel dot_q4_0, dot_q4_1, dot_q5_0, dot_q5_1, dot_q8_0;

}  // namespace lq::ref
