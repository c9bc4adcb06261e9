// Shared device helpers for the CUDA kernels.
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

#define LQ_CUDA_TRY(expr)                       \
  do {                                          \
    const cudaError_t e_ = (expr);              \
    if (e_ != cudaSuccess) return static_cast<int>(e_); \
  } while (0)

}  // namespace lq::cuda::detail
