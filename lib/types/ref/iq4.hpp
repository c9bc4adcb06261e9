// Scalar reference kernels: 4-bit non-linear types IQ4_NL (32-value blocks) and IQ4_XS
// (256-value super-blocks with 6-bit sub-block scales).
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::ref {

QuantizeKernel quantize_iq4_nl, quantize_iq4_xs;
DequantizeKernel dequantize_iq4_nl, dequantize_iq4_xs;
DotKernel dot_iq4_nl, dot_iq4_xs;

}  // namespace lq::ref
