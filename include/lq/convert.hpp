// liblq: converting a third-party quantized checkpoint (GPTQ, AWQ, compressed-tensors) to GGUF by
// the exact mapping: where a linear's integer grid is a GGUF block type's own form, its codes and
// scales are written as they are (symmetric 4-bit with groups a multiple of 32 -> Q4_0,
// asymmetric 4-bit / AWQ -> Q4_1, symmetric 8-bit -> Q8_0); other quantized tensors are
// requantized to Q8_0 from their exact dequantization, float tensors are copied. The result names
// each tensor's mapping and its worst error against the source's dequantized values. (To
// requantize the whole checkpoint to a level, run quantize_model() on the same ModelSource.)
// compressed-tensors int8 W8A8 (read as W8 rows) maps its rows to Q8_0; static activation scales
// are dropped (GGUF has no place for them).
#pragma once

#include <lq/api.hpp>
#include <lq/context.hpp>
#include <lq/model.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lq {

/// How one tensor was written.
struct ExactTensor {
  std::string name;      ///< GGUF name
  std::string type;      ///< type written ("Q4_0", "Q8_0", "F16", ...)
  std::string source;    ///< what the source held ("GPTQ 4-bit g128 sym (v1 zeros)", "BF16", ...)
  /// "exact": the GGUF values equal the source's dequantized values; "codes_kept": codes and
  /// grid kept but a stored number rounded to fp16 (Q4_1's m = -z*s, or a bf16/f32 scale;
  /// max_abs_error says by how much); "requantized": not mappable (why in `note`), requantized
  /// to Q8_0 from the exact dequantization; "copied": a float tensor as stored.
  std::string mapping;
  double max_abs_error = 0;  ///< worst |GGUF value - source value| over the tensor
  std::string note;
};

/// What the conversion produced.
struct ExactConvertResult {
  std::filesystem::path output;
  std::string source_quantization;  ///< the checkpoint's scheme, described
  std::vector<ExactTensor> tensors;
  int n_exact = 0;        ///< "exact" and "codes_kept" tensors
  int n_requantized = 0;
  int n_copied = 0;
  double worst_error = 0;           ///< the largest max_abs_error of all tensors
  uint64_t file_bytes = 0;
  uint64_t source_bytes = 0;
  uint64_t n_weights = 0;
  double bpw = 0;
  double seconds = 0;
};

/// Writes `out` (temporary name, renamed on success) from `src`, a checkpoint opened by
/// ModelSource::open(). Throws Errc::invalid_argument when `src` is not a GPTQ / AWQ /
/// compressed-tensors quantized checkpoint (int8 W8A8 included), Errc::invalid_model for its tensors' problems,
/// Errc::output_error, Errc::interrupted on ctx's cancel token.
LQ_API ExactConvertResult convert_exact_to_gguf(const ModelSource& src, const std::filesystem::path& out,
                                                const Context& ctx = {});

/// Whether `src` is a GPTQ / AWQ / compressed-tensors checkpoint read through dequantization
/// (compressed-tensors int8 W8A8, read as W8, is not), and its scheme described ("" if not).
LQ_API std::string third_party_quantization(const ModelSource& src);

}  // namespace lq
