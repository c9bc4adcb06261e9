// liblq: super weights: selecting the few weights whose loss hurts a model most (the coverage
// rule, the activation-spike detection of importance.hpp, and the two merged), their statistics,
// and the mask file that `quantize --super-weights` reads.
#pragma once

#include <lq/api.hpp>
#include <lq/context.hpp>
#include <lq/imatrix.hpp>
#include <lq/importance.hpp>
#include <lq/model.hpp>
#include <lq/profile.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lq {

/// The spec's coverage rule: the top `coverage` fraction (0 < coverage < 1) of all weights of the
/// tensors the importance matrix covers, ranked by importance x weight^2 (importance = the
/// column's mean squared activation). Deterministic; ties broken by position. Errc::invalid_argument
/// for a coverage outside (0, 1).
LQ_API std::vector<ProtectedWeight> select_by_coverage(const ModelSource& model, const Imatrix& imatrix, double coverage,
                                                       const Context& ctx = {});

/// Statistics of a set of protected weights.
struct SuperWeightStatistics {
  int64_t count = 0;
  std::map<std::string, int64_t> per_layer;  ///< weights per block ("blk.3") or per non-block tensor
  double value_mean = 0, value_max = 0, value_min = 0;  ///< of the original values (0 when empty)
};
LQ_API SuperWeightStatistics super_weight_statistics(const std::vector<ProtectedWeight>& w);

/// The weights to protect from both rules: the confirmed spikes of `detection` first, then the
/// coverage rule's weights, each coordinate once, sorted by (tensor, row, col).
LQ_API std::vector<ProtectedWeight> merge_super_weights(const SuperWeightDetection& detection,
                                                        const std::vector<ProtectedWeight>& by_coverage);

/// What identify_super_weights() chose, and why.
struct LQ_API SuperWeightSelection {
  std::vector<ProtectedWeight> weights;  ///< merge_super_weights() of the two rules
  SuperWeightDetection detection;        ///< the spike detection
  double coverage = 0;                   ///< the coverage rule's fraction
  int64_t coverage_selected = 0;         ///< weights the coverage rule chose before merging
  int64_t covered_weights = 0;           ///< weights of the tensors the importance matrix covers
  SuperWeightStatistics statistics;      ///< of `weights`
  /// Spikes confirmed by zeroing.
  int64_t spikes_confirmed() const;
  /// weights / covered_weights, in percent (0 when nothing is covered).
  double protected_pct() const;
};

/// Both rules on one model: spike detection on `prompt` with `model` (its weights are restored
/// afterwards), the coverage rule on `source` (the same model's file) with `imatrix`, merged.
/// Runs on ctx's threads. Errors as detect_super_weights() and select_by_coverage().
LQ_API SuperWeightSelection identify_super_weights(Model& model, const ModelSource& source, const Imatrix& imatrix,
                                                   std::span<const int32_t> prompt, double coverage,
                                                   const SuperWeightDetectOptions& detect = {}, const Context& ctx = {});

/// Writes the super-weight mask file (JSON: coordinates and original values; lq.super_weights
/// version 1) with an empty info object.
LQ_API void save_super_weights(const std::filesystem::path& path, const std::vector<ProtectedWeight>& w);
/// Writes the mask file of a selection; its info records `model` (as given), the importance
/// method, the coverage, the detection and the statistics.
LQ_API void save_super_weights(const std::filesystem::path& path, const SuperWeightSelection& selection,
                               std::string_view model, ImportanceMethod method);
/// Reads the coordinates and values of a mask file. Errc::invalid_argument when malformed.
LQ_API std::vector<ProtectedWeight> load_super_weights(const std::filesystem::path& path);

}  // namespace lq
