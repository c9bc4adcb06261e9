// Internal: the CUDA back-end's factory and its host entry points (cuda_backend.cpp). Its row per
// type lives in cuda_backend.cpp; no_cuda.cpp stands in when CUDA is not built.
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>
#include <memory>

namespace lq {
class Backend;
}

namespace lq::cuda {

/// The CUDA back-end, or nullptr when CUDA is not built.
std::unique_ptr<Backend> make_backend();

}  // namespace lq::cuda
