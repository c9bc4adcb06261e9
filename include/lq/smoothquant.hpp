// liblq: SmoothQuant W8A8. Calibrates a Hugging Face Llama-family checkpoint through the engine's
// linear hooks, migrates activation outliers into the weights (llm-compressor's folding: X/s,
// W*s, norm weight γ/s), quantizes weights to int8 per output channel and writes a
// compressed-tensors "int-quantized" checkpoint that vLLM and transformers load.
#pragma once

#include <lq/api.hpp>
#include <lq/calibration.hpp>
#include <lq/context.hpp>
#include <lq/model.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lq {

class Model;

/// SmoothQuant settings, with the names of the SmoothQuant guide. `alpha` is the migration
/// strength (the guide's `migration_strength` is the same quantity: there is no second knob).
struct SmoothQuantConfig {
  /// Migration strength α in [0, 1]: s_j = a_j^α / w_j^(1-α). 0 leaves the activations alone,
  /// 1 moves all of their range into the weights.
  double alpha = 0.5;
  /// Choose α per smoothing group (the guide's MigrationAnalyzer): the value of `alpha_grid` with
  /// the lowest output MSE of the group's layers under W8A8 fake quantization (int8 weights per
  /// output channel, int8 activations per token) on up to `auto_rows` calibration token rows.
  bool alpha_auto = false;
  /// Candidates for alpha_auto; empty = {0, 0.05, ..., 1} (21 values, AWQ's step).
  std::vector<double> alpha_grid;
  /// Token rows kept per smoothing group (reservoir sample over all calibration tokens) for the
  /// alpha_auto search.
  int64_t auto_rows = 512;
  /// The activation statistic a_j per input channel: 100 = max |x|; below 100 that percentile of
  /// |x| over all calibration tokens (a streaming histogram per channel, bounded memory), in (0, 100].
  double activation_percentile = 100.0;
  /// Weights per output channel (weight_scale [out, 1]); false: one scale per tensor ([1]).
  bool per_channel = true;
  /// Activations static per tensor (an input_scale from calibration, the same for every shard of
  /// a fused module); false: dynamic per token at run time (no stored scale).
  bool static_activations = false;
  /// Also smooth the inputs of o_proj and down_proj: v_proj -> o_proj (scales on v_proj's output
  /// rows, folded into them and into o_proj's input columns; with grouped-query attention each KV
  /// channel's scale applies to the o_proj columns of every query head reading it, its statistics
  /// the maxima over those columns) and up_proj -> down_proj (silu(gate) * up is linear in up).
  /// false: llm-compressor's Llama mapping (input_layernorm -> q/k/v, post_attention_layernorm ->
  /// gate/up) only. The CLI's `--smooth-mappings all`.
  bool smooth_all = false;
  /// Calibrate with activations rounded to bf16 against the 16-bit weights (SessionOptions::
  /// bf16_activations, as llm-compressor calibrates a bf16 model; about 1.7x faster products), or
  /// with float activations (false). Unset: bf16 when the checkpoint's linear weights are bf16.
  std::optional<bool> bf16_activations;
  /// Quantize (the guide's quantize_activations, W8A8). false: smoothing only, the weights stay
  /// in float (an exactness check: the smoothed model computes the same function).
  bool quantize = true;
  /// Calibration chunks (llama-imatrix's cut, as `lq analyze`) and their length in tokens.
  int64_t calibration_samples = 512;
  int64_t ctx = 512;
  /// Calibration text file (plain, .json or .jsonl as `lq analyze --calibration-data`); empty =
  /// the built-in WikiText-2 text.
  std::filesystem::path calibration_data;
};

/// Checks a configuration: throws Errc::invalid_argument naming the field (alpha outside [0, 1],
/// a percentile outside (0, 100], an empty or out-of-range grid, samples, ctx or rows < 1).
LQ_API void validate(const SmoothQuantConfig& config);

/// Smoothing scales per input channel: s_j = a_j^α / w_j^(1-α) (a_j where w_j = 0), floored at
/// 1e-5 (llm-compressor's rule). `a`: activation statistic, `w`: max |W[:, j]| over the group's
/// weights; both of one length.
LQ_API std::vector<float> smoothing_scales(const std::vector<float>& a, const std::vector<float>& w, double alpha);

