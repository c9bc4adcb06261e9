// Run-time dispatched entry points of the CPU kernels.
#include "cpu_kernels.hpp"
#include "float.hpp"
#include "iq1.hpp"
#include "iq2.hpp"
#include "iq3.hpp"
#include "iq4.hpp"
#include "kquants.hpp"
#include "legacy.hpp"
#include "ternary.hpp"

LQ_CPU_FLOAT_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_LEGACY_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ1_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ2_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_KQUANT_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ3_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ4_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_TERNARY_KERNELS(LQ_CPU_EXTERN)

namespace lq::cpu {

void dequantize_bf16(const void* src, float* dst, int64_t n) { dispatch_call<DequantBf16>(src, dst, n); }
float dot_f32(int64_t n, const void* x, const void* y) { return dispatch_call<DotF32>(n, x, y); }
int64_t count_non_finite(const float* x, int64_t n) { return dispatch_call<CountNonFinite>(x, n); }
void quantize_q8_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeQ8_0>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q4_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeQ4_0>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q4_1(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeQ4_1>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q5_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeQ5_0>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q5_1(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeQ5_1>(src, dst, nrows, n_per_row, imatrix);
}

void dequantize_iq2_xxs(const void* src, float* dst, int64_t n) { dispatch_call<DequantIq2Xxs>(src, dst, n); }
void dequantize_iq2_xs(const void* src, float* dst, int64_t n) { dispatch_call<DequantIq2Xs>(src, dst, n); }
void dequantize_iq2_s(const void* src, float* dst, int64_t n) { dispatch_call<DequantIq2S>(src, dst, n); }
void dequantize_iq1_s(const void* src, float* dst, int64_t n) { dispatch_call<DequantIq1S>(src, dst, n); }
void dequantize_iq1_m(const void* src, float* dst, int64_t n) { dispatch_call<DequantIq1M>(src, dst, n); }
float dot_iq2_xxs(int64_t n, const void* x, const void* y) { return dispatch_call<DotIq2XxsQ8K>(n, x, y); }
float dot_iq2_xs(int64_t n, const void* x, const void* y) { return dispatch_call<DotIq2XsQ8K>(n, x, y); }
float dot_iq2_s(int64_t n, const void* x, const void* y) { return dispatch_call<DotIq2SQ8K>(n, x, y); }
float dot_iq1_s(int64_t n, const void* x, const void* y) { return dispatch_call<DotIq1SQ8K>(n, x, y); }
float dot_iq1_m(int64_t n, const void* x, const void* y) { return dispatch_call<DotIq1MQ8K>(n, x, y); }
void quantize_q2_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeQ2K>(src, dst, nrows, n_per_row, imatrix);
}
void dequantize_q2_k(const void* src, float* dst, int64_t n) { dispatch_call<DequantQ2K>(src, dst, n); }
float dot_q2_k(int64_t n, const void* x, const void* y) { return dispatch_call<DotQ2K>(n, x, y); }
void quantize_q3_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeQ3K>(src, dst, nrows, n_per_row, imatrix);
}
void dequantize_q3_k(const void* src, float* dst, int64_t n) { dispatch_call<DequantQ3K>(src, dst, n); }
float dot_q3_k(int64_t n, const void* x, const void* y) { return dispatch_call<DotQ3K>(n, x, y); }
void quantize_q4_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeQ4K>(src, dst, nrows, n_per_row, imatrix);
}
void dequantize_q4_k(const void* src, float* dst, int64_t n) { dispatch_call<DequantQ4K>(src, dst, n); }
float dot_q4_k(int64_t n, const void* x, const void* y) { return dispatch_call<DotQ4K>(n, x, y); }
void quantize_q5_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeQ5K>(src, dst, nrows, n_per_row, imatrix);
}
void dequantize_q5_k(const void* src, float* dst, int64_t n) { dispatch_call<DequantQ5K>(src, dst, n); }
float dot_q5_k(int64_t n, const void* x, const void* y) { return dispatch_call<DotQ5K>(n, x, y); }
void quantize_q6_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeQ6K>(src, dst, nrows, n_per_row, imatrix);
}
void dequantize_q6_k(const void* src, float* dst, int64_t n) { dispatch_call<DequantQ6K>(src, dst, n); }
float dot_q6_k(int64_t n, const void* x, const void* y) { return dispatch_call<DotQ6K>(n, x, y); }

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
