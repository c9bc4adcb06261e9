// THE type table: one row per ggml type id (and per liblq type: W8, A8, ids from kLqTypeBase, never
// in GGUF), the format's facts and its scalar references. Adding a type = one row here + its lib/types/ref/<family>.cpp (+ optional rows in a back-end's kernel
// table); everything else (CLI, tests, GGUF I/O, the mixtures) reads these rows. No back-end
// kernels here: each back-end keeps its own row per type.
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/quant_type.hpp>

#include "types/ref/blocks.hpp"
#include "types/ref/float.hpp"
#include "types/ref/int4_groups.hpp"
#include "types/ref/int8_rows.hpp"
#include "types/ref/iq1.hpp"
#include "types/ref/iq2.hpp"
#include "types/ref/iq3.hpp"
#include "types/ref/iq4.hpp"
#include "types/ref/kquants.hpp"
#include "types/ref/legacy.hpp"
#include "types/ref/q8_k.hpp"
#include "types/ref/ternary.hpp"

#include <array>
#include <cctype>
#include <string>
#include <vector>

namespace lq {
namespace {

using QT = QuantType;
constexpr QT kNone = QT::F32;  // dot_type placeholder for rows without a dot kernel
constexpr TypeInfo unused(int id) {
  const QT t = static_cast<QT>(id);
  return TypeInfo{t, nullptr, 0, 0, false, false, false, false, t, kNone, 0, nullptr, nullptr, nullptr};
}
// clang-format off
// Columns: type, name, block size, block bytes, floating, storable, needs imatrix (quantizer),
// refused without imatrix (llama-quantize), fallback (= type: none), dot type, round-trip tolerance,
// and the scalar references quantize / dequantize / dot.
constexpr std::array<TypeInfo, kQuantTypeSlots> kTable = {{
  {QT::F32,     "F32",       1,   4, true , true , false, false, QT::F32,     QT::F32,  0.0,   ref::quantize_f32, ref::dequantize_f32, ref::dot_f32},
  {QT::F16,     "F16",       1,   2, true , true , false, false, QT::F16,     QT::F16,  1e-3,  ref::quantize_f16, ref::dequantize_f16, ref::dot_f16},
  {QT::Q4_0,    "Q4_0",     32,  18, false, true , false, false, QT::Q4_0,    QT::Q8_0, 0.12,  ref::quantize_q4_0, ref::dequantize_q4_0, ref::dot_q4_0},
  {QT::Q4_1,    "Q4_1",     32,  20, false, true , false, false, QT::Q4_1,    QT::Q8_1, 0.11,  ref::quantize_q4_1, ref::dequantize_q4_1, ref::dot_q4_1},
  unused(4),
  unused(5),
  {QT::Q5_0,    "Q5_0",     32,  22, false, true , false, false, QT::Q5_0,    QT::Q8_0, 0.06,  ref::quantize_q5_0, ref::dequantize_q5_0, ref::dot_q5_0},
  {QT::Q5_1,    "Q5_1",     32,  24, false, true , false, false, QT::Q5_1,    QT::Q8_1, 0.055, ref::quantize_q5_1, ref::dequantize_q5_1, ref::dot_q5_1},
  {QT::Q8_0,    "Q8_0",     32,  34, false, true , false, false, QT::Q8_0,    QT::Q8_0, 0.008, ref::quantize_q8_0, ref::dequantize_q8_0, ref::dot_q8_0},
  {QT::Q8_1,    "Q8_1",     32,  36, false, false, false, false, QT::Q8_1,    QT::Q8_1, 0.008, ref::quantize_q8_1, ref::dequantize_q8_1, nullptr},
  {QT::Q2_K,    "Q2_K",    256,  84, false, true , false, false, QT::Q4_0,    QT::Q8_K, 0.275, ref::quantize_q2_k, ref::dequantize_q2_k, ref::dot_q2_k},
  {QT::Q3_K,    "Q3_K",    256, 110, false, true , false, false, QT::Q4_0,    QT::Q8_K, 0.152, ref::quantize_q3_k, ref::dequantize_q3_k, ref::dot_q3_k},
  {QT::Q4_K,    "Q4_K",    256, 144, false, true , false, false, QT::Q5_0,    QT::Q8_K, 0.073, ref::quantize_q4_k, ref::dequantize_q4_k, ref::dot_q4_k},
  {QT::Q5_K,    "Q5_K",    256, 176, false, true , false, false, QT::Q5_1,    QT::Q8_K, 0.036, ref::quantize_q5_k, ref::dequantize_q5_k, ref::dot_q5_k},
  {QT::Q6_K,    "Q6_K",    256, 210, false, true , false, false, QT::Q8_0,    QT::Q8_K, 0.0175, ref::quantize_q6_k, ref::dequantize_q6_k, ref::dot_q6_k},
  {QT::Q8_K,    "Q8_K",    256, 292, false, false, false, false, QT::Q8_K,    QT::Q8_K, 0.008, ref::quantize_q8_k, ref::dequantize_q8_k, nullptr},
  {QT::IQ2_XXS, "IQ2_XXS", 256,  66, false, true , true , true , QT::IQ4_NL,  QT::Q8_K, 0.36,  ref::quantize_iq2_xxs, ref::dequantize_iq2_xxs, ref::dot_iq2_xxs},
  {QT::IQ2_XS,  "IQ2_XS",  256,  74, false, true , true , true , QT::IQ4_NL,  QT::Q8_K, 0.32,  ref::quantize_iq2_xs, ref::dequantize_iq2_xs, ref::dot_iq2_xs},
  {QT::IQ3_XXS, "IQ3_XXS", 256,  98, false, true , false, true , QT::IQ4_NL,  QT::Q8_K, 0.20,  ref::quantize_iq3_xxs, ref::dequantize_iq3_xxs, ref::dot_iq3_xxs},
  {QT::IQ1_S,   "IQ1_S",   256,  50, false, true , true , true , QT::IQ4_NL,  QT::Q8_K, 0.49,  ref::quantize_iq1_s, ref::dequantize_iq1_s, ref::dot_iq1_s},
  {QT::IQ4_NL,  "IQ4_NL",   32,  18, false, true , false, false, QT::IQ4_NL,  QT::Q8_0, 0.085, ref::quantize_iq4_nl, ref::dequantize_iq4_nl, ref::dot_iq4_nl},
  {QT::IQ3_S,   "IQ3_S",   256, 110, false, true , false, false, QT::IQ4_NL,  QT::Q8_K, 0.15,  ref::quantize_iq3_s, ref::dequantize_iq3_s, ref::dot_iq3_s},
  {QT::IQ2_S,   "IQ2_S",   256,  82, false, true , false, true , QT::IQ4_NL,  QT::Q8_K, 0.27,  ref::quantize_iq2_s, ref::dequantize_iq2_s, ref::dot_iq2_s},
  {QT::IQ4_XS,  "IQ4_XS",  256, 136, false, true , false, false, QT::IQ4_NL,  QT::Q8_K, 0.085, ref::quantize_iq4_xs, ref::dequantize_iq4_xs, ref::dot_iq4_xs},
  {QT::I8,      "I8",        1,   1, false, false, false, false, QT::I8,      kNone,    0.0,   nullptr, nullptr, nullptr},
  {QT::I16,     "I16",       1,   2, false, false, false, false, QT::I16,     kNone,    0.0,   nullptr, nullptr, nullptr},
  {QT::I32,     "I32",       1,   4, false, false, false, false, QT::I32,     kNone,    0.0,   nullptr, nullptr, nullptr},
  {QT::I64,     "I64",       1,   8, false, false, false, false, QT::I64,     kNone,    0.0,   nullptr, nullptr, nullptr},
  {QT::F64,     "F64",       1,   8, true , false, false, false, QT::F64,     kNone,    0.0,   nullptr, ref::dequantize_f64, nullptr},
  {QT::IQ1_M,   "IQ1_M",   256,  56, false, true , false, true , QT::IQ4_NL,  QT::Q8_K, 0.46,  ref::quantize_iq1_m, ref::dequantize_iq1_m, ref::dot_iq1_m},
  {QT::BF16,    "BF16",      1,   2, true , true , false, false, QT::BF16,    QT::BF16, 8e-3,  ref::quantize_bf16, ref::dequantize_bf16, ref::dot_bf16},
  unused(31),
  unused(32),
  unused(33),
  {QT::TQ1_0,   "TQ1_0",   256,  54, false, true , false, false, QT::Q4_0,    QT::Q8_K, 0.45,  ref::quantize_tq1_0, ref::dequantize_tq1_0, ref::dot_tq1_0},
  {QT::TQ2_0,   "TQ2_0",   256,  66, false, true , false, false, QT::Q4_0,    QT::Q8_K, 0.45,  ref::quantize_tq2_0, ref::dequantize_tq2_0, ref::dot_tq2_0},
}};
// liblq's own types (ids from kLqTypeBase): not storable in GGUF. W8's and A8's rows carry a
// header (the float scale) before the int8 values, the last column its size; W4G and W8G are made
// of blocks (int4_groups.hpp).
constexpr std::array<TypeInfo, kLqTypeCount> kLqTable = {{
  {QT::W8,      "W8",        1,   1, false, false, false, false, QT::W8,      QT::A8,   0.01,  ref::quantize_w8, ref::dequantize_i8_row, ref::dot_w8_a8, 4},
  {QT::A8,      "A8",        1,   1, false, false, false, false, QT::A8,      kNone,    0.01,  ref::quantize_a8, ref::dequantize_i8_row, nullptr, 4},
  {QT::W4G,     "W4G",      32,  24, false, false, false, false, QT::W4G,     kNone,    0.11,  ref::quantize_w4g, ref::dequantize_w4g, nullptr, 0},
  {QT::W8G,     "W8G",      32,  40, false, false, false, false, QT::W8G,     kNone,    0.008, ref::quantize_w8g, ref::dequantize_w8g, nullptr, 0},
}};
// clang-format on

constexpr bool rows_match_ids() {
  for (int i = 0; i < kQuantTypeSlots; ++i) {
    if (static_cast<int>(kTable[i].type) != i && kTable[i].block_size != 0) return false;
  }
  for (int i = 0; i < kLqTypeCount; ++i)
    if (static_cast<int>(kLqTable[i].type) != kLqTypeBase + i) return false;
  return true;
}
static_assert(rows_match_ids(), "row i of the type table must describe type id i");
static_assert(kTable[2].block_bytes == sizeof(ref::block_q4_0) && kTable[3].block_bytes == sizeof(ref::block_q4_1));
static_assert(kTable[6].block_bytes == sizeof(ref::block_q5_0) && kTable[7].block_bytes == sizeof(ref::block_q5_1));
static_assert(kTable[8].block_bytes == sizeof(ref::block_q8_0) && kTable[9].block_bytes == sizeof(ref::block_q8_1));
static_assert(kTable[10].block_bytes == sizeof(ref::block_q2_K) && kTable[11].block_bytes == sizeof(ref::block_q3_K));
static_assert(kTable[12].block_bytes == sizeof(ref::block_q4_K) && kTable[13].block_bytes == sizeof(ref::block_q5_K));
static_assert(kTable[14].block_bytes == sizeof(ref::block_q6_K) && kTable[15].block_bytes == sizeof(ref::block_q8_K));
static_assert(kTable[16].block_bytes == sizeof(ref::block_iq2_xxs) && kTable[17].block_bytes == sizeof(ref::block_iq2_xs));
static_assert(kTable[18].block_bytes == sizeof(ref::block_iq3_xxs) && kTable[19].block_bytes == sizeof(ref::block_iq1_s));
static_assert(kTable[20].block_bytes == sizeof(ref::block_iq4_nl) && kTable[21].block_bytes == sizeof(ref::block_iq3_s));
static_assert(kTable[22].block_bytes == sizeof(ref::block_iq2_s) && kTable[23].block_bytes == sizeof(ref::block_iq4_xs));
static_assert(kTable[29].block_bytes == sizeof(ref::block_iq1_m) && kTable[34].block_bytes == sizeof(ref::block_tq1_0));
static_assert(kTable[35].block_bytes == sizeof(ref::block_tq2_0));

}  // namespace

bool is_known_type_id(int32_t id) noexcept {
  if (id >= kLqTypeBase && id < kLqTypeBase + kLqTypeCount) return true;
  return id >= 0 && id < kQuantTypeSlots && kTable[id].valid();
}

namespace {
const TypeInfo& row_of(int32_t id) { return id >= kLqTypeBase ? kLqTable[id - kLqTypeBase] : kTable[id]; }
}  // namespace

const TypeInfo& type_info(QuantType t) {
  const auto id = static_cast<int32_t>(t);
  if (!is_known_type_id(id)) fail(Errc::invalid_model, "unknown type id {}", id);
  return row_of(id);
}

const char* type_name(QuantType t) noexcept {
  const auto id = static_cast<int32_t>(t);
  return is_known_type_id(id) ? row_of(id).name : "?";
}

std::optional<QuantType> parse_quant_type(std::string_view name) noexcept {
  for (const auto& row : all_types()) {
    if (!row.valid()) continue;
    std::string_view n = row.name;
    if (n.size() != name.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < n.size() && eq; ++i)
      eq = std::toupper(static_cast<unsigned char>(name[i])) == n[i];
    if (eq) return row.type;
  }
  return std::nullopt;
}

std::span<const TypeInfo> all_types() noexcept {
  static const auto rows = [] {
    std::vector<TypeInfo> v;
    for (const auto& r : kTable)
      if (r.valid()) v.push_back(r);
    for (const auto& r : kLqTable) v.push_back(r);
    return v;
  }();
  return rows;
}

}  // namespace lq
