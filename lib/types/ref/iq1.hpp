// Scalar reference kernels: the ternary codebook types IQ1_S and IQ1_M.
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::ref {

// imatrix: one importance weight per column (n_per_row values). IQ1_S requires it
// (Errc::imatrix_error when nullptr); IQ1_M falls back to magnitude-based weights.
QuantizeKernel quantize_iq1_s, quantize_iq1_m;

DequantizeKernel dequantize_iq1_s, dequantize_iq1_m;

DotKernel dot_iq1_s, dot_iq1_m;

}  // namespace lq::ref
