// Small helpers the benchmarks share: comma lists, command-line options, wall-clock seconds, peak RSS,
// and running llama.cpp's tools beside ours (their output and log timestamps).
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lq::bench {

/// "a,b,,c" -> {"a", "b", "c"}.
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

/// A benchmark's command line, read one option at a time:
///   for (bench::CommandLine cl(argc, argv); cl.more();) {
///     const std::string k = cl.next();
///     if (k == "--threads") threads = std::stoi(cl.value());
/// value() is the argument after the option just read; without one, it prints "OPTION needs a
/// value" and exits with status 2.
class CommandLine {
 public:
  CommandLine(int argc, char** argv) : argc_(argc), argv_(argv) {}
  bool more() const { return i_ < argc_; }
  std::string next() {
    option_ = argv_[i_++];
    return option_;
  }
  std::string value() {
    if (i_ >= argc_) {
      std::fprintf(stderr, "%s needs a value\n", option_.c_str());
      std::exit(2);
    }
    return argv_[i_++];
  }

 private:
  int argc_;
  char** argv_;
  int i_ = 1;
  std::string option_;
};

/// The process's peak resident set size so far, MiB.
inline double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

/// Monotonic wall-clock seconds.
inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Seconds of llama.cpp's "M.SS.mmm.uuu" log timestamp at the start of `line`.
inline std::optional<double> llama_log_time(const std::string& line) {
  static const std::regex re(R"(^(\d+)\.(\d+)\.(\d+)\.(\d+) )");
  std::smatch m;
  if (!std::regex_search(line, m, re)) return std::nullopt;
  return std::stod(m[1]) * 60 + std::stod(m[2]) + std::stod(m[3]) * 1e-3 + std::stod(m[4]) * 1e-6;
}

/// Runs a shell command and returns its stdout and stderr together.
inline std::string run_capture(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen((cmd + " 2>&1").c_str(), "r")) {
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    pclose(p);
  }
  return out;
}

// Peak multiply-add rates of this machine, measured with independent chains of vector
// instructions that never touch memory (the ceiling any matrix product can reach). 0 where the
// instruction set is absent.
#if defined(__x86_64__)
// NAME(iters): 12 independent chains of `iters` steps, each STEP(acc) one instruction doing MACS
// multiply-adds; returns the multiply-adds done. The sum of the results keeps the chains live.
#define LQ_BENCH_CHAINS(NAME, TARGET, VEC, INIT, STEP, MACS)                               \
  __attribute__((target(TARGET))) inline double NAME(long iters) {                          \
    VEC acc[12];                                                                            \
    for (int j = 0; j < 12; ++j) acc[j] = INIT(j);                                          \
    for (long i = 0; i < iters; ++i) {                                                      \
      /* unrolled, so that the 12 chains stay in registers at any optimisation level */     \
      _Pragma("GCC unroll 12") for (int j = 0; j < 12; ++j) acc[j] = STEP(acc[j]);          \
    }                                                                                       \
    float r = 0;                                                                            \
    for (int j = 0; j < 12; ++j) {                                                          \
      float v[sizeof(VEC) / sizeof(float)];                                                 \
      std::memcpy(v, &acc[j], sizeof v);                                                    \
      for (float x : v) r += x;                                                             \
    }                                                                                       \
    return (MACS) * 12.0 * static_cast<double>(iters) + (r == 12345.f ? 1 : 0);             \
  }
#define LQ_INIT512(j) _mm512_set1_ps(1.0f + static_cast<float>(j) * 1e-7f)
#define LQ_FMA512(a) _mm512_fmadd_ps(a, _mm512_set1_ps(0.999999f), _mm512_set1_ps(1e-7f))
#define LQ_INIT256(j) _mm256_set1_ps(1.0f + static_cast<float>(j) * 1e-7f)
#define LQ_FMA256(a) _mm256_fmadd_ps(a, _mm256_set1_ps(0.999999f), _mm256_set1_ps(1e-7f))
#define LQ_ZERO512(j) _mm512_setzero_ps()
#define LQ_DPBF16(a) _mm512_dpbf16_ps(a, (__m512bh)_mm512_set1_epi16(0x3f80), (__m512bh)_mm512_set1_epi16(0x3f80))
LQ_BENCH_CHAINS(fma_chains_avx512, "avx512f", __m512, LQ_INIT512, LQ_FMA512, 16)
LQ_BENCH_CHAINS(fma_chains_avx2, "avx2,fma", __m256, LQ_INIT256, LQ_FMA256, 8)
LQ_BENCH_CHAINS(bf16_chains, "avx512f,avx512bf16", __m512, LQ_ZERO512, LQ_DPBF16, 32)
#undef LQ_INIT512
#undef LQ_FMA512
#undef LQ_INIT256
#undef LQ_FMA256
#undef LQ_ZERO512
#undef LQ_DPBF16
#undef LQ_BENCH_CHAINS
#endif

struct PeakRates {
  double fma = 0;       ///< float multiply-adds per second, GMAC/s, all threads together
  double bf16_dot = 0;  ///< bf16 pair products per second (AVX-512 BF16), GMAC/s; 0 without it
  const char* fma_isa = "none";
};

/// Runs the chains on `threads` threads at once (so shared cores and clock limits show), each
/// for about `seconds`.
inline PeakRates peak_rates(int threads, double seconds = 0.3) {
  PeakRates p;
#if defined(__x86_64__)
  auto measure = [&](double (*fn)(long)) {
    const long iters = 1 << 20;
    double best = 0;
    for (int rep = 0; rep < 2; ++rep) {
      std::vector<double> macs(static_cast<size_t>(threads));
      std::vector<std::thread> pool;
      const double t0 = now_s();
      for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
          double m = 0;
          while (now_s() - t0 < seconds) m += fn(iters);
          macs[static_cast<size_t>(t)] = m;
        });
      for (auto& th : pool) th.join();
      double total = 0;
      for (double m : macs) total += m;
      best = std::max(best, total / (now_s() - t0) * 1e-9);
    }
    return best;
  };
  if (__builtin_cpu_supports("avx512f")) {
    p.fma = measure(fma_chains_avx512);
    p.fma_isa = "AVX-512";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    p.fma = measure(fma_chains_avx2);
    p.fma_isa = "AVX2";
  }
  if (__builtin_cpu_supports("avx512bf16")) p.bf16_dot = measure(bf16_chains);
#else
  (void)threads;
  (void)seconds;
#endif
  return p;
}

}  // namespace lq::bench
