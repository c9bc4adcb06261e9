// Back-end consistency: the CUDA kernels against the scalar references, on the same inputs.
// Skips (with a printed reason) where liblq was built without CUDA or no GPU is present.
#include <lq/backend.hpp>
#include <lq/quant_type.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <cstring>

using namespace lq;

TEST_CASE("cuda: kernels equal the CPU references", "[cuda]") {
  const Backend* cuda = Registry::instance().find("cuda");
  if (!cuda) {
    test::skip("liblq was built without the CUDA back-end");
    return;
  }
  if (cuda->score() <= 0) {
    test::skip("no CUDA device (" + cuda->description() + ")");
    return;
  }
  constexpr int64_t kRows = 64, kCols = 4096;
  const auto x = test::gaussian(static_cast<size_t>(kRows * kCols), 17);
  int checked = 0;
  for (const TypeInfo& ti : all_types()) {
    const KernelSet k = cuda->kernels(ti.type);
    if (!ti.quantize_ref || !ti.dequantize_ref || (!k.quantize && !k.dequantize)) continue;
    INFO(ti.name);
    std::vector<uint8_t> ref(ti.row_bytes(kCols) * kRows);
    ti.quantize_ref(x.data(), ref.data(), kRows, kCols, nullptr);
    if (k.quantize) {
      std::vector<uint8_t> q(ref.size());
      k.quantize(x.data(), q.data(), kRows, kCols, nullptr);
      CHECK(std::memcmp(q.data(), ref.data(), q.size()) == 0);
      ++checked;
    }
    if (k.dequantize) {
      std::vector<float> a(static_cast<size_t>(kRows * kCols)), b(a.size());
      ti.dequantize_ref(ref.data(), a.data(), kRows * kCols);
      k.dequantize(ref.data(), b.data(), kRows * kCols);
      CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
      ++checked;
    }
  }
  CHECK(checked > 0);
}
