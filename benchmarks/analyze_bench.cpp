// Importance analysis throughput (tokens/s) and agreement with llama-imatrix.
//
//  1. golden: the tiny model on corpus/calibration.txt, ctx 256, 64 chunks (as golden/imatrix.gguf
//     was made): per tensor, the largest relative difference of the per-column sums from
//     llama-imatrix's and whether the counts are equal.
//  2. throughput: `lq analyze` (each method) on the tiny model's BF16 and F16 GGUF and on a
//     synthetic ~1B-parameter Llama (hidden 2048, 16 layers, ff 8192, 32/8 heads, random weights,
//     the tiny model's tokenizer) written as BF16, F16 and F32 GGUF; with --llama-bin,
//     llama-imatrix runs on the same files, text, context, chunks and threads (its default batch,
//     and -b ctx). Every timed run starts with its model file read through once, so both tools
//     find it in the page cache; each figure is the best of --reps runs.
//     --no-big leaves out that synthetic model (not the --hf-model rows).
//     --hf-model DIR adds a Hugging Face checkpoint (e.g. make_synthetic_llama's, whose vocabulary
//     of 32000 makes the output layer a realistic share of the work; `--vocab 128256 --tied` gives
//     Llama-3.2-1B's shapes): ours on the checkpoint
//     (auto: exact activations) and on its BF16 and F16 GGUF conversions (written by lq into
//     --dir), llama-imatrix on those conversions; for the checkpoint row also on its F32
//     conversion (HF:32), whose arithmetic our exact default reproduces.
//  3. rankings: per-block scores of each method on the tiny model, and rank correlations.
//  4. roofline, after each group of throughput rows: this machine's peak multiply-add rates
//     (float FMA, and bf16 pair products where the CPU has them) measured on all threads at once,
//     each tool's multiply-adds per token, what share of the peak each run reached, and the
//     share a 1.5x speed-up over llama-imatrix would need (over 100%: out of reach of any
//     product kernel on this machine).
//
//   analyze_bench [--threads N] [--chunks 64] [--big-ctx 512] [--big-chunks 4] [--no-big]
//                 [--methods activation,gradient,fisher] [--big-methods activation]
//                 [--dir /tmp/lq-analyze-bench] [--reps 1] [--hf-model DIR]
//                 [--shared ../shared] [--llama-bin /path/to/llama.cpp/build/bin]
//
// Wall-clock figures on a shared machine are noisy: CPU seconds per 1000 tokens are printed too.
// Prints figures only; never asserts.
#include <lq/backend.hpp>
#include <lq/calibration.hpp>
#include <lq/error.hpp>
#include <lq/gguf.hpp>
#include <lq/file_type.hpp>
#include <lq/importance.hpp>
#include <lq/quantizer.hpp>
#include <lq/threads.hpp>

#include "synthetic_gguf.hpp"

#include <fmt/format.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace fs = std::filesystem;
using namespace lq;

