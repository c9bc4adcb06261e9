// IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0: round trips, CPU kernels against the scalar
// reference on every instruction set this machine has, dot products, hostile rows, and the error
// on the real tiny model against llama.cpp's files.
#include <lq/backend.hpp>
#include <lq/gguf.hpp>
#include <lq/quant_type.hpp>
#include <lq/threads.hpp>

#include "iq3.hpp"
#include "iq4.hpp"
#include "types/ref/iq4_search.hpp"
#include "types/ref/iq_tables.hpp"
#include "types/ref/lanes.hpp"
#include "support/support.hpp"
#include "ternary.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

LQ_CPU_IQ3_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_IQ4_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_TERNARY_KERNELS(LQ_CPU_EXTERN)

using namespace lq;

namespace {

constexpr QuantType kTypes[] = {QuantType::IQ3_XXS, QuantType::IQ3_S, QuantType::IQ4_NL,
                                QuantType::IQ4_XS,  QuantType::TQ1_0, QuantType::TQ2_0};

// One instruction set's instantiations of the kernels of each type (empty: none for that slot).
struct IsaKernels {
  const char* isa;
  bool available;
  std::map<QuantType, KernelSet> sets;
};

template <class A>
IsaKernels isa_kernels(const char* name) {
  using namespace lq::cpu;
  IsaKernels k{name, cpu::isa_usable<A>(), {}};
  k.sets[QuantType::IQ3_XXS] = {nullptr, DequantIq3Xxs<A>::run, DotIq3Xxs<A>::run};
  k.sets[QuantType::IQ3_S] = {nullptr, DequantIq3S<A>::run, DotIq3S<A>::run};
  k.sets[QuantType::IQ4_NL] = {QuantizeIq4Nl<A>::run, DequantIq4Nl<A>::run, DotIq4Nl<A>::run};
  k.sets[QuantType::IQ4_XS] = {QuantizeIq4Xs<A>::run, DequantIq4Xs<A>::run, DotIq4Xs<A>::run};
  k.sets[QuantType::TQ1_0] = {QuantizeTq1_0<A>::run, DequantTq1_0<A>::run, DotTq1_0<A>::run};
  k.sets[QuantType::TQ2_0] = {QuantizeTq2_0<A>::run, DequantTq2_0<A>::run, DotTq2_0<A>::run};
  return k;
}

std::vector<IsaKernels> all_isas() {
  std::vector<IsaKernels> v;
  cpu::for_each_isa([&](auto arch, const char* name) { v.push_back(isa_kernels<decltype(arch)>(name)); });
  return v;
}

std::vector<uint8_t> quantize(const TypeInfo& ti, QuantizeFn fn, const std::vector<float>& x, int64_t n,
                              const float* imatrix) {
  const int64_t rows = static_cast<int64_t>(x.size()) / n;
  std::vector<uint8_t> q(ti.row_bytes(n) * static_cast<size_t>(rows));
  fn(x.data(), q.data(), rows, n, imatrix);
  return q;
}

std::vector<float> dequantize(const TypeInfo& ti, DequantizeFn fn, const std::vector<uint8_t>& q, int64_t n) {
  const size_t rb = ti.row_bytes(n);
  std::vector<float> y(q.size() / rb * static_cast<size_t>(n));
  for (size_t r = 0; r < q.size() / rb; ++r) fn(q.data() + r * rb, y.data() + r * static_cast<size_t>(n), n);
  return y;
}

double rel_rmse(const std::vector<float>& x, const std::vector<float>& y) {
  double se = 0, sx = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    se += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
    sx += static_cast<double>(x[i]) * x[i];
  }
  return std::sqrt(se / sx);
}

