// Small helpers the benchmarks share: comma lists, wall-clock seconds, and running llama.cpp's
// tools beside ours (their output and log timestamps).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
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
__attribute__((target("avx512f"))) inline double fma_chains_avx512(long iters) {
  __m512 acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm512_set1_ps(1.0f + static_cast<float>(j) * 1e-7f);
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (long i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) acc[j] = _mm512_fmadd_ps(acc[j], b, c);
  float r = 0;
  for (int j = 0; j < 12; ++j) r += _mm512_reduce_add_ps(acc[j]);
  return 16.0 * 12.0 * static_cast<double>(iters) + (r == 12345.f ? 1 : 0);  // keeps the chains live
}
__attribute__((target("avx2,fma"))) inline double fma_chains_avx2(long iters) {
  __m256 acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_ps(1.0f + static_cast<float>(j) * 1e-7f);
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (long i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) acc[j] = _mm256_fmadd_ps(acc[j], b, c);
  alignas(32) float v[8];
  float r = 0;
  for (int j = 0; j < 12; ++j) {
    _mm256_store_ps(v, acc[j]);
    for (float x : v) r += x;
  }
  return 8.0 * 12.0 * static_cast<double>(iters) + (r == 12345.f ? 1 : 0);
}
__attribute__((target("avx512f,avx512bf16"))) inline double bf16_chains(long iters) {
  __m512 acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm512_setzero_ps();
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80);
  for (long i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], x, x);
  float r = 0;
  for (int j = 0; j < 12; ++j) r += _mm512_reduce_add_ps(acc[j]);
  return 32.0 * 12.0 * static_cast<double>(iters) + (r == 12345.f ? 1 : 0);
}
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