namespace {

using bench::llama_log_time;
using bench::now_s;
using bench::split_list;

struct Args {
  int threads = 0;
  int64_t chunks = 64, big_ctx = 512, big_chunks = 4;
  std::vector<std::string> methods = {"activation", "gradient", "fisher"};
  std::vector<std::string> big_methods = {"activation"};
  fs::path dir = fs::temp_directory_path() / "lq-analyze-bench";
  fs::path shared;
  std::string llama_bin;
  bool big = true;
  int reps = 1;
  fs::path hf_model;
};

// Reads `file` through once so that the timed run finds it in the page cache (a run that follows
// a different large file would otherwise pay the disk reads inside its timing).
void warm(const fs::path& file) {
  if (fs::is_directory(file)) {
    for (const auto& e : fs::directory_iterator(file))
      if (e.path().extension() == ".safetensors") warm(e.path());
    return;
  }
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (!f) return;
  static std::vector<char> buf(8 << 20);
  while (std::fread(buf.data(), 1, buf.size(), f) == buf.size()) {
  }
  std::fclose(f);
}

double cpu_s(int who) {
  rusage u{};
  getrusage(who, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct Figures {
  double tps = 0;        // tokens per second of the evaluation
  double cpu_per_k = 0;  // CPU seconds per 1000 tokens
  std::vector<LayerScore> layers;
};

// Multiply-adds per token of a forward pass over chunks of `ctx` tokens: every linear layer,
// and attention (scores and weighted values) over the (ctx + 1) / 2 positions a token sees on
// average. lq analyze skips the output layer and the last block's ffn_down, whose results feed
// only the logits; llama-imatrix computes both (it reports the chunks' perplexity).
struct Work {
  double lq = 0, llama = 0;
};
Work macs_per_token(const ModelConfig& c, int64_t ctx) {
  const double e = static_cast<double>(c.n_embd), hd = static_cast<double>(c.head_dim),
               q = static_cast<double>(c.n_head) * hd, kv = static_cast<double>(c.n_head_kv) * hd,
               ff = static_cast<double>(c.n_ff), layers = static_cast<double>(c.n_layer);
  const double block = e * (q + 2 * kv) + q * e + 3 * e * ff + 2 * q * static_cast<double>(ctx + 1) / 2;
  const double all = layers * block;
  return {all - ff * e, all + e * static_cast<double>(c.n_vocab)};
}

// One timed row of a large model, for the roofline table.
struct RoofRow {
  std::string label, type;
  double lq_tps = 0, llama_tps = 0;
  Work work;
  // Whose products run on bf16 pair products rather than float FMA: ours with bf16-rounded
  // activations (BF16*), llama.cpp's on any BF16 file.
  bool lq_bf16 = false, llama_bf16 = false;
};
std::vector<RoofRow> g_roof;

Figures run_ours_once(const fs::path& model, const fs::path& text, ImportanceMethod m, int64_t ctx, int64_t chunks,
                      int threads, bool llama_act) {
  warm(model);
  auto src = ModelSource::open(model);
  ImportanceOptions o;
  o.method = m;
  o.ctx = ctx;
  o.samples = chunks;
  o.activations = llama_act ? ActivationRounding::llama : ActivationRounding::exact;
  ImportanceAnalyzer an(*src, o);
  an.set_calibration(load_calibration(text));
  lq::Context run_ctx;
  run_ctx.threads = threads;
  const double c0 = cpu_s(RUSAGE_SELF);
  const ImportanceResult r = an.run(run_ctx);
  const double c1 = cpu_s(RUSAGE_SELF);
  return {r.tokens_per_second(), 1000.0 * (c1 - c0) / static_cast<double>(r.tokens), r.layers};
}

// The best of `reps` runs (the fastest is the least disturbed by other work on the machine).
template <class Run>
Figures best_of(int reps, Run run) {
  Figures best;
  for (int i = 0; i < std::max(1, reps); ++i) {
    Figures f = run();
    if (f.tps > best.tps) best = std::move(f);
  }
  return best;
}

Figures run_ours(const Args& a, const fs::path& model, const fs::path& text, ImportanceMethod m, int64_t ctx,
                 int64_t chunks, int threads, bool llama_act = false) {
  return best_of(a.reps, [&] { return run_ours_once(model, text, m, ctx, chunks, threads, llama_act); });
}

// llama-imatrix: evaluation time = process wall time minus the log time at which it starts
// computing (model load and tokenization are excluded, as for ours).
Figures run_llama_once(const Args& a, const fs::path& model, const fs::path& text, int64_t ctx, int64_t chunks,
                       int threads, int64_t batch) {
  warm(model);
  const fs::path out = a.dir / "llama.imatrix.gguf";
  std::string cmd = a.llama_bin + "/llama-imatrix -m " + model.string() + " -f " + text.string() + " -c " +
                    std::to_string(ctx) + " --chunks " + std::to_string(chunks) + " -t " + std::to_string(threads) +
                    " -o " + out.string();
  if (batch > 0) cmd += " -b " + std::to_string(batch) + " -ub " + std::to_string(batch);
  const double c0 = cpu_s(RUSAGE_CHILDREN), t0 = now_s();
  std::string log;
  if (FILE* p = popen((cmd + " 2>&1").c_str(), "r")) {
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, p)) log.append(buf, n);
    pclose(p);
  }
  const double wall = now_s() - t0, c1 = cpu_s(RUSAGE_CHILDREN);
  std::optional<double> start;
  std::stringstream ss(log);
  for (std::string line; std::getline(ss, line);)
    if (line.find("computing over") != std::string::npos) start = llama_log_time(line);
  fs::remove(out);
  if (!start) {
    std::fprintf(stderr, "llama-imatrix did not run: %s\n", log.substr(log.size() > 2000 ? log.size() - 2000 : 0).c_str());
    return {};
  }
  const double tokens = static_cast<double>(chunks * ctx);
  return {tokens / (wall - *start), 1000.0 * (c1 - c0) / tokens};
}

Figures run_llama(const Args& a, const fs::path& model, const fs::path& text, int64_t ctx, int64_t chunks, int threads,
                  int64_t batch) {
  return best_of(a.reps, [&] { return run_llama_once(a, model, text, ctx, chunks, threads, batch); });
}

// Largest relative difference of the per-column sums of `ours` from `ref` over all tensors; with
// `table`, one row per tensor.
double worst_difference(const Imatrix& ref, const Imatrix& ours, bool table) {
  if (table) {
    std::printf("| tensor                   | columns | counts equal | max rel diff | mean rel diff |\n");
    std::printf("|--------------------------|--------:|:------------:|-------------:|--------------:|\n");
  }
  double worst = 0;
  for (const auto& [name, e] : ref.entries) {
    const ImatrixEntry* o = ours.find(name);
    if (!o || o->n_cols != e.n_cols) {
      std::printf("| %-24s | missing or mis-shaped\n", name.c_str());
      continue;
    }
    double mx = 0, sum = 0;
    for (int64_t j = 0; j < e.n_cols; ++j) {
      const double x = o->in_sum2[static_cast<size_t>(j)], y = e.in_sum2[static_cast<size_t>(j)];
      const double rel = std::fabs(x - y) / std::max(std::fabs(y), 1e-30);
      mx = std::max(mx, rel);
      sum += rel;
    }
    worst = std::max(worst, mx);
    if (table)
      std::printf("| %-24s | %7lld | %-12s | %12.3e | %13.3e |\n", name.c_str(), static_cast<long long>(e.n_cols),
                  o->counts == e.counts ? "yes" : "NO", mx, sum / static_cast<double>(e.n_cols));
  }
  return worst;
}

ImportanceResult analyze_golden_setting(const Args& a, const fs::path& model, const fs::path& text, const Imatrix& ref,
                                        ActivationRounding r, bool kv_f16 = true) {
  auto src = ModelSource::open(model);
  ImportanceOptions o;
  o.ctx = ref.chunk_size;
  o.samples = ref.chunk_count;
  o.activations = r;
  o.kv_f16 = kv_f16;
  ImportanceAnalyzer an(*src, o);
  an.set_calibration(load_calibration(text));
  lq::Context run_ctx;
  run_ctx.threads = a.threads;
  return an.run(run_ctx);
}

void golden(const Args& a) {
  const fs::path model = a.shared / "models/tiny-llama", text = a.shared / "corpus/calibration.txt",
                 ref_path = a.shared / "golden/imatrix.gguf";
  if (!fs::exists(model) || !fs::exists(ref_path)) {
    std::printf("golden: %s or %s absent, skipped\n", model.c_str(), ref_path.c_str());
    return;
  }
  const Imatrix ref = Imatrix::load(ref_path);
  // The checkpoint under the default (auto: exact float activations), then rounded ones.
  const ImportanceResult exact = analyze_golden_setting(a, model, text, ref, ActivationRounding::automatic);
  std::printf("golden: tiny-llama, %s, ctx %lld, %lld chunks; %.0f tokens/s\n", text.filename().c_str(),
              static_cast<long long>(ref.chunk_size), static_cast<long long>(exact.chunks), exact.tokens_per_second());
  std::printf("worst relative difference over all tensors: %.3e\n", worst_difference(ref, exact.imatrix, true));
  const ImportanceResult exact_f32kv = analyze_golden_setting(a, model, text, ref, ActivationRounding::automatic, false);
  std::printf("worst relative difference over all tensors with --kv-cache f32: %.3e\n",
              worst_difference(ref, exact_f32kv.imatrix, false));
  const ImportanceResult rounded = analyze_golden_setting(a, model, text, ref, ActivationRounding::llama);
  std::printf("worst relative difference over all tensors with --activations llama (bf16-rounded): %.3e\n",
              worst_difference(ref, rounded.imatrix, false));
  // llama-imatrix on a golden GGUF with the golden settings (nothing without --llama-bin).
  const auto llama_on = [&](const fs::path& gguf) -> std::optional<Imatrix> {
    if (a.llama_bin.empty() || !fs::exists(gguf)) return std::nullopt;
    fs::create_directories(a.dir);
    const fs::path out = a.dir / "llama-golden.imatrix.gguf";
    const std::string cmd = a.llama_bin + "/llama-imatrix -m " + gguf.string() + " -f " + text.string() + " -c " +
                            std::to_string(ref.chunk_size) + " --chunks " + std::to_string(ref.chunk_count) +
                            " -o " + out.string() + " > /dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0 || !fs::exists(out)) return std::nullopt;
    Imatrix m = Imatrix::load(out);
    fs::remove(out);
    return m;
  };
  // Each golden GGUF under auto (llama.cpp's rounding of the 16-bit weights' inputs) against
  // llama-imatrix on that same file, then with a float KV cache and with exact activations.
  for (const char* name : {"tiny-llama-BF16.gguf", "tiny-llama-F16.gguf"}) {
    const fs::path gguf = a.shared / "golden" / name;
    const auto theirs = llama_on(gguf);
    if (!theirs) continue;
    const auto ours = [&](ActivationRounding r, bool kv_f16) {
      return worst_difference(*theirs, analyze_golden_setting(a, gguf, text, ref, r, kv_f16).imatrix, false);
    };
    const double dflt = ours(ActivationRounding::automatic, true), f32kv = ours(ActivationRounding::automatic, false),
                 exact_act = ours(ActivationRounding::exact, true);
    std::printf("%s, llama-imatrix on that file vs ours (auto): %.3e; with --kv-cache f32: %.3e; exact activations: "
                "%.3e; llama-imatrix there vs the golden file: %.3e\n",
                name, dflt, f32kv, exact_act, worst_difference(ref, *theirs, false));
  }
  std::printf("\n");
}


void print_header() {
  std::printf("BF16 = exact float activations (--activations exact); BF16*, F16* = activations rounded to bf16, f16 "
              "(--activations llama): llama.cpp's arithmetic and the default (auto) for a GGUF file\n");
  std::printf("| model     | file  | method     | ctx | chunks | lq tok/s | lq CPU s/1k tok | llama-imatrix tok/s (default / -b ctx) | llama CPU s/1k tok | speed-up (default / -b ctx) |\n");
  std::printf("|-----------|-------|------------|----:|-------:|---------:|----------------:|----------------------------------------:|-------------------:|----------------------------:|\n");
}

// Ours on `file`; llama-imatrix on `llama_file` (default: the same file).
std::vector<std::pair<std::string, Figures>> throughput(const Args& a, const std::vector<std::string>& methods,
                                                       const std::string& label, const std::string& type,
                                                       const fs::path& file, const fs::path& text, int64_t ctx,
                                                       int64_t chunks, fs::path llama_file = {}) {
  std::vector<std::pair<std::string, Figures>> out;
  const int threads = a.threads > 0 ? a.threads : hardware_threads();
  if (llama_file.empty()) llama_file = file;
  Figures ld, lb;
  if (!a.llama_bin.empty()) {
    ld = run_llama(a, llama_file, text, ctx, chunks, threads, 0);
    lb = run_llama(a, llama_file, text, ctx, chunks, threads, ctx);
  }
  auto row = [&](const std::string& ty, const std::string& mname, const Figures& f, bool with_llama) {
    if (with_llama)
      std::printf("| %-9s | %-5s | %-10s | %3lld | %6lld | %8.0f | %15.2f | %39s | %18s | %27s |\n", label.c_str(),
                  ty.c_str(), mname.c_str(), static_cast<long long>(ctx), static_cast<long long>(chunks), f.tps,
                  f.cpu_per_k, fmt::format("{:.0f} / {:.0f}", ld.tps, lb.tps).c_str(),
                  fmt::format("{:.2f} / {:.2f}", ld.cpu_per_k, lb.cpu_per_k).c_str(),
                  fmt::format("{:.2f}x / {:.2f}x", f.tps / ld.tps, f.tps / lb.tps).c_str());
    else
      std::printf("| %-9s | %-5s | %-10s | %3lld | %6lld | %8.0f | %15.2f | %39s | %18s | %27s |\n", label.c_str(),
                  ty.c_str(), mname.c_str(), static_cast<long long>(ctx), static_cast<long long>(chunks), f.tps,
                  f.cpu_per_k, "", "", "");
  };
  for (const auto& mname : methods) {
    const ImportanceMethod m = parse_importance_method(mname);
    const bool act = m == ImportanceMethod::activation;
    // F16*: an F16 file with f16-rounded activations (llama.cpp's arithmetic, the default for it)
    const bool f16_star = act && type == "F16";
    const Figures f = run_ours(a, file, text, m, ctx, chunks, threads, f16_star);
    out.emplace_back(mname, f);
    row(f16_star ? "F16*" : type, mname, f, act && ld.tps > 0);
    std::fflush(stdout);
    if (!act) continue;
    const Work w = macs_per_token(ModelSource::open(file)->config(), ctx);
    g_roof.push_back({label, f16_star ? "F16*" : type, f.tps, ld.tps, w, false, type == "BF16" || type == "HF"});
    // BF16*: the same file with bf16-rounded activations: llama.cpp's arithmetic, and lq
    // analyze's default (--activations auto) for a GGUF; the BF16 row is --activations exact
    if (type == "BF16") {
      const Figures fb = run_ours(a, file, text, m, ctx, chunks, threads, true);
      row("BF16*", mname, fb, ld.tps > 0);
      std::fflush(stdout);
      g_roof.push_back({label, "BF16*", fb.tps, ld.tps, w, true, true});
    }
  }
  return out;
}

// Rank of each value (1 = largest).
std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<size_t> idx(v.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] > v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size(); ++i) r[idx[i]] = static_cast<double>(i + 1);
  return r;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  const auto ra = ranks(a), rb = ranks(b);
  double d2 = 0;
  for (size_t i = 0; i < ra.size(); ++i) d2 += (ra[i] - rb[i]) * (ra[i] - rb[i]);
  const double n = static_cast<double>(ra.size());
  return 1 - 6 * d2 / (n * (n * n - 1));
}

