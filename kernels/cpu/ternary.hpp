// CPU kernels: ternary types TQ1_0 and TQ2_0.
//   QuantizeTq1_0, QuantizeTq2_0  the reference search (ref/ternary_search.hpp) with vectorised
//                                 passes and packing; byte-identical to ref::quantize_tq1_0 /
//                                 ref::quantize_tq2_0 (tests/cpu_isa_kernels_test.cpp).
//   DequantTq1_0, DequantTq2_0    trits unpacked 32 at a time (base-3 digits by 16-bit products),
//                                 then floats; bit-identical to the reference decoders.
//   DotTq1_0, DotTq2_0 (x Q8_K)   sum t * y with t in {0, 1, 2} (unsigned byte products), minus
//                                 sum y from the activations' block sums.
// Run: ./build/tests/lq_tests "[iquants],[isa]".
#pragma once

#include "arch.hpp"
#include "signatures.hpp"
#include "iq_simd.hpp"

#include "types/ref/ternary.hpp"
#include "types/ref/ternary_search.hpp"

#include <cstdint>

namespace lq::cpu {

template <class Arch>
struct TernaryOps {
  using B = xsimd::batch<float, Arch>;
  static constexpr int W = static_cast<int>(B::size);
  static constexpr int N = ref::kLanes / W;

  static void prepare(const float* x, const float* qw, float qfloor, float* a, float* wv, float* wa) {
    const B zero(0.f);
    for (int j = 0; j < ref::QK_K; j += W) {
      const B av = xsimd::abs(B::load_unaligned(x + j));
      av.store_aligned(a + j);
      if (qw) {
        const B q = B::load_unaligned(qw + j);
        const B w = xsimd::select(q >= zero, xsimd::min(q, B(1e15f)), zero) + B(qfloor);
        w.store_aligned(wv + j);
        (w * av).store_aligned(wa + j);
      }
    }
  }

  static void sums(const float* a, const float* wv, const float* wa, float th, float& sa, float& sw) {
    const B vth(th), zero(0.f), one(1.f);
    B la[N], lw[N];
    for (int k = 0; k < N; ++k) la[k] = lw[k] = zero;
    for (int j = 0; j < ref::QK_K; j += ref::kLanes) {
      for (int k = 0; k < N; ++k) {
        const auto on = B::load_aligned(a + j + k * W) > vth;
        la[k] = la[k] + xsimd::select(on, B::load_aligned(wa + j + k * W), zero);
        lw[k] = lw[k] + xsimd::select(on, wv ? B::load_aligned(wv + j + k * W) : one, zero);
      }
    }
    sa = reduce16(la);
    sw = reduce16(lw);
  }

  // Trits as floats (0, 1, 2); packing arithmetic stays exact in float (values below 2^16).
  static B trit(const float* x, const B& h) {
    const B v = B::load_unaligned(x);
    return xsimd::select(v > h, B(2.f), xsimd::select(v < -h, B(0.f), B(1.f)));
  }

  static void pack_block(const float* x, float half_d, ref::block_tq1_0& b) {
    if (!(half_d > 0)) return ref::ternary::RefOps::pack_block(x, half_d, b);
    const B h(half_d), three(3.f), k256(256.f), k242(242.f), k243(243.f);
    alignas(64) int32_t q[48];
    auto byte = [&](const float* p, int stride) {
      B v = trit(p, h);
      for (int n = 1; n < 5; ++n) v = v * three + trit(p + n * stride, h);
      return xsimd::to_int(xsimd::floor(div_exact(v * k256 + k242, k243)));
    };
    for (int m = 0; m < 32; m += W) byte(x + m, 32).store_aligned(q + m);
    for (int m = 0; m < 16; m += W) byte(x + 160 + m, 16).store_aligned(q + 32 + m);
    for (int m = 0; m < 48; ++m) b.qs[m] = static_cast<uint8_t>(q[m]);
    uint8_t t[16];
    for (int j = 0; j < 16; ++j)
      t[j] = static_cast<uint8_t>(1 + static_cast<int>(x[240 + j] > half_d) - static_cast<int>(x[240 + j] < -half_d));
    for (int j = 0; j < 4; ++j) b.qh[j] = ref::ternary::pack5(t + j, 4, 4);
  }

