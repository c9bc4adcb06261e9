// lq quantize MODEL gptq|rtn [--layout compressed-tensors|gptq|gptq_v2] [--bits] [--group-size]
// [--act-order|--act-order-group] [--sym|--asym] [--damp] [--scale-search] [--expert-hessian-memory] [--calibration-data]
// [--calibration-samples] [--ctx] [--calibration-activations f32|bf16] [--smoothquant [--alpha A|auto] [--static-activations]
// [--activation-percentile P]]: the options of the W4A16-style outputs (and of W8A8 after
// SmoothQuant), parsed into a GptqConfig for lq::gptq_model (gptq.hpp), and the printed result. No
// quantization logic here.
#include "cli.hpp"

#include <lq/gptq.hpp>
#include <lq/lq.hpp>

#include <fmt/format.h>

#include <filesystem>
#include <iostream>

#include <unistd.h>

namespace fs = std::filesystem;

namespace lq::cli {

void add_gptq_options(cxxopts::Options& opts) {
  opts.add_options("GPTQ / RTN / AWQ (output formats gptq, rtn, awq)")
      ("layout", "Output layout: compressed-tensors (pack-quantized, vLLM's W4A16), gptq (AutoGPTQ, zeros minus one) "
                 "gptq_v2 (GPTQModel, true zeros) or awq (AutoAWQ's GEMM packing, 4-bit with groups; GPTQ-rounded "
                 "weights in AWQ's layout) [default: compressed-tensors]",
       cxxopts::value<std::string>())
      ("bits", "Weight bits: 2, 3, 4 or 8 [default: 4]", cxxopts::value<int>())
      ("group-size", "Columns per scale; -1 = one scale per output channel [default: 128]", cxxopts::value<int64_t>())
      ("act-order", "Columns in descending Hessian-diagonal order with static groups (groups stay i / group-size, "
                    "g_idx trivial: AutoGPTQ static_groups, llm-compressor actorder static; awq: with --gptq)")
      ("act-order-group", "Columns in descending Hessian-diagonal order, groups by position in that order (AutoGPTQ "
                          "desc_act, llm-compressor actorder group): a non-monotonic g_idx, written; vLLM (0.32) "
                          "refuses it, transformers reads it")
      ("sym", "Symmetric weights (zero 2^(bits-1); the default)")
      ("asym", "Asymmetric weights with a zero point per group")
      ("damp", "GPTQ (gptq, gguf --gptq, awq --gptq): dampening fraction of mean(diag H), raised x10 (at most 4 times) "
               "when Cholesky fails [default: 0.01]",
       cxxopts::value<double>())
      ("method", "gptq (error feedback) or rtn (round to nearest, no calibration) [default: the output format]",
       cxxopts::value<std::string>())
      ("scale-search", "GPTQ (and awq --gptq): each group's range also shrunk by 1..N% and the scale with the least "
                       "weighted rounding error (1 / [H^-1 Cholesky]_jj^2) kept; 0 = min-max scales only [default: 20]",
       cxxopts::value<int>())
      ("expert-hessian-memory", "GPTQ (and gguf --gptq) on a mixture of experts: the most memory one block's expert "
                                "Hessians may take, e.g. 512MiB, 4GB (a bare number is bytes); above it the experts' "
                                "inputs are spooled to disk and each Hessian formed when needed, the same output "
                                "bytes; 0 = always spool [default: 1GiB]",
       cxxopts::value<std::string>());
}

int64_t expert_hessian_memory(const cxxopts::ParseResult& r, int64_t fallback) {
  if (!r.count("expert-hessian-memory")) return fallback;
  const ByteSize b = parse_byte_size(r["expert-hessian-memory"].as<std::string>(), "expert-hessian-memory",
                                     "512MiB, 4GB, 0");
  const double bytes = b.has_unit ? static_cast<double>(b.bytes) : b.value;
  if (bytes >= 9.0e18) fail(Errc::invalid_argument, "--expert-hessian-memory: {} is too large", bytes);
  return static_cast<int64_t>(bytes);
}

void block_checkpoint_options(const cxxopts::ParseResult& r, const fs::path& model, Progress& progress,
                              const std::function<fs::path(const fs::path&, bool)>& state, fs::path& dir,
                              bool& resume) {
  if (r.count("no-checkpoints") && (r.count("checkpoint-dir") || r.count("resume")))
    fail(Errc::invalid_argument, "--no-checkpoints contradicts --{}", r.count("resume") ? "resume" : "checkpoint-dir");
  if (r.count("resume") && r.count("checkpoint-dir"))
    fail(Errc::invalid_argument, "--resume continues the checkpoint in its own directory: drop --checkpoint-dir");
  if (r.count("resume")) {
    dir = state(r["resume"].as<std::string>(), true);
    resume = true;
    return;
  }
  if (r.count("checkpoint-dir")) {
    dir = state(r["checkpoint-dir"].as<std::string>(), false);
    return;
  }
  if (r.count("no-checkpoints")) return;
  // As `quantize ... gguf`: models of 1 GB or more get a checkpoint in ./.checkpoint by default.
  std::error_code ec;
  const auto src = ModelSource::open(model);
  const bool exists = fs::exists(".checkpoint", ec);
  if (src->source_bytes() < 1'000'000'000ull || src->is_gguf()) return;
  if (::access(exists ? ".checkpoint" : ".", W_OK) == 0) {
    dir = state(".checkpoint", false);
    progress.message(fmt::format("Checkpointing to {} (models of 1 GB or more; --no-checkpoints turns it off)",
                                 dir.string()));
  } else {
    progress.message("warning: no checkpoint: the working directory is not writable (--checkpoint-dir DIR names another)");
  }
}

void rethrow_naming_checkpoint(const Error& e, const fs::path& dir) {
  if (e.code() == Errc::interrupted && !dir.empty() && fs::exists(dir / "state.json"))
    throw Error(e.code(), fmt::format("{}; the checkpoint was kept in {} (--resume {})", e.what(), dir.string(),
                                      dir.string()));
  throw e;
}

int run_gptq(Context& ctx, const cxxopts::ParseResult& r, const std::string& format) {
  GptqConfig cfg;
  std::string method = format;
  if (r.count("method")) method = r["method"].as<std::string>();
  if (method != "gptq" && method != "rtn") fail(Errc::invalid_argument, "--method: expected gptq or rtn, got '{}'", method);
  cfg.params.rtn = method == "rtn";
  if (r.count("layout")) {
    const std::string l = r["layout"].as<std::string>();
    if (l == "compressed-tensors") cfg.layout = GptqLayout::compressed_tensors;
    else if (l == "gptq") cfg.layout = GptqLayout::gptq;
    else if (l == "gptq_v2") cfg.layout = GptqLayout::gptq_v2;
    else if (l == "awq") cfg.layout = GptqLayout::awq;
    else fail(Errc::invalid_argument, "--layout: expected compressed-tensors, gptq, gptq_v2 or awq, got '{}'", l);
  }
  if (r.count("bits")) cfg.params.bits = r["bits"].as<int>();
  if (r.count("group-size")) cfg.params.group_size = r["group-size"].as<int64_t>();
  if (r.count("sym") && r.count("asym")) fail(Errc::invalid_argument, "--sym and --asym exclude each other");
  cfg.params.sym = r.count("asym") == 0;
  if (r.count("act-order") && r.count("act-order-group"))
    fail(Errc::invalid_argument, "--act-order and --act-order-group exclude each other");
  if (r.count("act-order")) cfg.params.act_order = GptqActOrder::static_groups;
  if (r.count("act-order-group")) cfg.params.act_order = GptqActOrder::group;
  if (r.count("damp")) cfg.params.damp = r["damp"].as<double>();
  if (r.count("scale-search")) {
    if (cfg.params.rtn) fail(Errc::invalid_argument, "--scale-search applies to GPTQ, not to round to nearest");
    cfg.params.scale_search = r["scale-search"].as<int>();
  }
  if (r.count("expert-hessian-memory") && cfg.params.rtn)
    fail(Errc::invalid_argument, "--expert-hessian-memory applies to GPTQ, not to round to nearest (no Hessians)");
  cfg.expert_hessian_bytes = expert_hessian_memory(r, cfg.expert_hessian_bytes);
  if (r.count("smoothquant")) {
    // W8A8: SmoothQuant, then GPTQ at 8 bits per output channel, symmetric (llm-compressor's recipe).
    if (cfg.params.rtn)
      fail(Errc::invalid_argument, "--smoothquant with round to nearest is `quantize MODEL smoothquant --smoothquant`");
    if (r.count("bits") && cfg.params.bits != 8)
      fail(Errc::invalid_argument, "--smoothquant quantizes weights to 8 bits (W8A8), not --bits {}", cfg.params.bits);
    if (r.count("group-size") && cfg.params.group_size != -1)
      fail(Errc::invalid_argument, "--smoothquant quantizes weights per output channel (--group-size -1), not {}",
           cfg.params.group_size);
    if (r.count("asym")) fail(Errc::invalid_argument, "--smoothquant quantizes weights symmetrically (int8): drop --asym");
    if (cfg.layout != GptqLayout::compressed_tensors)
      fail(Errc::invalid_argument, "--smoothquant writes the compressed-tensors int8 layout: drop --layout {}",
           r["layout"].as<std::string>());
    cfg.params.bits = 8;
    cfg.params.group_size = -1;
    cfg.smoothquant = smoothquant_options(r);
  }
  if (r.count("calibration-samples")) cfg.calibration_samples = r["calibration-samples"].as<int64_t>();
  if (r.count("ctx")) cfg.ctx = r["ctx"].as<int64_t>();
  if (r.count("calibration-data")) cfg.calibration_data = r["calibration-data"].as<std::string>();
  if (r.count("calibration-activations")) {
    if (cfg.params.rtn) fail(Errc::invalid_argument, "--calibration-activations applies to GPTQ, not to round to nearest (no calibration)");
    const std::string a = r["calibration-activations"].as<std::string>();
    if (a != "f32" && a != "bf16")
      fail(Errc::invalid_argument, "--calibration-activations: expected 'f32' or 'bf16', got '{}'", a);
    cfg.bf16_activations = a == "bf16";
  }
  validate(cfg.params);
  if (cfg.calibration_samples < 1)
    fail(Errc::invalid_argument, "--calibration-samples must be positive, got {}", cfg.calibration_samples);
  if (cfg.ctx < 2) fail(Errc::invalid_argument, "--ctx must be at least 2, got {}", cfg.ctx);

  const fs::path model = r["model"].as<std::string>();
  const fs::path out = output_model_dir(r, gptq_default_output(model, cfg));
  TermProgress progress(ctx);
  lq::Context run_ctx = library_context(ctx, progress);
  block_checkpoint_options(
      r, model, progress, [&](const fs::path& d, bool resume) { return gptq_checkpoint_state(d, cfg, resume); },
      cfg.checkpoint_dir, cfg.resume);
  GptqResult res;
  try {
    res = gptq_model(model, out, cfg, run_ctx);
  } catch (const Error& e) {
    rethrow_naming_checkpoint(e, cfg.checkpoint_dir);
  }
  for (const auto& w : res.warnings) progress.message(fmt::format("warning: {}", w));
  const double ratio = res.source_bytes ? static_cast<double>(res.output_bytes) / static_cast<double>(res.source_bytes) : 0;
  const char* layout = cfg.layout == GptqLayout::compressed_tensors ? "compressed-tensors"
                       : cfg.layout == GptqLayout::gptq           ? "gptq"
                       : cfg.layout == GptqLayout::awq            ? "awq"
                                                                  : "gptq_v2";
  const char* act = cfg.params.act_order == GptqActOrder::static_groups ? "static"
                    : cfg.params.act_order == GptqActOrder::group       ? "group"
                                                                        : "none";
  const std::string level = cfg.smoothquant ? std::string("W8A8") : fmt::format("W{}A16", cfg.params.bits);
  progress.message(fmt::format("Complete: {} ({}, {:.2f} bpw)", res.output.string(), human_bytes(res.output_bytes), res.bpw));
  if (ctx.format == Format::json) {
    nlohmann::json layers = nlohmann::json::array();
    double loss = 0;
    for (const auto& l : res.layers) {
      loss += l.loss;
      layers.push_back({{"layer_name", l.module},
                        {"layer", l.layer},
                        {"loss", l.loss},
                        {"damp", l.damp},
                        {"damp_raises", l.damp_raises},
                        {"dead_columns", l.dead_columns}});
    }
    nlohmann::json result = {{"status", "success"},
                             {"resumed_blocks", res.resumed_blocks},
                             {"expert_inputs_spooled", res.expert_inputs_spooled},
                             {"output_path", fs::absolute(res.output).string()},
                             {"output_files", res.files},
                             {"model_path", model.string()},
                             {"format", layout},
                             {"method", cfg.params.rtn ? "rtn" : "gptq"},
                             {"quantization_level", level},
                             {"bits", cfg.params.bits},
                             {"group_size", cfg.params.group_size},
                             {"symmetric", cfg.params.sym},
                             {"act_order", act},
                             {"damp", cfg.params.damp},
                             {"damp_raises", res.damp_raises},
                             {"total_loss", loss},
                             {"layer_summary", layers},
                             {"calibration_data", cfg.params.rtn ? nlohmann::json(nullptr) : nlohmann::json(res.calibration_source)},
                             {"calibration_activations", cfg.params.rtn ? nlohmann::json(nullptr)
                                                                        : nlohmann::json(res.calibration_bf16 ? "bf16" : "f32")},
                             {"quantize_seconds", res.quantize_seconds}};
    result.update(calibrated_result_json(res));
    if (const auto& sq = cfg.smoothquant) {
      result["smoothquant"] = {{"alpha", sq->alpha_auto ? nlohmann::json("auto") : nlohmann::json(sq->alpha)},
                               {"activation_percentile", sq->activation_percentile},
                               {"weights", "int8 per channel (GPTQ)"},
                               {"activations", sq->static_activations ? "int8 static per tensor" : "int8 dynamic per token"},
                               {"groups", smoothing_groups_json(res.smoothing, sq->alpha_auto)}};
    }
    print_json(result);
  } else {
    std::cout << fmt::format("Output:      {} ({})\n", res.output.string(), layout);
    if (cfg.smoothquant)
      std::cout << fmt::format("SmoothQuant: alpha {}; {} activations\n",
                               cfg.smoothquant->alpha_auto ? std::string("auto") : fmt::format("{}", cfg.smoothquant->alpha),
                               cfg.smoothquant->static_activations ? "int8 static per-tensor" : "int8 dynamic per-token");
    std::cout << fmt::format("Scheme:      {} {} {} {}{}\n", cfg.params.rtn ? "RTN" : "GPTQ", level,
                             cfg.params.group_size > 0 ? fmt::format("g{}", cfg.params.group_size) : std::string("per channel"),
                             cfg.params.sym ? "symmetric" : "asymmetric",
                             cfg.params.act_order == GptqActOrder::none ? "" : fmt::format(", act-order {}", act));
    std::cout << fmt::format("Size:        {} ({:.1f}% of {})\n", human_bytes(res.output_bytes), 100 * ratio,
                             human_bytes(res.source_bytes));
    std::cout << fmt::format("Weights:     {} ({:.3f} bits per weight; {} quantized)\n", res.n_parameters, res.bpw,
                             res.n_quantized);
    if (!cfg.params.rtn)
      std::cout << fmt::format("Calibration: {} chunks of {} tokens ({}); dampening raised {} time(s)\n", res.chunks,
                               res.ctx, res.calibration_source, res.damp_raises);
    std::cout << fmt::format("Time:        {:.2f} s\n", res.seconds);
  }
  return 0;
}

}  // namespace lq::cli
