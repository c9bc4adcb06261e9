// Internal: the output tensors of one GPTQ-quantized linear in either layout (declared, then
// written into a ShardedSafetensorsWriter), shared by `quantize MODEL gptq` (gptq.cpp) and
// `convert X.gguf gptq` (gptq_convert.cpp).
#pragma once

#include <lq/gptq.hpp>

#include "formats/safetensors_writer.hpp"

#include <string>
#include <vector>

namespace lq::gptq_impl {

struct GpWriteSpec {
  GptqLayout layout = GptqLayout::compressed_tensors;
  bool sym = true;
  bool g_idx = false;                   ///< compressed-tensors: write weight_g_idx (act-order by position)
  StDtype scale_dtype = StDtype::BF16;  ///< compressed-tensors' weight_scale dtype (GPTQ layout: fp16)
};

/// Appends the specs of module `m`'s tensors.
void gp_specs(const std::string& m, const GptqMatrix& q, const GpWriteSpec& w, std::vector<StTensorSpec>& specs);
/// Writes them, in the order gp_specs declared.
void gp_write(ShardedSafetensorsWriter& out, const std::string& m, const GptqMatrix& q, const GpWriteSpec& w);

}  // namespace lq::gptq_impl
