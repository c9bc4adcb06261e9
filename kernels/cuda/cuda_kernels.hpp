// The CUDA column of the type table: the one helper that yields empty slots when CUDA is not
// built (LQ_WITH_CUDA comes from the generated lq_build_config.hpp).
#pragma once

#include <lq/quant_type.hpp>

#include "lq_build_config.hpp"

#include <cstdint>
#include <memory>

namespace lq {
class Backend;
}

namespace lq::cuda {

#if LQ_WITH_CUDA
void dequantize_q8_0(const void* src, float* dst, int64_t n);
void dequantize_q4_0(const void* src, float* dst, int64_t n);
void quantize_q8_0(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
#endif

constexpr KernelSet kernels(QuantType t) {
#if LQ_WITH_CUDA
  switch (t) {
    case QuantType::Q8_0: return {quantize_q8_0, dequantize_q8_0, nullptr};
    case QuantType::Q4_0: return {nullptr, dequantize_q4_0, nullptr};
    default: return {};
  }
#else
  (void)t;
  return {};
#endif
}

/// The CUDA back-end, or nullptr when CUDA is not built.
std::unique_ptr<Backend> make_backend();

}  // namespace lq::cuda
