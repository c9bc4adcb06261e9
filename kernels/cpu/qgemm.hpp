// CPU kernels: prompt-processing products of quantized and bf16 weights (panel GEMM).
//
// Variants, instantiated per ISA in isa.cpp.in and dispatched in engine_dispatch.cpp:
//   QGemmQ4_0, QGemmQ5_0, QGemmQ8_0, QGemmQ2K, QGemmQ3K, QGemmQ4K, QGemmQ5K, QGemmQ6K
//       y[t * ldy + r] = dot(weight row r, activation record t) for a range of weight rows and
//       all m activation records. Every 16 weight rows are decoded once into a panel: unsigned
//       levels with 4 consecutive values of one row per 32-bit lane and one lane per row, plus
//       float sub-block scales (and mins) per row. Each activation record then runs against the
//       panel: per 4 values one IsaOps::dot4 (vpdpbusd on AVX512-VNNI) updates 16 rows, the 4
//       activation bytes broadcast. The levels carry an offset (Q4_0 8, Q5_0 16, Q8_0 128 after
//       shifting its signed values, Q3_K 4, Q6_K 32): the integer sums start at -offset x (sum of
//       the activation group). The k-quant mins use the activation group sums in float.
//   QuantizeActQ8_0, QuantizeActQ8K
//       float rows -> activation records (QActLayout): the values and scales the reference
//       Q8_0 / Q8_K quantizers produce (tests check them against ref), contiguous, with sums.
//   GemmBf16, QuantizeActBf16
//       bf16 weights against activations rounded to bf16 (as llama.cpp does for bf16 weights):
//       IsaOps::dot2_bf16 (vdpbf16ps on AVX512-BF16) on panels of 16 rows x 2 values per lane.
// Per weight block the integer sums are exact and the float operations are the reference dot's
// in its order: the results equal ref::dot_<type> bit for bit, on every ISA.
// Check them with `lq_tests "[perf]"`; time them with `matmul_bench`.
#pragma once

#include "arch.hpp"
#include "block_formats.hpp"
#include "isa_ops.hpp"
#include "transpose.hpp"

#include "core/half.hpp"
#include "types/ref/blocks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace lq::cpu {

inline constexpr int kPanelRows = 16;

/// Byte layout of one activation record (one token) of the integer panel kernels; the caller
/// computes it (make_qact_layout) and passes it along. For GemmBf16 only `qs` (k bf16 values,
/// zero-padded to even k) and `bytes` are used.
struct QActLayout {
  int64_t k = 0;
  int block = 32;  // values per activation scale: 32 (Q8_0) or 256 (Q8_K)
  size_t qs = 0;   // int8 values [k]
  size_t d = 0;    // float scales [k / block]
  size_t s16 = 0;  // int32 sums of 16 values [k / 16]
  size_t s32 = 0;  // int32 sums of 32 values [k / 32]
  size_t p16 = 0;  // int32: sums of 16-value groups 2i, 2i+1 as two int16 [k / 32]
  size_t p32 = 0;  // int32: sums of 32-value groups 2i, 2i+1 as two int16 [k / 64]
  size_t bytes = 0;  // record size (a multiple of 64)
  float fixed_scale = 0;  // i8_token records: one scale for every token (static W8A8); 0: per token
};

/// Arguments of the panel kernels: y[t * ldy + r] for t < m, r < rows.
struct QGemmArgs {
  int64_t k;          // values per row
  const void* w;      // weight rows in the GGUF layout of the kernel's type
  size_t ws;          // bytes between weight rows
  int64_t rows;       // weight rows
  const uint8_t* act; // m activation records of lay.bytes
  QActLayout lay;
  int64_t m;
  float* y;
  int64_t ldy;
};

#define LQ_QGEMM_DECLARE(K)                 \
  template <class Arch>                     \
  struct K {                                \
    static void run(const QGemmArgs& args); \
  };
LQ_QGEMM_DECLARE(QGemmQ4_0)
LQ_QGEMM_DECLARE(QGemmQ5_0)
LQ_QGEMM_DECLARE(QGemmQ8_0)
LQ_QGEMM_DECLARE(QGemmQ2K)
LQ_QGEMM_DECLARE(QGemmQ3K)
LQ_QGEMM_DECLARE(QGemmQ4K)
LQ_QGEMM_DECLARE(QGemmQ5K)
LQ_QGEMM_DECLARE(QGemmQ6K)
LQ_QGEMM_DECLARE(GemmBf16)
#undef LQ_QGEMM_DECLARE

