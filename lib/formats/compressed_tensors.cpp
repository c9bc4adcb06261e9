// compressed-tensors quantization_config for int8 W8A8 checkpoints (see compressed_tensors.hpp).
// The keys and values are those compressed-tensors' QuantizationArgs / QuantizationScheme /
// QuantizationConfig serialize, which vLLM's and transformers' loaders read.
#include "formats/compressed_tensors.hpp"

namespace lq::ct {

namespace {

nlohmann::ordered_json int8_args(const char* strategy, bool dynamic, const char* observer) {
  nlohmann::ordered_json a;
  a["num_bits"] = 8;
  a["type"] = "int";
  a["symmetric"] = true;
  a["group_size"] = nullptr;
  a["strategy"] = strategy;
  a["block_structure"] = nullptr;
  a["dynamic"] = dynamic;
  a["actorder"] = nullptr;
  a["observer"] = observer ? nlohmann::ordered_json(observer) : nlohmann::ordered_json(nullptr);
  a["observer_kwargs"] = nlohmann::ordered_json::object();
  return a;
}

}  // namespace

nlohmann::ordered_json w8a8_quantization_config(const W8A8Scheme& scheme) {
  nlohmann::ordered_json group;
  group["targets"] = {"Linear"};
  group["weights"] = int8_args(scheme.per_channel ? "channel" : "tensor", false, "minmax");
  // Dynamic per-token scales are computed at run time: no observer (as compressed-tensors'
  // INT8_W8A8 preset); static per-tensor scales come from a min-max observer over calibration.
  group["input_activations"] = scheme.static_activations ? int8_args("tensor", false, "minmax")
                                                         : int8_args("token", true, nullptr);
  group["output_activations"] = nullptr;
  nlohmann::ordered_json q;
  q["config_groups"] = {{"group_0", group}};
  q["format"] = "int-quantized";
  q["ignore"] = {"lm_head"};
  q["kv_cache_scheme"] = nullptr;
  q["quant_method"] = "compressed-tensors";
  q["quantization_status"] = "compressed";
  q["version"] = kFormatVersion;
  return q;
}

}  // namespace lq::ct
