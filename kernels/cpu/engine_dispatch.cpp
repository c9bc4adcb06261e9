// Run-time dispatched entry points of the legacy dot kernels (legacy_dot.hpp) and the inference
// engine's kernels (matmul.hpp).
#include "cpu_kernels.hpp"
#include "engine_kernels.hpp"
#include "legacy_dot.hpp"
#include "matmul.hpp"

LQ_CPU_LEGACY_DOT_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_MATMUL_KERNELS(LQ_CPU_EXTERN)

namespace lq::cpu {

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