/// m float rows of lay.k values -> m activation records (dst, lay.bytes apart).
template <class Arch>
struct QuantizeActQ8_0 {
  static void run(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst);
};
template <class Arch>
struct QuantizeActQ8K {
  static void run(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst);
};
template <class Arch>
struct QuantizeActBf16 {
  static void run(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst);
};

namespace qg {

// The weight formats (levels, scales) are in block_formats.hpp.

// ---- panels -------------------------------------------------------------------------------------

// Per-thread scratch of one instantiation (each ISA's TU has its own).
template <class Arch, class Tag>
std::vector<int32_t>& scratch(size_t n32) {
  static thread_local std::vector<int32_t> v;
  if (v.size() < n32) v.resize(n32);
  return v;
}

// One decoded panel: every array has one 32-bit lane per row (16 per entry).
template <class Fmt>
struct Panel {
  int32_t* q;     // [k/4]          4 levels of one row per lane
  float* d;       // [k/kBlock]     block scale d
  float* dmin;    // [k/kBlock]     block scale dmin (kMin)
  int32_t* sc;    // [k/kG]         sub-block scale (k-quants)
  int32_t* mp;    // [k/kG/2]       sub-block mins 2j, 2j+1 as int16 pairs (kMin)

  static size_t words(int64_t k) {
    return static_cast<size_t>(k / 4 + 2 * (k / Fmt::kBlock) + k / Fmt::kG + k / Fmt::kG / 2 + 1) * kPanelRows;
  }
  Panel(int32_t* buf, int64_t k) {
    q = buf;
    d = reinterpret_cast<float*>(q + k / 4 * kPanelRows);
    dmin = d + k / Fmt::kBlock * kPanelRows;
    sc = reinterpret_cast<int32_t*>(dmin + k / Fmt::kBlock * kPanelRows);
    mp = sc + k / Fmt::kG * kPanelRows;
  }
};

// Decodes `rows` (<= 16) weight rows into a panel; missing rows get zero levels and scales.
template <class Arch, class Fmt>
void pack(const uint8_t* w, size_t ws, int rows, int64_t k, const Panel<Fmt>& p) {
  using block = typename Fmt::block;
  constexpr int CH = 256;  // values per transposed chunk (a multiple of every kBlock)
  constexpr int SPB = Fmt::kBlock / Fmt::kG;
  alignas(64) uint8_t tmp[kPanelRows][CH];
  for (int64_t c0 = 0; c0 < k; c0 += CH) {
    const int cn = static_cast<int>(std::min<int64_t>(CH, k - c0));
    for (int r = 0; r < kPanelRows; ++r) {
      const block* b = reinterpret_cast<const block*>(w + static_cast<size_t>(r) * ws) + c0 / Fmt::kBlock;
      for (int i = 0; i < cn / Fmt::kBlock; ++i) {
        BlockScales s{};
        if (r < rows) {
          read_scales<Fmt>(b[i], s);
          Fmt::levels(b[i], tmp[r] + i * Fmt::kBlock);
        } else {
          std::memset(tmp[r] + i * Fmt::kBlock, 0, Fmt::kBlock);
        }
        const int64_t bi = c0 / Fmt::kBlock + i;
        p.d[bi * kPanelRows + r] = s.d;
        if constexpr (Fmt::kMin) p.dmin[bi * kPanelRows + r] = s.dmin;
        if constexpr (SPB > 1)
          for (int j = 0; j < SPB; ++j) p.sc[(bi * SPB + j) * kPanelRows + r] = s.sc[j];
        if constexpr (Fmt::kMin)
          for (int j = 0; j < SPB; j += 2)
            p.mp[(bi * SPB + j) / 2 * kPanelRows + r] =
                static_cast<int32_t>((static_cast<uint32_t>(s.m[j]) & 0xffffu) | (static_cast<uint32_t>(s.m[j + 1]) << 16));
      }
    }
    transpose16<Arch>(reinterpret_cast<const int32_t*>(&tmp[0][0]), CH / 4, cn / 4, p.q + c0 / 4 * kPanelRows);
  }
}

template <class Arch, int TN, int NV, class F>
void store_rows(F (&acc)[TN][NV], float* y, int64_t ldy, int rows) {
  constexpr int W = static_cast<int>(F::size);
  for (int t = 0; t < TN; ++t) {
    if (rows == kPanelRows) {
      for (int v = 0; v < NV; ++v) acc[t][v].store_unaligned(y + t * ldy + v * W);
    } else {
      alignas(64) float tmp[kPanelRows];
      for (int v = 0; v < NV; ++v) acc[t][v].store_aligned(tmp + v * W);
      std::memcpy(y + t * ldy, tmp, static_cast<size_t>(rows) * sizeof(float));
    }
  }
}

// TN activation records against one panel. Per weight block and row lane the float operations
// are the reference dot's, in its order (s += (sum * d_w) * d_x for the legacy types,
// s += (d_x * d) * sumq - (d_x * dmin) * summ for the k-quants) over exact integer sums, so the
// results equal ref::dot_<type> bit for bit on every ISA.
template <class Arch, class Fmt, int TN>
void panel_tokens(int64_t k, const Panel<Fmt>& pn, const uint8_t* act, const QActLayout& lay, float* y, int64_t ldy,
                  int rows) {
  using Ops = IsaOps<Arch>;
  using I = typename Ops::I;
  using F = typename Ops::F;
  constexpr int W = static_cast<int>(F::size), NV = kPanelRows / W;
  constexpr int G = Fmt::kG, GQ = G / 4, SPB = Fmt::kBlock / G;
  const int8_t* xq[TN];
  const float* xd[TN];
  const int32_t* xs[TN];
  const int32_t* xp[TN];
  for (int t = 0; t < TN; ++t) {
    const uint8_t* rec = act + static_cast<size_t>(t) * lay.bytes;
    xq[t] = reinterpret_cast<const int8_t*>(rec + lay.qs);
    xd[t] = reinterpret_cast<const float*>(rec + lay.d);
    xs[t] = reinterpret_cast<const int32_t*>(rec + (G == 16 ? lay.s16 : lay.s32));
    xp[t] = reinterpret_cast<const int32_t*>(rec + (G == 16 ? lay.p16 : lay.p32));
  }
  F yacc[TN][NV];
  for (auto& r : yacc)
    for (auto& v : r) v = F(0.f);
  const int64_t nb = k / Fmt::kBlock;
  for (int64_t b = 0; b < nb; ++b) {
    I sumq[TN][NV];
    if constexpr (SPB > 1)
      for (auto& r : sumq)
        for (auto& v : r) v = I(0);
    for (int jj = 0; jj < SPB; ++jj) {
      const int64_t j = b * SPB + jj;
      I acc[TN][NV];
#pragma GCC unroll 16
      for (int t = 0; t < TN; ++t) {
        const I init = Fmt::kOff ? I(-Fmt::kOff * xs[t][j]) : I(0);
        for (int v = 0; v < NV; ++v) acc[t][v] = init;
      }
      const int32_t* qj = pn.q + j * GQ * kPanelRows;
#pragma GCC unroll 8
      for (int g = 0; g < GQ; ++g) {
        I wv[NV];
        for (int v = 0; v < NV; ++v) wv[v] = I::load_unaligned(qj + g * kPanelRows + v * W);
#pragma GCC unroll 16
        for (int t = 0; t < TN; ++t) {
          const I xb = Ops::broadcast4(xq[t] + j * G + 4 * g);
          for (int v = 0; v < NV; ++v) acc[t][v] = Ops::template dot4<Fmt::kMaxU>(acc[t][v], wv[v], xb);
        }
      }
      if constexpr (SPB == 1) {
        F dv[NV];
        for (int v = 0; v < NV; ++v) dv[v] = F::load_unaligned(pn.d + b * kPanelRows + v * W);
#pragma GCC unroll 16
        for (int t = 0; t < TN; ++t)
          for (int v = 0; v < NV; ++v)
            yacc[t][v] = yacc[t][v] + (xsimd::batch_cast<float>(acc[t][v]) * dv[v]) * F(xd[t][b]);
      } else {
        I scv[NV];
        for (int v = 0; v < NV; ++v) scv[v] = I::load_unaligned(pn.sc + j * kPanelRows + v * W);
#pragma GCC unroll 16
        for (int t = 0; t < TN; ++t)
          for (int v = 0; v < NV; ++v) sumq[t][v] = sumq[t][v] + acc[t][v] * scv[v];
      }
    }
    if constexpr (SPB > 1) {
      F dv[NV];
      for (int v = 0; v < NV; ++v) dv[v] = F::load_unaligned(pn.d + b * kPanelRows + v * W);
      if constexpr (Fmt::kMin) {
        // summ = sum_j m_j * (activation sum of sub-block j), two sub-blocks per 16-bit pair step
        I summ[TN][NV];
        for (auto& r : summ)
          for (auto& v : r) v = I(0);
        for (int pp = 0; pp < SPB / 2; ++pp) {
          const int64_t pi = b * (SPB / 2) + pp;
          I mv[NV];
          for (int v = 0; v < NV; ++v) mv[v] = I::load_unaligned(pn.mp + pi * kPanelRows + v * W);
#pragma GCC unroll 16
          for (int t = 0; t < TN; ++t) {
            const I sp = Ops::broadcast4(xp[t] + pi);
            for (int v = 0; v < NV; ++v) summ[t][v] = Ops::dot2_i16(summ[t][v], mv[v], sp);
          }
        }
        F mnv[NV];
        for (int v = 0; v < NV; ++v) mnv[v] = F::load_unaligned(pn.dmin + b * kPanelRows + v * W);
#pragma GCC unroll 16
        for (int t = 0; t < TN; ++t) {
          const F dx(xd[t][b]);
          for (int v = 0; v < NV; ++v)
            yacc[t][v] = yacc[t][v] + ((dx * dv[v]) * xsimd::batch_cast<float>(sumq[t][v]) -
                                       (dx * mnv[v]) * xsimd::batch_cast<float>(summ[t][v]));
        }
      } else {
#pragma GCC unroll 16
        for (int t = 0; t < TN; ++t) {
          const F dx(xd[t][b]);
          for (int v = 0; v < NV; ++v) yacc[t][v] = yacc[t][v] + (dx * dv[v]) * xsimd::batch_cast<float>(sumq[t][v]);
        }
      }
    }
  }
  store_rows<Arch, TN, NV>(yacc, y, ldy, rows);
}

// Records [t0, m) in groups of at most TN, the remainder with fewer.
template <class Arch, class Fmt, int TN>
void panel_all_tokens(int64_t k, const Panel<Fmt>& pn, const QGemmArgs& a, int64_t t0, float* y, int rows) {
  int64_t t = t0;
  for (; t + TN <= a.m; t += TN)
    panel_tokens<Arch, Fmt, TN>(k, pn, a.act + static_cast<size_t>(t) * a.lay.bytes, a.lay, y + t * a.ldy, a.ldy,
                                rows);
  if constexpr (TN > 1)
    if (t < a.m) panel_all_tokens<Arch, Fmt, TN / 2>(k, pn, a, t, y, rows);
}

template <class Arch>
inline constexpr int kNv = kPanelRows / static_cast<int>(xsimd::batch<float, Arch>::size);

template <class Arch, class Fmt>
void qgemm(const QGemmArgs& a) {
  // Records per pass: enough to reuse each panel load, few enough for the registers (32 on
  // AVX-512: TN integer sums, TN block sums and TN results; 16 on AVX2 and SSE2).
  constexpr int NV = kNv<Arch>;
  constexpr int TN = NV == 1 ? (Fmt::kBlock == Fmt::kG ? 12 : 8) : NV == 2 ? 2 : 1;
  const int64_t k = a.k;
  auto& buf = scratch<Arch, Fmt>(Panel<Fmt>::words(k));
  const Panel<Fmt> pn(buf.data(), k);
  const auto* w = static_cast<const uint8_t*>(a.w);
  for (int64_t r0 = 0; r0 < a.rows; r0 += kPanelRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kPanelRows, a.rows - r0));
    pack<Arch, Fmt>(w + static_cast<size_t>(r0) * a.ws, a.ws, rows, k, pn);
    panel_all_tokens<Arch, Fmt, TN>(k, pn, a, 0, a.y + r0, rows);
  }
}

