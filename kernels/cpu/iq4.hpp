// CPU kernels: IQ4_NL and IQ4_XS.
//   QuantizeIq4Nl, QuantizeIq4Xs  the reference search (ref/iq4_search.hpp) with vectorised block
//                                 preparation and candidate evaluation; byte-identical to
//                                 ref::quantize_iq4_nl / ref::quantize_iq4_xs (tests/cpu_isa_kernels_test.cpp).
//   DequantIq4Nl, DequantIq4Xs    nibbles -> int8 levels by a byte table lookup -> floats.
//   DotIq4Nl (x Q8_0), DotIq4Xs (x Q8_K)  int8 products summed in int32, one float FMA per block.
// Run: ./build/tests/lq_tests "[iquants],[isa]"; timings: a local loop over the type table's rows.
#pragma once

#include "arch.hpp"
#include "signatures.hpp"
#include "iq_superblock.hpp"

#include "types/ref/iq4.hpp"
#include "types/ref/iq4_search.hpp"

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace lq::cpu {

// The scalar reference's prepare/signed_max/eval with the same operations per element and the
// same 16-lane summation order (ref/lanes.hpp), so every decision of the search is identical.
// Two-level form of kCellTables.value for AVX-512: the cells 16k..16k+15 hold at most one switch
// between two levels (switches are at least 23 cells apart), so the level of cell c is
// c >= kSwitch[c / 16] ? kUpper[c / 16] : kLower[c / 16], three 32-entry register permutes
// instead of a gather.
struct Iq4Coarse {
  int32_t sw[32];
  float lower[32];
  float upper[32];
};
inline constexpr Iq4Coarse kIq4Coarse = [] {
  Iq4Coarse t{};
  for (int k = 0; k < 32; ++k) {
    const int c0 = 16 * k, c1 = std::min(16 * k + 15, ref::iq4::kCells - 1);
    t.lower[k] = ref::iq4::kCellTables.value[c0];
    t.upper[k] = ref::iq4::kCellTables.value[c1];
    t.sw[k] = 16 * k + 16;
    for (int c = c0; c <= c1; ++c)
      if (ref::iq4::kCellTables.value[c] != t.lower[k]) {
        t.sw[k] = c;
        break;
      }
  }
  return t;
}();
static constexpr bool iq4_coarse_exact() {
  for (int c = 0; c < ref::iq4::kCells; ++c) {
    const int k = c / 16;
    if ((c >= kIq4Coarse.sw[k] ? kIq4Coarse.upper[k] : kIq4Coarse.lower[k]) != ref::iq4::kCellTables.value[c]) return false;
  }
  return true;
}
static_assert(iq4_coarse_exact(), "the two-level level table must equal the cell table");

// kCellTables.value[c] for every lane of an AVX-512 batch (x86 only).
template <class Arch>
xsimd::batch<float, Arch> iq4_level_avx512(const xsimd::batch<int32_t, Arch>& c);
#if LQ_CPU_X86
template <class Arch>
xsimd::batch<float, Arch> iq4_level_avx512(const xsimd::batch<int32_t, Arch>& c) {
  const __m512i k = _mm512_srli_epi32(c, 4);
  const __m512i sw = _mm512_permutex2var_epi32(_mm512_loadu_si512(kIq4Coarse.sw), k,
                                               _mm512_loadu_si512(kIq4Coarse.sw + 16));
  const __m512 lower = _mm512_permutex2var_ps(_mm512_loadu_ps(kIq4Coarse.lower), k, _mm512_loadu_ps(kIq4Coarse.lower + 16));
  const __m512 upper = _mm512_permutex2var_ps(_mm512_loadu_ps(kIq4Coarse.upper), k, _mm512_loadu_ps(kIq4Coarse.upper + 16));
  return _mm512_mask_blend_ps(_mm512_cmpge_epi32_mask(c, sw), lower, upper);
}
#endif

template <class Arch>
struct Iq4Ops {
  using B = xsimd::batch<float, Arch>;
  using I = xsimd::batch<int32_t, Arch>;
  static constexpr int W = static_cast<int>(B::size);
  static constexpr int N = ref::kLanes / W;

  // kCellTables.value[c] for every lane.
  static B level(const I& c) {
    if constexpr (kAvx512<Arch>) {
      return iq4_level_avx512<Arch>(c);
    } else {
      return gather(ref::iq4::kCellTables.value, c);
    }
  }

  static void prepare(const float* src, const float* qw, float qfloor, int n, float* x, float* w, float* wx) {
    const B lo(-1e15f), hi(1e15f), zero(0.f);
    for (int j = 0; j < n; j += W) {
      const B v = B::load_unaligned(src + j);
      xsimd::select(v == v, xsimd::min(xsimd::max(v, lo), hi), zero).store_aligned(x + j);
    }
    if (!qw) return;
    B acc[N];
    for (auto& a : acc) a = zero;
    for (int j = 0; j < n; j += ref::kLanes)
      for (int c = 0; c < N; ++c) {
        const B v = B::load_aligned(x + j + c * W);
        acc[c] = acc[c] + v * v;
      }
    const B sigma2(2.f * reduce16(acc) / static_cast<float>(n));
    for (int j = 0; j < n; j += W) {
      const B q = B::load_unaligned(qw + j);
      const B v = B::load_aligned(x + j);
      const B wv = (xsimd::select(q >= zero, xsimd::min(q, hi), zero) + B(qfloor)) * xsimd::sqrt(sigma2 + v * v);
      wv.store_aligned(w + j);
      (wv * v).store_aligned(wx + j);
    }
  }

  static float signed_max(const float* x, int n) {
    B m(0.f);
    for (int j = 0; j < n; j += W) m = xsimd::max(m, xsimd::abs(B::load_aligned(x + j)));
    const float amax = hmax(m);
    const B vmax(amax);
    for (int j = 0; j < n; j += W) {
      if (!xsimd::any(xsimd::abs(B::load_aligned(x + j)) == vmax)) continue;
      for (int k = j; k < j + W; ++k)
        if (std::fabs(x[k]) == amax) return x[k];
    }
    return 0.f;
  }

  static void pack(const float* x, float d, uint8_t* qs) {
    const B vid(d != 0 ? 2.f / d : 0.f), lo(-256.f), hi(254.f), off(256.f), sixteen(16.f);
    alignas(64) int32_t q[ref::iq4::kBlock / 2];
    for (int j = 0; j < ref::iq4::kBlock / 2; j += W) {
      const B l0 = gather(ref::iq4::kCellTables.findex,
                          xsimd::to_int(xsimd::min(xsimd::max(vid * B::load_aligned(x + j), lo), hi) + off));
      const B l1 = gather(ref::iq4::kCellTables.findex,
                          xsimd::to_int(xsimd::min(xsimd::max(vid * B::load_aligned(x + j + 16), lo), hi) + off));
      xsimd::to_int(l0 + sixteen * l1).store_aligned(q + j);
    }
    for (int j = 0; j < ref::iq4::kBlock / 2; ++j) qs[j] = static_cast<uint8_t>(q[j]);
  }

  // Candidates are evaluated in groups so that their gathers overlap.
  static void eval(const float* x, const float* w, const float* wx, const float* id2, int n, ref::iq4::Sums* out) {
    if (w)
      eval_group<true>(x, w, wx, id2, n, out);
    else
      eval_group<false>(x, w, wx, id2, n, out);
  }

  template <bool Weighted>
  static void eval_group(const float* x, const float* w, const float* wx, const float* id2, int n,
                         ref::iq4::Sums* out) {
    constexpr int G = 6;
    const B lo(-256.f), hi(254.f), off(256.f);
    for (int c0 = 0; c0 < n; c0 += G) {
      const int g = n - c0 < G ? n - c0 : G;
      B a[G][N], b[G][N], vid[G];
      for (int c = 0; c < g; ++c) {
        vid[c] = B(id2[c0 + c]);
        for (int k = 0; k < N; ++k) a[c][k] = b[c][k] = B(0.f);
      }
      for (int j = 0; j < ref::iq4::kBlock; j += ref::kLanes) {
        for (int k = 0; k < N; ++k) {
          const B xv = B::load_aligned(x + j + k * W);
          const B wv = Weighted ? B::load_aligned(w + j + k * W) : B(1.f);
          const B wxv = Weighted ? B::load_aligned(wx + j + k * W) : xv;
          for (int c = 0; c < g; ++c) {
            const B v2 = xsimd::min(xsimd::max(vid[c] * xv, lo), hi);
            const B v = level(xsimd::to_int(v2 + off));
            a[c][k] = a[c][k] + wxv * v;
            b[c][k] = b[c][k] + (Weighted ? wv * (v * v) : v * v);
          }
        }
      }
      for (int c = 0; c < g; ++c) out[c0 + c] = {reduce16(a[c]), reduce16(b[c])};
    }
  }
};

template <class Arch>
void QuantizeIq4Nl<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  // TODO(aarch64): the NEON search differs from the reference's bytes with importance data
  // (check-aarch64.sh, [kernels][isa]); until it is found, NEON writes the reference's bytes.
  if constexpr (!LQ_CPU_X86) return ref::quantize_iq4_nl(src, dst, nrows, n_per_row, imatrix);
  ref::iq4::quantize_nl_rows<Iq4Ops<Arch>>(src, dst, nrows, n_per_row, imatrix);
}

