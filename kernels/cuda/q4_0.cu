// Q4_0 on CUDA: dequantize.
#include "common.cuh"
#include "ops.cuh"

namespace lq::cuda {
namespace {

struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };

__device__ void dequantize_block(const BlockQ4_0& b, float d, float* y) {
  for (int j = 0; j < 16; ++j) {
    y[j] = ((b.qs[j] & 0x0F) - 8) * d;
    y[j + 16] = ((b.qs[j] >> 4) - 8) * d;
  }
}

}  // namespace

int ops::dequantize_q4_0(const void* src, float* dst, int64_t n) {
  return detail::run_blocks(detail::k_dequantize<BlockQ4_0>, src, n / 32, dst, n, n / 32);
}

}  // namespace lq::cuda
