// CPU kernel plumbing: the instruction sets we build for and the run-time dispatch.
//
// Every kernel is written once as `template <class Arch> struct K { static R run(args...); }`
// in a family header (float.hpp, legacy.hpp, ...). isa.cpp.in is compiled once per ISA with that
// ISA's flags and explicitly instantiates every kernel for it; dispatch_call<K>() picks the best
// instantiation the running CPU supports (xsimd::dispatch), once per kernel.
#pragma once

#include <xsimd/xsimd.hpp>

namespace lq::cpu {

using Avx512 = xsimd::avx512bw;
using Avx2 = xsimd::fma3<xsimd::avx2>;
using Sse2 = xsimd::sse2;
using ArchList = xsimd::arch_list<Avx512, Avx2, Sse2>;

/// Horizontal sum / max of a batch (xsimd 8.1 has hadd but no reduce_max).
template <class T, class Arch>
inline T hsum(const xsimd::batch<T, Arch>& b) {
  return xsimd::hadd(b);
}
template <class T, class Arch>
inline T hmax(const xsimd::batch<T, Arch>& b) {
  alignas(64) T tmp[xsimd::batch<T, Arch>::size];
  b.store_aligned(tmp);
  T m = tmp[0];
  for (size_t i = 1; i < xsimd::batch<T, Arch>::size; ++i) m = tmp[i] > m ? tmp[i] : m;
  return m;
}

template <template <class> class K>
struct Adapter {
  template <class Arch, class... A>
  auto operator()(Arch, A... a) const {
    return K<Arch>::run(a...);
  }
};

template <template <class> class K, class... A>
auto dispatch_call(A... a) {
  static auto d = xsimd::dispatch<ArchList>(Adapter<K>{});
  return d(a...);
}

}  // namespace lq::cpu

/// Declares the three ISA instantiations of kernel K as extern (they live in the isa_*.cpp TUs).
#define LQ_CPU_EXTERN(K)                                  \
  extern template struct lq::cpu::K<lq::cpu::Avx512>;     \
  extern template struct lq::cpu::K<lq::cpu::Avx2>;       \
  extern template struct lq::cpu::K<lq::cpu::Sse2>;
