// The kernel registry: every compiled-in back-end registered once, CPU last.
#include <lq/backend.hpp>
#include <lq/error.hpp>

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

const Backend& Registry::active() const {
  if (forced_) return *forced_;
  const Backend* best = backends_.back().get();
  int best_score = best->score();
  for (const auto& b : backends_) {
    const int s = b->score();
    if (s > best_score) { best = b.get(); best_score = s; }
  }
  return *best;
}

const Backend* Registry::find(std::string_view name) const {
  for (const auto& b : backends_)
    if (b->name() == name) return b.get();
  return nullptr;
}

void Registry::select(std::string_view name) {
  if (name == "auto") { forced_ = nullptr; return; }
  const Backend* b = find(name);
  if (!b) fail(Errc::invalid_argument, "unknown back-end '{}' (available: cpu{})", name, find("cuda") ? ", cuda" : "");
  if (b->score() <= 0) fail(Errc::invalid_argument, "back-end '{}' is not usable on this machine", name);
  forced_ = b;
}

KernelSet Registry::kernels(const Backend& b, QuantType t) const {
  const KernelSet cpu_row = cpu().kernels(t);
  if (&b == &cpu()) return cpu_row;
  const KernelSet own = b.kernels(t);
  KernelSet k;
  k.quantize = b.supports(t, Op::quantize) && own.quantize ? own.quantize : cpu_row.quantize;
  k.dequantize = b.supports(t, Op::dequantize) && own.dequantize ? own.dequantize : cpu_row.dequantize;
  k.dot = b.supports(t, Op::dot) && own.dot ? own.dot : cpu_row.dot;
  return k;
}

QuantizeFn Registry::quantize(QuantType t) const { return kernels(active(), t).quantize; }
DequantizeFn Registry::dequantize(QuantType t) const { return kernels(active(), t).dequantize; }
DotFn Registry::dot(QuantType t) const { return kernels(active(), t).dot; }

}  // namespace lq
