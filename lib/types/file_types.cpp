// THE level table: one row per llama.cpp file type (quantization level) with its base type,
// importance-matrix rule, pure-run label and next level up. Per-tensor mixture rules live in
// lib/quantize/mixture.cpp; nothing else switches over levels.
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/file_type.hpp>

#include <array>
#include <cctype>
#include <string>

namespace lq {
namespace {

using F = FileType;
using QT = QuantType;

// clang-format off
// Columns: level, name, base type, requires an imatrix (llama-quantize refuses it without), GGUF
// only (ultra-low-bit), labels a pure run of its base type, next level up (= itself: none).
constexpr std::array<FileTypeInfo, 32> kLevels = {{
  {F::F32,     "F32",     QT::F32,     false, false, true , F::F32,     "32-bit float, no quantization"},
  {F::F16,     "F16",     QT::F16,     false, false, true , F::F16,     "16-bit float"},
  {F::BF16,    "BF16",    QT::BF16,    false, false, true , F::BF16,    "bfloat16"},
  {F::Q8_0,    "Q8_0",    QT::Q8_0,    false, false, true , F::Q8_0,    "8.5 bpw, near lossless"},
  {F::Q6_K,    "Q6_K",    QT::Q6_K,    false, false, true , F::Q8_0,    "6.56 bpw k-quant"},
  {F::Q5_1,    "Q5_1",    QT::Q5_1,    false, false, true , F::Q6_K,    "6.0 bpw legacy"},
  {F::Q5_0,    "Q5_0",    QT::Q5_0,    false, false, true , F::Q6_K,    "5.5 bpw legacy"},
  {F::Q5_K_M,  "Q5_K_M",  QT::Q5_K,    false, false, false, F::Q6_K,    "Q5_K with Q6_K for sensitive tensors"},
  {F::Q5_K_S,  "Q5_K_S",  QT::Q5_K,    false, false, true , F::Q6_K,    "Q5_K throughout"},
  {F::Q4_1,    "Q4_1",    QT::Q4_1,    false, false, true , F::Q5_K_M,  "5.0 bpw legacy"},
  {F::Q4_0,    "Q4_0",    QT::Q4_0,    false, false, true , F::Q5_K_M,  "4.5 bpw legacy"},
  {F::Q4_K_M,  "Q4_K_M",  QT::Q4_K,    false, false, false, F::Q5_K_M,  "Q4_K with Q6_K for sensitive tensors (recommended)"},
  {F::Q4_K_S,  "Q4_K_S",  QT::Q4_K,    false, false, true , F::Q5_K_M,  "Q4_K, a few tensors Q5_K"},
  {F::IQ4_NL,  "IQ4_NL",  QT::IQ4_NL,  false, false, true , F::Q5_K_M,  "4.5 bpw non-linear"},
  {F::IQ4_XS,  "IQ4_XS",  QT::IQ4_XS,  false, false, true , F::Q5_K_M,  "4.25 bpw non-linear"},
  {F::Q3_K_L,  "Q3_K_L",  QT::Q3_K,    false, false, false, F::Q4_K_M,  "Q3_K with Q5_K for sensitive tensors"},
  {F::Q3_K_M,  "Q3_K_M",  QT::Q3_K,    false, false, false, F::Q4_K_M,  "Q3_K with Q4_K/Q5_K for sensitive tensors"},
  {F::Q3_K_S,  "Q3_K_S",  QT::Q3_K,    false, false, true , F::Q4_K_M,  "Q3_K throughout"},
  {F::IQ3_M,   "IQ3_M",   QT::IQ3_S,   false, false, true , F::Q4_K_M,  "3.66 bpw i-quant mix"},
  {F::IQ3_S,   "IQ3_S",   QT::IQ3_S,   false, false, false, F::Q4_K_M,  "3.44 bpw i-quant"},
  {F::IQ3_XS,  "IQ3_XS",  QT::IQ3_S,   false, false, false, F::Q4_K_M,  "3.3 bpw i-quant mix"},
  {F::IQ3_XXS, "IQ3_XXS", QT::IQ3_XXS, true , false, true , F::Q4_K_M,  "3.06 bpw i-quant (needs an importance matrix)"},
  {F::Q2_K,    "Q2_K",    QT::Q2_K,    false, false, true , F::Q3_K_M,  "Q2_K with Q3_K/Q4_K for sensitive tensors"},
  {F::Q2_K_S,  "Q2_K_S",  QT::Q2_K,    true , false, false, F::Q3_K_M,  "Q2_K throughout (needs an importance matrix)"},
  {F::IQ2_M,   "IQ2_M",   QT::IQ2_S,   true , false, true , F::Q3_K_M,  "2.7 bpw i-quant (needs an importance matrix)"},
  {F::IQ2_S,   "IQ2_S",   QT::IQ2_XS,  true , false, false, F::Q3_K_M,  "2.5 bpw i-quant (needs an importance matrix)"},
  {F::IQ2_XS,  "IQ2_XS",  QT::IQ2_XS,  true , false, true , F::Q3_K_M,  "2.31 bpw i-quant (needs an importance matrix)"},
  {F::IQ2_XXS, "IQ2_XXS", QT::IQ2_XXS, true , false, true , F::Q3_K_M,  "2.06 bpw i-quant (needs an importance matrix)"},
  {F::IQ1_M,   "IQ1_M",   QT::IQ1_M,   true , true , true , F::Q2_K,    "1.75 bpw i-quant (needs an importance matrix)"},
  {F::IQ1_S,   "IQ1_S",   QT::IQ1_S,   true , true , true , F::Q2_K,    "1.56 bpw i-quant (needs an importance matrix)"},
  {F::TQ2_0,   "TQ2_0",   QT::TQ2_0,   false, false, true , F::Q3_K_M,  "2.06 bpw ternary"},
  {F::TQ1_0,   "TQ1_0",   QT::TQ1_0,   false, true , true , F::Q2_K,    "1.69 bpw ternary (alias TERNARY)"},
}};
// clang-format on

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(a[i])) != std::toupper(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

}  // namespace

const FileTypeInfo& file_type_info(FileType f) {
  for (const auto& r : kLevels)
    if (r.ftype == f) return r;
  fail(Errc::invalid_argument, "unknown file type id {}", static_cast<int>(f));
}

std::span<const FileTypeInfo> all_file_types() noexcept { return kLevels; }

std::optional<FileType> parse_file_type(std::string_view name) noexcept {
  static constexpr std::pair<const char*, FileType> kAliases[] = {
      {"Q3_K", F::Q3_K_M}, {"Q4_K", F::Q4_K_M}, {"Q5_K", F::Q5_K_M}, {"TERNARY", F::TQ1_0}};
  for (const auto& [a, f] : kAliases)
    if (iequals(name, a)) return f;
  for (const auto& r : kLevels)
    if (iequals(name, r.name)) return r.ftype;
  return std::nullopt;
}

std::optional<FileType> file_type_for(QuantType t) noexcept {
  for (const auto& r : kLevels)
    if (r.default_type == t && r.labels_pure_type) return r.ftype;
  return std::nullopt;
}

}  // namespace lq
