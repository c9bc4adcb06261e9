// The CPU kernels of every instruction set liblq compiles, not only the one the dispatcher picks
// on this machine, as (ISA, type, kernels) rows for tests that hold each ISA to the scalar
// reference. The ISA list is kernels/cpu/arch.hpp's; ISAs this machine cannot run are left out.
#pragma once

#include <lq/quant_type.hpp>

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

}  // namespace lq::test
