// Run-time dispatched entry points of the CPU kernels.
#include "cpu_kernels.hpp"
#include "float.hpp"
#include "legacy.hpp"
#include "iq3.hpp"
#include "iq4.hpp"
#include "ternary.hpp"

LQ_CPU_FLOAT_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_LEGACY_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ3_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ4_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_TERNARY_KERNELS(LQ_CPU_EXTERN)

namespace lq::cpu {

void dequantize_bf16(const void* src, float* dst, int64_t n) { dispatch_call<DequantBf16>(src, dst, n); }
float dot_f32(int64_t n, const void* x, const void* y) { return dispatch_call<DotF32>(n, x, y); }
void quantize_q8_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeQ8_0>(src, dst, nrows, n_per_row, imatrix);
}

void quantize_iq4_nl(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeIq4Nl>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_iq4_xs(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeIq4Xs>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_tq1_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeTq1_0>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_tq2_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeTq2_0>(src, dst, nrows, n_per_row, imatrix);
}

void dequantize_iq3_xxs(const void* src, float* dst, int64_t n) { dispatch_call<DequantIq3Xxs>(src, dst, n); }
float dot_iq3_xxs(int64_t n, const void* x, const void* y) { return dispatch_call<DotIq3Xxs>(n, x, y); }
void dequantize_iq3_s(const void* src, float* dst, int64_t n) { dispatch_call<DequantIq3S>(src, dst, n); }
float dot_iq3_s(int64_t n, const void* x, const void* y) { return dispatch_call<DotIq3S>(n, x, y); }
void dequantize_iq4_nl(const void* src, float* dst, int64_t n) { dispatch_call<DequantIq4Nl>(src, dst, n); }
float dot_iq4_nl(int64_t n, const void* x, const void* y) { return dispatch_call<DotIq4Nl>(n, x, y); }
void dequantize_iq4_xs(const void* src, float* dst, int64_t n) { dispatch_call<DequantIq4Xs>(src, dst, n); }
float dot_iq4_xs(int64_t n, const void* x, const void* y) { return dispatch_call<DotIq4Xs>(n, x, y); }
void dequantize_tq1_0(const void* src, float* dst, int64_t n) { dispatch_call<DequantTq1_0>(src, dst, n); }
float dot_tq1_0(int64_t n, const void* x, const void* y) { return dispatch_call<DotTq1_0>(n, x, y); }
void dequantize_tq2_0(const void* src, float* dst, int64_t n) { dispatch_call<DequantTq2_0>(src, dst, n); }
float dot_tq2_0(int64_t n, const void* x, const void* y) { return dispatch_call<DotTq2_0>(n, x, y); }

}  // namespace lq::cpu
