// lq convert X.gguf gptq|compressed-tensors [-o DIR] [--layout gptq|gptq_v2]: a GGUF's Q4_0 / Q8_0 /
// Q4_1 linears as GPTQ codes and scales (exact where the grid allows, rounded to nearest from the
// dequantized weights otherwise) through lq::convert_gguf_to_gptq (gptq.hpp), and the printed
// result. No conversion logic here.
#include "cli.hpp"

#include <lq/gptq.hpp>
#include <lq/lq.hpp>

#include <fmt/format.h>

#include <filesystem>
#include <iostream>

namespace fs = std::filesystem;

namespace lq::cli {

int run_convert(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts = command_options(ctx, "convert", "SRC TARGET", {"src", "target"},
      "Convert a GGUF into a W4A16-style Hugging Face directory. TARGET gptq (AutoGPTQ layout; --layout gptq_v2 for "
      "GPTQModel's true zeros) or compressed-tensors (pack-quantized, vLLM's W4A16). Exact where the GGUF's blocks are "
      "on a GPTQ grid: Q4_0 -> symmetric 4-bit g32 (code q, zero 8, scale d; negative scales kept), Q8_0 -> 8-bit g32, "
      "Q4_1 -> asymmetric 4-bit g32 when every block's -m/d is an integer in [0, 15] (else that tensor is rounded to "
      "nearest from its dequantized weights). Linears of other types (K-quants, i-quants, floats) are rounded to "
      "nearest at symmetric 4-bit g128: that loses precision, reported in the result with the worst relative error. "
      "Embeddings, norms and the output projection keep their 16-bit type or become F32 (exact). No tokenizer files "
      "are written.");
  opts.add_options()
      ("src", "GGUF file", cxxopts::value<std::string>())
      ("target", "gptq or compressed-tensors", cxxopts::value<std::string>())
      ("o,output", "Output directory [default: ./SRC-gptq or ./SRC-w4a16-ct]", cxxopts::value<std::string>())
      ("layout", "With target gptq: gptq (zeros minus one, the default) or gptq_v2", cxxopts::value<std::string>());
  auto parsed = parse(ctx, opts, args);
  if (!parsed) return 0;
  const auto& r = *parsed;
  if (!r.count("src")) fail(Errc::invalid_argument, "missing SRC (usage: {} convert SRC.gguf gptq|compressed-tensors)", ctx.program);
  if (!r.count("target")) fail(Errc::invalid_argument, "missing TARGET (gptq or compressed-tensors)");
  const std::string target = r["target"].as<std::string>();
  GptqLayout layout;
  if (target == "compressed-tensors") {
    layout = GptqLayout::compressed_tensors;
    if (r.count("layout")) fail(Errc::invalid_argument, "--layout applies to target gptq only");
  } else if (target == "gptq") {
    layout = GptqLayout::gptq;
    if (r.count("layout")) {
      const std::string l = r["layout"].as<std::string>();
      if (l == "gptq_v2") layout = GptqLayout::gptq_v2;
      else if (l != "gptq") fail(Errc::invalid_argument, "--layout: expected gptq or gptq_v2, got '{}'", l);
    }
  } else {
    fail(Errc::invalid_argument, "unknown convert target '{}' (supported: gptq, compressed-tensors)", target);
  }
  const fs::path src = r["src"].as<std::string>();
  fs::path out = r.count("output") ? fs::path(r["output"].as<std::string>()) : fs::path();
  if (!out.empty()) check_output_dir(out.has_filename() ? out : out.parent_path(), /*writable=*/true);
  TermProgress progress(ctx);
  lq::Context run_ctx;
  run_ctx.threads = ctx.threads;
  run_ctx.progress = &progress;
  const GgufConvertResult res = convert_gguf_to_gptq(src, out, layout, run_ctx);
  progress.message(fmt::format("Complete: {} ({})", res.output.string(), human_bytes(res.output_bytes)));
  const std::string scheme = fmt::format("W{}A16 g{} {}", res.bits, res.group_size, res.sym ? "symmetric" : "asymmetric");
  if (ctx.format == Format::json) {
    nlohmann::json result = {{"status", "success"},
                             {"output_path", fs::absolute(res.output).string()},
                             {"output_files", res.files},
                             {"model_path", src.string()},
                             {"format", target},
                             {"layout", layout == GptqLayout::gptq_v2 ? "gptq_v2" : target},
                             {"quantization_level", fmt::format("W{}A16", res.bits)},
                             {"bits", res.bits},
                             {"group_size", res.group_size},
                             {"symmetric", res.sym},
                             {"exact_tensors", res.exact},
                             {"requantized_tensors", res.requantized},
                             {"worst_relative_rmse", res.worst_rel_rmse},
                             {"worst_tensor", res.worst_module},
                             {"lost", res.lost},
                             {"file_size", res.output_bytes},
                             {"source_size", res.source_bytes},
                             {"duration_seconds", res.seconds}};
    print_json(result);
  } else {
    std::cout << fmt::format("Output:      {} ({})\n", res.output.string(), target);
    std::cout << fmt::format("Scheme:      {}\n", scheme);
    std::cout << fmt::format("Exact:       {} linear(s); rounded to nearest: {}", res.exact.size(), res.requantized.size());
    if (!res.requantized.empty()) std::cout << fmt::format(" (worst relative RMS error {:.4f}, {})", res.worst_rel_rmse, res.worst_module);
    std::cout << "\n";
    for (const auto& l : res.lost) std::cout << fmt::format("Lost:        {}\n", l);
    std::cout << fmt::format("Size:        {} (GGUF {})\nTime:        {:.2f} s\n", human_bytes(res.output_bytes),
                             human_bytes(res.source_bytes), res.seconds);
  }
  return 0;
}

}  // namespace lq::cli