  static void pack_block(const float* x, float half_d, ref::block_tq2_0& b) {
    if (!(half_d > 0)) return ref::ternary::RefOps::pack_block(x, half_d, b);
    const B h(half_d), four(4.f);
    alignas(64) int32_t q[64];
    for (int g = 0; g < 2; ++g)
      for (int m = 0; m < 32; m += W) {
        const float* p = x + 128 * g + m;
        const B v = trit(p, h) + four * (trit(p + 32, h) + four * (trit(p + 64, h) + four * trit(p + 96, h)));
        xsimd::to_int(v).store_aligned(q + 32 * g + m);
      }
    for (int m = 0; m < 64; ++m) b.qs[m] = static_cast<uint8_t>(q[m]);
  }
};

template <class Arch> void QuantizeTq1_0<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) { ref::ternary::quantize_rows<TernaryOps<Arch>, ref::block_tq1_0>(src, dst, nrows, n_per_row, imatrix); }

template <class Arch> void QuantizeTq2_0<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) { ref::ternary::quantize_rows<TernaryOps<Arch>, ref::block_tq2_0>(src, dst, nrows, n_per_row, imatrix); }

// The byte kernels below are x86 only (AVX2 integer instructions); other processors declare
// them and take the scalar reference (kByteSimd is false there).
template <class Arch>
struct TernaryDecode;
template <class Arch, class Block>
void dequant_ternary_bytes(const void* src, float* dst, int64_t n);
template <class Arch, class Block>
float dot_ternary_bytes(int64_t n, const void* xv, const void* yv);

#if LQ_CPU_X86
// Trits of a block in value order (0, 1, 2), 256 bytes.
template <class Arch>
struct TernaryDecode {
  // Digit n of bytes holding base-3 numbers scaled to 0..255: (uint8(b * 3^n) * 3) >> 8.
  static __m256i digit(__m256i b, int n) {
    static constexpr int16_t kPow3[5] = {1, 3, 9, 27, 81};
    const __m256i zero = _mm256_setzero_si256(), low = _mm256_set1_epi16(0xff), three = _mm256_set1_epi16(3);
    const __m256i p = _mm256_set1_epi16(kPow3[n]);
    __m256i lo = _mm256_and_si256(_mm256_mullo_epi16(_mm256_unpacklo_epi8(b, zero), p), low);
    __m256i hi = _mm256_and_si256(_mm256_mullo_epi16(_mm256_unpackhi_epi8(b, zero), p), low);
    lo = _mm256_srli_epi16(_mm256_mullo_epi16(lo, three), 8);
    hi = _mm256_srli_epi16(_mm256_mullo_epi16(hi, three), 8);
    return _mm256_packus_epi16(lo, hi);
  }

  static void unpack(const ref::block_tq1_0& b, uint8_t* t) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
    for (int n = 0; n < 5; ++n) _mm256_storeu_si256(reinterpret_cast<__m256i*>(t + 32 * n), digit(q, n));
    // Bytes 32..47 hold values 160 + m + 16n: both 128-bit halves get them, digits n and n + 1.
    const __m128i q16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 32));
    const __m256i both = _mm256_set_m128i(q16, q16);
    for (int n = 0; n < 4; n += 2) {
      const __m256i dn = digit(both, n), dn1 = digit(both, n + 1);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(t + 160 + 16 * n), _mm256_permute2x128_si256(dn, dn1, 0x30));
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(t + 224), _mm256_castsi256_si128(digit(both, 4)));
    for (int n = 0; n < 4; ++n)
      for (int j = 0; j < 4; ++j) {
        const auto v = static_cast<uint8_t>(b.qh[j] * (n == 0 ? 1 : n == 1 ? 3 : n == 2 ? 9 : 27));
        t[240 + j + 4 * n] = static_cast<uint8_t>((v * 3) >> 8);
      }
  }

  static void unpack(const ref::block_tq2_0& b, uint8_t* t) {
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int g = 0; g < 2; ++g) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * g));
      for (int k = 0; k < 4; ++k)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(t + 128 * g + 32 * k), _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3));
    }
  }
};

