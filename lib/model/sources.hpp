// Internal: the concrete ModelSource implementations behind ModelSource::open().
#pragma once

#include <lq/model.hpp>

namespace lq {

std::unique_ptr<ModelSource> open_gguf_source(const std::filesystem::path& path);
std::unique_ptr<ModelSource> open_hf_source(const std::filesystem::path& path);

}  // namespace lq