/// What MigrationAnalyzer::find_optimal_alpha found.
struct MigrationResult {
  double alpha = 0;            ///< the grid value with the lowest error (the smallest one on ties)
  double error = 0;            ///< its relative output error
  std::vector<double> errors;  ///< the error of every grid value, in grid order
};

/// The guide's MigrationAnalyzer: chooses the migration strength of one smoothing group by the
/// relative output error of its linears under W8A8 fake quantization, sum (Q(X/s) Q(W s)^T -
/// X W^T)^2 / sum (X W^T)^2, with int8 weights (per output row, or per matrix) rounded as
/// compressed-tensors rounds and int8 activations per token rounded as vLLM does at run time
/// (max |x| / 127), or with static activations every token on the one input scale the output
/// stores (max_j a_j / s_j / 127.5). SmoothQuantizer runs it per group with `--alpha auto`.
class LQ_API MigrationAnalyzer {
 public:
  /// `grid` empty = {0, 0.05, ..., 1}; `per_channel` false: one weight scale per matrix;
  /// `static_activations`: judge activations as stored static (see above; error() takes the
  /// maximum over its own rows).
  explicit MigrationAnalyzer(std::vector<double> grid = {}, bool per_channel = true, bool static_activations = false);
  const std::vector<double>& grid() const { return grid_; }
  /// The relative error for `scales` (n values): `weights` are the group's matrices, each
  /// out_i x n row-major; `x` holds `rows` input rows of n values.
  double error(const std::vector<std::vector<float>>& weights, const std::vector<float>& x, int64_t rows,
               const std::vector<float>& scales, const Context& ctx = {}) const;
  /// Every grid value with smoothing_scales(a, column maxima of `weights`, α); `a`: the
  /// activation statistic per channel (n values).
  MigrationResult find_optimal_alpha(const std::vector<std::vector<float>>& weights, const std::vector<float>& x,
                                     int64_t rows, const std::vector<float>& a, const Context& ctx = {}) const;

 private:
  std::vector<double> grid_;
  bool per_channel_ = true;
  bool static_ = false;
};

/// One smoothing group: a norm and the linear layers that read its output (Hugging Face names).
struct SmoothQuantGroup {
  int layer = -1;
  /// The layer whose output is divided by the scales: e.g. "model.layers.3.input_layernorm", or
  /// with smooth_all "model.layers.3.self_attn.v_proj" (reading: o_proj) and
  /// "model.layers.3.mlp.up_proj" (reading: down_proj).
  std::string norm;
  std::vector<std::string> linears;  ///< e.g. "model.layers.3.self_attn.q_proj", k_proj, v_proj
  double alpha = 0;                  ///< the α applied (chosen per group with alpha_auto)
  double activation_max = 0;         ///< max_j a_j before smoothing
  double activation_max_smoothed = 0;  ///< max_j a_j / s_j
  double scale_min = 0, scale_max = 0; ///< range of s_j
  /// alpha_auto: relative output MSE (error energy / output energy) at the chosen α and at the
  /// configured `alpha` (0 without alpha_auto).
  double mse_chosen = 0, mse_default = 0;
  std::vector<float> scales;         ///< s_j per input channel (v_proj -> o_proj: per v_proj row)
};

/// Result of writing a SmoothQuant checkpoint.
struct SmoothQuantResult {
  std::filesystem::path output;        ///< the directory
  std::vector<std::string> files;      ///< files in it
  uint64_t output_bytes = 0;           ///< sum of the files' sizes
  uint64_t source_bytes = 0;           ///< the source checkpoint's weight files
  int64_t n_parameters = 0;            ///< elements of the source's tensors
  int64_t n_quantized = 0;             ///< of which in int8 linear weights
  double bpw = 0;                      ///< 8 x tensor data bytes / n_parameters (scales included)
  std::vector<SmoothQuantGroup> groups;
  std::vector<std::string> not_smoothed;  ///< linears quantized without smoothing (o_proj, down_proj)
  std::string calibration_source;
  int64_t chunks = 0, ctx = 0, tokens = 0;
  bool calibration_bf16 = false;        ///< the calibration ran with bf16 activations
  double calibration_seconds = 0, seconds = 0;
  std::vector<std::string> warnings;
};