// The per-block loops on trits (0, 1, 2 = value + 1), x86 only.
template <class Arch, class Block>
void dequant_ternary_bytes(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const Block*>(src);
  alignas(32) uint8_t t[ref::QK_K];
  const __m256i one = _mm256_set1_epi8(1);
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    TernaryDecode<Arch>::unpack(x[i], t);
    const float d = fp16_to_f32(x[i].d);
    for (int k = 0; k < ref::QK_K; k += 32)
      Bytes<Arch>::store_scaled(_mm256_sub_epi8(Bytes<Arch>::load(t + k), one), d, dst + i * ref::QK_K + k);
  }
}

template <class Arch, class Block>
float dot_ternary_bytes(int64_t n, const void* xv, const void* yv) {
  using V = Bytes<Arch>;
  const auto* x = static_cast<const Block*>(xv);
  const auto* y = static_cast<const ref::block_q8_K*>(yv);
  alignas(32) uint8_t t[ref::QK_K];
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / ref::QK_K; ++i) {
    TernaryDecode<Arch>::unpack(x[i], t);
    __m256i sum = _mm256_setzero_si256();
    for (int k = 0; k < ref::QK_K; k += 32)
      sum = _mm256_add_epi32(sum, V::dot_unsigned(V::load(t + k), V::load(y[i].qs + k)));
    int ysum = 0;
    for (int k = 0; k < ref::QK_K / 16; ++k) ysum += y[i].bsums[k];
    sum = _mm256_sub_epi32(sum, _mm256_setr_epi32(ysum, 0, 0, 0, 0, 0, 0, 0));
    acc = V::fma(sum, fp16_to_f32(x[i].d) * y[i].d, acc);
  }
  return V::hsum(acc);
}
#endif  // LQ_CPU_X86

// Where the ISA lacks the byte instructions the scalar reference (RefDequant, RefDot) runs.
template <class Arch, class Block, DequantSig* RefDequant>
void dequant_ternary(const void* src, float* dst, int64_t n) {
  if constexpr (!kByteSimd<Arch>) {
    RefDequant(src, dst, n);
  } else {
    dequant_ternary_bytes<Arch, Block>(src, dst, n);
  }
}

template <class Arch, class Block, DotSig* RefDot>
float dot_ternary(int64_t n, const void* xv, const void* yv) {
  if constexpr (!kByteSimd<Arch>) {
    return RefDot(n, xv, yv);
  } else {
    return dot_ternary_bytes<Arch, Block>(n, xv, yv);
  }
}

template <class Arch> void DequantTq1_0<Arch>::run(const void* src, float* dst, int64_t n) { dequant_ternary<Arch, ref::block_tq1_0, ref::dequantize_tq1_0>(src, dst, n); }
template <class Arch> float DotTq1_0<Arch>::run(int64_t n, const void* x, const void* y) { return dot_ternary<Arch, ref::block_tq1_0, ref::dot_tq1_0>(n, x, y); }
template <class Arch> void DequantTq2_0<Arch>::run(const void* src, float* dst, int64_t n) { dequant_ternary<Arch, ref::block_tq2_0, ref::dequantize_tq2_0>(src, dst, n); }
template <class Arch> float DotTq2_0<Arch>::run(int64_t n, const void* x, const void* y) { return dot_ternary<Arch, ref::block_tq2_0, ref::dot_tq2_0>(n, x, y); }

#define LQ_CPU_TERNARY_KERNELS(X) \
  X(QuantizeTq1_0) X(QuantizeTq2_0) X(DequantTq1_0) X(DequantTq2_0) X(DotTq1_0) X(DotTq2_0)

}  // namespace lq::cpu
