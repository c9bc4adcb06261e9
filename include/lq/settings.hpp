// liblq: settings that come from the environment, resolved in one place. The CLI and embedders
// read them here; nothing else in the library calls getenv.
#pragma once

#include <lq/api.hpp>

#include <filesystem>
#include <optional>

namespace lq {

/// Where `lq analyze` caches importance matrices: $LLM_QUANTIZE_IMATRIX_CACHE ("off" disables
/// the cache: nullopt), else ~/.cache/llm-quantize/imatrix; nullopt without either.
LQ_API std::optional<std::filesystem::path> imatrix_cache_dir();
/// Where named dynamic profiles (.dqprofile) are looked up: $LLM_QUANTIZE_PROFILE_DIR, else
/// ~/.config/llm-quantize/profiles; nullopt without either.
LQ_API std::optional<std::filesystem::path> profile_dir();
/// The local Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
LQ_API std::optional<std::filesystem::path> hf_hub_cache_dir();

/// The quality gate thresholds of `quantize --quality-report / --coherence-check`.
struct LQ_API GateSettings {
  double max_perplexity_increase_pct = 20;  ///< $LLM_QUANTIZE_QUALITY_THRESHOLD (percent)
  double min_coherence = 0.5;               ///< $LLM_QUANTIZE_COHERENCE_THRESHOLD (0..1)
  int samples = 32;                         ///< $LLM_QUANTIZE_QUALITY_SAMPLES (evaluation chunks)
};
/// The gate settings with the environment's overrides applied. Throws Errc::invalid_argument
/// naming the variable when one is set but is not a number (or, for the samples, not a positive
/// whole number).
LQ_API GateSettings gate_settings_from_env();
/// The same, reading and checking only the variables of the gates that are on: the perplexity
/// gate's threshold and samples, the coherence gate's threshold; the others keep their defaults.
LQ_API GateSettings gate_settings_from_env(bool perplexity_gate, bool coherence_gate);

}  // namespace lq
