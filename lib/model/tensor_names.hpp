// Internal: the one place for tensor naming. GGUF names ("blk.3.attn_q.weight") against Hugging
// Face names ("model.layers.3.self_attn.q_proj.weight") for the Llama family, and the parsing of
// "blk.N" block indices. Nothing else in the library spells these names or parses "blk.".
// Pure string functions: no model, file or kernel access here.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace lq::names {

/// One GGUF tensor name split at its block: "blk.3.attn_q.weight" -> {3, "attn_q.weight"};
/// a non-block name ("output.weight") has block -1 and the whole name as its rest.
struct SplitName {
  int block = -1;
  std::string_view rest;
};
/// Splits `gguf` as above; a malformed block prefix ("blk.x.", "blk.3", "blk.03.") counts as
/// non-block.
SplitName split(std::string_view gguf) noexcept;
/// The block index of a GGUF name, or -1 when it is not a block tensor.
int block_of(std::string_view gguf) noexcept;
/// "blk.N.<suffix>".
std::string block_tensor(int block, std::string_view suffix);

/// A GGUF name -> its Hugging Face parameter name ("blk.3.attn_q.weight" ->
/// "model.layers.3.self_attn.q_proj.weight", "output.weight" -> "lm_head.weight"); nullopt for a
/// name with no Hugging Face counterpart.
std::optional<std::string> gguf_to_hf(std::string_view gguf);
/// A Hugging Face parameter name -> its GGUF name; nullopt when the name is not one the Llama
/// family stores (the caller decides whether that is an error).
std::optional<std::string> hf_to_gguf(std::string_view hf);
/// The same for architectures with norms around both attention and MLP (Gemma 2/3): there HF's
/// post_attention_layernorm is the norm after attention (post_attention_norm), the MLP's input norm is
/// pre_feedforward_layernorm (ffn_norm), plus post_feedforward_layernorm and the q/k norms.
std::optional<std::string> hf_to_gguf_sandwich(std::string_view hf);
/// gguf_to_hf for blocks with sandwich norms (Gemma 2/3): their names first ("blk.3.ffn_norm.weight"
/// is "model.layers.3.pre_feedforward_layernorm.weight" there).
std::optional<std::string> gguf_to_hf_sandwich(std::string_view gguf);
/// One expert's projection in a Hugging Face Mixture-of-Experts checkpoint
/// ("model.layers.3.mlp.experts.5.up_proj.weight", Mixtral's "...block_sparse_moe.experts.5.w3.weight"):
/// the merged GGUF tensor it is a slice of ("blk.3.ffn_up_exps.weight") and the expert's index.
struct ExpertSlice {
  std::string gguf;
  int expert = 0;
};
std::optional<ExpertSlice> hf_expert(std::string_view hf);
/// The Hugging Face module of expert `expert`'s slice of a merged expert tensor, hf_expert's
/// inverse: ("blk.3.ffn_gate_exps.weight", 5) is "model.layers.3.block_sparse_moe.experts.5.w1"
/// (Mixtral's names) or "model.layers.3.mlp.experts.5.gate_proj" (Qwen-MoE's); empty for any
/// other tensor.
std::string hf_expert_module(std::string_view gguf, int expert, bool mixtral);
/// For a mixture-of-experts router module ("model.layers.3.block_sparse_moe.gate",
/// "model.layers.3.mlp.gate", "model.layers.3.mlp.shared_expert_gate"), its name within the block
/// ("block_sparse_moe.gate"); empty for any other module.
std::string moe_router_module(std::string_view hf_module);
/// Whether a Hugging Face checkpoint entry is a buffer that GGUF does not store because llama.cpp
/// recomputes it ("model.layers.N.self_attn.rotary_emb.inv_freq").
bool hf_recomputed(std::string_view hf) noexcept;

/// A multimodal checkpoint's text model (Gemma3ForConditionalGeneration): the converter drops
/// "language_model." from every name ("language_model.model.layers.0..." and
/// "model.language_model.layers.0..." are "model.layers.0...") and skips the vision tower and its
/// projector (multimodal_part).
bool multimodal_part(std::string_view hf);
std::string text_model_name(std::string_view hf);

/// The Hugging Face module of a GGUF weight: "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj",
/// "token_embd.weight" -> "model.embed_tokens", "output.weight" -> "lm_head"; other non-block
/// names unchanged, unknown block suffixes keep their GGUF spelling (the analysis reports' names).
/// fused_gate_up (phi3): ffn_up is "mlp.gate_up_proj".
std::string hf_module(std::string_view gguf, bool fused_gate_up = false);
/// The Hugging Face layer a GGUF tensor belongs to: "model.layers.3", "model.embed_tokens",
/// "lm_head"; other non-block tensors keep their name.
std::string hf_layer(std::string_view gguf);
/// The sub-module group of a tensor for reports: "model.layers.3.self_attn" (attn_*, attn_norm
/// included), "model.layers.3.mlp" (ffn_*, ffn_norm included), "model.layers.3" (other block
/// tensors), "model.embed_tokens", "lm_head"; empty for other non-block tensors.
std::string hf_group(std::string_view gguf);

}  // namespace lq::names
