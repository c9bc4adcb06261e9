// CPU kernels: dot products of the legacy 32-value block types against their activation types.
//   DotQ8_0, DotQ4_0, DotQ5_0        against Q8_0 activations; DotQ4_1, DotQ5_1 against Q8_1.
//   TileQ8_0, TileQ4_0, TileQ5_0     4 weight rows x 4 Q8_0 activation rows of dots at once
//                                    (prompt processing: decoded weights and activations are
//                                    reused from registers across the tile).
// The dots need AVX2 integer instructions (x86-64 only); the SSE2 and NEON instantiations call
// the scalar reference. The x86 bodies (the *_x86 templates below) are declared on every
// processor and defined on x86-64 only.
// Check them with `lq_tests "[engine]"` (tile and single dots against the scalar reference).
#pragma once

#include "arch.hpp"
#include "signatures.hpp"

#include "core/half.hpp"
#include "types/ref/blocks.hpp"
#include "types/ref/legacy.hpp"

#include <lq/quant_type.hpp>

#if LQ_CPU_X86
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstring>

namespace lq::cpu {

namespace ldot {

// Not a version comparison: xsimd's NEON versions are numbered above the x86 ones.
template <class Arch>
inline constexpr bool has_avx2 = std::is_base_of_v<xsimd::avx2, Arch> || kAvx512<Arch>;

template <class Arch, class Dec>
float dot_affine_x86(int64_t n, const void* xv, const void* yv);

#if LQ_CPU_X86

// Integer block products (xsimd 8.1 has no widening int8 multiply-add): maddubs multiplies
// unsigned by signed bytes into int16 pair sums, madd with ones widens them to int32 lanes.
// 32 unsigned (0..31) x 32 signed bytes.
template <class Arch>
inline __m256i u8_pair_sums(__m256i x, __m256i y) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));
}
// 16 bytes of packed nibbles -> 32 bytes: low nibbles of bytes 0..15, then the high nibbles.
template <class Arch>
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}
// 32 bits -> 32 bytes, 0x10 where bit j of qh is set.
template <class Arch>
inline __m256i fifth_bits(const uint8_t* qh4) {
  uint32_t qh;
  std::memcpy(&qh, qh4, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(qh)), shuf);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}
template <class Arch>
inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
template <class Arch>
inline __m256i load32(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
template <class Arch>
inline float hsum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

#endif  // LQ_CPU_X86

// Q4_1 / Q5_1 against Q8_1: unsigned levels times the activations, the mins through the
// activation sums (s = d * sum of the block's values).
struct DecodeQ4_1 {
  using block = ref::block_q4_1;
  static constexpr DotSig* ref_dot = ref::dot_q4_1;
#if LQ_CPU_X86
  template <class Arch>
  static __m256i u(const block& b) { return unpack_nibbles<Arch>(b.qs); }
#endif
};
struct DecodeQ5_1 {
  using block = ref::block_q5_1;
  static constexpr DotSig* ref_dot = ref::dot_q5_1;
#if LQ_CPU_X86
  template <class Arch>
  static __m256i u(const block& b) { return _mm256_or_si256(unpack_nibbles<Arch>(b.qs), fifth_bits<Arch>(b.qh)); }
#endif
};

#if LQ_CPU_X86
template <class Arch, class Dec>
float dot_affine_x86(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const typename Dec::block*>(xv);
  const auto* y = static_cast<const ref::block_q8_1*>(yv);
  __m256 acc = _mm256_setzero_ps();
  float offs = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    const __m256i s = u8_pair_sums<Arch>(Dec::template u<Arch>(x[i]), load32<Arch>(y[i].qs));
    const __m256 d = _mm256_set1_ps(h2f<Arch>(x[i].d) * h2f<Arch>(y[i].d));
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc);
    offs += h2f<Arch>(x[i].m) * h2f<Arch>(y[i].s);
  }
  return hsum8<Arch>(acc) + offs;
}
#endif  // LQ_CPU_X86

template <class Arch, class Dec>
float dot_affine(int64_t n, const void* xv, const void* yv) {
  if constexpr (!has_avx2<Arch>) {
    return Dec::ref_dot(n, xv, yv);
  } else {
    return dot_affine_x86<Arch, Dec>(n, xv, yv);
  }
}

}  // namespace ldot

template <class Arch> float DotQ4_1<Arch>::run(int64_t n, const void* x, const void* y) { return ldot::dot_affine<Arch, ldot::DecodeQ4_1>(n, x, y); }
template <class Arch> float DotQ5_1<Arch>::run(int64_t n, const void* x, const void* y) { return ldot::dot_affine<Arch, ldot::DecodeQ5_1>(n, x, y); }

