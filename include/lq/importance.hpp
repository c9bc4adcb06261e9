// liblq: importance analysis. Per-column importance of every linear weight from calibration
// data (activation statistics as llama-imatrix collects them, or gradients of the next-token
// loss), per-layer scores, checkpoint/resume, and super-weight detection (Yu et al. 2024).
// The analysis report (`lq analyze -o REPORT.json`) is in analysis_report.hpp, the selection of
// weights to protect and their mask file in super_weights.hpp.
#pragma once

#include <lq/api.hpp>
#include <lq/calibration.hpp>
#include <lq/context.hpp>
#include <lq/engine.hpp>
#include <lq/imatrix.hpp>
#include <lq/model.hpp>
#include <lq/profile.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lq {

/// How importance is measured.
///
/// - activation: per input column j, the sum over calibration tokens of x_j^2 and the token
///   count, exactly llama-imatrix's statistic (mean = E[x_j^2]).
/// - gradient: per input column j, sum over chunks c and output rows o of |dL_c/dW[o, j]|, with
///   L_c the mean next-token cross-entropy of chunk c; count = chunks x output rows, so the
///   mean is the average |gradient| of one weight of the column over chunks.
/// - fisher: the same with (dL_c/dW[o, j])^2: the mean is the column's average diagonal of the
///   empirical Fisher information (one gradient sample per chunk).
/// All three are stored as an Imatrix (in_sum2 = the sums, counts = the counts) so quantizers
/// can use any of them as column weights.
enum class ImportanceMethod { activation, gradient, fisher };

/// JSON / report name: "activation_magnitude", "gradient", "fisher".
LQ_API const char* importance_method_name(ImportanceMethod m) noexcept;
/// Parses "activation" (or "activation_magnitude"), "gradient", "fisher"; anything else throws
/// Errc::invalid_argument.
LQ_API ImportanceMethod parse_importance_method(std::string_view s);

/// How 16-bit weights multiply their inputs in an analysis (F32 and quantized weights are
/// unaffected).
/// llama: as llama.cpp multiplies them: activations rounded to bf16 for BF16 weights (in batches
///   of 4+ tokens) and to binary16 for F16 weights.
/// exact: float activations (the figures of the F32 model).
/// automatic: as llama-imatrix computes on the same file: llama for a GGUF, exact for a Hugging
///   Face checkpoint (as llama-imatrix computes on its lossless F32 conversion).
enum class ActivationRounding { automatic, exact, llama };
/// "auto", "exact", "llama".
LQ_API const char* activation_rounding_name(ActivationRounding r) noexcept;
/// Parses "auto", "exact", "llama" (also "bf16", its earlier name); anything else throws
/// Errc::invalid_argument.
LQ_API ActivationRounding parse_activation_rounding(std::string_view s);

/// Settings of an analysis.
struct ImportanceOptions {
  ImportanceMethod method = ImportanceMethod::activation;
  int64_t ctx = 512;             ///< tokens per chunk (llama-imatrix -c)
  int64_t samples = 512;         ///< chunks to evaluate; fewer when the data is shorter (a warning says so)
  bool process_output = false;   ///< also output.weight (llama-imatrix --process-output)
  ActivationRounding activations = ActivationRounding::automatic;  ///< 16-bit weights' inputs
  /// Activation method: K and V are cached as binary16, as llama-imatrix's default F16 KV cache
  /// holds them, so that the attention outputs (the inputs of attn_output) are llama.cpp's;
  /// false: float. The gradient methods always run in float.
  bool kv_f16 = true;
  /// Directory where the state is saved after every chunk ("" = no checkpoints). The state
  /// lives in <dir>/analyze-<method>/ and is removed when the analysis completes.
  std::filesystem::path checkpoint_dir;
  /// A checkpoint to continue: its directory (holding state.json) or a checkpoint_dir holding
  /// analyze-<method>/ ("" = start fresh). Model, data and options must match.
  std::filesystem::path resume;
  /// Directory of cached results ("" = no cache). A run whose model, calibration chunks and
  /// options (method, ctx, chunk count, process_output, activation rounding, KV cache) match a cached
  /// result returns it without evaluating; a completed run is stored there. Not used when
  /// resuming. `lq analyze` uses lq::imatrix_cache_dir() (settings.hpp).
  std::filesystem::path cache_dir;
};

