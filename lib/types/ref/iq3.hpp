// Scalar reference kernels: 3-bit grid types IQ3_XXS (256-point grid, even sign parity, 3.06 bpw)
// and IQ3_S (512-point grid, free signs, 3.44 bpw).
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::ref {

QuantizeKernel quantize_iq3_xxs, quantize_iq3_s;
DequantizeKernel dequantize_iq3_xxs, dequantize_iq3_s;
DotKernel dot_iq3_xxs, dot_iq3_s;

}  // namespace lq::ref
