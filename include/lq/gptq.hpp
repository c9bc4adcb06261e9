// liblq: GPTQ weight-only quantization (and its round-to-nearest baseline) of a Hugging Face
// Llama-family checkpoint to 2/3/4/8-bit integer weights with per-group scales, written as a
// compressed-tensors "pack-quantized" directory (vLLM's W4A16 format) or in the AutoGPTQ /
// GPTQModel layout (qweight, qzeros, scales, g_idx). Calibration runs block by block through the
// engine: block L's Hessians come from the model whose blocks < L already hold their quantized
// weights (llm-compressor's sequential pipeline).
#pragma once

#include <lq/api.hpp>
#include <lq/calibration.hpp>
#include <lq/context.hpp>
#include <lq/model.hpp>
#include <lq/smoothquant.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lq {

class Model;

/// Column order of the GPTQ walk.
enum class GptqActOrder {
  none,    ///< columns in their order; group of column i = i / group_size
  static_groups,  ///< columns by descending diag(H), groups stay i / group_size (scales fixed from
                  ///< the original weights before the walk: AutoGPTQ static_groups, llm-compressor
                  ///< actorder "static"); g_idx is the identity grouping, no gather at run time
  group,   ///< columns by descending diag(H), group = position in that order / group_size (AutoGPTQ
           ///< desc_act without static groups, llm-compressor actorder "group"): g_idx is not monotonic
};

/// How the quantized weights are stored.
enum class GptqLayout {
  compressed_tensors,  ///< weight_packed / weight_scale / weight_shape (+ weight_zero_point, weight_g_idx)
  gptq,                ///< AutoGPTQ v1: qweight / qzeros (zeros stored minus one) / scales fp16 / g_idx
  gptq_v2,             ///< GPTQModel v2: as gptq with the true zeros
  awq,                 ///< AutoAWQ GEMM: qweight [in, out/8] / qzeros [G, out/8] in the [0,2,4,6,1,3,5,7]
                       ///< nibble order, true zeros / scales fp16 [G, out]; 4-bit, no g_idx
};

/// Settings of one matrix's quantization (the algorithm's knobs).
struct GptqParams {
  int bits = 4;                 ///< 2, 3, 4 or 8
  int64_t group_size = 128;     ///< columns per scale; -1 = one scale per output row (channel)
  bool sym = true;              ///< symmetric (zero = 2^(bits-1)), else min-max with a zero point
  GptqActOrder act_order = GptqActOrder::none;
  double damp = 0.01;           ///< dampening: damp * mean(diag H) added to the diagonal
  int max_damp_raises = 4;      ///< on a failed Cholesky: damp x 10, at most this many times
  int64_t block_size = 128;     ///< lazy-batch width
  bool rtn = false;             ///< round to nearest: no error feedback, H unused
  /// Scales are rounded to this storage before the codes are chosen (what a reader gets back):
  /// 0 = float, 16 = binary16, 17 = bfloat16.
  int scale_storage = 0;
  /// Scale search of each group (GPTQ only, not RTN): 0 = the min-max range (AutoGPTQ's and
  /// compressed-tensors' memoryless min-max observer); n = also the range shrunk by 1%, 2%, ...
  /// n%, keeping the candidate with the least weighted squared rounding error of the group's
  /// weights, column j weighted by 1 / U_jj² (U the Cholesky factor of H⁻¹: what GPTQ's loss
  /// charges an error there; an importance like llama.cpp's imatrix diag(H), but net of what the
  /// later columns compensate): the original weights with static groups or per channel, else the
  /// error-updated weights at the group's first column.
  int scale_search = 20;
};

/// Throws Errc::invalid_argument naming the setting (bits, group size, damp, block size).
LQ_API void validate(const GptqParams& params);

/// One quantized matrix (rows x cols, Hugging Face [out, in] layout).
struct LQ_API GptqMatrix {
  int64_t rows = 0, cols = 0, groups = 0;
  int bits = 4;
  std::vector<uint8_t> codes;   ///< rows x cols, unsigned in [0, 2^bits - 1]
  std::vector<float> scales;    ///< rows x groups (already rounded to params.scale_storage)
  std::vector<int32_t> zeros;   ///< rows x groups, unsigned in [0, 2^bits - 1]
  std::vector<int32_t> g_idx;   ///< cols: group of each column
  std::vector<int32_t> perm;    ///< act-order: column order of the walk (empty without)
  double damp = 0;              ///< dampening fraction that succeeded
  int damp_raises = 0;          ///< times the dampening was raised (Cholesky failed)
  int64_t dead_columns = 0;     ///< columns with H_ii = 0 (zeroed)
  double loss = 0;              ///< sum (w - q)^2 / U_ii^2 / 2 (0 for RTN)
  /// W[r, c] = scales[r, g] * (codes[r, c] - zeros[r, g]), g = g_idx[c].
  std::vector<float> dequantize() const;
};

