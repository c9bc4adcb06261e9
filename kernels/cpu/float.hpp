// CPU kernels: plain float types (conversion rows and dot products).
#pragma once

#include "arch.hpp"
#include "signatures.hpp"

#include <cstdint>
#include <cstring>

namespace lq::cpu {

// Kernel bodies are defined out of class (so not inline): the extern template declarations in
// dispatch.cpp then keep them from being instantiated without their ISA flags.

template <class Arch>
void DequantBf16<Arch>::run(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const uint16_t*>(src);
  auto* y = reinterpret_cast<uint32_t*>(dst);
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<uint32_t>(x[i]) << 16;  // auto-vectorised
}

template <class Arch>
float DotF32<Arch>::run(int64_t n, const void* xv, const void* yv) {
    using B = xsimd::batch<float, Arch>;
    constexpr int64_t W = B::size;
    const auto* x = static_cast<const float*>(xv);
    const auto* y = static_cast<const float*>(yv);
    B a0(0.f), a1(0.f), a2(0.f), a3(0.f);
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
      a0 = xsimd::fma(B::load_unaligned(x + i), B::load_unaligned(y + i), a0);
      a1 = xsimd::fma(B::load_unaligned(x + i + W), B::load_unaligned(y + i + W), a1);
      a2 = xsimd::fma(B::load_unaligned(x + i + 2 * W), B::load_unaligned(y + i + 2 * W), a2);
      a3 = xsimd::fma(B::load_unaligned(x + i + 3 * W), B::load_unaligned(y + i + 3 * W), a3);
    }
    for (; i + W <= n; i += W) a0 = xsimd::fma(B::load_unaligned(x + i), B::load_unaligned(y + i), a0);
    float s = hsum((a0 + a1) + (a2 + a3));
    for (; i < n; ++i) s += x[i] * y[i];
    return s;
}

// Number of NaN/Inf values among n floats (exponent bits all ones).
template <class Arch>
struct CountNonFinite {
  static int64_t run(const float* x, int64_t n);
};

template <class Arch>
int64_t CountNonFinite<Arch>::run(const float* x, int64_t n) {
  const auto* u = reinterpret_cast<const uint32_t*>(x);
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += (u[i] & 0x7f800000u) == 0x7f800000u;  // auto-vectorised
  return bad;
}

#define LQ_CPU_FLOAT_KERNELS(X) X(DequantBf16) X(DotF32) X(CountNonFinite)

}  // namespace lq::cpu
