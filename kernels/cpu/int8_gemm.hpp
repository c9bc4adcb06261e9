// CPU kernels: W8A8 products, int8 weights with a float scale per row (W8) against int8
// activations with a float scale per token (A8 / the i8_token activation records).
//
// Variants, instantiated per ISA in isa.cpp.in and dispatched in engine_dispatch.cpp / dispatch.cpp:
//   GemmW8             y[t * ldy + r] = float(sum_i qw[r][i] * qa[t][i]) * (dw[r] * da[t]) for a
//                      range of W8 rows and m activation records. Every 16 weight rows are packed
//                      into a panel, each value offset by 128 (unsigned bytes, 4 values of one row
//                      per 32-bit lane); each record's 4 broadcast bytes then run against the panel
//                      with IsaOps::dot4 (vpdpbusd on AVX512-VNNI, split vpmaddubsw on AVX2 and
//                      AVX-512BW, 16-bit lanes elsewhere). The int32 sums start at -128 x (the
//                      record's sum of values), which removes the offset exactly. Without VNNI
//                      the panel and the records hold int16 pairs instead and IsaOps::dot2_i16
//                      (vpmaddwd) multiplies them: one instruction per 2 values, no offset.
//   DotW8A8            one W8 row against one A8 row (batches under 4 tokens), same integer sum.
//   QuantizeA8         float rows -> A8 rows (the dot's activations): ref::quantize_a8's bytes.
//   QuantizeActI8Token float rows -> records: the values and scale ref::quantize_a8 produces
//                      (with lay.fixed_scale: ref::quantize_a8_static's, static W8A8),
//                      zero-padded to a multiple of 4 values, and their sum.
// The integer sums are exact (|sum| < 2^31 for rows up to 130000 values) and the one float step
// is the reference's, so every variant equals ref::dot_w8_a8 bit for bit on every ISA.
// Check them with `lq_tests "[int8]"`; time them with `matmul_bench --int8`.
#pragma once

#include "arch.hpp"
#include "isa_ops.hpp"
#include "qgemm.hpp"
#include "transpose.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace lq::cpu {

/// Record layout of the i8_token activation format for rows of k values: int8 values at `qs`
/// (k rounded up to a multiple of 4, zero-padded), the float scale at `d`, the int32 sum of the
/// values at `s32`, and the values again as int16 at `p16` (for ISAs without vpdpbusd).
inline QActLayout i8_token_layout(int64_t k) {
  QActLayout l;
  l.k = k;
  l.block = static_cast<int>(std::min<int64_t>(k, 1 << 30));
  const size_t k4 = static_cast<size_t>((k + 3) / 4 * 4);
  l.qs = 0;
  l.d = (k4 + 63) / 64 * 64;
  l.s32 = l.d + 4;
  l.p16 = l.d + 64;
  l.bytes = l.p16 + (2 * k4 + 63) / 64 * 64;
  return l;
}

template <class Arch>
struct GemmW8 {
  static void run(const QGemmArgs& args);
};
template <class Arch>
struct DotW8A8 {
  static float run(int64_t n, const void* x, const void* y);
};
template <class Arch>
struct QuantizeActI8Token {
  static void run(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst);
};
template <class Arch>
struct QuantizeA8 {
  static void run(const float* src, void* dst, int64_t nrows, int64_t n, const float* imatrix);
};

