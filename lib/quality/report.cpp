// Quality reports: perplexity and KL divergence of a quantized model against its original on
// calibration text, sizes, optional weight errors and coherence check, then the assessment.
// Orchestration only: the measurements live in the engine, weight_errors.cpp and coherence.cpp,
// the JSON documents in report_json.cpp.
#include "quality/internal.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/file_type.hpp>
#include <lq/io.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

namespace fs = std::filesystem;

namespace lq {

std::string quantization_level(const ModelSource& src) {
  if (!src.is_gguf()) return {};
  const gguf::Metadata m = src.gguf_metadata();
  const auto ft = m.get_int("general.file_type");
  if (!ft) return {};
  try {
    return file_type_info(static_cast<FileType>(*ft & ~int64_t{1024})).name;  // 1024: llama.cpp's "guessed" flag
  } catch (const Error&) {
    return {};
  }
}

PerplexityOptions quality_perplexity_options(int64_t chunk_ctx, int64_t chunks, const Context& ctx) {
  PerplexityOptions po;
  po.ctx = chunk_ctx;
  po.chunks = chunks;
  po.progress = [&ctx](int64_t done, int64_t total, double) {
    ctx.check_cancelled();
    ctx.progress_sink().update("Perplexity", done, total, "chunks");
  };
  return po;
}

int64_t default_quality_ctx(const ModelConfig& config, int64_t requested) noexcept {
  if (requested > 0) return requested;
  return config.n_ctx_train > 0 ? std::min<int64_t>(512, config.n_ctx_train) : 512;
}

namespace {

bool uses_imatrix(const ModelSource& src) {
  if (!src.is_gguf()) return false;
  const gguf::Metadata m = src.gguf_metadata();
  return m.contains("quantize.imatrix.file") || m.contains("quantize.imatrix.entries_count");
}

}  // namespace

namespace {

QualityReport report_impl(const ModelSource& original_src, const Model& original, const ModelSource& quantized_src,
                          const Model& quantized, const QualityOptions& o, const Tokenizer* checked, const Context& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  Progress& progress = ctx.progress_sink();
  if (o.samples <= 0) fail(Errc::invalid_argument, "quality: the number of calibration samples must be positive, got {}", o.samples);
  QualityReport r;
  r.original_model = original_src.path().string();
  r.quantized_model = quantized_src.path().string();
  r.quantization_level = quantization_level(quantized_src);
  r.quantized_with_imatrix = uses_imatrix(quantized_src);

  const Tokenizer tok = checked ? *checked : tokenizer_for(original_src);
  if (!checked) require_same_vocabulary(r.original_model, tok, r.quantized_model, tokenizer_for(quantized_src));
  if (original.n_vocab() != quantized.n_vocab())
    fail(Errc::invalid_argument, "{} and {} do not share a vocabulary: {} vs {} embedding rows", r.original_model,
         r.quantized_model, original.n_vocab(), quantized.n_vocab());

  const CalibrationData calib = o.calibration ? *o.calibration : default_calibration();
  r.calibration_source = calib.source;
  const std::vector<int32_t> tokens = calibration_tokens(tok, calib);
  r.calibration_tokens = static_cast<int64_t>(tokens.size());
  r.vocab_size = original.n_vocab();
  r.ctx = default_quality_ctx(original.config(), o.ctx);
  if (r.ctx < 3) fail(Errc::invalid_argument, "quality: ctx must be at least 3, got {}", r.ctx);
  const int64_t stream = r.calibration_tokens + (original.add_bos() && original.bos_token() >= 0 ? 1 : 0);
  const int64_t available = evaluation_chunks(stream, r.ctx, ChunkRule::perplexity, calib.source);
  r.chunks = std::min(available, o.samples);
  if (available < o.samples)
    r.warnings.push_back(fmt::format("The calibration data holds {} chunks of {} tokens; evaluated {} instead of {}",
                                     available, r.ctx, r.chunks, o.samples));

  progress.message(fmt::format("Computing perplexity and KL divergence: {} chunks of {} tokens ({})", r.chunks, r.ctx,
                               calib.source));
  r.kld = kl_divergence(quantized, original, tokens, quality_perplexity_options(r.ctx, r.chunks, ctx), ctx);
  progress.finish("Perplexity");
  r.perplexity_original = r.kld.ppl_reference;
  r.perplexity_quantized = r.kld.ppl;
  r.perplexity_delta_pct = 100.0 * (r.perplexity_quantized / r.perplexity_original - 1.0);

  r.original_size = size_info(original_src);
  r.quantized_size = size_info(quantized_src);
  r.effective_bpw = r.quantized_size.bpw;
  r.compression_ratio = r.original_size.file_bytes
                            ? static_cast<double>(r.quantized_size.file_bytes) / static_cast<double>(r.original_size.file_bytes)
                            : 0;

  if (o.include_layers) {
    progress.message("Computing per-layer weight errors");
    r.layers_measured = true;
    r.tensor_errors = weight_errors(original_src, quantized_src, ctx);
    r.layer_errors = group_layer_errors(r.tensor_errors);
  }
  if (o.coherence) {
    const CoherenceOptions& co = o.coherence_options;
    progress.message(fmt::format("Coherence check: {} prompt(s), {} tokens each",
                                 co.prompts.empty() ? default_coherence_prompts().size() : co.prompts.size(),
                                 co.max_tokens));
    r.coherence = coherence_check(quantized, original, tok, co, ctx);
  }
  assess(r, o);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.timestamp = utc_timestamp();
  return r;
}

}  // namespace

QualityReport quality_report(const ModelSource& original_src, const Model& original, const ModelSource& quantized_src,
                             const Model& quantized, const QualityOptions& o, const Context& ctx) {
  return report_impl(original_src, original, quantized_src, quantized, o, nullptr, ctx);
}

QualityReport quality_report(const fs::path& original, const fs::path& quantized, const QualityOptions& o,
                             const Context& ctx) {
  Progress& progress = ctx.progress_sink();
  progress.message(fmt::format("Loading original model: {}", original.string()));
  auto osrc = ModelSource::open(original);
  progress.message(fmt::format("Loading quantized model: {}", quantized.string()));
  auto qsrc = ModelSource::open(quantized);
  const Tokenizer tok = tokenizer_for(*osrc);
  require_same_vocabulary(original.string(), tok, quantized.string(), tokenizer_for(*qsrc));
  auto om = Model::load(*osrc);
  auto qm = Model::load(*qsrc);
  return report_impl(*osrc, *om, *qsrc, *qm, o, &tok, ctx);
}

}  // namespace lq
