// K-quants (Q2_K..Q6_K): round trips within the row tolerance, CPU kernels (every compiled ISA
// this machine runs) equal to the reference, dot products, adversarial rows, and the quality
// bar on the tiny model: no tensor worse than llama.cpp's golden files.
#include <lq/backend.hpp>
#include <lq/gguf.hpp>
#include <lq/quant_type.hpp>
#include <lq/threads.hpp>

#include "core/half.hpp"
#include "kquants.hpp"
#include "types/ref/kquant_search.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <vector>

LQ_CPU_KQUANT_KERNELS(LQ_CPU_EXTERN)

using namespace lq;

namespace {

constexpr QuantType kKTypes[] = {QuantType::Q2_K, QuantType::Q3_K, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K};

// The kernels of every ISA, not only the one the dispatcher picks on this machine.
struct IsaKernels {
  const char* isa;
  bool usable;
  KernelSet k[5];  // in kKTypes order
};

template <class A>
IsaKernels isa_kernels(const char* name) {
  using namespace lq::cpu;
  return {name,
          cpu::isa_usable<A>(),
          {{QuantizeQ2K<A>::run, DequantQ2K<A>::run, DotQ2K<A>::run},
           {QuantizeQ3K<A>::run, DequantQ3K<A>::run, DotQ3K<A>::run},
           {QuantizeQ4K<A>::run, DequantQ4K<A>::run, DotQ4K<A>::run},
           {QuantizeQ5K<A>::run, DequantQ5K<A>::run, DotQ5K<A>::run},
           {QuantizeQ6K<A>::run, DequantQ6K<A>::run, DotQ6K<A>::run}}};
}

std::vector<IsaKernels> all_isas() {
  std::vector<IsaKernels> v;
  cpu::for_each_isa([&](auto arch, const char* name) { v.push_back(isa_kernels<decltype(arch)>(name)); });
  return v;
}

int type_index(QuantType t) {
  for (int i = 0; i < 5; ++i)
    if (kKTypes[i] == t) return i;
  return -1;
}

std::vector<uint8_t> quantize(QuantizeFn fn, const TypeInfo& ti, const std::vector<float>& x, int64_t rows, int64_t n,
                              const float* w) {
  std::vector<uint8_t> q(ti.row_bytes(n) * rows);
  fn(x.data(), q.data(), rows, n, w);
  return q;
}

std::vector<float> dequantize(DequantizeFn fn, const TypeInfo& ti, const std::vector<uint8_t>& q, int64_t rows, int64_t n) {
  std::vector<float> y(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r) fn(q.data() + r * ti.row_bytes(n), y.data() + r * n, n);
  return y;
}

// sqrt(sum w (x - y)^2 / sum w x^2), w per column (n values) or 1.
double rel_rmse(const std::vector<float>& x, const std::vector<float>& y, int64_t n, const float* w = nullptr) {
  double e = 0, s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double wi = w ? w[i % n] : 1.0, d = static_cast<double>(x[i]) - y[i];
    e += wi * d * d;
    s += wi * static_cast<double>(x[i]) * x[i];
  }
  return s > 0 ? std::sqrt(e / s) : std::sqrt(e);
}

std::vector<float> importance(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<float> ln(0.f, 1.5f);  // heavy-tailed, like real imatrix columns
  std::vector<float> w(static_cast<size_t>(n));
  for (auto& v : w) v = ln(rng);
  return w;
}

// Rows that stress the searches: heavy tails, outliers, offsets, sparse and tiny values.
std::vector<std::vector<float>> varied_rows(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::student_t_distribution<float> heavy(2.f);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<std::vector<float>> rows;
  auto make = [&](auto fn) {
    std::vector<float> r(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) r[i] = fn(i);
    rows.push_back(std::move(r));
  };
  make([&](int64_t) { return g(rng); });
  make([&](int64_t) { return 0.02f * heavy(rng); });
  make([&](int64_t) { return 3.f + u(rng); });             // all positive
  make([&](int64_t) { return -5.f + 0.1f * g(rng); });     // all negative
  make([&](int64_t i) { return i % 97 == 0 ? 40.f * g(rng) : g(rng); });
  make([&](int64_t) { return u(rng) < -0.8f ? g(rng) : 0.f; });  // sparse
  make([&](int64_t) { return 1e-6f * g(rng); });
  make([&](int64_t) { return 1e3f * u(rng); });
  make([&](int64_t i) { return static_cast<float>(i % 7) - 3.f; });  // few distinct values
  return rows;
}

}  // namespace

