// Quantization error on the tiny model, ours vs llama.cpp's golden files.
//
// For every type of the table that we can quantize and that the golden manifest has a pure file
// for: quantizes the original weights (tiny-llama-BF16.gguf) tensor by tensor, decodes them, and
// compares with llama.cpp's figures from manifest.json:
//   pure/<T>.gguf          no importance matrix: RMSE against the original weights
//   pure-imatrix/<T>.gguf  with imatrix.gguf: weighted error sum w (x - q)^2 / sum w x^2
//                          (w = in_sum2 / count per input column); tensors without imatrix data
//                          are compared by RMSE.
// Prints, per type and mode, the worst and mean per-tensor ratio ours/llama.cpp for both metrics
// (the applicable one must be <= 1.00 for every tensor) and whole-model figures of both.
//
// Usage: quant_error_bench [--shared DIR] [--type T]... [--verbose]
#include <lq/backend.hpp>
#include <lq/gguf.hpp>
#include <lq/decode.hpp>
#include <lq/imatrix.hpp>
#include <lq/quant_type.hpp>
#include <lq/threads.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace lq;

namespace {

struct Errors {
  double sq = 0, ref2 = 0;     // sum (x - q)^2, sum x^2
  double wsq = 0, wref2 = 0;   // the same weighted by the imatrix column value
  int64_t n = 0;
};

Errors measure(const gguf::Reader& model, const gguf::TensorInfo& t, QuantType type, const std::vector<float>& w,
               bool use_imatrix) {
  const TypeInfo& ti = type_info(type);
  const int64_t ncols = t.ne[0], nrows = t.n_rows();
  std::vector<float> x(static_cast<size_t>(ncols * nrows)), y(x.size());
  read_rows_f32(model, t, 0, nrows, x.data());
  std::vector<uint8_t> q(ti.row_bytes(ncols) * nrows);
  const QuantizeFn quantize = Registry::instance().quantize(type);
  quantize(x.data(), q.data(), nrows, ncols, use_imatrix && !w.empty() ? w.data() : nullptr);
  const DequantizeFn dequantize = Registry::instance().dequantize(type);
  for (int64_t r = 0; r < nrows; ++r) dequantize(q.data() + r * ti.row_bytes(ncols), y.data() + r * ncols, ncols);
  Errors e;
  for (int64_t r = 0; r < nrows; ++r) {
    for (int64_t c = 0; c < ncols; ++c) {
      const double a = x[r * ncols + c], d = a - y[r * ncols + c];
      e.sq += d * d;
      e.ref2 += a * a;
      if (!w.empty()) {
        e.wsq += w[c] * d * d;
        e.wref2 += w[c] * a * a;
      }
    }
  }
  e.n = ncols * nrows;
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  fs::path shared = LQ_DEFAULT_SHARED_DIR;
  if (const char* env = std::getenv("LQ_SHARED_DIR"); env && *env) shared = env;
  std::vector<std::string> only;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shared" && i + 1 < argc) shared = argv[++i];
    else if (a == "--type" && i + 1 < argc) only.push_back(argv[++i]);
    else if (a == "--verbose") verbose = true;
    else {
      std::fprintf(stderr, "usage: %s [--shared DIR] [--type T]... [--verbose]\n", argv[0]);
      return 2;
    }
  }
  const fs::path golden = shared / "golden";
  if (!fs::exists(golden / "manifest.json") || !fs::exists(golden / "tiny-llama-BF16.gguf")) {
    std::fprintf(stderr, "golden data not found under %s (use --shared or LQ_SHARED_DIR)\n", golden.c_str());
    return 1;
  }
  std::ifstream mf(golden / "manifest.json");
  const auto manifest = nlohmann::json::parse(mf);
  const auto& files = manifest.at("files");
  gguf::Reader model(golden / "tiny-llama-BF16.gguf");
  const Imatrix imatrix = Imatrix::load(golden / "imatrix.gguf");

