// The per-ISA instantiations of the CPU quantization kernels, listed once for the tests (the
// family headers declare them; the isa_*.cpp translation units of the library define them).
#include "support/cpu_isa.hpp"

#include "iq1.hpp"
#include "iq2.hpp"
#include "iq3.hpp"
#include "iq4.hpp"
#include "kquants.hpp"
#include "legacy.hpp"
#include "legacy_dot.hpp"
#include "ternary.hpp"

LQ_CPU_LEGACY_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_LEGACY_DOT_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_KQUANT_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ1_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ2_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ3_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ4_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_TERNARY_KERNELS(LQ_CPU_EXTERN)

namespace lq::test {
namespace {

using QT = QuantType;

template <class A>
void add_isa(std::vector<IsaKernels>& out, const char* isa) {
  using namespace lq::cpu;
  const std::vector<std::pair<QT, KernelSet>> rows = {
      {QT::Q4_0, {QuantizeQ4_0<A>::run, nullptr, DotQ4_0<A>::run}},
      {QT::Q4_1, {QuantizeQ4_1<A>::run, nullptr, DotQ4_1<A>::run}},
      {QT::Q5_0, {QuantizeQ5_0<A>::run, nullptr, DotQ5_0<A>::run}},
      {QT::Q5_1, {QuantizeQ5_1<A>::run, nullptr, DotQ5_1<A>::run}},
      {QT::Q8_0, {QuantizeQ8_0<A>::run, nullptr, DotQ8_0<A>::run}},
      {QT::Q2_K, {QuantizeQ2K<A>::run, DequantQ2K<A>::run, DotQ2K<A>::run}},
      {QT::Q3_K, {QuantizeQ3K<A>::run, DequantQ3K<A>::run, DotQ3K<A>::run}},
      {QT::Q4_K, {QuantizeQ4K<A>::run, DequantQ4K<A>::run, DotQ4K<A>::run}},
      {QT::Q5_K, {QuantizeQ5K<A>::run, DequantQ5K<A>::run, DotQ5K<A>::run}},
      {QT::Q6_K, {QuantizeQ6K<A>::run, DequantQ6K<A>::run, DotQ6K<A>::run}},
      {QT::IQ2_XXS, {nullptr, DequantIq2Xxs<A>::run, DotIq2XxsQ8K<A>::run}},
      {QT::IQ2_XS, {nullptr, DequantIq2Xs<A>::run, DotIq2XsQ8K<A>::run}},
      {QT::IQ2_S, {nullptr, DequantIq2S<A>::run, DotIq2SQ8K<A>::run}},
      {QT::IQ1_S, {nullptr, DequantIq1S<A>::run, DotIq1SQ8K<A>::run}},
      {QT::IQ1_M, {nullptr, DequantIq1M<A>::run, DotIq1MQ8K<A>::run}},
      {QT::IQ3_XXS, {nullptr, DequantIq3Xxs<A>::run, DotIq3Xxs<A>::run}},
      {QT::IQ3_S, {nullptr, DequantIq3S<A>::run, DotIq3S<A>::run}},
      {QT::IQ4_NL, {QuantizeIq4Nl<A>::run, DequantIq4Nl<A>::run, DotIq4Nl<A>::run}},
      {QT::IQ4_XS, {QuantizeIq4Xs<A>::run, DequantIq4Xs<A>::run, DotIq4Xs<A>::run}},
      {QT::TQ1_0, {QuantizeTq1_0<A>::run, DequantTq1_0<A>::run, DotTq1_0<A>::run}},
      {QT::TQ2_0, {QuantizeTq2_0<A>::run, DequantTq2_0<A>::run, DotTq2_0<A>::run}},
      {QT::W4G, {nullptr, DequantW4G<A>::run, nullptr}},
      {QT::W8G, {nullptr, DequantW8G<A>::run, nullptr}},
  };
  for (const auto& [t, k] : rows) out.push_back({isa, t, k});
}

}  // namespace

std::vector<IsaKernels> cpu_isa_kernels() {
  std::vector<IsaKernels> out;
  for_each_cpu_isa([&]<class A>(const char* isa) { add_isa<A>(out, isa); });
  return out;
}

}  // namespace lq::test
