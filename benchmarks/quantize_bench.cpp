// Quantize / dequantize / dot throughput of every quantizable type of the table.
//
// Input: a gaussian F32 matrix (default 1024 rows x 4096 columns, --rows/--cols to change).
// Per type it times the product path (Registry: CPU kernel where one exists, else the scalar
// reference) on one thread and on all threads (lq::parallel_for over rows). Single-thread
// figures time small chunks of rows several times and add up each chunk's fastest run, which
// filters out preemption on a shared machine. It prints
//   cycles per weight (TSC ticks, i.e. cycles at the nominal clock, measured with rdtsc on x86;
//   elsewhere nanoseconds x 1 GHz) and MB/s of F32 input,
// plus llama.cpp's single-thread quantize cost on the same machine class where we know it (its
// test-quantize-perf, no imatrix) and the ratio llama.cpp / ours (> 1 = we are faster).
// Types that require an importance matrix always get a synthetic one (marked "(im)"); the
// "+im" column quantizes every type with it. The dot column is one row dot product against the
// type's dot partner, per weight.
//
// Usage: quantize_bench [--rows N] [--cols N] [--type T]... [--threads N]
#include <lq/backend.hpp>
#include <lq/quant_type.hpp>
#include <lq/threads.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

using namespace lq;

namespace {

#if defined(__x86_64__) || defined(__i386__)
constexpr const char* kClockNote = "rdtsc ticks (cycles at the nominal clock)";
uint64_t ticks() { return __rdtsc(); }
#else
constexpr const char* kClockNote = "nanoseconds x 1 GHz (no TSC on this architecture)";
uint64_t ticks() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}
#endif

// llama.cpp test-quantize-perf, one thread, no imatrix, this machine class (cycles per weight).
const std::map<std::string, double> kLlamaCyclesPerWeight = {
    {"Q4_K", 164}, {"Q5_K", 129}, {"Q2_K", 139}, {"Q6_K", 64},  {"Q3_K", 11},
    {"IQ4_XS", 398}, {"IQ4_NL", 30}, {"Q4_0", 2.6}, {"TQ1_0", 7.5},
};

struct Timing {
  double cycles = 0;  // best run, ticks
  double secs = 0;    // best run, seconds
};

// Runs fn at least twice and until ~0.3 s have passed (at most 5 times); keeps the fastest run.
template <class Fn>
Timing best_of(Fn&& fn) {
  Timing best{1e300, 1e300};
  double total = 0;
  for (int rep = 0; rep < 5 && (rep < 2 || total < 0.3); ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t c0 = ticks();
    fn();
    const uint64_t c1 = ticks();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    total += s;
    best.cycles = std::min(best.cycles, static_cast<double>(c1 - c0));
    best.secs = std::min(best.secs, s);
  }
  return best;
}

