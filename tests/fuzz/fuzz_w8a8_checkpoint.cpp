// libFuzzer target: a compressed-tensors int-quantized checkpoint of the tiny Llama. The int8
// reader's layouts, as `lq quantize ... smoothquant` writes them: W8A8 with per-channel or
// per-tensor weight scales and dynamic per-token or static per-tensor activations (weight,
// weight_scale, input_scale); and llm-compressor's int8 weight-only W8A16, int-quantized (int8
// weight) and pack-quantized (8-bit codes in int32), read through the third-party scheme reader.
// The first byte picks the layout (its quantization_config goes into config.json); the rest is
// the model's .safetensors file. The model is opened, read and evaluated (fuzz_quantized.hpp).
// Seeds: `lq quantize tiny smoothquant --smoothquant` with and without --static-activations and
// --per-tensor-weights, and llm-compressor's W8A16 (scripts/fuzz_seeds_ct.py), the layout byte
// first.
#include "fuzz_quantized.hpp"

#include <array>
#include <string>

namespace {

constexpr size_t kW8Layouts = 6;

const lq::fuzz::fs::path& w8_dir(size_t k) {
  static const std::array<lq::fuzz::fs::path, kW8Layouts> dirs = [] {
    using lq::fuzz::ct_args;
    using lq::fuzz::ct_quant_config;
    const std::string w16 = lq::fuzz::llmc_args("int", "channel", false, R"("memoryless_minmax")");
    const std::array<std::string, kW8Layouts> configs = {
        ct_quant_config("int-quantized", ct_args("int", "channel", false), ct_args("int", "token", true)),
        ct_quant_config("int-quantized", ct_args("int", "channel", false), ct_args("int", "tensor", false)),
        ct_quant_config("int-quantized", ct_args("int", "tensor", false), ct_args("int", "token", true)),
        ct_quant_config("int-quantized", ct_args("int", "tensor", false), ct_args("int", "tensor", false)),
        lq::fuzz::llmc_config("int-quantized", w16, "null"),
        lq::fuzz::llmc_config("pack-quantized", w16, "null")};
    std::array<lq::fuzz::fs::path, kW8Layouts> d;
    for (size_t i = 0; i < d.size(); ++i) d[i] = lq::fuzz::quantized_model_dir("w8a8_" + std::to_string(i), configs[i]);
    return d;
  }();
  return dirs[k];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto& dir = w8_dir(data[0] % kW8Layouts);
  lq::fuzz::write_bytes(dir / "model.safetensors", data + 1, size - 1);
  lq::fuzz::expect_clean([&] { lq::fuzz::read_quantized_model(dir); });
  return 0;
}
