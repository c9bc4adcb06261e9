// Ternary types. The quantizers pick the least-squares scale (imatrix-weighted when given) by
// Lloyd's iteration on the zero threshold instead of d = absmax, which leaves most values at
// zero; values are then rounded against the stored fp16 scale.
#include "ref/ternary.hpp"

#include "half.hpp"
#include "ref/blocks.hpp"
#include "ref/lanes.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace lq::ref {
namespace {

constexpr float kMaxHalf = 65504.f;

// Scale of one 256-value block (w: per-value weights or nullptr).
float ternary_scale(const float* x, const float* w) {
  float a[QK_K], wa[QK_K], wv[QK_K];
  for (int j = 0; j < QK_K; ++j) {
    a[j] = std::fabs(x[j]);
    wv[j] = w ? w[j] : 1.f;
    wa[j] = wv[j] * a[j];
  }
  float la[kLanes] = {}, lw[kLanes] = {};
  for (int j = 0; j < QK_K; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      la[l] += wa[j + l];
      lw[l] += wv[j + l];
    }
  }
  float sum_w = reduce_lanes(lw);
  if (w && !(sum_w > 0)) return ternary_scale(x, nullptr);  // no importance anywhere here
  TernarySearch s;
  s.start(reduce_lanes(la), sum_w);
  for (int pass = 0; s.more; ++pass) {
    std::fill(la, la + kLanes, 0.f);
    std::fill(lw, lw + kLanes, 0.f);
    for (int j = 0; j < QK_K; j += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        const bool on = a[j + l] > s.t;
        la[l] += keep_if(on, wa[j + l]);
        lw[l] += keep_if(on, wv[j + l]);
      }
    }
    s.step(reduce_lanes(la), reduce_lanes(lw), pass);
  }
  return std::min(s.d, kMaxHalf);
}

// Trits of one block against its stored scale; returns the fp16 scale.
uint16_t ternary_block(const float* x, const float* w, uint8_t* t) {
  const uint16_t dh = f32_to_fp16(ternary_scale(x, w));
  const float half_d = 0.5f * fp16_to_f32(dh);
  for (int j = 0; j < QK_K; ++j) t[j] = static_cast<uint8_t>(dh ? ternary_trit(x[j], half_d) : 1);
  return dh;
}

uint8_t pack_trits(const uint8_t* t, int stride, int count) {
  int v = 0;
  for (int n = 0; n < 5; ++n) v = 3 * v + (n < count ? t[n * stride] : 0);
  return static_cast<uint8_t>((v * 256 + 242) / 243);  // ceil(v * 256 / 243)
}

template <typename Block, typename Pack>
void quantize_ternary(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix,
                      Pack&& pack) {
  const int64_t nb = n_per_row / QK_K;
  auto* y = static_cast<Block*>(dst);
  uint8_t t[QK_K];
  for (int64_t r = 0; r < nrows; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      Block& blk = y[r * nb + b];
      blk.d = ternary_block(src + r * n_per_row + b * QK_K, imatrix ? imatrix + b * QK_K : nullptr, t);
      pack(t, blk);
    }
  }
}

inline int trit_at(uint8_t byte, int n) {
  static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  const auto q = static_cast<uint8_t>(byte * kPow3[n]);
  return (q * 3) >> 8;
}

// Trits of one TQ1_0 block in value order.
void unpack_tq1_0(const block_tq1_0& b, int8_t* t) {
  for (int n = 0; n < 5; ++n)
    for (int m = 0; m < 32; ++m) t[m + 32 * n] = static_cast<int8_t>(trit_at(b.qs[m], n));
  for (int n = 0; n < 5; ++n)
    for (int m = 0; m < 16; ++m) t[160 + m + 16 * n] = static_cast<int8_t>(trit_at(b.qs[32 + m], n));
  for (int n = 0; n < 4; ++n)
    for (int j = 0; j < 4; ++j) t[240 + j + 4 * n] = static_cast<int8_t>(trit_at(b.qh[j], n));
}

void unpack_tq2_0(const block_tq2_0& b, int8_t* t) {
  for (int g = 0; g < 2; ++g)
    for (int k = 0; k < 4; ++k)
      for (int m = 0; m < 32; ++m) t[128 * g + 32 * k + m] = static_cast<int8_t>((b.qs[32 * g + m] >> (2 * k)) & 3);
}

}  // namespace

void quantize_tq1_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  quantize_ternary<block_tq1_0>(src, dst, nrows, n_per_row, imatrix, [](const uint8_t* t, block_tq1_0& b) {
    for (int m = 0; m < 32; ++m) b.qs[m] = pack_trits(t + m, 32, 5);
    for (int m = 0; m < 16; ++m) b.qs[32 + m] = pack_trits(t + 160 + m, 16, 5);
    for (int j = 0; j < 4; ++j) b.qh[j] = pack_trits(t + 240 + j, 4, 4);
  });
}

void quantize_tq2_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  quantize_ternary<block_tq2_0>(src, dst, nrows, n_per_row, imatrix, [](const uint8_t* t, block_tq2_0& b) {
    for (int g = 0; g < 2; ++g)
      for (int m = 0; m < 32; ++m) {
        const uint8_t* v = t + 128 * g + m;
        b.qs[32 * g + m] = static_cast<uint8_t>(v[0] | (v[32] << 2) | (v[64] << 4) | (v[96] << 6));
      }
  });
}

void dequantize_tq1_0(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_tq1_0*>(src);
  int8_t t[QK_K];
  for (int64_t i = 0; i < n / QK_K; ++i) {
    unpack_tq1_0(x[i], t);
    const float d = fp16_to_f32(x[i].d);
    for (int j = 0; j < QK_K; ++j) dst[i * QK_K + j] = static_cast<float>(t[j] - 1) * d;
  }
}

void dequantize_tq2_0(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_tq2_0*>(src);
  int8_t t[QK_K];
  for (int64_t i = 0; i < n / QK_K; ++i) {
    unpack_tq2_0(x[i], t);
    const float d = fp16_to_f32(x[i].d);
    for (int j = 0; j < QK_K; ++j) dst[i * QK_K + j] = static_cast<float>(t[j] - 1) * d;
  }
}

namespace {

template <typename Block, typename Unpack>
float dot_ternary(int64_t n, const void* xv, const void* yv, Unpack&& unpack) {
  const auto* x = static_cast<const Block*>(xv);
  const auto* y = static_cast<const block_q8_K*>(yv);
  int8_t t[QK_K];
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    unpack(x[i], t);
    int acc = 0;
    for (int j = 0; j < QK_K; ++j) acc += (t[j] - 1) * y[i].qs[j];
    s += static_cast<float>(acc) * fp16_to_f32(x[i].d) * y[i].d;
  }
  return s;
}

}  // namespace

float dot_tq1_0(int64_t n, const void* x, const void* y) { return dot_ternary<block_tq1_0>(n, x, y, unpack_tq1_0); }
float dot_tq2_0(int64_t n, const void* x, const void* y) { return dot_ternary<block_tq2_0>(n, x, y, unpack_tq2_0); }

}  // namespace lq::ref
