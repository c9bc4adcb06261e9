// The CPU back-end's quantize / dequantize / dot entry points (run-time dispatched). Which type
// uses which is the CPU back-end's row table (rows.hpp); a type without one uses the scalar
// reference from the type table.
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::cpu {

DequantizeKernel dequantize_bf16;
DotKernel dot_f32;
/// Number of NaN or Inf values in x[0..n).
int64_t count_non_finite(const float* x, int64_t n);
QuantizeKernel quantize_q8_0, quantize_q4_0, quantize_q4_1, quantize_q5_0, quantize_q5_1, quantize_q2_k,
               quantize_q3_k, quantize_q4_k, quantize_q5_k, quantize_q6_k;
DequantizeKernel dequantize_iq2_xxs, dequantize_iq2_xs, dequantize_iq2_s, dequantize_iq1_s, dequantize_iq1_m,
                 dequantize_q2_k, dequantize_q3_k, dequantize_q4_k, dequantize_q5_k, dequantize_q6_k;
DotKernel dot_iq2_xxs, dot_iq2_xs, dot_iq2_s, dot_iq1_s, dot_iq1_m, dot_q2_k, dot_q3_k, dot_q4_k, dot_q5_k,
          dot_q6_k;

QuantizeKernel quantize_iq4_nl, quantize_iq4_xs, quantize_tq1_0, quantize_tq2_0;
DequantizeKernel dequantize_iq3_xxs, dequantize_iq3_s, dequantize_iq4_nl, dequantize_iq4_xs,
                 dequantize_tq1_0, dequantize_tq2_0;
DotKernel dot_iq3_xxs, dot_iq3_s, dot_iq4_nl, dot_iq4_xs, dot_tq1_0, dot_tq2_0, dot_q8_0, dot_q4_0, dot_q4_1,
          dot_q5_0, dot_q5_1;

}  // namespace lq::cpu