/// Quantizes `w` (rows x cols, row-major) with GPTQ given H (cols x cols, row-major, symmetric;
/// the mean of 2 x xᵀ over the calibration tokens), or by round to nearest when params.rtn (h may
/// then be null). Rows run in parallel on ctx's threads. Throws Errc::invalid_argument for a
/// group size that does not divide cols, and Errc::smoothquant_failed (exit 14, the code of a
/// failed calibrated transformation) when H is not positive definite even after the dampening
/// was raised max_damp_raises times (never a silent fallback to round to nearest).
LQ_API GptqMatrix gptq_quantize_matrix(const float* w, int64_t rows, int64_t cols, const float* h,
                                       const GptqParams& params, const Context& ctx = {});

/// The whole configuration of `lq quantize MODEL gptq`.
struct GptqConfig {
  GptqParams params;
  GptqLayout layout = GptqLayout::compressed_tensors;
  int64_t calibration_samples = 512;  ///< chunks of ctx tokens (llama-imatrix's cut)
  int64_t ctx = 512;
  std::filesystem::path calibration_data;  ///< empty = the built-in WikiText-2 text
  /// Set: each linear is quantized by this function instead of gptq_quantize_matrix (GGUF block
  /// types, gptq_gguf.hpp). It gets the GGUF tensor name, the weights in the engine's (GGUF) row
  /// order, rows, cols and H, and returns the dequantized weights in the same order, which the
  /// later blocks' calibration sees. matrix() and write() have nothing to give then. A merged
  /// expert tensor (ffn_*_exps, streamed runs) calls it once per expert, experts in order, with
  /// the merged tensor's name, that expert's rows x cols and the Hessian of the tokens routed to
  /// it; h is null for an expert no calibration token reached. The hook may use w's storage and,
  /// where h_last says the run reads h no more (the last linear reading its input), h's as its own
  /// (GPTQ's walk and factor in place: no second copy of either).
  std::function<std::vector<float>(const std::string& name, std::vector<float>& w, int64_t rows, int64_t cols, float* h,
                                    bool h_last, const Context& ctx)>
      matrix_hook;
  /// gptq_model only: a checkpoint after every block in this state directory (see
  /// gptq_checkpoint_state); empty: none (the work files live in the output's temporary directory).
  std::filesystem::path checkpoint_dir;
  /// Continue the checkpoint in checkpoint_dir (Errc::invalid_argument when it is missing or was made
  /// for another model, settings or calibration data).
  bool resume = false;
  /// With matrix_hook and checkpoint_dir: the caller's settings, recorded in the checkpoint's
  /// identity (a resume with another tag is refused as other settings). With a hook the checkpoint
  /// is not removed at the end: the caller keeps its own per-tensor results beside it and removes
  /// it once its output is written.
  std::string checkpoint_tag;
  /// gptq_model only: SmoothQuant before GPTQ, llm-compressor's recommended W8A8 recipe. Per block,
  /// the smoothing statistics of the norm-fed linears' inputs (input_layernorm -> q/k/v,
  /// post_attention_layernorm -> gate/up) are gathered from the hidden states entering it, the
  /// scales computed as SmoothQuantizer does (alpha, alpha_auto with its grid and auto_rows,
  /// activation_percentile) and folded (norm γ/s, W*s), and each linear is quantized by GPTQ with
  /// the Hessian of the smoothed inputs. Needs params bits 8, group_size -1, sym, not rtn, and the
  /// compressed-tensors layout; the output is the int-quantized W8A8 directory of
  /// `quantize MODEL smoothquant --smoothquant` (static_activations: an input_scale per linear).
  /// per_channel must be true and quantize true; the calibration fields of this config
  /// (calibration_samples, ctx, calibration_data) are the ones used, the SmoothQuantConfig's are not.
  std::optional<SmoothQuantConfig> smoothquant;
  /// gptq_model on a mixture of experts: the most bytes one block's expert Hessians
  /// (n_expert x (n_embd² + n_ff_exp²) floats) may take in memory. Above it, the experts' inputs
  /// are spooled to the work directory during the calibration pass and each Hessian is formed from
  /// them just before a projection reading it is quantized (an expert's gate/up one twice), one at
  /// a time: the same bytes in less memory, for the spool's disk space (the routed tokens x
  /// (n_embd + n_ff_exp) floats) and those sums done again. 0: always spooled.
  int64_t expert_hessian_bytes = int64_t{1} << 30;
  /// The calibration forward with activations rounded to bf16 against the checkpoint's bf16
  /// weights (SessionOptions::bf16_activations), as llm-compressor calibrates a bf16 model, or
  /// with float activations (false). Unset: bf16 when the checkpoint's decoder linears are bf16
  /// (SmoothQuant's rule). On six models x two schemes the KLD was lower in 8 of 12 cells and
  /// equal in 4 (docs/performance.md, GPTQ).
  std::optional<bool> bf16_activations;
};

