// Every instruction set's CPU kernels (support/cpu_isa.hpp: each ISA this machine runs, not only
// the one the dispatcher picks) against the scalar references of the type table: quantize bytes,
// dequantize bits over one block and several, and dot products within float rounding of the
// reference, on awkward rows with and without importance data.
#include <lq/quant_type.hpp>

#include "support/cpu_isa.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

using namespace lq;

TEST_CASE("cpu kernels: every ISA equals the scalar reference", "[kernels][isa]") {
  const int64_t n = 7 * 256;  // several super-blocks, not a power of two
  const auto rows = test::varied_rows(n, 31);
  const auto w = test::positive(static_cast<size_t>(n), 32);
  const auto act = test::gaussian(static_cast<size_t>(n), 33);
  int checked = 0;
  for (const test::IsaKernels& e : test::cpu_isa_kernels()) {
    const TypeInfo& ti = type_info(e.type);
    const KernelSet& k = e.kernels;
    const TypeInfo& yt = type_info(ti.dot_type);
    const auto qa = test::quantize_rows(yt.quantize_ref, yt, act, n, nullptr);
    const auto ad = test::dequantize_rows(yt.dequantize_ref, yt, qa, n);
    for (size_t r = 0; r < rows.size(); ++r) {
      for (const float* wp : {static_cast<const float*>(nullptr), w.data()}) {
        if (ti.needs_imatrix && !wp) continue;
        INFO(ti.name << " on " << e.isa << ", row kind " << r << (wp ? " with importance" : ""));
        const auto q = test::quantize_rows(ti.quantize_ref, ti, rows[r], n, wp);
        if (k.quantize) CHECK(test::quantize_rows(k.quantize, ti, rows[r], n, wp) == q);
        const auto want = test::dequantize_rows(ti.dequantize_ref, ti, q, n);
        for (const int64_t len : {int64_t{256}, n}) {  // one block of 256, and all of them
          INFO("length " << len);
          if (k.dequantize) {
            std::vector<float> got(static_cast<size_t>(len), -1.f);
            k.dequantize(q.data(), got.data(), len);
            CHECK(std::memcmp(got.data(), want.data(), sizeof(float) * static_cast<size_t>(len)) == 0);
          }
          if (k.dot) {
            // The integer sums are exact; only the per-block float steps may round differently
            // (an ISA with FMA may fuse them).
            double mag = 0;
            for (int64_t i = 0; i < len; ++i) mag += std::fabs(static_cast<double>(want[i]) * ad[i]);
            const float dr = ti.dot_ref(len, q.data(), qa.data());
            const float dk = k.dot(len, q.data(), qa.data());
            CHECK(std::fabs(static_cast<double>(dk) - dr) <= 1e-6 * mag + 1e-30);
          }
        }
        ++checked;
      }
    }
  }
  CHECK(checked > 0);
}
