// Table-driven checks of every row of the type table (lq::all_types()) on every usable registered
// back-end (Registry::backends()): the row's geometry; round trips within the row's tolerance;
// each back-end's kernels equal to the scalar references (bytes for quantize, bits for
// dequantize, tight relative error for dot) on ordinary and awkward rows; quantized dot products
// against the float dot of the decoded rows and of the originals; importance data required
// exactly where the row says; rows independent of batching and threads; hostile rows decoding to
// finite values. Bounds come from the rows (tolerance, dot_type), never from the type's name:
// a new row is covered by these checks as soon as it is in the table. What holds for one family
// only is in its own file (kquants_search_test.cpp, iq3_iq4_ternary_test.cpp, iq1_iq2_test.cpp).
#include <lq/backend.hpp>
#include <lq/error.hpp>
#include <lq/quant_type.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

using namespace lq;

namespace {

// Rows that quantize and decode, with a tolerance to check against.
bool quantizable(const TypeInfo& ti) { return ti.quantize_ref && ti.dequantize_ref && ti.tolerance > 0; }

// The back-ends that can run on this machine (the CPU always can).
std::vector<const Backend*> usable_backends() {
  std::vector<const Backend*> out;
  for (const auto& b : Registry::instance().backends())
    if (b->score() > 0) out.push_back(b.get());
  return out;
}

bool all_finite(const std::vector<float>& y) {
  for (float v : y)
    if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace

TEST_CASE("types: table geometry", "[types]") {
  for (const TypeInfo& ti : all_types()) {
    INFO(ti.name);
    CHECK(type_info(ti.type).name == std::string(ti.name));
    CHECK(parse_quant_type(ti.name) == ti.type);
    CHECK(ti.block_bytes > 0);
    if (ti.storable) {
      CHECK(ti.dequantize_ref != nullptr);
      CHECK(ti.quantize_ref != nullptr);
    }
    if (ti.dot_ref) {  // the activations of a dot product can be packed
      CHECK(type_info(ti.dot_type).quantize_ref != nullptr);
      CHECK(type_info(ti.dot_type).block_size % ti.block_size == 0);
    }
  }
  CHECK_FALSE(is_known_type_id(4));
  CHECK_FALSE(is_known_type_id(31));
  CHECK_FALSE(is_known_type_id(36));
  CHECK_FALSE(parse_quant_type("Q9_9"));
  CHECK_FALSE(usable_backends().empty());
}

TEST_CASE("types: every row round-trips within its tolerance", "[types]") {
  for (const TypeInfo& ti : all_types()) {
    if (!quantizable(ti)) continue;
    for (const int64_t n : {256, 1024, 2048}) {
      const auto x = test::gaussian(static_cast<size_t>(8 * n), 7);
      const auto im = test::positive(static_cast<size_t>(n), 11);
      if (!ti.needs_imatrix) {
        INFO(ti.name << " n=" << n << " without importance");
        const auto y = test::dequantize_rows(ti.dequantize_ref, ti, test::quantize_rows(ti.quantize_ref, ti, x, n, nullptr), n);
        CHECK(test::rel_rmse(x, y) <= ti.tolerance);
      }
      // With importance the search minimises the weighted error: that one is within the
      // tolerance; the plain error may grow a little.
      INFO(ti.name << " n=" << n << " with importance");
      const auto y = test::dequantize_rows(ti.dequantize_ref, ti, test::quantize_rows(ti.quantize_ref, ti, x, n, im.data()), n);
      double e = 0, s = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        const double d = static_cast<double>(x[i]) - y[i];
        e += im[i % static_cast<size_t>(n)] * d * d;
        s += im[i % static_cast<size_t>(n)] * static_cast<double>(x[i]) * x[i];
      }
      CHECK(std::sqrt(e / s) <= ti.tolerance);
      CHECK(test::rel_rmse(x, y) <= 1.15 * ti.tolerance);
    }
  }
}

TEST_CASE("types: every back-end's kernels equal the references", "[types]") {
  const int64_t n = 1024;
  const auto rows = test::varied_rows(n, 31);
  const auto im = test::positive(static_cast<size_t>(n), 32);
  const auto act = test::gaussian(static_cast<size_t>(n), 33);
  const Registry& reg = Registry::instance();
  for (const Backend* b : usable_backends()) {
    for (const TypeInfo& ti : all_types()) {
      if (!quantizable(ti)) continue;
      const KernelSet k = reg.kernels(*b, ti.type);
      REQUIRE(k.quantize);
      REQUIRE(k.dequantize);
      std::vector<uint8_t> qa;
      std::vector<float> ad;
      if (ti.dot_ref) {
        REQUIRE(k.dot);
        const TypeInfo& yt = type_info(ti.dot_type);
        qa = test::quantize_rows(yt.quantize_ref, yt, act, n, nullptr);
        ad = test::dequantize_rows(yt.dequantize_ref, yt, qa, n);
      }
      for (size_t r = 0; r < rows.size(); ++r) {
        for (const float* w : {static_cast<const float*>(nullptr), im.data()}) {
          if (ti.needs_imatrix && !w) continue;
          INFO(b->name() << " " << ti.name << " row kind " << r << (w ? " with importance" : ""));
          const auto q_ref = test::quantize_rows(ti.quantize_ref, ti, rows[r], n, w);
          CHECK(test::quantize_rows(k.quantize, ti, rows[r], n, w) == q_ref);
          const auto y_ref = test::dequantize_rows(ti.dequantize_ref, ti, q_ref, n);
          CHECK(test::same_bits(test::dequantize_rows(k.dequantize, ti, q_ref, n), y_ref));
          if (!ti.dot_ref) continue;
          double mag = 0;  // sum |x y|: the scale of rounding differences in the sum
          for (int64_t i = 0; i < n; ++i) mag += std::fabs(static_cast<double>(y_ref[i]) * ad[i]);
          const float d_ref = ti.dot_ref(n, q_ref.data(), qa.data());
          const float d = k.dot(n, q_ref.data(), qa.data());
          CHECK(std::fabs(static_cast<double>(d) - d_ref) <= 1e-5 * mag + 1e-30);
        }
      }
    }
  }
}

TEST_CASE("types: quantized dot products equal the float dot of the decoded rows", "[types]") {
  const Registry& reg = Registry::instance();
  for (const TypeInfo& ti : all_types()) {
    if (!quantizable(ti) || !ti.dot_ref) continue;
    const TypeInfo& yt = type_info(ti.dot_type);
    for (const int64_t n : {1024, 4096}) {
      const auto x = test::gaussian(static_cast<size_t>(n), 41);
      const auto a = test::gaussian(static_cast<size_t>(n), 42);
      const auto im = test::positive(static_cast<size_t>(n), 43);
      const auto qx = test::quantize_rows(ti.quantize_ref, ti, x, n, ti.needs_imatrix ? im.data() : nullptr);
      const auto qa = test::quantize_rows(yt.quantize_ref, yt, a, n, nullptr);
      const auto xd = test::dequantize_rows(ti.dequantize_ref, ti, qx, n);
      const auto ad = test::dequantize_rows(yt.dequantize_ref, yt, qa, n);
      double exact = 0, decoded = 0, mag = 0, nx = 0, na = 0;
      for (int64_t i = 0; i < n; ++i) {
        exact += static_cast<double>(x[i]) * a[i];
        decoded += static_cast<double>(xd[i]) * ad[i];
        mag += std::fabs(static_cast<double>(xd[i]) * ad[i]);
        nx += static_cast<double>(x[i]) * x[i];
        na += static_cast<double>(a[i]) * a[i];
      }
      // Cauchy-Schwarz: |x.a - xq.aq| <= |x - xq| |a| + |xq| |a - aq|, each relative error within
      // its row's tolerance (plus a margin for a single short row).
      const double tx = ti.tolerance, ta = yt.tolerance;
      const double bound = (tx + (1 + tx) * ta + 0.01) * std::sqrt(nx * na);
      for (const Backend* b : usable_backends()) {
        INFO(b->name() << " " << ti.name << " n=" << n);
        for (DotFn dot : {ti.dot_ref, reg.kernels(*b, ti.type).dot}) {
          const double got = dot(n, qx.data(), qa.data());
          // Integer sums, float only per block; Q8_1's stored block sums are fp16.
          CHECK(std::fabs(got - decoded) <= 1e-4 * mag + 1e-6);
          CHECK(std::fabs(got - exact) <= bound);
        }
      }
    }
  }
}

TEST_CASE("types: importance data is required exactly where the row says so", "[types]") {
  const int64_t n = 512;
  const auto x = test::gaussian(static_cast<size_t>(n), 3);
  const Registry& reg = Registry::instance();
  for (const TypeInfo& ti : all_types()) {
    if (!quantizable(ti)) continue;
    for (const Backend* b : usable_backends()) {
      INFO(b->name() << " " << ti.name);
      for (QuantizeFn fn : {ti.quantize_ref, reg.kernels(*b, ti.type).quantize}) {
        std::vector<uint8_t> q(ti.row_bytes(n));
        if (ti.needs_imatrix) {
          try {
            fn(x.data(), q.data(), 1, n, nullptr);
            FAIL_CHECK("quantizing without an imatrix was accepted");
          } catch (const Error& e) {
            CHECK(e.code() == Errc::imatrix_error);
          }
        } else {
          CHECK_NOTHROW(fn(x.data(), q.data(), 1, n, nullptr));
        }
      }
    }
  }
}

TEST_CASE("types: rows do not depend on how they are batched or threaded", "[types]") {
  const Registry& reg = Registry::instance();
  for (const TypeInfo& ti : all_types()) {
    if (!quantizable(ti)) continue;
    for (const int64_t n : {256, 768, 2816}) {
      const int64_t rows = 16;
      const auto x = test::gaussian(static_cast<size_t>(n * rows), 21);
      const auto im = test::positive(static_cast<size_t>(n), 22);
      const size_t rb = ti.row_bytes(n);
      for (const float* w : {static_cast<const float*>(nullptr), im.data()}) {
        if (ti.needs_imatrix && !w) continue;
        INFO(ti.name << " n=" << n << (w ? " with importance" : ""));
        const auto all = test::quantize_rows(ti.quantize_ref, ti, x, n, w);
        // A multi-row call equals row-by-row calls.
        for (const int64_t r : {int64_t{0}, int64_t{7}, rows - 1}) {
          std::vector<float> row(x.begin() + r * n, x.begin() + (r + 1) * n);
          const auto one = test::quantize_rows(ti.quantize_ref, ti, row, n, w);
          CHECK(std::memcmp(one.data(), all.data() + r * rb, rb) == 0);
        }
        // Four threads quantizing disjoint row ranges at once (the first use may race on building
        // lookup tables) give the bytes of one sequential call, on every back-end.
        for (const Backend* b : usable_backends()) {
          INFO(b->name());
          const QuantizeFn fn = reg.kernels(*b, ti.type).quantize;
          std::vector<uint8_t> par(all.size());
          std::vector<std::thread> threads;
          for (int k = 0; k < 4; ++k)
            threads.emplace_back([&, k] {
              const int64_t r0 = k * rows / 4;
              fn(x.data() + r0 * n, par.data() + rb * static_cast<size_t>(r0), rows / 4, n, w);
            });
          for (auto& th : threads) th.join();
          CHECK(par == all);
        }
      }
    }
  }
}

TEST_CASE("types: hostile rows decode to finite values on every back-end", "[types]") {
  const int64_t n = 512;
  const auto rows = test::hostile_rows(n);
  const auto im = test::positive(static_cast<size_t>(n), 5);
  const Registry& reg = Registry::instance();
  for (const TypeInfo& ti : all_types()) {
    if (!quantizable(ti)) continue;
    for (const Backend* b : usable_backends()) {
      const KernelSet k = reg.kernels(*b, ti.type);
      for (const auto& r : rows) {
        for (const float* w : {static_cast<const float*>(nullptr), im.data()}) {
          if (ti.needs_imatrix && !w) continue;
          INFO(b->name() << " " << ti.name << " " << r.name << (w ? " with importance" : ""));
          const auto q = test::quantize_rows(k.quantize, ti, r.x, n, w);
          CHECK(q == test::quantize_rows(ti.quantize_ref, ti, r.x, n, w));
          const auto y = test::dequantize_rows(k.dequantize, ti, q, n);
          CHECK(all_finite(y));
          if (r.name == "zeros") CHECK(y == r.x);
        }
      }
    }
  }
}
