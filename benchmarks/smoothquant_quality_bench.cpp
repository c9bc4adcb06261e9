// SmoothQuant quality table: for each alpha (and auto), calibrate, write the compressed-tensors
// W8A8 directory, load it with our engine (real int8 x int8 products where the engine has its
// W8A8 reader) and measure perplexity and KL divergence against the original; beside it, the
// same smoothing with only the weights rounded to int8 in memory (W8, float activations).
//   smoothquant_quality_bench [--model DIR] [--calibration FILE] [--eval FILE] [--ctx 256]
//       [--chunks 100] [--calibration-samples N] [--calibration-ctx N] [--alphas 0,0.25,...,auto]
//       [--static] [--smooth-all] [--bf16-calibration|--f32-calibration] [--threads N] [--keep DIR]
// (calibration activations: default bf16 for a bf16 checkpoint, as the command)
// Prints one row per alpha; figures only, nothing asserted.
#include <lq/lq.hpp>

#include "bench_util.hpp"
#include "quality_bench_options.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  lq::bench::QualityOptions o(512, 512);
  fs::path keep;
  bool is_static = false, smooth_all = false;
  std::optional<bool> bf16_calibration;
  std::vector<std::string> alphas = {"0", "0.25", "0.5", "0.75", "1", "auto"};
  lq::bench::CommandLine cl(argc, argv);
  while (cl.more()) {
    const std::string a = cl.next();
    if (o.take(a, cl)) continue;
    if (a == "--alphas") alphas = lq::bench::split_list(cl.value());
    else if (a == "--static") is_static = true;
    else if (a == "--smooth-all") smooth_all = true;
    else if (a == "--bf16-calibration") bf16_calibration = true;
    else if (a == "--f32-calibration") bf16_calibration = false;
    else if (a == "--keep") keep = cl.value();
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    const auto [c, src, original, tokens, po, base] = lq::bench::quality_baseline(o);
    std::printf("model %s, eval %s, ctx %lld, %lld chunks; calibration %s, %lld x %lld tokens (%s activations); %s "
                "activations; smoothing mappings %s\n",
                o.model.c_str(), o.eval.c_str(), static_cast<long long>(o.ctx), static_cast<long long>(base.n_chunks),
                o.calib.c_str(), static_cast<long long>(o.samples), static_cast<long long>(o.calib_ctx),
                !bf16_calibration ? "default" : *bf16_calibration ? "bf16" : "f32", is_static ? "static per-tensor" : "dynamic per-token",
                smooth_all ? "all" : "default");
    std::printf("original perplexity %.4f +/- %.4f\n\n", base.ppl, base.ppl_error);
    std::printf("%-6s | %-38s | %-31s | %s\n", "alpha", "W8A8 directory (engine): PPL  dPPL%  KLD",
                "W8 weights only: PPL  dPPL%  KLD", "calibrate+write s");
    const fs::path tmp = keep.empty() ? fs::temp_directory_path() / "lq-smoothquant-bench" : keep;
    fs::create_directories(tmp);
    for (const auto& a : alphas) {
      lq::SmoothQuantConfig cfg;
      cfg.calibration_data = o.calib;
      cfg.calibration_samples = o.samples;
      cfg.ctx = o.calib_ctx;
      cfg.static_activations = is_static;
      cfg.smooth_all = smooth_all;
      cfg.bf16_activations = bf16_calibration;
      if (a == "auto") cfg.alpha_auto = true;
      else cfg.alpha = std::stod(a);
      const double t0 = lq::bench::now_s();
      lq::SmoothQuantizer sq(*src, cfg);
      sq.calibrate(c);
      auto w8 = lq::Model::load(*src);
      sq.apply(*w8);
      const fs::path dir = tmp / ("alpha-" + a);
      sq.release_model();
      sq.write(dir, c);
      const double secs = lq::bench::now_s() - t0;
      const lq::KldResult kw = lq::kl_divergence(*w8, *original, tokens, po, c);
      w8.reset();
      std::string full;
      try {
        auto q = lq::Model::load(dir);
        const lq::KldResult k = lq::kl_divergence(*q, *original, tokens, po, c);
        char buf[128];
        std::snprintf(buf, sizeof buf, "%8.4f %+6.2f%% %.6f", k.ppl, 100 * (k.ppl / base.ppl - 1), k.kld_mean);
        full = buf;
      } catch (const lq::Error& e) {
        full = std::string("not loadable: ") + e.what();
        if (full.size() > 38) full.resize(38);
      }
      std::string alpha_text = a;
      if (a == "auto") {
        alpha_text = "auto";
        std::printf("  per-layer alpha:");
        for (const auto& g : sq.groups()) std::printf(" %.2f", g.alpha);
        std::printf("\n");
      }
      std::printf("%-6s | %-38s | %8.4f %+6.2f%% %.6f | %.1f\n", alpha_text.c_str(), full.c_str(), kw.ppl,
                  100 * (kw.ppl / base.ppl - 1), kw.kld_mean, secs);
      std::fflush(stdout);
    }
    if (keep.empty()) fs::remove_all(tmp);
  } catch (const lq::Error& e) {
    return lq::bench::error_status(e);
  }
  return 0;
}