namespace ldot {

// Weight blocks decoded to 32 signed bytes (the value without the scale).
struct DecodeQ8_0 {
  using block = ref::block_q8_0;
  static lq::DotFn ref_dot() { return ref::dot_q8_0; }
#if LQ_CPU_X86
  template <class Arch>
  static __m256i q(const block& b) { return load32<Arch>(b.qs); }
#endif
};
struct DecodeQ4_0 {
  using block = ref::block_q4_0;
  static lq::DotFn ref_dot() { return ref::dot_q4_0; }
#if LQ_CPU_X86
  template <class Arch>
  static __m256i q(const block& b) { return _mm256_sub_epi8(unpack_nibbles<Arch>(b.qs), _mm256_set1_epi8(8)); }
#endif
};
struct DecodeQ5_0 {
  using block = ref::block_q5_0;
  static lq::DotFn ref_dot() { return ref::dot_q5_0; }
#if LQ_CPU_X86
  template <class Arch>
  static __m256i q(const block& b) {
    return _mm256_sub_epi8(_mm256_or_si256(unpack_nibbles<Arch>(b.qs), fifth_bits<Arch>(b.qh)), _mm256_set1_epi8(16));
  }
#endif
};

// R weight rows x T activation rows of dots: y[t * ldy + r]. The products use |w| * (y * sign(w))
// through maddubs; every quant value is within [-127, 127], so no int16 pair sum saturates. The
// single dots are the 1 x 1 case, so tiled (batched) and single (decode) results are identical.
template <class Arch, class Dec, int R, int T>
void tile_dots_x86(int64_t k, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* y, int64_t ldy);

template <class Arch, class Dec, int R, int T>
void tile_dots(int64_t k, const void* wv, size_t ws, const void* xv, size_t xs, float* y, int64_t ldy) {
  const auto* w = static_cast<const uint8_t*>(wv);
  const auto* x = static_cast<const uint8_t*>(xv);
  if constexpr (!has_avx2<Arch>) {
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) y[t * ldy + r] = Dec::ref_dot()(k, w + r * ws, x + t * xs);
  } else {
    tile_dots_x86<Arch, Dec, R, T>(k, w, ws, x, xs, y, ldy);
  }
}

#if LQ_CPU_X86
template <class Arch, class Dec, int R, int T>
void tile_dots_x86(int64_t k, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* y, int64_t ldy) {
  using WB = typename Dec::block;
  using XB = ref::block_q8_0;
  const int64_t nb = k / 32;
  if constexpr (kAvx512<Arch> && R == 1 && T == 1) {
    // The single dot: the scale product dw * dy is the same IEEE product as the tile's per-lane
    // multiply, so results are bit-identical to the tiled path.
    __m512 acc = _mm512_setzero_ps();
    const __m512i ones = _mm512_set1_epi16(1);
    const __m512i zero = _mm512_setzero_si512();
    const WB* wb = reinterpret_cast<const WB*>(w);
    const XB* xb = reinterpret_cast<const XB*>(x);
    for (int64_t b = 0; b < nb; b += 2) {
      const bool two = b + 1 < nb;
      const __m256i q1 = two ? Dec::template q<Arch>(wb[b + 1]) : _mm256_setzero_si256();
      const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(Dec::template q<Arch>(wb[b])), q1, 1);
      const __m256i y1 = two ? load32<Arch>(xb[b + 1].qs) : _mm256_setzero_si256();
      const __m512i qy = _mm512_inserti64x4(_mm512_castsi256_si512(load32<Arch>(xb[b].qs)), y1, 1);
      const __m512i sq = _mm512_mask_sub_epi8(qy, _mm512_movepi8_mask(q), zero, qy);
      const __m512i p = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(q), sq), ones);
      const float s1 = two ? h2f<Arch>(wb[b + 1].d) * h2f<Arch>(xb[b + 1].d) : 0.f;
      const __m512 sc = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(h2f<Arch>(wb[b].d) * h2f<Arch>(xb[b].d)),
                                             _mm512_set1_ps(s1));
      acc = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(p), acc);
    }
    *y = _mm512_reduce_add_ps(acc);
  } else if constexpr (kAvx512<Arch>) {
    // Two blocks per 512-bit register (lanes 0-7: block b, 8-15: block b + 1).
    __m512 acc[R][T];
    for (auto& row : acc)
      for (auto& a : row) a = _mm512_setzero_ps();
    const __m512i ones = _mm512_set1_epi16(1);
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t b = 0; b < nb; b += 2) {
      const bool two = b + 1 < nb;
      __m512i aw[R];
      __mmask64 mw[R];
      __m512 sw[R];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const WB* wb = reinterpret_cast<const WB*>(w + r * ws) + b;
        const __m256i q1 = two ? Dec::template q<Arch>(wb[1]) : _mm256_setzero_si256();
        const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(Dec::template q<Arch>(wb[0])), q1, 1);
        mw[r] = _mm512_movepi8_mask(q);
        aw[r] = _mm512_abs_epi8(q);
        sw[r] = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(h2f<Arch>(wb[0].d)),
                                     _mm512_set1_ps(two ? h2f<Arch>(wb[1].d) : 0.f));
      }
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) {
        const XB* xb = reinterpret_cast<const XB*>(x + t * xs) + b;
        const __m256i y1 = two ? load32<Arch>(xb[1].qs) : _mm256_setzero_si256();
        const __m512i qy = _mm512_inserti64x4(_mm512_castsi256_si512(load32<Arch>(xb[0].qs)), y1, 1);
        const __m512 sy = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(h2f<Arch>(xb[0].d)),
                                               _mm512_set1_ps(two ? h2f<Arch>(xb[1].d) : 0.f));
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const __m512i sq = _mm512_mask_sub_epi8(qy, mw[r], zero, qy);
          const __m512i p = _mm512_madd_epi16(_mm512_maddubs_epi16(aw[r], sq), ones);
          acc[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(sw[r], sy), _mm512_cvtepi32_ps(p), acc[r][t]);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
  } else {
    // 16 AVX2 registers: at most two weight rows at a time, one block per register.
    const __m256i ones = _mm256_set1_epi16(1);
    constexpr int RG = R < 2 ? R : 2;
    for (int r0 = 0; r0 < R; r0 += RG) {
      __m256 acc[RG][T];
      for (auto& row : acc)
        for (auto& a : row) a = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        __m256i qw[RG], aw[RG];
        float dw[RG];
#pragma GCC unroll 2
        for (int r = 0; r < RG; ++r) {
          const WB& wb = reinterpret_cast<const WB*>(w + (r0 + r) * ws)[b];
          qw[r] = Dec::template q<Arch>(wb);
          aw[r] = _mm256_sign_epi8(qw[r], qw[r]);
          dw[r] = h2f<Arch>(wb.d);
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t) {
          const XB& xb = reinterpret_cast<const XB*>(x + t * xs)[b];
          const __m256i qy = load32<Arch>(xb.qs);
          const float dy = h2f<Arch>(xb.d);
#pragma GCC unroll 2
          for (int r = 0; r < RG; ++r) {
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(qy, qw[r])), ones);
            acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * dy), _mm256_cvtepi32_ps(p), acc[r][t]);
          }
        }
      }
      for (int r = 0; r < RG; ++r)
        for (int t = 0; t < T; ++t) y[t * ldy + r0 + r] = hsum8<Arch>(acc[r][t]);
    }
  }
}
#endif  // LQ_CPU_X86

