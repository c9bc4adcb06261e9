// Matrix products of the inference engine: y[m x n] = x[m x k] W^T for the weight shapes of a
// ~1B Llama (or the tiny test model), per weight type, through the engine's matmul (whatever
// path it picks) and through each panel kernel of every ISA this machine runs. Prints GMAC/s
// (multiply-adds per second) and the best time of --reps runs, after this machine's peak rates
// (bench_util.hpp) for scale; never asserts.
//
//   matmul_bench [--m 256] [--threads 1] [--reps 3] [--model 1b|tiny] [--types Q4_K,Q8_0,...]
//                [--no-isa] [--float-act] [--gram]
//
// --gram: instead, the lower triangle of XᵀX for m tokens of each linear input's width (GPTQ's
// Hessians, AWQ's clipping and search grams: gptq_impl::gp_add_gram) in 128-row stripes and in
// the stripes it picks, GMAC/s of the triangle's multiply-adds and the ratio.
// --float-act: BF16 weights multiply float activations (the engine's exact mode) instead of
// bf16-rounded ones. W8 is SmoothQuant's W8A8: int8 weights times int8 per-token activations
// (one GMAC/s is two GOPS); `--m 512 --types F32,BF16,W8` compares it with the float GEMMs.
#include <lq/backend.hpp>
#include <lq/quant_type.hpp>
#include <lq/threads.hpp>

#include "engine/impl.hpp"
#include "quantize/gptq_walk.hpp"
#include "kernels/cpu/rows.hpp"
#include "kernels/cpu/engine_kernels.hpp"
#include "int8_gemm.hpp"
#include "qgemm.hpp"

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

LQ_CPU_QGEMM_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_INT8_KERNELS(LQ_CPU_EXTERN)

using namespace lq;
#include "bench_util.hpp"


namespace {

using bench::now_s;
using bench::split_list;

// Single-threaded runs are timed in thread CPU time: the machine is shared, and time spent
// descheduled says nothing about the kernel.
bool g_cpu_time = true;
double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double best_of(int reps, const std::function<void()>& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = g_cpu_time ? thread_cpu_s() : now_s();
    f();
    best = std::min(best, (g_cpu_time ? thread_cpu_s() : now_s()) - t0);
  }
  return best;
}

// One ISA's panel GEMMs, per weight type (the same kernels as the CPU row's, for one arch).
struct IsaKernels {
  const char* name;
  bool usable;
  std::vector<std::pair<QuantType, cpu::QGemmFn>> panels;
};

template <class A>
IsaKernels isa(const char* name, bool usable) {
  using namespace lq::cpu;
  return {name,
          usable,
          {{QuantType::Q4_0, QGemmQ4_0<A>::run},
           {QuantType::Q8_0, QGemmQ8_0<A>::run},
           {QuantType::Q4_K, QGemmQ4K<A>::run},
           {QuantType::Q5_K, QGemmQ5K<A>::run},
           {QuantType::Q6_K, QGemmQ6K<A>::run},
           {QuantType::Q3_K, QGemmQ3K<A>::run},
           {QuantType::Q2_K, QGemmQ2K<A>::run},
           {QuantType::BF16, GemmBf16<A>::run},
           {QuantType::W8, GemmW8<A>::run}}};
}

cpu::QGemmFn pick(const IsaKernels& k, QuantType t) {
  for (const auto& [type, fn] : k.panels)
    if (type == t) return fn;
  return nullptr;
}

}  // namespace

// --gram: XᵀX's lower triangle for m tokens of each input width, 128-row stripes against gp_add_gram's own.
int gram_bench(int64_t m, int threads, int reps, const std::string& model) {
  const std::vector<int64_t> widths = model == "tiny" ? std::vector<int64_t>{256, 768} : std::vector<int64_t>{2048, 8192};
  const gptq_impl::GpGemmFn gemm = engine::Exec::with_threads(threads).ops.gemm;
  g_cpu_time = threads == 1;
  std::printf("matmul_bench --gram: m=%lld tokens, %d thread(s), model %s; GMAC/s of the lower triangle (best of %d, %s time)\n\n",
              static_cast<long long>(m), threads, model.c_str(), reps, g_cpu_time ? "thread CPU" : "wall");
  std::printf("| width | 128-row stripes | gp_add_gram's stripes | ratio |\n| --- | --- | --- | --- |\n");
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (const int64_t w : widths) {
    std::vector<float> x(static_cast<size_t>(m * w));
    for (auto& v : x) v = nd(rng);
    gptq_impl::RowMat H = gptq_impl::RowMat::Zero(w, w);
    const double macs = static_cast<double>(m) * static_cast<double>(w) * static_cast<double>(w + 1) / 2;
    const double t128 = best_of(reps, [&] { gptq_impl::gp_add_gram(H, x.data(), m, w, threads, gemm, 128); });
    const double tnew = best_of(reps, [&] { gptq_impl::gp_add_gram(H, x.data(), m, w, threads, gemm); });
    std::printf("| %lld | %.1f | %.1f | %.2fx |\n", static_cast<long long>(w), macs / t128 * 1e-9, macs / tnew * 1e-9, t128 / tnew);
    std::fflush(stdout);
  }
  return 0;
}

