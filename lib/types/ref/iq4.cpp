// IQ4_NL and IQ4_XS. The scale search (iq4_search.hpp) replaces a fixed grid of inverse scales
// by candidates for both orientations of the largest value plus Lloyd's iteration; IQ4_XS then
// chooses the super-block scale among a few candidates and each 6-bit sub-block scale among the
// neighbours of its rounded value, re-picking every level against the stored scales.
#include "types/ref/iq4.hpp"

#include "core/half.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/iq4_search.hpp"


namespace lq::ref {

void quantize_iq4_nl(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  iq4::quantize_nl_rows<iq4::RefOps>(src, dst, nrows, n_per_row, imatrix);
}

void quantize_iq4_xs(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  iq4::quantize_xs_rows<iq4::RefOps>(src, dst, nrows, n_per_row, imatrix);
}

void dequantize_iq4_nl(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_iq4_nl*>(src);
  for (int64_t i = 0; i < n / QK4_NL; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int j = 0; j < 16; ++j) {
      dst[i * 32 + j] = d * static_cast<float>(iq4::kValues[x[i].qs[j] & 15]);
      dst[i * 32 + j + 16] = d * static_cast<float>(iq4::kValues[x[i].qs[j] >> 4]);
    }
  }
}

void dequantize_iq4_xs(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_iq4_xs*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
      const float dl = d * static_cast<float>(ls - 32);
      const uint8_t* qs = x[i].qs + 16 * ib;
      float* y = dst + i * QK_K + 32 * ib;
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * static_cast<float>(iq4::kValues[qs[j] & 15]);
        y[j + 16] = dl * static_cast<float>(iq4::kValues[qs[j] >> 4]);
      }
    }
  }
}

namespace {

int dot_nibbles(const uint8_t* qs, const int8_t* q8) {
  int acc = 0;
  for (int j = 0; j < 16; ++j) acc += iq4::kValues[qs[j] & 15] * q8[j] + iq4::kValues[qs[j] >> 4] * q8[j + 16];
  return acc;
}

}  // namespace

float dot_iq4_nl(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_iq4_nl*>(xv);
  const auto* y = static_cast<const block_q8_0*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / QK4_NL; ++i)
    s += static_cast<float>(dot_nibbles(x[i].qs, y[i].qs)) * (fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d));
  return s;
}

float dot_iq4_xs(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_iq4_xs*>(xv);
  const auto* y = static_cast<const block_q8_K*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int acc = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
      acc += (ls - 32) * dot_nibbles(x[i].qs + 16 * ib, y[i].qs + 32 * ib);
    }
    s += static_cast<float>(acc) * (fp16_to_f32(x[i].d) * y[i].d);
  }
  return s;
}

}  // namespace lq::ref
