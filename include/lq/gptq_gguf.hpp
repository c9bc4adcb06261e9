// liblq: GPTQ's error feedback on GGUF block types (`lq quantize MODEL gguf -q LEVEL --gptq`).
// The column walk of gptq.hpp with a GGUF type's own quantizer as the grid: at the first column
// of each block (32 values; 256 for k-quants and i-quants) the type's quantizer (with the
// importance matrix, as a plain quantization uses it) fixes the block's scales from the current,
// error-corrected weights; each column is then rounded to the nearest level of that fixed grid
// (the lattice i-quants: each group of 8 columns to the nearest codebook entry, importance-
// weighted, at its first column) and its error is spread over the columns still to come. The
// result is the type's exact bytes.
#pragma once

#include <lq/api.hpp>
#include <lq/context.hpp>
#include <lq/gptq.hpp>
#include <lq/model.hpp>
#include <lq/quant_type.hpp>
#include <lq/quantizer.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace lq {

/// Whether gptq_gguf_quantize_matrix() handles `t`: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K to Q6_K,
/// IQ4_NL, IQ4_XS, and the lattice i-quants IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S
/// (not the ternary TQ1_0/TQ2_0, Q8_1 or the float types).
LQ_API bool gptq_gguf_supported(QuantType t);

/// One matrix quantized by the GGUF-grid walk.
struct GptqGgufMatrix {
  std::vector<uint8_t> bytes;  ///< rows x row_bytes(cols): the type's GGUF blocks
  std::vector<float> values;   ///< rows x cols: the dequantized values the walk used
  double loss = 0;             ///< sum (w - q)^2 / U_ii^2 / 2
  double damp = 0;
  int damp_raises = 0;
  int64_t dead_columns = 0;
};

/// Quantizes `w` (rows x cols, row-major, GGUF row order) into `type` with GPTQ error feedback
/// given H (cols x cols, the mean of 2 x xᵀ). `imatrix` (cols column weights, may be null) goes to
/// the type's quantizer for each block's scale search. Uses params.damp, max_damp_raises; the
/// block size, bits and groups come from the type. Errc::invalid_argument for an unsupported type
/// or a row length that is not a multiple of the type's block; Errc::smoothquant_failed when H
/// is not positive definite after the dampening raises.
LQ_API GptqGgufMatrix gptq_gguf_quantize_matrix(QuantType type, const float* w, int64_t rows, int64_t cols,
                                                const float* h, const float* imatrix, const GptqParams& params,
                                                const Context& ctx = {});

/// Calibration of `lq quantize MODEL gguf --gptq`.
struct GptqGgufConfig {
  double damp = 0.01;
  int64_t calibration_samples = 128;  ///< chunks of ctx tokens
  int64_t ctx = 256;
  std::filesystem::path calibration_data;  ///< empty = the built-in WikiText-2 text
  /// A mixture of experts: the most bytes one block's expert Hessians may take in memory before
  /// the experts' inputs are spooled to work_dir (GptqConfig::expert_hessian_bytes).
  int64_t expert_hessian_bytes = int64_t{1} << 30;
  /// Where the block-by-block calibration keeps its work files (each block's input hidden states)
  /// while it runs, with one block of the model in memory, as gptq_model streams (every Hugging
  /// Face checkpoint; mixtures of experts only so). Empty: the whole model is loaded
  /// (GptqQuantizer), except for a mixture of experts, which streams through a folder of its own
  /// under the system's temporary directory (TMPDIR), removed when the call returns.
  std::filesystem::path work_dir;
  /// A checkpoint after every block in this state directory (the streamed calibration's, and each
  /// walked tensor's bytes in gguf-tensors/ beside it); needs the streamed calibration (work_dir
  /// set and a model gptq_model streams). Removed by quantize_model once the file is written.
  std::filesystem::path checkpoint_dir;
  /// Continue checkpoint_dir: its logged blocks are not calibrated or walked again (Errc::
  /// invalid_argument when it was made for another model, calibration, level, types or imatrix).
  bool resume = false;
};

/// The GPTQ-made bytes of a model's decoder linears, for QuantizeOptions::tensor_bytes.
struct GptqGgufResult {
  std::map<std::string, std::vector<uint8_t>> tensor_bytes;  ///< GGUF name -> bytes of its planned type
  std::vector<std::string> gptq_tensors;   ///< "blk.0.attn_q.weight (Q4_K)"
  std::vector<std::string> plain_tensors;  ///< linears whose type has no GPTQ walk ("... (Q6_K)")
  std::string calibration_source;
  int64_t chunks = 0, ctx = 0, tokens = 0;
  double calibration_seconds = 0, quantize_seconds = 0;
  int64_t resumed_blocks = 0;  ///< blocks taken from the checkpoint
};

/// Whether gptq_gguf_tensors calibrates `src` block by block with one block in memory (given a
/// work_dir), which a checkpoint needs: Hugging Face checkpoints whose blocks do not depend on
/// their index, without experts or scaled embeddings.
LQ_API bool gptq_gguf_streams(const ModelSource& src);

/// Plans `src` with `options` (the types each tensor gets), then calibrates block by block
/// (sequentially, as gptq_model) and quantizes every decoder linear whose planned type is
/// supported with the GGUF-grid walk; the others are quantized as a plain run does (their values
/// feed the later blocks' calibration) and are not in tensor_bytes. Errc::invalid_argument for a
/// GGUF source.
LQ_API GptqGgufResult gptq_gguf_tensors(const ModelSource& src, const QuantizeOptions& options,
                                        const GptqGgufConfig& config, const Context& ctx = {});

}  // namespace lq
