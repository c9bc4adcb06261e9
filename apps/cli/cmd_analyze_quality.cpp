// lq analyze quality QUANTIZED --reference ORIGINAL [--test-data FILE] [--test-prompts FILE]
// (advanced-features.md spelling of `quality report`, with the coherence check always on).
#include "quality_cli.hpp"

#include <lq/lq.hpp>
#include <lq/quality.hpp>

#include <fmt/format.h>

#include <iostream>

namespace lq::cli {

/// `args` are the arguments after `analyze quality`.
int run_analyze_quality(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts = positional_command_options(ctx, "analyze quality", "QUANTIZED",
      {{"quantized", "Quantized model (GGUF or any model path)"}},
      "Quality analysis of a quantized model against its reference: perplexity, KL divergence, "
      "coherence of generated text, grade, warnings and recommendations.");
  opts.add_options()
      ("reference", "Original model the quantized one was made from [required]", cxxopts::value<std::string>())
      ("test-data", "Text for perplexity: plain text, JSON list or JSONL [default: built-in WikiText-2 test]",
       cxxopts::value<std::string>())
      ("test-prompts", "Coherence prompts: JSON list of strings or of objects with \"prompt\" [default: built-in]",
       cxxopts::value<std::string>())
      ("calibration-samples", "Number of chunks of --ctx tokens [default: 256]", cxxopts::value<int64_t>())
      ("ctx", "Chunk length in tokens [default: min(512, the model's training context)]", cxxopts::value<int64_t>())
      ("include-layers", "Include the per-layer weight error breakdown")
      ("o,output", "Also write the JSON report to this file", cxxopts::value<std::string>());
  auto parsed = parse(ctx, opts, args);
  if (!parsed) return 0;
  no_csv(ctx, "analyze quality");
  const auto& r = *parsed;
  if (!r.count("quantized"))
    fail(Errc::invalid_argument, "missing QUANTIZED (usage: {} analyze quality QUANTIZED --reference ORIGINAL)", ctx.program);
  if (!r.count("reference"))
    throw Error(Errc::invalid_argument, "analyze quality needs --reference ORIGINAL (the model QUANTIZED was made from)",
                "Perplexity and fluency are measured against the original model");
  if (r.count("output")) check_output_dir(r["output"].as<std::string>(), /*writable=*/false);
  QualityOptions qo;
  if (r.count("test-data")) qo.calibration = load_calibration(r["test-data"].as<std::string>());
  apply_samples_and_ctx(r, qo);
  qo.include_layers = r.count("include-layers") > 0;
  qo.coherence = true;
  if (r.count("test-prompts")) qo.coherence_options.prompts = load_prompts(r["test-prompts"].as<std::string>());
  apply_env_thresholds(qo);
  TermProgress progress(ctx);
  const QualityReport rep = quality_report(r["reference"].as<std::string>(), r["quantized"].as<std::string>(), qo,
                                           library_context(ctx, progress));
  return emit_quality_report(ctx, r, rep, rep.to_analysis_json_string(), progress);
}

}  // namespace lq::cli
