// The CPU back-end's row per type (rows.hpp): which run-time dispatched kernel runs each op.
// Adding a kernel for a type is one entry in kRows plus its kernel file. Every kernel is named by
// its template (the family headers); dispatched<K> picks its instantiation for this CPU.
#include "arch.hpp"
#include "engine_kernels.hpp"
#include "float.hpp"
#include "int8_gemm.hpp"
#include "iq1.hpp"
#include "iq2.hpp"
#include "iq3.hpp"
#include "iq4.hpp"
#include "kquants.hpp"
#include "legacy.hpp"
#include "legacy_dot.hpp"
#include "rows.hpp"
#include "ternary.hpp"

LQ_CPU_FLOAT_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_LEGACY_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_LEGACY_DOT_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ1_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ2_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_KQUANT_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ3_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ4_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_TERNARY_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_INT8_KERNELS(LQ_CPU_EXTERN)

namespace lq::cpu {
namespace {

using QT = QuantType;
using AF = ActFormat;

// Kernel K as a plain function of its signature (the slot's type picks R and A).
template <template <class> class K, class R, class... A>
R dispatched(A... a) {
  return dispatch_call<K>(a...);
}

// clang-format off
// Q8_0 multiplies two signed operands: without vpdpbusd the panel kernel's offset form costs more
// than the 4x4 tile kernel's sign trick (matmul_bench). BF16 weights multiply bf16-rounded
// activations (as llama.cpp does) with vdpbf16ps, twice the float GEMM's rate; without AVX-512
// BF16 the float GEMM is faster. W8 (int8 x int8, W8A8) runs its panel on every ISA: its dot is
// the only other path. On AMX the BF16 panel packs four 16-row panels per call.
constexpr int64_t kAmxRows = kAmxGroup * kPanelRows;
const TypeRow kRows[] = {
  //  type       quantize                   dequantize                 dot                         tile       panel (act)                      vnni  AMX panel                            AMX exact (float act)
  {QT::F32,     {nullptr,                   nullptr,                   dispatched<DotF32>},         nullptr},
  {QT::F16,     {}},
  {QT::BF16,    {nullptr,                   dispatched<DequantBf16>,   nullptr},                    nullptr,   {gemm_bf16, AF::bf16},           true, {gemm_bf16_amx, AF::bf16, kAmxRows}, {gemm_bf16x3_amx, AF::bf16x3, kAmxRows}},
  {QT::Q4_0,    {dispatched<QuantizeQ4_0>,  nullptr,                   dispatched<DotQ4_0>},        tile_q4_0, {qgemm_q4_0, AF::q8_0}},
  {QT::Q4_1,    {dispatched<QuantizeQ4_1>,  nullptr,                   dispatched<DotQ4_1>}},
  {QT::Q5_0,    {dispatched<QuantizeQ5_0>,  nullptr,                   dispatched<DotQ5_0>},        tile_q5_0, {qgemm_q5_0, AF::q8_0}},
  {QT::Q5_1,    {dispatched<QuantizeQ5_1>,  nullptr,                   dispatched<DotQ5_1>}},
  {QT::Q8_0,    {dispatched<QuantizeQ8_0>,  nullptr,                   dispatched<DotQ8_0>},        tile_q8_0, {qgemm_q8_0, AF::q8_0},          true},
  {QT::Q2_K,    {dispatched<QuantizeQ2K>,   dispatched<DequantQ2K>,    dispatched<DotQ2K>},         nullptr,   {qgemm_q2_k, AF::q8_k}},
  {QT::Q3_K,    {dispatched<QuantizeQ3K>,   dispatched<DequantQ3K>,    dispatched<DotQ3K>},         nullptr,   {qgemm_q3_k, AF::q8_k}},
  {QT::Q4_K,    {dispatched<QuantizeQ4K>,   dispatched<DequantQ4K>,    dispatched<DotQ4K>},         nullptr,   {qgemm_q4_k, AF::q8_k}},
  {QT::Q5_K,    {dispatched<QuantizeQ5K>,   dispatched<DequantQ5K>,    dispatched<DotQ5K>},         nullptr,   {qgemm_q5_k, AF::q8_k}},
  {QT::Q6_K,    {dispatched<QuantizeQ6K>,   dispatched<DequantQ6K>,    dispatched<DotQ6K>},         nullptr,   {qgemm_q6_k, AF::q8_k}},
  {QT::IQ2_XXS, {nullptr,                   dispatched<DequantIq2Xxs>, dispatched<DotIq2XxsQ8K>}},
  {QT::IQ2_XS,  {nullptr,                   dispatched<DequantIq2Xs>,  dispatched<DotIq2XsQ8K>}},
  {QT::IQ2_S,   {nullptr,                   dispatched<DequantIq2S>,   dispatched<DotIq2SQ8K>}},
  {QT::IQ3_XXS, {nullptr,                   dispatched<DequantIq3Xxs>, dispatched<DotIq3Xxs>}},
  {QT::IQ3_S,   {nullptr,                   dispatched<DequantIq3S>,   dispatched<DotIq3S>}},
  {QT::IQ1_S,   {nullptr,                   dispatched<DequantIq1S>,   dispatched<DotIq1SQ8K>}},
  {QT::IQ1_M,   {nullptr,                   dispatched<DequantIq1M>,   dispatched<DotIq1MQ8K>}},
  {QT::IQ4_NL,  {dispatched<QuantizeIq4Nl>, dispatched<DequantIq4Nl>,  dispatched<DotIq4Nl>}},
  {QT::IQ4_XS,  {dispatched<QuantizeIq4Xs>, dispatched<DequantIq4Xs>,  dispatched<DotIq4Xs>}},
  {QT::TQ1_0,   {dispatched<QuantizeTq1_0>, dispatched<DequantTq1_0>,  dispatched<DotTq1_0>}},
  {QT::TQ2_0,   {dispatched<QuantizeTq2_0>, dispatched<DequantTq2_0>,  dispatched<DotTq2_0>}},
  {QT::W8,      {nullptr,                   nullptr,                   dispatched<DotW8A8>},        nullptr,   {gemm_w8, AF::i8_token}},
  {QT::A8,      {dispatched<QuantizeA8>}},
  {QT::W4G,     {nullptr,                   dispatched<DequantW4G>,    nullptr}},
  {QT::W8G,     {nullptr,                   dispatched<DequantW8G>,    nullptr}},
};
// clang-format on

}  // namespace

std::span<const TypeRow> type_rows() { return kRows; }

int64_t count_non_finite(const float* x, int64_t n) { return dispatch_call<CountNonFinite>(x, n); }

}  // namespace lq::cpu
