// The per-super-block loops shared by the byte-SIMD i-quant kernels whose 256-value blocks are 8
// sub-blocks of 32 int8 values with one integer multiplier each (IQ3_XXS, IQ3_S, IQ4_XS): the
// decoder and the dot against Q8_K. Each type supplies a codec C (iq3.hpp, iq4.hpp):
//   block                    the GGUF block;
//   values(b, ib, mult)      sub-block ib's 32 signed values (|v| <= 127) and its multiplier;
//   dequant_scale(d, mult)   the float scale of a decoded sub-block, as the reference forms it;
//   kDotScale                the factor the reference applies to the whole dot.
// Where the ISA lacks the byte instructions the scalar reference (RefDequant, RefDot) runs; that
// includes every ISA outside x86-64, where Bytes and the codecs are only declared.
// Loops only: no layout knowledge here.
#pragma once

#include "arch.hpp"
#include "iq_simd.hpp"
#include "signatures.hpp"

#include "core/half.hpp"
#include "types/ref/blocks.hpp"

#include <cstdint>

namespace lq::cpu {

template <class Arch, class C, DequantSig* RefDequant>
void superblock_dequant(const void* src, float* dst, int64_t n) {
  if constexpr (!kByteSimd<Arch>) {
    RefDequant(src, dst, n);
  } else {
    const auto* x = static_cast<const typename C::block*>(src);
    for (int64_t i = 0; i < n / ref::QK_K; ++i) {
      const float d = fp16_to_f32(x[i].d);
      for (int ib = 0; ib < 8; ++ib) {
        int mult;
        const auto q = C::values(x[i], ib, mult);
        Bytes<Arch>::store_scaled(q, C::dequant_scale(d, mult), dst + i * ref::QK_K + 32 * ib);
      }
    }
  }
}

// Exact int32 sums per sub-block times its multiplier, one float FMA per super-block.
template <class Arch, class C, DotSig* RefDot>
float superblock_dot(int64_t n, const void* xv, const void* yv) {
  if constexpr (!kByteSimd<Arch>) {
    return RefDot(n, xv, yv);
  } else {
    using V = Bytes<Arch>;
    const auto* x = static_cast<const typename C::block*>(xv);
    const auto* y = static_cast<const ref::block_q8_K*>(yv);
    auto acc = V::fzero();
    for (int64_t i = 0; i < n / ref::QK_K; ++i) {
      auto sum = V::zero();
      for (int ib = 0; ib < 8; ++ib) {
        int mult;
        const auto q = C::values(x[i], ib, mult);
        sum = V::madd_scale(sum, V::dot(q, V::load(y[i].qs + 32 * ib)), mult);
      }
      acc = V::fma(sum, fp16_to_f32(x[i].d) * y[i].d, acc);
    }
    return C::kDotScale * V::hsum(acc);
  }
}

}  // namespace lq::cpu
