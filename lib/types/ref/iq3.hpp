// Scalar reference kernels: 3-bit grid types IQ3_XXS (256-point grid, even sign parity, 3.06 bpw)
// and IQ3_S (512-point grid, free signs, 3.44 bpw).
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::ref {

QuantizeKernel quantize_iq3_xxs, quantize_iq3_s;
DequantizeKernel dequantize_iq3_xxs, dequantize_iq3_s;
DotKernel dot_iq3_xxs, dot_iq3_s;

/// The grid point of IQ3_XXS (`s` false) or IQ3_S (`s` true) nearest to 4 magnitudes `a`, in units
/// of the grid's bytes (value = sub-block scale x byte), by squared distance weighted by `w`:
/// each coordinate rounded to its level, and where that point is off the grid, the best of the
/// grid points closest to it (the quantizers' own search). Used by GPTQ's walk on the IQ3 grids.
int iq3_nearest_point(bool s, const float* a, const float* w);

}  // namespace lq::ref