// Per-block scores (sum over the block's weights of score x parameters / block parameters) and
// per-tensor rank correlations between the methods.
void rankings(const std::vector<std::pair<std::string, Figures>>& runs) {
  if (runs.size() < 2) return;
  std::printf("\nLayer rankings (tiny model): block score = parameter-weighted mean of its weights' scores, "
              "normalised to the largest block; rank 1 = most important\n| block |");
  for (const auto& [m, f] : runs) std::printf(" %-10s score | rank |", m.c_str());
  std::printf("\n|------:|");
  for (size_t i = 0; i < runs.size(); ++i) std::printf("-----------------:|-----:|");
  std::printf("\n");
  std::vector<std::vector<double>> block(runs.size());
  for (size_t r = 0; r < runs.size(); ++r) {
    std::map<int, std::pair<double, double>> acc;
    for (const auto& l : runs[r].second.layers) {
      acc[l.layer_index].first += l.score * static_cast<double>(l.parameter_count);
      acc[l.layer_index].second += static_cast<double>(l.parameter_count);
    }
    for (const auto& [b, v] : acc) block[r].push_back(v.first / v.second);
    const double mx = *std::max_element(block[r].begin(), block[r].end());
    for (auto& v : block[r]) v /= mx;
  }
  std::vector<std::vector<double>> rk;
  for (const auto& b : block) rk.push_back(ranks(b));
  for (size_t b = 0; b < block[0].size(); ++b) {
    std::printf("| %5zu |", b);
    for (size_t r = 0; r < runs.size(); ++r) std::printf(" %17.3f | %4.0f |", block[r][b], rk[r][b]);
    std::printf("\n");
  }
  std::printf("\nTop 8 weights per method (normalised score):\n");
  for (const auto& [m, f] : runs) {
    std::vector<LayerScore> s = f.layers;
    std::sort(s.begin(), s.end(), [](const LayerScore& x, const LayerScore& y) { return x.score > y.score; });
    std::printf("  %-10s", m.c_str());
    for (size_t i = 0; i < std::min<size_t>(8, s.size()); ++i)
      std::printf(" %s %.2f;", s[i].tensor.substr(0, s[i].tensor.size() - 7).c_str(), s[i].importance_score);
    std::printf("\n");
  }
  std::printf("\nSpearman rank correlation of the per-weight scores (%zu weights):\n", runs[0].second.layers.size());
  for (size_t i = 0; i < runs.size(); ++i)
    for (size_t j = i + 1; j < runs.size(); ++j) {
      std::vector<double> x, y;
      for (const auto& l : runs[i].second.layers) x.push_back(l.score);
      for (const auto& l : runs[j].second.layers) y.push_back(l.score);
      std::printf("  %s vs %s: %.3f (blocks: %.3f)\n", runs[i].first.c_str(), runs[j].first.c_str(), spearman(x, y),
                  spearman(block[i], block[j]));
    }
  std::printf("\n");
}

