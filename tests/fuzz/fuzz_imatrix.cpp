// libFuzzer target: an importance-matrix file, in either of llama.cpp's formats (the loader
// picks GGUF by the magic, else the legacy .dat layout); what it accepts is combined with itself
// and its column weights taken, as quantization does.
#include "fuzz_support.hpp"

#include <lq/imatrix.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = lq::fuzz::input_file("in.imatrix", data, size);
  lq::fuzz::expect_clean([&] {
    const lq::Imatrix im = lq::Imatrix::load(path);
    for (const auto& [name, e] : im.entries)
      for (int64_t m = 0; m < e.n_mat; ++m) (void)e.mean(m);
    const lq::Imatrix both = lq::Imatrix::combine({im, im});
    for (const auto& [name, e] : both.entries)
      if (e.n_mat == 1) (void)both.column_weights(name, e.n_cols);
  });
  return 0;
}