// ---- bf16 ---------------------------------------------------------------------------------------

// TN activation records against NP panels of 16 rows each (their pairs at q + j * kp * 16).
template <class Arch, int TN, int NP>
void bf16_tokens(int64_t kp, const int32_t* q, const uint8_t* act, size_t bytes, float* y, int64_t ldy, int rows) {
  using Ops = IsaOps<Arch>;
  using I = typename Ops::I;
  using F = typename Ops::F;
  constexpr int W = static_cast<int>(F::size), NV = kPanelRows / W;
  const uint8_t* x[TN];
  for (int t = 0; t < TN; ++t) x[t] = act + static_cast<size_t>(t) * bytes;
  const int64_t ps = kp * kPanelRows;
  F acc[NP][TN][NV];
  for (auto& a : acc)
    for (auto& r : a)
      for (auto& v : r) v = F(0.f);
  for (int64_t p = 0; p < kp; ++p) {
    I wv[NP][NV];
    for (int j = 0; j < NP; ++j)
      for (int v = 0; v < NV; ++v) wv[j][v] = I::load_unaligned(q + j * ps + p * kPanelRows + v * W);
#pragma GCC unroll 16
    for (int t = 0; t < TN; ++t) {
      const I xb = Ops::broadcast4(x[t] + 4 * p);
      for (int j = 0; j < NP; ++j)
        for (int v = 0; v < NV; ++v) acc[j][t][v] = Ops::dot2_bf16(acc[j][t][v], wv[j][v], xb);
    }
  }
  for (int j = 0; j < NP; ++j) store_rows<Arch, TN, NV>(acc[j], y + j * kPanelRows, ldy, NP == 1 ? rows : kPanelRows);
}

