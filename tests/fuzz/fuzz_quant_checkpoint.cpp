// libFuzzer target: a third-party quantized checkpoint (GPTQ, AutoAWQ GEMM, compressed-tensors
// pack-quantized symmetric and asymmetric) of the tiny Llama. The first byte picks the scheme (its
// quantization_config is written into config.json); the rest is the model's one .safetensors file
// (qweight/qzeros/scales/g_idx, weight_packed/weight_scale/weight_zero_point/weight_shape, the
// float tensors). The model is opened and every tensor read as float, so the scheme reader, the
// shape checks and the unpackers all see the mutated bytes. Seeds: `lq quantize tiny rtn
// --group-size 16` in each layout, the scheme byte first.
#include "fuzz_support.hpp"

#include <lq/model.hpp>

#include <array>
#include <vector>

namespace {

constexpr const char* kQuantConfigs[] = {
    R"({"bits":4,"group_size":16,"desc_act":false,"sym":true,"quant_method":"gptq","checkpoint_format":"gptq"})",
    R"({"quant_method":"awq","bits":4,"group_size":16,"zero_point":true,"version":"gemm"})",
    R"({"config_groups":{"group_0":{"targets":["Linear"],"weights":{"num_bits":4,"type":"int","symmetric":true,)"
    R"("group_size":16,"strategy":"group","dynamic":false,"actorder":null},"input_activations":null,)"
    R"("output_activations":null,"format":"pack-quantized"}},"format":"pack-quantized","ignore":["lm_head"],)"
    R"("quant_method":"compressed-tensors","quantization_status":"compressed"})",
    R"({"config_groups":{"group_0":{"targets":["Linear"],"weights":{"num_bits":4,"type":"int","symmetric":false,)"
    R"("group_size":16,"strategy":"group","dynamic":false,"actorder":null},"input_activations":null,)"
    R"("output_activations":null,"format":"pack-quantized"}},"format":"pack-quantized","ignore":["lm_head"],)"
    R"("quant_method":"compressed-tensors","quantization_status":"compressed"})",
};
constexpr size_t kSchemes = sizeof(kQuantConfigs) / sizeof(kQuantConfigs[0]);

// One directory per scheme: the tiny model's config with that quantization_config and its
// tokenizer, no weights yet.
const lq::fuzz::fs::path& scheme_dir(size_t k) {
  static const std::array<lq::fuzz::fs::path, kSchemes> dirs = [] {
    std::array<lq::fuzz::fs::path, kSchemes> d;
    for (size_t i = 0; i < kSchemes; ++i)
      d[i] = lq::fuzz::quantized_model_dir("quant_checkpoint_" + std::to_string(i), kQuantConfigs[i]);
    return d;
  }();
  return dirs[k];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto& dir = scheme_dir(data[0] % kSchemes);
  lq::fuzz::write_bytes(dir / "model.safetensors", data + 1, size - 1);
  lq::fuzz::expect_clean([&] {
    const auto src = lq::ModelSource::open(dir);
    std::vector<float> rows;
    for (const auto& t : src->tensors()) {
      rows.resize(static_cast<size_t>(t.n_elements()));
      src->read_rows_f32(t, 0, t.n_rows(), rows.data());
    }
    (void)src->gguf_metadata();
  });
  return 0;
}
