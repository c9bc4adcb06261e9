// Table-driven checks over every row of the type table and the active back-end: geometry,
// round-trip error within the row's tolerance, kernels equal to the scalar references (bytes for
// quantize, exact floats for dequantize, tight relative error for dot products), and quantized
// dot products against the float dot of the decoded rows.
#include <lq/backend.hpp>
#include <lq/quant_type.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>

using namespace lq;

namespace {

constexpr int64_t kRows = 4;
constexpr int64_t kCols = 1024;

std::vector<float> positive(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.05f, 4.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

std::vector<uint8_t> quantize(QuantizeFn f, const TypeInfo& ti, const std::vector<float>& x, const float* im) {
  std::vector<uint8_t> q(ti.row_bytes(kCols) * kRows);
  f(x.data(), q.data(), kRows, kCols, im);
  return q;
}

std::vector<float> dequantize(DequantizeFn f, const TypeInfo& ti, const std::vector<uint8_t>& q) {
  std::vector<float> y(static_cast<size_t>(kRows * kCols));
  for (int64_t r = 0; r < kRows; ++r) f(q.data() + r * ti.row_bytes(kCols), y.data() + r * kCols, kCols);
  return y;
}

}  // namespace

TEST_CASE("quant types: table geometry", "[quant-types]") {
  for (const TypeInfo& ti : all_types()) {
    INFO(ti.name);
    CHECK(type_info(ti.type).name == std::string(ti.name));
    CHECK(parse_quant_type(ti.name) == ti.type);
    CHECK(ti.block_bytes > 0);
    if (ti.storable) {
      CHECK(ti.dequantize_ref != nullptr);
      CHECK(ti.quantize_ref != nullptr);
    }
  }
  CHECK_FALSE(is_known_type_id(4));
  CHECK_FALSE(is_known_type_id(31));
  CHECK_FALSE(is_known_type_id(36));
  CHECK_FALSE(parse_quant_type("Q9_9"));
}

TEST_CASE("quant types: every row round-trips within tolerance, kernels equal the references", "[quant-types]") {
  const auto x = test::gaussian(static_cast<size_t>(kRows * kCols), 7);
  const auto im = positive(static_cast<size_t>(kCols), 11);
  const Registry& reg = Registry::instance();
  for (const TypeInfo& ti : all_types()) {
    if (!ti.quantize_ref || !ti.dequantize_ref || ti.tolerance <= 0) continue;
    for (const bool with_im : {false, true}) {
      if (ti.needs_imatrix && !with_im) continue;
      DYNAMIC_SECTION(ti.name << (with_im ? " imatrix" : "")) {
        const float* w = with_im ? im.data() : nullptr;
        const auto q_ref = quantize(ti.quantize_ref, ti, x, w);
        const auto q = quantize(reg.quantize(ti.type), ti, x, w);
        CHECK(std::memcmp(q.data(), q_ref.data(), q.size()) == 0);
        const auto y_ref = dequantize(ti.dequantize_ref, ti, q_ref);
        const auto y = dequantize(reg.dequantize(ti.type), ti, q_ref);
        CHECK(std::memcmp(y.data(), y_ref.data(), y.size() * sizeof(float)) == 0);
        double e = 0, r = 0;
        for (size_t i = 0; i < x.size(); ++i) {
          e += (x[i] - y_ref[i]) * (x[i] - y_ref[i]);
          r += x[i] * x[i];
        }
        CHECK(std::sqrt(e / r) <= ti.tolerance);
      }
    }
  }
}

TEST_CASE("quant types: quantized dot products", "[quant-types]") {
  const auto x = test::gaussian(static_cast<size_t>(kCols), 3);
  const auto a = test::gaussian(static_cast<size_t>(kCols), 5);
  const auto im = positive(static_cast<size_t>(kCols), 13);
  const Registry& reg = Registry::instance();
  for (const TypeInfo& ti : all_types()) {
    if (!ti.dot_ref || !ti.quantize_ref || !ti.dequantize_ref) continue;
    DYNAMIC_SECTION(ti.name) {
      const TypeInfo& yt = type_info(ti.dot_type);
      std::vector<uint8_t> qx(ti.row_bytes(kCols)), qy(yt.row_bytes(kCols));
      ti.quantize_ref(x.data(), qx.data(), 1, kCols, ti.needs_imatrix ? im.data() : nullptr);
      yt.quantize_ref(a.data(), qy.data(), 1, kCols, nullptr);
      std::vector<float> dx(kCols), dy(kCols);
      ti.dequantize_ref(qx.data(), dx.data(), kCols);
      yt.dequantize_ref(qy.data(), dy.data(), kCols);
      double exact = 0, mag = 0;
      for (int64_t i = 0; i < kCols; ++i) {
        exact += static_cast<double>(dx[i]) * dy[i];
        mag += std::fabs(static_cast<double>(dx[i]) * dy[i]);
      }
      const float ref = ti.dot_ref(kCols, qx.data(), qy.data());
      const float fast = reg.dot(ti.type)(kCols, qx.data(), qy.data());
      CHECK(std::fabs(ref - exact) <= 1e-4 * mag + 1e-6);
      CHECK(std::fabs(fast - ref) <= 1e-4 * mag + 1e-6);
    }
  }
}
