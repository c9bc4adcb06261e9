// CPU kernels: float matrix products and row operations of the inference engine.
//
// Variants (each instantiated per ISA in isa.cpp.in, run-time dispatched in dispatch.cpp):
//   GemmNT      C[m x n] (+)= A[m x k] * B[n x k]^T; A float rows, B rows F32, F16 or BF16
//               (16-bit rows are widened tile by tile, never as a whole). m <= 3 runs as
//               row-by-row dot products (decode); larger m as a packed, register-blocked GEMM.
//   SoftmaxRow  x = exp(scale * x - max) / sum over one row.
//   SiluMul     out = silu(gate) * up.
//   GeluTanhMul out = gelu_tanh(gate) * up (Gemma's MLP; the tanh approximation of GELU).
//   SoftCapRow  x = cap * tanh(scale * x / cap) (Gemma 2's attention and final-logit soft-caps).
//   RmsNormRow  y = x / sqrt(mean(x^2) + eps) * g over one row (sum of squares in double).
//   AddSquares  acc[i] += x[r, i]^2 over rows r in order, in double (the activation importance sums).
//   RoundHalf   y = x rounded to binary16 and back (F16C where the ISA has it; ties to even).
//   GridError   d = s (q - z) - x, q = clamp(round_half_even(clamp(x, lo, hi) / s) + z, 0, maxq):
//               one group's error on an asymmetric integer grid (AWQ's clipping search, GPTQ's
//               scale search).
//   SumExpRow   a row of logits' max, its first index, and sum exp(x - max) (exponentials in
//               float, summed in double: llama-perplexity's arithmetic).
//   KldRow      sum exp(r - rmax - rls) ((r - m) - k) in double: one position's KL divergence
//               from two rows of logits (perplexity's --kl-divergence, the sensitivity tables).
//   (SumExpRow and KldRow sum element i into partial i mod 8, in 16-element steps on every ISA.)
// Check them with `lq_tests "[engine]"`; time them with `engine_bench`.
#pragma once

#include "arch.hpp"
#include "backend/ops.hpp"
#include "core/half.hpp"
#include "isa_ops.hpp"
#include "transpose.hpp"

#include <lq/quant_type.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace lq::cpu {

/// Arguments of GemmNT (the back-end-neutral GEMM of lib/backend/ops.hpp). Strides are in
/// elements (lda, ldc: floats; ldb: elements of btype).
using GemmArgs = lq::detail::GemmArgs;

template <class Arch>
struct GemmNT {
  static void run(GemmArgs g);
};
template <class Arch>
struct SoftmaxRow {
  static void run(int64_t n, float* x, float scale);
};
template <class Arch>
struct SiluMul {
  static void run(int64_t n, const float* gate, const float* up, float* out);
};
template <class Arch>
struct GeluTanhMul {
  static void run(int64_t n, const float* gate, const float* up, float* out);
};
template <class Arch>
struct SoftCapRow {
  static void run(int64_t n, float* x, float scale, float cap);
};
template <class Arch>
struct AddSquares {
  static void run(int64_t n, const float* x, int64_t ldx, int64_t rows, double* acc);
};
template <class Arch>
struct RoundHalf {
  static void run(int64_t n, const float* x, float* y);
};
template <class Arch>
struct GridError {
  static void run(int64_t n, const float* x, float lo, float hi, float s, float z, float maxq, float* d);
};
template <class Arch>
struct SumExpRow {
  static double run(int64_t n, const float* x, float* max, int64_t* argmax);
};
template <class Arch>
struct KldRow {
  static double run(int64_t n, const float* r, const float* m, float rmax, float rls, double k);
};
template <class Arch>
struct RmsNormRow {
  /// Returns the row's scale 1 / sqrt(mean(x^2) + eps).
  static float run(int64_t d, const float* x, const float* g, float eps, float* y);
};

