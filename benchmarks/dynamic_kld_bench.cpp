// Dynamic quantization against uniform levels at equal size: for each level, the level's own
// mixture (lq::Quantizer), then `-q dynamic` with the size target set to the level's tensor
// bytes, solved with the default objective (imatrix-weighted error) and with --objective kld
// (measured per-tensor KLD); each model's KL divergence from the original on an evaluation text
// by the engine, and the ratios. Also the sensitivity measurement's wall time and, with
// --validate, how well a one-probe estimate (error x the tensor's KLD/error at one type) ranks
// the measured KLD (Spearman). With --sensitivity-only it measures the table and stops (for the
// time on a large model; --max-tensors N measures the first N tensors only; --whole-forward runs
// every evaluation from the embeddings instead of from the tensor's block, for the time it saves).
// The kld rows are `lq`'s default: the kld objective's mix and the error objective's measured whole
// on the sensitivity text, the lower kept (--kld-only: the kld objective's mix alone).
// --gptq FILE also makes the uniform level and the kld row's dynamic mix with GPTQ's error feedback
// (`--gptq --calibration-data FILE`, --gptq-samples chunks of 256 tokens, default 64) and prints
// their KLD beside the plain ones.
//
// Usage: dynamic_kld_bench --model DIR --imatrix FILE [--levels L,...] [--eval FILE] [--chunks N]
//          [--ctx N] [--sens-text FILE] [--sens-chunks N] [--sens-ctx N] [--sens-types T,...]
//          [--cache FILE] [--work DIR] [--threads N] [--validate TYPE] [--sensitivity-only]
//          [--max-tensors N] [--whole-forward] [--kld-only] [--json FILE] [--gptq FILE [--gptq-samples N]]
#include <lq/lq.hpp>
#include <lq/engine.hpp>
#include <lq/gptq_gguf.hpp>
#include <lq/sensitivity.hpp>
#include <lq/tokenizer.hpp>

#include "profile/solver.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace fs = std::filesystem;
using namespace lq;

