// lq run MODEL -p PROMPT [-n N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
// lq tokenize MODEL -f TEXT | -p TEXT
#include "quality_cli.hpp"

#include <lq/lq.hpp>
#include <lq/quality.hpp>

#include <fmt/format.h>

#include <chrono>
#include <iostream>

namespace lq::cli {

int run_run(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts = positional_command_options(ctx, "run", "MODEL", {{"model", kModelArgHelp}},
      "Generate text with a model (greedy unless --temperature is above 0).");
  opts.add_options()
      ("p,prompt", "Prompt text (encoded with BOS when the tokenizer adds one)", cxxopts::value<std::string>())
      ("n,n-predict", "Tokens to generate [default: 128]", cxxopts::value<int64_t>())
      ("temperature", "Sampling temperature; 0 = greedy [default: 0]", cxxopts::value<float>())
      ("top-k", "Keep the K most likely tokens; 0 = all [default: 40]", cxxopts::value<int>())
      ("top-p", "Keep the smallest set reaching probability P [default: 0.95]", cxxopts::value<float>())
      ("seed", "Random seed of the sampler [default: 0]", cxxopts::value<uint64_t>())
      ("ignore-eos", "Keep generating after the end-of-sequence token");
  auto parsed = parse_model_command(ctx, opts, args, "run", "MODEL -p PROMPT");
  if (!parsed) return 0;
  const auto& r = *parsed;
  if (!r.count("prompt")) fail(Errc::invalid_argument, "missing -p PROMPT");
  GenerateOptions g;
  g.max_tokens = r.count("n-predict") ? r["n-predict"].as<int64_t>() : 128;
  g.temperature = r.count("temperature") ? r["temperature"].as<float>() : 0.0f;
  g.top_k = r.count("top-k") ? r["top-k"].as<int>() : 40;
  g.top_p = r.count("top-p") ? r["top-p"].as<float>() : 0.95f;
  g.seed = r.count("seed") ? r["seed"].as<uint64_t>() : 0;
  g.stop_at_eos = r.count("ignore-eos") == 0;
  if (g.max_tokens < 0) fail(Errc::invalid_argument, "-n must be >= 0, got {}", g.max_tokens);
  if (!(g.temperature >= 0)) fail(Errc::invalid_argument, "--temperature must be >= 0, got {}", g.temperature);
  if (g.top_k < 0) fail(Errc::invalid_argument, "--top-k must be >= 0, got {}", g.top_k);
  if (!(g.top_p > 0 && g.top_p <= 1)) fail(Errc::invalid_argument, "--top-p must be in (0, 1], got {}", g.top_p);

  TermProgress progress(ctx);
  const std::string path = r["model"].as<std::string>();
  progress.message(fmt::format("Loading model: {}", path));
  auto src = ModelSource::open(path);
  const Tokenizer tok = tokenizer_for(*src);
  auto model = Model::load(*src);
  const std::string prompt = r["prompt"].as<std::string>();
  const std::vector<int32_t> ids = tok.encode(prompt, /*add_special=*/true);
  if (ids.empty()) fail(Errc::invalid_argument, "the prompt is empty");
  const auto t0 = std::chrono::steady_clock::now();
  Session s(*model, SessionOptions{static_cast<int64_t>(ids.size()) + g.max_tokens + 1, false}, library_context(ctx, progress));
  std::vector<int32_t> out = generate(s, ids, g);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const bool eos = !out.empty() && out.back() == model->eos_token() && g.stop_at_eos;
  const std::vector<int32_t> shown(out.begin(), out.end() - (eos ? 1 : 0));
  const std::string text = continuation_text(tok, ids, shown);
  if (ctx.format == Format::json) {
    print_json({{"status", "success"},
                {"model", path},
                {"prompt", prompt},
                {"prompt_tokens", ids},
                {"tokens", out},
                {"text", text},
                {"n_generated", out.size()},
                {"stopped_at_eos", eos},
                {"seconds", secs},
                {"tokens_per_second", secs > 0 ? static_cast<double>(out.size()) / secs : 0.0}});
  } else {
    std::cout << prompt << text << "\n" << std::flush;
    progress.message(fmt::format("{} tokens in {:.2f} s ({:.1f} tokens/s){}", out.size(), secs,
                                 secs > 0 ? static_cast<double>(out.size()) / secs : 0.0, eos ? ", stopped at EOS" : ""));
  }
  return 0;
}

int run_tokenize(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts = positional_command_options(ctx, "tokenize", "MODEL", {{"model", kModelArgHelp}},
      "Token ids of a text with a model's tokenizer (no BOS added).");
  opts.add_options()
      ("f,file", "Text file to tokenize (as one string)", cxxopts::value<std::string>())
      ("p,prompt", "Text to tokenize", cxxopts::value<std::string>())
      ("show-pieces", "Human format: one token per line with its text");
  auto parsed = parse_model_command(ctx, opts, args, "tokenize", "MODEL -f TEXT");
  if (!parsed) return 0;
  const auto& r = *parsed;
  if (r.count("file") == r.count("prompt")) fail(Errc::invalid_argument, "give exactly one of -f TEXT_FILE and -p TEXT");
  const std::string text = r.count("file") ? load_text(r["file"].as<std::string>()).texts[0] : r["prompt"].as<std::string>();
  auto src = ModelSource::open(r["model"].as<std::string>());
  const Tokenizer tok = tokenizer_for(*src);
  const std::vector<int32_t> ids = tok.encode(text, /*add_special=*/false);
  if (ctx.format == Format::json) {
    print_json({{"tokens", ids}, {"n_tokens", ids.size()}});
    return 0;
  }
  if (r.count("show-pieces")) {
    for (int32_t id : ids) std::cout << fmt::format("{:>7} -> '{}'\n", id, escape_text(tok.token_text(id)));
  } else {
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    std::cout << line << "\n";
  }
  std::cout << std::flush;
  return 0;
}

}  // namespace lq::cli
