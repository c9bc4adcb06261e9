// CPU kernels: legacy 32-value block types.
#pragma once

#include "arch.hpp"

#include "half.hpp"
#include "ref/blocks.hpp"

#include <cmath>
#include <cstdint>

namespace lq::cpu {

// Q8_0 quantizer, byte-identical to ref::quantize_q8_0 (same operations in the same order:
// absmax, d = amax / 127, id = 1 / d, round half away from zero).
template <class Arch>
struct QuantizeQ8_0 {
  static void run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
};

template <class Arch>
void QuantizeQ8_0<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float*) {
    using B = xsimd::batch<float, Arch>;
    constexpr int W = static_cast<int>(B::size);
    auto* y = static_cast<ref::block_q8_0*>(dst);
    const int64_t nb = nrows * n_per_row / 32;
    for (int64_t ib = 0; ib < nb; ++ib) {
      const float* x = src + ib * 32;
      B vmax(0.f);
      for (int j = 0; j < 32; j += W) vmax = xsimd::max(vmax, xsimd::abs(B::load_unaligned(x + j)));
      const float amax = hmax(vmax);
      const float d = amax / 127.f;
      const float id = d ? 1.0f / d : 0.0f;
      y[ib].d = f32_to_fp16(d);
      const B vid(id);
      alignas(64) float tmp[32];
      for (int j = 0; j < 32; j += W) xsimd::round(B::load_unaligned(x + j) * vid).store_aligned(tmp + j);
      for (int j = 0; j < 32; ++j) y[ib].qs[j] = static_cast<int8_t>(tmp[j]);
    }
}

#define LQ_CPU_LEGACY_KERNELS(X) X(QuantizeQ8_0)

}  // namespace lq::cpu
