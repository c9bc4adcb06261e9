// The CPU back-end: xsimd kernels where a type has them, the scalar reference otherwise.
#include "cpu_backend.hpp"
#include "engine_kernels.hpp"

#include "arch.hpp"

#include <lq/quant_type.hpp>

#include <fmt/format.h>

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
