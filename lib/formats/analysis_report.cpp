// The analysis report document (see include/lq/analysis_report.hpp): building it from an
// analysis, its JSON schema (written and read here only), saving and loading.
#include <lq/analysis_report.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/io.hpp>

#include "formats/super_weight_json.hpp"

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq {

std::string model_stem(const fs::path& model) {
  fs::path m = model;
  if (!m.has_filename()) m = m.parent_path();
  std::string stem = m.filename().string();
  if (m.extension() == ".gguf" || m.extension() == ".safetensors") stem = m.stem().string();
  if (stem.empty() || stem == "." || stem == "..") stem = "model";
  return stem;
}

AnalysisReport make_analysis_report(const ImportanceResult& res, const ModelSource& src, const std::string& model_path) {
  AnalysisReport r;
  r.model_path = model_path;
  r.model_name = src.config().name.empty() ? model_stem(model_path) : src.config().name;
  r.method = res.method;
  r.num_layers = src.config().n_layer;
  for (const auto& t : src.tensors()) r.total_parameters += t.n_elements();
  r.calibration_samples = res.chunks;
  r.tokens_per_sample = res.ctx;
  r.resumed_samples = res.chunks_resumed;
  r.statistics = res.statistics;
  r.layer_scores = res.layers;
  r.block_scores = block_scores(res.layers);
  r.tokens_per_second = res.tokens_per_second();
  r.activation_rounding = res.bf16_activations && res.f16_activations ? "bf16+f16"
                          : res.bf16_activations                      ? "bf16"
                          : res.f16_activations                       ? "f16"
                                                                      : "exact";
  r.kv_f16 = res.kv_f16;
  r.from_cache = res.from_cache;
  r.warnings = res.warnings;
  if (res.method != ImportanceMethod::activation) r.mean_loss = res.mean_loss;
  return r;
}

void AnalysisReport::record(const SuperWeightSelection& s, const fs::path& mask) {
  coverage = s.coverage;
  super_weights = SuperWeightReport{static_cast<int64_t>(s.weights.size()), s.coverage_selected, mask, s.statistics,
                                    s.detection};
}

namespace {

json score_json(const LayerScore& l, bool with_tensor) {
  json j = {{"layer_name", l.layer_name},
            {"layer_index", l.layer_index},
            {"importance_score", l.importance_score},
            {"parameter_count", l.parameter_count},
            {"raw_score", l.score}};
  if (with_tensor) j["tensor"] = l.tensor;
  return j;
}

LayerScore score_from(const json& j) {
  LayerScore l;
  l.layer_name = j.value("layer_name", std::string());
  l.layer_index = j.value("layer_index", -1);
  l.importance_score = j.value("importance_score", 0.0);
  l.parameter_count = j.value("parameter_count", int64_t{0});
  l.tensor = j.value("tensor", std::string());
  l.score = j.value("raw_score", 0.0);
  return l;
}

json report_json(const AnalysisReport& r) {
  json layers = json::array(), blocks = json::array();
  for (const auto& l : r.layer_scores) layers.push_back(score_json(l, true));
  for (const auto& b : r.block_scores) blocks.push_back(score_json(b, false));
  json sw = {{"identified", false}, {"coverage", r.coverage}, {"total_protected", 0}};
  if (const auto& s = r.super_weights) {
    const auto confirmed = std::ranges::count_if(s->detection.found, [](const auto& f) { return f.confirmed; });
    const json detection = formats::detection_to_json(s->detection);
    sw = {{"identified", true},
          {"coverage", r.coverage},
          {"total_protected", s->total_protected},
          {"coverage_selected", s->coverage_selected},
          {"spikes_found", s->detection.found.size()},
          {"spikes_confirmed", static_cast<int>(confirmed)},
          {"mask_path", s->mask_path.string()},
          {"statistics", formats::statistics_to_json(s->statistics)},
          {"detection", detection}};
  }
  const char* method = importance_method_name(r.method);
  json doc = {{"status", "success"},
              {"output_path", r.output_path.string()},
              {"output_format", r.output_format},
              {"model_path", r.model_path},
              {"method", method},
              {"num_layers", r.num_layers},
              {"calibration_samples", r.calibration_samples},
              {"global_statistics",
               {{"min", r.statistics.min}, {"max", r.statistics.max}, {"mean", r.statistics.mean}, {"std", r.statistics.std}}},
              {"super_weights", sw},
              {"duration_seconds", r.duration_seconds},
              {"model_name", r.model_name},
              {"computation_method", method},
              {"calibration_info",
               {{"source", r.custom_calibration ? "custom" : "default"},
                {"path", r.calibration_path},
                {"sample_count", r.calibration_samples},
                {"tokens_per_sample", r.tokens_per_sample},
                {"resumed_samples", r.resumed_samples}}},
              {"layer_scores", layers},
              {"block_scores", blocks},
              {"total_parameters", r.total_parameters},
              {"super_weight_coverage", r.super_weights ? json(r.coverage) : json(nullptr)},
              {"tokens_per_second", r.tokens_per_second},
              {"activation_rounding", r.activation_rounding},
              {"kv_cache", r.kv_f16 ? "f16" : "f32"},
              {"from_cache", r.from_cache},
              {"warnings", r.warnings}};
  if (r.mean_loss) doc["mean_loss"] = *r.mean_loss;
  if (!r.report_path.empty()) doc["report_path"] = r.report_path.string();
  return doc;
}

}  // namespace

std::string AnalysisReport::to_json_string() const {
  return report_json(*this).dump(2, ' ', false, json::error_handler_t::replace);
}

void AnalysisReport::save(const fs::path& path) const { write_file_atomic(path, to_json_string() + "\n"); }

AnalysisReport AnalysisReport::load(const fs::path& path) {
  const std::string file = path.string();
  json j;
  try {
    j = json::parse(read_file(path));
  } catch (const json::exception& e) {
    fail(Errc::imatrix_error, "{}: not an analysis report: {}", file, e.what());
  } catch (const Error&) {
    fail(Errc::imatrix_error, "importance matrix not found: {}", file);
  }
  if (!j.is_object() || !j.contains("output_path") || !j["output_path"].is_string())
    fail(Errc::imatrix_error, "{}: not an analysis report (no output_path)", file);
  AnalysisReport r;
  try {
    r.output_path = j["output_path"].get<std::string>();
    r.output_format = j.value("output_format", std::string("gguf"));
    r.model_path = j.value("model_path", std::string());
    r.model_name = j.value("model_name", std::string());
    r.method = parse_importance_method(j.value("method", std::string("activation")));
    r.num_layers = j.value("num_layers", int64_t{0});
    r.total_parameters = j.value("total_parameters", int64_t{0});
    r.calibration_samples = j.value("calibration_samples", int64_t{0});
    if (const auto it = j.find("calibration_info"); it != j.end() && it->is_object()) {
      r.custom_calibration = it->value("source", std::string()) == "custom";
      r.calibration_path = it->value("path", std::string());
      r.tokens_per_sample = it->value("tokens_per_sample", int64_t{0});
      r.resumed_samples = it->value("resumed_samples", int64_t{0});
    }
    if (const auto it = j.find("global_statistics"); it != j.end() && it->is_object()) {
      r.statistics.min = it->value("min", 0.0);
      r.statistics.max = it->value("max", 0.0);
      r.statistics.mean = it->value("mean", 0.0);
      r.statistics.std = it->value("std", 0.0);
    }
    for (const auto& l : j.value("layer_scores", json::array())) r.layer_scores.push_back(score_from(l));
    for (const auto& b : j.value("block_scores", json::array())) r.block_scores.push_back(score_from(b));
    if (const auto it = j.find("super_weights"); it != j.end() && it->is_object()) {
      r.coverage = it->value("coverage", r.coverage);
      if (it->value("identified", false)) {
        SuperWeightReport s;
        s.total_protected = it->value("total_protected", int64_t{0});
        s.coverage_selected = it->value("coverage_selected", int64_t{0});
        s.mask_path = it->value("mask_path", std::string());
        if (it->contains("statistics")) s.statistics = formats::statistics_from_json(it->at("statistics"));
        if (it->contains("detection")) s.detection = formats::detection_from_json(it->at("detection"));
        r.super_weights = std::move(s);
      }
    }
    r.duration_seconds = j.value("duration_seconds", 0.0);
    r.tokens_per_second = j.value("tokens_per_second", 0.0);
    r.activation_rounding = j.value("activation_rounding", std::string("exact"));
    r.kv_f16 = j.value("kv_cache", std::string("f32")) == "f16";
    r.from_cache = j.value("from_cache", false);
    r.warnings = j.value("warnings", std::vector<std::string>{});
    if (j.contains("mean_loss")) r.mean_loss = j["mean_loss"].get<double>();
    r.report_path = j.value("report_path", std::string());
  } catch (const json::exception& e) {
    fail(Errc::imatrix_error, "{}: malformed analysis report: {}", file, e.what());
  }
  return r;
}

}  // namespace lq