namespace {

std::vector<int32_t> dkb_tokens(const ModelSource& src, const fs::path& text) {
  const Tokenizer tok = Tokenizer::from_gguf(src.gguf_metadata(), src.path().string());
  std::vector<int32_t> out;
  for (const auto& t : load_text(text).texts) {
    const auto ids = tok.encode(t, false);
    out.insert(out.end(), ids.begin(), ids.end());
  }
  return out;
}

uint64_t dkb_tensor_bytes(const QuantizeResult& r) {
  uint64_t b = 0;
  for (const auto& t : r.tensors) b += t.bytes;
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, imatrix_path, eval_text, sens_text, cache, work = "/tmp/dynamic_kld_bench", validate, json_out,
      gptq_text;
  int64_t gptq_samples = 64;
  std::vector<std::string> levels = {"Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "IQ2_XXS", "IQ1_M"};
  std::vector<std::string> sens_types;
  int64_t chunks = 40, ctx_len = 256, sens_chunks = 4, sens_ctx = 256, max_tensors = 0;
  int threads = 0;
  bool sens_only = false, whole_forward = false, kld_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") model_dir = next();
    else if (a == "--imatrix") imatrix_path = next();
    else if (a == "--levels") levels = bench::split_list(next());
    else if (a == "--eval") eval_text = next();
    else if (a == "--chunks") chunks = std::stoll(next());
    else if (a == "--ctx") ctx_len = std::stoll(next());
    else if (a == "--sens-text") sens_text = next();
    else if (a == "--sens-chunks") sens_chunks = std::stoll(next());
    else if (a == "--sens-ctx") sens_ctx = std::stoll(next());
    else if (a == "--sens-types") sens_types = bench::split_list(next());
    else if (a == "--cache") cache = next();
    else if (a == "--work") work = next();
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--validate") validate = next();
    else if (a == "--sensitivity-only") sens_only = true;
    else if (a == "--kld-only") kld_only = true;
    else if (a == "--max-tensors") max_tensors = std::stoll(next());
    else if (a == "--whole-forward") whole_forward = true;
    else if (a == "--json") json_out = next();
    else if (a == "--gptq") gptq_text = next();
    else if (a == "--gptq-samples") gptq_samples = std::stoll(next());
    else {
      std::fprintf(stderr,
                   "usage: %s --model DIR --imatrix FILE [--levels L,...] [--eval FILE] [--chunks N] [--ctx N]\n"
                   "  [--sens-text FILE] [--sens-chunks N] [--sens-ctx N] [--sens-types T,...] [--cache FILE]\n"
                   "  [--work DIR] [--threads N] [--validate TYPE] [--sensitivity-only] [--max-tensors N] [--whole-forward] [--kld-only]\n"
                   "  [--json FILE] [--gptq FILE [--gptq-samples N]]\n",
                   argv[0]);
      return 2;
    }
  }
  if (model_dir.empty() || (imatrix_path.empty() && !sens_only)) {
    std::fprintf(stderr, "--model and --imatrix are required (--sensitivity-only: --imatrix optional)\n");
    return 2;
  }
  const fs::path shared = fs::path(LQ_DEFAULT_SHARED_DIR);
  if (eval_text.empty()) eval_text = (shared / "corpus/eval.txt").string();
  if (sens_text.empty()) sens_text = (shared / "corpus/calibration.txt").string();
  fs::create_directories(work);
  Context ctx;
  ctx.threads = threads;

  auto src = ModelSource::open(model_dir);
  const Imatrix imatrix = imatrix_path.empty() ? Imatrix{} : Imatrix::load(imatrix_path);
  nlohmann::json report = {{"model", model_dir}, {"imatrix", imatrix_path}, {"threads", ctx.thread_count()}};

  // The sensitivity table.
  SensitivityOptions so;
  so.imatrix = imatrix_path.empty() ? nullptr : &imatrix;
  so.ctx = sens_ctx;
  so.chunks = sens_chunks;
  so.resume_at_block = !whole_forward;
  for (const auto& t : sens_types) so.types.push_back(*parse_quant_type(t));
  const std::vector<int32_t> stoks = dkb_tokens(*src, sens_text);
  if (max_tensors > 0) {
    for (const auto& t : src->tensors())
      if (t.ne.size() >= 2 && t.name.rfind("blk.", 0) == 0 && static_cast<int64_t>(so.tensors.size()) < max_tensors &&
          t.name.find("norm") == std::string::npos)
        so.tensors.push_back(t.name);
  }
  bool reused = false;
  const SensitivityTable table = cached_sensitivity(*src, stoks, so, cache, &reused, ctx);
  int64_t n_params = 0;
  for (const auto& t : src->tensors()) n_params += t.n_elements();
  std::printf("model %s: %.1f M parameters, %d threads\n", model_dir.c_str(), n_params / 1e6, ctx.thread_count());
  std::printf("sensitivity: %zu tensors, %lld evaluations of %lld x %lld tokens, %.1f s%s (%.3f s per evaluation); "
              "restored model's KLD %.3g\n",
              table.rows.size(), static_cast<long long>(table.evaluations), static_cast<long long>(sens_chunks),
              static_cast<long long>(sens_ctx), table.seconds, reused ? " (cached)" : "",
              table.evaluations ? table.seconds / static_cast<double>(table.evaluations) : 0.0, table.reference_kld_floor);
  report["sensitivity"] = {{"tensors", table.rows.size()}, {"evaluations", table.evaluations}, {"seconds", table.seconds},
                           {"cached", reused}, {"chunks", sens_chunks}, {"ctx", sens_ctx},
                           {"whole_forward", whole_forward}};
  if (sens_only) {
    if (!json_out.empty()) std::ofstream(json_out) << report.dump(2) << "\n";
    return 0;
  }

  // The one-probe estimate against the measured table.
  if (!validate.empty()) {
    const QuantType probe = *parse_quant_type(validate);
    std::vector<std::string> names;
    std::vector<QuantType> types;
    for (const auto& r : table.rows) names.push_back(r.tensor);
    for (const auto& r : table.rows)
      for (QuantType q : r.types)
        if (std::find(types.begin(), types.end(), q) == types.end()) types.push_back(q);
    ResolveOptions ro;
    ro.imatrix = &imatrix;
    const auto errs = profile::measure_errors(*src, names, types, ro, ctx);
    std::vector<double> est, meas, raw;
    std::vector<std::vector<double>> per_type_est(types.size()), per_type_meas(types.size()), per_type_raw(types.size());
    for (size_t i = 0; i < errs.size(); ++i) {
      const SensitivityRow& row = *table.find(errs[i].tensor);
      double ratio = -1;
      for (size_t k = 0; k < errs[i].types.size(); ++k)
        if (errs[i].types[k] == probe && errs[i].error[k] > 0)
          for (size_t m = 0; m < row.types.size(); ++m)
            if (row.types[m] == probe) ratio = row.kld[m] / errs[i].error[k];
      if (ratio < 0) continue;
      for (size_t k = 0; k < errs[i].types.size(); ++k)
        for (size_t m = 0; m < row.types.size(); ++m)
          if (row.types[m] == errs[i].types[k] && errs[i].types[k] != probe) {
            est.push_back(errs[i].error[k] * ratio);
            raw.push_back(errs[i].error[k]);
            meas.push_back(row.kld[m]);
            const size_t ti = static_cast<size_t>(std::find(types.begin(), types.end(), row.types[m]) - types.begin());
            per_type_est[ti].push_back(errs[i].error[k] * ratio);
            per_type_raw[ti].push_back(errs[i].error[k]);
            per_type_meas[ti].push_back(row.kld[m]);
          }
    }
    const double rho = rank_correlation(est, meas), rho_raw = rank_correlation(raw, meas);
    double rho_t = 0, rho_t_raw = 0;
    int nt = 0;
    for (size_t t = 0; t < types.size(); ++t)
      if (per_type_est[t].size() > 2) {
        rho_t += rank_correlation(per_type_est[t], per_type_meas[t]);
        rho_t_raw += rank_correlation(per_type_raw[t], per_type_meas[t]);
        ++nt;
      }
    std::printf("validation (probe %s, %zu tensor x type pairs): Spearman of estimate vs measured KLD %.3f (all pairs), "
                "%.3f (mean over types, ranking tensors); imatrix-weighted error alone: %.3f, %.3f\n",
                validate.c_str(), est.size(), rho, nt ? rho_t / nt : 0.0, rho_raw, nt ? rho_t_raw / nt : 0.0);
    report["validation"] = {{"probe", validate}, {"pairs", est.size()}, {"spearman_estimate", rho},
                            {"spearman_estimate_per_type", nt ? rho_t / nt : 0.0}, {"spearman_error", rho_raw},
                            {"spearman_error_per_type", nt ? rho_t_raw / nt : 0.0}};
  }

  // --validate TYPE also solves with the table cut down to that one measured type (the
  // estimate a one-probe measurement gives, at 1/N of its cost).
  SensitivityTable probe_table = table;
  if (!validate.empty()) {
    const QuantType probe = *parse_quant_type(validate);
    for (auto& r : probe_table.rows) {
      SensitivityRow k{r.tensor, {}, {}};
      for (size_t m = 0; m < r.types.size(); ++m)
        if (r.types[m] == probe) k.types.push_back(probe), k.kld.push_back(r.kld[m]);
      if (k.types.empty()) k = r;  // a tensor the probe does not fit keeps its measurements
      r = std::move(k);
    }
  }

  const auto reference = Model::load(*src);
  const std::vector<int32_t> etoks = dkb_tokens(*src, eval_text);
  PerplexityOptions po;
  po.ctx = ctx_len;
  po.chunks = chunks;
  auto kld_of = [&](const fs::path& file) {
    const auto m = Model::load(file);
    return kl_divergence(*m, *reference, etoks, po, ctx);
  };

  std::printf("\n%-8s %12s %12s %12s | %-18s %-18s %-18s | %7s %7s\n", "level", "uniform B", "dyn-err B", "dyn-kld B",
              "KLD uniform", "KLD dyn (error)", "KLD dyn (kld)", "err/uni", "kld/uni");
  nlohmann::json rows = nlohmann::json::array();
  double log_sum = 0, probe_log_sum = 0, ratio_sum = 0, err_log_sum = 0;
  int n_levels = 0, n_wins = 0;
  for (const auto& ln : levels) {
    const auto ft = parse_file_type(ln);
    if (!ft) {
      std::fprintf(stderr, "unknown level %s\n", ln.c_str());
      return 2;
    }
    QuantizeOptions qo;
    qo.ftype = *ft;
    qo.imatrix = &imatrix;
    qo.imatrix_path = imatrix_path;
    const fs::path uf = fs::path(work) / (ln + "-uniform.gguf");
    const QuantizeResult ur = Quantizer(qo).quantize(*src, uf, ctx);
    const uint64_t target = dkb_tensor_bytes(ur);
    const KldResult uk = kld_of(uf);

    Profile p;
    p.name = "bench-" + ln;
    p.target_bytes = target;
    std::optional<GptqGgufConfig> gcfg;
    if (!gptq_text.empty()) {
      gcfg.emplace();
      gcfg->calibration_data = gptq_text;
      gcfg->calibration_samples = gptq_samples;
    }
    auto dynamic = [&](const SensitivityTable* sens, const std::string& tag, bool gptq = false) {
      QuantizeJob job;
      if (gptq) job.gptq = gcfg;
      job.options.ftype = FileType::Q4_K_M;
      job.options.imatrix = &imatrix;
      job.options.imatrix_path = imatrix_path;
      job.profile = p;
      job.sensitivity = sens;
      // As `lq` does: the kld objective's mix against the error objective's, measured whole on the
      // sensitivity text, the lower kept (--kld-only: the kld objective's mix alone).
      if (sens && !kld_only)
        job.measure_mixes = [&](const std::vector<TypeAssignment>& mixes) {
          return measure_mix_kld(*src, stoks, so, mixes, ctx);
        };
      const fs::path f = fs::path(work) / (ln + "-dynamic-" + tag + ".gguf");
      const QuantizeJobResult jr = quantize_model(*src, f, job, ctx);
      if (sens && jr.resolution && jr.resolution->mix_kld.size() == 2)
        std::printf("%-8s %s: mixes measured whole on the sensitivity text: kld objective's %.5g, error objective's "
                    "%.5g: kept the %s one\n",
                    ln.c_str(), tag.c_str(), jr.resolution->mix_kld[0], jr.resolution->mix_kld[1],
                    jr.resolution->objective.c_str());
      return std::make_pair(dkb_tensor_bytes(jr.quantize), kld_of(f));
    };
    const auto [eb, ek] = dynamic(nullptr, "error");
    const auto [kb, kk] = dynamic(&table, "kld");
    std::optional<std::pair<uint64_t, KldResult>> pk;
    if (!validate.empty()) pk = dynamic(&probe_table, "probe");
    const double r_err = ek.kld_mean / uk.kld_mean, r_kld = kk.kld_mean / uk.kld_mean;
    std::printf("%-8s %12llu %12llu %12llu | %.5f±%.5f %.5f±%.5f %.5f±%.5f | %7.3f %7.3f\n", ln.c_str(),
                static_cast<unsigned long long>(target), static_cast<unsigned long long>(eb),
                static_cast<unsigned long long>(kb), uk.kld_mean, uk.kld_error, ek.kld_mean, ek.kld_error, kk.kld_mean,
                kk.kld_error, r_err, r_kld);
    if (pk)
      std::printf("%-8s %12s %12s %12llu | %-18s %-18s %.5f±%.5f | %7s %7.3f  (one probe: %s)\n", "", "", "",
                  static_cast<unsigned long long>(pk->first), "", "", pk->second.kld_mean, pk->second.kld_error, "",
                  pk->second.kld_mean / uk.kld_mean, validate.c_str());
    std::fflush(stdout);
    log_sum += std::log(r_kld);
    err_log_sum += std::log(r_err);
    ratio_sum += r_kld;
    ++n_levels;
    n_wins += r_kld <= 1.0;
    rows.push_back({{"level", ln}, {"uniform_bytes", target}, {"dynamic_error_bytes", eb}, {"dynamic_kld_bytes", kb},
                    {"kld_uniform", uk.kld_mean}, {"kld_uniform_error", uk.kld_error},
                    {"kld_dynamic_error", ek.kld_mean}, {"kld_dynamic_error_error", ek.kld_error},
                    {"kld_dynamic_kld", kk.kld_mean}, {"kld_dynamic_kld_error", kk.kld_error},
                    {"ratio_error", r_err}, {"ratio_kld", r_kld}});
    if (pk) {
      rows.back()["kld_dynamic_probe"] = pk->second.kld_mean;
      rows.back()["ratio_probe"] = pk->second.kld_mean / uk.kld_mean;
      rows.back()["dynamic_probe_bytes"] = pk->first;
      probe_log_sum += std::log(pk->second.kld_mean / uk.kld_mean);
    }
    if (gcfg) {
      // The uniform level and the kld row's mix, both with GPTQ's error feedback.
      QuantizeJob uj;
      uj.options = qo;
      uj.gptq = gcfg;
      const fs::path ug = fs::path(work) / (ln + "-uniform-gptq.gguf");
      quantize_model(*src, ug, uj, ctx);
      const KldResult ugk = kld_of(ug);
      const auto [gb, gk] = dynamic(&table, "kld-gptq", true);
      std::printf("%-8s %12s %12s %12llu | %.5f±%.5f %-18s %.5f±%.5f | %7s %7.3f  (--gptq; ratios to the plain "
                  "uniform: uniform %.3f, dynamic %.3f)\n",
                  "", "", "", static_cast<unsigned long long>(gb), ugk.kld_mean, ugk.kld_error, "", gk.kld_mean,
                  gk.kld_error, "", gk.kld_mean / ugk.kld_mean, ugk.kld_mean / uk.kld_mean, gk.kld_mean / uk.kld_mean);
      rows.back()["kld_uniform_gptq"] = ugk.kld_mean;
      rows.back()["kld_dynamic_kld_gptq"] = gk.kld_mean;
      rows.back()["dynamic_kld_gptq_bytes"] = gb;
      fs::remove(ug);
    }
    fs::remove(uf);
  }
  const double geo = n_levels ? std::exp(log_sum / n_levels) : 0;
  std::printf("objective kld: <= uniform at %d of %d sizes; ratio to uniform: geometric mean %.3f (%.1f%% lower), "
              "arithmetic mean %.3f; objective error: geometric mean %.3f\n",
              n_wins, n_levels, geo, 100 * (1 - geo), n_levels ? ratio_sum / n_levels : 0.0,
              n_levels ? std::exp(err_log_sum / n_levels) : 0.0);
  if (!validate.empty() && n_levels) {
    const double pg = std::exp(probe_log_sum / n_levels);
    std::printf("objective kld from the one-probe table (%s): geometric mean ratio %.3f (%.1f%% lower)\n",
                validate.c_str(), pg, 100 * (1 - pg));
    report["geomean_ratio_probe"] = pg;
  }
  report["levels"] = rows;
  report["geomean_ratio_kld"] = geo;
  if (!json_out.empty()) std::ofstream(json_out) << report.dump(2) << "\n";
  return 0;
}