/// Importance of one linear weight.
struct LayerScore {
  std::string tensor;      ///< GGUF name ("blk.0.attn_q.weight")
  std::string layer_name;  ///< Hugging Face name ("model.layers.0.self_attn.q_proj")
  int layer_index = -1;    ///< block index; -1 for the output projection
  double score = 0;        ///< mean over the input columns of the column importance (imatrix mean)
  double importance_score = 0;  ///< score / the largest score of the model, in [0, 1]
  int64_t parameter_count = 0;
};

/// Statistics over every column value (imatrix mean) of every entry.
struct ImportanceStatistics {
  double min = 0, max = 0, mean = 0, std = 0;
  int64_t count = 0;
};

/// What an analysis produced.
struct ImportanceResult {
  ImportanceMethod method = ImportanceMethod::activation;
  Imatrix imatrix;                  ///< the importance matrix (save_gguf / save_dat)
  std::vector<LayerScore> layers;   ///< one per analysed weight, in forward order
  ImportanceStatistics statistics;
  int64_t chunks = 0;               ///< chunks in the result (resumed ones included)
  int64_t chunks_resumed = 0;       ///< chunks taken from the checkpoint
  int64_t ctx = 0;
  int64_t tokens = 0;               ///< tokens evaluated in this run
  double mean_loss = 0;             ///< mean next-token cross-entropy (gradient methods; 0 otherwise)
  bool bf16_activations = false;    ///< BF16 weights multiplied bf16-rounded inputs (false: no BF16 weights)
  bool f16_activations = false;     ///< F16 weights multiplied binary16-rounded inputs (false: no F16 weights)
  bool kv_f16 = false;              ///< the KV cache held binary16 values (ImportanceOptions::kv_f16)
  bool from_cache = false;          ///< taken from ImportanceOptions::cache_dir without evaluating
  double seconds = 0;               ///< wall time of the evaluation in this run
  std::vector<std::string> warnings;
  double tokens_per_second() const { return seconds > 0 ? static_cast<double>(tokens) / seconds : 0; }
};

/// Computes importance matrices. Usage: construct over a model, give calibration data (or the
/// built-in default is used), run().
///
/// Tokenization follows llama-imatrix: a plain text is tokenized as one string with BOS first
/// when the model adds one; JSON/JSONL samples are tokenized one by one without special tokens
/// and concatenated (one BOS first when the model adds one), so chunks may span samples.
/// Chunk i is tokens [i*ctx, (i+1)*ctx) with its first token replaced by BOS, and every token
/// of every chunk is counted. Accumulation is in double precision, per column over tokens in a
/// fixed order, so results do not depend on the thread count and a resumed run gives the same
/// bytes as an uninterrupted one. Memory is bounded by the engine and ctx, not by the samples.
class LQ_API ImportanceAnalyzer {
 public:
  /// Loads the model for inference from `source` (which must outlive the analyzer).
  explicit ImportanceAnalyzer(const ModelSource& source, ImportanceOptions options = {});
  ~ImportanceAnalyzer();
  ImportanceAnalyzer(const ImportanceAnalyzer&) = delete;
  ImportanceAnalyzer& operator=(const ImportanceAnalyzer&) = delete;

  /// Tokenizes calibration data with the model's tokenizer and cuts the chunks. Throws
  /// Errc::calibration_error when the data gives not even one chunk of ctx tokens.
  void set_calibration(const CalibrationData& data);
  /// Uses an already tokenized stream (BOS first when wanted); `source` names it.
  void set_tokens(std::vector<int32_t> tokens, std::string source);
  /// The chunks that run() evaluates (after set_calibration / set_tokens).
  const std::vector<std::vector<int32_t>>& chunks() const;
  /// The calibration source name.
  const std::string& calibration_source() const;
  /// Warnings so far (e.g. fewer chunks than asked).
  const std::vector<std::string>& warnings() const;

