// libFuzzer target: one .safetensors file. The header (length, JSON, dtypes, shapes, offsets,
// overlaps) and the bytes of every tensor it accepts, read and shared.
#include "fuzz_support.hpp"

#include "formats/safetensors.hpp"

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = lq::fuzz::input_file("in.safetensors", data, size);
  lq::fuzz::expect_clean([&] {
    lq::SafetensorsFile f(path);
    std::vector<uint8_t> buf;
    for (const auto& t : f.tensors()) {
      buf.resize(static_cast<size_t>(t.nbytes));
      f.read(t.begin, buf.size(), buf.data());
      if (t.nbytes) (void)f.share(t.begin, static_cast<size_t>(t.nbytes));
    }
  });
  return 0;
}
