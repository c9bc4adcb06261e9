// Tensor naming: GGUF <-> Hugging Face names of the Llama family and "blk.N" parsing (see
// tensor_names.hpp). The per-block table below is the only spelling of these names.
#include "model/tensor_names.hpp"

#include <charconv>

namespace lq::names {
namespace {

struct BlockName {
  std::string_view gguf;  // without the "blk.N." prefix
  std::string_view hf;    // without the "model.layers.N." prefix
};
constexpr BlockName kBlock[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
    // qwen3: RMSNorm of each q / k head
    {"attn_q_norm.weight", "self_attn.q_norm.weight"},
    {"attn_k_norm.weight", "self_attn.k_norm.weight"},
    // phi3: fused projections (ffn_up holds gate and up; the plain up_proj row above comes first)
    {"attn_qkv.weight", "self_attn.qkv_proj.weight"},
    {"ffn_up.weight", "mlp.gate_up_proj.weight"},
    // Mixture of experts: the router (Qwen-MoE's, then Mixtral's) and Qwen2-MoE's shared expert
    {"ffn_gate_inp.weight", "mlp.gate.weight"},
    {"ffn_gate_inp.weight", "block_sparse_moe.gate.weight"},
    {"ffn_gate_inp_shexp.weight", "mlp.shared_expert_gate.weight"},
    {"ffn_gate_shexp.weight", "mlp.shared_expert.gate_proj.weight"},
    {"ffn_up_shexp.weight", "mlp.shared_expert.up_proj.weight"},
    {"ffn_down_shexp.weight", "mlp.shared_expert.down_proj.weight"},
};
// One expert's projection -> the merged 3-D tensor it is a slice of (Qwen-MoE's names, then
// Mixtral's: hf_expert_module relies on the halves).
constexpr BlockName kExpert[] = {
    {"ffn_gate_exps.weight", "gate_proj.weight"}, {"ffn_up_exps.weight", "up_proj.weight"},
    {"ffn_down_exps.weight", "down_proj.weight"}, {"ffn_gate_exps.weight", "w1.weight"},
    {"ffn_down_exps.weight", "w2.weight"},        {"ffn_up_exps.weight", "w3.weight"},
};
constexpr BlockName kTop[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};
constexpr std::string_view kBlk = "blk.", kLayers = "model.layers.";
// Blocks with sandwich norms (Gemma 2/3): looked up before kBlock by hf_to_gguf_sandwich; their
// GGUF names that kBlock lacks are found by gguf_to_hf too.
constexpr BlockName kSandwichBlock[] = {
    {"post_attention_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_norm.weight", "pre_feedforward_layernorm.weight"},
    {"post_ffw_norm.weight", "post_feedforward_layernorm.weight"},
    {"attn_q_norm.weight", "self_attn.q_norm.weight"},
    {"attn_k_norm.weight", "self_attn.k_norm.weight"},
};

// "<prefix>N.rest" -> {N, rest}; block -1 when the prefix or the number is missing.
SplitName split_prefixed(std::string_view s, std::string_view prefix) noexcept {
  if (s.substr(0, prefix.size()) != prefix) return {-1, s};
  const std::string_view tail = s.substr(prefix.size());
  const size_t dot = tail.find('.');
  if (dot == 0 || dot == std::string_view::npos) return {-1, s};
  int n = 0;
  const auto [p, ec] = std::from_chars(tail.data(), tail.data() + dot, n);
  if (ec != std::errc() || p != tail.data() + dot || n < 0) return {-1, s};
  if (dot > 1 && tail[0] == '0') return {-1, s};  // "blk.03.": not a name llama.cpp writes
  return {n, tail.substr(dot + 1)};
}

}  // namespace

SplitName split(std::string_view gguf) noexcept { return split_prefixed(gguf, kBlk); }

int block_of(std::string_view gguf) noexcept { return split(gguf).block; }

std::string block_tensor(int block, std::string_view suffix) {
  return std::string(kBlk) + std::to_string(block) + "." + std::string(suffix);
}

std::optional<std::string> gguf_to_hf(std::string_view gguf) {
  const SplitName s = split(gguf);
  if (s.block < 0) {
    for (const auto& t : kTop)
      if (t.gguf == gguf) return std::string(t.hf);
    return std::nullopt;
  }
  for (const auto& b : kBlock)
    if (b.gguf == s.rest) return std::string(kLayers) + std::to_string(s.block) + "." + std::string(b.hf);
  for (const auto& b : kSandwichBlock)
    if (b.gguf == s.rest) return std::string(kLayers) + std::to_string(s.block) + "." + std::string(b.hf);
  return std::nullopt;
}

std::optional<std::string> gguf_to_hf_sandwich(std::string_view gguf) {
  const SplitName s = split(gguf);
  if (s.block >= 0)
    for (const auto& b : kSandwichBlock)
      if (b.gguf == s.rest) return std::string(kLayers) + std::to_string(s.block) + "." + std::string(b.hf);
  return gguf_to_hf(gguf);
}

std::optional<std::string> hf_to_gguf_sandwich(std::string_view hf) {
  const SplitName s = split_prefixed(hf, kLayers);
  if (s.block >= 0)
    for (const auto& b : kSandwichBlock)
      if (b.hf == s.rest) return block_tensor(s.block, b.gguf);
  return hf_to_gguf(hf);
}

std::optional<std::string> hf_to_gguf(std::string_view hf) {
  for (const auto& t : kTop)
    if (t.hf == hf) return std::string(t.gguf);
  const SplitName s = split_prefixed(hf, kLayers);
  if (s.block < 0) return std::nullopt;
  for (const auto& b : kBlock)
    if (b.hf == s.rest) return block_tensor(s.block, b.gguf);
  return std::nullopt;
}

std::optional<ExpertSlice> hf_expert(std::string_view hf) {
  const SplitName s = split_prefixed(hf, kLayers);
  if (s.block < 0) return std::nullopt;
  for (std::string_view prefix : {std::string_view("mlp.experts."), std::string_view("block_sparse_moe.experts.")}) {
    if (s.rest.substr(0, prefix.size()) != prefix) continue;
    const std::string_view tail = s.rest.substr(prefix.size());
    const size_t dot = tail.find('.');
    if (dot == 0 || dot == std::string_view::npos || (dot > 1 && tail[0] == '0')) return std::nullopt;
    int e = 0;
    const auto [p, ec] = std::from_chars(tail.data(), tail.data() + dot, e);
    if (ec != std::errc() || p != tail.data() + dot || e < 0) return std::nullopt;
    for (const auto& x : kExpert)
      if (x.hf == tail.substr(dot + 1)) return ExpertSlice{block_tensor(s.block, x.gguf), e};
    return std::nullopt;
  }
  return std::nullopt;
}

std::string hf_expert_module(std::string_view gguf, int expert, bool mixtral) {
  const SplitName s = split(gguf);
  if (s.block < 0 || expert < 0) return {};
  constexpr std::string_view kWeight = ".weight";
  // kExpert lists Qwen-MoE's names first, then Mixtral's.
  const size_t half = std::size(kExpert) / 2;
  for (size_t i = mixtral ? half : 0; i < (mixtral ? std::size(kExpert) : half); ++i)
    if (kExpert[i].gguf == s.rest) {
      const std::string_view hf = kExpert[i].hf.substr(0, kExpert[i].hf.size() - kWeight.size());
      return std::string(kLayers) + std::to_string(s.block) + (mixtral ? ".block_sparse_moe" : ".mlp") + ".experts." +
             std::to_string(expert) + "." + std::string(hf);
    }
  return {};
}

std::string moe_router_module(std::string_view hf_module) {
  const std::string w = std::string(hf_module) + ".weight";
  const SplitName s = split_prefixed(w, kLayers);
  if (s.block < 0) return {};
  for (const auto& b : kBlock)
    if (b.hf == s.rest && (b.gguf == "ffn_gate_inp.weight" || b.gguf == "ffn_gate_inp_shexp.weight"))
      return std::string(s.rest.substr(0, s.rest.size() - 7));
  return {};
}

bool hf_recomputed(std::string_view hf) noexcept {
  const SplitName s = split_prefixed(hf, kLayers);
  return s.block >= 0 && s.rest == "self_attn.rotary_emb.inv_freq";
}

bool multimodal_part(std::string_view hf) {
  for (std::string_view p : {"vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."})
    if (hf.substr(0, p.size()) == p) return true;
  return false;
}

std::string text_model_name(std::string_view hf) {
  std::string s(hf);
  constexpr std::string_view lm = "language_model.";
  if (const size_t at = s.find(lm); at != std::string::npos) s.erase(at, lm.size());
  return s;
}

std::string hf_module(std::string_view gguf, bool fused_gate_up) {
  const SplitName s = split(gguf);
  if (s.block < 0) {
    if (gguf == "token_embd.weight") return "model.embed_tokens";
    if (gguf == "output.weight") return "lm_head";
    return std::string(gguf);
  }
  std::string_view rest = s.rest;
  constexpr std::string_view kWeight = ".weight";
  if (rest.size() > kWeight.size() && rest.substr(rest.size() - kWeight.size()) == kWeight)
    rest = rest.substr(0, rest.size() - kWeight.size());
  const std::string base = std::string(kLayers) + std::to_string(s.block) + ".";
  if (fused_gate_up && rest == "ffn_up") return base + "mlp.gate_up_proj";
  for (const auto& b : kBlock)
    if (b.gguf.size() == rest.size() + kWeight.size() && b.gguf.substr(0, rest.size()) == rest &&
        b.gguf.substr(rest.size()) == kWeight)
      return base + std::string(b.hf.substr(0, b.hf.size() - kWeight.size()));
  return base + std::string(rest);
}

std::string hf_layer(std::string_view gguf) {
  const SplitName s = split(gguf);
  if (s.block >= 0) return std::string(kLayers) + std::to_string(s.block);
  if (gguf == "token_embd.weight") return "model.embed_tokens";
  if (gguf == "output.weight") return "lm_head";
  return std::string(gguf);
}

std::string hf_group(std::string_view gguf) {
  const SplitName s = split(gguf);
  if (s.block < 0) {
    if (gguf == "token_embd.weight") return "model.embed_tokens";
    if (gguf == "output.weight") return "lm_head";
    return {};
  }
  const std::string base = std::string(kLayers) + std::to_string(s.block);
  if (s.rest.substr(0, 5) == "attn_") return base + ".self_attn";
  if (s.rest.substr(0, 4) == "ffn_") return base + ".mlp";
  return base;
}

}  // namespace lq::names
