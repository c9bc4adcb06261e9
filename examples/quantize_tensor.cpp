// Quantizes one tensor (a matrix of random values) to a few types and prints the error and size.
//   example_quantize_tensor [ROWS COLS]
#include <lq/lq.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

int main(int argc, char** argv) {
  const int64_t rows = argc > 2 ? std::atoll(argv[1]) : 256;
  const int64_t cols = argc > 2 ? std::atoll(argv[2]) : 4096;
  std::vector<float> w(static_cast<size_t>(rows * cols));
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.f, 0.02f);
  for (auto& x : w) x = nd(rng);

  for (lq::QuantType t : {lq::QuantType::Q8_0, lq::QuantType::Q5_1, lq::QuantType::Q4_0, lq::QuantType::Q4_K,
                          lq::QuantType::Q2_K}) {
    const lq::TypeInfo& ti = lq::type_info(t);
    if (!ti.quantize_ref || cols % ti.block_size != 0) continue;
    std::vector<uint8_t> packed(ti.row_bytes(cols) * static_cast<size_t>(rows));
    lq::Quantizer::quantize_rows(t, w.data(), packed.data(), rows, cols, /*imatrix=*/nullptr);
    std::vector<float> back(w.size());
    for (int64_t r = 0; r < rows; ++r)
      lq::Registry::instance().dequantize(t)(packed.data() + r * ti.row_bytes(cols), back.data() + r * cols, cols);
    double err = 0, ref = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      err += (w[i] - back[i]) * (w[i] - back[i]);
      ref += w[i] * w[i];
    }
    std::printf("%-6s %8zu bytes  %6.3f bpw  relative RMSE %.4f\n", ti.name, packed.size(), ti.bpw(),
                std::sqrt(err / ref));
  }
  return 0;
}