TEST_CASE("k-quants: rows of the type table", "[kquants]") {
  for (QuantType t : kKTypes) {
    const TypeInfo& ti = type_info(t);
    INFO(ti.name);
    CHECK(ti.block_size == 256);
    CHECK(ti.dot_type == QuantType::Q8_K);
    CHECK(ti.quantize_ref != nullptr);
    CHECK(ti.dequantize_ref != nullptr);
    CHECK(ti.dot_ref != nullptr);
    CHECK(ti.tolerance > 0);
    CHECK(ti.cpu.quantize != nullptr);
    CHECK(ti.cpu.dequantize != nullptr);
    CHECK(ti.cpu.dot != nullptr);
  }
}

TEST_CASE("k-quants: round trip within the row tolerance", "[kquants]") {
  const QuantType t = GENERATE(from_range(std::begin(kKTypes), std::end(kKTypes)));
  const TypeInfo& ti = type_info(t);
  INFO(ti.name);
  const int64_t n = 1024, rows = 16;
  const auto x = test::gaussian(static_cast<size_t>(n * rows), 11);
  const auto w = importance(n, 12);

  const auto plain = dequantize(ti.dequantize_ref, ti, quantize(ti.quantize_ref, ti, x, rows, n, nullptr), rows, n);
  const double e_plain = rel_rmse(x, plain, n);
  CHECK(e_plain <= ti.tolerance);
  CHECK(e_plain > ti.tolerance * 0.8);  // the tolerance is tight enough to notice a regression

  const auto weighted = dequantize(ti.dequantize_ref, ti, quantize(ti.quantize_ref, ti, x, rows, n, w.data()), rows, n);
  const double ew_weighted = rel_rmse(x, weighted, n, w.data());
  CHECK(ew_weighted <= ti.tolerance);
  // The weighted search minimises the weighted error: it must beat the unweighted result on it.
  CHECK(ew_weighted < rel_rmse(x, plain, n, w.data()));
  CHECK(rel_rmse(x, weighted, n) <= ti.tolerance * 1.15);
}

TEST_CASE("k-quants: columns without importance keep their accuracy", "[kquants]") {
  const QuantType t = GENERATE(from_range(std::begin(kKTypes), std::end(kKTypes)));
  const TypeInfo& ti = type_info(t);
  INFO(ti.name);
  const int64_t n = 768, rows = 8;
  const auto x = test::gaussian(static_cast<size_t>(n * rows), 61);
  auto w = importance(n, 62);
  for (int64_t c = 16; c < 80; ++c) w[c] = 0;    // whole sub-blocks of the first super-block
  for (int64_t c = 512; c < 768; ++c) w[c] = 0;  // the whole third super-block
  for (QuantizeFn fn : {ti.quantize_ref, ti.cpu.quantize}) {
    const auto y = dequantize(ti.dequantize_ref, ti, quantize(fn, ti, x, rows, n, w.data()), rows, n);
    std::vector<float> xd, yd;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c)
        if (w[c] == 0) {
          xd.push_back(x[r * n + c]);
          yd.push_back(y[r * n + c]);
        }
    CHECK(rel_rmse(xd, yd, 1) <= ti.tolerance * 1.25);
  }
}

TEST_CASE("k-quants: row lengths and row counts", "[kquants]") {
  const QuantType t = GENERATE(from_range(std::begin(kKTypes), std::end(kKTypes)));
  const TypeInfo& ti = type_info(t);
  INFO(ti.name);
  for (const int64_t n : {256, 768, 2816}) {
    for (const int64_t rows : {1, 3}) {
      const auto x = test::gaussian(static_cast<size_t>(n * rows), 21);
      // A multi-row call must equal row-by-row calls (rows are independent).
      const auto all = quantize(ti.quantize_ref, ti, x, rows, n, nullptr);
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<float> row(x.begin() + r * n, x.begin() + (r + 1) * n);
        const auto one = quantize(ti.quantize_ref, ti, row, 1, n, nullptr);
        CHECK(std::memcmp(one.data(), all.data() + r * ti.row_bytes(n), one.size()) == 0);
      }
      CHECK(rel_rmse(x, dequantize(ti.dequantize_ref, ti, all, rows, n), n) <= ti.tolerance * 1.1);
    }
  }
}

