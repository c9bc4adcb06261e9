// Q4_0 on CUDA: dequantize.
#include "common.cuh"
#include "ops.cuh"

namespace lq::cuda {
namespace {

struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };

__global__ void k_dequantize(const BlockQ4_0* x, float* y, int64_t nb) {
  const int64_t ib = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (ib >= nb) return;
  const float d = detail::half_to_float(x[ib].d);
  for (int j = 0; j < 16; ++j) {
    y[ib * 32 + j] = ((x[ib].qs[j] & 0x0F) - 8) * d;
    y[ib * 32 + j + 16] = ((x[ib].qs[j] >> 4) - 8) * d;
  }
}

}  // namespace

int ops::dequantize_q4_0(const void* src, float* dst, int64_t n) {
  const int64_t nb = n / 32;
  detail::DeviceBuffer<BlockQ4_0> dx(nb);
  LQ_CUDA_TRY(dx.status);
  detail::DeviceBuffer<float> dy(n);
  LQ_CUDA_TRY(dy.status);
  LQ_CUDA_TRY(cudaMemcpy(dx.p, src, nb * sizeof(BlockQ4_0), cudaMemcpyHostToDevice));
  k_dequantize<<<detail::grid_for(nb), detail::kThreads>>>(dx.p, dy.p, nb);
  LQ_CUDA_TRY(cudaGetLastError());
  LQ_CUDA_TRY(cudaMemcpy(dst, dy.p, n * sizeof(float), cudaMemcpyDeviceToHost));
  return 0;
}

}  // namespace lq::cuda