template <class Arch, int TN, int NP>
void bf16_all_tokens(int64_t kp, const int32_t* q, const QGemmArgs& a, int64_t t0, float* y, int rows) {
  int64_t t = t0;
  for (; t + TN <= a.m; t += TN)
    bf16_tokens<Arch, TN, NP>(kp, q, a.act + static_cast<size_t>(t) * a.lay.bytes, a.lay.bytes, y + t * a.ldy, a.ldy,
                              rows);
  if constexpr (TN > 1)
    if (t < a.m) bf16_all_tokens<Arch, TN / 2, NP>(kp, q, a, t, y, rows);
}

// Weight rows r0 .. r0 + 16 (fewer at the end: zeros) as a panel of (k + 1) / 2 value pairs, one
// 32-bit lane per row: q[p * 16 + r] = row r's values 2p (low half) and 2p + 1. Returns the rows.
template <class Arch>
int pack_bf16(const QGemmArgs& a, int64_t r0, int32_t* q) {
  const int64_t kp = (a.k + 1) / 2;
  const int rows = static_cast<int>(std::min<int64_t>(kPanelRows, a.rows - r0));
  const uint8_t* wr = static_cast<const uint8_t*>(a.w) + static_cast<size_t>(r0) * a.ws;
  if (rows == kPanelRows && a.k % 2 == 0 && a.ws % 4 == 0) {
    transpose16<Arch>(reinterpret_cast<const int32_t*>(wr), static_cast<int64_t>(a.ws / 4), kp, q);
    return rows;
  }
  for (int64_t p = 0; p < kp; ++p)
    for (int r = 0; r < kPanelRows; ++r) {
      uint32_t v = 0;
      if (r < rows) {
        const auto* row = reinterpret_cast<const uint16_t*>(wr + static_cast<size_t>(r) * a.ws);
        v = row[2 * p];
        if (2 * p + 1 < a.k) v |= static_cast<uint32_t>(row[2 * p + 1]) << 16;
      }
      q[p * kPanelRows + r] = static_cast<int32_t>(v);
    }
  return rows;
}

