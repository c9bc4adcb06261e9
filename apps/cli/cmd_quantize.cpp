// lq quantize MODEL OUTPUT_FORMAT -q LEVEL [options]: parses the flags into a QuantizeJob, runs
// lq::quantize_model (quantize_job.hpp) and prints its result; `lq quantize MODEL smoothquant
// --smoothquant` fills a SmoothQuantConfig and runs lq::smoothquant_model (smoothquant.hpp). No
// quantization logic here.
#include "cli.hpp"
#include "quality_cli.hpp"

#include <lq/gptq_gguf.hpp>
#include <lq/lq.hpp>
#include <lq/profile.hpp>
#include <lq/quality.hpp>
#include <lq/quantize_job.hpp>
#include <lq/smoothquant.hpp>
#include <lq/super_weights.hpp>

#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <map>

#include <unistd.h>

namespace fs = std::filesystem;

namespace lq::cli {
namespace {

QuantType parse_type_option(const std::string& opt, const std::string& v) {
  auto t = parse_quant_type(v);
  if (!t || !type_info(*t).storable || !type_info(*t).quantize_ref)
    fail(Errc::invalid_argument, "{}: unknown or unsupported tensor type '{}'", opt, v);
  return *t;
}

std::string default_output(const fs::path& model, const std::string& level) {
  fs::path m = model;
  if (m.has_filename() == false) m = m.parent_path();
  std::string stem = m.filename().string();
  if (m.extension() == ".gguf") stem = m.stem().string();
  if (stem.empty() || stem == "." || stem == "..") stem = "model";
  return stem + "-" + level + ".gguf";
}

// Options that only the GGUF path reads, and those only SmoothQuant reads.
constexpr const char* kGgufOnlyOptions[] = {"quantization", "pure", "imatrix", "output-tensor-type", "token-embedding-type",
                                            "leave-output-tensor", "tensor-type", "allow-requantize", "keep-split", "no-gain-correction",
                                            "dynamic", "profile", "protect-super-weights", "protection-coverage",
                                            "super-weights", "coherence-check", "checkpoint-dir", "resume",
                                            "no-checkpoints"};
// Checkpoints are on by default for models whose weights take at least this many bytes (a
// checkpoint costs one extra write of the output's data; below this, a rerun is quicker).
constexpr uint64_t kDefaultCheckpointBytes = 1'000'000'000;

constexpr const char* kSmoothQuantOptions[] = {"alpha", "calibration-data", "calibration-samples", "ctx",
                                               "activation-percentile", "static-activations", "per-tensor-weights",
                                               "smooth-mappings", "calibration-activations"};

constexpr const char* kGptqOptions[] = {"layout", "bits", "group-size", "act-order", "act-order-group", "sym", "asym", "damp", "method", "scale-search",
                                        "expert-hessian-memory"};

}  // namespace

SmoothQuantConfig smoothquant_options(const cxxopts::ParseResult& r) {
  SmoothQuantConfig cfg;
  if (r.count("alpha")) {
    const std::string a = r["alpha"].as<std::string>();
    if (a == "auto") {
      cfg.alpha_auto = true;
    } else {
      size_t used = 0;
      double v = -1;
      try {
        v = std::stod(a, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != a.size() || !(v >= 0 && v <= 1))
        fail(Errc::invalid_argument, "--alpha: expected a number in [0, 1] or 'auto', got '{}'", a);
      cfg.alpha = v;
    }
  }
  if (r.count("activation-percentile")) {
    cfg.activation_percentile = r["activation-percentile"].as<double>();
    if (!(cfg.activation_percentile > 0 && cfg.activation_percentile <= 100))
      fail(Errc::invalid_argument, "--activation-percentile must be in (0, 100], got {}", cfg.activation_percentile);
  }
  if (r.count("calibration-samples")) cfg.calibration_samples = r["calibration-samples"].as<int64_t>();
  if (r.count("ctx")) cfg.ctx = r["ctx"].as<int64_t>();
  if (r.count("calibration-data")) cfg.calibration_data = r["calibration-data"].as<std::string>();
  cfg.static_activations = r.count("static-activations") > 0;
  cfg.per_channel = r.count("per-tensor-weights") == 0;
  if (r.count("smooth-mappings")) {
    const std::string m = r["smooth-mappings"].as<std::string>();
    if (m != "default" && m != "all")
      fail(Errc::invalid_argument, "--smooth-mappings: expected 'default' or 'all', got '{}'", m);
    cfg.smooth_all = m == "all";
  }
  if (r.count("calibration-activations")) {
    const std::string a = r["calibration-activations"].as<std::string>();
    if (a != "f32" && a != "bf16")
      fail(Errc::invalid_argument, "--calibration-activations: expected 'f32' or 'bf16', got '{}'", a);
    cfg.bf16_activations = a == "bf16";
  }
  validate(cfg);
  return cfg;
}

nlohmann::json smoothing_groups_json(const std::vector<SmoothQuantGroup>& groups, bool alpha_auto) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& g : groups)
    rows.push_back({{"layer_name", g.norm},
                    {"layer", g.layer},
                    {"linears", g.linears},
                    {"alpha", g.alpha},
                    {"activation_max", g.activation_max},
                    {"activation_max_smoothed", g.activation_max_smoothed},
                    {"scale_min", g.scale_min},
                    {"scale_max", g.scale_max},
                    {"relative_mse", alpha_auto ? nlohmann::json(g.mse_chosen) : nlohmann::json(nullptr)},
                    {"relative_mse_default_alpha", alpha_auto ? nlohmann::json(g.mse_default) : nlohmann::json(nullptr)}});
  return rows;
}

