// liblq: quality of a quantized model against its original: perplexity and KL divergence on
// calibration text, per-layer weight errors, a generation coherence check, grades, warnings and
// recommendations. The definitions are in README.md, section "Quality metrics".
#pragma once

#include <lq/api.hpp>
#include <lq/calibration.hpp>
#include <lq/context.hpp>
#include <lq/engine.hpp>
#include <lq/model.hpp>
#include <lq/tokenizer.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace lq {

/// Quality grades of advanced-features.md, best first.
enum class QualityGrade { excellent, good, acceptable, degraded, failed };

/// "EXCELLENT", "GOOD", "ACCEPTABLE", "DEGRADED", "FAILED".
LQ_API const char* grade_name(QualityGrade g) noexcept;
/// Grade of a perplexity increase in percent: < 5 EXCELLENT, [5, 15) GOOD, [15, 30) ACCEPTABLE,
/// [30, 50] DEGRADED, > 50 (or NaN) FAILED. A decrease is EXCELLENT.
LQ_API QualityGrade grade_for_perplexity(double ppl_delta_pct) noexcept;
/// Grade of a mean KL divergence (nats per token, KL(original || quantized)): < 0.05 EXCELLENT,
/// [0.05, 0.14) GOOD, [0.14, 0.26) ACCEPTABLE, [0.26, 0.405] DEGRADED, > 0.405 (or NaN) FAILED.
/// The bounds are ln(1 + the perplexity grade's bounds) rounded: on llama.cpp's published
/// tables the mean KLD of a level tracks ln(PPL(Q)/PPL(base)) (README.md, "Quality grades").
LQ_API QualityGrade grade_for_kld(double kld_mean) noexcept;
/// Grade of a coherence score in [0, 1]: > 0.95 EXCELLENT, > 0.85 GOOD, > 0.70 ACCEPTABLE,
/// >= 0.50 DEGRADED, < 0.50 (or NaN) FAILED.
LQ_API QualityGrade grade_for_coherence(double coherence) noexcept;
/// The overall grade: the worst of the perplexity grade, the KLD grade (when given) and the
/// coherence grade (when given).
LQ_API QualityGrade quality_grade(double ppl_delta_pct, std::optional<double> kld_mean,
                                  std::optional<double> coherence) noexcept;
/// The same without a KL divergence: the worse of the perplexity and coherence grades.
LQ_API QualityGrade quality_grade(double ppl_delta_pct, std::optional<double> coherence) noexcept;

/// A warning when the original model's own perplexity says the text is far from its domain
/// (perplexity above sqrt(vocab_size): its cross-entropy on the text is more than half that of a
/// uniform guess over the vocabulary, ln(vocab_size)); "" otherwise.
LQ_API std::string domain_warning(double perplexity_original, int64_t vocab_size);

/// Throws Errc::invalid_argument naming both models when the two tokenizers' vocabularies differ
/// (size, token texts and types, BOS/EOS ids): such models cannot be compared token by token.
LQ_API void require_same_vocabulary(const std::string& a_name, const Tokenizer& a, const std::string& b_name,
                                    const Tokenizer& b);

/// The tokenizer of a model source (its GGUF tokenizer metadata, which a Hugging Face directory
/// provides as llama.cpp's converter would write it).
LQ_API Tokenizer tokenizer_for(const ModelSource& source);

/// The token stream of calibration texts for perplexity: each text encoded without BOS/EOS
/// (as llama-perplexity encodes a file), the texts concatenated in order.
LQ_API std::vector<int32_t> calibration_tokens(const Tokenizer& tok, const CalibrationData& data);

/// The text `generated` adds after `prompt`: decode(prompt + generated) minus decode(prompt), so
/// the space a SentencePiece piece carries at the start of the continuation is kept. Bytes that
/// do not form valid UTF-8 (a character cut by byte-fallback tokens) become U+FFFD.
LQ_API std::string continuation_text(const Tokenizer& tok, std::span<const int32_t> prompt,
                                     std::span<const int32_t> generated);

// ---------------------------------------------------------------------------------------------
// Coherence

/// The coherence prompts used when none are given (short, neutral story and general openings).
LQ_API const std::vector<std::string>& default_coherence_prompts();

/// Loads prompts from a JSON file: a list of strings or of objects with a "prompt" string (an
/// object {"prompts": [...]} is accepted too). A missing, empty or malformed file throws
/// Errc::calibration_error naming the file (and item).
LQ_API std::vector<std::string> load_prompts(const std::filesystem::path& path);

/// Coherence check settings.
struct CoherenceOptions {
  std::vector<std::string> prompts;  ///< empty = default_coherence_prompts()
  int64_t max_tokens = 48;           ///< greedy tokens generated per prompt (stops early at EOS)
  int ngram = 3;                     ///< n of repetition_score
  double coherent_threshold = 0.5;   ///< a prompt is coherent when its score is at least this
};

