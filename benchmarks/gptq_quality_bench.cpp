// GPTQ / AWQ quality table: for each scheme (bits, group size) and method (RTN, GPTQ, GPTQ with
// act-order static / group, AWQ, and RTN on AWQ's asymmetric grid as its baseline), quantize the model's decoder linears, put the dequantized weights
// into the engine's model and measure perplexity and KL divergence against the original on the
// evaluation text (llama-perplexity's chunks). Also the time of each quantization and the
// process's peak RSS.
//   gptq_quality_bench [--model DIR] [--calibration FILE] [--eval FILE] [--ctx 256] [--chunks 100]
//       [--calibration-samples 128] [--calibration-ctx 256] [--schemes 4:128,3:128,2:64]
//       [--methods rtn,gptq,gptq-static,gptq-group,rtn-asym,awq,awq-noclip,awq-cliponly,awq-symclip,awq-norefit]
//       [--awq-samples N] [--asym] [--scale-search N] [--clip-tokens N] [--threads N]
//       [--awq-set NAME=VALUE,...]
// (awq: asymmetric with zero points always; rtn-asym: round to nearest on AWQ's min-max grid, no
// search, the baseline AWQ is measured against; --awq-samples: AWQ's calibration chunks, default
// --calibration-samples; --scale-search: GptqParams::scale_search of the GPTQ methods, default
// the library's; awq-symclip: AWQ with AutoAWQ's symmetric clip candidates; --clip-tokens: AWQ's
// clipping sample, default the library's; --awq-set: AwqParams fields for every AWQ method, e.g.
// duo_scaling=0,max_shrink=0.2.)
// Prints one row per scheme and method; figures only, nothing asserted.
#include <lq/lq.hpp>