namespace {

int run_smoothquant(Context& ctx, const cxxopts::ParseResult& r) {
  for (const char* o : kGgufOnlyOptions)
    if (r.count(o)) fail(Errc::invalid_argument, "--{} does not apply to the smoothquant output format (W8A8)", o);
  const SmoothQuantConfig cfg = smoothquant_options(r);

  const fs::path model = r["model"].as<std::string>();
  const fs::path out = output_model_dir(r, smoothquant_default_output(model));
  TermProgress progress(ctx);
  lq::Context run_ctx = library_context(ctx, progress);
  const SmoothQuantResult res = smoothquant_model(model, out, cfg, run_ctx);
  for (const auto& w : res.warnings) progress.message(fmt::format("warning: {}", w));

  // The quality block: our engine measures the written directory against MODEL.
  nlohmann::json quality_json;
  std::optional<QualityReport> quality;
  if (r.count("quality-report")) {
    try {
      quality = quality_report(model, res.output, QualityOptions{}, run_ctx);
      quality_json = quality_block_json(*quality);
    } catch (const Error& e) {
      if (e.code() != Errc::invalid_model) throw;
      // The engine cannot open this checkpoint (no W8A8 reader in this build): the output stays.
      progress.message(fmt::format("warning: no quality report: the engine cannot read {}: {}", res.output.string(), e.what()));
      quality_json = {{"status", "unavailable"}, {"reason", e.what()}};
    }
  }
  const double ratio =
      res.source_bytes ? static_cast<double>(res.output_bytes) / static_cast<double>(res.source_bytes) : 0;
  progress.message(fmt::format("Complete: {} ({}, {:.2f} bpw)", res.output.string(), human_bytes(res.output_bytes), res.bpw));
  if (ctx.format == Format::json) {
    const nlohmann::json layers = smoothing_groups_json(res.groups, cfg.alpha_auto);
    nlohmann::json result = {{"status", "success"},
                             {"output_path", fs::absolute(res.output).string()},
                             {"output_files", res.files},
                             {"model_path", model.string()},
                             {"format", "compressed-tensors"},
                             {"quantization_level", "W8A8"},
                             {"alpha", cfg.alpha_auto ? nlohmann::json("auto") : nlohmann::json(cfg.alpha)},
                             {"activation_percentile", cfg.activation_percentile},
                             {"weights", cfg.per_channel ? "int8 per channel" : "int8 per tensor"},
                             {"activations", cfg.static_activations ? "int8 static per tensor" : "int8 dynamic per token"},
                             {"smooth_mappings", cfg.smooth_all ? "all" : "default"},
                             {"calibration_activations", res.calibration_bf16 ? "bf16" : "f32"},
                             {"layer_summary", layers},
                             {"not_smoothed", res.not_smoothed},
                             {"calibration_data", res.calibration_source}};
    result.update(calibrated_result_json(res));
    if (!quality_json.is_null()) result["quality_report"] = quality_json;
    print_json(result);
  } else {
    std::cout << fmt::format("Output:      {}\n", res.output.string());
    std::cout << fmt::format("Scheme:      W8A8 int8 ({} weights, {} activations)\n",
                             cfg.per_channel ? "per-channel" : "per-tensor",
                             cfg.static_activations ? "static per-tensor" : "dynamic per-token");
    std::cout << fmt::format("Size:        {} ({:.1f}% of {})\n", human_bytes(res.output_bytes), 100 * ratio,
                             human_bytes(res.source_bytes));
    std::cout << fmt::format("Weights:     {} ({:.3f} bits per weight; {} in int8)\n", res.n_parameters, res.bpw,
                             res.n_quantized);
    std::cout << fmt::format("Calibration: {} chunks of {} tokens ({})\n", res.chunks, res.ctx, res.calibration_source);
    std::cout << "Alpha:      ";
    for (const auto& g : res.groups) std::cout << fmt::format(" {:.2f}", g.alpha);
    std::cout << fmt::format("\nTime:        {:.2f} s\n", res.seconds);
    if (quality) std::cout << quality_block_line(*quality);
  }
  return 0;
}

}  // namespace

