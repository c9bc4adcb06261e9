// Run-time dispatched entry points of the CPU kernels.
#include "cpu_kernels.hpp"
#include "float.hpp"
#include "legacy.hpp"

LQ_CPU_FLOAT_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_LEGACY_KERNELS(LQ_CPU_EXTERN)

namespace lq::cpu {

void dequantize_bf16(const void* src, float* dst, int64_t n) { dispatch_call<DequantBf16>(src, dst, n); }
float dot_f32(int64_t n, const void* x, const void* y) { return dispatch_call<DotF32>(n, x, y); }
void quantize_q8_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeQ8_0>(src, dst, nrows, n_per_row, imatrix);
}

}  // namespace lq::cpu
