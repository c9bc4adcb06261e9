// Internal: model hyper-parameters from what each source says about itself: a Hugging Face
// config.json (with the general.* and {arch}.* GGUF keys llama.cpp's converter writes for it)
// and GGUF metadata. Must not read tensors or tokenizers.
#pragma once

#include <lq/gguf.hpp>
#include <lq/model.hpp>
#include "model/quant_scheme.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>
#include <string>

namespace lq {

/// The quantization of a compressed-tensors int8 checkpoint (W8A8: format int-quantized or
/// naive-quantized, 8-bit symmetric int weights per channel or per tensor, 8-bit int activations).
struct Int8Checkpoint {
  std::string format;               ///< "int-quantized" or "naive-quantized"
  bool static_activations = false;  ///< per-tensor input_scale stored (else dynamic per token)
  std::vector<std::string> ignore;  ///< modules left unquantized: names or "re:" patterns
  /// Whether module `name` (HF naming, e.g. "lm_head") is on the ignore list.
  bool ignored(const std::string& name) const;
};

/// A Hugging Face config.json read and validated: the hyper-parameters and the object they came
/// from (the file's text_config when it has one), whose keys decide which GGUF keys are written.
struct HfConfig {
  ModelConfig config;
  nlohmann::json text;
  std::optional<Int8Checkpoint> int8;  ///< set for a compressed-tensors int8 checkpoint
  /// Set for a GPTQ, AWQ or other compressed-tensors checkpoint (read dequantized to float).
  std::optional<QuantCheckpoint> quant;
};

/// Reads `dir`/config.json (and GPTQ's quantize_config.json beside it); unsupported architectures,
/// quantization schemes not covered by the int8 reader or model/quant_scheme, and inconsistent
/// hyper-parameters throw Errc::invalid_model naming the file and what is not supported.
HfConfig read_hf_config(const std::filesystem::path& dir);
/// Appends the general.* and {arch}.* keys the converter writes for `hf` (a model of `n_params`
/// parameters), in its order.
void hf_config_metadata(const HfConfig& hf, uint64_t n_params, gguf::Metadata& m);
/// The converter's size label of a mixture of experts: "<experts>x<size>", the size counting
/// the shared parameters and one expert's (general.size_label, replaced).
void moe_size_label_metadata(uint64_t shared_params, uint64_t one_expert_params, int64_t n_expert, gguf::Metadata& m);
/// Hyper-parameters from GGUF metadata ({arch}.* keys); `file` names the source in errors.
ModelConfig config_from_gguf(const gguf::Metadata& m, const std::string& file);

}  // namespace lq
