// libFuzzer target: a super-weight mask file (lq.super_weights JSON, what `lq analyze
// --identify-super-weights` writes and `quantize --super-weights` reads); what it accepts is
// written back and must read back to the same coordinates and values.
#include "fuzz_support.hpp"

#include <lq/super_weights.hpp>

#include <cmath>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = lq::fuzz::input_file("in.super_weights.json", data, size);
  lq::fuzz::expect_clean([&] {
    const std::vector<lq::ProtectedWeight> w = lq::load_super_weights(path);
    const auto back = lq::fuzz::scratch_dir() / "back.super_weights.json";
    lq::save_super_weights(back, w);
    const std::vector<lq::ProtectedWeight> again = lq::load_super_weights(back);
    if (again.size() != w.size()) std::abort();
    for (size_t i = 0; i < w.size(); ++i) {
      const bool same_value = again[i].value == w[i].value || (std::isnan(again[i].value) && std::isnan(w[i].value));
      if (again[i].tensor != w[i].tensor || again[i].row != w[i].row || again[i].col != w[i].col || !same_value)
        std::abort();
    }
  });
  return 0;
}