int run_quantize(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts = command_options(ctx, "quantize", "MODEL OUTPUT_FORMAT", {"model", "output_format"},
      "Quantize a model into GGUF (llama.cpp's levels and mixtures).");
  opts.add_options()
      ("model", "Model: Hugging Face directory, .safetensors, GGUF file or Hub ID", cxxopts::value<std::string>())
      ("output_format", "Output format: gguf, smoothquant (compressed-tensors W8A8 int8 directory), gptq, rtn or awq "
                        "(W4A16-style directory: compressed-tensors pack-quantized, the GPTQ layout or AutoAWQ's)",
       cxxopts::value<std::string>())
      ("q,quantization", "Level: Q4_K_M, Q8_0, IQ1_S, TERNARY, F16, ... (see `info --levels`)", cxxopts::value<std::string>())
      ("o,output", "Output file [default: ./MODEL-LEVEL.gguf; smoothquant: directory ./MODEL-smoothquant-w8a8; gptq: ./MODEL-gptq-w4a16; awq: ./MODEL-awq-w4a16]",
       cxxopts::value<std::string>())
      ("pure", "Every weight in the level's base type (no mixture)")
      ("imatrix", "Importance matrix (llama.cpp GGUF or .dat format)", cxxopts::value<std::string>())
      ("output-tensor-type", "Type for output.weight", cxxopts::value<std::string>())
      ("token-embedding-type", "Type for token_embd.weight", cxxopts::value<std::string>())
      ("leave-output-tensor", "Keep output.weight unquantized")
      ("no-gain-correction", "With --imatrix, and for awq: keep each block's (awq: each clipped group's) fitted "
       "scales (no gain correction; docs/quality-zoo.md, docs/cli.md)")
      ("tensor-type", "REGEX=TYPE: type for matching tensors (repeatable, first match wins)",
       cxxopts::value<std::vector<std::string>>())
      ("allow-requantize", "Allow re-quantizing tensors that are already quantized")
      ("keep-split", "One output GGUF per input file (shard or split): OUT-00001-of-0000N.gguf")
      ("dynamic", "Dynamic layer-wise quantization (same as -q dynamic)")
      ("profile", "Dynamic profile: attention-high, balanced, compression-max, quality, speed, or a .dqprofile path",
       cxxopts::value<std::string>())
      ("protect-super-weights", "Keep the most important weights within 1% (requires --imatrix)")
      ("protection-coverage", "Fraction of weights protected [default: 0.0001]", cxxopts::value<double>())
      ("super-weights", "Protect the weights listed in this mask file (from `analyze --identify-super-weights`)",
       cxxopts::value<std::string>())
      ("quality-report",
       "Measure the output against MODEL: perplexity and KL divergence on $LLM_QUANTIZE_QUALITY_SAMPLES (default 32) "
       "chunks of the built-in text. Above "
       "$LLM_QUANTIZE_QUALITY_THRESHOLD percent perplexity increase (default 20): exit 11, the output file is kept")
      ("coherence-check",
       "Generate from the built-in prompts and score the output's coherence. Below "
       "$LLM_QUANTIZE_COHERENCE_THRESHOLD (default 0.5): exit 12, the output file is kept")
      ("smoothquant", "SmoothQuant W8A8 transformation (output format smoothquant; with gptq: W8A8 with GPTQ-rounded "
                      "int8 weights, per channel)")
      ("alpha", "SmoothQuant migration strength in [0, 1], or auto (per layer, lowest W8A8 output error) [default: 0.5]",
       cxxopts::value<std::string>())
      ("calibration-data", "SmoothQuant / GPTQ / AWQ calibration data: .txt, .json or .jsonl [default: built-in WikiText-2]",
       cxxopts::value<std::string>())
      ("calibration-samples", "SmoothQuant / GPTQ / AWQ calibration chunks [default: 512; awq: 128]", cxxopts::value<int64_t>())
      ("ctx", "SmoothQuant / GPTQ / AWQ calibration chunk length in tokens [default: 512]", cxxopts::value<int64_t>())
      ("activation-percentile", "SmoothQuant activation statistic: percentile of |x| per channel, 100 = max [default: 100]",
       cxxopts::value<double>())
      ("static-activations", "SmoothQuant: static per-tensor activation scales (input_scale) instead of dynamic per token")
      ("per-tensor-weights", "SmoothQuant: one weight scale per tensor instead of per output channel")
      ("smooth-mappings", "SmoothQuant: default (input_layernorm -> q/k/v, post_attention_layernorm -> gate/up) or all "
                          "(also v_proj -> o_proj and up_proj -> down_proj) [default: default]",
       cxxopts::value<std::string>())
      ("calibration-activations", "SmoothQuant: f32 or bf16 activations in the calibration products [default: bf16 for a "
                                  "bf16 checkpoint, else f32]. gptq: the same for the calibration's products. awq: f32 or "
                                  "bf16 products in the scale search (weights and activations rounded to bf16, as "
                                  "llm-compressor on a bf16 model) [default: bf16 for a bf16 checkpoint, else f32]",
       cxxopts::value<std::string>())
      ("checkpoint-dir", "Checkpoint directory, saved after every tensor (gptq/rtn: every block) [default: ./.checkpoint for models of 1 GB "
                         "of weights or more]", cxxopts::value<std::string>())
      ("resume", "Resume from a checkpoint (its directory or the checkpoint directory)", cxxopts::value<std::string>())
      ("no-checkpoints", "No checkpoint, whatever the model's size")
      ("gptq", "gguf: GPTQ error feedback on the GGUF block types (legacy, k-quants, i-quants; the ternary and float "
               "types as without it); calibrates with --calibration-data/--calibration-samples (default 128)/--ctx "
               "(default 256), --damp. awq: AWQ's scales, then GPTQ's rounding on the scaled weights instead of the "
               "clipping search (with --act-order: GPTQ's static act-order; --damp, --scale-search)");
  add_gptq_options(opts);
  add_sensitivity_options(opts);
  auto parsed = parse(ctx, opts, args);
  if (!parsed) return 0;
  const auto& r = *parsed;
  if (!r.count("model")) fail(Errc::invalid_argument, "missing MODEL (usage: {} quantize MODEL gguf -q LEVEL)", ctx.program);
  if (!r.count("output_format")) fail(Errc::invalid_argument, "missing OUTPUT_FORMAT (gguf)");
  const std::string format = r["output_format"].as<std::string>();
  if (format != "gguf" && format != "smoothquant" && format != "gptq" && format != "rtn" && format != "awq")
    fail(Errc::invalid_argument, "unknown output format '{}' (supported: gguf, smoothquant, gptq, rtn, awq)", format);
  const bool gguf_gptq = r.count("gptq") > 0;
  if (gguf_gptq && format != "gguf" && format != "awq")
    fail(Errc::invalid_argument,
         "--gptq applies to the gguf and awq output formats (the gptq format is `quantize MODEL gptq`)");
  for (const auto& o : sensitivity_option_names())
    if (r.count(o) && format != "gguf") fail(Errc::invalid_argument, "--{} applies to -q dynamic (gguf output) only", o);
  if (format == "gptq" || format == "rtn" || format == "awq") {
    for (const char* o : kGgufOnlyOptions)
      if (r.count(o) && std::string_view(o) != "checkpoint-dir" && std::string_view(o) != "resume" &&
          std::string_view(o) != "no-checkpoints" && !(format == "awq" && std::string_view(o) == "no-gain-correction"))
        fail(Errc::invalid_argument, "--{} does not apply to the {} output format", o, format);
    // Validation rules 5 and 6: gptq is W8A8-capable (SmoothQuant, then GPTQ at 8 bits per channel).
    if (r.count("smoothquant") && format != "gptq")
      fail(Errc::invalid_argument,
           "--smoothquant is only valid with a W8A8-compatible output format (smoothquant, gptq), not {} (validation rule 5)",
           format);
    if (r.count("alpha") && !r.count("smoothquant"))
      fail(Errc::invalid_argument, "--alpha requires --smoothquant (validation rule 6)");
    for (const char* o : {"activation-percentile", "static-activations", "per-tensor-weights"})
      if (r.count(o) && !r.count("smoothquant"))
        fail(Errc::invalid_argument, "--{} does not apply to the {} output format without --smoothquant", o, format);
    if (r.count("per-tensor-weights"))
      fail(Errc::invalid_argument, "--per-tensor-weights does not apply to gptq --smoothquant (GPTQ W8A8 weights are per channel)");
    // The streamed SmoothQuant's own knobs; GPTQ W8A8 smooths the norm-fed linears only.
    for (const char* o : {"smooth-mappings", "calibration-activations"})
      if (r.count(o) && !(format != "rtn" && std::string_view(o) == "calibration-activations"))
        fail(Errc::invalid_argument, "--{} does not apply to the {} output format", o, format);
    return format == "awq" ? run_awq(ctx, r) : run_gptq(ctx, r, format);
  }
  for (const char* o : kGptqOptions) {
    const std::string_view name(o);
    const bool with_gguf_gptq = name == "damp" || name == "expert-hessian-memory";
    if (r.count(o) && !(gguf_gptq && with_gguf_gptq))
      fail(Errc::invalid_argument, "--{} applies to {}{}", o,
           name == "expert-hessian-memory" ? "the gptq output format" : "the gptq and rtn output formats",
           with_gguf_gptq ? " and to gguf with --gptq" : " only");
  }
  // Validation rules 5 and 6 of the CLI contract.
  if (r.count("smoothquant") && format != "smoothquant")
    fail(Errc::invalid_argument,
         "--smoothquant is only valid with a W8A8-compatible output format (smoothquant, gptq), not {} (validation rule 5)",
         format);
  if (r.count("alpha") && !r.count("smoothquant"))
    fail(Errc::invalid_argument, "--alpha requires --smoothquant (validation rule 6)");
  if (format == "smoothquant") {
    if (!r.count("smoothquant"))
      fail(Errc::invalid_argument, "the smoothquant output format needs --smoothquant (the W8A8 transformation)");
    return run_smoothquant(ctx, r);
  }
  for (const char* o : kSmoothQuantOptions) {
    const std::string_view so = o;
    if (gguf_gptq && (so == "calibration-data" || so == "calibration-samples" || so == "ctx")) continue;
    if (r.count(o)) fail(Errc::invalid_argument, "--{} applies to --smoothquant{} only", o,
                         so == "calibration-data" || so == "calibration-samples" || so == "ctx" ? " and --gptq" : "");
  }
  if (gguf_gptq) {
    // The GPTQ pass needs the tensor types fixed before it runs and writes the bytes itself.
    for (const char* o : {"protect-super-weights", "protection-coverage", "super-weights", "allow-requantize"})
      if (r.count(o)) fail(Errc::invalid_argument, "--gptq cannot be combined with --{}", o);
  }
  if (!r.count("quantization") && !r.count("dynamic")) fail(Errc::invalid_argument, "missing -q LEVEL");
  const std::string level_name = r.count("quantization") ? r["quantization"].as<std::string>() : "dynamic";
  const bool dynamic = r.count("dynamic") > 0 || level_name == "dynamic" || level_name == "DYNAMIC";
  auto ftype = dynamic ? std::optional<FileType>(FileType::Q4_K_M) : parse_file_type(level_name);
  if (!ftype) fail(Errc::invalid_argument, "unknown quantization level '{}' (run `{} info --levels`)", level_name, ctx.program);
  const FileTypeInfo& level = file_type_info(*ftype);
  if (r.count("profile") && !dynamic)
    fail(Errc::invalid_argument, "--profile selects a dynamic profile: use it with -q dynamic");
  for (const auto& o : sensitivity_option_names())
    if (r.count(o) && !dynamic) fail(Errc::invalid_argument, "--{} applies to -q dynamic only", o);
  if (r.count("protect-super-weights") && !r.count("imatrix"))
    throw Error(Errc::invalid_argument, "--protect-super-weights requires --imatrix",
                "Compute an importance matrix with `lq analyze MODEL`");
  if (r.count("protection-coverage") && !r.count("protect-super-weights"))
    fail(Errc::invalid_argument, "--protection-coverage needs --protect-super-weights");
  if (r.count("no-checkpoints") && (r.count("checkpoint-dir") || r.count("resume")))
    fail(Errc::invalid_argument, "--no-checkpoints contradicts --{}", r.count("resume") ? "resume" : "checkpoint-dir");
  if (r.count("resume") && r.count("checkpoint-dir"))
    fail(Errc::invalid_argument, "--resume continues the checkpoint in its own directory: drop --checkpoint-dir");
  QuantizeJob job;
  // Checkpoints: --resume continues one (checked before any heavy work), --checkpoint-dir starts
  // one; otherwise models of kDefaultCheckpointBytes or more get one in ./.checkpoint.
  // With --gptq the checkpoint is the GPTQ pass's (per block, dir/gguf-gptq-LEVEL); the write after
  // it takes seconds and keeps none.
  const std::string ckpt_level = std::string(gguf_gptq ? "gptq-" : "") + (dynamic ? "dynamic" : level.name);
  fs::path gptq_ckpt;
  bool gptq_resume = false;
  if (r.count("resume")) {
    const fs::path d = quantize_checkpoint_state(r["resume"].as<std::string>(), ckpt_level, true);
    if (gguf_gptq)
      gptq_ckpt = d, gptq_resume = true;
    else
      job.options.checkpoint.dir = d, job.options.checkpoint.resume = true;
  } else if (r.count("checkpoint-dir")) {
    const fs::path d = quantize_checkpoint_state(r["checkpoint-dir"].as<std::string>(), ckpt_level, false);
    (gguf_gptq ? gptq_ckpt : job.options.checkpoint.dir) = d;
  }
  job.gates.perplexity = r.count("quality-report") > 0;
  job.gates.coherence = r.count("coherence-check") > 0;
  job.gates.settings = gate_settings_from_env(job.gates.perplexity, job.gates.coherence);
  const double coverage = r.count("protection-coverage") ? r["protection-coverage"].as<double>() : 1e-4;
  if (!(coverage > 0 && coverage < 1)) fail(Errc::invalid_argument, "--protection-coverage must be in (0, 1), got {}", coverage);
  if (dynamic) job.profile = Profile::load(r.count("profile") ? r["profile"].as<std::string>() : "balanced");

  QuantizeOptions& qo = job.options;
  qo.ftype = *ftype;
  qo.pure = r.count("pure") > 0;
  qo.leave_output_tensor = r.count("leave-output-tensor") > 0;
  qo.allow_requantize = r.count("allow-requantize") > 0;
  qo.keep_split = r.count("keep-split") > 0;
  qo.gain_correction = r.count("no-gain-correction") == 0;
  if (r.count("output-tensor-type"))
    qo.output_tensor_type = parse_type_option("--output-tensor-type", r["output-tensor-type"].as<std::string>());
  if (r.count("token-embedding-type"))
    qo.token_embedding_type = parse_type_option("--token-embedding-type", r["token-embedding-type"].as<std::string>());
  if (r.count("tensor-type")) {
    for (const auto& spec : r["tensor-type"].as<std::vector<std::string>>()) {
      const size_t eq = spec.rfind('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
        fail(Errc::invalid_argument, "--tensor-type: expected REGEX=TYPE, got '{}'", spec);
      qo.tensor_types.emplace_back(spec.substr(0, eq), parse_type_option("--tensor-type", spec.substr(eq + 1)));
    }
  }

  const fs::path model = r["model"].as<std::string>();
  const fs::path out = r.count("output") ? fs::path(r["output"].as<std::string>())
                                         : fs::path(default_output(model, dynamic ? "dynamic" : level.name));

  // Fail fast on an unusable output location, before any heavy work.
  check_output_dir(out, /*writable=*/true);
  TermProgress progress(ctx);
  lq::Context run_ctx = library_context(ctx, progress);
  Imatrix imatrix;
  if (r.count("imatrix")) {
    const std::string ip = r["imatrix"].as<std::string>();
    progress.message(fmt::format("Loading importance matrix: {}", ip));
    imatrix = Imatrix::load(ip);
    qo.imatrix = &imatrix;
    qo.imatrix_path = ip;
  }
  progress.message(fmt::format("Loading model: {}", model.string()));
  auto src = ModelSource::open(model);
  if (r.count("super-weights")) job.protect = load_super_weights(r["super-weights"].as<std::string>());
  if (r.count("protect-super-weights")) job.protect_coverage = coverage;
  if (qo.checkpoint.dir.empty() && gptq_ckpt.empty() && !r.count("no-checkpoints") &&
      src->source_bytes() >= kDefaultCheckpointBytes) {
    // The default checkpoint must not stop a run that could write its output: where the
    // working directory (or ./.checkpoint) is not writable, the run goes on without one.
    std::error_code ec;
    const bool exists = fs::exists(".checkpoint", ec);
    if (::access(exists ? ".checkpoint" : ".", W_OK) == 0) {
      // --gptq: a streamed calibration only (gptq_gguf_tensors refuses a checkpoint otherwise).
      if (!gguf_gptq || gptq_gguf_streams(*src)) {
        (gguf_gptq ? gptq_ckpt : qo.checkpoint.dir) = quantize_checkpoint_state(".checkpoint", ckpt_level, false);
        progress.message(fmt::format("Checkpointing to {} (models of {} or more; --no-checkpoints turns it off)",
                                     (gguf_gptq ? gptq_ckpt : qo.checkpoint.dir).string(),
                                     human_bytes(kDefaultCheckpointBytes)));
      }
    } else {
      progress.message("warning: no checkpoint: the working directory is not writable (--checkpoint-dir DIR names another)");
    }
  }

  if (gguf_gptq) {
    GptqGgufConfig gcfg;
    if (r.count("damp")) gcfg.damp = r["damp"].as<double>();
    gcfg.expert_hessian_bytes = expert_hessian_memory(r, gcfg.expert_hessian_bytes);
    if (!(gcfg.damp > 0 && gcfg.damp < 100)) fail(Errc::invalid_argument, "--damp must be in (0, 100), got {}", gcfg.damp);
    if (r.count("calibration-samples")) gcfg.calibration_samples = r["calibration-samples"].as<int64_t>();
    if (r.count("ctx")) gcfg.ctx = r["ctx"].as<int64_t>();
    if (r.count("calibration-data")) gcfg.calibration_data = r["calibration-data"].as<std::string>();
    if (gcfg.calibration_samples < 1)
      fail(Errc::invalid_argument, "--calibration-samples must be positive, got {}", gcfg.calibration_samples);
    if (gcfg.ctx < 2) fail(Errc::invalid_argument, "--ctx must be at least 2, got {}", gcfg.ctx);
    if (src->is_gguf())
      fail(Errc::invalid_argument, "--gptq needs a Hugging Face checkpoint (safetensors), not the GGUF file {}",
           model.string());
    qo.checkpoint = {};
    gcfg.work_dir = fs::absolute(out).parent_path();  // the streamed calibration's work files, beside the output
    gcfg.checkpoint_dir = gptq_ckpt;
    gcfg.resume = gptq_resume;
    job.gptq = gcfg;  // run by quantize_model once the types are decided
  }
  std::optional<KldObjective> sensitivity;
  if (dynamic) {
    const bool solves = (job.profile->target_bpw || job.profile->target_bytes) && qo.imatrix;
    sensitivity = sensitivity_from_options(r, *src, qo.imatrix, qo.imatrix_path, solves, run_ctx, progress);
    if (sensitivity) {
      job.sensitivity = &sensitivity->table;
      job.measure_mixes = sensitivity->measure_mixes;
    }
  }
  const QuantizeJobResult jr = quantize_model(*src, out, job, run_ctx);
  const QuantizeResult& res = jr.quantize;
  const std::optional<QualityReport>& quality = jr.quality;
  const std::optional<CoherenceResult>& coherence = jr.coherence;
  const Errc gate = jr.gate;
  const std::string& gate_message = jr.gate_message;
  const double quality_threshold = jr.gate_settings.max_perplexity_increase_pct;
  const double coherence_threshold = jr.gate_settings.min_coherence;

  const TypeTally per_type = tensor_type_tally(res);
  const double ratio = res.source_bytes ? static_cast<double>(res.file_bytes) / static_cast<double>(res.source_bytes) : 0;

  nlohmann::json quality_json;
  if (quality) {
    quality_json = quality_block_json(*quality);
    quality_json["threshold_pct"] = quality_threshold;
  }
  if (coherence) {
    if (quality_json.is_null()) quality_json = nlohmann::json::object();
    quality_json["coherence_score"] = coherence->score;
    quality_json["coherent_prompts"] = coherence->n_coherent;
    quality_json["prompts"] = coherence->samples.size();
    quality_json["coherence_threshold"] = coherence_threshold;
  }
  if (gate != Errc::ok && ctx.format == Format::json) {
    const ErrcInfo& info = errc_info(gate);
    print_json({{"status", "error"},
                {"error_code", info.exit_code},
                {"error_type", info.type_name},
                {"message", gate_message},
                {"suggestion", info.suggestion},
                {"output_path", fs::absolute(res.output).string()},
                {"quality_report", quality_json}});
    std::cerr << ctx.program << ": error: " << gate_message << "\n";
    return info.exit_code;
  }
  progress.message(fmt::format("Complete: {} ({}, {:.2f} bpw)", res.output.string(), human_bytes(res.file_bytes), res.bpw));

  if (ctx.format == Format::json) {
    nlohmann::json layer_summary = nlohmann::json::array();
    for (const auto& l : jr.layers)
      layer_summary.push_back({{"layer_name", l.layer},
                               {"bit_width", l.bit_width},
                               {"parameter_count", l.parameter_count},
                               {"is_protected", l.is_protected}});
    nlohmann::json result = {{"status", "success"},
                {"output_path", fs::absolute(res.output).string()},
                {"output_files", [&] {
                   nlohmann::json a = nlohmann::json::array();
                   for (const auto& o : res.outputs) a.push_back(fs::absolute(o).string());
                   return a;
                 }()},
                {"model_path", model.string()},
                {"format", "gguf"},
                {"quantization_level", dynamic ? std::string("dynamic") : std::string(level.name)},
                {"profile", jr.dynamic ? nlohmann::json(jr.profile) : nlohmann::json(nullptr)},
                {"layer_summary", layer_summary},
                {"protected_weights", jr.protected_weights.size()},
                {"file_size", res.file_bytes},
                {"source_size", res.source_bytes},
                {"parameter_count", res.n_weights},
                {"effective_bpw", res.bpw},
                {"compression_ratio", ratio},
                {"imatrix", qo.imatrix ? nlohmann::json(qo.imatrix_path) : nlohmann::json(nullptr)},
                {"tensor_types", tensor_types_json(per_type)},
                {"tensors", tensor_rows_json(res)},
                {"duration_seconds", res.seconds}};
    if (jr.resolution && !jr.resolution->objective.empty()) {
      // Which objective's mix the size solver kept, and the whole-mix KLDs it compared.
      result["solver_objective"] = jr.resolution->objective;
      if (jr.resolution->mix_kld.size() == 2)
        result["solver_mix_kld"] = {{"kld", jr.resolution->mix_kld[0]}, {"error", jr.resolution->mix_kld[1]}};
    }
    if (!res.checkpoint.empty()) result["resumed_tensors"] = res.resumed_tensors;
    if (gguf_gptq)
      result["gptq"] = {{"tensors", jr.gptq->gptq_tensors},
                        {"without_gptq", jr.gptq->plain_tensors},
                        {"calibration_data", jr.gptq->calibration_source},
                        {"calibration_samples", jr.gptq->chunks},
                        {"ctx", jr.gptq->ctx},
                        {"calibration_tokens", jr.gptq->tokens},
                        {"calibration_seconds", jr.gptq->calibration_seconds},
                        {"quantize_seconds", jr.gptq->quantize_seconds}};
    if (!quality_json.is_null()) result["quality_report"] = quality_json;
    print_json(result);
  } else {
    for (const auto& o : res.outputs) std::cout << fmt::format("Output:      {}\n", o.string());
    if (jr.dynamic)
      std::cout << fmt::format("Level:       dynamic (profile {})\n", jr.profile);
    else
      std::cout << fmt::format("Level:       {}{}\n", level.name, qo.pure ? " (pure)" : "");
    std::cout << fmt::format("Size:        {} ({:.1f}% of {})\n", human_bytes(res.file_bytes), 100 * ratio,
                             human_bytes(res.source_bytes));
    std::cout << fmt::format("Weights:     {} ({:.3f} bits per weight)\n", res.n_weights, res.bpw);
    std::cout << "Tensor types:";
    for (const auto& [name, e] : per_type) std::cout << fmt::format(" {} x{}", name, e.first);
    std::cout << fmt::format("\nTime:        {:.2f} s\n", res.seconds);
    if (gguf_gptq)
      std::cout << fmt::format("GPTQ:        {} linears with error feedback, {} without (type has no GPTQ walk); "
                               "{} chunks of {} tokens, {:.1f} s calibration + {:.1f} s\n",
                               jr.gptq->gptq_tensors.size(), jr.gptq->plain_tensors.size(), jr.gptq->chunks,
                               jr.gptq->ctx, jr.gptq->calibration_seconds, jr.gptq->quantize_seconds);
    if (quality) std::cout << quality_block_line(*quality);
    if (coherence)
      std::cout << fmt::format("Coherence:   {:.3f} ({}/{} prompts coherent)\n", coherence->score, coherence->n_coherent,
                               coherence->samples.size());
  }
  if (gate != Errc::ok) {
    std::cerr << ctx.program << ": error: " << gate_message << "\n";
    return exit_code(gate);
  }
  return 0;
}

}  // namespace lq::cli
