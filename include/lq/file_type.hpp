// liblq: quantization levels (llama.cpp "file types") and their table.
#pragma once

#include <lq/api.hpp>
#include <lq/quant_type.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace lq {

/// A quantization level. Values are llama.cpp's `llama_ftype` ids (written as general.file_type).
enum class FileType : int32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 7,
  Q5_0 = 8,
  Q5_1 = 9,
  Q2_K = 10,
  Q3_K_S = 11,
  Q3_K_M = 12,
  Q3_K_L = 13,
  Q4_K_S = 14,
  Q4_K_M = 15,
  Q5_K_S = 16,
  Q5_K_M = 17,
  Q6_K = 18,
  IQ2_XXS = 19,
  IQ2_XS = 20,
  Q2_K_S = 21,
  IQ3_XS = 22,
  IQ3_XXS = 23,
  IQ1_S = 24,
  IQ4_NL = 25,
  IQ3_S = 26,
  IQ3_M = 27,
  IQ2_S = 28,
  IQ2_M = 29,
  IQ4_XS = 30,
  IQ1_M = 31,
  BF16 = 32,
  TQ1_0 = 36,
  TQ2_0 = 37,
};

/// One row of the level table.
struct FileTypeInfo {
  FileType ftype;
  const char* name;          ///< e.g. "Q4_K_M"
  QuantType default_type;    ///< base tensor type of the mixture
  bool requires_imatrix;     ///< llama.cpp refuses the level without an importance matrix
  bool ultra_low_bit;        ///< IQ1_S, IQ1_M, TQ1_0 / TERNARY: GGUF only (contract rule 7)
  /// The level a file whose every weight is `default_type` is labelled with (file_type_for());
  /// one level per type has it.
  bool labels_pure_type;
  /// The next level up in size and quality, recommended when this one loses too much; equal to
  /// `ftype` at the top of the ladder (the float levels and Q8_0).
  FileType next_up;
  const char* description;

  /// Whether the level has a next level up.
  bool has_next_up() const { return next_up != ftype; }
};

/// Row for `f`; throws Errc::invalid_argument for an unknown id.
LQ_API const FileTypeInfo& file_type_info(FileType f);
/// Every level, in the table's order.
LQ_API std::span<const FileTypeInfo> all_file_types() noexcept;
/// Parses a level name (case-insensitive) including the aliases Q3_K, Q4_K, Q5_K (the _M
/// mixtures, as llama-quantize) and TERNARY (TQ1_0).
LQ_API std::optional<FileType> parse_file_type(std::string_view name) noexcept;
/// The level whose every tensor is `t` (for --pure runs and reporting): the row of default type
/// `t` marked labels_pure_type, if one exists.
LQ_API std::optional<FileType> file_type_for(QuantType t) noexcept;

}  // namespace lq
