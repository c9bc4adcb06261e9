// Q8_0 on CUDA: dequantize and quantize (byte-identical to the scalar reference: absmax/127 with
// IEEE division, round half away from zero, fp16 scale rounded to nearest even).
#include "common.cuh"
#include "ops.cuh"

namespace lq::cuda {
namespace {

struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };

__global__ void k_dequantize(const BlockQ8_0* x, float* y, int64_t nb) {
  const int64_t ib = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (ib >= nb) return;
  const float d = detail::half_to_float(x[ib].d);
  for (int j = 0; j < 32; ++j) y[ib * 32 + j] = x[ib].qs[j] * d;
}

__global__ void k_quantize(const float* x, BlockQ8_0* y, int64_t nb) {
  const int64_t ib = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (ib >= nb) return;
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
  const int64_t nb = n / 32;
  detail::DeviceBuffer<BlockQ8_0> dx(nb);
  LQ_CUDA_TRY(dx.status);
  detail::DeviceBuffer<float> dy(n);
  LQ_CUDA_TRY(dy.status);
  LQ_CUDA_TRY(cudaMemcpy(dx.p, src, nb * sizeof(BlockQ8_0), cudaMemcpyHostToDevice));
  k_dequantize<<<detail::grid_for(nb), detail::kThreads>>>(dx.p, dy.p, nb);
  LQ_CUDA_TRY(cudaGetLastError());
  LQ_CUDA_TRY(cudaMemcpy(dst, dy.p, n * sizeof(float), cudaMemcpyDeviceToHost));
  return 0;
}

int ops::quantize_q8_0(const float* src, void* dst, int64_t n) {
  const int64_t nb = n / 32;
  detail::DeviceBuffer<float> dx(n);
  LQ_CUDA_TRY(dx.status);
  detail::DeviceBuffer<BlockQ8_0> dy(nb);
  LQ_CUDA_TRY(dy.status);
  LQ_CUDA_TRY(cudaMemcpy(dx.p, src, n * sizeof(float), cudaMemcpyHostToDevice));
  k_quantize<<<detail::grid_for(nb), detail::kThreads>>>(dx.p, dy.p, nb);
  LQ_CUDA_TRY(cudaGetLastError());
  LQ_CUDA_TRY(cudaMemcpy(dst, dy.p, nb * sizeof(BlockQ8_0), cudaMemcpyDeviceToHost));
  return 0;
}

}  // namespace lq::cuda