namespace i8g {

// Without vpdpbusd, a byte product of an unsigned value up to 255 costs two vpmaddubsw (the
// split in IsaOps::dot4); values widened to int16 pairs take one vpmaddwd per 2 values instead.
template <class Arch>
inline constexpr bool kW8Wide = kIsaLevel<Arch> != IsaLevel::vnni;

// One panel: q [k4 / P * 16] with P values of one row per 32-bit lane (P = 4 offset bytes, or
// P = 2 int16 where kW8Wide), d [16] row scales.
template <class Arch>
struct PanelW8 {
  static constexpr int P = kW8Wide<Arch> ? 2 : 4;
  int32_t* q;
  float* d;
  static size_t words(int64_t k) { return static_cast<size_t>((k + 3) / 4 * 4 / P + 1) * kPanelRows; }
  PanelW8(int32_t* buf, int64_t k) : q(buf), d(reinterpret_cast<float*>(buf + (k + 3) / 4 * 4 / P * kPanelRows)) {}
};

// Rows r0 .. r0 + rows (<= 16; missing rows: zero values and scales) into the panel.
template <class Arch>
void pack_w8(const uint8_t* w, size_t ws, int rows, int64_t k, const PanelW8<Arch>& p) {
  constexpr int CH = 256;
  constexpr int P = PanelW8<Arch>::P;
  using E = std::conditional_t<P == 2, int16_t, uint8_t>;
  alignas(64) E tmp[kPanelRows][CH];
  for (int r = 0; r < kPanelRows; ++r) {
    float d = 0.f;
    if (r < rows) std::memcpy(&d, w + static_cast<size_t>(r) * ws, 4);
    p.d[r] = d;
  }
  // Bytes carry the offset 128 (what the records' sums remove); int16 values are the values.
  auto level = [](uint8_t q) -> E {
    if constexpr (P == 2) return static_cast<int16_t>(static_cast<int8_t>(q));
    else return static_cast<uint8_t>(q ^ 0x80u);
  };
  const E zero = level(0);
  for (int64_t c0 = 0; c0 < k; c0 += CH) {
    const int cn = static_cast<int>(std::min<int64_t>(CH, k - c0));
    const int cn4 = (cn + 3) / 4 * 4;
    for (int r = 0; r < kPanelRows; ++r) {
      const uint8_t* q = w + static_cast<size_t>(r) * ws + 4 + c0;
      for (int i = 0; i < cn4; ++i) tmp[r][i] = r < rows && i < cn ? level(q[i]) : zero;
    }
    transpose16<Arch>(reinterpret_cast<const int32_t*>(&tmp[0][0]), CH / P, cn4 / P, p.q + c0 / P * kPanelRows);
  }
}

template <class Arch, int TN>
void w8_tokens(int64_t k4, const PanelW8<Arch>& pn, const uint8_t* act, const QActLayout& lay, float* y, int64_t ldy,
               int rows) {
  using Ops = IsaOps<Arch>;
  using I = typename Ops::I;
  using F = typename Ops::F;
  constexpr int W = static_cast<int>(F::size), NV = kPanelRows / W;
  constexpr bool wide = kW8Wide<Arch>;
  const uint8_t* xq[TN];
  float xd[TN];
  I acc[TN][NV];
  for (int t = 0; t < TN; ++t) {
    const uint8_t* rec = act + static_cast<size_t>(t) * lay.bytes;
    xq[t] = rec + (wide ? lay.p16 : lay.qs);
    std::memcpy(&xd[t], rec + lay.d, 4);
    int32_t s;
    std::memcpy(&s, rec + lay.s32, 4);
    for (int v = 0; v < NV; ++v) acc[t][v] = I(wide ? 0 : -128 * s);
  }
  // Each step: 4 bytes of every record (P values) against P values of 16 rows.
  for (int64_t g = 0; g < k4 / PanelW8<Arch>::P; ++g) {
    I wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = I::load_unaligned(pn.q + g * kPanelRows + v * W);
#pragma GCC unroll 16
    for (int t = 0; t < TN; ++t) {
      const I xb = Ops::broadcast4(xq[t] + 4 * g);
      for (int v = 0; v < NV; ++v) {
        if constexpr (wide) acc[t][v] = Ops::dot2_i16(acc[t][v], wv[v], xb);
        else acc[t][v] = Ops::template dot4<255>(acc[t][v], wv[v], xb);
      }
    }
  }
  F out[TN][NV];
  for (int v = 0; v < NV; ++v) {
    const F dv = F::load_unaligned(pn.d + v * W);
    for (int t = 0; t < TN; ++t) out[t][v] = xsimd::batch_cast<float>(acc[t][v]) * (dv * F(xd[t]));
  }
  qg::store_rows<Arch, TN, NV>(out, y, ldy, rows);
}

template <class Arch, int TN>
void w8_all_tokens(int64_t k4, const PanelW8<Arch>& pn, const QGemmArgs& a, int64_t t0, float* y, int rows) {
  int64_t t = t0;
  for (; t + TN <= a.m; t += TN)
    w8_tokens<Arch, TN>(k4, pn, a.act + static_cast<size_t>(t) * a.lay.bytes, a.lay, y + t * a.ldy, a.ldy, rows);
  if constexpr (TN > 1)
    if (t < a.m) w8_all_tokens<Arch, TN / 2>(k4, pn, a, t, y, rows);
}

template <class Arch>
void gemm_w8(const QGemmArgs& a) {
  // As qgemm: 12 records per pass on AVX-512 (12 sums + 1 panel load of 32 registers), fewer
  // where the panel takes 2 or 4 registers.
  constexpr int NV = qg::kNv<Arch>;
  constexpr int TN = NV == 1 ? 12 : NV == 2 ? 4 : 2;
  const int64_t k = a.k, k4 = (k + 3) / 4 * 4;
  auto& buf = qg::scratch<Arch, PanelW8<Arch>>(PanelW8<Arch>::words(k));
  const PanelW8<Arch> pn(buf.data(), k);
  const auto* w = static_cast<const uint8_t*>(a.w);
  for (int64_t r0 = 0; r0 < a.rows; r0 += kPanelRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kPanelRows, a.rows - r0));
    pack_w8<Arch>(w + static_cast<size_t>(r0) * a.ws, a.ws, rows, k, pn);
    w8_all_tokens<Arch, TN>(k4, pn, a, 0, a.y + r0, rows);
  }
}

}  // namespace i8g

template <class Arch>
void GemmW8<Arch>::run(const QGemmArgs& a) {
  i8g::gemm_w8<Arch>(a);
}

