// Internal: the JSON spelling of super-weight detections and statistics, shared by the mask file
// (super_weight_file.cpp) and the analysis report (analysis_report.cpp). Conversions only.
#pragma once

#include <lq/super_weights.hpp>

#include <nlohmann/json.hpp>

namespace lq::formats {

/// {"method", "rounds", "layers": [...], "found": [...]}.
nlohmann::json detection_to_json(const SuperWeightDetection& d);
/// The inverse of detection_to_json (nlohmann::json::exception on a malformed document).
SuperWeightDetection detection_from_json(const nlohmann::json& j);

/// {"count", "per_layer", "value_mean", "value_max", "value_min"}.
nlohmann::json statistics_to_json(const SuperWeightStatistics& s);
SuperWeightStatistics statistics_from_json(const nlohmann::json& j);

}  // namespace lq::formats