// What the large-model rows reach of this machine's peak multiply-add rate (products are over
// 90% of the work): the FMA rate for float products (exact, F16*, F32), the bf16 pair-product
// rate for BF16* and for llama.cpp on a BF16 file. A speed-up that needs more than 100% cannot be
// had from a faster product kernel, only from fewer operations. (With AMX the ceiling is higher
// than either; the table says so.)
void print_roofline(const Args& a) {
  if (g_roof.empty()) return;
  const int threads = a.threads > 0 ? a.threads : hardware_threads();
  const bench::PeakRates peak = bench::peak_rates(threads);
  std::printf("\nRoofline: peak on %d threads at once: %s FMA %.1f GMAC/s", threads, peak.fma_isa, peak.fma);
  if (peak.bf16_dot > 0) std::printf(", bf16 pair products (AVX-512 BF16) %.1f GMAC/s", peak.bf16_dot);
  std::printf(".\nWork per token: every linear layer and causal attention; llama-imatrix also computes the "
              "output layer and the last ffn_down (its perplexity), lq analyze does not need them.\n");
  std::printf("| model     | file  | GMAC/token lq / llama | lq GMAC/s | %% of peak | llama GMAC/s | %% of peak | "
              "1.5x llama needs %% of peak |\n");
  std::printf("|-----------|-------|----------------------:|----------:|----------:|-------------:|----------:|"
              "---------------------------:|\n");
  for (const RoofRow& r : g_roof) {
    const auto pick = [&](bool bf16) { return bf16 && peak.bf16_dot > 0 ? peak.bf16_dot : peak.fma; };
    const double pk_lq = pick(r.lq_bf16), pk_llama = pick(r.llama_bf16);
    const double ours = r.lq_tps * r.work.lq * 1e-9, theirs = r.llama_tps * r.work.llama * 1e-9;
    if (pk_lq <= 0) continue;
    const bool l = r.llama_tps > 0;
    std::printf("| %-9s | %-5s | %21s | %9.1f | %8.0f%% | %12s | %9s | %27s |\n", r.label.c_str(), r.type.c_str(),
                fmt::format("{:.4g} / {:.4g}", r.work.lq * 1e-9, r.work.llama * 1e-9).c_str(), ours,
                100 * ours / pk_lq, l ? fmt::format("{:.1f}", theirs).c_str() : "",
                l ? fmt::format("{:.0f}%", 100 * theirs / pk_llama).c_str() : "",
                l ? fmt::format("{:.0f}%", 100 * 1.5 * r.llama_tps * r.work.lq * 1e-9 / pk_lq).c_str() : "");
  }
  if (Registry::instance().active().description().find("amx") != std::string::npos)
    std::printf("This CPU has AMX: its tile products exceed both peaks above, which are then no ceiling.\n");
  g_roof.clear();
}