/// What happened to one linear layer.
struct GptqLayerReport {
  std::string module;     ///< "model.layers.3.self_attn.q_proj"
  int layer = -1;
  double loss = 0;
  double damp = 0;
  int damp_raises = 0;
  int64_t dead_columns = 0;
};

struct GptqResult {
  std::filesystem::path output;
  std::vector<std::string> files;
  uint64_t output_bytes = 0, source_bytes = 0;
  int64_t n_parameters = 0, n_quantized = 0;
  double bpw = 0;                      ///< 8 x tensor data bytes / n_parameters
  std::vector<GptqLayerReport> layers;
  int damp_raises = 0;                 ///< sum over layers
  std::string calibration_source;
  int64_t chunks = 0, ctx = 0, tokens = 0;
  double calibration_seconds = 0, quantize_seconds = 0, seconds = 0;
  std::vector<std::string> warnings;
  std::filesystem::path checkpoint;    ///< gptq_model: the checkpoint's state directory (removed on success)
  int64_t resumed_blocks = 0;          ///< gptq_model: blocks taken from the checkpoint
  /// gptq_model on a mixture of experts: bytes of expert down inputs spooled to the work directory
  /// (GptqConfig::expert_hessian_bytes); 0 when every Hessian was formed in memory.
  int64_t expert_inputs_spooled = 0;
  /// GptqConfig::smoothquant: the smoothing groups (two per block, forward order; scales empty).
  std::vector<SmoothQuantGroup> smoothing;
  bool calibration_bf16 = false;       ///< the calibration's activations were bf16 (GptqConfig::bf16_activations)
};

/// The GPTQ pipeline over one Hugging Face checkpoint: load, calibrate and quantize block by
/// block (run()), then apply the dequantized weights to a Model in memory and/or write the
/// output directory. A mixture of experts (Mixtral, Qwen2-MoE, Qwen3-MoE) is calibrated by
/// gptq_model's streamed runner (each expert on the tokens routed to it, a work folder under the
/// system's temporary directory for the hidden states between blocks) with this quantizer's walk
/// on each matrix: every expert is a module of its own (matrix("...experts.3.w1")), the routers
/// stay float, and the bytes written are gptq_model's.
class LQ_API GptqQuantizer {
 public:
  /// Validates and loads the model (Errc::invalid_argument for a GGUF source; Errc::invalid_argument
  /// when a linear's row length is not a multiple of the group size).
  GptqQuantizer(const ModelSource& source, GptqConfig config);
  ~GptqQuantizer();
  GptqQuantizer(const GptqQuantizer&) = delete;
  GptqQuantizer& operator=(const GptqQuantizer&) = delete;

  /// Calibration data (as `lq analyze`); without a call run() uses config.calibration_data or
  /// the built-in text. Errc::calibration_error when it gives not one chunk of ctx tokens.
  void set_calibration(const CalibrationData& data);
  /// Quantizes every decoder linear (block by block; RTN needs no calibration). Afterwards
  /// model() holds the dequantized weights (F32).
  void run(const Context& ctx = {});
  /// Writes the output directory (DIR.tmp-XXXX, renamed on success, removed on failure or
  /// cancellation). An existing non-empty `dir` is replaced only when it holds an earlier
  /// GPTQ / compressed-tensors output; otherwise Errc::output_error.
  GptqResult write(const std::filesystem::path& dir, const Context& ctx = {});
  /// The quantized matrix of module `module` (after run()), rows in Hugging Face order.
  const GptqMatrix& matrix(const std::string& module) const;
  Model& model();
  const GptqResult& summary() const;

