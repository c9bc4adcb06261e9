// Internal: the architectures liblq reads, one row each (lib/model/architecture.cpp). A row holds
// what differs between them for conversion (GGUF architecture name, the Hugging Face class, whether
// llama.cpp's converter re-orders q/k rows) and for the engine (RoPE pair layout, biases). Code asks
// the row, never compares architecture names; a new architecture starts with a new row.
#pragma once

#include <lq/model.hpp>

#include <span>
#include <string>
#include <string_view>

namespace lq {

struct Architecture {
  std::string_view model_type;  ///< Hugging Face config.json model_type ("mistral")
  std::string_view gguf;        ///< GGUF general.architecture llama.cpp's converter writes ("llama")
  std::string_view hf_class;    ///< config.json "architectures" entry written for it ("MistralForCausalLM")
  /// llama.cpp's converter re-orders q/k rows from Hugging Face's rotate-half layout into the
  /// adjacent pairs its "normal" RoPE rotates (llama, mistral); the others keep HF's rows and use
  /// NeoX RoPE, which rotates (i, i + d/2).
  bool permute_qk = false;
  bool qkv_bias = false;  ///< q/k/v projections always have biases (else config's attention_bias)
  /// Mixture of experts: every block's MLP is a router (ffn_gate_inp) over experts merged into
  /// 3-D tensors (ffn_gate_exps / ffn_up_exps / ffn_down_exps); see MoeStyle.
  enum class MoeStyle {
    none,
    mixtral,  ///< block_sparse_moe.experts.N.w1/w2/w3; softmax over the top-k logits
    qwen,     ///< mlp.experts.N.*_proj; softmax over all, top-k, renormalised when norm_topk_prob
  };
  MoeStyle moe = MoeStyle::none;
  bool shared_expert = false;  ///< a shared expert (ffn_*_shexp) beside the routed ones, with a sigmoid gate
  bool qk_norm = false;        ///< RMSNorm of each q and k head (attn_q_norm / attn_k_norm) before RoPE
  /// llama.cpp renormalises the top-k routing weights of this GGUF architecture (all but qwen2moe).
  bool expert_weights_norm = true;
  /// The NeoX pair layout in the engine: exactly the architectures whose rows are not re-ordered.
  bool neox_rope() const { return !permute_qk; }
};

/// Every row, in the order they are listed to users.
std::span<const Architecture> architectures();
/// The row of a Hugging Face model_type; null when liblq does not read it.
const Architecture* find_architecture(std::string_view model_type);
/// The row of a GGUF general.architecture (the first row writing it: "llama" for llama and mistral).
const Architecture* find_gguf_architecture(std::string_view gguf_arch);
/// The row of a model's config (model_type first, then the GGUF architecture); Errc::invalid_model
/// naming `what` and the supported list when there is none.
const Architecture& architecture_of(const ModelConfig& c, std::string_view what);
/// "llama, mistral, qwen2": the supported model_type values for error messages.
std::string supported_model_types();

}  // namespace lq