std::vector<float> importance(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<float> ln(0.f, 1.5f);  // uneven, like real imatrix columns
  std::vector<float> w(n);
  for (auto& v : w) v = ln(rng);
  return w;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("iquants-a: table rows", "[iquants-a]") {
  for (QuantType t : kTypes) {
    const TypeInfo& ti = type_info(t);
    INFO(ti.name);
    CHECK(ti.quantize_ref != nullptr);
    CHECK(ti.dequantize_ref != nullptr);
    CHECK(ti.dot_ref != nullptr);
    CHECK_FALSE(ti.needs_imatrix);  // llama.cpp requires one only for IQ2_XXS, IQ2_XS, IQ1_S
    CHECK(ti.dot_type == (t == QuantType::IQ4_NL ? QuantType::Q8_0 : QuantType::Q8_K));
    CHECK(ti.tolerance > 0);
  }
  for (int i = 0; i < 16; ++i) CHECK(ref::iq4::kValues[i] == ref::kvalues_iq4nl[i]);
  // Each level's cell table entry is the nearest level (ties up) for every cell.
  for (int c = 0; c < ref::iq4::kCells; ++c) {
    const float v = 0.5f * static_cast<float>(c - 256);
    int best = 0;
    for (int i = 1; i < 16; ++i)
      if (std::fabs(v - ref::iq4::kValues[i]) <= std::fabs(v - ref::iq4::kValues[best])) best = i;
    CHECK(ref::iq4::kCellTables.index[c] == best);
  }
  float lanes[16];
  for (int l = 0; l < 16; ++l) lanes[l] = static_cast<float>(l + 1);
  CHECK(ref::reduce_lanes(lanes) == 136.f);
}

TEST_CASE("iquants-a: round trip within the row tolerance", "[iquants-a]") {
  for (QuantType t : kTypes) {
    const TypeInfo& ti = type_info(t);
    for (int64_t n : {int64_t{256}, int64_t{768}, int64_t{4096}}) {
      const auto x = test::gaussian(static_cast<size_t>(8 * n), 11);
      const auto w = importance(static_cast<size_t>(n), 12);
      for (const float* imatrix : {static_cast<const float*>(nullptr), w.data()}) {
        INFO(ti.name << " n=" << n << (imatrix ? " with" : " without") << " importance");
        const auto q = quantize(ti, ti.quantize_ref, x, n, imatrix);
        CHECK(rel_rmse(x, dequantize(ti, ti.dequantize_ref, q, n)) <= ti.tolerance);
        // Through the registry (the kernels files are written with).
        const auto qk = quantize(ti, Registry::instance().quantize(t), x, n, imatrix);
        CHECK(qk == q);
      }
    }
  }
}

TEST_CASE("iquants-a: importance weights lower the weighted error", "[iquants-a]") {
  const int64_t n = 1024;
  const auto x = test::gaussian(static_cast<size_t>(16 * n), 21);
  const auto w = importance(static_cast<size_t>(n), 22);
  auto werr = [&](const std::vector<float>& y) {
    double e = 0;
    for (size_t i = 0; i < x.size(); ++i) e += w[i % n] * (x[i] - y[i]) * (x[i] - y[i]);
    return e;
  };
  for (QuantType t : kTypes) {
    const TypeInfo& ti = type_info(t);
    INFO(ti.name);
    const double plain = werr(dequantize(ti, ti.dequantize_ref, quantize(ti, ti.quantize_ref, x, n, nullptr), n));
    const double weighted = werr(dequantize(ti, ti.dequantize_ref, quantize(ti, ti.quantize_ref, x, n, w.data()), n));
    CHECK(weighted < plain);
  }
}

TEST_CASE("iquants-a: CPU kernels match the reference on every instruction set", "[iquants-a]") {
  const int64_t n = 1024;
  const auto x = test::gaussian(static_cast<size_t>(6 * n), 31);
  const auto act = test::gaussian(static_cast<size_t>(n), 32);
  const auto w = importance(static_cast<size_t>(n), 33);
  for (const auto& isa : all_isas()) {
    if (!isa.available) continue;
    for (QuantType t : kTypes) {
      const TypeInfo& ti = type_info(t);
      const KernelSet& k = isa.sets.at(t);
      INFO(ti.name << " on " << isa.isa);
      for (const float* imatrix : {static_cast<const float*>(nullptr), w.data()}) {
        const auto q = quantize(ti, ti.quantize_ref, x, n, imatrix);
        if (k.quantize) CHECK(quantize(ti, k.quantize, x, n, imatrix) == q);
        CHECK(same_bits(dequantize(ti, k.dequantize, q, n), dequantize(ti, ti.dequantize_ref, q, n)));
        const TypeInfo& yt = type_info(ti.dot_type);
        std::vector<uint8_t> qy(yt.row_bytes(n));
        yt.quantize_ref(act.data(), qy.data(), 1, n, nullptr);
        const size_t rb = ti.row_bytes(n);
        for (size_t r = 0; r < q.size() / rb; ++r) {
          const float ref = ti.dot_ref(n, q.data() + r * rb, qy.data());
          const float got = k.dot(n, q.data() + r * rb, qy.data());
          CHECK(std::fabs(got - ref) <= 1e-5f * (std::fabs(ref) + 1.f));
        }
      }
    }
  }
}

TEST_CASE("iquants-a: quantized dot products approximate the float dot product", "[iquants-a]") {
  for (QuantType t : kTypes) {
    const TypeInfo& ti = type_info(t);
    const TypeInfo& yt = type_info(ti.dot_type);
    for (int64_t n : {int64_t{256}, int64_t{2048}}) {
      INFO(ti.name << " n=" << n);
      const auto x = test::gaussian(static_cast<size_t>(n), 41);
      const auto a = test::gaussian(static_cast<size_t>(n), 42);
      const auto qx = quantize(ti, ti.quantize_ref, x, n, nullptr);
      const auto qa = quantize(yt, yt.quantize_ref, a, n, nullptr);
      const auto xd = dequantize(ti, ti.dequantize_ref, qx, n);
      const auto ad = dequantize(yt, yt.dequantize_ref, qa, n);
      double exact = 0, decoded = 0, mag = 0, nx = 0, na = 0;
      for (int64_t i = 0; i < n; ++i) {
        exact += static_cast<double>(x[i]) * a[i];
        decoded += static_cast<double>(xd[i]) * ad[i];
        mag += std::fabs(static_cast<double>(xd[i]) * ad[i]);
        nx += static_cast<double>(x[i]) * x[i];
        na += static_cast<double>(a[i]) * a[i];
      }
      for (DotFn dot : {ti.dot_ref, Registry::instance().dot(t)}) {
        const double got = dot(n, qx.data(), qa.data());
        CHECK(std::fabs(got - decoded) <= 1e-5 * mag);  // integer sums, float only at the end
        // Cauchy-Schwarz: the error is at most |x - xq| |a| + |xq| |a - aq|.
        CHECK(std::fabs(got - exact) <= (ti.tolerance + 0.02) * std::sqrt(nx * na));
      }
    }
  }
}

TEST_CASE("iquants-a: hostile rows decode to finite values", "[iquants-a]") {
  const int64_t n = 512;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::map<std::string, std::vector<float>> rows;
  rows["zeros"] = std::vector<float>(n, 0.f);
  rows["outlier"] = std::vector<float>(n, 0.f);
  rows["outlier"][77] = -1000.f;
  rows["outlier in noise"] = test::gaussian(n, 51);
  for (auto& v : rows["outlier in noise"]) v *= 1e-3f;
  rows["outlier in noise"][300] = 50.f;
  rows["constant"] = std::vector<float>(n, 0.37f);
  rows["negative constant"] = std::vector<float>(n, -3.f);
  rows["denormals"] = std::vector<float>(n);
  for (int64_t i = 0; i < n; ++i) rows["denormals"][i] = (i % 2 ? 1.f : -1.f) * 1e-40f * static_cast<float>(i % 7);
  rows["huge"] = test::gaussian(n, 52);
  for (auto& v : rows["huge"]) v *= 1e30f;
  rows["nan and inf"] = test::gaussian(n, 53);
  rows["nan and inf"][3] = nan;
  rows["nan and inf"][260] = inf;
  rows["nan and inf"][400] = -inf;
  const std::vector<float> bad_importance(n, nan);
  for (QuantType t : kTypes) {
    const TypeInfo& ti = type_info(t);
    for (const auto& [name, x] : rows) {
      for (const float* imatrix : {static_cast<const float*>(nullptr), bad_importance.data()}) {
        INFO(ti.name << " " << name << (imatrix ? " (NaN importance)" : ""));
        const auto q = quantize(ti, Registry::instance().quantize(t), x, n, imatrix);
        CHECK(q == quantize(ti, ti.quantize_ref, x, n, imatrix));
        const auto y = dequantize(ti, Registry::instance().dequantize(t), q, n);
        bool finite = true;
        for (float v : y) finite = finite && std::isfinite(v);
        CHECK(finite);
        if (name == "zeros") {
          for (float v : y) CHECK(v == 0.f);
        }
        // IQ3 has no zero level: the least-squares scale shrinks a lone outlier by up to ~15%.
        if (name == "outlier") CHECK(std::fabs(y[77] + 1000.f) <= 200.f);
        if (name == "outlier in noise") CHECK(std::fabs(y[300] - 50.f) <= 10.f);
      }
    }
  }
}

TEST_CASE("iquants-a: quantizing rows on several threads gives the same bytes", "[iquants-a]") {
  const int64_t n = 512, rows = 48;
  const auto x = test::gaussian(static_cast<size_t>(n * rows), 61);
  const auto w = importance(static_cast<size_t>(n), 62);
  for (QuantType t : kTypes) {
    const TypeInfo& ti = type_info(t);
    INFO(ti.name);
    const QuantizeFn fn = Registry::instance().quantize(t);
    const auto serial = quantize(ti, fn, x, n, w.data());
    std::vector<uint8_t> par(serial.size());
    parallel_for(rows, 4, 1, [&](int64_t r0, int64_t r1) {
      fn(x.data() + r0 * n, par.data() + static_cast<size_t>(r0) * ti.row_bytes(n), r1 - r0, n, w.data());
    });
    CHECK(par == serial);
  }
}

namespace {

struct ModelTensor {
  std::string name;
  int64_t ne0 = 0, rows = 0;
  std::vector<float> x;
  std::vector<float> imatrix;  // empty: no entry
};

std::vector<ModelTensor> load_model(const std::filesystem::path& model, const std::filesystem::path& imat) {
  gguf::Reader r(model), im(imat);
  std::vector<ModelTensor> out;
  for (const auto& t : r.tensors()) {
    if (t.ne.size() < 2) continue;
    ModelTensor m{t.name, t.ne[0], t.n_rows(), std::vector<float>(static_cast<size_t>(t.n_elements())), {}};
    r.read_rows_f32(t, 0, t.n_rows(), m.x.data());
    const auto* sum2 = im.find_tensor(t.name + ".in_sum2");
    const auto* counts = im.find_tensor(t.name + ".counts");
    if (sum2 && counts && sum2->ne[0] == t.ne[0]) {
      std::vector<float> s(static_cast<size_t>(sum2->n_elements())), c(static_cast<size_t>(counts->n_elements()));
      im.read_rows_f32(*sum2, 0, sum2->n_rows(), s.data());
      im.read_rows_f32(*counts, 0, counts->n_rows(), c.data());
      m.imatrix.resize(static_cast<size_t>(t.ne[0]));
      for (int64_t j = 0; j < t.ne[0]; ++j) m.imatrix[j] = c[0] > 0 ? s[j] / c[0] : 1.f;
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

// Acceptance on the real model: for every tensor llama.cpp stored in one of these types, our
// quantization of the original weights has no larger RMSE and, where llama.cpp used the imatrix,
// no larger imatrix-weighted error (manifest figures, per tensor).
TEST_CASE("iquants-a: error on the tiny model is no worse than llama.cpp's", "[iquants-a][golden]") {
  const auto man_path = test::shared_file("golden/manifest.json");
  const auto model_path = test::shared_file("golden/tiny-llama-BF16.gguf");
  const auto imat_path = test::shared_file("golden/imatrix.gguf");
  if (!man_path || !model_path || !imat_path) return;
  std::ifstream in(*man_path);
  const auto manifest = nlohmann::json::parse(in);
  const auto tensors = load_model(*model_path, *imat_path);
  int checked = 0;
  for (QuantType t : kTypes) {
    const TypeInfo& ti = type_info(t);
    for (const std::string dir : {"pure/", "pure-imatrix/"}) {
      const std::string key = dir + ti.name + ".gguf";
      if (!manifest.at("files").contains(key)) continue;
      const auto& file = manifest["files"][key];
      const bool with_imatrix = file.value("imatrix", false);
      std::vector<const ModelTensor*> todo;
      for (const auto& m : tensors)
        if (file["tensors"].contains(m.name) && file["tensors"][m.name]["type"].get<int>() == static_cast<int>(t))
          todo.push_back(&m);
      std::vector<double> rmse(todo.size()), werr(todo.size(), -1);
      const QuantizeFn quant = Registry::instance().quantize(t);
      const DequantizeFn deq = Registry::instance().dequantize(t);
      parallel_for(static_cast<int64_t>(todo.size()), 0, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const ModelTensor& m = *todo[i];
          const float* imatrix = with_imatrix && !m.imatrix.empty() ? m.imatrix.data() : nullptr;
          const auto y = dequantize(ti, deq, quantize(ti, quant, m.x, m.ne0, imatrix), m.ne0);
          double se = 0, we = 0, wx = 0;
          for (size_t k = 0; k < y.size(); ++k) {
            const double e = static_cast<double>(m.x[k]) - y[k];
            se += e * e;
            if (!m.imatrix.empty()) {
              we += m.imatrix[k % m.ne0] * e * e;
              wx += m.imatrix[k % m.ne0] * static_cast<double>(m.x[k]) * m.x[k];
            }
          }
          rmse[i] = std::sqrt(se / static_cast<double>(y.size()));
          if (!m.imatrix.empty()) werr[i] = we / wx;
        }
      });
      for (size_t i = 0; i < todo.size(); ++i) {
        const auto& rec = file["tensors"][todo[i]->name];
        INFO(key << " " << todo[i]->name);
        CHECK(rmse[i] <= rec.at("rmse").get<double>());
        if (with_imatrix && rec.contains("weighted_err") && werr[i] >= 0)
          CHECK(werr[i] <= rec["weighted_err"].get<double>());
        ++checked;
      }
    }
  }
  CHECK(checked >= 400);
}
