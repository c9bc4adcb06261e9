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

QuantizeFn Registry::quantize(QuantType t) const {
  const Backend& a = active();
  if (a.supports(t, Op::quantize))
    if (auto f = a.kernels(t).quantize) return f;
  return backends_.back()->kernels(t).quantize;
}

DequantizeFn Registry::dequantize(QuantType t) const {
  const Backend& a = active();
  if (a.supports(t, Op::dequantize))
    if (auto f = a.kernels(t).dequantize) return f;
  return backends_.back()->kernels(t).dequantize;
}

DotFn Registry::dot(QuantType t) const {
  const Backend& a = active();
  if (a.supports(t, Op::dot))
    if (auto f = a.kernels(t).dot) return f;
  return backends_.back()->kernels(t).dot;
}

}  // namespace lq
