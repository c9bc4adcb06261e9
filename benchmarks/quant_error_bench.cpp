// Quantization error on the tiny model, ours vs llama.cpp's golden files.
//
// For every type of the table that we can quantize and that the golden manifest has a pure file
// for: quantizes the original weights (tiny-llama-BF16.gguf) tensor by tensor, decodes them, and
// compares with llama.cpp's figures from manifest.json:
//   pure/<T>.gguf          no importance matrix: RMSE against the original weights
//   pure-imatrix/<T>.gguf  with imatrix.gguf: weighted error sum w (x - q)^2 / sum w x^2
//                          (w = in_sum2 / count per input column); tensors without imatrix data
//                          are compared by RMSE.
// Prints, per type and mode, the worst and mean per-tensor ratio ours/llama.cpp (<= 1.00 is the
// acceptance bar) and the whole-model relative RMSE of both.
//
// Usage: quant_error_bench [--shared DIR] [--type T]... [--verbose]
#include <lq/backend.hpp>
#include <lq/gguf.hpp>
#include <lq/quant_type.hpp>
#include <lq/threads.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
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

std::vector<float> imatrix_weights(const gguf::Reader& im, const std::string& name, int64_t ncols) {
  const auto* sums = im.find_tensor(name + ".in_sum2");
  const auto* counts = im.find_tensor(name + ".counts");
  if (!sums || !counts || sums->ne[0] != ncols) return {};
  std::vector<float> w(static_cast<size_t>(ncols));
  float count = 0;
  im.read_rows_f32(*sums, 0, 1, w.data());
  im.read_rows_f32(*counts, 0, 1, &count);
  for (auto& v : w) v = count > 0 ? v / count : 1.0f;
  return w;
}

Errors measure(const gguf::Reader& model, const gguf::TensorInfo& t, QuantType type, const std::vector<float>& w,
               bool use_imatrix) {
  const TypeInfo& ti = type_info(type);
  const int64_t ncols = t.ne[0], nrows = t.n_rows();
  std::vector<float> x(static_cast<size_t>(ncols * nrows)), y(x.size());
  model.read_rows_f32(t, 0, nrows, x.data());
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
  gguf::Reader imatrix(golden / "imatrix.gguf");

  std::printf("quantization error on the tiny model (%s), ours / llama.cpp per tensor\n", golden.c_str());
  std::printf("%-8s %-13s %7s %6s %8s %8s %11s %11s %8s\n", "type", "mode", "metric", "tensors", "worst", "mean",
              "rel_rmse us", "rel_rmse ll", "time s");
  bool all_ok = true;
  for (const TypeInfo& ti : all_types()) {
    if (!ti.quantize_ref || ti.is_float() || !ti.storable) continue;
    if (!only.empty() && std::find(only.begin(), only.end(), ti.name) == only.end()) continue;
    for (const bool use_im : {false, true}) {
      const std::string key = std::string(use_im ? "pure-imatrix/" : "pure/") + ti.name + ".gguf";
      if (!files.contains(key) || files.at(key).contains("error")) continue;
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
      const auto t0 = std::chrono::steady_clock::now();
      parallel_for(static_cast<int64_t>(todo.size()), 0, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          ws[i] = imatrix_weights(imatrix, todo[i]->name, todo[i]->ne[0]);
          errs[i] = measure(model, *todo[i], ti.type, ws[i], use_im);
        }
      });
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double worst = 0, sum_ratio = 0, tot_sq = 0, tot_ref = 0, ll_sq = 0;
      std::string worst_name;
      int n_cmp = 0;
      for (size_t i = 0; i < todo.size(); ++i) {
        const auto& rec = tensors.at(todo[i]->name);
        const Errors& e = errs[i];
        const double ll_rmse = rec.at("rmse").get<double>();
        const double our_rmse = std::sqrt(e.sq / e.n);
        tot_sq += e.sq;
        tot_ref += e.ref2;
        ll_sq += ll_rmse * ll_rmse * e.n;
        const bool weighted = use_im && !ws[i].empty() && rec.contains("weighted_err");
        const double ours = weighted ? e.wsq / e.wref2 : our_rmse;
        const double theirs = weighted ? rec.at("weighted_err").get<double>() : ll_rmse;
        const double ratio = theirs > 0 ? ours / theirs : (ours > 0 ? INFINITY : 1.0);
        if (ratio > worst) { worst = ratio; worst_name = todo[i]->name; }
        sum_ratio += ratio;
        ++n_cmp;
        if (verbose)
          std::printf("    %-28s %-9s ours %.6g llama.cpp %.6g ratio %.4f\n", todo[i]->name.c_str(),
                      weighted ? "w_err" : "rmse", ours, theirs, ratio);
      }
      // Equal quantizations differ by float rounding in the last digits of the manifest's figures.
      const bool worse = worst > 1.0 + 1e-6;
      all_ok = all_ok && !worse;
      std::printf("%-8s %-13s %7s %6d %8.4f %8.4f %11.5f %11.5f %8.2f%s\n", ti.name, use_im ? "pure-imatrix" : "pure",
                  use_im ? "w_err" : "rmse", n_cmp, worst, sum_ratio / n_cmp, std::sqrt(tot_sq / tot_ref),
                  std::sqrt(ll_sq / tot_ref), secs, worse ? ("  WORSE: " + worst_name).c_str() : "");
    }
  }
  std::printf("%s\n", all_ok ? "all ratios <= 1.00" : "some tensors are worse than llama.cpp");
  return 0;
}
