// Scalar reference kernels: plain float types (no blocks).
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::ref {

QuantizeKernel quantize_f32, quantize_f16, quantize_bf16;
DequantizeKernel dequantize_f32, dequantize_f16, dequantize_bf16, dequantize_f64;
DotKernel dot_f32, dot_f16, dot_bf16;

}  // namespace lq::ref