template <class Arch>
float DotW8A8<Arch>::run(int64_t n, const void* x, const void* y) {
  using Ops = IsaOps<Arch>;
  using I = typename Ops::I;
  constexpr int64_t B = 4 * static_cast<int64_t>(I::size);  // bytes per batch
  const auto* wr = static_cast<const uint8_t*>(x);
  const auto* ar = static_cast<const uint8_t*>(y);
  float dw, da;
  std::memcpy(&dw, wr, 4);
  std::memcpy(&da, ar, 4);
  const uint8_t* qw = wr + 4;
  const uint8_t* qa = ar + 4;
  // sum (w + 128) * a - 128 * sum a, the activation sum taken as a dot with ones.
  I acc(0), asum(0);
  const I flip(static_cast<int32_t>(0x80808080u)), ones(0x01010101);
  int64_t i = 0;
  for (; i + B <= n; i += B) {
    const I u = I::load_unaligned(reinterpret_cast<const int32_t*>(qw + i)) ^ flip;
    const I s = I::load_unaligned(reinterpret_cast<const int32_t*>(qa + i));
    acc = Ops::template dot4<255>(acc, u, s);
    asum = Ops::template dot4<1>(asum, ones, s);
  }
  int32_t sum = hsum(acc - (asum << 7));
  for (; i < n; ++i) sum += static_cast<int32_t>(static_cast<int8_t>(qw[i])) * static_cast<int8_t>(qa[i]);
  return static_cast<float>(sum) * (dw * da);
}

namespace i8g {

// One row of k values: scale = max|x| / 127 (0 for a zero row), q = round_half_even(x / scale) in
// [-127, 127]; or the fixed scale (> 0) with q in [-128, 127]. Writes q[0, k) and the scale;
// returns the sum of q.
template <class Arch>
int32_t quantize_i8_row(const float* xr, int64_t k, float fixed_scale, int8_t* q, float* scale) {
  using F = xsimd::batch<float, Arch>;
  using I = xsimd::batch<int32_t, Arch>;
  constexpr int64_t W = static_cast<int64_t>(F::size);
  const bool fixed = fixed_scale > 0;
  int64_t j = 0;
  float d = fixed_scale;
  if (!fixed) {
    F mv(0.f);
    for (; j + W <= k; j += W) mv = xsimd::max(mv, xsimd::abs(F::load_unaligned(xr + j)));
    float amax = hmax(mv);
    for (; j < k; ++j) amax = std::max(amax, std::fabs(xr[j]));
    d = amax / 127.f;
  }
  *scale = d;
  if (d == 0.f) {
    std::memset(q, 0, static_cast<size_t>(k));
    return 0;
  }
  const int32_t lo = fixed ? -128 : -127;
  alignas(64) int32_t qi[W];
  I si(0);
  j = 0;
  for (; j + W <= k; j += W) {
    const I v = xsimd::clip(xsimd::nearbyint_as_int(div_exact(F::load_unaligned(xr + j), F(d))), I(lo), I(127));
    si = si + v;
    v.store_aligned(qi);
    for (int64_t i = 0; i < W; ++i) q[j + i] = static_cast<int8_t>(qi[i]);
  }
  int32_t sum = hsum(si);
  for (; j < k; ++j) {
    const float v = std::min(127.f, std::max(static_cast<float>(lo), std::nearbyint(xr[j] / d)));
    q[j] = static_cast<int8_t>(v);
    sum += q[j];
  }
  return sum;
}

}  // namespace i8g

template <class Arch>
void QuantizeActI8Token<Arch>::run(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst) {
  const int64_t k = lay.k, k4 = (k + 3) / 4 * 4;
  for (int64_t t = 0; t < m; ++t) {
    uint8_t* rec = dst + static_cast<size_t>(t) * lay.bytes;
    auto* q = reinterpret_cast<int8_t*>(rec + lay.qs);
    float d;
    const int32_t sum = i8g::quantize_i8_row<Arch>(x + t * k, k, lay.fixed_scale, q, &d);
    std::memset(q + k, 0, static_cast<size_t>(k4 - k));
    auto* q16 = reinterpret_cast<int16_t*>(rec + lay.p16);
    for (int64_t i = 0; i < k4; ++i) q16[i] = q[i];
    std::memcpy(rec + lay.d, &d, 4);
    std::memcpy(rec + lay.s32, &sum, 4);
  }
}

// A8 rows (the dot path's activations): ref::quantize_a8's bytes.
template <class Arch>
void QuantizeA8<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n, const float*) {
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t r = 0; r < nrows; ++r) {
    uint8_t* row = out + static_cast<size_t>(r) * static_cast<size_t>(n + 4);
    float d;
    i8g::quantize_i8_row<Arch>(src + r * n, n, 0.f, reinterpret_cast<int8_t*>(row + 4), &d);
    std::memcpy(row, &d, 4);
  }
}

#define LQ_CPU_INT8_KERNELS(X) X(GemmW8) X(DotW8A8) X(QuantizeActI8Token) X(QuantizeA8)

}  // namespace lq::cpu
