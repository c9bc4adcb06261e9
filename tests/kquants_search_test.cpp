// The K-quant searches (Q2_K..Q6_K): what their rows promise, tolerances tight enough to notice a
// regression, importance-weighted searches that beat the plain ones on the weighted error,
// columns without importance, adversarial rows, the search's fp16 rounding, and the quality bar
// on the tiny model: no tensor worse than llama.cpp's golden files. The checks every row of the
// type table gets (round trips, kernels equal to the references on every back-end and ISA, dot
// products, batching) are in types_table_test.cpp and cpu_isa_kernels_test.cpp.
#include <lq/backend.hpp>
#include <lq/gguf.hpp>
#include <lq/decode.hpp>
#include <lq/imatrix.hpp>
#include <lq/quant_type.hpp>
#include <lq/threads.hpp>

#include "core/half.hpp"
#include "types/ref/kquant_search.hpp"
#include "types/ref/kquants.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

using namespace lq;

namespace {

constexpr QuantType kKTypes[] = {QuantType::Q2_K, QuantType::Q3_K, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K};

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

// rows x n values from N(0, 1) (seed) and n heavy-tailed importance weights (seed + 1).
std::pair<std::vector<float>, std::vector<float>> kq_rows_and_importance(int64_t n, int64_t rows, uint32_t seed) {
  return {test::gaussian(static_cast<size_t>(n * rows), seed), test::uneven_importance(static_cast<size_t>(n), seed + 1)};
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
    // The CPU back-end has its own kernels for each op (no fallback to the reference).
    const KernelSet cpu = Registry::instance().cpu().kernels(t);
    CHECK(cpu.quantize != nullptr);
    CHECK(cpu.dequantize != nullptr);
    CHECK(cpu.dot != nullptr);
  }
}

TEST_CASE("k-quants: round trip within a tight row tolerance, weighted search beats the plain one", "[kquants]") {
  const QuantType t = GENERATE(from_range(std::begin(kKTypes), std::end(kKTypes)));
  const TypeInfo& ti = type_info(t);
  INFO(ti.name);
  const int64_t n = 1024, rows = 16;
  const auto [x, w] = kq_rows_and_importance(n, rows, 11);

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
  auto [x, w] = kq_rows_and_importance(n, rows, 61);
  for (int64_t c = 16; c < 80; ++c) w[c] = 0;    // whole sub-blocks of the first super-block
  for (int64_t c = 512; c < 768; ++c) w[c] = 0;  // the whole third super-block
  for (QuantizeFn fn : {ti.quantize_ref, Registry::instance().kernels(Registry::instance().cpu(), t).quantize}) {
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

TEST_CASE("k-quants: adversarial rows decode finitely with sensible error", "[kquants]") {
  const QuantType t = GENERATE(from_range(std::begin(kKTypes), std::end(kKTypes)));
  const TypeInfo& ti = type_info(t);
  const int64_t n = 512;
  const auto w = test::uneven_importance(static_cast<size_t>(n), 51);
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
  const QuantizeFn cpu_quantize = Registry::instance().kernels(Registry::instance().cpu(), t).quantize;
  for (const auto& c : cases) {
    for (const float* wp : {static_cast<const float*>(nullptr), w.data()}) {
      INFO(ti.name << " " << c.name << (wp ? " weighted" : ""));
      for (QuantizeFn fn : {ti.quantize_ref, cpu_quantize}) {
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
    const auto y = dequantize(ti.dequantize_ref, ti, quantize(cpu_quantize, ti, x, 1, n, nullptr), 1, n);
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
  std::unique_ptr<gguf::Reader> model;
  Imatrix imatrix;
};

const Golden* golden() {
  static const Golden g = [] {
    Golden r;
    r.manifest = test::golden_manifest();
    const auto mdl = test::shared_file("golden/tiny-llama-BF16.gguf");
    const auto im = test::shared_file("golden/imatrix.gguf");
    if (r.manifest.is_null() || !mdl || !im) return r;
    r.model = std::make_unique<gguf::Reader>(*mdl);
    r.imatrix = Imatrix::load(*im);
    return r;
  }();
  return g.model ? &g : nullptr;
}

}  // namespace

TEST_CASE("k-quants: tiny model error no worse than llama.cpp, tensor by tensor", "[kquants][golden]") {
  const Golden* g = golden();
  if (!g) return;  // skipped by shared_file()
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
        read_rows_f32(*g->model, tensor, 0, nrows, x.data());
        const auto w = g->imatrix.column_weights(tensor.name, ncols).value_or(std::vector<float>{});
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

TEST_CASE("k-quants: Q6_K by square beats the plain search on the square-weighted error, and llama.cpp on the tiny model's RMSE",
          "[kquants][golden]") {
  const TypeInfo& ti = type_info(QuantType::Q6_K);
  const int64_t n = 1024, rows = 16;
  const auto xw = kq_rows_and_importance(n, rows, 23);
  const std::vector<float>& x = xw.first;
  std::vector<float> sq(x.size());
  for (size_t i = 0; i < x.size(); ++i) sq[i] = x[i] * x[i];
  auto sq_err = [&](const std::vector<float>& y) {
    double e = 0;
    for (size_t i = 0; i < x.size(); ++i) e += static_cast<double>(sq[i]) * (x[i] - y[i]) * (x[i] - y[i]);
    return e;
  };
  const auto plain = dequantize(ti.dequantize_ref, ti, quantize(ti.quantize_ref, ti, x, rows, n, nullptr), rows, n);
  const auto by_sq = dequantize(ti.dequantize_ref, ti, quantize(ref::quantize_q6_k_by_square, ti, x, rows, n, nullptr), rows, n);
  CHECK(sq_err(by_sq) < sq_err(plain));
  CHECK(rel_rmse(x, by_sq, n) <= ti.tolerance * 1.15);

  // The golden bar for tensors quantized without importance: RMSE no worse than llama.cpp's
  // (whose Q6_K weighs by the square too) on every Q6_K tensor of the tiny model.
  const Golden* g = golden();
  if (!g) return;
  const auto& recs = g->manifest.at("files").at("pure/Q6_K.gguf").at("tensors");
  int checked = 0;
  for (const auto& tensor : g->model->tensors()) {
    if (!recs.contains(tensor.name) || recs.at(tensor.name).at("type").get<int>() != static_cast<int>(QuantType::Q6_K)) continue;
    const int64_t ncols = tensor.ne[0], nrows = tensor.n_rows();
    std::vector<float> v(static_cast<size_t>(ncols * nrows));
    read_rows_f32(*g->model, tensor, 0, nrows, v.data());
    const auto y = dequantize(ti.dequantize_ref, ti, quantize(ref::quantize_q6_k_by_square, ti, v, nrows, ncols, nullptr), nrows, ncols);
    double e = 0;
    for (size_t k = 0; k < v.size(); ++k) e += (static_cast<double>(v[k]) - y[k]) * (static_cast<double>(v[k]) - y[k]);
    INFO(tensor.name);
    CHECK(std::sqrt(e / static_cast<double>(v.size())) <= recs.at(tensor.name).at("rmse").get<double>());
    ++checked;
  }
  CHECK(checked >= 40);
}
