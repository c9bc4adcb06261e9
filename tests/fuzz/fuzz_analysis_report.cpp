// libFuzzer target: an analysis report (`lq analyze -o report.json`, which `analyze profile
// --imatrix report.json` and `quantize --imatrix report.json` read for its matrix); what it
// accepts is written back, and that document must read back to itself.
#include "fuzz_support.hpp"

#include <lq/analysis_report.hpp>

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = lq::fuzz::input_file("in.report.json", data, size);
  lq::fuzz::expect_clean([&] {
    const lq::AnalysisReport r = lq::AnalysisReport::load(path);
    const std::string once = r.to_json_string();
    const auto back = lq::fuzz::scratch_dir() / "back.report.json";
    r.save(back);
    const std::string twice = lq::AnalysisReport::load(back).to_json_string();
    if (twice != once) std::abort();  // a report lq wrote reads back to the same document
  });
  return 0;
}