int main(int argc, char** argv) {
  int64_t m = 256;
  int threads = 1, reps = 3;
  std::string model = "1b";
  bool per_isa = true, float_act = false, gram = false;
  std::vector<std::string> types = {"F32", "BF16", "W8", "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q3_K", "Q2_K"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--m") m = std::stoll(val());
    else if (a == "--threads") threads = std::stoi(val());
    else if (a == "--reps") reps = std::stoi(val());
    else if (a == "--model") model = val();
    else if (a == "--types") types = split_list(val());
    else if (a == "--no-isa") per_isa = false;
    else if (a == "--float-act") float_act = true;
    else if (a == "--gram") gram = true;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  struct Shape {
    const char* name;
    int64_t n, k;
  };
  const std::vector<Shape> shapes =
      model == "tiny" ? std::vector<Shape>{{"qo", 256, 256}, {"kv", 128, 256}, {"up", 768, 256}, {"down", 256, 768},
                                           {"vocab", 2048, 256}}
                      : std::vector<Shape>{{"qo", 2048, 2048}, {"kv", 512, 2048}, {"up", 8192, 2048},
                                           {"down", 2048, 8192}, {"vocab", 2048, 2048}};
  if (gram) return gram_bench(m, threads, reps, model);
  g_cpu_time = threads == 1;
  std::vector<IsaKernels> isas;  // every ISA of this build but the SSE2 baseline
  cpu::for_each_isa([&](auto arch, const char* name) {
    using A = decltype(arch);
    if constexpr (!std::is_same_v<A, cpu::Sse2>) isas.push_back(isa<A>(name, cpu::isa_usable<A>()));
  });
  std::printf("matmul_bench: m=%lld, %d thread(s), model %s, dispatch %s; GMAC/s (best of %d, %s time)\n\n",
              static_cast<long long>(m), threads, model.c_str(), std::string(cpu::best_isa()).c_str(), reps,
              g_cpu_time ? "thread CPU" : "wall");
  const bench::PeakRates peak = bench::peak_rates(threads);
  std::printf("peak on %d thread(s) at once: %s FMA %.1f GMAC/s (float, F16 and exact BF16 products)", threads,
              peak.fma_isa, peak.fma);
  if (peak.bf16_dot > 0) std::printf("; bf16 pair products %.1f GMAC/s (BF16 times bf16 activations)", peak.bf16_dot);
  std::printf("\n\n");
  std::printf("| type | shape | n x k | engine |");
  if (per_isa)
    for (const auto& k : isas)
      if (k.usable) std::printf(" %s |", k.name);
  std::printf("\n");

  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (const auto& tn : types) {
    const auto t = parse_quant_type(tn);
    if (!t) continue;
    const TypeInfo& info = type_info(*t);
    for (const auto& s : shapes) {
      std::vector<float> wf(static_cast<size_t>(s.n * s.k)), x(static_cast<size_t>(m * s.k));
      for (auto& v : wf) v = nd(rng);
      for (auto& v : x) v = nd(rng);
      engine::Tensor w;
      w.name = "w";
      w.type = *t;
      w.ne = {s.k, s.n};
      w.data = engine::Buffer(info.row_bytes(s.k) * static_cast<size_t>(s.n));
      Registry::instance().quantize(*t)(wf.data(), w.data.data(), s.n, s.k, nullptr);
      std::vector<float> y(static_cast<size_t>(m * s.n));
      const double macs = static_cast<double>(m) * s.n * s.k;
      const engine::LinearOp op{&w, x.data(), m, y.data(), float_act};
      const engine::Exec ex = engine::Exec::with_threads(threads);
      const double te = best_of(reps, [&] { engine::matmul_many(ex, std::span<const engine::LinearOp>(&op, 1)); });
      std::printf("| %s | %s | %lld x %lld | %.1f |", tn.c_str(), s.name, static_cast<long long>(s.n),
                  static_cast<long long>(s.k), macs / te * 1e-9);
      if (per_isa) {
        for (const auto& k : isas) {
          if (!k.usable) continue;
          const cpu::QGemmFn fn = pick(k, *t);
          if (!fn) {
            std::printf(" - |");
            continue;
          }
          const cpu::ActFormatRow& af = cpu::act_format(cpu::row(*t).panel.act);
          const cpu::QActLayout lay = af.layout(s.k);
          const cpu::QuantizeActFn q = af.quantize;
          std::vector<uint8_t> recs(lay.bytes * static_cast<size_t>(m));
          q(x.data(), m, lay, recs.data());
          const double tk = best_of(reps, [&] {
            fn(cpu::QGemmArgs{s.k, w.data.data(), w.row_bytes(), s.n, recs.data(), lay, m, y.data(), s.n});
          });
          std::printf(" %.1f |", macs / tk * 1e-9);
        }
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  return 0;
}