// The --hf-model rows: the checkpoint itself, with llama-imatrix beside it on the BF16 conversion
// (row HF) and on the F32 conversion (row HF:32, the arithmetic of our exact default for a
// checkpoint and of golden/imatrix.gguf), then its BF16 and F16 GGUF conversions.
void hf_rows(const Args& a, const fs::path& text) {
  auto src = ModelSource::open(a.hf_model);
  const std::string base = a.hf_model.filename().empty() ? a.hf_model.parent_path().filename().string()
                                                         : a.hf_model.filename().string();
  std::map<FileType, fs::path> gguf;
  for (FileType ft : {FileType::BF16, FileType::F16, FileType::F32}) {
    const fs::path out = a.dir / fmt::format("{}-{}.gguf", base, file_type_info(ft).name);
    if (!fs::exists(out)) {
      QuantizeOptions qo;
      qo.ftype = ft;
      Quantizer(qo).quantize(*src, out);
    }
    gguf[ft] = out;
  }
  const std::string label = base.substr(0, 9);
  std::printf("%s: ours on the checkpoint; llama-imatrix on its BF16 conversion (HF) and F32 conversion (HF:32)\n",
              label.c_str());
  throughput(a, a.big_methods, label, "HF", a.hf_model, text, a.big_ctx, a.big_chunks, gguf[FileType::BF16]);
  throughput(a, a.big_methods, label, "HF:32", a.hf_model, text, a.big_ctx, a.big_chunks, gguf[FileType::F32]);
  throughput(a, a.big_methods, label, "BF16", gguf[FileType::BF16], text, a.big_ctx, a.big_chunks);
  throughput(a, a.big_methods, label, "F16", gguf[FileType::F16], text, a.big_ctx, a.big_chunks);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (const char* e = std::getenv("LQ_SHARED_DIR"); e && *e) a.shared = e;
  else a.shared = fs::path(__FILE__).parent_path().parent_path().parent_path() / "shared";
  for (bench::CommandLine cl(argc, argv); cl.more();) {
    const std::string k = cl.next();
    if (k == "--threads") a.threads = std::stoi(cl.value());
    else if (k == "--chunks") a.chunks = std::stoll(cl.value());
    else if (k == "--big-ctx") a.big_ctx = std::stoll(cl.value());
    else if (k == "--big-chunks") a.big_chunks = std::stoll(cl.value());
    else if (k == "--methods") a.methods = split_list(cl.value());
    else if (k == "--big-methods") a.big_methods = split_list(cl.value());
    else if (k == "--dir") a.dir = cl.value();
    else if (k == "--shared") a.shared = cl.value();
    else if (k == "--llama-bin") a.llama_bin = cl.value();
    else if (k == "--no-big") a.big = false;
    else if (k == "--reps") a.reps = std::stoi(cl.value());
    else if (k == "--hf-model") a.hf_model = cl.value();
    else {
      std::fprintf(stderr, "unknown option %s (see the comment at the top of analyze_bench.cpp)\n", k.c_str());
      return 2;
    }
  }
  try {
    const int threads = a.threads > 0 ? a.threads : hardware_threads();
    std::printf("analyze_bench: %d threads, CPU back-end %s\n\n", threads, Registry::instance().active().description().c_str());
    golden(a);
    const fs::path text = a.shared / "corpus/calibration.txt", tiny = a.shared / "golden/tiny-llama-BF16.gguf";
    print_header();
    if (fs::exists(tiny)) rankings(throughput(a, a.methods, "tiny", "BF16", tiny, text, 256, a.chunks));
    if (const fs::path tiny16 = a.shared / "golden/tiny-llama-F16.gguf"; fs::exists(tiny16))
      throughput(a, {"activation"}, "tiny", "F16", tiny16, text, 256, a.chunks);
    print_roofline(a);
    if (!a.big && a.hf_model.empty()) return 0;
    print_header();
    fs::create_directories(a.dir);
    if (a.big) {
      const fs::path bf16 = a.dir / "synthetic-1b-BF16.gguf", f16 = a.dir / "synthetic-1b-F16.gguf",
                     f32 = a.dir / "synthetic-1b-F32.gguf";
      if (!fs::exists(bf16) || !fs::exists(f16) || !fs::exists(f32))
        bench::write_synthetic_1b(a.shared, {{QuantType::BF16, bf16}, {QuantType::F16, f16}, {QuantType::F32, f32}},
                                  0x2545f4914f6cdd1dull);
      throughput(a, a.big_methods, "synth-1B", "BF16", bf16, text, a.big_ctx, a.big_chunks);
      throughput(a, a.big_methods, "synth-1B", "F16", f16, text, a.big_ctx, a.big_chunks);
      throughput(a, a.big_methods, "synth-1B", "F32", f32, text, a.big_ctx, a.big_chunks);
      print_roofline(a);
    }
    if (!a.hf_model.empty()) {
      hf_rows(a, text);
      print_roofline(a);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "analyze_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
