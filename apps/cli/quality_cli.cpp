// The lq command-line tool: pieces the quality and analysis commands share (see quality_cli.hpp).
#include "quality_cli.hpp"

#include <lq/io.hpp>
#include <lq/settings.hpp>

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <iostream>

namespace lq::cli {

void apply_samples_and_ctx(const cxxopts::ParseResult& r, QualityOptions& qo) {
  if (r.count("calibration-samples")) {
    qo.samples = r["calibration-samples"].as<int64_t>();
    if (qo.samples <= 0) fail(Errc::invalid_argument, "--calibration-samples must be positive, got {}", qo.samples);
  }
  if (r.count("ctx")) {
    qo.ctx = r["ctx"].as<int64_t>();
    if (qo.ctx < 3) fail(Errc::invalid_argument, "--ctx must be at least 3, got {}", qo.ctx);
  }
}

void apply_env_thresholds(QualityOptions& qo) {
  const GateSettings g = gate_settings_from_env();
  qo.quality_threshold_pct = g.max_perplexity_increase_pct;
  qo.coherence_threshold = g.min_coherence;
}

int emit_quality_report(const Context& ctx, const cxxopts::ParseResult& r, const QualityReport& rep,
                        const std::string& doc, Progress& progress) {
  if (r.count("output")) {
    write_text_file(r["output"].as<std::string>(), doc);
    progress.message(fmt::format("Report written: {}", r["output"].as<std::string>()));
  }
  if (ctx.format == Format::json) std::cout << doc << "\n" << std::flush;
  else print_quality_human(rep);
  return 0;
}

void no_csv(const Context& ctx, const char* command) {
  if (ctx.format == Format::csv) fail(Errc::invalid_argument, "{}: --format csv is not available (human, json)", command);
}

std::optional<cxxopts::ParseResult> parse_model_command(Context& ctx, cxxopts::Options& opts,
                                                        std::vector<std::string>& args, const char* command,
                                                        const char* usage) {
  auto parsed = parse(ctx, opts, args);
  if (!parsed) return parsed;
  no_csv(ctx, command);
  if (!parsed->count("model"))
    fail(Errc::invalid_argument, "missing MODEL (usage: {} {} {})", ctx.program, command, usage);
  return parsed;
}

std::string grade_breakdown(const QualityReport& r) {
  std::string s = fmt::format("perplexity {}", grade_name(grade_for_perplexity(r.perplexity_delta_pct)));
  if (r.kld.n_scored > 0) s += fmt::format(", KLD {}", grade_name(grade_for_kld(r.kld.kld_mean)));
  if (r.coherence) s += fmt::format(", coherence {}", grade_name(grade_for_coherence(r.coherence->score)));
  return s + "; the worst decides";
}

nlohmann::json quality_block_json(const QualityReport& q) {
  return {{"perplexity_original", q.perplexity_original},
          {"perplexity_quantized", q.perplexity_quantized},
          {"perplexity_delta_pct", q.perplexity_delta_pct},
          {"kld_mean", q.kld.kld_mean},
          {"kld_p99", q.kld.kld_p99},
          {"same_top_pct", q.kld.same_top_pct},
          {"calibration_data", q.calibration_source},
          {"ctx", q.ctx},
          {"chunks", q.chunks},
          {"quality_grade", grade_name(q.grade)},
          {"warnings", q.warnings}};
}

std::string quality_block_line(const QualityReport& q) {
  std::string warnings;
  for (const auto& w : q.warnings) warnings += "Warning:     " + w + "\n";
  return fmt::format("Perplexity:  {:.4f} -> {:.4f} ({:+.2f}%, {} chunks of {} tokens)\n"
                     "KLD:         mean {:.5f}, p99 {:.5f}; same top token {:.1f}%\n"
                     "Grade:       {} ({})\n{}",
                     q.perplexity_original, q.perplexity_quantized, q.perplexity_delta_pct, q.chunks, q.ctx,
                     q.kld.kld_mean, q.kld.kld_p99, q.kld.same_top_pct, grade_name(q.grade), grade_breakdown(q),
                     warnings);
}

void print_quality_human(const QualityReport& r) {
  auto& o = std::cout;
  o << fmt::format("Quality report: {}\n", r.quantized_model);
  o << fmt::format("  Original:       {}\n", r.original_model);
  if (!r.quantization_level.empty())
    o << fmt::format("  Level:          {}{}\n", r.quantization_level, r.quantized_with_imatrix ? " (with an importance matrix)" : "");
  o << fmt::format("  Evaluation:     {} chunks of {} tokens of {}\n", r.chunks, r.ctx, r.calibration_source);
  o << fmt::format("  Perplexity:     {:.4f} -> {:.4f} ({:+.2f}%)\n", r.perplexity_original, r.perplexity_quantized,
                   r.perplexity_delta_pct);
  o << fmt::format("  KL divergence:  mean {:.5f}, median {:.5f}, p99 {:.5f}, max {:.5f}\n", r.kld.kld_mean,
                   r.kld.kld_median, r.kld.kld_p99, r.kld.kld_max);
  o << fmt::format("  Same top token: {:.2f}%\n", r.kld.same_top_pct);
  o << fmt::format("  Size:           {} of {} (compression ratio {:.3f}), {:.3f} bits per weight\n",
                   human_bytes(r.quantized_size.file_bytes), human_bytes(r.original_size.file_bytes), r.compression_ratio,
                   r.effective_bpw);
  if (r.coherence)
    o << fmt::format("  Coherence:      {:.3f} ({}/{} prompts coherent)\n", r.coherence->score, r.coherence->n_coherent,
                     r.coherence->samples.size());
  o << fmt::format("  Grade:          {} ({})\n", grade_name(r.grade), grade_breakdown(r));
  if (!r.layer_errors.empty()) {
    size_t w = 10;
    for (const auto& l : r.layer_errors) w = std::max(w, l.layer_name.size());
    o << fmt::format("\n{:<{}}  {:>11}  {:>10}  {:>6}\n", "Layer", w, "MSE", "Max error", "Bits");
    for (const auto& l : r.layer_errors)
      o << fmt::format("{:<{}}  {:>11.4e}  {:>10.5f}  {:>6.2f}\n", l.layer_name, w, l.mse, l.max_error, l.bit_width);
  }
  if (r.coherence) {
    o << "\nCoherence (prompt -> continuation of the quantized model):\n";
    for (const auto& s : r.coherence->samples) {
      std::string out = s.output;
      for (auto& c : out)
        if (c == '\n') c = ' ';
      o << fmt::format("  [{}] score {:.2f} (repetition {:.2f}, fluency {:.2f}) {}{}\n", s.is_coherent ? "ok" : "!!", s.score,
                       s.repetition_score, s.grammar_score, s.prompt, out);
    }
  }
  if (!r.warnings.empty()) {
    o << "\nWarnings:\n";
    for (const auto& w : r.warnings) o << "  - " << w << "\n";
  }
  if (!r.recommendations.empty()) {
    o << "\nRecommendations:\n";
    for (const auto& w : r.recommendations) o << "  - " << w << "\n";
  }
  o << std::flush;
}

void write_text_file(const std::filesystem::path& path, const std::string& text) {
  check_output_dir(path, /*writable=*/false);
  write_file_atomic(path, text + "\n");
}

std::function<void(int64_t, int64_t, double)> perplexity_progress(const lq::Context& c) {
  return [c](int64_t done, int64_t total, double) {
    c.check_cancelled();
    c.progress_sink().update("Perplexity", done, total, "chunks");
  };
}

}  // namespace lq::cli
