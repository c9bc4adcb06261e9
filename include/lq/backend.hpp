// liblq: compute back-ends and the kernel registry.
#pragma once

#include <lq/api.hpp>
#include <lq/quant_type.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lq {

/// Kernel operations a back-end may provide for a type.
enum class Op { quantize, dequantize, dot };

/// A compute back-end (CPU, CUDA). Kernels take host pointers; a device back-end moves data itself.
class LQ_API Backend {
 public:
  virtual ~Backend() = default;
  /// Short name: "cpu", "cuda".
  virtual std::string_view name() const = 0;
  /// 0 = unusable on this machine; higher = preferred by `auto` (the CPU scores 2, a usable
  /// CUDA device 1: see cuda_backend.cpp).
  virtual int score() const = 0;
  /// Whether `op` on `t` has a kernel here (else the registry falls back to the CPU).
  virtual bool supports(QuantType t, Op op) const = 0;
  /// The kernels for `t`; empty slots mean "not here".
  virtual KernelSet kernels(QuantType t) const = 0;
  /// One line describing the device (ISA or GPU name).
  virtual std::string description() const = 0;
};

/// All compiled-in back-ends, registered once (CPU last), and the choice among them.
class LQ_API Registry {
 public:
  /// The process-wide registry.
  static Registry& instance();

  /// Every registered back-end, usable or not.
  const std::vector<std::unique_ptr<Backend>>& backends() const { return backends_; }
  /// The back-end with the highest score (or the one forced by select()).
  const Backend& active() const;
  /// The CPU back-end (always present): the inference engine's kernels, which run inside its own
  /// parallel loops on host data, come from here whatever back-end is active.
  const Backend& cpu() const { return *backends_.back(); }
  /// Looks a back-end up by name; nullptr when absent.
  const Backend* find(std::string_view name) const;
  /// Forces a back-end by name ("auto" restores the scored choice). Throws if unusable.
  void select(std::string_view name);

  /// The kernels of `b` for `t`, each slot `b` leaves empty (or does not support) filled from the
  /// CPU back-end's row, whose own empty slots hold the scalar reference. Never returns an empty
  /// slot for an op the type has a reference kernel for.
  KernelSet kernels(const Backend& b, QuantType t) const;
  /// kernels(active(), t).quantize / .dequantize / .dot.
  QuantizeFn quantize(QuantType t) const;
  DequantizeFn dequantize(QuantType t) const;
  DotFn dot(QuantType t) const;

 private:
  Registry();
  std::vector<std::unique_ptr<Backend>> backends_;
  const Backend* forced_ = nullptr;
};

namespace cpu {
/// Name of the SIMD instruction set the CPU kernels dispatch to on this machine ("avx512bw", ...).
LQ_API std::string_view best_isa();
}  // namespace cpu

}  // namespace lq
