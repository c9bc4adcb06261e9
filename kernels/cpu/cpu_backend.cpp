// The CPU back-end: its rows looked up by type (the table is dispatch.cpp's: xsimd kernels where
// a type has them, the scalar reference otherwise), its activation formats, and the Backend
// object the registry holds (CPU last). Must not hold kernels: those live in the family headers
// and the per-ISA TUs.
#include "cpu_backend.hpp"

#include "arch.hpp"
#include "backend/ops.hpp"
#include "engine_kernels.hpp"
#include "rows.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/quant_type.hpp>

#include <fmt/format.h>

#include <array>

namespace lq::cpu {
namespace {

using QT = QuantType;
using AF = ActFormat;

// clang-format off
const ActFormatRow kActFormats[] = {
  {AF::none,   nullptr,                                        nullptr},
  {AF::q8_0,   [](int64_t k) { return qact_layout(k, 32); },  quantize_act_q8_0},
  {AF::q8_k,   [](int64_t k) { return qact_layout(k, 256); }, quantize_act_q8_k},
  {AF::bf16,   bf16_act_layout,                                quantize_act_bf16},
  {AF::bf16x3, bf16x3_act_layout,                              quantize_act_bf16x3},
  {AF::i8_token, i8_token_act_layout,                          quantize_act_i8_token},
};
// clang-format on

// The rows indexed by type id, built once from type_rows() (each type at most once).
const std::array<TypeRow, kTypeSlotCount>& rows_by_id() {
  static const auto table = [] {
    std::array<TypeRow, kTypeSlotCount> t{};
    for (int i = 0; i < kQuantTypeSlots; ++i) t[static_cast<size_t>(i)].type = static_cast<QT>(i);
    for (int i = 0; i < kLqTypeCount; ++i) t[static_cast<size_t>(kQuantTypeSlots + i)].type = static_cast<QT>(kLqTypeBase + i);
    for (const TypeRow& r : type_rows()) t[static_cast<size_t>(type_slot(r.type))] = r;
    return t;
  }();
  return table;
}

constexpr lq::detail::EngineOps kEngineOps{supports_weight, products,    gemm_nt,          softmax_row, silu_mul,
                                           rms_norm_row,    round_half,  add_squares,      count_non_finite,
                                           grid_error,      gelu_tanh_mul, soft_cap,         sum_exp_row, kld_row,
                                           release_product_buffers};

class CpuBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu"; }
  int score() const override { return 2; }
  bool supports(QuantType t, Op op) const override {
    const auto& ref = type_info(t);
    switch (op) {
      case Op::quantize: return ref.quantize_ref != nullptr;
      case Op::dequantize: return ref.dequantize_ref != nullptr;
      case Op::dot: return ref.dot_ref != nullptr;
    }
    return false;
  }
  KernelSet kernels(QuantType t) const override {
    const auto& ref = type_info(t);
    const KernelSet& k = row(t).k;
    return {k.quantize ? k.quantize : ref.quantize_ref, k.dequantize ? k.dequantize : ref.dequantize_ref,
            k.dot ? k.dot : ref.dot_ref};
  }
  std::string description() const override { return fmt::format("CPU ({})", best_isa()); }
  const lq::detail::EngineOps* engine_ops() const override { return &kEngineOps; }
};

}  // namespace

const TypeRow& row(QuantType t) {
  const int slot = type_slot(t);
  LQ_ASSERT(slot >= 0);
  return rows_by_id()[static_cast<size_t>(slot)];
}

const ActFormatRow& act_format(ActFormat f) {
  for (const auto& r : kActFormats)
    if (r.format == f) return r;
  return kActFormats[0];
}

PanelKernel panel_kernel(QuantType t, bool float_act, int64_t k) {
  static const bool vnni = has_avx512_vnni(), amx = has_amx_bf16();
  const TypeRow& r = row(t);
  // bf16 records round the activations: with float_act only the exact kernel may run.
  if (float_act && r.panel.act == ActFormat::bf16) return amx && r.exact_amx && k % 32 == 0 ? r.exact_amx : PanelKernel{};
  if (amx && r.panel_amx) return r.panel_amx;
  if (r.panel && (vnni || !r.panel_needs_vnni)) return r.panel;
  return {};
}

std::unique_ptr<Backend> make_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace lq::cpu
