// Run-time dispatched entry points of the 4 x 4 tile kernels (legacy_dot.hpp) and the inference
// engine's kernels (matmul.hpp, qgemm.hpp).
#include "engine_kernels.hpp"
#include "int8_gemm.hpp"
#include "legacy_dot.hpp"
#include "matmul.hpp"
#include "qgemm.hpp"

LQ_CPU_LEGACY_DOT_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_MATMUL_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_QGEMM_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_INT8_KERNELS(LQ_CPU_EXTERN)

namespace lq::cpu {

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

namespace {
size_t align64(size_t n) { return (n + 63) / 64 * 64; }
}  // namespace

QActLayout qact_layout(int64_t k, int block) {
  QActLayout l;
  l.k = k;
  l.block = block;
  const auto n = static_cast<size_t>(k);
  size_t o = 0;
  l.qs = o, o += align64(n);
  l.d = o, o += align64(n / static_cast<size_t>(block) * 4);
  l.s16 = o, o += align64(n / 16 * 4);
  l.s32 = o, o += align64(n / 32 * 4);
  l.p16 = o, o += align64(n / 32 * 4);
  l.p32 = o, o += align64(n / 64 * 4);
  l.bytes = o;
  return l;
}

QActLayout bf16x3_act_layout(int64_t k) {
  QActLayout l;
  l.k = k;
  l.block = 3;
  l.bytes = align64(static_cast<size_t>(3 * k * 2));
  return l;
}

QActLayout bf16_act_layout(int64_t k) {
  QActLayout l;
  l.k = k;
  l.block = 1;
  l.bytes = align64(static_cast<size_t>((k + 1) / 2 * 4));
  return l;
}

void qgemm_q4_0(const QGemmArgs& a) { dispatch_call<QGemmQ4_0>(a); }
void qgemm_q5_0(const QGemmArgs& a) { dispatch_call<QGemmQ5_0>(a); }
void qgemm_q8_0(const QGemmArgs& a) { dispatch_call<QGemmQ8_0>(a); }
void qgemm_q2_k(const QGemmArgs& a) { dispatch_call<QGemmQ2K>(a); }
void qgemm_q3_k(const QGemmArgs& a) { dispatch_call<QGemmQ3K>(a); }
void qgemm_q4_k(const QGemmArgs& a) { dispatch_call<QGemmQ4K>(a); }
void qgemm_q5_k(const QGemmArgs& a) { dispatch_call<QGemmQ5K>(a); }
void qgemm_q6_k(const QGemmArgs& a) { dispatch_call<QGemmQ6K>(a); }
void gemm_bf16(const QGemmArgs& a) { dispatch_call<GemmBf16>(a); }
void gemm_w8(const QGemmArgs& a) { dispatch_call<GemmW8>(a); }
QActLayout i8_token_act_layout(int64_t k) { return i8_token_layout(k); }
void quantize_act_i8_token(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst) {
  dispatch_call<QuantizeActI8Token>(x, m, lay, dst);
}

void quantize_act_q8_0(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst) {
  dispatch_call<QuantizeActQ8_0>(x, m, lay, dst);
}
void quantize_act_q8_k(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst) {
  dispatch_call<QuantizeActQ8K>(x, m, lay, dst);
}
void quantize_act_bf16(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst) {
  dispatch_call<QuantizeActBf16>(x, m, lay, dst);
}
void softmax_row(int64_t n, float* x, float scale) { dispatch_call<SoftmaxRow>(n, x, scale); }
void silu_mul(int64_t n, const float* gate, const float* up, float* out) { dispatch_call<SiluMul>(n, gate, up, out); }
void gelu_tanh_mul(int64_t n, const float* gate, const float* up, float* out) {
  dispatch_call<GeluTanhMul>(n, gate, up, out);
}
void soft_cap(int64_t n, float* x, float scale, float cap) { dispatch_call<SoftCapRow>(n, x, scale, cap); }
double sum_exp_row(int64_t n, const float* x, float* max, int64_t* argmax) {
  return dispatch_call<SumExpRow>(n, x, max, argmax);
}
double kld_row(int64_t n, const float* r, const float* m, float rmax, float rls, double k) {
  return dispatch_call<KldRow>(n, r, m, rmax, rls, k);
}
void round_half(int64_t n, const float* x, float* y) { dispatch_call<RoundHalf>(n, x, y); }
void grid_error(int64_t n, const float* x, float lo, float hi, float s, float z, float maxq, float* d) {
  dispatch_call<GridError>(n, x, lo, hi, s, z, maxq, d);
}
void add_squares(int64_t n, const float* x, int64_t ldx, int64_t rows, double* acc) {
  dispatch_call<AddSquares>(n, x, ldx, rows, acc);
}
float rms_norm_row(int64_t d, const float* x, const float* g, float eps, float* y) {
  return dispatch_call<RmsNormRow>(d, x, g, eps, y);
}

}  // namespace lq::cpu
