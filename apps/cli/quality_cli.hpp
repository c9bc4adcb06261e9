// The lq command-line tool: pieces the quality commands share (quality report/compare, analyze
// quality, perplexity, run, tokenize, and the quality gates of quantize).
#pragma once

#include "cli.hpp"

#include <lq/quality.hpp>

#include <filesystem>
#include <string>

namespace lq::cli {

/// A number from the environment variable `name`, or `fallback` when unset or empty. A value that
/// is not a finite number throws Errc::invalid_argument naming the variable.
double env_number(const char* name, double fallback);

/// Refuses --format csv for a command that has no CSV output (Errc::invalid_argument).
void no_csv(const Context& ctx, const char* command);

/// Prints a quality report for people (stdout).
void print_quality_human(const QualityReport& r);

/// Writes a JSON document to `path` (temp + rename); Errc::output_error on failure.
void write_json_file(const std::filesystem::path& path, const nlohmann::json& j);

/// Reports perplexity progress ("Perplexity ━━ 40% 4/10 chunks") on `progress`.
std::function<void(int64_t, int64_t, double)> perplexity_progress(Progress& progress);

}  // namespace lq::cli
