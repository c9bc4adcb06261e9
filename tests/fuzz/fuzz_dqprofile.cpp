// libFuzzer target: a .dqprofile (dynamic quantization profile, JSON), read and written back;
// what it accepts must read back to the same profile.
#include "fuzz_support.hpp"

#include <lq/profile.hpp>

#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  lq::fuzz::expect_clean([&] {
    const lq::Profile p = lq::Profile::from_json_string(text, "fuzz.dqprofile");
    const std::string out = p.to_json_string(2);
    const lq::Profile q = lq::Profile::from_json_string(out, "round trip");
    if (q.to_json_string(2) != out) std::abort();  // the written profile must read back the same
  });
  return 0;
}