namespace mm {

// binary16 -> binary32 without branches on the common path (vectorises): the 15 magnitude bits
// shifted into a float's exponent/mantissa field and scaled by 2^112 re-bias the exponent, and
// the same multiplication normalises subnormal halves exactly; exponent 31 (inf/NaN) is patched.
inline float half_to_float(uint16_t h) {
  const uint32_t em = h & 0x7fffu;
  uint32_t bits = std::bit_cast<uint32_t>(std::bit_cast<float>(em << 13) * 0x1p112f);
  if (em >= 0x7c00u) bits = 0x7f800000u | ((em & 0x3ffu) << 13);
  return std::bit_cast<float>(bits | (static_cast<uint32_t>(h & 0x8000u) << 16));
}

// Widens n values of row `src` (type t) starting at element k0 into dst.
inline void widen(QuantType t, const void* src, int64_t k0, int64_t n, float* dst) {
#if defined(__F16C__)
  if (t == QuantType::F16) {
    // F16C converts exactly (subnormals included), 8 halves per instruction.
    const uint16_t* s = static_cast<const uint16_t*>(src) + k0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
    for (; i < n; ++i) dst[i] = half_to_float(s[i]);
    return;
  }
#endif
  if (t == QuantType::F32) {
    std::memcpy(dst, static_cast<const float*>(src) + k0, static_cast<size_t>(n) * sizeof(float));
  } else if (t == QuantType::BF16) {
    const uint16_t* s = static_cast<const uint16_t*>(src) + k0;
    auto* d = reinterpret_cast<uint32_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = static_cast<uint32_t>(s[i]) << 16;
  } else {
    const uint16_t* s = static_cast<const uint16_t*>(src) + k0;
    for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(s[i]);
  }
}

inline const void* row_ptr(QuantType t, const void* b, int64_t ldb, int64_t j) {
  const size_t es = t == QuantType::F32 ? 4 : 2;
  return static_cast<const uint8_t*>(b) + static_cast<size_t>(j * ldb) * es;
}

// B rows j0 .. j0 + ncols, elements pc .. pc + kc, into a panel of NR columns per k:
// panel[k * NR + j] (zeros past ncols). Groups of 16 rows are widened into `rows` and transposed
// 16 x 16 (transpose.hpp); a remainder goes element by element.
template <class Arch, int NR>
void pack_panel(QuantType t, const void* b, int64_t ldb, int64_t j0, int ncols, int64_t pc, int64_t kc, float* rows,
                int64_t ldr, float* panel) {
  int c = 0;
  for (; c + 16 <= ncols; c += 16) {
    const int32_t* src = reinterpret_cast<const int32_t*>(rows);
    int64_t stride = ldr;
    if (t == QuantType::F32) {
      src = static_cast<const int32_t*>(row_ptr(t, b, ldb, j0 + c)) + pc;
      stride = ldb;
    } else {
      for (int r = 0; r < 16; ++r) widen(t, row_ptr(t, b, ldb, j0 + c + r), pc, kc, rows + r * ldr);
    }
    transpose16<Arch>(src, stride, kc, reinterpret_cast<int32_t*>(panel) + c, NR);
  }
  for (; c < NR; ++c) {
    if (c >= ncols) {
      for (int64_t k = 0; k < kc; ++k) panel[k * NR + c] = 0.f;
      continue;
    }
    const void* brow = row_ptr(t, b, ldb, j0 + c);
    const float* src = rows;
    if (t == QuantType::F32) src = static_cast<const float*>(brow) + pc;
    else widen(t, brow, pc, kc, rows);
    for (int64_t k = 0; k < kc; ++k) panel[k * NR + c] = src[k];
  }
}

// Register block: R rows of A times one packed panel of 2 vectors of B columns.
template <class Arch, int R>
inline void micro_kernel(int64_t kc, const float* a, int64_t lda, const float* bp, float* c, int64_t ldc,
                         int ncols, bool load_c) {
  using B = xsimd::batch<float, Arch>;
  constexpr int W = static_cast<int>(B::size);
  B c0[R], c1[R];
  for (int r = 0; r < R; ++r) { c0[r] = B(0.f); c1[r] = B(0.f); }
  for (int64_t k = 0; k < kc; ++k) {
    const B b0 = B::load_aligned(bp + k * 2 * W);
    const B b1 = B::load_aligned(bp + k * 2 * W + W);
    for (int r = 0; r < R; ++r) {
      const B av(a[r * lda + k]);
      c0[r] = IsaOps<Arch>::fma(av, b0, c0[r]);
      c1[r] = IsaOps<Arch>::fma(av, b1, c1[r]);
    }
  }
  if (ncols == 2 * W) {
    for (int r = 0; r < R; ++r) {
      float* cr = c + r * ldc;
      if (load_c) {
        c0[r] += B::load_unaligned(cr);
        c1[r] += B::load_unaligned(cr + W);
      }
      c0[r].store_unaligned(cr);
      c1[r].store_unaligned(cr + W);
    }
    return;
  }
  alignas(64) float tmp[2 * W];
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    c0[r].store_aligned(tmp);
    c1[r].store_aligned(tmp + W);
    for (int j = 0; j < ncols; ++j) cr[j] = load_c ? cr[j] + tmp[j] : tmp[j];
  }
}

}  // namespace mm

