// The lq command-line tool: pieces the quality and analysis commands share (quality
// report/compare, analyze, perplexity, run, tokenize, and the quality gates of quantize).
#pragma once

#include "cli.hpp"

#include <lq/context.hpp>
#include <lq/quality.hpp>

#include <filesystem>
#include <functional>
#include <string>

namespace lq::cli {


/// Applies --calibration-samples and --ctx (checked) to `qo`.
void apply_samples_and_ctx(const cxxopts::ParseResult& r, QualityOptions& qo);

/// The warning thresholds of a quality report from lq::gate_settings_from_env() (the environment).
void apply_env_thresholds(QualityOptions& qo);

/// Writes `doc` (a report's JSON) to -o when given, then prints it (--format json) or the report
/// for people. Returns the exit code (0).
int emit_quality_report(const Context& ctx, const cxxopts::ParseResult& r, const QualityReport& rep,
                        const std::string& doc, Progress& progress);

/// Refuses --format csv for a command that has no CSV output (Errc::invalid_argument).
void no_csv(const Context& ctx, const char* command);

/// parse() for a command with a MODEL argument and no CSV output: also refuses --format csv
/// (no_csv) and a missing MODEL, "missing MODEL (usage: lq COMMAND USAGE)" (Errc::invalid_argument).
std::optional<cxxopts::ParseResult> parse_model_command(Context& ctx, cxxopts::Options& opts,
                                                        std::vector<std::string>& args, const char* command,
                                                        const char* usage);

/// "perplexity GOOD, KLD ACCEPTABLE[, coherence ...]; the worst decides".
std::string grade_breakdown(const QualityReport& r);

/// The quality block of a quantize result (JSON "quality_report"): perplexities, KLD mean and
/// p99, same-top %, the evaluation, the grade and the report's warnings.
nlohmann::json quality_block_json(const QualityReport& q);

/// The same for people: the perplexity, KLD, grade and warning lines (each ending in a newline).
std::string quality_block_line(const QualityReport& q);

/// Prints a quality report for people (stdout).
void print_quality_human(const QualityReport& r);

/// Writes a document and a newline to `path` (temp + rename); Errc::output_error when its
/// directory does not exist or the write fails.
void write_text_file(const std::filesystem::path& path, const std::string& text);

/// Reports perplexity progress ("Perplexity ━━ 40% 4/10 chunks") on c's progress sink and stops
/// at c's cancel token.
std::function<void(int64_t, int64_t, double)> perplexity_progress(const lq::Context& c);

}  // namespace lq::cli