/// One prompt of the coherence check.
struct CoherenceSample {
  std::string prompt;
  std::string output;                   ///< the quantized model's continuation (text)
  std::vector<int32_t> output_tokens;
  std::string reference_output;         ///< the original model's greedy continuation
  double mean_logp = 0;                 ///< original model's mean log p of output_tokens
  double reference_mean_logp = 0;       ///< original model's mean log p of its own continuation
  double repetition_score = 1;          ///< distinct n-grams / n-grams of output_tokens (1 = no repeat)
  double reference_repetition_score = 1;
  double grammar_score = 1;             ///< exp(mean_logp - reference_mean_logp) clipped to [0, 1]
  double score = 1;                     ///< grammar_score * min(1, repetition / reference repetition)
  bool is_coherent = true;              ///< score >= coherent_threshold
};

/// Result of coherence_check().
struct CoherenceResult {
  std::vector<CoherenceSample> samples;
  double score = 0;  ///< mean of the samples' scores, in [0, 1]
  int64_t n_coherent = 0;
};

/// Generates greedily with `quantized` from each prompt (encoded with BOS where the tokenizer
/// adds one) and judges the continuations with `original`. The models must share `tok`'s
/// vocabulary. Runs on ctx's threads, one progress update per prompt. Throws
/// Errc::invalid_argument for an empty prompt list entry or bad options.
LQ_API CoherenceResult coherence_check(const Model& quantized, const Model& original, const Tokenizer& tok,
                                       const CoherenceOptions& options = {}, const Context& ctx = {});

// ---------------------------------------------------------------------------------------------
// Weight errors

/// Error of one weight tensor of the quantized model against the original's.
struct TensorError {
  std::string tensor;      ///< GGUF name ("blk.0.attn_q.weight")
  std::string group;       ///< layer group ("model.layers.0.self_attn", "model.layers.0.mlp", "lm_head", "model.embed_tokens")
  std::string type;        ///< type name in the quantized model ("Q4_K")
  int64_t n_elements = 0;
  double mse = 0;          ///< mean of (q - x)^2
  double max_error = 0;    ///< max |q - x|
  double rel_mse = 0;      ///< mse / mean(x^2)
  double bit_width = 0;    ///< bits per weight of the stored tensor
};

/// Per-tensor errors grouped by layer group: mse over all the group's elements, the largest
/// max_error, bits per weight over the group.
struct LayerError {
  std::string layer_name;
  double mse = 0;
  double max_error = 0;
  double bit_width = 0;
  int64_t n_elements = 0;
};

/// Errors of every 2-D weight tensor present in both sources with the same shape (linear layers,
/// the output projection and the token embedding), read through the sources (dequantized), on
/// ctx's threads.
LQ_API std::vector<TensorError> weight_errors(const ModelSource& original, const ModelSource& quantized,
                                              const Context& ctx = {});

// ---------------------------------------------------------------------------------------------
// The report

/// Size figures of a model source.
struct SizeInfo {
  uint64_t file_bytes = 0;    ///< bytes of the source files
  uint64_t tensor_bytes = 0;  ///< bytes of all tensors as stored
  int64_t n_weights = 0;      ///< elements of all tensors
  /// Effective bits per weight: the tensors' bits as stored / weights; for a checkpoint whose
  /// quantized linears are read dequantized (GPTQ, AWQ, compressed-tensors), its files' bits.
  double bpw = 0;
};
LQ_API SizeInfo size_info(const ModelSource& source);
/// The quantization level a GGUF records in general.file_type ("Q4_K_M"; llama.cpp's "guessed"
/// flag ignored); "" for other sources or a file type this library does not know.
LQ_API std::string quantization_level(const ModelSource& source);

/// Settings of quality_report().
struct QualityOptions {
  std::optional<CalibrationData> calibration;  ///< empty = default_calibration()
  int64_t ctx = 0;                 ///< chunk length; 0 = min(512, the original's n_ctx_train)
  int64_t samples = 256;           ///< chunks of ctx tokens; bounded by the data (with a warning)
  bool include_layers = false;     ///< compute per-tensor / per-layer weight errors
  bool coherence = false;          ///< run the coherence check
  CoherenceOptions coherence_options;
  double quality_threshold_pct = 20;  ///< warn above this perplexity increase
  double coherence_threshold = 0.5;   ///< warn below this coherence score
};