template <class Arch>
void GemmNT<Arch>::run(GemmArgs g) {
  using B = xsimd::batch<float, Arch>;
  constexpr int W = static_cast<int>(B::size);
  constexpr int NR = 2 * W;  // columns per register block
  constexpr int MR = 6;      // rows per register block: 12 accumulators + 2 B + 1 broadcast
  constexpr int64_t KC = 512, NC = 128, MC = 96;
  constexpr int64_t KV = 256;  // GEMV chunk of k

  if (g.m <= 3) {
    // Decode-sized products: each B row is widened chunk by chunk and reused for the m rows.
    alignas(64) float wbuf[KV];
    for (int64_t j = 0; j < g.n; ++j) {
      const void* brow = mm::row_ptr(g.btype, g.b, g.ldb, j);
      B acc[3] = {B(0.f), B(0.f), B(0.f)};
      float tail[3] = {0.f, 0.f, 0.f};
      for (int64_t k0 = 0; k0 < g.k; k0 += KV) {
        const int64_t kn = std::min(KV, g.k - k0);
        const float* w = wbuf;
        if (g.btype == QuantType::F32) w = static_cast<const float*>(brow) + k0;
        else mm::widen(g.btype, brow, k0, kn, wbuf);
        const int64_t kv = kn / W * W;
        for (int64_t i = 0; i < g.m; ++i) {
          const float* a = g.a + i * g.lda + k0;
          B s = acc[i];
          for (int64_t k = 0; k < kv; k += W) s = IsaOps<Arch>::fma(B::load_unaligned(a + k), B::load_unaligned(w + k), s);
          acc[i] = s;
          for (int64_t k = kv; k < kn; ++k) tail[i] += a[k] * w[k];
        }
      }
      for (int64_t i = 0; i < g.m; ++i) {
        const float v = hsum(acc[i]) + tail[i];
        float& c = g.c[i * g.ldc + j];
        c = g.accumulate ? c + v : v;
      }
    }
    return;
  }

  // Packed panel buffer: KC x NC floats, column panels of NR interleaved per k.
  alignas(64) static thread_local float packed[KC * NC];
  alignas(64) static thread_local float rowbuf[16 * KC];
  // Last needed column of rows [r0, r0 + rows) and the end of their nonzero A terms.
  auto col_limit = [&](int64_t r0, int64_t rows) { return g.c_causal < 0 ? g.n : r0 + rows + g.c_causal; };
  auto k_limit = [&](int64_t r0, int64_t rows) { return g.a_causal < 0 ? g.k : r0 + rows + g.a_causal; };
  for (int64_t jc = 0; jc < g.n; jc += NC) {
    if (jc >= col_limit(0, g.m)) break;
    const int64_t nc = std::min(NC, g.n - jc);
    for (int64_t pc = 0; pc < g.k; pc += KC) {
      if (pc >= k_limit(0, g.m)) break;
      const int64_t kc = std::min(KC, g.k - pc);
      const bool load_c = g.accumulate || pc > 0;
      for (int64_t jr = 0; jr < nc; jr += NR) {
        const int ncols = static_cast<int>(std::min<int64_t>(NR, nc - jr));
        mm::pack_panel<Arch, NR>(g.btype, g.b, g.ldb, jc + jr, ncols, pc, kc, rowbuf, KC,
                                 packed + (jr / NR) * (KC * NR));
      }
      for (int64_t ic = 0; ic < g.m; ic += MC) {
        const int64_t mc = std::min(MC, g.m - ic);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const float* panel = packed + (jr / NR) * (KC * NR);
          const int ncols = static_cast<int>(std::min<int64_t>(NR, nc - jr));
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t mr = std::min<int64_t>(MR, mc - ir);
            if (jc + jr >= col_limit(ic + ir, mr)) continue;
            // Rows whose A terms end before this k block keep the sums of the earlier blocks.
            const int64_t ke = std::min(kc, k_limit(ic + ir, mr) - pc);
            if (ke <= 0) continue;
            const float* a = g.a + (ic + ir) * g.lda + pc;
            float* c = g.c + (ic + ir) * g.ldc + jc + jr;
            switch (mr) {
              case 6: mm::micro_kernel<Arch, 6>(ke, a, g.lda, panel, c, g.ldc, ncols, load_c); break;
              case 5: mm::micro_kernel<Arch, 5>(ke, a, g.lda, panel, c, g.ldc, ncols, load_c); break;
              case 4: mm::micro_kernel<Arch, 4>(ke, a, g.lda, panel, c, g.ldc, ncols, load_c); break;
              case 3: mm::micro_kernel<Arch, 3>(ke, a, g.lda, panel, c, g.ldc, ncols, load_c); break;
              case 2: mm::micro_kernel<Arch, 2>(ke, a, g.lda, panel, c, g.ldc, ncols, load_c); break;
              default: mm::micro_kernel<Arch, 1>(ke, a, g.lda, panel, c, g.ldc, ncols, load_c); break;
            }
          }
        }
      }
    }
  }
}

