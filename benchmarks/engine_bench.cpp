// Inference engine throughput: prompt processing (perplexity evaluation, tokens/s) and decode
// (one token per eval, tokens/s) on the tiny test model and on a synthetic ~1B-parameter Llama
// (hidden 2048, 16 layers, ff 8192, 32 heads / 8 KV heads, random weights, the tiny model's
// 2048-token vocabulary) in several weight types. With --llama-bin, llama.cpp's
// llama-perplexity runs on the same files with the same context, chunks and threads.
//
//   engine_bench [--threads N] [--ctx 256] [--chunks 20] [--big-chunks 2] [--decode 32]
//                [--types F32,BF16,Q8_0,Q4_0,Q4_K] [--dir /tmp/lq-engine-bench] [--no-big]
//                [--shared ../shared] [--llama-bin /path/to/llama.cpp/build/bin]
//
// BF16* rows: the same file with bf16-rounded activations (PerplexityOptions::bf16_activations,
// `lq perplexity --bf16-activations`), llama.cpp's method for BF16 weights.
//
// Prints figures only; never asserts.
#include <lq/backend.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/gguf.hpp>
#include <lq/threads.hpp>

#include "synthetic_gguf.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
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
using bench::run_capture;
using bench::split_list;

struct Args {
  int threads = 0;
  int64_t ctx = 256, chunks = 20, big_chunks = 2, decode = 32;
  std::vector<std::string> types = {"F32", "BF16", "Q8_0", "Q4_0", "Q4_K"};
  fs::path dir = fs::temp_directory_path() / "lq-engine-bench";
  fs::path shared;
  std::string llama_bin;
  bool big = true;
};

std::vector<int32_t> read_tokens(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(Errc::not_found, "cannot read {}", p.string());
  std::vector<int32_t> v(fs::file_size(p) / 4);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  return v;
}

struct Figures {
  double pp = 0, decode = 0, ppl = 0;
};

Figures run_ours(const fs::path& file, const std::vector<int32_t>& tokens, const Args& a, int64_t chunks,
                 bool bf16_act = false) {
  Figures f;
  auto model = Model::load(file);
  PerplexityOptions o;
  o.ctx = a.ctx;
  o.chunks = chunks;
  o.bf16_activations = bf16_act;
  const PerplexityResult r = perplexity(*model, tokens, o, Context{a.threads});
  f.pp = r.tokens_per_second();
  f.ppl = r.ppl;
  Session s(*model, SessionOptions{a.ctx, false, bf16_act}, Context{a.threads});
  s.eval(std::span<const int32_t>(tokens.data(), 16));
  int32_t tok = tokens[16];
  const double t0 = now_s();
  for (int64_t i = 0; i < a.decode; ++i) {
    s.eval(std::span<const int32_t>(&tok, 1));
    tok = tokens[static_cast<size_t>(17 + i)];
  }
  f.decode = static_cast<double>(a.decode) / (now_s() - t0);
  return f;
}

Figures run_llama(const fs::path& file, const fs::path& text, const Args& a, int64_t chunks) {
  Figures f;
  const int threads = a.threads > 0 ? a.threads : hardware_threads();
  const std::string cmd = a.llama_bin + "/llama-perplexity -m " + file.string() + " -f " + text.string() + " -c " +
                          std::to_string(a.ctx) + " --chunks " + std::to_string(chunks) + " -t " +
                          std::to_string(threads);
  const std::string out = run_capture(cmd);
  std::optional<double> t0, t1;
  std::stringstream ss(out);
  for (std::string line; std::getline(ss, line);) {
    if (line.find("calculating perplexity over") != std::string::npos) t0 = llama_log_time(line);
    if (line.find("Final estimate: PPL = ") != std::string::npos) {
      t1 = llama_log_time(line);
      f.ppl = std::stod(line.substr(line.find("PPL = ") + 6));
    }
  }
  if (t0 && t1 && *t1 > *t0) f.pp = static_cast<double>(chunks * a.ctx) / (*t1 - *t0);
  return f;
}

void print_row(const std::string& model, const std::string& type, const Figures& ours,
               const std::optional<Figures>& llama) {
  std::printf("| %-9s | %-5s | %9.1f | %9.1f | %9.4f |", model.c_str(), type.c_str(), ours.pp, ours.decode, ours.ppl);
  if (llama && llama->pp > 0) std::printf(" %9.1f | %9.4f | %5.2fx |\n", llama->pp, llama->ppl, ours.pp / llama->pp);
  else std::printf(" %9s | %9s | %6s |\n", "-", "-", "-");
  std::fflush(stdout);
}

