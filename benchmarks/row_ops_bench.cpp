// The engine's element-wise and row operations (EngineOps: SiLU and GELU-tanh gated activations,
// the soft-cap, softmax, RMS norm, and the log-softmax sums and KL divergence of perplexity's and
// the sensitivity tables' logit rows) on the CPU back-end's kernels of this machine's ISA, beside the
// plain C library loop each replaces or stands for (the anchor: std::exp / std::tanh per value).
// Prints values per second of each and the ratio, and the process's peak RSS; never asserts.
//
//   row_ops_bench [--n 8192] [--rows 256] [--reps 5]
//
// n is the row length (an MLP's ffn width, an attention row, a vocabulary), rows the number of
// rows per run (tokens); single thread, best of --reps runs.
#include "backend/ops.hpp"
#include "bench_util.hpp"

#include <lq/backend.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

double best_seconds(int reps, const std::function<void()>& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = lq::bench::now_s();
    fn();
    best = std::min(best, lq::bench::now_s() - t0);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t n = 8192, rows = 256;
  int reps = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : "0"; };
    if (a == "--n") n = std::stoll(val());
    else if (a == "--rows") rows = std::stoll(val());
    else if (a == "--reps") reps = std::stoi(val());
    else {
      std::fprintf(stderr, "unknown option %s\nusage: row_ops_bench [--n 8192] [--rows 256] [--reps 5]\n", a.c_str());
      return 2;
    }
  }
  if (n < 1 || rows < 1 || reps < 1) {
    std::fprintf(stderr, "row_ops_bench: --n, --rows and --reps must be positive\n");
    return 2;
  }
  const lq::detail::EngineOps ops = lq::Registry::instance().engine_ops(lq::Registry::instance().cpu());
  const size_t total = static_cast<size_t>(n * rows);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> gate(total), up(total), out(total), x(total), g(static_cast<size_t>(n), 1.0f);
  for (size_t i = 0; i < total; ++i) {
    gate[i] = nd(rng);
    up[i] = nd(rng);
  }
  struct Row {
    const char* name;
    std::function<void()> kernel, anchor;
  };
  const float scale = 0.125f, cap = 50.0f;
  volatile double sink = 0;  // keeps the reductions' results alive
  std::vector<Row> table = {
      {"silu_mul", [&] { ops.silu_mul(static_cast<int64_t>(total), gate.data(), up.data(), out.data()); },
       [&] {
         for (size_t i = 0; i < total; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
       }},
      {"gelu_tanh_mul", [&] { ops.gelu_tanh_mul(static_cast<int64_t>(total), gate.data(), up.data(), out.data()); },
       [&] {
         for (size_t i = 0; i < total; ++i) {
           const float v = gate[i];
           out[i] = 0.5f * v * (1.0f + std::tanh(0.7978845608f * (v + 0.044715f * v * v * v))) * up[i];
         }
       }},
      {"soft_cap",
       [&] {
         std::copy(gate.begin(), gate.end(), x.begin());
         for (int64_t r = 0; r < rows; ++r) ops.soft_cap(n, x.data() + r * n, scale, cap);
       },
       [&] {
         std::copy(gate.begin(), gate.end(), x.begin());
         for (size_t i = 0; i < total; ++i) x[i] = cap * std::tanh(x[i] * scale / cap);
       }},
      {"softmax_row",
       [&] {
         std::copy(gate.begin(), gate.end(), x.begin());
         for (int64_t r = 0; r < rows; ++r) ops.softmax_row(n, x.data() + r * n, scale);
       },
       [&] {
         std::copy(gate.begin(), gate.end(), x.begin());
         for (int64_t r = 0; r < rows; ++r) {
           float* v = x.data() + r * n;
           float mx = -INFINITY;
           for (int64_t i = 0; i < n; ++i) mx = std::max(mx, v[i] * scale);
           float sum = 0;
           for (int64_t i = 0; i < n; ++i) sum += v[i] = std::exp(v[i] * scale - mx);
           for (int64_t i = 0; i < n; ++i) v[i] /= sum;
         }
       }},
      {"sum_exp_row",
       [&] {
         float mx = 0;
         int64_t am = 0;
         double s = 0;
         for (int64_t r = 0; r < rows; ++r) s += ops.sum_exp_row(n, gate.data() + r * n, &mx, &am);
         sink = s;
       },
       [&] {  // the loop lq::perplexity ran before the kernel (llama-perplexity's)
         double s = 0;
         for (int64_t r = 0; r < rows; ++r) {
           const float* v = gate.data() + r * n;
           float mx = v[0];
           for (int64_t i = 1; i < n; ++i) mx = std::max(mx, v[i]);
           for (int64_t i = 0; i < n; ++i) s += std::exp(v[i] - mx);
         }
         sink = s;
       }},
      {"kld_row",
       [&] {
         double s = 0;
         for (int64_t r = 0; r < rows; ++r) s += ops.kld_row(n, gate.data() + r * n, up.data() + r * n, 8.0f, 1.0f, 0.5);
         sink = s;
       },
       [&] {  // the loop lq::kl_divergence ran before the kernel
         double s = 0;
         for (int64_t r = 0; r < rows; ++r) {
           const float* a = gate.data() + r * n;
           const float* b = up.data() + r * n;
           for (int64_t i = 0; i < n; ++i) {
             const double lpr = static_cast<double>(a[i]) - 8.0f - 1.0f;
             const double lpm = static_cast<double>(b[i]) - 8.0f - 1.0f + 0.5;
             s += std::exp(lpr) * (lpr - lpm);
           }
         }
         sink = s;
       }},
      {"rms_norm_row",
       [&] {
         for (int64_t r = 0; r < rows; ++r) ops.rms_norm_row(n, gate.data() + r * n, g.data(), 1e-6f, out.data() + r * n);
       },
       [&] {
         for (int64_t r = 0; r < rows; ++r) {
           const float* v = gate.data() + r * n;
           double ss = 0;
           for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(v[i]) * v[i];
           const float s = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + 1e-6f);
           for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(r * n + i)] = v[i] * s * g[static_cast<size_t>(i)];
         }
       }},
  };
  std::printf("row ops: %lld rows x %lld values, 1 thread, best of %d\n", static_cast<long long>(rows),
              static_cast<long long>(n), reps);
  std::printf("%-14s | %14s | %14s | %7s\n", "op", "kernel Mval/s", "libm Mval/s", "ratio");
  for (const Row& r : table) {
    const double tk = best_seconds(reps, r.kernel), ta = best_seconds(reps, r.anchor);
    const double mv = static_cast<double>(total) / 1e6;
    std::printf("%-14s | %14.1f | %14.1f | %6.2fx\n", r.name, mv / tk, mv / ta, ta / tk);
  }
  std::printf("peak RSS %.1f MiB\n", lq::bench::peak_rss_mib());
  return 0;
}
