// lq convert X.gguf gptq|compressed-tensors [-o DIR] [--layout gptq|gptq_v2]: a GGUF's Q4_0 / Q8_0 /
// Q4_1 linears as GPTQ codes and scales (exact where the grid allows, rounded to nearest from the
// dequantized weights otherwise) through lq::convert_gguf_to_gptq (gptq.hpp), and the printed
// result; `lq convert` (cmd_convert.cpp) parses the options and hands these targets here. No
// conversion logic here.
#include "cli.hpp"

#include <lq/gptq.hpp>
#include <lq/lq.hpp>

#include <fmt/format.h>

#include <filesystem>
#include <iostream>

namespace fs = std::filesystem;

namespace lq::cli {

int run_convert_to_gptq(Context& ctx, const cxxopts::ParseResult& r) {
  if (r.count("quantization") || r.count("imatrix"))
    fail(Errc::invalid_argument, "-q and --imatrix apply to target gguf; target {} keeps the GGUF's own grid",
         r["target"].as<std::string>());
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
  } else if (target == "awq") {
    layout = GptqLayout::awq;
    if (r.count("layout")) fail(Errc::invalid_argument, "--layout applies to target gptq only");
  } else {
    fail(Errc::invalid_argument, "unknown convert target '{}' (supported: gptq, awq, compressed-tensors)", target);
  }
  const fs::path src = r["model"].as<std::string>();
  fs::path out = r.count("output") ? fs::path(r["output"].as<std::string>()) : fs::path();
  if (!out.empty()) check_output_dir(out.has_filename() ? out : out.parent_path(), /*writable=*/true);
  TermProgress progress(ctx);
  lq::Context run_ctx = library_context(ctx, progress);
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
