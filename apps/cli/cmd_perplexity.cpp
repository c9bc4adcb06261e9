// lq perplexity MODEL -f TEXT [--ctx N] [--chunks K] [--full-window] [--bf16-activations] [--kv-cache f16|f32]
//                [--kl-divergence REFERENCE]
#include "quality_cli.hpp"

#include <lq/lq.hpp>
#include <lq/quality.hpp>

#include <fmt/format.h>

#include <iostream>

namespace lq::cli {

int run_perplexity(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts = positional_command_options(ctx, "perplexity", "MODEL", {{"model", kModelArgHelp}},
      "Perplexity of a model on a text, as llama-perplexity measures it (optionally KL divergence "
      "against a reference model).");
  opts.add_options()
      ("f,file", "Plain text file, tokenized as one string [default: built-in WikiText-2 test]", cxxopts::value<std::string>())
      ("ctx", "Chunk length in tokens (llama-perplexity -c) [default: 512]", cxxopts::value<int64_t>())
      ("chunks", "Chunks to evaluate [default: all that fit]", cxxopts::value<int64_t>())
      ("full-window",
       "Score every token once: windows of ctx-1 tokens after a BOS (the model card protocol) instead of "
       "llama-perplexity's second half of each chunk")
      ("bf16-activations",
       "16-bit weights multiply activations rounded to their type (bf16 for BF16 weights, f16 for F16 ones), "
       "as llama.cpp does: BF16 about twice as fast on CPUs with AVX-512 BF16, figures within about 1e-4 "
       "of the exact (float) evaluation")
      ("kv-cache", "Type of the cached K and V: f32 (exact) or f16 (llama-perplexity's default) [default: f32]",
       cxxopts::value<std::string>())
      ("kl-divergence", "Also measure KL(REFERENCE || MODEL) and same-top-token rate against this reference model",
       cxxopts::value<std::string>());
  auto parsed = parse_model_command(ctx, opts, args, "perplexity", "MODEL -f TEXT");
  if (!parsed) return 0;
  const auto& r = *parsed;
  PerplexityOptions po;
  po.ctx = r.count("ctx") ? r["ctx"].as<int64_t>() : 512;
  if (po.ctx < 3) fail(Errc::invalid_argument, "--ctx must be at least 3, got {}", po.ctx);
  if (r.count("chunks")) {
    po.chunks = r["chunks"].as<int64_t>();
    if (po.chunks <= 0) fail(Errc::invalid_argument, "--chunks must be positive, got {}", po.chunks);
  }
  po.full_window = r.count("full-window") > 0;
  if (po.full_window && r.count("kl-divergence"))
    fail(Errc::invalid_argument, "--full-window and --kl-divergence cannot be combined (KL divergence uses llama-perplexity's chunks)");
  po.bf16_activations = r.count("bf16-activations") > 0;
  if (r.count("kv-cache")) po.kv_f16 = parse_kv_cache_f16(r["kv-cache"].as<std::string>());
  const CalibrationData text = r.count("file") ? load_text(r["file"].as<std::string>()) : default_calibration();

  TermProgress progress(ctx);
  const lq::Context run_ctx = library_context(ctx, progress);
  const std::string model_path = r["model"].as<std::string>();
  progress.message(fmt::format("Loading model: {}", model_path));
  auto src = ModelSource::open(model_path);
  const Tokenizer tok = tokenizer_for(*src);
  std::unique_ptr<ModelSource> ref_src;
  if (r.count("kl-divergence")) {
    ref_src = ModelSource::open(r["kl-divergence"].as<std::string>());
    require_same_vocabulary(model_path, tok, ref_src->path().string(), tokenizer_for(*ref_src));
  }
  auto model = Model::load(*src);
  progress.message(fmt::format("Tokenizing {}", text.source));
  const std::vector<int32_t> tokens = calibration_tokens(tok, text);
  const int64_t bos = model->add_bos() && model->bos_token() >= 0 ? 1 : 0;
  const int64_t stream = static_cast<int64_t>(tokens.size()) + (po.full_window ? 0 : bos);
  evaluation_chunks(stream, po.ctx, po.full_window ? ChunkRule::full_window : ChunkRule::perplexity, text.source);
  po.progress = perplexity_progress(run_ctx);

  nlohmann::json j = {{"status", "success"}, {"model", model_path}, {"text", text.source}, {"ctx", po.ctx},
                      {"method", po.full_window ? "full-window" : "llama-perplexity"},
                      {"tokens", static_cast<int64_t>(tokens.size())}};
  if (ref_src) {
    progress.message(fmt::format("Loading reference model: {}", ref_src->path().string()));
    auto ref = Model::load(*ref_src);
    const KldResult k = kl_divergence(*model, *ref, tokens, po, run_ctx);
    progress.finish("Perplexity");
    const int64_t chunks = k.n_scored / (po.ctx - po.ctx / 2 - 1);
    j.update({{"perplexity", k.ppl},
              {"error", k.ppl_error},
              {"chunks", chunks},
              {"tokens_scored", k.n_scored},
              {"seconds", k.seconds},
              {"tokens_per_second", k.seconds > 0 ? static_cast<double>(chunks * po.ctx * 2) / k.seconds : 0.0},
              {"kl_divergence",
               {{"reference", ref_src->path().string()},
                {"reference_perplexity", k.ppl_reference},
                {"reference_error", k.ppl_reference_error},
                {"kld_mean", k.kld_mean},
                {"kld_error", k.kld_error},
                {"kld_median", k.kld_median},
                {"kld_p99", k.kld_p99},
                {"kld_max", k.kld_max},
                {"same_top_pct", k.same_top_pct},
                {"same_top_error", k.same_top_error},
                {"delta_p_rms_pct", k.delta_p_rms_pct},
                {"ln_ppl_ratio", k.ln_ppl_ratio},
                {"ln_ppl_ratio_error", k.ln_ppl_ratio_error}}}});
    if (ctx.format == Format::json) {
      print_json(j);
    } else {
      std::cout << fmt::format("Perplexity:           {:.4f} +/- {:.5f} ({} chunks of {} tokens, {} tokens scored)\n", k.ppl,
                               k.ppl_error, chunks, po.ctx, k.n_scored);
      std::cout << fmt::format("Reference perplexity: {:.4f} +/- {:.5f}\n", k.ppl_reference, k.ppl_reference_error);
      std::cout << fmt::format("KL divergence:        mean {:.6f} +/- {:.6f}, median {:.6f}, p99 {:.6f}, max {:.6f}\n",
                               k.kld_mean, k.kld_error, k.kld_median, k.kld_p99, k.kld_max);
      std::cout << fmt::format("Same top token:       {:.3f} +/- {:.3f}%\n", k.same_top_pct, k.same_top_error);
      std::cout << fmt::format("RMS delta p:          {:.3f}%\n", k.delta_p_rms_pct);
      std::cout << fmt::format("ln(PPL / PPL(ref)):   {:.6f} +/- {:.6f} (paired, per token)\n", k.ln_ppl_ratio,
                               k.ln_ppl_ratio_error);
      std::cout << fmt::format("Time:                 {:.2f} s (both models)\n", k.seconds);
    }
    return 0;
  }
  progress.message(fmt::format("Computing perplexity: {} tokens, ctx {}{}", tokens.size(), po.ctx,
                               po.full_window ? " (full windows)" : ""));
  const PerplexityResult p = perplexity(*model, tokens, po, run_ctx);
  progress.finish("Perplexity");
  j.update({{"perplexity", p.ppl},
            {"error", p.ppl_error},
            {"chunks", p.n_chunks},
            {"tokens_scored", p.n_scored},
            {"tokens_evaluated", p.n_evaluated},
            {"mean_nll", p.mean_nll},
            {"seconds", p.seconds},
            {"tokens_per_second", p.tokens_per_second()}});
  if (ctx.format == Format::json) {
    print_json(j);
  } else {
    std::cout << fmt::format("Perplexity: {:.4f} +/- {:.5f}\n", p.ppl, p.ppl_error);
    std::cout << fmt::format("Chunks:     {} of {} tokens ({}), {} tokens scored\n", p.n_chunks, po.ctx,
                             po.full_window ? "full windows" : "llama-perplexity's method", p.n_scored);
    std::cout << fmt::format("Time:       {:.2f} s ({:.0f} tokens/s)\n", p.seconds, p.tokens_per_second());
  }
  return 0;
}

}  // namespace lq::cli
