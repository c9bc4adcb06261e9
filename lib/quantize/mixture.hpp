// Internal: llama.cpp's per-tensor type rules for each level (the "mixtures").
#pragma once

#include <lq/file_type.hpp>
#include <lq/model.hpp>
#include <lq/quant_type.hpp>

#include <optional>
#include <string>

namespace lq {

/// Broad tensor roles the rules act on.
enum class TensorRole { output, token_embd, attn_qkv, attn_kv_b, attn_v, attn_k, attn_q, attn_output, ffn_up, ffn_gate, ffn_down, other };

TensorRole tensor_role(const std::string& name);
bool role_is_attn_v(TensorRole r);

/// Whether a tensor is a weight llama-quantize would quantize (>= 2 dims, name ends in "weight",
/// not a norm, not a router); output.weight only when `quantize_output`.
bool tensor_allows_quantization(const std::string& name, int n_dims, bool quantize_output);

/// Tensors llama.cpp's converter writes as F32 whatever the output type: the MoE routers
/// (ffn_gate_inp, ffn_gate_inp_shexp).
bool converter_keeps_f32(const std::string& name);

/// llama-quantize's refusal rule: tensors of these types need importance data (not token_embd/output).
bool tensor_requires_imatrix(const std::string& name, QuantType t, FileType ftype);

/// The running state of the rules over a model's tensors (visited in GGUF order).
struct MixtureState {
  FileType ftype;
  ModelConfig config;
  bool has_imatrix = false;
  bool tied_embeddings = true;
  int n_attn_v = 0, i_attn_v = 0;
  int n_ffn_down = 0, i_ffn_down = 0;
  int n_ffn_gate = 0, i_ffn_gate = 0;
  int n_ffn_up = 0, i_ffn_up = 0;
  std::optional<QuantType> output_tensor_type;
  std::optional<QuantType> token_embedding_type;
};

/// The type the level's mixture chooses for a quantizable tensor, before fallbacks.
/// Advances the counters of `st` exactly as llama.cpp does.
QuantType mixture_type(MixtureState& st, const std::string& name, int64_t ne0, QuantType base);

/// Fallback when ne0 is not a multiple of `t`'s block size (nullopt: `t` fits).
std::optional<QuantType> fallback_type(QuantType t, int64_t ne0);

}  // namespace lq
