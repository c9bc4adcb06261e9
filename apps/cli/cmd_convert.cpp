// lq convert SRC gguf -q LEVEL|exact: a GPTQ / AWQ / compressed-tensors checkpoint (or any model
// liblq reads) to GGUF, requantized to a level through quantize_model(), or by the exact mapping
// (convert_exact_to_gguf) that keeps the source's codes where a GGUF block type holds them.
// The other direction (SRC.gguf gptq|awq|compressed-tensors) is parsed here and run by
// cmd_convert_gptq.cpp.
#include "cli.hpp"

#include <lq/lq.hpp>

#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <map>

namespace fs = std::filesystem;

namespace lq::cli {
namespace {

std::string convert_default_output(const fs::path& model, const std::string& level) {
  fs::path m = model;
  if (!m.has_filename()) m = m.parent_path();
  std::string stem = m.filename().string();
  if (m.extension() == ".gguf") stem = m.stem().string();
  if (stem.empty() || stem == "." || stem == "..") stem = "model";
  return stem + "-" + level + ".gguf";
}

int convert_exact(Context& ctx, const ModelSource& src, const fs::path& model, const fs::path& out,
                  const lq::Context& run_ctx) {
  const ExactConvertResult r = convert_exact_to_gguf(src, out, run_ctx);
  run_ctx.progress_sink().message(fmt::format("Complete: {} ({}, {:.2f} bpw)", r.output.string(), human_bytes(r.file_bytes), r.bpw));
  if (ctx.format == Format::json) {
    nlohmann::json exact = nlohmann::json::array(), other = nlohmann::json::array();
    std::map<std::string, std::pair<int, int64_t>> types;
    for (const auto& t : r.tensors) {
      nlohmann::json j = {{"name", t.name}, {"type", t.type}, {"source", t.source}, {"mapping", t.mapping},
                          {"max_abs_error", t.max_abs_error}};
      if (!t.note.empty()) j["note"] = t.note;
      (t.mapping == "exact" || t.mapping == "codes_kept" ? exact : other).push_back(j);
      types[t.type].first += 1;
    }
    nlohmann::json tt = nlohmann::json::object();
    for (const auto& [n, e] : types) tt[n] = {{"tensors", e.first}};
    print_json({{"status", "success"},
                {"output_path", fs::absolute(r.output).string()},
                {"model_path", model.string()},
                {"format", "gguf"},
                {"quantization_level", "exact"},
                {"source_quantization", r.source_quantization},
                {"exact_tensors", r.n_exact},
                {"requantized_tensors", r.n_requantized},
                {"copied_tensors", r.n_copied},
                {"worst_abs_error", r.worst_error},
                {"file_size", r.file_bytes},
                {"source_size", r.source_bytes},
                {"parameter_count", r.n_weights},
                {"effective_bpw", r.bpw},
                {"tensor_types", tt},
                {"exact", exact},
                {"other", other},
                {"duration_seconds", r.seconds}});
    return 0;
  }
  std::cout << fmt::format("Output:      {}\n", r.output.string());
  std::cout << fmt::format("Source:      {}\n", r.source_quantization);
  std::cout << fmt::format("Size:        {} ({:.3f} bits per weight)\n", human_bytes(r.file_bytes), r.bpw);
  std::cout << fmt::format("Tensors:     {} exact, {} requantized, {} copied; worst error {:.3g}\n", r.n_exact,
                           r.n_requantized, r.n_copied, r.worst_error);
  for (const auto& t : r.tensors)
    if (t.mapping == "requantized" || t.mapping == "codes_kept")
      std::cout << fmt::format("  {:<28} {:<5} {:<12} max error {:.3g}  {}\n", t.name, t.type, t.mapping,
                               t.max_abs_error, t.note);
  std::cout << fmt::format("Time:        {:.2f} s\n", r.seconds);
  return 0;
}

int convert_requantize(Context& ctx, const ModelSource& src, const fs::path& model, const fs::path& out,
                       const cxxopts::ParseResult& r, FileType ftype, const lq::Context& run_ctx) {
  QuantizeJob job;
  QuantizeOptions& qo = job.options;
  qo.ftype = ftype;
  qo.allow_requantize = true;  // the source is quantized by definition: convert is the requantization
  Imatrix imatrix;
  if (r.count("imatrix")) {
    const std::string ip = r["imatrix"].as<std::string>();
    imatrix = Imatrix::load(ip);
    qo.imatrix = &imatrix;
    qo.imatrix_path = ip;
  }
  const QuantizeJobResult jr = quantize_model(src, out, job, run_ctx);
  const QuantizeResult& res = jr.quantize;
  const std::string source_q = third_party_quantization(src);
  run_ctx.progress_sink().message(
      fmt::format("Complete: {} ({}, {:.2f} bpw)", res.output.string(), human_bytes(res.file_bytes), res.bpw));
  const TypeTally per_type = tensor_type_tally(res);
  if (ctx.format == Format::json) {
    print_json({{"status", "success"},
                {"output_path", fs::absolute(res.output).string()},
                {"model_path", model.string()},
                {"format", "gguf"},
                {"quantization_level", file_type_info(ftype).name},
                {"source_quantization", source_q.empty() ? nlohmann::json(nullptr) : nlohmann::json(source_q)},
                {"file_size", res.file_bytes},
                {"source_size", res.source_bytes},
                {"parameter_count", res.n_weights},
                {"effective_bpw", res.bpw},
                {"imatrix", qo.imatrix ? nlohmann::json(qo.imatrix_path) : nlohmann::json(nullptr)},
                {"tensor_types", tensor_types_json(per_type)},
                {"tensors", tensor_rows_json(res)},
                {"duration_seconds", res.seconds}});
    return 0;
  }
  std::cout << fmt::format("Output:      {}\n", res.output.string());
  if (!source_q.empty()) std::cout << fmt::format("Source:      {} (dequantized exactly, then requantized)\n", source_q);
  std::cout << fmt::format("Level:       {}\n", file_type_info(ftype).name);
  std::cout << fmt::format("Size:        {} ({:.3f} bits per weight)\n", human_bytes(res.file_bytes), res.bpw);
  std::cout << "Tensor types:";
  for (const auto& [name, e] : per_type) std::cout << fmt::format(" {} x{}", name, e.first);
  std::cout << fmt::format("\nTime:        {:.2f} s\n", res.seconds);
  return 0;
}

}  // namespace

int run_convert(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts = positional_command_options(
      ctx, "convert", "SRC gguf -q LEVEL|exact | SRC.gguf gptq|awq|compressed-tensors",
      {{"model", "Source: a checkpoint directory"}, {"target", "Target format: gguf, gptq, awq or compressed-tensors"}},
      "Convert between quantized formats.\n"
      "SRC gguf: a quantized checkpoint (GPTQ, AWQ, compressed-tensors int/packed/FP8) to GGUF.\n"
      "  -q LEVEL  requantize its exact dequantization to any GGUF level (as `quantize` does)\n"
      "  -q exact  keep the source's codes where a GGUF block holds them: symmetric 4-bit -> Q4_0,\n"
      "            asymmetric 4-bit and AWQ -> Q4_1 (m = -z*s rounded to fp16), symmetric 8-bit -> Q8_0,\n"
      "            when each block of 32 inputs lies in one group; other quantized tensors (2/3-bit,\n"
      "            act-order groups splitting blocks, FP8) are requantized to Q8_0; the result lists\n"
      "            each tensor's mapping and worst error.\n"
      "SRC.gguf gptq|awq|compressed-tensors: a GGUF's linears as a W4A16-style directory (gptq:\n"
      "  AutoGPTQ's layout, --layout gptq_v2 for GPTQModel's true zeros; awq: AutoAWQ's GEMM layout,\n"
      "  4-bit only; compressed-tensors: pack-quantized, vLLM's W4A16). Exact where the GGUF's blocks are\n"
      "  on the target's grid: Q4_0 -> symmetric 4-bit g32 (code q, zero 8, scale d; negative scales\n"
      "  kept), Q8_0 -> 8-bit g32 (not awq), Q4_1 -> asymmetric 4-bit g32 when every block's -m/d is an\n"
      "  integer in [0, 15] (else that tensor is rounded to nearest from its dequantized weights).\n"
      "  Linears of other types (K-quants, i-quants, floats; Q8_0 for awq) are rounded to nearest at\n"
      "  4-bit g128 (symmetric; asymmetric for awq): precision is lost, reported with the worst\n"
      "  relative error. Embeddings,\n"
      "  norms and the output projection keep their 16-bit type or become F32 (exact). Tokenizer files\n"
      "  come from the GGUF's vocabulary: tokenizer.model (SentencePiece) or tokenizer.json (byte-level\n"
      "  BPE), with tokenizer_config.json and special_tokens_map.json; other vocabularies: none (listed\n"
      "  as lost).");
  opts.add_options()
      ("q,quantization", "GGUF level (Q4_K_M, Q8_0, ...) or exact", cxxopts::value<std::string>())
      ("imatrix", "Importance matrix for the requantization (GGUF or .dat)", cxxopts::value<std::string>())
      ("o,output", "Output file (default: SRC-LEVEL.gguf) or, for gptq/awq/compressed-tensors, directory [default: "
                   "./SRC-gptq, ./SRC-awq or ./SRC-w4a16-ct]", cxxopts::value<std::string>())
      ("layout", "With target gptq: gptq (zeros minus one, the default) or gptq_v2", cxxopts::value<std::string>());
  auto parsed = parse(ctx, opts, args);
  if (!parsed) return 0;
  const cxxopts::ParseResult& r = *parsed;
  if (!r.count("model")) fail(Errc::invalid_argument, "missing SRC (a checkpoint directory, or a GGUF file for gptq/compressed-tensors)");
  if (!r.count("target")) fail(Errc::invalid_argument, "missing the target format (gguf, gptq, awq or compressed-tensors)");
  const std::string target = r["target"].as<std::string>();
  if (target == "gptq" || target == "awq" || target == "compressed-tensors") return run_convert_to_gptq(ctx, r);
  if (target != "gguf")
    fail(Errc::invalid_argument, "unknown target format '{}' (supported: gguf, gptq, awq, compressed-tensors)", target);
  if (r.count("layout")) fail(Errc::invalid_argument, "--layout applies to target gptq only");
  if (!r.count("quantization")) fail(Errc::invalid_argument, "missing -q LEVEL (a GGUF level, or exact)");
  const std::string level = r["quantization"].as<std::string>();
  const bool exact = level == "exact" || level == "EXACT";
  std::optional<FileType> ftype;
  if (!exact) {
    ftype = parse_file_type(level);
    if (!ftype) fail(Errc::invalid_argument, "unknown quantization level '{}' (run `{} info --levels`, or use exact)", level,
                     ctx.program);
  } else if (r.count("imatrix")) {
    fail(Errc::invalid_argument, "--imatrix applies to requantization (-q LEVEL), not to -q exact");
  }
  const fs::path model = r["model"].as<std::string>();
  const fs::path out = r.count("output") ? fs::path(r["output"].as<std::string>())
                                         : fs::path(convert_default_output(model, exact ? "exact" : file_type_info(*ftype).name));
  check_output_dir(out, /*writable=*/true);
  TermProgress progress(ctx);
  lq::Context run_ctx = library_context(ctx, progress);
  progress.message(fmt::format("Loading model: {}", model.string()));
  auto src = ModelSource::open(model);
  if (exact) return convert_exact(ctx, *src, model, out, run_ctx);
  return convert_requantize(ctx, *src, model, out, r, *ftype, run_ctx);
}

}  // namespace lq::cli