// One row per model file: our figures (for BF16 also with bf16-rounded activations, "BF16*")
// beside llama.cpp's when --llama-bin is given; a file we cannot run gets a "not run" row.
void bench_file(const std::string& model, const std::string& type, const fs::path& file,
                const std::vector<int32_t>& tokens, const fs::path& text, const Args& a, int64_t chunks) {
  std::optional<Figures> ll;
  if (!a.llama_bin.empty()) ll = run_llama(file, text, a, chunks);
  try {
    print_row(model, type, run_ours(file, tokens, a, chunks), ll);
    if (type == "BF16") print_row(model, "BF16*", run_ours(file, tokens, a, chunks, true), ll);
  } catch (const Error& e) {
    std::printf("| %-9s | %-5s | not run: %s\n", model.c_str(), type.c_str(), e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (const char* s = std::getenv("LQ_SHARED_DIR")) a.shared = s;
  else a.shared = "../shared";
  for (bench::CommandLine cl(argc, argv); cl.more();) {
    const std::string k = cl.next();
    if (k == "--threads") a.threads = std::stoi(cl.value());
    else if (k == "--ctx") a.ctx = std::stoll(cl.value());
    else if (k == "--chunks") a.chunks = std::stoll(cl.value());
    else if (k == "--big-chunks") a.big_chunks = std::stoll(cl.value());
    else if (k == "--decode") a.decode = std::stoll(cl.value());
    else if (k == "--types") a.types = split_list(cl.value());
    else if (k == "--dir") a.dir = cl.value();
    else if (k == "--shared") a.shared = cl.value();
    else if (k == "--llama-bin") a.llama_bin = cl.value();
    else if (k == "--no-big") a.big = false;
    else {
      std::fprintf(stderr, "unknown option %s (see the comment at the top of engine_bench.cpp)\n", k.c_str());
      return 2;
    }
  }
  try {
    const auto tokens = read_tokens(a.shared / "golden/eval-tokens.i32");
    const fs::path text = a.shared / "corpus/eval.txt";
    const int threads = a.threads > 0 ? a.threads : hardware_threads();
    std::printf("engine_bench: %d threads, CPU %s, ctx %lld; pp = perplexity evaluation tokens/s, decode = "
                "single-token evals/s;\nBF16* = BF16 with bf16-rounded activations (--bf16-activations, llama.cpp's method)\n\n",
                threads, std::string(cpu::best_isa()).c_str(), static_cast<long long>(a.ctx));
    std::printf("| model     | type  |  pp tok/s | dec tok/s |       ppl | llama pp  | llama ppl | ratio  |\n");
    std::printf("|-----------|-------|-----------|-----------|-----------|-----------|-----------|--------|\n");

    const std::vector<std::pair<std::string, std::string>> tiny = {
        {"BF16", "golden/tiny-llama-BF16.gguf"}, {"F16", "golden/tiny-llama-F16.gguf"},
        {"Q8_0", "golden/pure/Q8_0.gguf"},       {"Q4_0", "golden/pure/Q4_0.gguf"},
        {"Q4_K", "golden/pure/Q4_K.gguf"}};
    for (const auto& [type, rel] : tiny) bench_file("tiny", type, a.shared / rel, tokens, text, a, a.chunks);
    if (!a.big) return 0;

    fs::create_directories(a.dir);
    std::vector<std::pair<QuantType, fs::path>> missing;
    std::vector<std::pair<std::string, fs::path>> files;
    for (const auto& name : a.types) {
      const auto t = parse_quant_type(name);
      if (!t) fail(Errc::invalid_argument, "unknown type {}", name);
      const fs::path p = a.dir / ("synthetic-1b-" + name + ".gguf");
      files.emplace_back(name, p);
      if (fs::exists(p)) continue;
      if (!Registry::instance().quantize(*t)) {
        std::printf("(no quantizer for %s yet: %s not written)\n", name.c_str(), p.string().c_str());
        continue;
      }
      missing.emplace_back(*t, p);
    }
    if (!missing.empty()) {
      const double t0 = now_s();
      bench::write_synthetic_1b(a.shared, missing);
      std::printf("(wrote %zu synthetic files in %.0f s)\n", missing.size(), now_s() - t0);
    }
    for (const auto& [type, file] : files)
      if (fs::exists(file)) bench_file("synth-1B", type, file, tokens, text, a, a.big_chunks);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "engine_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