// Single-thread timing robust to a busy machine: fn(begin, end) runs over [0, n) in small
// chunks, each chunk is timed `reps` times and its fastest run counts (preemptions by other
// processes only ever add time).
template <class Fn>
Timing chunked_best(int64_t n, int64_t chunk, int reps, Fn&& fn) {
  std::vector<double> cyc((n + chunk - 1) / chunk, 1e300), sec(cyc.size(), 1e300);
  for (int rep = 0; rep < reps; ++rep)
    for (int64_t c = 0; c * chunk < n; ++c) {
      const int64_t b = c * chunk, e = std::min(n, b + chunk);
      const auto t0 = std::chrono::steady_clock::now();
      const uint64_t c0 = ticks();
      fn(b, e);
      const uint64_t c1 = ticks();
      cyc[c] = std::min(cyc[c], static_cast<double>(c1 - c0));
      sec[c] = std::min(sec[c], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  Timing t;
  for (size_t c = 0; c < cyc.size(); ++c) {
    t.cycles += cyc[c];
    t.secs += sec[c];
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 1024, cols = 4096;
  int threads = 0;
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rows" && i + 1 < argc) rows = std::atoll(argv[++i]);
    else if (a == "--cols" && i + 1 < argc) cols = std::atoll(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--type" && i + 1 < argc) only.push_back(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--rows N] [--cols N] [--type T]... [--threads N]\n", argv[0]);
      return 2;
    }
  }
  if (cols <= 0 || cols % 256 != 0 || rows <= 0) {
    std::fprintf(stderr, "--cols must be a positive multiple of 256 and --rows positive\n");
    return 2;
  }
  const int nthreads = threads > 0 ? threads : hardware_threads();
  const int64_t n = rows * cols;
  std::vector<float> x(static_cast<size_t>(n));
  std::mt19937 rng(1234);
  std::normal_distribution<float> gauss(0.f, 1.f);
  for (auto& v : x) v = gauss(rng);
  std::vector<float> im(static_cast<size_t>(cols));
  std::uniform_real_distribution<float> uni(0.1f, 2.0f);
  for (auto& v : im) v = uni(rng) * uni(rng);
  std::vector<float> y(static_cast<size_t>(n));
  std::vector<float> act(static_cast<size_t>(cols));
  for (auto& v : act) v = gauss(rng);

  std::printf("quantize bench: %lld x %lld gaussian, %d threads for the mt columns\n", static_cast<long long>(rows),
              static_cast<long long>(cols), nthreads);
  std::printf("cycles per weight: %s; mt c/w = wall-clock cycles / weights with all threads\n", kClockNote);
  std::printf("path: cpu = dispatched CPU kernel, ref = scalar reference; 'im' = quantized with a synthetic imatrix\n\n");
  std::printf("%-8s %-4s |%28s%18s | %-18s| %-27s| %s\n", "", "", "quantize", "", "llama.cpp 1t", "dequantize", "dot");
  std::printf("%-8s %-4s | %7s %8s %7s %8s %8s | %8s %8s | %7s %8s %9s | %7s\n", "type", "path", "1t c/w", "1t MB/s",
              "mt c/w", "mt MB/s", "+im c/w", "c/w", "ours x", "1t c/w", "1t MB/s", "mt MB/s", "c/w");
  for (const TypeInfo& ti : all_types()) {
    if (!ti.quantize_ref || !ti.dequantize_ref || ti.is_float() || !ti.storable) continue;
    if (!only.empty() && std::find(only.begin(), only.end(), ti.name) == only.end()) continue;
    if (cols % ti.block_size != 0) continue;
    const size_t rb = ti.row_bytes(cols);
    std::vector<uint8_t> q(rb * rows);
    const QuantizeFn quantize = Registry::instance().quantize(ti.type);
    const DequantizeFn dequantize = Registry::instance().dequantize(ti.type);
    const float* imx = ti.needs_imatrix ? im.data() : nullptr;
    const bool is_ref = quantize == ti.quantize_ref;
    const double nw = static_cast<double>(n), mb = nw * 4 / 1e6;

    const Timing q1 = chunked_best(rows, 4, 5, [&](int64_t b, int64_t e) {
      quantize(x.data() + b * cols, q.data() + b * rb, e - b, cols, imx);
    });
    const Timing qw = chunked_best(rows, 4, 3, [&](int64_t b, int64_t e) {
      quantize(x.data() + b * cols, q.data() + b * rb, e - b, cols, im.data());
    });
    const Timing qm = best_of([&] {
      parallel_for(rows, nthreads, 4, [&](int64_t b, int64_t e) {
        quantize(x.data() + b * cols, q.data() + b * rb, e - b, cols, imx);
      });
    });
    const Timing d1 = chunked_best(rows, 16, 5, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) dequantize(q.data() + r * rb, y.data() + r * cols, cols);
    });
    const Timing dm = best_of([&] {
      parallel_for(rows, nthreads, 16, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) dequantize(q.data() + r * rb, y.data() + r * cols, cols);
      });
    });

    std::string dot_col = "-";
    const DotFn dot = Registry::instance().dot(ti.type);
    const TypeInfo& pt = type_info(ti.dot_type);
    if (dot && pt.quantize_ref && cols % pt.block_size == 0) {
      std::vector<uint8_t> a(pt.row_bytes(cols));
      pt.quantize_ref(act.data(), a.data(), 1, cols, nullptr);
      volatile float sink = 0;
      const Timing dt = chunked_best(rows, 16, 5, [&](int64_t b, int64_t e) {
        float acc = 0;
        for (int64_t r = b; r < e; ++r) acc += dot(cols, q.data() + r * rb, a.data());
        sink = acc;
      });
      (void)sink;
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.3f", dt.cycles / nw);
      dot_col = buf;
    }

    const double qcpw = q1.cycles / nw;
    const auto ll = kLlamaCyclesPerWeight.find(ti.name);
    char llbuf[32] = "-", ratio[32] = "-";
    if (ll != kLlamaCyclesPerWeight.end()) {
      std::snprintf(llbuf, sizeof llbuf, "%.1f", ll->second);
      std::snprintf(ratio, sizeof ratio, "%.2f", ll->second / qcpw);
    }
    std::printf("%-8s %-4s | %7.2f %8.1f %7.2f %8.1f %8.2f | %8s %8s | %7.3f %8.0f %9.0f | %7s%s\n", ti.name,
                is_ref ? "ref" : "cpu", qcpw, mb / q1.secs, qm.cycles / nw, mb / qm.secs, qw.cycles / nw, llbuf, ratio,
                d1.cycles / nw, mb / d1.secs, mb / dm.secs, dot_col.c_str(), imx ? "  (im)" : "");
    std::fflush(stdout);
  }
  return 0;
}
