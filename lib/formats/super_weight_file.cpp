// The super-weight mask file (lq.super_weights, version 1: the protected coordinates with their
// original values, and an info object) and the JSON of detections and statistics it records.
// File format only: selecting the weights is lib/analysis's business.
#include "formats/super_weight_json.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/io.hpp>
#include <lq/super_weights.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

using nlohmann::json;

namespace lq {
namespace formats {

namespace {

// The JSON keys of a record's fields: field(key, member) for each, one list for writing and
// reading (R is the record, const when writing).
struct SwMaximaFields {
  template <class R, class Field>
  void operator()(R& m, const Field& field) const {
    field("layer", m.layer);
    field("input_max", m.input_max);
    field("input_channel", m.input_channel);
    field("output_max", m.output_max);
    field("output_channel", m.output_channel);
    field("token", m.token);
  }
};

struct SwDetectedFields {
  template <class R, class Field>
  void operator()(R& s, const Field& field) const {
    field("tensor", s.weight.tensor);
    field("row", s.weight.row);
    field("col", s.weight.col);
    field("value", s.weight.value);
    field("layer", s.layer);
    field("input_max", s.input_max);
    field("output_max", s.output_max);
    field("input_ratio", s.input_ratio);
    field("output_ratio", s.output_ratio);
    field("confirmed", s.confirmed);
    field("output_after_zeroing", s.output_after);
    field("largest_contributor_col", s.largest_contributor);
  }
};

template <class R, class Fields>
json sw_record_to_json(const R& r, const Fields& fields) {
  json o = json::object();
  fields(r, [&](const char* key, const auto& v) { o[key] = v; });
  return o;
}

template <class R, class Fields>
R sw_record_from_json(const json& j, const Fields& fields) {
  R r;
  fields(r, [&](const char* key, auto& v) { v = j.at(key).get<std::remove_reference_t<decltype(v)>>(); });
  return r;
}

}  // namespace

json detection_to_json(const SuperWeightDetection& d) {
  json layers = json::array();
  for (const auto& m : d.layers) {
    layers.push_back(sw_record_to_json(m, SwMaximaFields{}));
    if (m.expert >= 0) layers.back()["expert"] = m.expert;  // a mixture of experts only
    if (m.input_expert >= 0) layers.back()["input_expert"] = m.input_expert;
  }
  json found = json::array();
  for (const auto& s : d.found) {
    found.push_back(sw_record_to_json(s, SwDetectedFields{}));
    if (s.expert >= 0) found.back()["expert"] = s.expert;  // row is that of the merged 3-D tensor
  }
  return {{"method", "activation spikes in ffn_down (Yu et al. 2024)"}, {"rounds", d.rounds}, {"layers", layers},
          {"found", found}};
}

SuperWeightDetection detection_from_json(const json& j) {
  SuperWeightDetection d;
  d.rounds = j.at("rounds").get<int>();
  for (const auto& m : j.at("layers")) {
    d.layers.push_back(sw_record_from_json<DownProjMaxima>(m, SwMaximaFields{}));
    d.layers.back().expert = m.value("expert", -1);  // absent outside a mixture of experts
    d.layers.back().input_expert = m.value("input_expert", -1);
  }
  for (const auto& f : j.at("found")) {
    d.found.push_back(sw_record_from_json<DetectedSuperWeight>(f, SwDetectedFields{}));
    d.found.back().expert = f.value("expert", -1);
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
    if (j.contains("format") && j["format"] != "lq.super_weights")
      fail(Errc::invalid_argument, "{}: not a super-weight file (format {})", path.string(), j["format"].dump());
    std::vector<ProtectedWeight> out;
    for (const auto& x : j.at("weights")) {
      ProtectedWeight w;
      w.tensor = x.at("tensor").get<std::string>();
      // Coordinates and values are checked here, not cast: nlohmann's get<int64_t>() of 1e300 and
      // a float conversion of 1e39 are undefined behaviour.
      auto coordinate = [](const json& c) -> int64_t {  // -1 (refused below) unless an integer >= 0
        if (c.is_number_unsigned()) return c.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX) ? c.get<int64_t>() : -1;
        return c.is_number_integer() ? c.get<int64_t>() : -1;
      };
      w.row = coordinate(x.at("row"));
      w.col = coordinate(x.at("col"));
      const json& v = x.at("value");
      const double d = v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN();
      if (w.tensor.empty() || w.row < 0 || w.col < 0 || !(std::fabs(d) <= std::numeric_limits<float>::max()))
        fail(Errc::invalid_argument, "{}: malformed super-weight entry {}", path.string(), x.dump());
      w.value = static_cast<float>(d);
      out.push_back(std::move(w));
    }
    return out;
  } catch (const json::exception& e) {
    fail(Errc::invalid_argument, "{}: malformed super-weight file: {}", path.string(), e.what());
  }
}

}  // namespace lq
