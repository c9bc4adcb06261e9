// Built when the CUDA back-end is off: there is no CUDA back-end to register.
#include "cuda_kernels.hpp"

#include <lq/backend.hpp>

namespace lq::cuda {
std::unique_ptr<Backend> make_backend() { return nullptr; }
}  // namespace lq::cuda