  std::printf("quantization error on the tiny model (%s), ours / llama.cpp\n", golden.c_str());
  std::printf("acceptance: pure -> RMSE, pure-imatrix -> weighted error (tensors with imatrix data; others RMSE);\n");
  std::printf("ratios are per tensor (worst, mean); w_err is sum w (x-q)^2 / sum w x^2, so its ratios are squared\n\n");
  std::printf("%-7s %-12s %4s | %-15s | %-15s | %-17s | %-17s | %s\n", "", "", "", "  rmse ratio", " w_err ratio",
              "  model rel_rmse", "  model w_err", "");
  std::printf("%-7s %-12s %4s | %7s %7s | %7s %7s | %8s %8s | %8s %8s | %s\n", "type", "mode", "n", "worst", "mean", "worst",
              "mean", "ours", "llama", "ours", "llama", "accept");
  bool all_ok = true;
  for (const TypeInfo& ti : all_types()) {
    if (!ti.quantize_ref || ti.is_float() || !ti.storable) continue;
    if (!only.empty() && std::find(only.begin(), only.end(), ti.name) == only.end()) continue;
    for (const bool use_im : {false, true}) {
      const std::string key = std::string(use_im ? "pure-imatrix/" : "pure/") + ti.name + ".gguf";
      if (!files.contains(key) || files.at(key).contains("error")) continue;
      // Some pure files were made with the imatrix too (the levels llama.cpp refuses without one).
      const bool with_im = files.at(key).value("imatrix", use_im);
      if (!use_im && with_im && files.contains("pure-imatrix/" + std::string(ti.name) + ".gguf")) continue;
      const auto& tensors = files.at(key).at("tensors");
      std::vector<const gguf::TensorInfo*> todo;
      for (const auto& t : model.tensors()) {
        if (!tensors.contains(t.name)) continue;
        if (tensors.at(t.name).at("type").get<int>() != static_cast<int>(ti.type)) continue;
        todo.push_back(&t);
      }
      if (todo.empty()) continue;
      std::vector<Errors> errs(todo.size());
      std::vector<std::vector<float>> ws(todo.size());
      parallel_for(static_cast<int64_t>(todo.size()), 0, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          ws[i] = imatrix.column_weights(todo[i]->name, todo[i]->ne[0]).value_or(std::vector<float>{});
          errs[i] = measure(model, *todo[i], ti.type, ws[i], with_im);
        }
      });
      // Ratio statistics per metric; "accept" uses the metric that applies to each tensor.
      struct Stat {
        double worst = 0, sum = 0;
        int n = 0;
        void add(double r) {
          worst = std::max(worst, r);
          sum += r;
          ++n;
        }
        double mean() const { return n ? sum / n : 0; }
      } rmse_stat, werr_stat, accept_stat;
      double tot_sq = 0, tot_ref = 0, ll_sq = 0, tot_wsq = 0, tot_wref = 0, ll_wsq = 0;
      std::string worst_name;
      for (size_t i = 0; i < todo.size(); ++i) {
        const auto& rec = tensors.at(todo[i]->name);
        const Errors& e = errs[i];
        const double ll_rmse = rec.at("rmse").get<double>();
        const double rmse_ratio = ll_rmse > 0 ? std::sqrt(e.sq / e.n) / ll_rmse : 1.0;
        rmse_stat.add(rmse_ratio);
        tot_sq += e.sq;
        tot_ref += e.ref2;
        ll_sq += ll_rmse * ll_rmse * e.n;
        double werr_ratio = -1;
        if (!ws[i].empty() && rec.contains("weighted_err")) {
          const double ll_w = rec.at("weighted_err").get<double>();
          werr_ratio = ll_w > 0 ? (e.wsq / e.wref2) / ll_w : 1.0;
          werr_stat.add(werr_ratio);
          tot_wsq += e.wsq;
          tot_wref += e.wref2;
          ll_wsq += ll_w * e.wref2;
        }
        const bool weighted = with_im && werr_ratio >= 0;
        const double acc = weighted ? werr_ratio : rmse_ratio;
        if (acc > accept_stat.worst) worst_name = todo[i]->name;
        accept_stat.add(acc);
        if (verbose)
          std::printf("    %-28s rmse ratio %.4f  w_err ratio %.4f%s\n", todo[i]->name.c_str(), rmse_ratio, werr_ratio,
                      weighted ? "  (w_err applies)" : "");
      }
      // Equal quantizations differ by float rounding in the last digits of the manifest's figures.
      const bool worse = accept_stat.worst > 1.0 + 1e-6;
      all_ok = all_ok && !worse;
      std::printf("%-7s %-12s %4d | %7.4f %7.4f | %7.4f %7.4f | %8.5f %8.5f | %8.5f %8.5f | %s\n", ti.name,
                  with_im ? (use_im ? "pure-imatrix" : "pure+imatrix") : "pure", accept_stat.n, rmse_stat.worst, rmse_stat.mean(), werr_stat.worst,
                  werr_stat.mean(), std::sqrt(tot_sq / tot_ref), std::sqrt(ll_sq / tot_ref),
                  tot_wref > 0 ? tot_wsq / tot_wref : 0.0, tot_wref > 0 ? ll_wsq / tot_wref : 0.0,
                  worse ? ("WORSE: " + worst_name).c_str() : "ok");
    }
  }
  std::printf("%s\n", all_ok ? "all ratios <= 1.00" : "some tensors are worse than llama.cpp");
  return 0;
}
