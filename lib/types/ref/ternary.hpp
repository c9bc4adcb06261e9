// Scalar reference kernels: ternary types TQ1_0 and TQ2_0 (values in {-d, 0, +d} per 256 values).
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::ref {

QuantizeKernel quantize_tq1_0, quantize_tq2_0;
DequantizeKernel dequantize_tq1_0, dequantize_tq2_0;
DotKernel dot_tq1_0, dot_tq2_0;

}  // namespace lq::ref