/// The SmoothQuant pipeline over one Hugging Face Llama-family checkpoint: load and calibrate,
/// compute the smoothing scales (and α per group), then apply them to a Model in memory and/or
/// write the compressed-tensors directory.
///
/// Smoothing follows llm-compressor's Llama mapping: input_layernorm → q/k/v_proj and
/// post_attention_layernorm → gate/up_proj. o_proj and down_proj are smoothed only with
/// SmoothQuantConfig::smooth_all (v_proj → o_proj, up_proj → down_proj); otherwise they are
/// quantized to W8A8 unsmoothed like every other linear. lm_head and the embeddings stay in the
/// model's dtype.
///
/// This class holds the whole model in memory (library callers that hand a checkpoint and use
/// apply()); smoothquant_model() calibrates one decoder block at a time instead, at bounded
/// memory, and writes the same bytes.
class LQ_API SmoothQuantizer {
 public:
  /// Validates `config` and loads the model from `source` (which must outlive the quantizer).
  /// Throws Errc::invalid_argument for a GGUF source (the output is a Hugging Face checkpoint).
  explicit SmoothQuantizer(const ModelSource& source, SmoothQuantConfig config = {});
  ~SmoothQuantizer();
  SmoothQuantizer(const SmoothQuantizer&) = delete;
  SmoothQuantizer& operator=(const SmoothQuantizer&) = delete;

  /// Tokenizes calibration data as `lq analyze` does and cuts the chunks (calibration_error when
  /// it gives not even one chunk). Without a call, calibrate() uses config.calibration_data or
  /// the built-in text.
  void set_calibration(const CalibrationData& data);
  /// Runs the calibration chunks through the model (progress and cancellation through ctx), then
  /// computes the scales. Errc::smoothquant_failed naming the layer when a group saw no signal
  /// or a scale comes out NaN, infinite or zero.
  void calibrate(const Context& ctx = {});
  /// The smoothing groups (after calibrate()), in forward order.
  const std::vector<SmoothQuantGroup>& groups() const;

  /// Folds the scales into `model` (a Model of the same checkpoint): norm weights γ/s and the
  /// groups' weights W*s, in F32. With config.quantize, every decoder linear then holds its
  /// int8-per-channel round trip (weights only: activations are not quantized by the engine).
  void apply(Model& model) const;
  /// Writes the compressed-tensors checkpoint to `dir` (through DIR.tmp-XXXX, renamed on success,
  /// removed on failure or cancellation); with config.quantize false, the smoothed checkpoint in
  /// the source dtype instead (no quantization_config). An existing non-empty `dir` is replaced only when it
  /// holds an earlier compressed-tensors output; otherwise Errc::output_error.
  SmoothQuantResult write(const std::filesystem::path& dir, const Context& ctx = {});

  /// The model loaded for calibration.
  Model& model();
  /// Frees the loaded model (write() needs only the source and the scales).
  void release_model();
  const SmoothQuantConfig& config() const;
  /// Calibration facts and warnings so far (filled into write()'s result).
  const SmoothQuantResult& summary() const;

 private:
  friend LQ_API SmoothQuantResult smoothquant_model(const std::filesystem::path& model, std::filesystem::path out,
                                                    const SmoothQuantConfig& config, const Context& ctx);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The whole command: open `model`, calibrate, write `out` (default "./NAME-smoothquant-w8a8"
/// when empty) and return the result. The CLI's `quantize MODEL smoothquant --smoothquant`.
/// Streamed: one decoder block at a time is in memory (its weights read from the checkpoint,
/// the calibration chunks' hidden states entering it in a work file of the output's temporary
/// directory); the bytes written equal SmoothQuantizer's calibrate() + write().
LQ_API SmoothQuantResult smoothquant_model(const std::filesystem::path& model, std::filesystem::path out,
                                           const SmoothQuantConfig& config, const Context& ctx = {});

/// The default output directory for `model`: "NAME-smoothquant-w8a8" in the current directory.
LQ_API std::filesystem::path smoothquant_default_output(const std::filesystem::path& model);

/// int8 symmetric round to nearest as compressed-tensors does: scale = max|x| / 127.5 (floored at
/// float epsilon), q = clamp(round_half_even(x / scale), -128, 127). `scale` is used as given
/// when positive (e.g. already rounded to the stored dtype); returns the scale used.
LQ_API float quantize_int8_row(const float* x, int64_t n, int8_t* q, float scale = 0);

}  // namespace lq
