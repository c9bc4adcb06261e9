// libFuzzer target: a compressed-tensors float-quantized (FP8 E4M3) checkpoint of the tiny Llama,
// in llm-compressor's layouts: weight scales per channel with dynamic per-token activations
// (FP8_DYNAMIC), per tensor with a static input_scale, and per block ([16, 16], and FP8_BLOCK's
// [128, 128], larger than the tiny matrices). The first byte picks the layout (its
// quantization_config, as llm-compressor writes it, goes into config.json); the rest is the
// model's .safetensors file (weight as F8_E4M3, weight_scale, input_scale). The model is opened,
// read (every FP8 byte dequantized, NaN codes refused) and evaluated (fuzz_quantized.hpp). Seeds:
// llm-compressor's output for each layout (scripts/fuzz_seeds_ct.py), the layout byte first.
#include "fuzz_quantized.hpp"

#include <array>
#include <string>

namespace {

constexpr size_t kFp8Layouts = 4;

const lq::fuzz::fs::path& fp8_dir(size_t k) {
  static const std::array<lq::fuzz::fs::path, kFp8Layouts> dirs = [] {
    using lq::fuzz::llmc_args;
    const std::string w = R"("memoryless_minmax")", token = llmc_args("float", "token", true, "null");
    const std::array<std::string, kFp8Layouts> configs = {
        lq::fuzz::llmc_config("float-quantized", llmc_args("float", "channel", false, w), token),
        lq::fuzz::llmc_config("float-quantized", llmc_args("float", "tensor", false, w),
                              llmc_args("float", "tensor", false, R"("minmax")")),
        lq::fuzz::llmc_config("float-quantized", llmc_args("float", "block", false, w, "[16,16]"), token),
        lq::fuzz::llmc_config("float-quantized", llmc_args("float", "block", false, w, "[128,128]"), token)};
    std::array<lq::fuzz::fs::path, kFp8Layouts> d;
    for (size_t i = 0; i < d.size(); ++i) d[i] = lq::fuzz::quantized_model_dir("fp8_" + std::to_string(i), configs[i]);
    return d;
  }();
  return dirs[k];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto& dir = fp8_dir(data[0] % kFp8Layouts);
  lq::fuzz::write_bytes(dir / "model.safetensors", data + 1, size - 1);
  lq::fuzz::expect_clean([&] { lq::fuzz::read_quantized_model(dir); });
  return 0;
}
