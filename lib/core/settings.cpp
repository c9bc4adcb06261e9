// Environment settings (settings.hpp): the only place the library reads environment variables.
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/settings.hpp>

#include <cmath>
#include <cstdlib>
#include <string_view>

namespace fs = std::filesystem;

namespace lq {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

std::optional<fs::path> home_path(const char* rel) {
  if (const char* h = env("HOME")) return fs::path(h) / rel;
  return std::nullopt;
}

double env_number(const char* name, double fallback) {
  const char* v = env(name);
  if (!v) return fallback;
  char* end = nullptr;
  const double d = std::strtod(v, &end);
  while (end && (*end == ' ' || *end == '%')) ++end;
  if (end == v || (end && *end) || !std::isfinite(d))
    fail(Errc::invalid_argument, "{}: expected a number, got '{}'", name, v);
  return d;
}

}  // namespace

std::optional<fs::path> imatrix_cache_dir() {
  if (const char* d = env("LLM_QUANTIZE_IMATRIX_CACHE")) {
    if (std::string_view(d) == "off") return std::nullopt;
    return fs::path(d);
  }
  return home_path(".cache/llm-quantize/imatrix");
}

std::optional<fs::path> profile_dir() {
  if (const char* d = env("LLM_QUANTIZE_PROFILE_DIR")) return fs::path(d);
  return home_path(".config/llm-quantize/profiles");
}

std::optional<fs::path> hf_hub_cache_dir() {
  if (const char* c = env("HF_HUB_CACHE")) return fs::path(c);
  if (const char* h = env("HF_HOME")) return fs::path(h) / "hub";
  return home_path(".cache/huggingface/hub");
}

GateSettings gate_settings_from_env() { return gate_settings_from_env(true, true); }

GateSettings gate_settings_from_env(bool perplexity_gate, bool coherence_gate) {
  // Read in this order (thresholds, then samples) so that the first bad variable is the one named.
  GateSettings g;
  if (perplexity_gate)
    g.max_perplexity_increase_pct = env_number("LLM_QUANTIZE_QUALITY_THRESHOLD", g.max_perplexity_increase_pct);
  if (coherence_gate) g.min_coherence = env_number("LLM_QUANTIZE_COHERENCE_THRESHOLD", g.min_coherence);
  if (perplexity_gate) {
    const double samples = env_number("LLM_QUANTIZE_QUALITY_SAMPLES", g.samples);
    if (samples < 1 || samples != std::floor(samples) || samples > 1e9)
      fail(Errc::invalid_argument, "LLM_QUANTIZE_QUALITY_SAMPLES: expected a positive whole number, got {:g}", samples);
    g.samples = static_cast<int>(samples);
  }
  return g;
}

}  // namespace lq
