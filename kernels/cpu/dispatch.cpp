// Run-time dispatched entry points of the CPU kernels.
#include "cpu_kernels.hpp"
#include "float.hpp"
#include "legacy.hpp"
#include "matmul.hpp"
#include "engine_kernels.hpp"

LQ_CPU_FLOAT_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_LEGACY_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_MATMUL_KERNELS(LQ_CPU_EXTERN)

namespace lq::cpu {

void dequantize_bf16(const void* src, float* dst, int64_t n) { dispatch_call<DequantBf16>(src, dst, n); }
float dot_f32(int64_t n, const void* x, const void* y) { return dispatch_call<DotF32>(n, x, y); }
void quantize_q8_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  dispatch_call<QuantizeQ8_0>(src, dst, nrows, n_per_row, imatrix);
}
float dot_q8_0(int64_t n, const void* x, const void* y) { return dispatch_call<DotQ8_0>(n, x, y); }
float dot_q4_0(int64_t n, const void* x, const void* y) { return dispatch_call<DotQ4_0>(n, x, y); }
float dot_q4_1(int64_t n, const void* x, const void* y) { return dispatch_call<DotQ4_1>(n, x, y); }
float dot_q5_0(int64_t n, const void* x, const void* y) { return dispatch_call<DotQ5_0>(n, x, y); }
float dot_q5_1(int64_t n, const void* x, const void* y) { return dispatch_call<DotQ5_1>(n, x, y); }
void tile_q8_0(int64_t k, const void* w, size_t ws, const void* x, size_t xs, float* y, int64_t ldy) {
  dispatch_call<TileQ8_0>(k, w, ws, x, xs, y, ldy);
}
void tile_q4_0(int64_t k, const void* w, size_t ws, const void* x, size_t xs, float* y, int64_t ldy) {
  dispatch_call<TileQ4_0>(k, w, ws, x, xs, y, ldy);
}
void tile_q5_0(int64_t k, const void* w, size_t ws, const void* x, size_t xs, float* y, int64_t ldy) {
  dispatch_call<TileQ5_0>(k, w, ws, x, xs, y, ldy);
}
void gemm_nt(const GemmArgs& g) { dispatch_call<GemmNT>(g); }
void softmax_row(int64_t n, float* x, float scale) { dispatch_call<SoftmaxRow>(n, x, scale); }
void silu_mul(int64_t n, const float* gate, const float* up, float* out) { dispatch_call<SiluMul>(n, gate, up, out); }

}  // namespace lq::cpu