  /// Evaluates every chunk (the built-in calibration text when none was set) on ctx's threads,
  /// with status lines and a bar over chunks on ctx's progress sink. Saves a checkpoint after
  /// each chunk when options.checkpoint_dir is set; when ctx's cancel token is set (Ctrl-C in the
  /// CLI) throws Errc::interrupted with the checkpoint kept. Errc::invalid_argument for a
  /// checkpoint made with another model, data or options.
  ImportanceResult run(const Context& ctx = {});
  /// Removes the checkpoint of a completed run (call once its outputs are written).
  void remove_checkpoint();

  /// The loaded model (super-weight detection runs on it).
  Model& model();
  const ModelSource& source() const;
  const ImportanceOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Per-layer scores and statistics of an importance matrix over `model`'s linear weights
/// (the entries the matrix holds), as ImportanceResult reports them.
LQ_API std::vector<LayerScore> layer_scores(const Imatrix& imatrix, const Model& model);
LQ_API ImportanceStatistics importance_statistics(const Imatrix& imatrix);
/// Scores per block: the parameter-weighted mean of its weights' scores, normalised to the
/// largest block (tensor = "blk.N", layer_name = "model.layers.N"; -1 = the output projection).
LQ_API std::vector<LayerScore> block_scores(const std::vector<LayerScore>& layers);

// ---- super weights (Yu et al. 2024, arXiv 2411.07191) ----------------------------------------

/// Largest |activation| entering and leaving one block's ffn_down on the detection prompt.
struct DownProjMaxima {
  int layer = 0;
  float input_max = 0;    ///< max |input| (ffn_down input = silu(gate) * up)
  int64_t input_channel = 0;
  float output_max = 0;   ///< max |output|
  int64_t output_channel = 0;
  int64_t token = 0;      ///< position of the output maximum
  /// A mixture of experts (ffn_down_exps): the expert whose output holds the maximum, and the
  /// expert whose input does; -1 for a dense MLP.
  int expert = -1;
  int input_expert = -1;
};

/// A super weight found by activation spikes.
struct DetectedSuperWeight {
  /// blk.L.ffn_down.weight, row = output channel j, col = input channel k; in a mixture of experts
  /// blk.L.ffn_down_exps.weight with row = expert * n_embd + j (the row of the merged 3-D tensor)
  ProtectedWeight weight;
  int layer = 0;
  float input_max = 0, output_max = 0;   ///< the spike
  double input_ratio = 0, output_ratio = 0;  ///< spike / median of the other layers' maxima
  bool confirmed = false;    ///< zeroing it removed the output spike
  float output_after = 0;    ///< |output| at channel j, same token, with the weight zeroed
  int64_t largest_contributor = 0;  ///< input channel with the largest |x_k W[j,k]| at the spike token
  int expert = -1;  ///< the expert of an ffn_down_exps weight; -1 for ffn_down
};

/// Settings of the detection.
struct SuperWeightDetectOptions {
  double spike_ratio = 10;   ///< a layer spikes when both maxima exceed this times the other layers' median
  int max_rounds = 8;        ///< zero-and-rerun rounds
  bool confirm = true;       ///< zero each candidate and check that the spike disappears
};

/// Result of detect_super_weights().
struct SuperWeightDetection {
  std::vector<DownProjMaxima> layers;      ///< the first pass, one per block
  std::vector<DetectedSuperWeight> found;  ///< in the order found
  int rounds = 0;
};

/// Runs `prompt` through `model` with every ffn_down observed; finds the block whose input and
/// output maxima spike over the other blocks, takes W_down[j, k] (j = output channel of the
/// maximum output, k = input channel of the maximum input), confirms it by zeroing, and repeats
/// with the found weights zeroed until no block spikes. The model's weights are restored before
/// returning. Runs on ctx's threads. Errc::invalid_argument for an empty prompt.
LQ_API SuperWeightDetection detect_super_weights(Model& model, std::span<const int32_t> prompt,
                                                 const SuperWeightDetectOptions& options = {}, const Context& ctx = {});

}  // namespace lq