template <class Arch>
void gemm_bf16(const QGemmArgs& a) {
  constexpr int NV = kNv<Arch>;
  // 8 records: their pointers stay in general registers (16 made the loop twice as slow).
  constexpr int TN = NV == 1 ? 8 : NV == 2 ? 4 : 2;
  // Two panels (32 rows) per pass on AVX-512: each activation broadcast then feeds two products,
  // which halves the activation traffic. At 512 tokens x k 2048 on one Zen 4 core the kernel
  // went from 95 to 114 GMAC/s (the vdpbf16ps peak is 115); three panels spill registers.
  constexpr int NP = NV == 1 ? 2 : 1;
  const int64_t kp = (a.k + 1) / 2;  // value pairs per row
  const int64_t ps = kp * kPanelRows;
  auto& buf = scratch<Arch, struct Bf16Tag>(static_cast<size_t>(NP * ps));
  int32_t* q = buf.data();
  int64_t r0 = 0;
  if constexpr (NP > 1)
    for (; r0 + NP * kPanelRows <= a.rows; r0 += NP * kPanelRows) {
      for (int j = 0; j < NP; ++j) pack_bf16<Arch>(a, r0 + j * kPanelRows, q + j * ps);
      bf16_all_tokens<Arch, TN, NP>(kp, q, a, 0, a.y + r0, kPanelRows);
    }
  for (; r0 < a.rows; r0 += kPanelRows) {
    const int rows = pack_bf16<Arch>(a, r0, q);
    bf16_all_tokens<Arch, TN, 1>(kp, q, a, 0, a.y + r0, rows);
  }
}

}  // namespace qg

