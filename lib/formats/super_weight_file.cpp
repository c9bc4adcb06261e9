// The super-weight mask file (lq.super_weights, version 1: the protected coordinates with their
// original values, and an info object) and the JSON of detections and statistics it records.
// File format only: selecting the weights is lib/analysis's business.
#include "formats/super_weight_json.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/io.hpp>
#include <lq/super_weights.hpp>

using nlohmann::json;

namespace lq {
namespace formats {

json detection_to_json(const SuperWeightDetection& d) {
  json layers = json::array();
  for (const auto& m : d.layers) {
    layers.push_back({{"layer", m.layer},
                      {"input_max", m.input_max},
                      {"input_channel", m.input_channel},
                      {"output_max", m.output_max},
                      {"output_channel", m.output_channel},
                      {"token", m.token}});
    if (m.expert >= 0) layers.back()["expert"] = m.expert;  // a mixture of experts only
    if (m.input_expert >= 0) layers.back()["input_expert"] = m.input_expert;
  }
  json found = json::array();
  for (const auto& s : d.found) {
    found.push_back({{"tensor", s.weight.tensor},
                     {"layer", s.layer},
                     {"row", s.weight.row},
                     {"col", s.weight.col},
                     {"value", s.weight.value},
                     {"input_max", s.input_max},
                     {"output_max", s.output_max},
                     {"input_ratio", s.input_ratio},
                     {"output_ratio", s.output_ratio},
                     {"confirmed", s.confirmed},
                     {"output_after_zeroing", s.output_after},
                     {"largest_contributor_col", s.largest_contributor}});
    if (s.expert >= 0) found.back()["expert"] = s.expert;  // row is that of the merged 3-D tensor
  }
  return {{"method", "activation spikes in ffn_down (Yu et al. 2024)"}, {"rounds", d.rounds}, {"layers", layers},
          {"found", found}};
}

SuperWeightDetection detection_from_json(const json& j) {
  SuperWeightDetection d;
  d.rounds = j.at("rounds").get<int>();
  for (const auto& m : j.at("layers")) {
    DownProjMaxima x;
    x.layer = m.at("layer").get<int>();
    x.input_max = m.at("input_max").get<float>();
    x.input_channel = m.at("input_channel").get<int64_t>();
    x.output_max = m.at("output_max").get<float>();
    x.output_channel = m.at("output_channel").get<int64_t>();
    x.token = m.at("token").get<int64_t>();
    x.expert = m.value("expert", -1);
    x.input_expert = m.value("input_expert", -1);
    d.layers.push_back(x);
  }
  for (const auto& f : j.at("found")) {
    DetectedSuperWeight s;
    s.weight = {f.at("tensor").get<std::string>(), f.at("row").get<int64_t>(), f.at("col").get<int64_t>(),
                f.at("value").get<float>()};
    s.layer = f.at("layer").get<int>();
    s.expert = f.value("expert", -1);
    s.input_max = f.at("input_max").get<float>();
    s.output_max = f.at("output_max").get<float>();
    s.input_ratio = f.at("input_ratio").get<double>();
    s.output_ratio = f.at("output_ratio").get<double>();
    s.confirmed = f.at("confirmed").get<bool>();
    s.output_after = f.at("output_after_zeroing").get<float>();
    s.largest_contributor = f.at("largest_contributor_col").get<int64_t>();
    d.found.push_back(std::move(s));
  }
  return d;
}

json statistics_to_json(const SuperWeightStatistics& s) {
  json dist = json::object();
  for (const auto& [l, n] : s.per_layer) dist[l] = n;
  return {{"count", s.count},
          {"per_layer", dist},
          {"value_mean", s.value_mean},
          {"value_max", s.value_max},
          {"value_min", s.value_min}};
}

SuperWeightStatistics statistics_from_json(const json& j) {
  SuperWeightStatistics s;
  s.count = j.at("count").get<int64_t>();
  for (const auto& [l, n] : j.at("per_layer").items()) s.per_layer[l] = n.get<int64_t>();
  s.value_mean = j.at("value_mean").get<double>();
  s.value_max = j.at("value_max").get<double>();
  s.value_min = j.at("value_min").get<double>();
  return s;
}

}  // namespace formats

namespace {

void write_mask(const std::filesystem::path& path, const std::vector<ProtectedWeight>& w, const json& info) {
  json arr = json::array();
  for (const auto& p : w) arr.push_back({{"tensor", p.tensor}, {"row", p.row}, {"col", p.col}, {"value", p.value}});
  json j = {{"format", "lq.super_weights"}, {"version", 1}, {"info", info}, {"weights", arr}};
  write_file_atomic(path, j.dump(1) + "\n");
}

}  // namespace

void save_super_weights(const std::filesystem::path& path, const std::vector<ProtectedWeight>& w) {
  write_mask(path, w, json::object());
}

void save_super_weights(const std::filesystem::path& path, const SuperWeightSelection& s, std::string_view model,
                        ImportanceMethod method) {
  write_mask(path, s.weights,
             {{"model", std::string(model)},
              {"method", importance_method_name(method)},
              {"coverage", s.coverage},
              {"coverage_selected", s.coverage_selected},
              {"detection", formats::detection_to_json(s.detection)},
              {"statistics", formats::statistics_to_json(s.statistics)}});
}

std::vector<ProtectedWeight> load_super_weights(const std::filesystem::path& path) {
  try {
    const json j = json::parse(read_file(path));
    std::vector<ProtectedWeight> out;
    for (const auto& x : j.at("weights"))
      out.push_back({x.at("tensor").get<std::string>(), x.at("row").get<int64_t>(), x.at("col").get<int64_t>(),
                     x.at("value").get<float>()});
    return out;
  } catch (const json::exception& e) {
    fail(Errc::invalid_argument, "{}: malformed super-weight file: {}", path.string(), e.what());
  }
}

}  // namespace lq
