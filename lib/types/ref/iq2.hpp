// Scalar reference kernels: the 2-bit codebook types IQ2_XXS, IQ2_XS and IQ2_S.
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::ref {

// imatrix: one importance weight per column (n_per_row values). IQ2_XXS and IQ2_XS require it
// (Errc::imatrix_error when nullptr); IQ2_S falls back to magnitude-based weights.
QuantizeKernel quantize_iq2_xxs, quantize_iq2_xs, quantize_iq2_s;

DequantizeKernel dequantize_iq2_xxs, dequantize_iq2_xs, dequantize_iq2_s;

DotKernel dot_iq2_xxs, dot_iq2_xs, dot_iq2_s;

}  // namespace lq::ref
