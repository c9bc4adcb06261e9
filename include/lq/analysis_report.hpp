// liblq: the analysis report: what `lq analyze -o REPORT.json` writes beside an importance matrix
// (the contract's "Importance Matrix Result" plus per-weight and per-block scores and the
// super-weight summary), built from an analysis, saved, and loaded back (`lq analyze profile`
// takes a report where it takes a matrix).
#pragma once

#include <lq/api.hpp>
#include <lq/importance.hpp>
#include <lq/model.hpp>
#include <lq/super_weights.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lq {

/// The super-weight part of a report whose analysis identified them.
struct SuperWeightReport {
  int64_t total_protected = 0;         ///< weights in the mask
  int64_t coverage_selected = 0;       ///< of which the coverage rule chose (before merging)
  std::filesystem::path mask_path;     ///< the mask file
  SuperWeightStatistics statistics;
  SuperWeightDetection detection;
};

/// An analysis report. Field names follow the JSON keys.
struct LQ_API AnalysisReport {
  std::filesystem::path output_path;    ///< the importance matrix (lq writes it absolute)
  std::string output_format = "gguf";   ///< "gguf" or "dat"
  std::string model_path;               ///< the model as given
  std::string model_name;               ///< the model's configured name, else model_stem(model_path)
  ImportanceMethod method = ImportanceMethod::activation;
  int64_t num_layers = 0;
  int64_t total_parameters = 0;         ///< elements of every tensor of the model
  int64_t calibration_samples = 0;      ///< chunks in the result
  int64_t tokens_per_sample = 0;        ///< ctx
  int64_t resumed_samples = 0;          ///< chunks taken from a checkpoint
  bool custom_calibration = false;      ///< calibration data given (else the built-in text)
  std::string calibration_path;         ///< the calibration source's name
  ImportanceStatistics statistics;      ///< min, max, mean, std (count is not recorded)
  std::vector<LayerScore> layer_scores;
  std::vector<LayerScore> block_scores;  ///< block_scores(layer_scores); `tensor` is not recorded
  double coverage = 1e-4;                ///< the super-weight coverage asked
  std::optional<SuperWeightReport> super_weights;  ///< set when super weights were identified
  double duration_seconds = 0;
  double tokens_per_second = 0;
  std::string activation_rounding = "exact";  ///< "exact", "bf16", "f16" or "bf16+f16": what acted
  bool kv_f16 = false;                   ///< "kv_cache": "f16" (true) or "f32"
  bool from_cache = false;
  std::vector<std::string> warnings;
  std::optional<double> mean_loss;       ///< gradient methods only
  std::filesystem::path report_path;     ///< recorded when not empty (where the report is saved)

  /// Records an identify_super_weights() selection and the mask file it was saved to.
  void record(const SuperWeightSelection& selection, const std::filesystem::path& mask_path);
  /// The JSON document (2-space indent; invalid UTF-8 replaced), without a final newline.
  std::string to_json_string() const;
  /// Writes to_json_string() and a newline to `path` (temp + rename); Errc::output_error on failure.
  void save(const std::filesystem::path& path) const;
  /// Reads a report. Errc::imatrix_error when the file is missing, not JSON, or has no
  /// output_path (it stands for its importance matrix); other fields are read when present.
  static AnalysisReport load(const std::filesystem::path& path);
};

/// A report of `result` on `source`: the model's figures, the scores and what the analysis
/// recorded. The caller sets output_path, output_format, the calibration fields, the coverage,
/// super weights (record()), duration and report_path.
LQ_API AnalysisReport make_analysis_report(const ImportanceResult& result, const ModelSource& source,
                                           const std::string& model_path);

/// A model's short name for file names and reports: the file stem of a .gguf or .safetensors, the
/// directory name of a directory or Hub ID, "model" when there is none.
LQ_API std::string model_stem(const std::filesystem::path& model);

}  // namespace lq
