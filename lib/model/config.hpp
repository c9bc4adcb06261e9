// Internal: model hyper-parameters from what each source says about itself: a Hugging Face
// config.json (with the general.* and {arch}.* GGUF keys llama.cpp's converter writes for it)
// and GGUF metadata. Must not read tensors or tokenizers.
#pragma once

#include <lq/gguf.hpp>
#include <lq/model.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

namespace lq {

/// A Hugging Face config.json read and validated: the hyper-parameters and the object they came
/// from (the file's text_config when it has one), whose keys decide which GGUF keys are written.
struct HfConfig {
  ModelConfig config;
  nlohmann::json text;
};

/// Reads `dir`/config.json; unsupported architectures, quantized checkpoints and inconsistent
/// hyper-parameters throw Errc::invalid_model naming the file.
HfConfig read_hf_config(const std::filesystem::path& dir);
/// Appends the general.* and {arch}.* keys the converter writes for `hf` (a model of `n_params`
/// parameters), in its order.
void hf_config_metadata(const HfConfig& hf, uint64_t n_params, gguf::Metadata& m);
/// Hyper-parameters from GGUF metadata ({arch}.* keys); `file` names the source in errors.
ModelConfig config_from_gguf(const gguf::Metadata& m, const std::string& file);

}  // namespace lq
