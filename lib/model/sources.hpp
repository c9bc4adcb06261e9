// Internal: the concrete ModelSource implementations behind ModelSource::open().
#pragma once

#include <lq/model.hpp>

#include "formats/quant_unpack.hpp"
#include "model/quant_scheme.hpp"

#include <memory>
#include <optional>

namespace lq {

std::unique_ptr<ModelSource> open_gguf_source(const std::filesystem::path& path);
std::unique_ptr<ModelSource> open_hf_source(const std::filesystem::path& path);

/// The quantization config of a GPTQ / AWQ / compressed-tensors checkpoint opened by
/// open_hf_source (null for any other source, and for compressed-tensors int8 W8A8).
const QuantCheckpoint* hf_quant_checkpoint(const ModelSource& src);

/// A quantized linear's integer codes (rows in GGUF order, q/k permuted like the F32 rows).
struct QuantizedLinear {
  std::shared_ptr<const unpack::IntWeight> weight;
  WeightScheme scheme;
};
/// For tensor `t` of such a checkpoint: its codes when it is an integer-quantized linear
/// (nullopt for float tensors, FP8 weights and every other source).
std::optional<QuantizedLinear> hf_quantized_linear(const ModelSource& src, const ModelTensor& t);
/// Whether tensor `t` of such a checkpoint is an FP8 linear (read dequantized as F32).
bool hf_is_fp8_linear(const ModelSource& src, const ModelTensor& t);

}  // namespace lq
