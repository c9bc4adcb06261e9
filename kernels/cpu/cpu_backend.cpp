// The CPU back-end: its row per type (xsimd kernels where a type has them, the scalar reference
// otherwise), its activation formats, and the Backend object the registry holds (CPU last).
// Must not hold kernels: those live in the family headers and the per-ISA TUs.
#include "cpu_backend.hpp"

#include "arch.hpp"
#include "backend/ops.hpp"
#include "cpu_kernels.hpp"
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
// Q8_0 multiplies two signed operands: without vpdpbusd the panel kernel's offset form costs more
// than the 4x4 tile kernel's sign trick (matmul_bench). BF16 weights multiply bf16-rounded
// activations (as llama.cpp does) with vdpbf16ps, twice the float GEMM's rate; without AVX-512
// BF16 the float GEMM is faster. On AMX the BF16 panel packs four 16-row panels per call.
constexpr int64_t kAmxRows = kAmxGroup * kPanelRows;
const TypeRow kRows[] = {
  //  type      quantize        dequantize          dot            tile       panel (act)                     vnni  AMX panel                          AMX exact (float act)
  {QT::F32,     {nullptr,       nullptr,            dot_f32},      nullptr},
  {QT::F16,     {}},
  {QT::BF16,    {nullptr,       dequantize_bf16,    nullptr},      nullptr,   {gemm_bf16, AF::bf16},          true, {gemm_bf16_amx, AF::bf16, kAmxRows}, {gemm_bf16x3_amx, AF::bf16x3, kAmxRows}},
  {QT::Q4_0,    {quantize_q4_0, nullptr,            dot_q4_0},     tile_q4_0, {qgemm_q4_0, AF::q8_0}},
  {QT::Q4_1,    {quantize_q4_1, nullptr,            dot_q4_1}},
  {QT::Q5_0,    {quantize_q5_0, nullptr,            dot_q5_0},     tile_q5_0, {qgemm_q5_0, AF::q8_0}},
  {QT::Q5_1,    {quantize_q5_1, nullptr,            dot_q5_1}},
  {QT::Q8_0,    {quantize_q8_0, nullptr,            dot_q8_0},     tile_q8_0, {qgemm_q8_0, AF::q8_0},          true},
  {QT::Q2_K,    {quantize_q2_k, dequantize_q2_k,    dot_q2_k},     nullptr,   {qgemm_q2_k, AF::q8_k}},
  {QT::Q3_K,    {quantize_q3_k, dequantize_q3_k,    dot_q3_k},     nullptr,   {qgemm_q3_k, AF::q8_k}},
  {QT::Q4_K,    {quantize_q4_k, dequantize_q4_k,    dot_q4_k},     nullptr,   {qgemm_q4_k, AF::q8_k}},
  {QT::Q5_K,    {quantize_q5_k, dequantize_q5_k,    dot_q5_k},     nullptr,   {qgemm_q5_k, AF::q8_k}},
  {QT::Q6_K,    {quantize_q6_k, dequantize_q6_k,    dot_q6_k},     nullptr,   {qgemm_q6_k, AF::q8_k}},
  {QT::IQ2_XXS, {nullptr,       dequantize_iq2_xxs, dot_iq2_xxs}},
  {QT::IQ2_XS,  {nullptr,       dequantize_iq2_xs,  dot_iq2_xs}},
  {QT::IQ2_S,   {nullptr,       dequantize_iq2_s,   dot_iq2_s}},
  {QT::IQ3_XXS, {nullptr,       dequantize_iq3_xxs, dot_iq3_xxs}},
  {QT::IQ3_S,   {nullptr,       dequantize_iq3_s,   dot_iq3_s}},
  {QT::IQ1_S,   {nullptr,       dequantize_iq1_s,   dot_iq1_s}},
  {QT::IQ1_M,   {nullptr,       dequantize_iq1_m,   dot_iq1_m}},
  {QT::IQ4_NL,  {quantize_iq4_nl, dequantize_iq4_nl, dot_iq4_nl}},
  {QT::IQ4_XS,  {quantize_iq4_xs, dequantize_iq4_xs, dot_iq4_xs}},
  {QT::TQ1_0,   {quantize_tq1_0, dequantize_tq1_0,  dot_tq1_0}},
  {QT::TQ2_0,   {quantize_tq2_0, dequantize_tq2_0,  dot_tq2_0}},
};

const ActFormatRow kActFormats[] = {
  {AF::none,   nullptr,                                        nullptr},
  {AF::q8_0,   [](int64_t k) { return qact_layout(k, 32); },  quantize_act_q8_0},
  {AF::q8_k,   [](int64_t k) { return qact_layout(k, 256); }, quantize_act_q8_k},
  {AF::bf16,   bf16_act_layout,                                quantize_act_bf16},
  {AF::bf16x3, bf16x3_act_layout,                              quantize_act_bf16x3},
};
// clang-format on

// The rows indexed by type id, built once from kRows (each type at most once).
const std::array<TypeRow, kQuantTypeSlots>& rows_by_id() {
  static const auto table = [] {
    std::array<TypeRow, kQuantTypeSlots> t{};
    for (int i = 0; i < kQuantTypeSlots; ++i) t[static_cast<size_t>(i)].type = static_cast<QT>(i);
    for (const TypeRow& r : kRows) t[static_cast<size_t>(r.type)] = r;
    return t;
  }();
  return table;
}

constexpr lq::detail::EngineOps kEngineOps{supports_weight, products,   gemm_nt,     softmax_row,     silu_mul,
                                       rms_norm_row,    round_half, add_squares, count_non_finite};

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
  const auto id = static_cast<int32_t>(t);
  LQ_ASSERT(id >= 0 && id < kQuantTypeSlots);
  return rows_by_id()[static_cast<size_t>(id)];
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
