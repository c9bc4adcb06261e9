// The instruction sets liblq compiles its CPU kernels for (kernels/cpu/arch.hpp) that this
// machine runs, in one list for every test that holds each ISA, not only the one the dispatcher
// picks, to the scalar reference; and the quantization kernels of each as (ISA, type, kernels)
// rows.
#pragma once

#include <lq/quant_type.hpp>

#include "arch.hpp"

#include <string>
#include <vector>

namespace lq::test {

/// One ISA's instantiations of a type's kernels; an empty slot has no per-ISA kernel.
struct IsaKernels {
  std::string isa;
  QuantType type;
  KernelSet kernels;
};

/// Every (ISA this machine runs) x (type with per-ISA kernels) pair.
std::vector<IsaKernels> cpu_isa_kernels();

/// Calls f.template operator()<Arch>(name) for each ISA this machine runs, from SSE2 up:
/// for_each_cpu_isa([&]<class A>(const char* name) { ... }).
template <class F>
void for_each_cpu_isa(F&& f) {
  const auto best = xsimd::available_architectures().best;
  f.template operator()<cpu::Sse2>("sse2");
  if (best >= cpu::Avx2::version()) f.template operator()<cpu::Avx2>("avx2");
  if (best >= cpu::Avx512::version()) f.template operator()<cpu::Avx512>("avx512bw");
  if (cpu::has_avx512_vnni()) f.template operator()<cpu::Avx512Vnni>("avx512vnni");
}

}  // namespace lq::test
