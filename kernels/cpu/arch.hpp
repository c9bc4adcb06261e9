// CPU kernel plumbing: the instruction sets we build for and the run-time dispatch.
//
// Every kernel is written once as `template <class Arch> struct K { static R run(args...); }`
// in a family header (float.hpp, legacy.hpp, ...). isa.cpp.in is compiled once per ISA with that
// ISA's flags and explicitly instantiates every kernel for it; dispatch_call<K>() picks the best
// instantiation the running CPU supports, once per kernel.
//
// The ISA list depends on the processor the library is built for (kernels/cpu/CMakeLists.txt
// builds the same list):
//   x86-64   Avx512Vnni (when our CPUID check finds it: xsimd 8.1 cannot name that level),
//            Avx512, Avx2, Sse2 (the best of them that xsimd::dispatch finds).
//   aarch64  Neon64 (NEON is part of the base instruction set).
// Other processors are not supported: xsimd 8.1 has no batch type without SIMD registers.
//
// Instructions that xsimd has no operation for (byte dot products, bf16 dot products) are used
// only through the small per-ISA helpers of isa_ops.hpp and iq_simd.hpp. x86 intrinsics are
// compiled only where LQ_CPU_X86 is 1; the kernels reach them through templates that the other
// processors declare and never instantiate (their `if constexpr` branches are discarded).
#pragma once

#include <xsimd/xsimd.hpp>

#include <type_traits>

#if defined(__x86_64__) || defined(_M_X64)
#define LQ_CPU_X86 1
#else
#define LQ_CPU_X86 0
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
#define LQ_CPU_ARM64 1
#else
#define LQ_CPU_ARM64 0
#endif
#if !LQ_CPU_X86 && !LQ_CPU_ARM64
#error "liblq's CPU kernels are built for x86-64 or aarch64"
#endif

