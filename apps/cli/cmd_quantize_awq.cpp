// lq quantize MODEL awq [--layout awq|compressed-tensors|gptq] [--bits 4|3] [--group-size]
// [--gptq [--act-order] [--damp] [--scale-search]] [--calibration-data] [--calibration-samples] [--ctx] [--no-gain-correction]
// [--calibration-activations f32|bf16]
// [--checkpoint-dir|--resume|--no-checkpoints]: the options of the AWQ output, parsed into
// an AwqConfig for lq::awq_model (awq.hpp), and the printed result. No quantization logic here.
#include "cli.hpp"

#include <lq/awq.hpp>
#include <lq/lq.hpp>

#include <fmt/format.h>

#include <filesystem>
#include <iostream>

namespace fs = std::filesystem;

namespace lq::cli {

int run_awq(Context& ctx, const cxxopts::ParseResult& r) {
  AwqConfig cfg;
  cfg.params.gptq_rounding = r.count("gptq") > 0;
  if (r.count("act-order") && !cfg.params.gptq_rounding)
    fail(Errc::invalid_argument, "--act-order applies to the awq output format with --gptq only (AWQ's own rounding "
         "has no error feedback)");
  cfg.params.gptq_act_order = r.count("act-order") > 0;
  if (cfg.params.gptq_rounding && r.count("no-gain-correction"))
    fail(Errc::invalid_argument, "--no-gain-correction does not apply with --gptq (the gain correction is the "
         "clipping search's; GPTQ's rounding replaces it)");
  for (const char* o : {"damp", "scale-search"})
    if (r.count(o) && !cfg.params.gptq_rounding)
      fail(Errc::invalid_argument, "--{} applies to the awq output format with --gptq only (GPTQ's rounding)", o);
  if (r.count("damp")) cfg.params.gptq_damp = r["damp"].as<double>();
  if (r.count("scale-search")) cfg.params.gptq_scale_search = r["scale-search"].as<int>();
  for (const char* o : {"act-order-group", "sym", "asym", "method", "expert-hessian-memory"})
    if (r.count(o))
      fail(Errc::invalid_argument, "--{} does not apply to the awq output format (asymmetric with zero points{})", o,
           cfg.params.gptq_rounding ? "; --gptq takes --act-order (static), --damp and --scale-search" : ", no error feedback");
  if (r.count("layout")) {
    const std::string l = r["layout"].as<std::string>();
    if (l == "awq") cfg.layout = GptqLayout::awq;
    else if (l == "compressed-tensors") cfg.layout = GptqLayout::compressed_tensors;
    else if (l == "gptq") cfg.layout = GptqLayout::gptq;
    else fail(Errc::invalid_argument, "--layout: the awq output format writes awq, compressed-tensors or gptq, not '{}'", l);
  }
  if (r.count("bits")) cfg.params.bits = r["bits"].as<int>();
  if (r.count("group-size")) cfg.params.group_size = r["group-size"].as<int64_t>();
  if (r.count("calibration-samples")) cfg.calibration_samples = r["calibration-samples"].as<int64_t>();
  if (r.count("ctx")) cfg.ctx = r["ctx"].as<int64_t>();
  if (r.count("calibration-data")) cfg.calibration_data = r["calibration-data"].as<std::string>();
  cfg.params.gain_correction = r.count("no-gain-correction") == 0;
  if (r.count("calibration-activations")) {
    const std::string a = r["calibration-activations"].as<std::string>();
    if (a != "f32" && a != "bf16")
      fail(Errc::invalid_argument, "--calibration-activations: expected 'f32' or 'bf16', got '{}'", a);
    cfg.params.search_bf16 = a == "bf16";
  }
  validate(cfg.params);
  if (cfg.layout == GptqLayout::awq && cfg.params.bits != 4)
    fail(Errc::invalid_argument, "--bits {}: the awq layout (AutoAWQ's GEMM packing) stores 4-bit codes only; use "
         "--layout compressed-tensors or gptq", cfg.params.bits);
  if (cfg.calibration_samples < 1)
    fail(Errc::invalid_argument, "--calibration-samples must be positive, got {}", cfg.calibration_samples);
  if (cfg.ctx < 2) fail(Errc::invalid_argument, "--ctx must be at least 2, got {}", cfg.ctx);

  const fs::path model = r["model"].as<std::string>();
  const fs::path out = output_model_dir(r, awq_default_output(model, cfg));
  TermProgress progress(ctx);
  lq::Context run_ctx = library_context(ctx, progress);
  block_checkpoint_options(
      r, model, progress, [&](const fs::path& d, bool resume) { return awq_checkpoint_state(d, cfg, resume); },
      cfg.checkpoint_dir, cfg.resume);
  AwqResult res;
  try {
    res = awq_model(model, out, cfg, run_ctx);
  } catch (const Error& e) {
    rethrow_naming_checkpoint(e, cfg.checkpoint_dir);
  }
  const GptqResult& g = res.gptq;
  for (const auto& w : g.warnings) progress.message(fmt::format("warning: {}", w));
  const double ratio = g.source_bytes ? static_cast<double>(g.output_bytes) / static_cast<double>(g.source_bytes) : 0;
  const char* layout = cfg.layout == GptqLayout::compressed_tensors ? "compressed-tensors"
                       : cfg.layout == GptqLayout::gptq           ? "gptq"
                                                                  : "awq";
  const std::string level = fmt::format("W{}A16", cfg.params.bits);
  int identity = 0;
  for (const auto& s : res.groups) identity += s.alpha < 0;
  progress.message(fmt::format("Complete: {} ({}, {:.2f} bpw)", g.output.string(), human_bytes(g.output_bytes), g.bpw));
  if (ctx.format == Format::json) {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : g.layers) {
      nlohmann::json e = {{"layer_name", l.module}, {"layer", l.layer}, {"relative_output_error", l.loss}};
      if (cfg.params.gptq_rounding) e.update({{"damp", l.damp}, {"damp_raises", l.damp_raises}, {"dead_columns", l.dead_columns}});
      layers.push_back(std::move(e));
    }
    nlohmann::json groups = nlohmann::json::array();
    for (const auto& s : res.groups)
      groups.push_back({{"layer", s.layer},
                        {"group", s.group},
                        {"alpha", s.alpha < 0 ? nlohmann::json(nullptr) : nlohmann::json(s.alpha)},
                        {"duo_scaling", s.duo},
                        {"loss", s.loss},
                        {"loss_unscaled", s.identity_loss}});
    nlohmann::json result = {{"status", "success"},
                             {"output_path", fs::absolute(g.output).string()},
                             {"output_files", g.files},
                             {"model_path", model.string()},
                             {"format", layout},
                             {"method", "awq"},
                             {"quantization_level", level},
                             {"bits", cfg.params.bits},
                             {"group_size", cfg.params.group_size},
                             {"symmetric", false},
                             {"duo_scaling", cfg.params.duo_scaling},
                             {"gain_correction", cfg.params.gain_correction},
                             {"alpha_grid", cfg.params.n_grid},
                             {"search_products", res.search_bf16 ? "bf16" : "f32"},
                             {"attention_inspected_at", res.attention},
                             {"rounding", cfg.params.gptq_rounding ? "gptq" : "nearest"},
                             {"act_order", cfg.params.gptq_act_order},
                             {"damp", cfg.params.gptq_rounding ? nlohmann::json(cfg.params.gptq_damp) : nlohmann::json(nullptr)},
                             {cfg.params.gptq_rounding ? "gptq_linears" : "clipped_linears", res.clipped_linears},
                             {"scale_groups", groups},
                             {"layer_summary", layers},
                             {"calibration_data", g.calibration_source},
                             {"quantize_seconds", g.quantize_seconds},
                             {"resumed_blocks", g.resumed_blocks}};
    if (cfg.params.gptq_rounding) result["damp_raises"] = g.damp_raises;
    result.update(calibrated_result_json(g));
    print_json(result);
  } else {
    std::cout << fmt::format("Output:      {} ({})\n", g.output.string(), layout);
    std::cout << fmt::format("Scheme:      AWQ {} g{} asymmetric (zero points){}\n", level, cfg.params.group_size,
                             !cfg.params.gptq_rounding ? ""
                             : cfg.params.gptq_act_order ? ", GPTQ rounding with static act-order"
                                                         : ", GPTQ rounding");
    std::cout << fmt::format("Size:        {} ({:.1f}% of {})\n", human_bytes(g.output_bytes), 100 * ratio,
                             human_bytes(g.source_bytes));
    std::cout << fmt::format("Weights:     {} ({:.3f} bits per weight; {} quantized)\n", g.n_parameters, g.bpw,
                             g.n_quantized);
    std::cout << fmt::format("Calibration: {} chunks of {} tokens ({})\n", g.chunks, g.ctx, g.calibration_source);
    std::cout << fmt::format("Search:      {} scale groups ({} kept unscaled; {} products), {} linears {}\n",
                             res.groups.size(), identity, res.search_bf16 ? "bf16" : "f32", res.clipped_linears,
                             cfg.params.gptq_rounding ? fmt::format("rounded by GPTQ (dampening raised {} time(s))", g.damp_raises)
                                                      : std::string("clipped"));
    std::cout << fmt::format("Time:        {:.2f} s\n", g.seconds);
  }
  return 0;
}

}  // namespace lq::cli
