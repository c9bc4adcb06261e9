// liblq: super weights: selecting the few weights whose loss hurts a model most, and the mask file.
#pragma once

#include <lq/api.hpp>
#include <lq/imatrix.hpp>
#include <lq/model.hpp>
#include <lq/profile.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <vector>

namespace lq {

/// The spec's coverage rule: the top `coverage` fraction (0 < coverage < 1) of all weights of the
/// tensors the importance matrix covers, ranked by importance x weight^2 (importance = the
/// column's mean squared activation). Deterministic; ties broken by position. Errc::invalid_argument
/// for a coverage outside (0, 1).
LQ_API std::vector<ProtectedWeight> select_by_coverage(const ModelSource& model, const Imatrix& imatrix, double coverage,
                                                       int threads = 0);

/// Statistics of a set of protected weights: count, per-layer distribution, mean/max/min value.
LQ_API nlohmann::json super_weight_statistics(const std::vector<ProtectedWeight>& w);

/// Writes / reads the super-weight mask file (JSON: coordinates and original values).
LQ_API void save_super_weights(const std::filesystem::path& path, const std::vector<ProtectedWeight>& w,
                               const nlohmann::json& info = nlohmann::json::object());
LQ_API std::vector<ProtectedWeight> load_super_weights(const std::filesystem::path& path);

}  // namespace lq