  /// For algorithms that run their own search on this pipeline (AWQ, awq.hpp) instead of run():
  /// module `module`'s quantized matrix (rows in Hugging Face order), put into model() as its
  /// dequantized weights (F32) and written by write().
  void set_matrix(const std::string& module, GptqMatrix q, const GptqLayerReport& report);
  /// Replaces the non-quantized float tensor `gguf_name` (a norm weight) by `values`, rounded to
  /// the checkpoint's dtype of that tensor, in model() and in what write() writes.
  void set_float_tensor(const std::string& gguf_name, std::vector<float> values);
  /// Ends such an external run: write() may follow; the calibration figures of `stats` (source,
  /// chunks, ctx, tokens, seconds, warnings) go into the summary.
  void finish_external(const GptqResult& stats);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The whole command: open `model`, quantize, write `out` (default gptq_default_output()), streamed
/// at bounded memory: one block's weights, its Hessians and one calibration chunk's activations in
/// memory, the hidden states between blocks and the quantized matrices in work files; the output
/// has the bytes GptqQuantizer::write gives. With config.checkpoint_dir the work files are a
/// checkpoint after every block, which config.resume continues to the same bytes.
/// config.matrix_hook is refused (Errc::invalid_argument): use GptqQuantizer.
LQ_API GptqResult gptq_model(const std::filesystem::path& model, std::filesystem::path out, const GptqConfig& config,
                             const Context& ctx = {});

/// The state directory of a gptq_model checkpoint in checkpoint directory `dir`:
/// dir/gptq-w4a16-g128 (rtn-..., -asym, -act, -actgroup as the settings say; gptq-w8a8-sq with
/// config.smoothquant, -static with static activations). With `resume`: `dir`
/// itself when it holds a checkpoint, else that subdirectory when it does, else
/// Errc::invalid_argument.
LQ_API std::filesystem::path gptq_checkpoint_state(const std::filesystem::path& dir, const GptqConfig& config,
                                                   bool resume);

/// "NAME-gptq-w4a16" (RTN: "NAME-rtn-w4a16"; bits and group size in the name when not 4 / 128:
/// "NAME-gptq-w3a16-g64"; with config.smoothquant "NAME-gptq-w8a8") in the current directory.
LQ_API std::filesystem::path gptq_default_output(const std::filesystem::path& model, const GptqConfig& config);

/// The exact GPTQ form of GGUF rows (`rows` rows of `cols` values, GGUF block layout): Q4_0 ->
/// symmetric 4-bit g32 (code = q, zero 8, scale = d, negative scales kept as stored), Q8_0 -> 8-bit
/// g32 (code = q + 128, zero 128), Q4_1 -> asymmetric 4-bit g32 (scale = d, zero = -m / d) when
/// every block's -m / d is an integer in [0, 15] with -zero * d == m exactly. Returns false (and
/// leaves `out` unspecified) for another type or a Q4_1 block off that grid.
LQ_API bool gptq_from_gguf_rows(QuantType type, const void* data, int64_t rows, int64_t cols, GptqMatrix& out);

/// Result of `lq convert X.gguf gptq|compressed-tensors`.
struct GgufConvertResult {
  std::filesystem::path output;
  std::vector<std::string> files;
  uint64_t output_bytes = 0, source_bytes = 0;
  int bits = 4;
  int64_t group_size = 32;
  bool sym = true;
  std::vector<std::string> exact;        ///< modules whose codes and scales are the GGUF's own
  std::vector<std::string> requantized;  ///< modules rounded to nearest from the dequantized weights
  double worst_rel_rmse = 0;             ///< largest relative RMS error of a requantized module
  std::string worst_module;
  std::vector<std::string> lost;         ///< what the conversion loses, in words
  double seconds = 0;
};

/// Converts a Llama-family GGUF into a W4A16-style directory (`layout`). The scheme follows the
/// linears' most common type: Q4_0 -> symmetric 4-bit g32, Q8_0 -> 8-bit g32, Q4_1 -> asymmetric
/// 4-bit g32 (each exact where the grid allows, see gptq_from_gguf_rows); any other type ->
/// symmetric 4-bit g128. Tensors that do not map exactly are rounded to nearest from their
/// dequantized values. q/k rows are put back in Hugging Face order; embeddings, norms and the
/// output projection are written as F32 (their GGUF values, exact) or in their 16-bit type. A
/// config.json is made from the GGUF's hyper-parameters; no tokenizer files (the GGUF's
/// vocabulary is not converted). Errc::invalid_argument for a non-GGUF source.
LQ_API GgufConvertResult convert_gguf_to_gptq(const std::filesystem::path& gguf, std::filesystem::path out,
                                              GptqLayout layout, const Context& ctx = {});

}  // namespace lq