template <class Arch>
void SoftmaxRow<Arch>::run(int64_t n, float* x, float scale) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  const int64_t nv = n / W * W;
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i] * scale);
  if (mx == -INFINITY) {  // every entry masked: leave a zero row rather than NaNs
    std::fill(x, x + n, 0.f);
    return;
  }
  const B vs(scale), vm(mx);
  B vsum(0.f);
  for (int64_t i = 0; i < nv; i += W) {
    const B e = xsimd::exp(xsimd::fms(B::load_unaligned(x + i), vs, vm));
    e.store_unaligned(x + i);
    vsum += e;
  }
  float sum = hsum(vsum);
  for (int64_t i = nv; i < n; ++i) {
    x[i] = std::exp(x[i] * scale - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  const B vi(inv);
  for (int64_t i = 0; i < nv; i += W) (B::load_unaligned(x + i) * vi).store_unaligned(x + i);
  for (int64_t i = nv; i < n; ++i) x[i] *= inv;
}

template <class Arch>
void SiluMul<Arch>::run(int64_t n, const float* gate, const float* up, float* out) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  const int64_t nv = n / W * W;
  const B one(1.f);
  for (int64_t i = 0; i < nv; i += W) {
    const B g = B::load_unaligned(gate + i);
    (g / (one + xsimd::exp(-g)) * B::load_unaligned(up + i)).store_unaligned(out + i);
  }
  for (int64_t i = nv; i < n; ++i) out[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
}

// GELU's tanh form, 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))), and the soft-cap: xsimd's
// vector tanh (within a few ulp of the C library's), the C library's on the tail.
template <class Arch>
void GeluTanhMul<Arch>::run(int64_t n, const float* gate, const float* up, float* out) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  const int64_t nv = n / W * W;
  const B half(0.5f), one(1.f), k(0.7978845608f), a(0.044715f);
  for (int64_t i = 0; i < nv; i += W) {
    const B g = B::load_unaligned(gate + i);
    const B t = xsimd::tanh(k * (g + a * g * g * g));
    (half * g * (one + t) * B::load_unaligned(up + i)).store_unaligned(out + i);
  }
  for (int64_t i = nv; i < n; ++i) {
    const float g = gate[i];
    out[i] = 0.5f * g * (1.0f + std::tanh(0.7978845608f * (g + 0.044715f * g * g * g))) * up[i];
  }
}