template <class Arch>
void QuantizeIq4Xs<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  if constexpr (!LQ_CPU_X86) return ref::quantize_iq4_xs(src, dst, nrows, n_per_row, imatrix);  // see above
  ref::iq4::quantize_xs_rows<Iq4Ops<Arch>>(src, dst, nrows, n_per_row, imatrix);
}

// IQ4_XS as a codec for superblock_dequant / superblock_dot (iq_superblock.hpp). Its byte form is
// Bytes<Arch>'s (x86 only): instantiated only where kByteSimd<Arch>.
template <class Arch>
struct Iq4Xs {
  using block = ref::block_iq4_xs;
  static constexpr float kDotScale = 1.f;

  static typename Bytes<Arch>::V values(const block& b, int ib, int& mult) {
    mult = (((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | (((b.scales_h >> (2 * ib)) & 3) << 4)) - 32;
    return Bytes<Arch>::lut16(Bytes<Arch>::nibbles(b.qs + 16 * ib), ref::iq4::kValues);
  }
  static float dequant_scale(float d, int mult) { return d * static_cast<float>(mult); }
};

template <class Arch>
void DequantIq4Nl<Arch>::run(const void* src, float* dst, int64_t n) {
  if constexpr (!kByteSimd<Arch>) {
    ref::dequantize_iq4_nl(src, dst, n);
  } else {
    using V = Bytes<Arch>;
    const auto* x = static_cast<const ref::block_iq4_nl*>(src);
    for (int64_t i = 0; i < n / 32; ++i)
      V::store_scaled(V::lut16(V::nibbles(x[i].qs), ref::iq4::kValues), fp16_to_f32(x[i].d), dst + 32 * i);
  }
}

template <class Arch>
float DotIq4Nl<Arch>::run(int64_t n, const void* xv, const void* yv) {
  if constexpr (!kByteSimd<Arch>) {
    return ref::dot_iq4_nl(n, xv, yv);
  } else {
    using V = Bytes<Arch>;
    const auto* x = static_cast<const ref::block_iq4_nl*>(xv);
    const auto* y = static_cast<const ref::block_q8_0*>(yv);
    auto acc = V::fzero();
    for (int64_t i = 0; i < n / 32; ++i) {
      const auto p = V::dot(V::lut16(V::nibbles(x[i].qs), ref::iq4::kValues), V::load(y[i].qs));
      acc = V::fma(p, fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d), acc);
    }
    return V::hsum(acc);
  }
}

template <class Arch> void DequantIq4Xs<Arch>::run(const void* src, float* dst, int64_t n) { superblock_dequant<Arch, Iq4Xs<Arch>, ref::dequantize_iq4_xs>(src, dst, n); }
template <class Arch> float DotIq4Xs<Arch>::run(int64_t n, const void* x, const void* y) { return superblock_dot<Arch, Iq4Xs<Arch>, ref::dot_iq4_xs>(n, x, y); }

#define LQ_CPU_IQ4_KERNELS(X) \
  X(QuantizeIq4Nl) X(QuantizeIq4Xs) X(DequantIq4Nl) X(DequantIq4Xs) X(DotIq4Nl) X(DotIq4Xs)

}  // namespace lq::cpu
