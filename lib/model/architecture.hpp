// Internal: the architectures liblq reads, one row each (lib/model/architecture.cpp). A row holds
// what differs between them for conversion (GGUF architecture name, the Hugging Face class, whether
// llama.cpp's converter re-orders q/k rows) and for the engine (RoPE pair layout, biases). Code asks
// the row, never compares architecture names; a new architecture starts with a new row.
#pragma once

#include <lq/model.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace lq {

/// The {arch}.* keys llama.cpp's converter writes for an architecture beyond what every text model
/// gets (context and embedding length, heads, RoPE base, RMS epsilon, key/value length when
/// config.json has head_dim).
enum class ConverterKeys : uint8_t {
  text_model,  ///< the common set only (qwen2, qwen3)
  llama,       ///< + vocab_size and rope.dimension_count (LlamaModel: llama, mistral)
  /// phi3's own set: rope.dimension_count, rope.scaling.original_context_length,
  /// attention.sliding_window (0 without one); no key/value length, no vocab_size
  phi3,
};

struct Architecture {
  std::string_view model_type;  ///< Hugging Face config.json model_type ("mistral")
  std::string_view gguf;        ///< GGUF general.architecture llama.cpp's converter writes ("llama")
  std::string_view hf_class;    ///< config.json "architectures" entry written for it ("MistralForCausalLM")
  /// llama.cpp's converter re-orders q/k rows from Hugging Face's rotate-half layout into the
  /// adjacent pairs its "normal" RoPE rotates (llama, mistral); the others keep HF's rows and use
  /// NeoX RoPE, which rotates (i, i + d/2).
  bool permute_qk = false;
  bool qkv_bias = false;  ///< q/k/v projections always have biases (else config's attention_bias)
  /// RMSNorm of every q and k head (weights attn_q_norm / attn_k_norm, head_dim values) before RoPE
  /// (qwen3).
  bool qk_norm = false;
  /// q, k and v in one projection, attn_qkv (rows q, then k, then v), as HF's qkv_proj (phi3).
  bool fused_qkv = false;
  /// gate and up in one projection, ffn_up of 2 x n_ff rows (gate, then up), as HF's gate_up_proj (phi3).
  bool fused_gate_up = false;
  ConverterKeys keys = ConverterKeys::text_model;

  // Gemma 2 / Gemma 3 differences (each false / 0 / llama for the Llama family).
  /// Which {arch}.* hyper-parameter keys llama.cpp's converter writes, in its order.
  enum class HparamKeys : uint8_t { llama, gemma2, gemma3 };
  HparamKeys hparam_keys = HparamKeys::llama;
  /// HF's RMSNorm multiplies by (1 + w): the converter stores every *norm.weight as w + 1 (added
  /// in the checkpoint's dtype), and the engine multiplies by the stored value.
  bool norm_plus_one = false;
  /// RMSNorms after attention and after the MLP too (attn_post_norm / ffn_post_norm: HF's
  /// post_attention_layernorm and post_feedforward_layernorm; pre_feedforward_layernorm is ffn_norm).
  bool sandwich_norms = false;
  bool gelu_tanh_ffn = false;    ///< gated MLP with GELU (tanh approximation) instead of SiLU
  bool scale_embedding = false;  ///< token embeddings multiplied by sqrt(n_embd)
  /// Sliding-window layers: layer l attends to the last sliding_window positions when
  /// l % swa_period < swa_period - 1 (llama.cpp's pattern; 2: every other layer, 6: five in six); 0 none.
  int swa_period = 0;
  /// llama.cpp scales attention scores by 1 / sqrt(n_embd / n_head) instead of 1 / sqrt(head_dim)
  /// for a model of this many blocks (Gemma 2 and 3 27B); 0 none.
  int64_t wide_attn_scale_blocks = 0;
  /// The converter skips lm_head.weight (the output reuses token_embd).
  bool drops_lm_head = false;
  /// SentencePiece vocabularies are written with tokenizer.ggml.add_space_prefix = false.
  bool no_space_prefix = false;

  /// Mixture of experts: every block's MLP is a router (ffn_gate_inp) over experts merged into
  /// 3-D tensors (ffn_gate_exps / ffn_up_exps / ffn_down_exps); see MoeStyle.
  enum class MoeStyle {
    none,
    mixtral,  ///< block_sparse_moe.experts.N.w1/w2/w3; softmax over the top-k logits
    qwen,     ///< mlp.experts.N.*_proj; softmax over all, top-k, renormalised when norm_topk_prob
  };
  MoeStyle moe = MoeStyle::none;
  bool shared_expert = false;  ///< a shared expert (ffn_*_shexp) beside the routed ones, with a sigmoid gate
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
/// The decoder linears of a block by GGUF role that are one matrix each, in the checkpoint's order:
/// q, k, v, o, gate, up, down, or with fused projections (phi3) attn_qkv for q/k/v and ffn_up for
/// gate/up; with experts q, k, v, o and the shared expert's gate, up and down where there is one
/// (the routers stay float; the experts are expert_linear_roles).
std::span<const char* const> block_linear_roles(const Architecture& a);
/// The merged expert tensors of a mixture-of-experts block (one matrix per expert): gate, up, down;
/// empty without experts.
std::span<const char* const> expert_linear_roles(const Architecture& a);
/// The block input a linear reads: 0 the attention norm's output (q, k, v, fused qkv), 1 the
/// attention (o), 2 the MLP norm's output (gate, up, fused gate_up), 3 the MLP activation (down);
/// -1 for any other role. Last (the linear that may take that input's Hessian storage): v or qkv,
/// o, up, down.
/// The shared expert's linears read sites 2 (gate, up) and 3 (down) too.
int linear_input_site(std::string_view role);
bool last_reader_of_input(std::string_view role);
/// The per-expert input an expert tensor's matrix reads: 0 the tokens routed to the expert (gate,
/// up), 1 its activation (down); -1 for any other role. Last readers: up, down.
int expert_input_site(std::string_view role);
/// "llama, mistral, qwen2": the supported model_type values for error messages.
std::string supported_model_types();

}  // namespace lq
