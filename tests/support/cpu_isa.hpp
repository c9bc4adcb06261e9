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

/// Calls f.template operator()<Arch>(name) for each ISA of this build (cpu::for_each_isa: SSE2 to
/// AVX-512 VNNI on x86-64, NEON on aarch64) that this machine runs (cpu::isa_usable), best first:
/// for_each_cpu_isa([&]<class A>(const char* name) { ... }).
template <class F>
void for_each_cpu_isa(F&& f) {
  cpu::for_each_isa([&](auto arch, const char* name) {
    using A = decltype(arch);
    if (cpu::isa_usable<A>()) f.template operator()<A>(name);
  });
}

}  // namespace lq::test
