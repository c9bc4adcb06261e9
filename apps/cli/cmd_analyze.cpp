// lq analyze [importance] MODEL [options] | analyze profile MODEL [--imatrix PATH] [--preset P]
//   | analyze combine IMATRIX... [-o PATH] [--output-format gguf|dat] [--chunk-size N]
//   | analyze quality ... (run_analyze_quality, defined with the quality commands)
//
// Outputs of `analyze importance`:
//   -o PATH.json  the JSON report (contract result + per-layer layer_scores) at PATH.json and the
//                 importance matrix beside it at PATH.imatrix;
//   -o PATH       (any other name) the importance matrix at PATH, no report file.
//   The matrix is llama.cpp's GGUF-based format, or the legacy .dat with --output-format dat.
//   With --identify-super-weights the mask file for `quantize --super-weights` is written beside
//   the matrix as <matrix without extension>.super_weights.json.
#include "cli.hpp"
#include "quality_cli.hpp"

#include <lq/analysis_report.hpp>
#include <lq/importance.hpp>
#include <lq/lq.hpp>
#include <lq/profile.hpp>
#include <lq/super_weights.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq::cli {

// `analyze quality` is the quality report under the advanced-features spelling (cmd_analyze_quality.cpp).
int run_analyze_quality(Context& ctx, std::vector<std::string> args);

