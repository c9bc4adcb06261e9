// The architecture table (see architecture.hpp): one row per Hugging Face model_type liblq reads.
#include "model/architecture.hpp"

#include "core/fail.hpp"

namespace lq {
namespace {

constexpr Architecture kArchitectures[] = {
    // model_type   gguf      hf_class              permute_qk qkv_bias
    {"llama", "llama", "LlamaForCausalLM", true, false, false, false, false, ConverterKeys::llama},
    {"mistral", "llama", "MistralForCausalLM", true, false, false, false, false, ConverterKeys::llama},
    {"qwen2", "qwen2", "Qwen2ForCausalLM", false, true},
    // model_type   gguf      hf_class              permute_qk qkv_bias qk_norm
    {"qwen3", "qwen3", "Qwen3ForCausalLM", false, false, true},
    // model_type   gguf      hf_class              permute_qk qkv_bias qk_norm fused_qkv fused_gate_up
    {"phi3", "phi3", "Phi3ForCausalLM", false, false, false, true, true, ConverterKeys::phi3},
    // Gemma: NeoX RoPE, (1 + w) norms with post-norms, GELU-tanh MLP, scaled embeddings, tied output.
    {.model_type = "gemma2", .gguf = "gemma2", .hf_class = "Gemma2ForCausalLM",
     .hparam_keys = Architecture::HparamKeys::gemma2, .norm_plus_one = true, .sandwich_norms = true,
     .gelu_tanh_ffn = true, .scale_embedding = true, .swa_period = 2, .wide_attn_scale_blocks = 46, .drops_lm_head = true, .no_space_prefix = true},
    {.model_type = "gemma3_text", .gguf = "gemma3", .hf_class = "Gemma3ForCausalLM",
     .hparam_keys = Architecture::HparamKeys::gemma3, .norm_plus_one = true, .sandwich_norms = true,
     .gelu_tanh_ffn = true, .scale_embedding = true, .swa_period = 6, .wide_attn_scale_blocks = 62, .no_space_prefix = true},
    {.model_type = "gemma3", .gguf = "gemma3", .hf_class = "Gemma3ForConditionalGeneration",
     .hparam_keys = Architecture::HparamKeys::gemma3, .norm_plus_one = true, .sandwich_norms = true,
     .gelu_tanh_ffn = true, .scale_embedding = true, .swa_period = 6, .wide_attn_scale_blocks = 62, .no_space_prefix = true},
    // Mixtures of experts (router ffn_gate_inp over experts merged into 3-D ffn_*_exps tensors).
    {.model_type = "mixtral", .gguf = "llama", .hf_class = "MixtralForCausalLM", .permute_qk = true,
     .keys = ConverterKeys::llama, .moe = Architecture::MoeStyle::mixtral},
    {.model_type = "qwen2_moe", .gguf = "qwen2moe", .hf_class = "Qwen2MoeForCausalLM", .qkv_bias = true,
     .moe = Architecture::MoeStyle::qwen, .shared_expert = true, .expert_weights_norm = false},
    {.model_type = "qwen3_moe", .gguf = "qwen3moe", .hf_class = "Qwen3MoeForCausalLM", .qk_norm = true,
     .moe = Architecture::MoeStyle::qwen},
};

}  // namespace

std::span<const Architecture> architectures() { return kArchitectures; }

const Architecture* find_architecture(std::string_view model_type) {
  for (const auto& a : kArchitectures)
    if (a.model_type == model_type) return &a;
  return nullptr;
}

const Architecture* find_gguf_architecture(std::string_view gguf_arch) {
  for (const auto& a : kArchitectures)
    if (a.gguf == gguf_arch) return &a;
  return nullptr;
}

const Architecture& architecture_of(const ModelConfig& c, std::string_view what) {
  const Architecture* a = find_architecture(c.model_type);
  if (!a) a = find_gguf_architecture(c.architecture);
  if (!a)
    fail(Errc::invalid_model, "{}: architecture '{}' is not supported (model_type: {})", what,
         c.model_type.empty() ? c.architecture : c.model_type, supported_model_types());
  return *a;
}

std::span<const char* const> block_linear_roles(const Architecture& a) {
  static constexpr const char* kSeparate[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
  static constexpr const char* kFusedQkv[] = {"attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
  static constexpr const char* kFusedUp[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_down"};
  static constexpr const char* kFused[] = {"attn_qkv", "attn_output", "ffn_up", "ffn_down"};
  static constexpr const char* kMoe[] = {"attn_q", "attn_k", "attn_v", "attn_output"};
  static constexpr const char* kMoeShared[] = {"attn_q",         "attn_k",       "attn_v",        "attn_output",
                                               "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"};
  if (a.moe != Architecture::MoeStyle::none)
    return a.shared_expert ? std::span<const char* const>(kMoeShared) : std::span<const char* const>(kMoe);
  if (a.fused_qkv) return a.fused_gate_up ? std::span<const char* const>(kFused) : std::span<const char* const>(kFusedQkv);
  return a.fused_gate_up ? std::span<const char* const>(kFusedUp) : std::span<const char* const>(kSeparate);
}

std::span<const char* const> expert_linear_roles(const Architecture& a) {
  static constexpr const char* kExperts[] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
  if (a.moe == Architecture::MoeStyle::none) return {};
  return kExperts;
}

int linear_input_site(std::string_view role) {
  if (role == "attn_q" || role == "attn_k" || role == "attn_v" || role == "attn_qkv") return 0;
  if (role == "attn_output") return 1;
  if (role == "ffn_gate" || role == "ffn_up" || role == "ffn_gate_shexp" || role == "ffn_up_shexp") return 2;
  if (role == "ffn_down" || role == "ffn_down_shexp") return 3;
  return -1;
}

bool last_reader_of_input(std::string_view role) {
  return role == "attn_v" || role == "attn_qkv" || role == "attn_output" || role == "ffn_up" || role == "ffn_down" ||
         role == "ffn_up_shexp" || role == "ffn_down_shexp" || role == "ffn_up_exps" || role == "ffn_down_exps";
}

int expert_input_site(std::string_view role) {
  if (role == "ffn_gate_exps" || role == "ffn_up_exps") return 0;
  if (role == "ffn_down_exps") return 1;
  return -1;
}

std::string supported_model_types() {
  std::string s;
  for (const auto& a : kArchitectures) s += (s.empty() ? "" : ", ") + std::string(a.model_type);
  return s;
}

bool is_supported_model_type(const std::string& model_type) { return find_architecture(model_type) != nullptr; }

}  // namespace lq
