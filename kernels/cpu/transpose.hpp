// 16 x n transposes of 32-bit elements, shared by the panel packers of the float GEMM
// (matmul.hpp) and of the quantized and bf16 panel kernels (qgemm.hpp).
#pragma once

#include "arch.hpp"

#include <cstdint>

#if XSIMD_WITH_AVX512BW
#include <immintrin.h>
#endif

namespace lq::cpu {

// out[g * ostride + r] = in[r * stride + g] for r < 16: 16 rows of 32-bit elements into lanes,
// n groups (ostride >= 16).
// AVX-512 transposes 16 x 16 tiles in registers (32-bit, 64-bit and 128-bit lane shuffles);
// other ISAs, and the last n % 16 groups, gather.
template <class Arch>
void transpose16(const int32_t* in, int64_t stride, int64_t n, int32_t* out, int64_t ostride = 16) {
  using I = xsimd::batch<int32_t, Arch>;
  constexpr int W = static_cast<int>(I::size);
  int64_t g = 0;
#if XSIMD_WITH_AVX512BW
  if constexpr (kAvx512<Arch>) {
    for (; g + 16 <= n; g += 16) {
      __m512i r[16], t[16];
      for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(in + i * stride + g);
      for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
      }
      // r[4q + j], 128-bit lane L: rows 4q..4q+3 of column 4L + j
      for (int q = 0; q < 16; q += 4) {
        r[q] = _mm512_unpacklo_epi64(t[q], t[q + 2]);
        r[q + 1] = _mm512_unpackhi_epi64(t[q], t[q + 2]);
        r[q + 2] = _mm512_unpacklo_epi64(t[q + 1], t[q + 3]);
        r[q + 3] = _mm512_unpackhi_epi64(t[q + 1], t[q + 3]);
      }
      for (int j = 0; j < 4; ++j) {
        const __m512i v0 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88), v1 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xDD);
        const __m512i v2 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88),
                      v3 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xDD);
        _mm512_storeu_si512(out + (g + j) * ostride, _mm512_shuffle_i32x4(v0, v2, 0x88));
        _mm512_storeu_si512(out + (g + 4 + j) * ostride, _mm512_shuffle_i32x4(v1, v3, 0x88));
        _mm512_storeu_si512(out + (g + 8 + j) * ostride, _mm512_shuffle_i32x4(v0, v2, 0xDD));
        _mm512_storeu_si512(out + (g + 12 + j) * ostride, _mm512_shuffle_i32x4(v1, v3, 0xDD));
      }
    }
  }
#endif
  if (g == n) return;
  alignas(64) int32_t lane[16];
  for (int r = 0; r < 16; ++r) lane[r] = static_cast<int32_t>(r * stride);
  I idx[16 / W];
  for (int v = 0; v < 16 / W; ++v) idx[v] = I::load_aligned(lane + v * W);
  for (; g < n; ++g)
    for (int v = 0; v < 16 / W; ++v) I::gather(in + g, idx[v]).store_unaligned(out + g * ostride + v * W);
}

}  // namespace lq::cpu