/// A quality report of QUANTIZED against ORIGINAL.
struct LQ_API QualityReport {
  std::string original_model;   ///< paths as given
  std::string quantized_model;
  std::string calibration_source;
  std::string quantization_level;  ///< from general.file_type of a GGUF ("" when unknown)
  bool quantized_with_imatrix = false;
  int64_t ctx = 0;
  int64_t chunks = 0;              ///< chunks evaluated
  int64_t calibration_tokens = 0;  ///< tokens of the calibration stream
  int64_t vocab_size = 0;          ///< tokens in the shared vocabulary (domain_warning())
  double perplexity_original = 0;
  double perplexity_quantized = 0;
  double perplexity_delta_pct = 0;  ///< 100 * (quantized / original - 1)
  KldResult kld;                    ///< KL(original || quantized) on the same chunks
  SizeInfo original_size, quantized_size;
  double effective_bpw = 0;         ///< quantized_size.bpw
  double compression_ratio = 0;     ///< quantized file bytes / original file bytes
  bool layers_measured = false;            ///< QualityOptions::include_layers was set
  std::vector<TensorError> tensor_errors;  ///< with include_layers
  std::vector<LayerError> layer_errors;    ///< with include_layers
  std::optional<CoherenceResult> coherence;
  QualityGrade grade = QualityGrade::failed;
  std::vector<std::string> warnings;
  std::vector<std::string> recommendations;
  double seconds = 0;
  std::string timestamp;            ///< ISO 8601 UTC, when the report was made

  /// The contract's "Quality Report Result" document (plus kld, sizes, coherence_results, ...),
  /// 2-space indented, invalid UTF-8 replaced, no final newline.
  std::string to_json_string() const;
  /// The document of advanced-features.md "Quality Report" (lq analyze quality), with the
  /// per-layer errors when they were measured; formatted as to_json_string().
  std::string to_analysis_json_string() const;
};

/// Measures `quantized` against `original` (any ModelSource paths). The vocabularies must be the
/// same (else Errc::invalid_argument naming the difference); calibration text too short for one
/// evaluation chunk (evaluation_chunks(), ChunkRule::perplexity) throws Errc::calibration_error.
/// Runs on ctx's threads with status lines and bars on ctx's progress sink; ctx's cancel token
/// stops it (Errc::interrupted).
LQ_API QualityReport quality_report(const std::filesystem::path& original, const std::filesystem::path& quantized,
                                    const QualityOptions& options = {}, const Context& ctx = {});

/// The same on models already open (the sources give sizes, metadata, tokenizers and weights;
/// the models run the text; the report names the models by their sources' paths).
LQ_API QualityReport quality_report(const ModelSource& original_src, const Model& original,
                                    const ModelSource& quantized_src, const Model& quantized,
                                    const QualityOptions& options = {}, const Context& ctx = {});

/// What compare_models() measures on the calibration text (sizes and levels are always read).
struct CompareMetrics {
  bool perplexity = true;  ///< each model's perplexity
  /// KL divergence and same-top % of each model against the original, and a grade (implies
  /// perplexity; holds the original and one other model in memory at a time)
  bool kld = true;
};

/// One model of compare_models().
struct ComparedModel {
  std::string path;                ///< as given
  SizeInfo size;
  std::string quantization_level;  ///< quantization_level() of its source
  /// When measured. With CompareMetrics::kld it comes from the KLD evaluation (the original's
  /// from the first one): n_evaluated counts one model's tokens, seconds both models'.
  std::optional<PerplexityResult> perplexity;
  std::optional<KldResult> kld;          ///< against the original (not for the original itself)
  std::optional<QualityGrade> grade;     ///< quality_grade(perplexity increase, KLD mean) with kld
};

/// compare_models(): the figures of each model, the original first.
struct ModelComparison {
  std::vector<ComparedModel> models;
  std::string calibration_source;  ///< the text the perplexities were measured on
  int64_t ctx = 0;                 ///< chunk length (perplexity)
  int64_t chunks = 0;              ///< chunks evaluated (perplexity)
  int64_t vocab_size = 0;          ///< the shared vocabulary's tokens (when measured)
  std::vector<std::string> warnings;  ///< bounded chunks; domain_warning() of the original's perplexity
};

/// Opens every path (the first is the original; at least two) and reads its sizes and level;
/// measures what `metrics` asks on the same chunks of the calibration text (options.calibration,
/// ctx and samples as quality_report() takes them; the other options are not used): with
/// perplexity only, one model in memory at a time; with kld, the original and one other. The
/// vocabularies must be the original's (else Errc::invalid_argument). Status lines and bars go to
/// ctx's progress sink; ctx's cancel token stops it.
LQ_API ModelComparison compare_models(std::span<const std::filesystem::path> paths, const CompareMetrics& metrics,
                                      const QualityOptions& options = {}, const Context& ctx = {});

/// The ctx quality_report() uses for a model: `requested` when > 0, else min(512, n_ctx_train)
/// (512 when the model does not say).
LQ_API int64_t default_quality_ctx(const ModelConfig& config, int64_t requested = 0) noexcept;

}  // namespace lq
