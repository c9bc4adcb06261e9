// libFuzzer target: calibration data. The first byte picks the file kind the loader reads by
// its extension (.json: a list or {"samples": [...]}, .jsonl: one sample a line, .txt: plain
// text); the rest is the file.
#include "fuzz_support.hpp"

#include <lq/calibration.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const char* const kNames[] = {"in.json", "in.jsonl", "in.txt"};
  const char* name = kNames[data[0] % 3];
  const auto path = lq::fuzz::input_file(name, data + 1, size - 1);
  lq::fuzz::expect_clean([&] { (void)lq::load_calibration(path); });
  lq::fuzz::expect_clean([&] { (void)lq::load_text(path); });
  return 0;
}
