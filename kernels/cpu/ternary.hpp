// CPU kernels: ternary types TQ1_0 and TQ2_0.
//   QuantizeTq1_0, QuantizeTq2_0  the reference search (ref/ternary_search.hpp) with vectorised
//                                 passes and packing; byte-identical to ref::quantize_tq1_0 /
//                                 ref::quantize_tq2_0 (tests/iquants_a_test.cpp).
// Run: ./build/tests/lq_tests "[iquants-a]".
#pragma once

#include "arch.hpp"
#include "iq_simd.hpp"

#include "ref/ternary_search.hpp"

#include <cstdint>

namespace lq::cpu {

template <class Arch>
struct TernaryOps {
  using B = xsimd::batch<float, Arch>;
  using I = xsimd::batch<int32_t, Arch>;
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
      return xsimd::to_int(xsimd::floor((v * k256 + k242) / k243));
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

template <class Arch>
struct QuantizeTq1_0 {
  static void run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
};
template <class Arch>
struct QuantizeTq2_0 {
  static void run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
};

template <class Arch>
void QuantizeTq1_0<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  ref::ternary::quantize_rows<TernaryOps<Arch>, ref::block_tq1_0>(src, dst, nrows, n_per_row, imatrix);
}

template <class Arch>
void QuantizeTq2_0<Arch>::run(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  ref::ternary::quantize_rows<TernaryOps<Arch>, ref::block_tq2_0>(src, dst, nrows, n_per_row, imatrix);
}

#define LQ_CPU_TERNARY_KERNELS(X) X(QuantizeTq1_0) X(QuantizeTq2_0)

}  // namespace lq::cpu
