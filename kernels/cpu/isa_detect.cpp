// CPU feature detection for the kernel dispatch, per processor: whether the AVX-512 VNNI level
// is usable (x86-64 CPUID and XCR0; false elsewhere) and the name of the best instruction set the
// CPU kernels run on this machine (lq::cpu::best_isa). Detection only: no kernels, no intrinsics
// beyond CPUID/XGETBV, and no probing of /proc/cpuinfo.
#include "arch.hpp"
#include "engine_kernels.hpp"

#include <lq/backend.hpp>

#if LQ_CPU_X86
#include <cpuid.h>
#endif

namespace lq::cpu {

#if LQ_CPU_X86

bool has_avx512_vnni() noexcept {
  if (xsimd::available_architectures().best < Avx512::version()) return false;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE
  unsigned xlo, xhi;
  __asm__("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  if ((xlo & 0xe6u) != 0xe6u) return false;  // XMM, YMM, opmask, ZMM_Hi256, Hi16_ZMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool vl = b & (1u << 31), vbmi = c & (1u << 1), vnni = c & (1u << 11);
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  const bool bf16 = a & (1u << 5);
  return vl && vbmi && vnni && bf16;
}

std::string_view best_isa() {
  if (has_avx512_vnni()) return has_amx_bf16() ? "avx512vnni+bf16+amx" : "avx512vnni+bf16";
  const auto best = xsimd::available_architectures().best;
  if (best >= Avx512::version()) return "avx512bw";
  if (best >= Avx2::version()) return "avx2+fma";
  return "sse2";
}

#else  // aarch64 (arch.hpp refuses other processors): NEON is in the base instruction set.

bool has_avx512_vnni() noexcept { return false; }

std::string_view best_isa() { return "neon64"; }

#endif

}  // namespace lq::cpu
