// The JSON documents of a quality report: the contract's "Quality Report Result" and the
// advanced-features "Quality Report" of `lq analyze quality`. Spelling only.
#include <lq/quality.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq {

namespace {

json coherence_json(const CoherenceResult& c) {
  json a = json::array();
  for (const auto& s : c.samples)
    a.push_back({{"prompt", s.prompt},
                 {"output", s.output},
                 {"is_coherent", s.is_coherent},
                 {"repetition_score", s.repetition_score},
                 {"grammar_score", s.grammar_score},
                 {"score", s.score},
                 {"mean_logprob", s.mean_logp},
                 {"reference_output", s.reference_output},
                 {"reference_mean_logprob", s.reference_mean_logp},
                 {"reference_repetition_score", s.reference_repetition_score}});
  return a;
}

json opt_number(const std::optional<CoherenceResult>& c) {
  return c ? json(c->score) : json(nullptr);
}

json layers_json(const std::vector<LayerError>& errors) {
  json layers = json::array();
  for (const auto& l : errors)
    layers.push_back({{"layer_name", l.layer_name},
                      {"mse", l.mse},
                      {"max_error", l.max_error},
                      {"bit_width", l.bit_width},
                      {"parameter_count", l.n_elements}});
  return layers;
}

// Each measurement's grade; the overall grade is the worst of them.
json grades_json(const QualityReport& r) {
  json g = {{"perplexity", grade_name(grade_for_perplexity(r.perplexity_delta_pct))}};
  g["kld"] = r.kld.n_scored > 0 ? json(grade_name(grade_for_kld(r.kld.kld_mean))) : json(nullptr);
  g["coherence"] = r.coherence ? json(grade_name(grade_for_coherence(r.coherence->score))) : json(nullptr);
  return g;
}

std::string dump(const json& j) { return j.dump(2, ' ', false, json::error_handler_t::replace); }

}  // namespace

std::string QualityReport::to_json_string() const {
  const json layers = layers_json(layer_errors);
  json j = {
      {"status", "success"},
      {"original_model", original_model},
      {"quantized_model", quantized_model},
      {"quantization_level", quantization_level.empty() ? json(nullptr) : json(quantization_level)},
      {"metrics",
       {{"perplexity_original", perplexity_original},
        {"perplexity_quantized", perplexity_quantized},
        {"perplexity_delta_pct", perplexity_delta_pct},
        {"effective_bpw", effective_bpw},
        {"compression_ratio", compression_ratio},
        {"kld_mean", kld.kld_mean},
        {"kld_median", kld.kld_median},
        {"kld_p99", kld.kld_p99},
        {"kld_max", kld.kld_max},
        {"same_top_pct", kld.same_top_pct},
        {"delta_p_rms_pct", kld.delta_p_rms_pct},
        {"original_bpw", original_size.bpw},
        {"original_file_size", original_size.file_bytes},
        {"quantized_file_size", quantized_size.file_bytes},
        {"parameter_count", quantized_size.n_weights}}},
      {"evaluation",
       {{"calibration_data", calibration_source},
        {"calibration_tokens", calibration_tokens},
        {"ctx", ctx},
        {"chunks", chunks},
        {"tokens_scored", kld.n_scored}}},
      {"layer_errors", layers},
      {"coherence_score", opt_number(coherence)},
      {"quality_grade", grade_name(grade)},
      {"grades", grades_json(*this)},
      {"warnings", warnings},
      {"recommendations", recommendations},
      {"duration_seconds", seconds},
      {"timestamp", timestamp},
  };
  if (!tensor_errors.empty()) {
    json t = json::array();
    for (const auto& e : tensor_errors)
      t.push_back({{"tensor", e.tensor},
                   {"layer_name", e.group},
                   {"type", e.type},
                   {"mse", e.mse},
                   {"max_error", e.max_error},
                   {"rel_mse", e.rel_mse},
                   {"bit_width", e.bit_width},
                   {"parameter_count", e.n_elements}});
    j["tensor_errors"] = t;
  }
  if (coherence) j["coherence_results"] = coherence_json(*coherence);
  return dump(j);
}

std::string QualityReport::to_analysis_json_string() const {
  fs::path q = quantized_model;
  std::string name = q.filename().string();
  if (q.extension() == ".gguf") name = q.stem().string();
  if (name.empty()) name = q.parent_path().filename().string();
  json j = {{"model_name", name},
            {"reference_model", original_model},
            {"quantization_format", q.extension() == ".gguf" ? "gguf" : "hf"},
            {"quantization_level", quantization_level.empty() ? json(nullptr) : json(quantization_level)},
            {"perplexity_original", perplexity_original},
            {"perplexity_quantized", perplexity_quantized},
            {"perplexity_increase_percent", perplexity_delta_pct},
            {"kld_mean", kld.kld_mean},
            {"kld_p99", kld.kld_p99},
            {"same_top_pct", kld.same_top_pct},
            {"effective_bpw", effective_bpw},
            {"compression_ratio", compression_ratio},
            {"coherence_score", opt_number(coherence)},
            {"coherence_results", coherence ? coherence_json(*coherence) : json::array()},
            {"quality_grade", grade_name(grade)},
            {"grades", grades_json(*this)},
            {"warnings", warnings},
            {"recommendations", recommendations},
            {"test_data", calibration_source},
            {"ctx", ctx},
            {"chunks", chunks},
            {"timestamp", timestamp}};
  if (layers_measured) j["layer_errors"] = layers_json(layer_errors);
  return dump(j);
}

}  // namespace lq