template <class Arch>
void SoftCapRow<Arch>::run(int64_t n, float* x, float scale, float cap) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  const int64_t nv = n / W * W;
  const B vs(scale), vc(cap);
  for (int64_t i = 0; i < nv; i += W)
    (vc * xsimd::tanh(B::load_unaligned(x + i) * vs / vc)).store_unaligned(x + i);
  for (int64_t i = nv; i < n; ++i) x[i] = cap * std::tanh(x[i] * scale / cap);
}

template <class Arch>
float RmsNormRow<Arch>::run(int64_t d, const float* x, const float* g, float eps, float* y) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  // Eight independent double partial sums: the compiler vectorises them (no reassociation of
  // one sum), and double keeps the mean exact to float precision for any row length.
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const int64_t d8 = d / 8 * 8;
  for (int64_t i = 0; i < d8; i += 8)
    for (int l = 0; l < 8; ++l) part[l] += static_cast<double>(x[i + l]) * x[i + l];
  double ss = 0;
  for (int l = 0; l < 8; ++l) ss += part[l];
  for (int64_t i = d8; i < d; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(d)) + eps);
  const int64_t nv = d / W * W;
  const B vs(scale);
  for (int64_t i = 0; i < nv; i += W)
    (B::load_unaligned(x + i) * vs * B::load_unaligned(g + i)).store_unaligned(y + i);
  for (int64_t i = nv; i < d; ++i) y[i] = (x[i] * scale) * g[i];
  return scale;
}

template <class Arch>
void AddSquares<Arch>::run(int64_t n, const float* x, int64_t ldx, int64_t rows, double* acc) {
  // Blocks of CB columns keep their sums in registers over all rows (the additions per column
  // stay in row order); independent lanes: the compiler vectorises this with the ISA's float ->
  // double conversion.
  constexpr int64_t CB = 32;
  int64_t c0 = 0;
  for (; c0 + CB <= n; c0 += CB) {
    double v[CB];
#pragma GCC unroll 32
    for (int64_t i = 0; i < CB; ++i) v[i] = acc[c0 + i];
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * ldx + c0;
#pragma GCC unroll 32
      for (int64_t i = 0; i < CB; ++i) {
        const double d = xr[i];
        v[i] += d * d;
      }
    }
#pragma GCC unroll 32
    for (int64_t i = 0; i < CB; ++i) acc[c0 + i] = v[i];
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = c0; i < n; ++i) {
      const double d = x[r * ldx + i];
      acc[i] += d * d;
    }
}

template <class Arch>
void RoundHalf<Arch>::run(int64_t n, const float* x, float* y) {
  int64_t i = 0;
#if defined(__F16C__)
  // The conversion instructions round to nearest even, subnormals included, as fp16 does.
  if constexpr (kAvx512<Arch>) {
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
  }
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
#endif
  for (; i < n; ++i) y[i] = fp16_to_f32(f32_to_fp16(x[i]));
}

template <class Arch>
void GridError<Arch>::run(int64_t n, const float* x, float lo, float hi, float s, float z, float maxq, float* d) {
  // Division, rounding and the clamps are exact per lane, so every ISA gives the scalar loop's
  // values (round_half_even: xsimd's nearbyint, the current rounding mode as std::nearbyint),
  // provided s (q - z) - x is not fused into one rounding: clang contracted it here despite
  // -ffp-contract=off (the sanitizer build, one ulp off the scalar values).
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  const int64_t nv = n / W * W;
  const B vlo(lo), vhi(hi), vs(s), vz(z), vzero(0.0f), vmax(maxq);
  for (int64_t i = 0; i < nv; i += W) {
    const B v = B::load_unaligned(x + i);
    const B q = xsimd::min(xsimd::max(xsimd::nearbyint(xsimd::min(xsimd::max(v, vlo), vhi) / vs) + vz, vzero), vmax);
    (vs * (q - vz) - v).store_unaligned(d + i);
  }
  for (int64_t i = nv; i < n; ++i) {
    const float q = std::min(std::max(std::nearbyint(std::min(std::max(x[i], lo), hi) / s) + z, 0.0f), maxq);
    d[i] = s * (q - z) - x[i];
  }
}