namespace {

std::string with_commas(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

int run_importance(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts = positional_command_options(ctx, "analyze", "MODEL",
      {{"model", "Model: Hugging Face directory, .safetensors, GGUF file or Hub ID"}},
      "Compute an importance matrix (and super weights) from calibration data.\n"
      "Also: analyze profile MODEL [--imatrix PATH] [--preset quality|balanced|speed] [-o PATH];\n"
      "      analyze combine IMATRIX... [-o PATH] [--output-format gguf|dat] [--chunk-size N];\n"
      "      analyze quality ... (see `analyze quality --help`).");
  opts.add_options()
      ("o,output", "Output: PATH.json = JSON report + PATH.imatrix beside it; otherwise the importance matrix "
                   "[default: ./MODEL.imatrix]", cxxopts::value<std::string>())
      ("method", "Computation method: activation (default), gradient, fisher", cxxopts::value<std::string>())
      ("calibration-data", "Calibration data: .txt, .json or .jsonl [default: built-in WikiText-2]",
       cxxopts::value<std::string>())
      ("calibration-samples", "Number of chunks of --ctx tokens [default: 512]", cxxopts::value<int64_t>())
      ("ctx", "Tokens per chunk [default: 512]", cxxopts::value<int64_t>())
      ("identify-super-weights", "Also find super weights and write their mask file")
      ("plot", "Also draw the layer x tensor importance heat map as an SVG file", cxxopts::value<std::string>())
      ("coverage", "Super weight coverage, in (0, 1) [default: 0.0001]", cxxopts::value<double>())
      ("checkpoint-dir", "Checkpoint directory, saved after every chunk [default: ./.checkpoint]",
       cxxopts::value<std::string>())
      ("resume", "Resume from a checkpoint (its directory or the checkpoint directory)", cxxopts::value<std::string>())
      ("output-format", "Importance matrix format: gguf (default) or dat (legacy)", cxxopts::value<std::string>())
      ("process-output", "Also collect output.weight (llama-imatrix --process-output)")
      ("activations", "How 16-bit weights multiply their inputs: auto (a GGUF as llama-imatrix does on it, "
                      "llama; a Hugging Face checkpoint exact, as llama-imatrix on its F32 conversion), exact "
                      "(float), llama (rounded to bf16 for BF16 weights and to f16 for F16 ones; 'bf16' is a "
                      "synonym) [default: auto]",
       cxxopts::value<std::string>())
      ("bf16-activations", "Same as --activations llama")
      ("kv-cache", "Activation method: type of the cached K and V, f16 (llama-imatrix's default cache) or "
                   "f32 [default: f16]",
       cxxopts::value<std::string>())
      ("no-cache", "Neither reuse nor store a cached result ($LLM_QUANTIZE_IMATRIX_CACHE, default "
                   "~/.cache/llm-quantize/imatrix; 'off' disables it)");
  auto parsed = parse(ctx, opts, args);
  if (!parsed) return 0;
  const auto& r = *parsed;
  if (!r.count("model")) fail(Errc::invalid_argument, "missing MODEL (usage: {} analyze MODEL [options])", ctx.program);

  ImportanceOptions io;
  io.method = parse_importance_method(r.count("method") ? r["method"].as<std::string>() : "activation");
  if (r.count("ctx")) io.ctx = r["ctx"].as<int64_t>();
  if (io.ctx < 2) fail(Errc::invalid_argument, "--ctx must be at least 2, got {}", io.ctx);
  if (r.count("calibration-samples")) io.samples = r["calibration-samples"].as<int64_t>();
  if (io.samples < 1) fail(Errc::invalid_argument, "--calibration-samples must be positive, got {}", io.samples);
  io.process_output = r.count("process-output") > 0;
  if (!r.count("no-cache")) {
    if (const auto dir = imatrix_cache_dir()) io.cache_dir = *dir;
  }
  if (r.count("activations")) io.activations = parse_activation_rounding(r["activations"].as<std::string>());
  if (r.count("bf16-activations")) {
    if (r.count("activations") && io.activations != ActivationRounding::llama)
      fail(Errc::invalid_argument, "--bf16-activations contradicts --activations {}",
           activation_rounding_name(io.activations));
    io.activations = ActivationRounding::llama;
  }
  if (r.count("kv-cache")) io.kv_f16 = parse_kv_cache_f16(r["kv-cache"].as<std::string>());
  const bool identify = r.count("identify-super-weights") > 0;
  const double coverage = r.count("coverage") ? r["coverage"].as<double>() : 1e-4;
  if (!(coverage > 0 && coverage < 1)) fail(Errc::invalid_argument, "--coverage must be in (0, 1), got {}", coverage);
  const std::string out_format = r.count("output-format") ? r["output-format"].as<std::string>() : "gguf";
  if (out_format != "gguf" && out_format != "dat")
    fail(Errc::invalid_argument, "--output-format: unknown format '{}' (gguf, dat)", out_format);
  if (r.count("resume")) io.resume = r["resume"].as<std::string>();
  // A resumed run keeps saving into the checkpoint it continues unless told otherwise.
  if (r.count("checkpoint-dir")) io.checkpoint_dir = r["checkpoint-dir"].as<std::string>();
  else if (io.resume.empty()) io.checkpoint_dir = ".checkpoint";

  const std::string model_arg = r["model"].as<std::string>();
  const std::string out_arg =
      r.count("output") ? r["output"].as<std::string>() : (fs::path(".") / (model_stem(model_arg) + ".imatrix")).string();
  fs::path imatrix_path = out_arg, report_path;
  if (ends_with(out_arg, ".json")) {
    report_path = out_arg;
    imatrix_path = fs::path(out_arg).replace_extension(".imatrix");
  }
  const fs::path mask_path = fs::path(imatrix_path).replace_extension("").string() + ".super_weights.json";
  check_output_dir(imatrix_path, /*writable=*/true);
  if (r.count("plot")) check_output_dir(r["plot"].as<std::string>(), /*writable=*/true);

  TermProgress progress(ctx);
  const lq::Context run_ctx = library_context(ctx, progress);
  const auto t0 = std::chrono::steady_clock::now();
  CalibrationData cal;
  const bool custom = r.count("calibration-data") > 0;
  if (custom) cal = load_calibration(r["calibration-data"].as<std::string>());
  progress.message(fmt::format("Loading model: {}", model_arg));
  auto src = ModelSource::open(model_arg);
  ImportanceAnalyzer analyzer(*src, io);
  if (!custom) cal = default_calibration();
  progress.message(fmt::format("Calibration data: {}", cal.source));
  analyzer.set_calibration(cal);
  progress.message(fmt::format("Collecting calibration data: {} samples", analyzer.chunks().size()));
  for (const auto& w : analyzer.warnings()) progress.message("warning: " + w);
  ImportanceResult res = analyzer.run(run_ctx);
  if (!res.from_cache)
    progress.message(fmt::format("Processed {} chunks of {} tokens: {:.0f} tokens/s", res.chunks - res.chunks_resumed,
                                 res.ctx, res.tokens_per_second()));

  // Super weights: the paper's spike detection and the coverage rule; the mask holds both.
  std::optional<SuperWeightSelection> sel;
  if (identify) {
    progress.message(fmt::format("Identifying super weights (coverage: {:g}%)", coverage * 100));
    const auto& first = analyzer.chunks().front();
    const std::vector<int32_t> prompt(first.begin(), first.begin() + std::min<ptrdiff_t>(64, std::ssize(first)));
    sel = identify_super_weights(analyzer.model(), *src, res.imatrix, prompt, coverage, {}, run_ctx);
    if (sel->detection.found.empty())
      progress.message("Activation spikes: none (no block's ffn_down stands out by 10x on the prompt)");
    for (const auto& f : sel->detection.found)
      progress.message(fmt::format("Activation spike: layer {} {}[{}, {}] = {:g} (input x{:.0f}, output x{:.0f}){}", f.layer,
                                   f.weight.tensor, f.weight.row, f.weight.col, f.weight.value, f.input_ratio,
                                   f.output_ratio, f.confirmed ? ", confirmed" : ", not confirmed by zeroing"));
    check_output_dir(mask_path, /*writable=*/true);
    save_super_weights(mask_path, *sel, model_arg, res.method);
    progress.message(fmt::format("Protected parameters: {} ({:.4g}%)", with_commas(sel->weights.size()),
                                 sel->protected_pct()));
  }

  if (r.count("plot")) {
    const std::string plot = r["plot"].as<std::string>();
    write_file_atomic(plot, importance_heatmap_svg(res.layers, fmt::format("{} ({} importance, {} chunks of {} tokens)",
                                                                           model_stem(model_arg),
                                                                           importance_method_name(res.method), res.chunks,
                                                                           res.ctx)));
    progress.message(fmt::format("Plot written: {}", plot));
  }
  if (out_format == "dat") res.imatrix.save_dat(imatrix_path);
  else res.imatrix.save_gguf(imatrix_path);

  AnalysisReport report = make_analysis_report(res, *src, model_arg);
  report.output_path = fs::absolute(imatrix_path);
  report.output_format = out_format;
  report.custom_calibration = custom;
  report.calibration_path = analyzer.calibration_source();
  report.coverage = coverage;
  if (sel) report.record(*sel, fs::absolute(mask_path));
  report.duration_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!report_path.empty()) {
    report.report_path = fs::absolute(report_path);
    report.save(report_path);
  }
  analyzer.remove_checkpoint();
  progress.message(fmt::format("Complete: {}", imatrix_path.string()));

  if (ctx.format == Format::json) {
    std::cout << report.to_json_string() << "\n" << std::flush;
  } else {
    std::cout << fmt::format("Importance matrix: {} ({}, {} entries)\n", imatrix_path.string(), out_format,
                             res.imatrix.entries.size());
    if (!report_path.empty()) std::cout << fmt::format("Report:            {}\n", report_path.string());
    std::cout << fmt::format("Method:            {}\n", importance_method_name(res.method));
    std::cout << fmt::format("Calibration:       {} chunks of {} tokens from {}\n", res.chunks, res.ctx,
                             analyzer.calibration_source());
    std::cout << fmt::format("Statistics:        min {:.4g}, max {:.4g}, mean {:.4g}, std {:.4g}\n", res.statistics.min,
                             res.statistics.max, res.statistics.mean, res.statistics.std);
    std::vector<LayerScore> top = res.layers;
    std::sort(top.begin(), top.end(), [](const LayerScore& a, const LayerScore& b) { return a.score > b.score; });
    std::cout << "Most important weights:\n";
    for (size_t i = 0; i < std::min<size_t>(5, top.size()); ++i)
      std::cout << fmt::format("  {:<40} {:.3f}\n", top[i].layer_name, top[i].importance_score);
    if (sel)
      std::cout << fmt::format("Super weights:     {} protected, mask {}\n", sel->weights.size(), mask_path.string());
    std::cout << fmt::format("Time:              {:.2f} s\n", report.duration_seconds);
  }
  return 0;
}

int run_profile_from_imatrix(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts = positional_command_options(ctx, "analyze profile", "MODEL",
      {{"model", "Model the profile is for"}},
      "Emit a dynamic quantization profile for a model.");
  opts.add_options()
      ("imatrix", "Importance matrix, or the JSON report of `analyze -o PATH.json`", cxxopts::value<std::string>())
      ("preset", "Preset: quality, balanced (default), speed, or any profile name/path", cxxopts::value<std::string>())
      ("o,output", "Output profile [default: ./MODEL-PRESET.dqprofile]", cxxopts::value<std::string>());
  auto parsed = parse(ctx, opts, args);
  if (!parsed) return 0;
  const auto& r = *parsed;
  if (!r.count("model")) fail(Errc::invalid_argument, "missing MODEL (usage: {} analyze profile MODEL --imatrix PATH)", ctx.program);
  const std::string model_arg = r["model"].as<std::string>();
  const std::string preset = r.count("preset") ? r["preset"].as<std::string>() : "balanced";
  Profile p = Profile::load(preset);
  const fs::path out = r.count("output") ? fs::path(r["output"].as<std::string>())
                                         : fs::path(model_stem(model_arg) + "-" + p.name + ".dqprofile");
  check_output_dir(out, /*writable=*/true);
  TermProgress progress(ctx);
  Imatrix im;
  std::string im_path;
  if (r.count("imatrix")) {
    im_path = r["imatrix"].as<std::string>();
    if (ends_with(im_path, ".json")) im_path = AnalysisReport::load(im_path).output_path.string();
    progress.message(fmt::format("Loading importance matrix: {}", im_path));
    im = Imatrix::load(im_path);
  }
  progress.message(fmt::format("Loading model: {}", model_arg));
  auto src = ModelSource::open(model_arg);
  ResolveOptions ro;
  ro.imatrix = im_path.empty() ? nullptr : &im;
  lq::Context run_ctx = library_context(ctx, progress);
  const bool solve = p.target_bpw || p.target_bytes;
  if (solve && im_path.empty())
    throw Error(Errc::imatrix_error, fmt::format("preset '{}' has a size target: it needs --imatrix", p.name),
                "Compute one with `lq analyze MODEL`");
  progress.message(fmt::format("Applying profile: {}", p.name));
  const ProfileResolution res = resolve_profile(p, *src, ro, run_ctx);
  for (const auto& w : res.problems) progress.message("warning: " + w);
  if (solve)
    for (const auto& a : res.tensors) p.tensor_types[a.tensor] = type_name(a.type);
  p.provenance = {{"created_by", fmt::format("lq {}", lq::version())},
                  {"created", utc_timestamp()},
                  {"preset", p.name},
                  {"model", model_arg},
                  {"imatrix", im_path.empty() ? json(nullptr) : json(im_path)},
                  {"effective_bpw", res.effective_bpw()},
                  {"size_bytes", res.total_bytes}};
  json doc = p.to_json();
  doc["preset"] = p.name;
  write_file_atomic(out, doc.dump(2) + "\n");
  progress.message(fmt::format("Complete: {} ({:.3f} bpw, {})", out.string(), res.effective_bpw(), human_bytes(res.total_bytes)));
  if (ctx.format == Format::json) {
    json o = doc;
    o["status"] = "success";
    o["output_path"] = fs::absolute(out).string();
    o["effective_bpw"] = res.effective_bpw();
    print_json(o);
  } else {
    std::cout << fmt::format("{}: preset {}, {:.3f} bits per weight, {} of tensors\n", out.string(), p.name,
                             res.effective_bpw(), human_bytes(res.total_bytes));
  }
  return 0;
}

// Sums importance matrices (either format) into one, as llama-imatrix does with several
// --in-file; with one input, converts it between the formats.
int run_combine(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts = command_options(ctx, "analyze combine", "IMATRIX [IMATRIX...]", {"inputs"},
      "Sum importance matrices (GGUF or legacy .dat) into one, or convert one between the formats.");
  opts.add_options()
      ("inputs", "Importance matrices", cxxopts::value<std::vector<std::string>>())
      ("o,output", "Output [default: ./combined.imatrix]", cxxopts::value<std::string>())
      ("output-format", "gguf (default) or dat (legacy)", cxxopts::value<std::string>())
      ("chunk-size", "Tokens per chunk of legacy .dat inputs, which do not record it [default: the first GGUF "
                     "input's, else 512]", cxxopts::value<int64_t>());
  auto parsed = parse(ctx, opts, args);
  if (!parsed) return 0;
  const auto& r = *parsed;
  if (!r.count("inputs"))
    fail(Errc::invalid_argument, "missing IMATRIX (usage: {} analyze combine IMATRIX [IMATRIX...] -o PATH)", ctx.program);
  const auto inputs = r["inputs"].as<std::vector<std::string>>();
  const std::string out_format = r.count("output-format") ? r["output-format"].as<std::string>() : "gguf";
  if (out_format != "gguf" && out_format != "dat")
    fail(Errc::invalid_argument, "--output-format: unknown format '{}' (gguf, dat)", out_format);
  const int64_t chunk_size = r.count("chunk-size") ? r["chunk-size"].as<int64_t>() : 0;
  if (r.count("chunk-size") && chunk_size <= 0)
    fail(Errc::invalid_argument, "--chunk-size must be positive, got {}", chunk_size);
  const fs::path out = r.count("output") ? fs::path(r["output"].as<std::string>()) : fs::path("combined.imatrix");
  check_output_dir(out, /*writable=*/true);
  TermProgress progress(ctx);
  std::vector<Imatrix> parts;
  for (const auto& in : inputs) {
    progress.message(fmt::format("Loading importance matrix: {}", in));
    parts.push_back(Imatrix::load(in));
  }
  const Imatrix im = Imatrix::combine(parts, chunk_size);
  if (out_format == "dat") im.save_dat(out);
  else im.save_gguf(out);
  progress.message(fmt::format("Complete: {}", out.string()));
  if (ctx.format == Format::json) {
    print_json({{"status", "success"},
                {"output_path", fs::absolute(out).string()},
                {"output_format", out_format},
                {"inputs", inputs},
                {"entries", im.entries.size()},
                {"chunk_count", im.chunk_count},
                {"chunk_size", im.chunk_size},
                {"datasets", im.datasets}});
  } else {
    std::cout << fmt::format("{}: {} entries, {} chunks of {} tokens, from {} input{} ({})\n", out.string(),
                             im.entries.size(), im.chunk_count, im.chunk_size, inputs.size(), inputs.size() == 1 ? "" : "s",
                             out_format);
  }
  return 0;
}

}  // namespace

int run_analyze(Context& ctx, std::vector<std::string> args) {
  // Global options may precede the sub-command word; find the first other argument.
  size_t i = 0;
  while (i < args.size()) {
    const std::string& a = args[i];
    if (a == "--quiet") { ++i; continue; }
    if (a == "--format" || a == "--threads" || a == "--backend") { i += 2; continue; }
    if (a.rfind("--format=", 0) == 0 || a.rfind("--threads=", 0) == 0 || a.rfind("--backend=", 0) == 0) { ++i; continue; }
    break;
  }
  if (i < args.size()) {
    const std::string sub = args[i];
    if (sub == "importance" || sub == "profile" || sub == "quality" || sub == "combine") {
      args.erase(args.begin() + static_cast<ptrdiff_t>(i));
      if (sub == "profile") return run_profile_from_imatrix(ctx, std::move(args));
      if (sub == "combine") return run_combine(ctx, std::move(args));
      if (sub == "quality") return run_analyze_quality(ctx, std::move(args));
    }
  }
  return run_importance(ctx, std::move(args));
}

}  // namespace lq::cli
