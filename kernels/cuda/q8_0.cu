// Q8_0 on CUDA: dequantize and quantize (byte-identical to the scalar reference: absmax/127 with
// IEEE division, round half away from zero, fp16 scale rounded to nearest even).
#include "common.cuh"
#include "ops.cuh"

namespace lq::cuda {
namespace {

struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };

__device__ void dequantize_block(const BlockQ8_0& b, float d, float* y) {
  for (int j = 0; j < 32; ++j) y[j] = b.qs[j] * d;
}

__global__ void k_quantize(const float* x, BlockQ8_0* y, int64_t nb) {
  const int64_t ib = detail::block_index(nb);
  if (ib < 0) return;
  const float* xb = x + ib * 32;
  float amax = 0.f;
  for (int j = 0; j < 32; ++j) amax = fmaxf(amax, fabsf(xb[j]));
  const float d = __fdiv_rn(amax, 127.f);
  const float id = d != 0.f ? __fdiv_rn(1.0f, d) : 0.f;
  y[ib].d = detail::float_to_half(d);
  for (int j = 0; j < 32; ++j) y[ib].qs[j] = static_cast<int8_t>(roundf(__fmul_rn(xb[j], id)));
}

}  // namespace

int ops::dequantize_q8_0(const void* src, float* dst, int64_t n) {
  return detail::run_blocks(detail::k_dequantize<BlockQ8_0>, src, n / 32, dst, n, n / 32);
}

int ops::quantize_q8_0(const float* src, void* dst, int64_t n) {
  return detail::run_blocks(k_quantize, src, n, dst, n / 32, n / 32);
}

}  // namespace lq::cuda
