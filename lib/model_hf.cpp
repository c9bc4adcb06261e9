// ModelSource over a Hugging Face directory (config.json + safetensors shards).
#include "model_sources.hpp"

#include <lq/error.hpp>

namespace lq {

std::unique_ptr<ModelSource> open_hf_source(const std::filesystem::path& path) {
  fail(Errc::invalid_model, "{}: reading Hugging Face checkpoints is under construction", path.string());
}

}  // namespace lq
