// The quality gates of a quantization: perplexity against a threshold (Errc::quality_degraded)
// and output coherence against a minimum (Errc::coherence_failed), measured on the written file.
// A failed gate is a verdict in the result, never an exception: the file stays.
#include "quality/gates.hpp"

#include <lq/error.hpp>
#include <lq/quality.hpp>

#include <fmt/format.h>

namespace lq::gates {

void run(const ModelSource& src, const std::filesystem::path& output, const QualityGates& gates,
         const GateSettings& settings, QuantizeJobResult& res, const Context& ctx) {
  res.gate_settings = settings;
  if (!gates.perplexity && !gates.coherence) return;
  Progress& progress = ctx.progress_sink();
  auto qsrc = ModelSource::open(output);
  auto original = Model::load(src);
  auto quantized = Model::load(*qsrc);
  if (gates.perplexity) {
    progress.message("Computing quality metrics...");
    QualityOptions gq;
    gq.samples = settings.samples;
    gq.quality_threshold_pct = settings.max_perplexity_increase_pct;
    res.quality = quality_report(src, *original, *qsrc, *quantized, gq, ctx);
    progress.message(fmt::format("Perplexity: {:.3f} \u2192 {:.3f} ({:+.1f}%), KLD mean {:.4f}, same top token {:.1f}%",
                                 res.quality->perplexity_original, res.quality->perplexity_quantized,
                                 res.quality->perplexity_delta_pct, res.quality->kld.kld_mean,
                                 res.quality->kld.same_top_pct));
  }
  if (gates.coherence) {
    progress.message("Checking output coherence...");
    CoherenceOptions co;
    res.coherence = coherence_check(*quantized, *original, tokenizer_for(src), co, ctx);
    if (res.quality)
      res.quality->grade = quality_grade(res.quality->perplexity_delta_pct,
                                         res.quality->kld.n_scored > 0 ? std::optional(res.quality->kld.kld_mean) : std::nullopt,
                                         res.coherence->score);
  }
  if (res.coherence)
    progress.message(fmt::format("Coherence: {:.3f} ({}/{} prompts coherent)", res.coherence->score,
                                 res.coherence->n_coherent, res.coherence->samples.size()));
  if (res.quality && res.quality->perplexity_delta_pct > settings.max_perplexity_increase_pct) {
    res.gate = Errc::quality_degraded;
    res.gate_message = fmt::format("Quantization quality degradation ({:.1f}%) exceeds threshold ({:g}%)",
                                   res.quality->perplexity_delta_pct, settings.max_perplexity_increase_pct);
  } else if (res.coherence && res.coherence->score < settings.min_coherence) {
    res.gate = Errc::coherence_failed;
    res.gate_message = fmt::format("Model output coherence check failed (score: {:.2f})", res.coherence->score);
  }
  if (res.gate != Errc::ok)
    progress.message(fmt::format("warning: the output {} is kept; it did not pass the quality gate", output.string()));
}

}  // namespace lq::gates
