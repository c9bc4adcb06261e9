// The kernel registry: every compiled-in back-end registered once, CPU last; the choice among
// them; and the one place where a slot a back-end lacks is filled from the CPU back-end.
// Must not hold kernels itself or know a back-end's internals.
#include <lq/backend.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"

#include "backend/ops.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cuda/cuda_kernels.hpp"

namespace lq {

Registry::Registry() {
  if (auto cuda = cuda::make_backend()) backends_.push_back(std::move(cuda));
  backends_.push_back(cpu::make_backend());
}

Registry& Registry::instance() {
  static Registry r;
  return r;
}

const Backend& Registry::scored() const {
  const Backend* best = backends_.back().get();
  int best_score = best->score();
  for (const auto& b : backends_) {
    const int s = b->score();
    if (s > best_score) {
      best = b.get();
      best_score = s;
    }
  }
  return *best;
}

const Backend& Registry::active() const {
  if (const Backend* f = forced_.load(std::memory_order_acquire)) return *f;
  return scored();
}

const Backend* Registry::find(std::string_view name) const {
  for (const auto& b : backends_)
    if (b->name() == name) return b.get();
  return nullptr;
}

const Backend& Registry::resolve(std::string_view name) const {
  if (name == "auto") return scored();
  const Backend* b = find(name);
  if (!b) {
    std::string names;
    for (const auto& x : backends_) names += (names.empty() ? "" : ", ") + std::string(x->name());
    fail(Errc::invalid_argument, "unknown back-end '{}' (available: auto, {})", name, names);
  }
  if (b->score() <= 0) fail(Errc::invalid_argument, "back-end '{}' is not usable on this machine", name);
  return *b;
}

void Registry::select(std::string_view name) {
  forced_.store(name == "auto" ? nullptr : &resolve(name), std::memory_order_release);
}

namespace {
// Each slot: the back-end's kernel where it has one (and, under `auto`, supports it), else the
// CPU's (whose empty slots are the scalar references).
KernelSet merge(const Backend& b, const KernelSet& cpu_row, QuantType t, bool every) {
  const KernelSet own = b.kernels(t);
  auto pick = [&](auto own_fn, auto cpu_fn, Op op) { return own_fn && (every || b.supports(t, op)) ? own_fn : cpu_fn; };
  return {pick(own.quantize, cpu_row.quantize, Op::quantize), pick(own.dequantize, cpu_row.dequantize, Op::dequantize),
          pick(own.dot, cpu_row.dot, Op::dot)};
}
}  // namespace

KernelSet Registry::kernels(const Backend& b, QuantType t) const {
  const KernelSet cpu_row = cpu().kernels(t);
  return &b == &cpu() ? cpu_row : merge(b, cpu_row, t, true);
}

KernelSet Registry::kernels(QuantType t) const {
  if (const Backend* f = forced_.load(std::memory_order_acquire)) return kernels(*f, t);
  const Backend& b = scored();
  const KernelSet cpu_row = cpu().kernels(t);
  return &b == &cpu() ? cpu_row : merge(b, cpu_row, t, false);
}

QuantizeFn Registry::quantize(QuantType t) const { return kernels(t).quantize; }
DequantizeFn Registry::dequantize(QuantType t) const { return kernels(t).dequantize; }
DotFn Registry::dot(QuantType t) const { return kernels(t).dot; }

detail::EngineOps Registry::engine_ops(const Backend& b) const {
  const detail::EngineOps* base = cpu().engine_ops();
  LQ_ASSERT(base && base->products && base->gemm);
  detail::EngineOps ops = *base;
  if (&b == &cpu()) return ops;
  if (const detail::EngineOps* own = b.engine_ops()) {
    auto take = [](auto& slot, auto fn) {
      if (fn) slot = fn;
    };
    take(ops.supports_weight, own->supports_weight);
    take(ops.products, own->products);
    take(ops.gemm, own->gemm);
    take(ops.softmax_row, own->softmax_row);
    take(ops.silu_mul, own->silu_mul);
    take(ops.rms_norm_row, own->rms_norm_row);
    take(ops.round_half, own->round_half);
    take(ops.add_squares, own->add_squares);
    take(ops.count_non_finite, own->count_non_finite);
    take(ops.grid_error, own->grid_error);
    take(ops.gelu_tanh_mul, own->gelu_tanh_mul);
    take(ops.soft_cap, own->soft_cap);
    take(ops.sum_exp_row, own->sum_exp_row);
    take(ops.kld_row, own->kld_row);
    take(ops.release_buffers, own->release_buffers);
  }
  return ops;
}

}  // namespace lq