template <class Arch>
void QGemmQ4_0<Arch>::run(const QGemmArgs& a) { qg::qgemm<Arch, qg::FmtQ4_0<Arch>>(a); }
template <class Arch>
void QGemmQ5_0<Arch>::run(const QGemmArgs& a) { qg::qgemm<Arch, qg::FmtQ5_0<Arch>>(a); }
template <class Arch>
void QGemmQ8_0<Arch>::run(const QGemmArgs& a) { qg::qgemm<Arch, qg::FmtQ8_0<Arch>>(a); }
template <class Arch>
void QGemmQ2K<Arch>::run(const QGemmArgs& a) { qg::qgemm<Arch, qg::FmtQ2K<Arch>>(a); }
template <class Arch>
void QGemmQ3K<Arch>::run(const QGemmArgs& a) { qg::qgemm<Arch, qg::FmtQ3K<Arch>>(a); }
template <class Arch>
void QGemmQ4K<Arch>::run(const QGemmArgs& a) { qg::qgemm<Arch, qg::FmtQ4K<Arch>>(a); }
template <class Arch>
void QGemmQ5K<Arch>::run(const QGemmArgs& a) { qg::qgemm<Arch, qg::FmtQ5K<Arch>>(a); }
template <class Arch>
void QGemmQ6K<Arch>::run(const QGemmArgs& a) { qg::qgemm<Arch, qg::FmtQ6K<Arch>>(a); }
template <class Arch>
void GemmBf16<Arch>::run(const QGemmArgs& a) { qg::gemm_bf16<Arch>(a); }

// ---- activation records ---------------------------------------------------------------------------

namespace qg {

// Group sums of a record's int8 values, and adjacent pairs of them packed as int16 (|sum| of 32
// values <= 4064).
template <class Arch>
void record_sums(const QActLayout& lay, uint8_t* rec) {
  const auto* q = reinterpret_cast<const int8_t*>(rec + lay.qs);
  auto* s16 = reinterpret_cast<int32_t*>(rec + lay.s16);
  auto* s32 = reinterpret_cast<int32_t*>(rec + lay.s32);
  auto* p16 = reinterpret_cast<uint32_t*>(rec + lay.p16);
  auto* p32 = reinterpret_cast<uint32_t*>(rec + lay.p32);
  auto pair = [](int32_t lo, int32_t hi) {
    return (static_cast<uint32_t>(lo) & 0xffffu) | (static_cast<uint32_t>(hi) << 16);
  };
  for (int64_t g = 0; g < lay.k / 16; ++g) {
    int s = 0;
    for (int j = 0; j < 16; ++j) s += q[16 * g + j];
    s16[g] = s;
  }
  for (int64_t g = 0; g < lay.k / 32; ++g) {
    s32[g] = s16[2 * g] + s16[2 * g + 1];
    p16[g] = pair(s16[2 * g], s16[2 * g + 1]);
  }
  for (int64_t g = 0; g < lay.k / 64; ++g) p32[g] = pair(s32[2 * g], s32[2 * g + 1]);
}

template <class Arch>
float abs_max(const float* x, int n) {
  using F = xsimd::batch<float, Arch>;
  constexpr int W = static_cast<int>(F::size);
  F m(0.f);
  for (int j = 0; j < n; j += W) m = xsimd::max(m, xsimd::abs(F::load_unaligned(x + j)));
  return hmax(m);
}

}  // namespace qg

