// liblq: a whole quantization as `lq quantize` runs it: a level or a dynamic profile, super-weight
// protection, GPTQ's error feedback, the write, and the quality gates measured on the written file. The result holds
// everything a caller prints; nothing here prints or reads the command line.
#pragma once

#include <lq/api.hpp>
#include <lq/context.hpp>
#include <lq/gptq_gguf.hpp>  // GptqGgufConfig, GptqGgufResult held by value
#include <lq/model.hpp>
#include <lq/profile.hpp>   // Profile, ProfileResolution (brings nlohmann/json: Profile::provenance)
#include <lq/quality.hpp>   // QualityReport, CoherenceResult held by value in the result
#include <lq/quantizer.hpp>
#include <lq/settings.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lq {

// Declared, not included: lq/error.hpp brings fmt, which this header does not need. Errc's names
// (Errc::quality_degraded, ...) and exit_code() are in lq/error.hpp.
enum class Errc : int;

/// The quality gates of a job, measured on the written file against the source. A failed gate
/// keeps the file (it is complete and valid) and is reported in the result, not thrown.
struct QualityGates {
  /// Perplexity and KL divergence against the source; fails (Errc::quality_degraded) above
  /// settings' max_perplexity_increase_pct.
  bool perplexity = false;
  /// Greedy generation from built-in prompts; fails (Errc::coherence_failed) below
  /// settings' min_coherence.
  bool coherence = false;
  /// Thresholds and sample count; nullopt = gate_settings_from_env(perplexity, coherence).
  std::optional<GateSettings> settings;
};

/// What to quantize and how. `options` carries the level, the per-tensor overrides and the
/// importance matrix (options.imatrix, required by protection and by solver targets).
struct QuantizeJob {
  QuantizeOptions options;
  /// Set: dynamic quantization. The profile decides each tensor's type, and the file's level
  /// (general.file_type) is the level of the type that holds the most weights (options.ftype
  /// when that type has no level; keep options.ftype a quantized level, as `lq` does with Q4_K_M,
  /// since a float level writes every tensor in its float type).
  std::optional<Profile> profile;
  /// Weights to keep within 1% (e.g. load_super_weights()). Tensors whose type loses them are
  /// raised; the rows holding them are quantized with their importance raised.
  std::vector<ProtectedWeight> protect;
  /// Set and `protect` empty: protect the top fraction (0, 1) of weights by importance x weight^2
  /// (select_by_coverage() on options.imatrix, which must be set).
  std::optional<double> protect_coverage;
  /// (optional) Objective kld for the profile's size solver: the measured per-tensor KLD
  /// (lq/sensitivity.hpp) instead of the imatrix-weighted error. Must outlive the call.
  const SensitivityTable* sensitivity = nullptr;
  /// (optional, with `sensitivity`) ResolveOptions::measure_mixes: keep the lower-KLD mix of the
  /// kld and error objectives, measured whole.
  MixMeasure measure_mixes;
  /// Set: GPTQ's error feedback on the GGUF grids (lq/gptq_gguf.hpp) once the types are decided
  /// (the level's mixture, overrides, or the dynamic profile's resolution): the walked linears'
  /// bytes replace the plain quantization's. Not with protection or checkpoints
  /// (Errc::invalid_argument).
  std::optional<GptqGgufConfig> gptq;
  QualityGates gates;
};

/// Bits per weight of one Hugging Face layer ("model.layers.3", "model.embed_tokens", "lm_head").
struct LayerSummary {
  std::string layer;
  double bit_width = 0;
  int64_t parameter_count = 0;
  bool is_protected = false;  ///< some tensor of the layer was raised to keep protected weights
};

/// What a job produced.
struct QuantizeJobResult {
  QuantizeResult quantize;                      ///< the write: outputs, tensors, sizes, timing
  bool dynamic = false;                         ///< a profile decided the types
  std::string profile;                          ///< the profile's name ("" without one)
  /// Per-tensor decisions, when a profile or protection decided the types.
  std::optional<ProfileResolution> resolution;
  std::vector<ProtectedWeight> protected_weights;  ///< the weights protected (given or selected)
  int raised_tensors = 0;                       ///< tensors raised to keep protected weights
  std::vector<LayerSummary> layers;             ///< per layer, when `resolution` is set
  std::optional<GptqGgufResult> gptq;           ///< the GPTQ pass, when the job asked for one
  std::optional<QualityReport> quality;         ///< the perplexity gate's measurement
  std::optional<CoherenceResult> coherence;     ///< the coherence gate's measurement
  GateSettings gate_settings;                   ///< the thresholds the gates used
  Errc gate{};                                  ///< quality_degraded / coherence_failed, or ok (0)
  std::string gate_message;                     ///< why the gate failed ("" when it passed)
  bool passed() const noexcept { return gate == Errc{}; }
};

/// Runs a job on `src`, writing `out` (several files with options.keep_split): protection
/// selection, profile resolution, the write, then the gates. Reports each step to ctx's progress
/// sink, runs on its threads and back-end, and throws Errc::interrupted when its token is
/// cancelled. Invalid jobs throw the contract's codes (Errc::invalid_argument, imatrix_error,
/// profile_error); a failed gate does not throw (see QuantizeJobResult::gate).
LQ_API QuantizeJobResult quantize_model(const ModelSource& src, const std::filesystem::path& out, const QuantizeJob& job,
                                        const Context& ctx = {});

}  // namespace lq
