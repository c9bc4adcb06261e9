// The CPU back-end: xsimd kernels where a type has them, the scalar reference otherwise.
#include "cpu_backend.hpp"
#include "engine_kernels.hpp"

#include "arch.hpp"

#include <lq/quant_type.hpp>

#include <fmt/format.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace lq::cpu {
namespace {

class CpuBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu"; }
  int score() const override { return 2; }
  bool supports(QuantType t, Op op) const override {
    const auto& row = type_info(t);
    switch (op) {
      case Op::quantize: return row.quantize_ref != nullptr;
      case Op::dequantize: return row.dequantize_ref != nullptr;
      case Op::dot: return row.dot_ref != nullptr;
    }
    return false;
  }
  KernelSet kernels(QuantType t) const override {
    const auto& row = type_info(t);
    return {row.cpu.quantize ? row.cpu.quantize : row.quantize_ref,
            row.cpu.dequantize ? row.cpu.dequantize : row.dequantize_ref,
            row.cpu.dot ? row.cpu.dot : row.dot_ref};
  }
  std::string description() const override { return fmt::format("CPU ({})", best_isa()); }
};

}  // namespace

std::unique_ptr<Backend> make_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace lq::cpu

namespace lq::cpu {

bool has_avx512_vnni() noexcept {
#if defined(__x86_64__) || defined(__i386__)
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
#else
  return false;
#endif
}

std::string_view best_isa() {
  if (has_avx512_vnni()) return has_amx_bf16() ? "avx512vnni+bf16+amx" : "avx512vnni+bf16";
  const auto best = xsimd::available_architectures().best;
  if (best >= Avx512::version()) return "avx512bw";
  if (best >= Avx2::version()) return "avx2+fma";
  return "sse2";
}

}  // namespace lq::cpu
