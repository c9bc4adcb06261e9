// liblq: compute back-ends and the kernel registry.
#pragma once

#include <lq/api.hpp>
#include <lq/quant_type.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lq {

namespace detail {
struct EngineOps;  // the engine's operations on a back-end (lib/backend/ops.hpp, library-internal)
}

/// Kernel operations a back-end may provide for a type.
enum class Op { quantize, dequantize, dot };

/// A compute back-end (CPU, CUDA). Kernels take host pointers; a device back-end moves data itself.
class LQ_API Backend {
 public:
  virtual ~Backend() = default;
  /// Short name: "cpu", "cuda".
  virtual std::string_view name() const = 0;
  /// 0 = unusable on this machine; higher = preferred by `auto` (the CPU scores 2; a CUDA
  /// device 3). Computed once: calls are cheap.
  virtual int score() const = 0;
  /// Whether `op` on `t` has a kernel here that `auto` should use (else the registry falls back
  /// to the CPU's). A back-end may hold kernels it only runs when chosen by name.
  virtual bool supports(QuantType t, Op op) const = 0;
  /// The kernels for `t` this back-end holds; empty slots mean "not here".
  virtual KernelSet kernels(QuantType t) const = 0;
  /// One line describing the device (ISA or GPU name).
  virtual std::string description() const = 0;
  /// (optional) The engine's operations on this back-end (products, GEMM, row operations);
  /// nullptr, or null slots, mean the CPU's.
  virtual const detail::EngineOps* engine_ops() const { return nullptr; }
};

/// All compiled-in back-ends, registered once (CPU last), and the choice among them.
class LQ_API Registry {
 public:
  /// The process-wide registry.
  static Registry& instance();

  /// Every registered back-end, usable or not.
  const std::vector<std::unique_ptr<Backend>>& backends() const { return backends_; }
  /// The back-end with the highest score (or the one forced by select()). A Context's own
  /// back-end, where set, overrides this for that call.
  const Backend& active() const;
  /// The CPU back-end (always present): the inference engine's kernels, which run inside its own
  /// parallel loops on host data, come from here whatever back-end is active.
  const Backend& cpu() const { return *backends_.back(); }
  /// Looks a back-end up by name; nullptr when absent.
  const Backend* find(std::string_view name) const;
  /// Sets the process default by name ("auto" restores the scored choice); thread-safe. Throws
  /// Errc::invalid_argument for an unknown or unusable back-end.
  void select(std::string_view name);
  /// The back-end named `name` ("auto": the scored choice), checked usable; for Context::backend.
  const Backend& resolve(std::string_view name) const;

  /// The kernels of `b` (chosen by name) for `t`: every kernel `b` holds, each empty slot filled
  /// from the CPU back-end's row, whose own empty slots hold the scalar reference. Never returns
  /// an empty slot for an op the type has a reference kernel for.
  KernelSet kernels(const Backend& b, QuantType t) const;
  /// The kernels of the process's choice: the back-end select() forced (as above), or under
  /// `auto` the scored back-end's kernels where it supports() them and the CPU's elsewhere.
  KernelSet kernels(QuantType t) const;
  /// kernels(t).quantize / .dequantize / .dot.
  QuantizeFn quantize(QuantType t) const;
  DequantizeFn dequantize(QuantType t) const;
  DotFn dot(QuantType t) const;
  /// The engine operations of `b`, each slot it leaves empty taken from the CPU back-end.
  detail::EngineOps engine_ops(const Backend& b) const;

 private:
  Registry();
  const Backend& scored() const;
  std::vector<std::unique_ptr<Backend>> backends_;
  std::atomic<const Backend*> forced_{nullptr};
};

namespace cpu {
/// Name of the SIMD instruction set the CPU kernels dispatch to on this machine ("avx512bw", ...).
LQ_API std::string_view best_isa();
}  // namespace cpu

}  // namespace lq