TEST_CASE("k-quants: CPU kernels equal the reference on every ISA", "[kquants]") {
  const QuantType t = GENERATE(from_range(std::begin(kKTypes), std::end(kKTypes)));
  const TypeInfo& ti = type_info(t);
  const int ti_idx = type_index(t);
  const int64_t n = 768;
  const auto rows = varied_rows(n, 31);
  const auto w = importance(n, 32);
  std::vector<float> act = test::gaussian(static_cast<size_t>(n), 33);
  const TypeInfo& q8k = type_info(QuantType::Q8_K);
  std::vector<uint8_t> a(q8k.row_bytes(n));
  q8k.quantize_ref(act.data(), a.data(), 1, n, nullptr);

  for (const IsaKernels& isa : all_isas()) {
    if (!isa.usable) continue;
    const KernelSet& k = isa.k[ti_idx];
    for (size_t r = 0; r < rows.size(); ++r) {
      for (const float* wp : {static_cast<const float*>(nullptr), w.data()}) {
        INFO(ti.name << " isa " << isa.isa << " row kind " << r << (wp ? " weighted" : ""));
        const auto qr = quantize(ti.quantize_ref, ti, rows[r], 1, n, wp);
        const auto qk = quantize(k.quantize, ti, rows[r], 1, n, wp);
        REQUIRE(qr.size() == qk.size());
        CHECK(std::memcmp(qr.data(), qk.data(), qr.size()) == 0);

        const auto yr = dequantize(ti.dequantize_ref, ti, qr, 1, n);
        const auto yk = dequantize(k.dequantize, ti, qr, 1, n);
        CHECK(std::memcmp(yr.data(), yk.data(), yr.size() * sizeof(float)) == 0);

        const float dr = ti.dot_ref(n, qr.data(), a.data());
        const float dk = k.dot(n, qr.data(), a.data());
        double mag = 0;  // sum |x y|: the scale of the rounding differences
        std::vector<float> ad(static_cast<size_t>(n));
        q8k.dequantize_ref(a.data(), ad.data(), n);
        for (int64_t i = 0; i < n; ++i) mag += std::fabs(static_cast<double>(yr[i]) * ad[i]);
        CHECK(std::fabs(dr - dk) <= 1e-5 * mag + 1e-30);
      }
    }
  }
}

TEST_CASE("k-quants: quantized dot equals the float dot of the decoded rows", "[kquants]") {
  const QuantType t = GENERATE(from_range(std::begin(kKTypes), std::end(kKTypes)));
  const TypeInfo& ti = type_info(t);
  INFO(ti.name);
  const int64_t n = 2048;
  const auto x = test::gaussian(static_cast<size_t>(n), 41);
  const auto act = test::gaussian(static_cast<size_t>(n), 42);
  const TypeInfo& q8k = type_info(QuantType::Q8_K);
  std::vector<uint8_t> a(q8k.row_bytes(n));
  q8k.quantize_ref(act.data(), a.data(), 1, n, nullptr);
  std::vector<float> ad(static_cast<size_t>(n));
  q8k.dequantize_ref(a.data(), ad.data(), n);
  const auto q = quantize(ti.quantize_ref, ti, x, 1, n, nullptr);
  const auto xd = dequantize(ti.dequantize_ref, ti, q, 1, n);

  double exact = 0, decoded = 0, mag = 0, norm_x = 0, norm_a = 0;
  for (int64_t i = 0; i < n; ++i) {
    exact += static_cast<double>(x[i]) * act[i];
    decoded += static_cast<double>(xd[i]) * ad[i];
    mag += std::fabs(static_cast<double>(xd[i]) * ad[i]);
    norm_x += static_cast<double>(x[i]) * x[i];
    norm_a += static_cast<double>(act[i]) * act[i];
  }
  for (DotFn dot : {ti.dot_ref, ti.cpu.dot}) {
    const double got = dot(n, q.data(), a.data());
    CHECK(std::fabs(got - decoded) <= 1e-5 * mag);
    // Against the unquantized dot: the error is bounded by the two rows' quantization errors.
    CHECK(std::fabs(got - exact) <= 4 * (ti.tolerance + 0.01) * std::sqrt(norm_x * norm_a / n) * std::sqrt(n));
  }
}

