// Comparison of several models with their original (`lq quality compare`): sizes, levels,
// perplexity, KL divergence against the original and a grade, on the same chunks of one
// calibration text. Orchestration only: perplexity and KLD are the engine's, the sizes and levels
// report.cpp's helpers, the grades grades.cpp's; the CLI prints the table.
#include <lq/error.hpp>
#include <lq/quality.hpp>
#include "quality/internal.hpp"
#include "core/fail.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace lq {

namespace {

// A perplexity figure read off a KLD evaluation (the model's, or the reference's).
PerplexityResult perplexity_of_kld(const KldResult& k, bool reference, int64_t chunks, int64_t ctx) {
  PerplexityResult p;
  p.ppl = reference ? k.ppl_reference : k.ppl;
  p.ppl_error = reference ? k.ppl_reference_error : k.ppl_error;
  p.mean_nll = std::log(p.ppl);
  p.n_scored = k.n_scored;
  p.n_chunks = chunks;
  p.n_evaluated = chunks * ctx;
  p.seconds = k.seconds;
  return p;
}

}  // namespace

ModelComparison compare_models(std::span<const std::filesystem::path> paths, const CompareMetrics& metrics,
                               const QualityOptions& o, const Context& ctx) {
  const bool measure_perplexity = metrics.perplexity || metrics.kld;
  if (paths.size() < 2) fail(Errc::invalid_argument, "compare: an original and at least one other model are needed");
  if (o.samples <= 0) fail(Errc::invalid_argument, "compare: the number of calibration samples must be positive, got {}", o.samples);
  Progress& progress = ctx.progress_sink();
  ModelComparison c;
  std::vector<std::unique_ptr<ModelSource>> sources;
  for (const auto& p : paths) {
    progress.message(fmt::format("Opening {}", p.string()));
    sources.push_back(ModelSource::open(p));
    ComparedModel m;
    m.path = p.string();
    m.size = size_info(*sources.back());
    m.quantization_level = quantization_level(*sources.back());
    c.models.push_back(std::move(m));
  }
  if (!measure_perplexity) return c;

  const Tokenizer tok = tokenizer_for(*sources[0]);
  for (size_t i = 1; i < sources.size(); ++i)
    require_same_vocabulary(c.models[0].path, tok, c.models[i].path, tokenizer_for(*sources[i]));
  const CalibrationData calib = o.calibration ? *o.calibration : default_calibration();
  c.calibration_source = calib.source;
  const std::vector<int32_t> tokens = calibration_tokens(tok, calib);
  c.ctx = default_quality_ctx(sources[0]->config(), o.ctx);
  const int64_t stream = static_cast<int64_t>(tokens.size()) + (tok.add_bos() && tok.bos_id() >= 0 ? 1 : 0);
  c.chunks = std::min(evaluation_chunks(stream, c.ctx, ChunkRule::perplexity, calib.source), o.samples);
  if (c.chunks < o.samples) {
    c.warnings.push_back(fmt::format("the calibration data holds {} chunks of {} tokens; evaluating {} instead of {}",
                                     c.chunks, c.ctx, c.chunks, o.samples));
    progress.message("warning: " + c.warnings.back());
  }
  const PerplexityOptions po = quality_perplexity_options(c.ctx, c.chunks, ctx);
  c.vocab_size = static_cast<int64_t>(tok.vocab_size());
  if (!metrics.kld) {
    for (size_t i = 0; i < sources.size(); ++i) {
      progress.message(fmt::format("Perplexity of {} ({} chunks of {} tokens)", c.models[i].path, c.chunks, c.ctx));
      const auto model = Model::load(*sources[i]);
      c.models[i].perplexity = perplexity(*model, tokens, po, ctx);
      progress.finish("Perplexity");
    }
  } else {
    const auto original = Model::load(*sources[0]);
    for (size_t i = 1; i < sources.size(); ++i) {
      progress.message(fmt::format("Perplexity and KL divergence of {} ({} chunks of {} tokens)", c.models[i].path,
                                   c.chunks, c.ctx));
      const auto model = Model::load(*sources[i]);
      const KldResult k = kl_divergence(*model, *original, tokens, po, ctx);
      progress.finish("Perplexity");
      if (i == 1) c.models[0].perplexity = perplexity_of_kld(k, true, c.chunks, c.ctx);
      c.models[i].perplexity = perplexity_of_kld(k, false, c.chunks, c.ctx);
      c.models[i].kld = k;
      c.models[i].grade = quality_grade(100.0 * (k.ppl / c.models[0].perplexity->ppl - 1.0), k.kld_mean, std::nullopt);
    }
  }
  if (const std::string w = domain_warning(c.models[0].perplexity->ppl, c.vocab_size); !w.empty()) c.warnings.push_back(w);
  return c;
}

}  // namespace lq