namespace mm {
constexpr int64_t kRowStep = 16;  // SumExpRow / KldRow: elements a step (a multiple of every batch size)

// exp(x[i] - c) for i < 16 (the first `valid`; the rest 0) into e, on the vector unit.
template <class Arch>
inline void exp_step(const float* x, int64_t valid, float c, float* e) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  static_assert(kRowStep % W == 0);
  alignas(64) float pad[kRowStep];
  const float* src = x;
  if (valid < kRowStep) {
    for (int64_t l = 0; l < kRowStep; ++l) pad[l] = l < valid ? x[l] : c;
    src = pad;
  }
  for (int64_t l = 0; l < kRowStep; l += W) xsimd::exp(B::load_unaligned(src + l) - B(c)).store_aligned(e + l);
  for (int64_t l = valid; l < kRowStep; ++l) e[l] = 0.f;
}
}  // namespace mm

template <class Arch>
double SumExpRow<Arch>::run(int64_t n, const float* x, float* max, int64_t* argmax) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  const int64_t nv = n / W * W;
  float mx = n > 0 ? x[0] : 0.f;
  if (nv > 0) {
    B vm = B::load_unaligned(x);
    for (int64_t i = W; i < nv; i += W) vm = xsimd::max(vm, B::load_unaligned(x + i));
    mx = std::max(mx, hmax(vm));
  }
  for (int64_t i = nv; i < n; ++i) mx = std::max(mx, x[i]);
  int64_t am = 0;
  for (int64_t i = 0; i < n; i += W) {
    if (i + W <= n && !xsimd::any(B::load_unaligned(x + i) == B(mx))) continue;
    for (int64_t j = i; j < std::min(n, i + W); ++j)
      if (x[j] == mx) {
        am = j;
        i = n;
        break;
      }
  }
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  alignas(64) float e[mm::kRowStep];
  for (int64_t i = 0; i < n; i += mm::kRowStep) {
    mm::exp_step<Arch>(x + i, std::min(mm::kRowStep, n - i), mx, e);
    for (int64_t l = 0; l < mm::kRowStep; ++l) part[l & 7] += e[l];
  }
  *max = mx;
  *argmax = am;
  double sum = 0;
  for (double p : part) sum += p;
  return sum;
}

template <class Arch>
double KldRow<Arch>::run(int64_t n, const float* r, const float* m, float rmax, float rls, double k) {
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  alignas(64) float t[mm::kRowStep], e[mm::kRowStep];
  for (int64_t i = 0; i < n; i += mm::kRowStep) {
    const int64_t valid = std::min(mm::kRowStep, n - i);
    for (int64_t l = 0; l < valid; ++l) t[l] = r[i + l] - rmax;
    mm::exp_step<Arch>(t, valid, rls, e);
    if (valid == mm::kRowStep) {
      for (int64_t l = 0; l < mm::kRowStep; ++l)
        part[l & 7] += static_cast<double>(e[l]) * ((static_cast<double>(r[i + l]) - m[i + l]) - k);
    } else {
      for (int64_t l = 0; l < valid; ++l)
        part[l & 7] += static_cast<double>(e[l]) * ((static_cast<double>(r[i + l]) - m[i + l]) - k);
    }
  }
  double sum = 0;
  for (double p : part) sum += p;
  return sum;
}

#define LQ_CPU_MATMUL_KERNELS(X) \
  X(GemmNT) X(SoftmaxRow) X(SiluMul) X(GeluTanhMul) X(SoftCapRow) X(RmsNormRow) X(AddSquares) X(RoundHalf) X(GridError) \
  X(SumExpRow) X(KldRow)

}  // namespace lq::cpu
