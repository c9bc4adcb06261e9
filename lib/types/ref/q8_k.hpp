// Scalar reference kernels: Q8_K, the 8-bit activation format the k-quant and i-quant dot
// products run against (never stored in files).
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::ref {

QuantizeKernel quantize_q8_k;
DequantizeKernel dequantize_q8_k;

}  // namespace lq::ref
