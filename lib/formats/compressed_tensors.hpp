// Internal: the compressed-tensors facts a W8A8 int8 checkpoint writer needs (docs: the
// output-formats note, §1): the quantization_config block of config.json and the tensor-name
// suffixes. Pure data: no file I/O, no quantization.
#pragma once

#include <nlohmann/json.hpp>

namespace lq::ct {

/// The scheme of an int8 W8A8 checkpoint.
struct W8A8Scheme {
  bool per_channel = true;           ///< weights: strategy "channel" (weight_scale [out, 1]), else "tensor" ([1])
  bool static_activations = false;   ///< inputs: strategy "tensor", dynamic false (input_scale [1]); else "token", dynamic true
};

/// The compressed-tensors library version whose layout the written checkpoints follow.
inline constexpr const char* kFormatVersion = "0.10.2";

/// config.json's "quantization_config" for `scheme`: quant_method "compressed-tensors", format
/// "int-quantized", status "compressed", one group targeting "Linear", ignore ["lm_head"].
nlohmann::ordered_json w8a8_quantization_config(const W8A8Scheme& scheme);

/// Suffixes of a quantized Linear's tensors ("<module>.weight", ...).
inline constexpr const char* kWeightScale = "weight_scale";
inline constexpr const char* kInputScale = "input_scale";

}  // namespace lq::ct
