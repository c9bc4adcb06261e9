// IQ4_NL and IQ4_XS. The scale search (iq4_search.hpp) replaces a fixed grid of inverse scales
// by candidates for both orientations of the largest value plus Lloyd's iteration; IQ4_XS then
// chooses the super-block scale among a few candidates and each 6-bit sub-block scale among the
// neighbours of its rounded value, re-picking every level against the stored scales.
#include "types/ref/iq4.hpp"

#include "core/half.hpp"
#include "types/ref/block_sums.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/iq4_search.hpp"


namespace lq::ref {

void quantize_iq4_nl(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  iq4::quantize_nl_rows<iq4::RefOps>(src, dst, nrows, n_per_row, imatrix);
}

void quantize_iq4_xs(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  iq4::quantize_xs_rows<iq4::RefOps>(src, dst, nrows, n_per_row, imatrix);
}

namespace {

// The 32 values of 16 bytes (low nibbles first) times scale d.
void decode_nibbles(const uint8_t* qs, float d, float* y) {
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(iq4::kValues[qs[j] & 15]);
    y[j + 16] = d * static_cast<float>(iq4::kValues[qs[j] >> 4]);
  }
}

int dot_nibbles(const uint8_t* qs, const int8_t* q8) {
  int acc = 0;
  for (int j = 0; j < 16; ++j) acc += iq4::kValues[qs[j] & 15] * q8[j] + iq4::kValues[qs[j] >> 4] * q8[j + 16];
  return acc;
}

// IQ4_XS sub-block ib's 6-bit scale, less 32.
int xs_scale(const block_iq4_xs& b, int ib) {
  return (((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | (((b.scales_h >> (2 * ib)) & 3) << 4)) - 32;
}

}  // namespace

void dequantize_iq4_nl(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_iq4_nl*>(src);
  for (int64_t i = 0; i < n / QK4_NL; ++i) decode_nibbles(x[i].qs, fp16_to_f32(x[i].d), dst + 32 * i);
}

void dequantize_iq4_xs(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_iq4_xs*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < 8; ++ib)
      decode_nibbles(x[i].qs + 16 * ib, d * static_cast<float>(xs_scale(x[i], ib)), dst + i * QK_K + 32 * ib);
  }
}

float dot_iq4_nl(int64_t n, const void* x, const void* y) {
  return sum_blocks<block_iq4_nl, block_q8_0, QK4_NL>(n, x, y, [](const block_iq4_nl& b, const block_q8_0& a) {
    return static_cast<float>(dot_nibbles(b.qs, a.qs)) * (fp16_to_f32(b.d) * fp16_to_f32(a.d));
  });
}

float dot_iq4_xs(int64_t n, const void* x, const void* y) {
  return sum_blocks<block_iq4_xs, block_q8_K, QK_K>(n, x, y, [](const block_iq4_xs& b, const block_q8_K& a) {
    int acc = 0;
    for (int ib = 0; ib < 8; ++ib) acc += xs_scale(b, ib) * dot_nibbles(b.qs + 16 * ib, a.qs + 32 * ib);
    return static_cast<float>(acc) * (fp16_to_f32(b.d) * a.d);
  });
}

}  // namespace lq::ref
