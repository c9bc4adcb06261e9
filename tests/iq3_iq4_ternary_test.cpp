// The grid, non-linear and ternary types (IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0): what
// their rows promise, the IQ4 value and cell tables, round trips under uneven importance,
// importance lowering the weighted error, hostile rows (NaN, Inf, outliers, NaN importance), and
// the error on the real tiny model against llama.cpp's files. The checks every row of the type
// table gets (kernels equal to the references on every back-end and ISA, dot products, threads)
// are in types_table_test.cpp and cpu_isa_kernels_test.cpp.
#include <lq/backend.hpp>
#include <lq/decode.hpp>
#include <lq/gguf.hpp>
#include <lq/model.hpp>
#include <lq/quant_type.hpp>
#include <lq/threads.hpp>

#include "types/ref/iq4_search.hpp"
#include "types/ref/iq_tables.hpp"
#include "types/ref/lanes.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

using namespace lq;

namespace {

constexpr QuantType kSearchTypes[] = {QuantType::IQ3_XXS, QuantType::IQ3_S, QuantType::IQ4_NL,
                                QuantType::IQ4_XS,  QuantType::TQ1_0, QuantType::TQ2_0};

}  // namespace

TEST_CASE("iq3/iq4/ternary: table rows", "[iquants]") {
  for (QuantType t : kSearchTypes) {
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

TEST_CASE("iq3/iq4/ternary: round trip within the row tolerance", "[iquants]") {
  for (QuantType t : kSearchTypes) {
    const TypeInfo& ti = type_info(t);
    for (int64_t n : {int64_t{256}, int64_t{768}, int64_t{4096}}) {
      const auto x = test::gaussian(static_cast<size_t>(8 * n), 11);
      const auto w = test::uneven_importance(static_cast<size_t>(n), 12);
      for (const float* imatrix : {static_cast<const float*>(nullptr), w.data()}) {
        INFO(ti.name << " n=" << n << (imatrix ? " with" : " without") << " importance");
        const auto q = test::quantize_rows(ti.quantize_ref, ti, x, n, imatrix);
        CHECK(test::rel_rmse(x, test::dequantize_rows(ti.dequantize_ref, ti, q, n)) <= ti.tolerance);
      }
    }
  }
}

TEST_CASE("iq3/iq4/ternary: importance weights lower the weighted error", "[iquants]") {
  const int64_t n = 1024;
  const auto x = test::gaussian(static_cast<size_t>(16 * n), 21);
  const auto w = test::uneven_importance(static_cast<size_t>(n), 22);
  auto werr = [&](const std::vector<float>& y) {
    double e = 0;
    for (size_t i = 0; i < x.size(); ++i) e += w[i % n] * (x[i] - y[i]) * (x[i] - y[i]);
    return e;
  };
  for (QuantType t : kSearchTypes) {
    const TypeInfo& ti = type_info(t);
    INFO(ti.name);
    auto decoded = [&](const float* imatrix) {
      return test::dequantize_rows(ti.dequantize_ref, ti, test::quantize_rows(ti.quantize_ref, ti, x, n, imatrix), n);
    };
    const double plain = werr(decoded(nullptr));
    const double weighted = werr(decoded(w.data()));
    CHECK(weighted < plain);
  }
}

TEST_CASE("iq3/iq4/ternary: hostile rows decode to finite values", "[iquants]") {
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
  for (QuantType t : kSearchTypes) {
    const TypeInfo& ti = type_info(t);
    for (const auto& [name, x] : rows) {
      for (const float* imatrix : {static_cast<const float*>(nullptr), bad_importance.data()}) {
        INFO(ti.name << " " << name << (imatrix ? " (NaN importance)" : ""));
        const auto q = test::quantize_rows(Registry::instance().quantize(t), ti, x, n, imatrix);
        CHECK(q == test::quantize_rows(ti.quantize_ref, ti, x, n, imatrix));
        const auto y = test::dequantize_rows(Registry::instance().dequantize(t), ti, q, n);
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

namespace {

struct GoldenTensor {
  std::string name;
  int64_t ne0 = 0, rows = 0;
  std::vector<float> x;
  std::vector<float> imatrix;  // empty: no entry
};

std::vector<GoldenTensor> load_model(const std::filesystem::path& model, const std::filesystem::path& imat) {
  gguf::Reader r(model), im(imat);
  std::vector<GoldenTensor> out;
  for (const auto& t : r.tensors()) {
    if (t.ne.size() < 2) continue;
    GoldenTensor m{t.name, t.ne[0], t.n_rows(), std::vector<float>(static_cast<size_t>(t.n_elements())), {}};
    read_rows_f32(r, t, 0, t.n_rows(), m.x.data());
    const auto* sum2 = im.find_tensor(t.name + ".in_sum2");
    const auto* counts = im.find_tensor(t.name + ".counts");
    if (sum2 && counts && sum2->ne[0] == t.ne[0]) {
      std::vector<float> s(static_cast<size_t>(sum2->n_elements())), c(static_cast<size_t>(counts->n_elements()));
      read_rows_f32(im, *sum2, 0, sum2->n_rows(), s.data());
      read_rows_f32(im, *counts, 0, counts->n_rows(), c.data());
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
TEST_CASE("iq3/iq4/ternary: error on the tiny model is no worse than llama.cpp's", "[iquants][golden]") {
  const auto manifest = test::golden_manifest();
  const auto model_path = test::shared_file("golden/tiny-llama-BF16.gguf");
  const auto imat_path = test::shared_file("golden/imatrix.gguf");
  if (manifest.is_null() || !model_path || !imat_path) return;
  const auto tensors = load_model(*model_path, *imat_path);
  int checked = 0;
  for (QuantType t : kSearchTypes) {
    const TypeInfo& ti = type_info(t);
    for (const std::string dir : {"pure/", "pure-imatrix/"}) {
      const std::string key = dir + ti.name + ".gguf";
      if (!manifest.at("files").contains(key)) continue;
      const auto& file = manifest["files"][key];
      const bool with_imatrix = file.value("imatrix", false);
      std::vector<const GoldenTensor*> todo;
      for (const auto& m : tensors)
        if (file["tensors"].contains(m.name) && file["tensors"][m.name]["type"].get<int>() == static_cast<int>(t))
          todo.push_back(&m);
      std::vector<double> rmse(todo.size()), werr(todo.size(), -1);
      const QuantizeFn quant = Registry::instance().quantize(t);
      const DequantizeFn deq = Registry::instance().dequantize(t);
      parallel_for(static_cast<int64_t>(todo.size()), 0, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const GoldenTensor& m = *todo[i];
          const float* imatrix = with_imatrix && !m.imatrix.empty() ? m.imatrix.data() : nullptr;
          const auto y = test::dequantize_rows(deq, ti, test::quantize_rows(quant, ti, m.x, m.ne0, imatrix), m.ne0);
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