#include "bench_util.hpp"
#include "quality_bench_options.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  lq::bench::QualityOptions o(128, 256);
  int64_t awq_samples = -1;
  int scale_search = -1;
  int64_t clip_tokens = 0;
  bool asym = false;
  std::vector<std::string> awq_set;  // NAME=VALUE of AwqParams for the awq methods
  std::vector<std::string> schemes = {"4:128", "3:128", "2:64"};
  std::vector<std::string> methods = {"rtn", "gptq", "gptq-static", "gptq-group"};
  lq::bench::CommandLine cl(argc, argv);
  while (cl.more()) {
    const std::string a = cl.next();
    if (o.take(a, cl)) continue;
    if (a == "--schemes") schemes = lq::bench::split_list(cl.value());
    else if (a == "--methods") methods = lq::bench::split_list(cl.value());
    else if (a == "--awq-samples") awq_samples = std::stoll(cl.value());
    else if (a == "--asym") asym = true;
    else if (a == "--scale-search") scale_search = std::stoi(cl.value());
    else if (a == "--clip-tokens") clip_tokens = std::stoll(cl.value());
    else if (a == "--awq-set") awq_set = lq::bench::split_list(cl.value());
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    const auto [c, src, original, tokens, po, base] = lq::bench::quality_baseline(o);
    std::printf("model %s, eval %s, ctx %lld, %lld chunks; calibration %s, %lld x %lld tokens; %s\n",
                o.model.c_str(), o.eval.c_str(), static_cast<long long>(o.ctx), static_cast<long long>(base.n_chunks),
                o.calib.c_str(), static_cast<long long>(o.samples), static_cast<long long>(o.calib_ctx),
                asym ? "asymmetric" : "symmetric");
    std::printf("original perplexity %.4f +/- %.4f\n\n", base.ppl, base.ppl_error);
    std::printf("%-8s | %-12s | %9s | %7s | %9s | %6s | %7s | %s\n", "scheme", "method", "PPL", "dPPL%", "KLD",
                "top1%", "quant s", "damp raises");
    const lq::CalibrationData data = lq::load_calibration(o.calib);
    for (const auto& s : schemes) {
      const auto colon = s.find(':');
      const int bits = std::stoi(s.substr(0, colon));
      const int64_t group = colon == std::string::npos ? 128 : std::stoll(s.substr(colon + 1));
      for (const auto& m : methods) {
        if (m == "awq" || m == "rtn-asym" || m == "awq-noclip" || m == "awq-cliponly" || m == "awq-symclip" ||
            m == "awq-norefit" || m == "awq-nogain") {
          lq::AwqConfig acfg;
          acfg.params.bits = bits;
          acfg.params.group_size = group;
          acfg.layout = lq::GptqLayout::compressed_tensors;
          acfg.calibration_samples = awq_samples > 0 ? awq_samples : o.samples;
          acfg.ctx = o.calib_ctx;
          if (m == "awq-noclip") acfg.params.clip = false;  // ablations: the scale search alone,
          if (m == "awq-cliponly") acfg.params.n_grid = 0;  // the clipping search alone
          if (m == "awq-symclip") acfg.params.clip_asym = false;  // AutoAWQ's symmetric clip candidates
          if (m == "awq-norefit") acfg.params.refit_scale = false;  // the clip's own scale, no refit
          if (m == "awq-nogain") acfg.params.gain_correction = false;  // the clip's scales as found
          if (clip_tokens > 0) acfg.params.clip_tokens = clip_tokens;
          for (const std::string& kv : awq_set) {
            const auto eq = kv.find('=');
            const std::string k = kv.substr(0, eq), v = eq == std::string::npos ? "" : kv.substr(eq + 1);
            lq::AwqParams& p = acfg.params;
            if (k == "n_grid") p.n_grid = std::stoi(v);
            else if (k == "duo_scaling") p.duo_scaling = v == "1";
            else if (k == "plain_candidates") p.plain_candidates = v == "1";
            else if (k == "identity_candidate") p.identity_candidate = v == "1";
            else if (k == "clip") p.clip = v == "1";
            else if (k == "clip_qk") p.clip_qk = v == "1";
            else if (k == "clip_cross") p.clip_cross = v == "1";
            else if (k == "clip_grid") p.clip_grid = std::stoi(v);
            else if (k == "max_shrink") p.max_shrink = std::stod(v);
            else if (k == "clip_asym") p.clip_asym = v == "1";
            else if (k == "refit_scale") p.refit_scale = v == "1";
            else if (k == "gain_correction") p.gain_correction = v == "1";
            else if (k == "scale_v_o") p.scale_v_o = v == "1";
            else if (k == "scale_v_o_gqa") p.scale_v_o_gqa = v == "1";
            else if (k == "gptq_rounding") p.gptq_rounding = v == "1";
            else if (k == "gptq_act_order") p.gptq_act_order = v == "1";
            else if (k == "search_tokens") p.search_tokens = std::stoll(v);
            else if (k == "search_keep") p.search_keep = std::stoi(v);
            else if (k == "search_bf16") p.search_bf16 = v == "1";
            else {
              std::fprintf(stderr, "unknown AWQ parameter %s\n", k.c_str());
              return 2;
            }
          }
          if (m == "rtn-asym") {  // the identity as the only candidate, no clipping: AWQ's grid alone
            acfg.params.n_grid = 0;
            acfg.params.clip = false;
            acfg.calibration_samples = 1;
          }
          const double t0 = lq::bench::now_s();
          lq::AwqQuantizer q(*src, acfg);
          q.set_calibration(data);
          q.run(c);
          const double secs = lq::bench::now_s() - t0;
          const lq::KldResult k = lq::kl_divergence(q.model(), *original, tokens, po, c);
          std::printf("W%dg%-5lld | %-12s | %9.4f | %+6.2f%% | %9.6f | %6.2f | %7.1f | -\n", bits,
                      static_cast<long long>(group), m.c_str(), k.ppl, 100 * (k.ppl / base.ppl - 1), k.kld_mean,
                      k.same_top_pct, secs);
          std::fflush(stdout);
          continue;
        }
        lq::GptqConfig cfg;
        cfg.params.bits = bits;
        cfg.params.group_size = group;
        cfg.params.sym = !asym;
        cfg.params.rtn = m == "rtn";
        if (scale_search >= 0) cfg.params.scale_search = scale_search;
        if (m == "gptq-static") cfg.params.act_order = lq::GptqActOrder::static_groups;
        else if (m == "gptq-group") cfg.params.act_order = lq::GptqActOrder::group;
        else if (m != "gptq" && m != "rtn") {
          std::fprintf(stderr, "unknown method %s\n", m.c_str());
          return 2;
        }
        cfg.calibration_samples = o.samples;
        cfg.ctx = o.calib_ctx;
        const double t0 = lq::bench::now_s();
        lq::GptqQuantizer q(*src, cfg);
        if (!cfg.params.rtn) q.set_calibration(data);
        q.run(c);
        const double secs = lq::bench::now_s() - t0;
        const lq::KldResult k = lq::kl_divergence(q.model(), *original, tokens, po, c);
        std::printf("W%dg%-5lld | %-12s | %9.4f | %+6.2f%% | %9.6f | %6.2f | %7.1f | %d\n", bits,
                    static_cast<long long>(group), m.c_str(), k.ppl, 100 * (k.ppl / base.ppl - 1), k.kld_mean,
                    k.same_top_pct, secs, q.summary().damp_raises);
        std::fflush(stdout);
      }
    }
    std::printf("\npeak RSS %.1f MiB\n", lq::bench::peak_rss_mib());
  } catch (const lq::Error& e) {
    return lq::bench::error_status(e);
  }
  return 0;
}
