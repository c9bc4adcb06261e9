// Shared helpers of the CUDA kernels: device conversions and indexing, device buffers and the
// host side of a one-thread-per-block launch.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace lq::cuda::detail {

constexpr int kThreads = 256;

__device__ inline float half_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ inline uint16_t float_to_half(float f) { return __half_as_ushort(__float2half_rn(f)); }

// A device allocation freed on scope exit; `status` holds the allocation result.
template <typename T>
struct DeviceBuffer {
  T* p = nullptr;
  cudaError_t status;
  explicit DeviceBuffer(size_t n) { status = cudaMalloc(&p, n * sizeof(T) + 1); }
  ~DeviceBuffer() { if (p) cudaFree(p); }
};

inline unsigned grid_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

// The index of this thread's block among nb (one thread per block), or -1 past the end.
__device__ inline int64_t block_index(int64_t nb) {
  const int64_t ib = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  return ib < nb ? ib : -1;
}

// One thread per 32-value block: dequantize_block(x[ib], d, y + 32 ib), d the block's fp16 scale;
// each type's TU defines dequantize_block for its block (found by argument-dependent lookup).
template <typename Block>
__global__ void k_dequantize(const Block* x, float* y, int64_t nb) {
  const int64_t ib = block_index(nb);
  if (ib < 0) return;
  dequantize_block(x[ib], half_to_float(x[ib].d), y + ib * 32);
}

#define LQ_CUDA_TRY(expr)                       \
  do {                                          \
    const cudaError_t e_ = (expr);              \
    if (e_ != cudaSuccess) return static_cast<int>(e_); \
  } while (0)

// Host side of a one-thread-per-block kernel: copies n_in In values to the device, runs
// kernel(in, out, nb), copies n_out Out values back. Returns the first failing status (0: none).
template <typename In, typename Out>
int run_blocks(void (*kernel)(const In*, Out*, int64_t), const void* src, int64_t n_in, void* dst, int64_t n_out,
               int64_t nb) {
  DeviceBuffer<In> dx(n_in);
  LQ_CUDA_TRY(dx.status);
  DeviceBuffer<Out> dy(n_out);
  LQ_CUDA_TRY(dy.status);
  LQ_CUDA_TRY(cudaMemcpy(dx.p, src, n_in * sizeof(In), cudaMemcpyHostToDevice));
  kernel<<<grid_for(nb), kThreads>>>(dx.p, dy.p, nb);
  LQ_CUDA_TRY(cudaGetLastError());
  LQ_CUDA_TRY(cudaMemcpy(dst, dy.p, n_out * sizeof(Out), cudaMemcpyDeviceToHost));
  return 0;
}

}  // namespace lq::cuda::detail