// Q8_0: d = amax / 127, q = round(x / d) half away from zero (x * (1 / d), as the reference).
template <class Arch>
void QuantizeActQ8_0<Arch>::run(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst) {
  using F = xsimd::batch<float, Arch>;
  constexpr int W = static_cast<int>(F::size);
  const int64_t k = lay.k;
  for (int64_t t = 0; t < m; ++t) {
    uint8_t* rec = dst + static_cast<size_t>(t) * lay.bytes;
    auto* q = reinterpret_cast<int8_t*>(rec + lay.qs);
    auto* d = reinterpret_cast<float*>(rec + lay.d);
    const float* xr = x + t * k;
    for (int64_t b = 0; b < k / 32; ++b) {
      const float amax = qg::abs_max<Arch>(xr + 32 * b, 32);
      const float db = amax / 127.f;
      const float id = db != 0.f ? 1.0f / db : 0.0f;
      alignas(64) int32_t qi[32];
      for (int j = 0; j < 32; j += W)
        xsimd::batch_cast<int32_t>(xsimd::round(F::load_unaligned(xr + 32 * b + j) * F(id))).store_aligned(qi + j);
      for (int j = 0; j < 32; ++j) q[32 * b + j] = static_cast<int8_t>(qi[j]);
      d[b] = fp16_to_f32(f32_to_fp16(db));
    }
    qg::record_sums<Arch>(lay, rec);
  }
}

// Q8_K: the value of largest magnitude (the first one) maps to -127: d = max / -127,
// q = min(127, nearest(x * (-127 / max))).
template <class Arch>
void QuantizeActQ8K<Arch>::run(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst) {
  using F = xsimd::batch<float, Arch>;
  constexpr int W = static_cast<int>(F::size);
  const int64_t k = lay.k;
  for (int64_t t = 0; t < m; ++t) {
    uint8_t* rec = dst + static_cast<size_t>(t) * lay.bytes;
    auto* q = reinterpret_cast<int8_t*>(rec + lay.qs);
    auto* d = reinterpret_cast<float*>(rec + lay.d);
    const float* xr = x + t * k;
    for (int64_t b = 0; b < k / 256; ++b) {
      const float* xb = xr + 256 * b;
      const float amax = qg::abs_max<Arch>(xb, 256);
      if (!(amax > 0.f)) {
        std::memset(q + 256 * b, 0, 256);
        d[b] = 0.f;
        continue;
      }
      float max = 0;
      for (int j = 0; j < 256; ++j)
        if (std::fabs(xb[j]) == amax) {
          max = xb[j];
          break;
        }
      const float iscale = -127.f / max;
      alignas(64) int32_t qi[256];
      for (int j = 0; j < 256; j += W)
        xsimd::min(xsimd::nearbyint_as_int(F::load_unaligned(xb + j) * F(iscale)), xsimd::batch<int32_t, Arch>(127))
            .store_aligned(qi + j);
      for (int j = 0; j < 256; ++j) q[256 * b + j] = static_cast<int8_t>(qi[j]);
      d[b] = 1 / iscale;
    }
    qg::record_sums<Arch>(lay, rec);
  }
}

// Round to nearest even, NaN kept quiet (as f32_to_bf16); zero-padded to an even count.
template <class Arch>
void QuantizeActBf16<Arch>::run(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst) {
  using U = xsimd::batch<uint32_t, Arch>;
  constexpr int W = static_cast<int>(U::size);
  const int64_t k = lay.k;
  for (int64_t t = 0; t < m; ++t) {
    auto* o = reinterpret_cast<uint16_t*>(dst + static_cast<size_t>(t) * lay.bytes + lay.qs);
    const auto* xr = reinterpret_cast<const uint32_t*>(x + t * k);
    int64_t j = 0;
    alignas(64) uint32_t r[W];
    for (; j + W <= k; j += W) {
      const U u = U::load_unaligned(xr + j);
      const U rounded = (u + (U(0x7fffu) + ((u >> 16) & U(1u)))) >> 16;
      const U nan = (u >> 16) | U(64u);
      xsimd::select((u & U(0x7fffffffu)) > U(0x7f800000u), nan, rounded).store_aligned(r);
      for (int i = 0; i < W; ++i) o[j + i] = static_cast<uint16_t>(r[i]);
    }
    for (; j < k; ++j) o[j] = f32_to_bf16(x[t * k + j]);
    if (k % 2) o[k] = 0;
  }
}

#define LQ_CPU_QGEMM_KERNELS(X)                                                                           \
  X(QGemmQ4_0) X(QGemmQ5_0) X(QGemmQ8_0) X(QGemmQ2K) X(QGemmQ3K) X(QGemmQ4K) X(QGemmQ5K) X(QGemmQ6K) \
  X(GemmBf16) X(QuantizeActQ8_0) X(QuantizeActQ8K) X(QuantizeActBf16)

}  // namespace lq::cpu