// The single dot is the 1 x 1 tile.
template <class Arch, class Dec>
float single_dot(int64_t n, const void* x, const void* y) {
  float r;
  tile_dots<Arch, Dec, 1, 1>(n, x, 0, y, 0, &r, 1);
  return r;
}

}  // namespace ldot

// y[t * ldy + r] = dot(row r of w, row t of x) for r, t < 4: w rows `ws` bytes apart in the
// weight type, x rows `xs` bytes apart in Q8_0; k values per row.
template <class Arch>
void TileQ8_0<Arch>::run(int64_t k, const void* w, size_t ws, const void* x, size_t xs, float* y, int64_t ldy) {
  ldot::tile_dots<Arch, ldot::DecodeQ8_0, 4, 4>(k, w, ws, x, xs, y, ldy);
}
template <class Arch>
void TileQ4_0<Arch>::run(int64_t k, const void* w, size_t ws, const void* x, size_t xs, float* y, int64_t ldy) {
  ldot::tile_dots<Arch, ldot::DecodeQ4_0, 4, 4>(k, w, ws, x, xs, y, ldy);
}
template <class Arch>
void TileQ5_0<Arch>::run(int64_t k, const void* w, size_t ws, const void* x, size_t xs, float* y, int64_t ldy) {
  ldot::tile_dots<Arch, ldot::DecodeQ5_0, 4, 4>(k, w, ws, x, xs, y, ldy);
}
template <class Arch> float DotQ8_0<Arch>::run(int64_t n, const void* x, const void* y) { return ldot::single_dot<Arch, ldot::DecodeQ8_0>(n, x, y); }
template <class Arch> float DotQ4_0<Arch>::run(int64_t n, const void* x, const void* y) { return ldot::single_dot<Arch, ldot::DecodeQ4_0>(n, x, y); }
template <class Arch> float DotQ5_0<Arch>::run(int64_t n, const void* x, const void* y) { return ldot::single_dot<Arch, ldot::DecodeQ5_0>(n, x, y); }

#define LQ_CPU_LEGACY_DOT_KERNELS(X) \
  X(DotQ8_0) X(DotQ4_0) X(DotQ4_1) X(DotQ5_0) X(DotQ5_1) X(TileQ8_0) X(TileQ4_0) X(TileQ5_0)

}  // namespace lq::cpu