TEST_CASE("k-quants: adversarial rows decode finitely with sensible error", "[kquants]") {
  const QuantType t = GENERATE(from_range(std::begin(kKTypes), std::end(kKTypes)));
  const TypeInfo& ti = type_info(t);
  const int64_t n = 512;
  const auto w = importance(n, 51);
  const auto g = test::gaussian(static_cast<size_t>(n), 52);
  struct Case {
    const char* name;
    std::vector<float> x;
    double max_rel;  // bound on the relative RMSE
  };
  std::vector<Case> cases;
  cases.push_back({"zeros", std::vector<float>(n, 0.f), 0});
  cases.push_back({"constant +", std::vector<float>(n, 0.37f), ti.tolerance});
  cases.push_back({"constant -", std::vector<float>(n, -2.5f), ti.tolerance});
  cases.push_back({"denormals", std::vector<float>(n, 3e-41f), 1.0});
  {
    std::vector<float> x = g;
    x[100] = 1e4f;
    cases.push_back({"one huge outlier", x, 1.0});
  }
  {
    std::vector<float> x(n, 0.f);
    x[300] = -7.f;
    cases.push_back({"single spike", x, ti.tolerance});
  }
  {
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = i % 2 ? 1e-38f : -1e-38f;
    cases.push_back({"tiny alternating", x, 1.0});
  }
  {
    std::vector<float> x = g;
    for (auto& v : x) v *= 3e4f;
    cases.push_back({"large values", x, ti.tolerance * 1.1});
  }
  for (const auto& c : cases) {
    for (const float* wp : {static_cast<const float*>(nullptr), w.data()}) {
      INFO(ti.name << " " << c.name << (wp ? " weighted" : ""));
      for (QuantizeFn fn : {ti.quantize_ref, ti.cpu.quantize}) {
        const auto y = dequantize(ti.dequantize_ref, ti, quantize(fn, ti, c.x, 1, n, wp), 1, n);
        bool finite = true;
        for (float v : y) finite = finite && std::isfinite(v);
        CHECK(finite);
        CHECK(rel_rmse(c.x, y, n) <= c.max_rel + 1e-12);
        if (std::string(c.name) == "one huge outlier") CHECK(std::fabs(y[100] - 1e4f) <= 0.05 * 1e4);
        if (std::string(c.name) == "zeros") CHECK(*std::max_element(y.begin(), y.end()) == 0.f);
      }
    }
  }
  SECTION("NaN and Inf do not crash and stay in their super-block") {
    std::vector<float> x = g;
    x[10] = std::numeric_limits<float>::quiet_NaN();
    x[20] = std::numeric_limits<float>::infinity();
    const auto y = dequantize(ti.dequantize_ref, ti, quantize(ti.cpu.quantize, ti, x, 1, n, nullptr), 1, n);
    std::vector<float> tail_x(x.begin() + 256, x.end()), tail_y(y.begin() + 256, y.end());
    CHECK(rel_rmse(tail_x, tail_y, 256) <= ti.tolerance * 1.2);
  }
}

TEST_CASE("k-quants: the search's fp16 rounding matches the converter", "[kquants]") {
  struct Tag {};
  using Sc = ref::kq::Scalar<Tag>;
  auto check = [](float f) {
    const float want = fp16_to_f32(f32_to_fp16(f));
    const float got = Sc::fp16_round(f);
    if (want != got) FAIL_CHECK("fp16_round(" << f << ") = " << got << ", converter gives " << want);
    if (f32_to_fp16(want) != Sc::fp16_bits(want)) FAIL_CHECK("fp16_bits(" << want << ")");
  };
  for (uint32_t h = 0; h < 0x7c00u; ++h) {  // every finite fp16 value, its neighbours and midpoints
    const float v = fp16_to_f32(static_cast<uint16_t>(h));
    const float next = fp16_to_f32(static_cast<uint16_t>(h + 1));
    for (float f : {v, -v, 0.5f * (v + next), -0.5f * (v + next), std::nextafter(0.5f * (v + next), 0.f),
                    std::nextafter(0.5f * (v + next), 1e9f)})
      if (std::fabs(f) <= 65504.f) check(f);
  }
  check(1e-30f);
  check(-1e-42f);
}

// ---- golden quality: our error on the tiny model no worse than llama.cpp's, tensor by tensor ----