namespace lq::cpu {

/// AVX-512 with VNNI (vpdpbusd, vpdpwssd), BF16 (vdpbf16ps) and VBMI: Zen 4, Sapphire Rapids.
/// It derives from avx512bw, so every xsimd operation on its batches is AVX-512BW's; only the
/// helpers in isa_ops.hpp use the extra instructions. Its translation unit is the only one
/// compiled with their flags.
struct Avx512Vnni : xsimd::avx512bw {
  static constexpr bool supported() noexcept { return XSIMD_WITH_AVX512BW; }
  static constexpr bool available() noexcept { return true; }
  static constexpr unsigned version() noexcept { return xsimd::generic::version(3, 5, 0); }
  static constexpr char const* name() noexcept { return "avx512vnni"; }
};

// The x86 tags are declared on every processor (xsimd declares them all) so that kernels can
// name them in compile-time tests; they are instantiated only in the x86 build.
using Avx512 = xsimd::avx512bw;
using Avx2 = xsimd::fma3<xsimd::avx2>;
using Sse2 = xsimd::sse2;
using Neon64 = xsimd::neon64;

/// a / b, correctly rounded (IEEE) on every ISA: the scalar references divide, and quantizers
/// must write their bytes. xsimd 8's float division on NEON is a reciprocal estimate refined by
/// two Newton steps (off by an ulp at times, and -inf for a denormal divisor); AArch64 has a real
/// vector divide.
template <class Arch>
xsimd::batch<float, Arch> div_exact(xsimd::batch<float, Arch> a, xsimd::batch<float, Arch> b) {
#if LQ_CPU_ARM64
  if constexpr (std::is_base_of_v<xsimd::neon64, Arch>) return vdivq_f32(a, b);
#endif
  return a / b;
}

/// The ISAs of this build that xsimd::dispatch chooses from, best first.
#if LQ_CPU_X86
using ArchList = xsimd::arch_list<Avx512, Avx2, Sse2>;
#else
using ArchList = xsimd::arch_list<Neon64>;
#endif

/// Whether Arch has the AVX-512BW instructions (Avx512 and the levels above it).
template <class Arch>
inline constexpr bool kAvx512 = std::is_base_of_v<xsimd::avx512bw, Arch>;

/// Whether the running CPU and OS support Avx512Vnni (AVX-512 F/BW/DQ/CD/VL + VNNI + BF16 +
/// VBMI, with the ZMM and opmask state enabled).
bool has_avx512_vnni() noexcept;

/// Horizontal sum / max of a batch (xsimd 8.1 has hadd but no reduce_max).
template <class T, class Arch>
inline T hsum(const xsimd::batch<T, Arch>& b) {
  return xsimd::hadd(b);
}
namespace detail {
template <unsigned S>
struct XorLane {
  static constexpr unsigned get(unsigned i, unsigned) { return i ^ S; }
};
// Butterfly max over the lanes of a float batch: log2(size) swizzles.
template <class Arch, unsigned S>
inline xsimd::batch<float, Arch> butterfly_max(xsimd::batch<float, Arch> b) {
  if constexpr (S == 0) {
    return b;
  } else {
    using C = xsimd::batch<uint32_t, Arch>;
    b = xsimd::max(b, xsimd::swizzle(b, xsimd::make_batch_constant<C, XorLane<S>>()));
    return butterfly_max<Arch, S / 2>(b);
  }
}
}  // namespace detail

/// The maximum over the lanes, in every lane.
template <class Arch>
inline xsimd::batch<float, Arch> allmax(const xsimd::batch<float, Arch>& b) {
  return detail::butterfly_max<Arch, xsimd::batch<float, Arch>::size / 2>(b);
}

template <class T, class Arch>
inline T hmax(const xsimd::batch<T, Arch>& b) {
  if constexpr (std::is_same_v<T, float>) {
    return detail::butterfly_max<Arch, xsimd::batch<float, Arch>::size / 2>(b).get(0);
  } else {
    alignas(64) T tmp[xsimd::batch<T, Arch>::size];
    b.store_aligned(tmp);
    T m = tmp[0];
    for (size_t i = 1; i < xsimd::batch<T, Arch>::size; ++i) m = tmp[i] > m ? tmp[i] : m;
    return m;
  }
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
  if constexpr (LQ_CPU_X86) {
    static const bool vnni = has_avx512_vnni();
    if (vnni) return K<Avx512Vnni>::run(a...);
  }
  static auto d = xsimd::dispatch<ArchList>(Adapter<K>{});
  return d(a...);
}

/// Whether the running CPU supports Arch (one of this build's ISAs).
template <class Arch>
bool isa_usable() noexcept {
  if constexpr (std::is_same_v<Arch, Avx512Vnni>)
    return has_avx512_vnni();
  else
    return xsimd::available_architectures().best >= Arch::version();
}

/// Calls f(Arch{}, name) for every ISA this build instantiates the kernels for, best first
/// (tests and benchmarks compare them with the scalar reference and with each other).
template <class F>
void for_each_isa(F&& f) {
  if constexpr (LQ_CPU_X86) {
    f(Avx512Vnni{}, "avx512vnni");
    f(Avx512{}, "avx512bw");
    f(Avx2{}, "avx2");
    f(Sse2{}, "sse2");
  } else {
    f(Neon64{}, "neon64");
  }
}

}  // namespace lq::cpu

#if XSIMD_WITH_AVX512BW
namespace xsimd::types {
template <class T>
struct get_bool_simd_register<T, lq::cpu::Avx512Vnni> {
  using type = simd_avx512_bool_register<T>;
};
XSIMD_DECLARE_SIMD_REGISTER_ALIAS(lq::cpu::Avx512Vnni, avx512bw);
}  // namespace xsimd::types
#endif

/// Declares this build's ISA instantiations of kernel K as extern (they live in the isa_*.cpp TUs).
#if LQ_CPU_X86
#define LQ_CPU_EXTERN(K)                                  \
  extern template struct lq::cpu::K<lq::cpu::Avx512Vnni>; \
  extern template struct lq::cpu::K<lq::cpu::Avx512>;     \
  extern template struct lq::cpu::K<lq::cpu::Avx2>;       \
  extern template struct lq::cpu::K<lq::cpu::Sse2>;
#else
#define LQ_CPU_EXTERN(K) extern template struct lq::cpu::K<lq::cpu::Neon64>;
#endif
