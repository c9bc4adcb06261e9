// What the quality benchmarks (gptq_quality_bench, smoothquant_quality_bench) share: the options
// that pick the model and the texts (by default the tiny model and the corpus of ../shared) and size
// the evaluation and the calibration, the original model's baseline on the evaluation text, and an
// lq::Error reported as the exit status.
#pragma once

#include <lq/lq.hpp>

#include "bench_util.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace lq::bench {

struct QualityOptions {
  std::filesystem::path model, calib, eval;
  int64_t ctx = 256, chunks = 100, samples = 0, calib_ctx = 0;
  int threads = 0;

  /// models/tiny-llama, corpus/calibration.txt and corpus/eval.txt of $LQ_SHARED_DIR (else the
  /// build's ../shared); `samples` calibration chunks of `calib_ctx` tokens.
  QualityOptions(int64_t samples_, int64_t calib_ctx_) : samples(samples_), calib_ctx(calib_ctx_) {
    std::filesystem::path shared = LQ_DEFAULT_SHARED_DIR;
    if (const char* env = std::getenv("LQ_SHARED_DIR"); env && *env) shared = env;
    model = shared / "models" / "tiny-llama";
    calib = shared / "corpus" / "calibration.txt";
    eval = shared / "corpus" / "eval.txt";
  }

  /// Takes the option `a` just read from `cl` (and its value) when it is one of --model,
  /// --calibration, --eval, --ctx, --chunks, --calibration-samples, --calibration-ctx, --threads.
  bool take(const std::string& a, CommandLine& cl) {
    if (a == "--model") model = cl.value();
    else if (a == "--calibration") calib = cl.value();
    else if (a == "--eval") eval = cl.value();
    else if (a == "--ctx") ctx = std::stoll(cl.value());
    else if (a == "--chunks") chunks = std::stoll(cl.value());
    else if (a == "--calibration-samples") samples = std::stoll(cl.value());
    else if (a == "--calibration-ctx") calib_ctx = std::stoll(cl.value());
    else if (a == "--threads") threads = std::stoi(cl.value());
    else return false;
    return true;
  }
};

/// The original model and its perplexity on the evaluation text: what every row is compared with.
struct QualityBaseline {
  lq::Context c;
  std::unique_ptr<lq::ModelSource> src;
  std::unique_ptr<lq::Model> original;
  std::vector<int32_t> tokens;  ///< the evaluation text's
  lq::PerplexityOptions po;
  lq::PerplexityResult base;
};
inline QualityBaseline quality_baseline(const QualityOptions& o) {
  QualityBaseline b;
  b.c.threads = o.threads;
  b.src = lq::ModelSource::open(o.model);
  b.original = lq::Model::load(*b.src);
  b.tokens = lq::calibration_tokens(lq::tokenizer_for(*b.src), lq::load_text(o.eval));
  b.po.ctx = o.ctx;
  b.po.chunks = o.chunks;
  b.base = lq::perplexity(*b.original, b.tokens, b.po, b.c);
  return b;
}

/// Prints "error: MESSAGE" and returns the error's exit status.
inline int error_status(const lq::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return lq::exit_code(e.code());
}

}  // namespace lq::bench
