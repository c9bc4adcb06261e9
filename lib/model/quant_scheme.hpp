// Internal: what a third-party quantized checkpoint says about its quantization, read from
// config.json's quantization_config (or GPTQ's quantize_config.json): the method (GPTQ, AWQ,
// compressed-tensors), the packing, bits, group size, symmetry, act-order, GPTQ's checkpoint_format
// (v1 zeros stored minus one, or v2), AWQ's version, compressed-tensors' config groups with their
// targets and strategy (tensor, channel, group, block), and which modules stay unquantized
// (ignore, modules_to_not_convert, GPTQModel's dynamic "-:" rules). The one place that decides
// which scheme a module has. compressed-tensors int8 W8A8 keeps its own reader (config.hpp).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lq {

/// How a quantized linear's tensors are stored.
enum class Packing {
  gptq,       ///< qweight/qzeros/scales/g_idx, int32 bit streams (AutoGPTQ, GPTQModel)
  awq_gemm,   ///< qweight/qzeros/scales, 4-bit interleaved along the output axis (AutoAWQ GEMM)
  ct_packed,  ///< compressed-tensors pack-quantized: weight_packed, weight_scale, [weight_zero_point]
  ct_int,     ///< compressed-tensors int-/naive-quantized weight-only: int8 weight, weight_scale
  ct_fp8,     ///< compressed-tensors float-quantized: float8_e4m3fn weight, weight_scale
};

/// The weights' scheme of one module.
struct WeightScheme {
  Packing packing = Packing::gptq;
  int bits = 4;
  int64_t group_size = -1;  ///< -1: one group per row (channel) or the whole tensor
  bool sym = true;
  bool actorder = false;    ///< desc_act / actorder: g_idx may be non-monotonic
  bool v1_zeros = false;    ///< GPTQ checkpoint_format "gptq": zeros stored minus one
  std::string strategy;     ///< compressed-tensors: tensor, channel, group, block
  int64_t block_rows = 0, block_cols = 0;  ///< strategy block: the block_structure
  std::string activations;  ///< quantized activations the checkpoint asks for ("" none), e.g. "float 8-bit dynamic per token"
  /// A short human description, e.g. "GPTQ 4-bit g128 sym act-order (v1 zeros)".
  std::string describe() const;
};

/// A quantized checkpoint's configuration.
struct QuantCheckpoint {
  std::string method;  ///< "gptq", "awq" or "compressed-tensors"
  std::string format;  ///< gptq|gptq_v2; AWQ version; compressed-tensors format
  struct Group {
    std::string name;
    std::vector<std::string> targets;  ///< "Linear", module names or "re:" patterns
    WeightScheme scheme;
  };
  std::vector<Group> groups;          ///< GPTQ/AWQ: one group targeting every block linear
  std::vector<std::string> ignore;    ///< names or "re:" patterns left unquantized
  bool lm_head = false;               ///< GPTQ/AWQ: lm_head is quantized too
  /// GPTQModel "dynamic": pattern -> overrides ("-:" prefix: not quantized).
  std::vector<std::pair<std::string, nlohmann::json>> dynamic;

  /// The scheme of module `mod` (HF name without ".weight", e.g. "model.layers.0.mlp.up_proj"),
  /// or nullopt where it stays in float. Only linears of the model are asked.
  std::optional<WeightScheme> scheme_for(const std::string& mod) const;
  /// "GPTQ 4-bit g128 sym (v1 zeros)", or the groups' descriptions joined.
  std::string describe() const;
};

/// Reads a third-party quantization_config (`q`, from `file`). Returns nullopt for
/// compressed-tensors int8 W8A8 (the int8 reader's), throws Errc::invalid_model naming the file
/// and the key for anything not covered (method, bits, layout, strategy).
std::optional<QuantCheckpoint> read_quant_checkpoint(const nlohmann::json& q, const std::filesystem::path& file);

/// Whether compressed-tensors' config `q` is int8 W8A8 in every group (the int8 reader's case).
bool is_ct_int8_w8a8(const nlohmann::json& q);

}  // namespace lq