namespace {

struct Golden {
  nlohmann::json manifest;
  std::unique_ptr<gguf::Reader> model, imatrix;
};

const Golden* golden() {
  static const Golden g = [] {
    Golden r;
    const auto m = test::shared_file("golden/manifest.json");
    const auto mdl = test::shared_file("golden/tiny-llama-BF16.gguf");
    const auto im = test::shared_file("golden/imatrix.gguf");
    if (!m || !mdl || !im) return r;
    std::ifstream in(*m);
    r.manifest = nlohmann::json::parse(in);
    r.model = std::make_unique<gguf::Reader>(*mdl);
    r.imatrix = std::make_unique<gguf::Reader>(*im);
    return r;
  }();
  return g.model ? &g : nullptr;
}

std::vector<float> imatrix_columns(const gguf::Reader& im, const std::string& name, int64_t ncols) {
  const auto* sums = im.find_tensor(name + ".in_sum2");
  const auto* counts = im.find_tensor(name + ".counts");
  if (!sums || !counts || sums->ne[0] != ncols) return {};
  std::vector<float> w(static_cast<size_t>(ncols));
  float count = 0;
  im.read_rows_f32(*sums, 0, 1, w.data());
  im.read_rows_f32(*counts, 0, 1, &count);
  for (auto& v : w) v = count > 0 ? v / count : 1.f;
  return w;
}

}  // namespace

TEST_CASE("k-quants: tiny model error no worse than llama.cpp, tensor by tensor", "[kquants][golden]") {
  const Golden* g = golden();
  if (!g) return;
  const QuantType t = GENERATE(from_range(std::begin(kKTypes), std::end(kKTypes)));
  const TypeInfo& ti = type_info(t);
  const QuantizeFn quantize_fn = Registry::instance().quantize(t);
  for (const bool use_im : {false, true}) {
    const std::string key = std::string(use_im ? "pure-imatrix/" : "pure/") + ti.name + ".gguf";
    const auto& files = g->manifest.at("files");
    REQUIRE(files.contains(key));
    const auto& recs = files.at(key).at("tensors");
    std::vector<const gguf::TensorInfo*> todo;
    for (const auto& tensor : g->model->tensors())
      if (recs.contains(tensor.name) && recs.at(tensor.name).at("type").get<int>() == static_cast<int>(t))
        todo.push_back(&tensor);
    REQUIRE(todo.size() >= 40);
    struct Result {
      double rmse = 0, werr = -1;
      bool weighted = false;
    };
    std::vector<Result> res(todo.size());
    parallel_for(static_cast<int64_t>(todo.size()), 0, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const auto& tensor = *todo[i];
        const int64_t ncols = tensor.ne[0], nrows = tensor.n_rows();
        std::vector<float> x(static_cast<size_t>(ncols * nrows));
        g->model->read_rows_f32(tensor, 0, nrows, x.data());
        const auto w = imatrix_columns(*g->imatrix, tensor.name, ncols);
        const auto y = dequantize(ti.dequantize_ref, ti, quantize(quantize_fn, ti, x, nrows, ncols, use_im && !w.empty() ? w.data() : nullptr),
                                  nrows, ncols);
        double sq = 0, wsq = 0, wref = 0;
        for (size_t k = 0; k < x.size(); ++k) {
          const double d = static_cast<double>(x[k]) - y[k];
          sq += d * d;
          if (!w.empty()) {
            wsq += w[k % ncols] * d * d;
            wref += w[k % ncols] * static_cast<double>(x[k]) * x[k];
          }
        }
        res[i].rmse = std::sqrt(sq / static_cast<double>(x.size()));
        res[i].weighted = use_im && !w.empty();
        if (!w.empty()) res[i].werr = wsq / wref;
      }
    });
    for (size_t i = 0; i < todo.size(); ++i) {
      const auto& rec = recs.at(todo[i]->name);
      INFO(key << " " << todo[i]->name);
      if (res[i].weighted) {
        INFO("weighted error ours " << res[i].werr << " llama.cpp " << rec.at("weighted_err").get<double>());
        CHECK(res[i].werr <= rec.at("weighted_err").get<double>());
      } else {
        INFO("rmse ours " << res[i].rmse << " llama.cpp " << rec.at("rmse").get<double>());
        CHECK(res[i].rmse <= rec.at("rmse").get<double>());
      }
    }
  }
}
