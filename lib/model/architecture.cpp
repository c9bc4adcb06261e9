// The architecture table (see architecture.hpp): one row per Hugging Face model_type liblq reads.
#include "model/architecture.hpp"

#include "core/fail.hpp"

namespace lq {
namespace {

constexpr Architecture kArchitectures[] = {
    // model_type   gguf      hf_class              permute_qk qkv_bias
    {"llama", "llama", "LlamaForCausalLM", true, false},
    {"mistral", "llama", "MistralForCausalLM", true, false},
    {"qwen2", "qwen2", "Qwen2ForCausalLM", false, true},
    // Mixtures of experts: model_type gguf hf_class permute_qk qkv_bias moe shared_expert qk_norm
    {"mixtral", "llama", "MixtralForCausalLM", true, false, Architecture::MoeStyle::mixtral},
    {"qwen2_moe", "qwen2moe", "Qwen2MoeForCausalLM", false, true, Architecture::MoeStyle::qwen, true, false, false},
    {"qwen3_moe", "qwen3moe", "Qwen3MoeForCausalLM", false, false, Architecture::MoeStyle::qwen, false, true},
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

std::string supported_model_types() {
  std::string s;
  for (const auto& a : kArchitectures) s += (s.empty() ? "" : ", ") + std::string(a.model_type);
  return s;
}

bool is_supported_model_type(const std::string& model_type) { return find_architecture(model_type) != nullptr; }

}  // namespace lq
