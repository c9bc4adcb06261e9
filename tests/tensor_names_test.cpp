// Tensor naming (lib/model/tensor_names): "blk.N" parsing, GGUF <-> Hugging Face names of the
// Llama family both ways, and the report names derived from them; then every tensor of
// llama.cpp's own conversion of the tiny model against the names we give its checkpoint.
#include <lq/gguf.hpp>

#include "model/tensor_names.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace lq;

TEST_CASE("tensor names: blk.N splits at its block", "[tensor_names]") {
  const names::SplitName s = names::split("blk.12.attn_q.weight");
  CHECK(s.block == 12);
  CHECK(s.rest == "attn_q.weight");
  CHECK(names::block_of("blk.0.ffn_down.weight") == 0);
  CHECK(names::split("blk.7.ffn_norm.weight").rest == "ffn_norm.weight");

  const names::SplitName top = names::split("output.weight");
  CHECK(top.block == -1);
  CHECK(top.rest == "output.weight");
  CHECK(names::block_of("token_embd.weight") == -1);
}

TEST_CASE("tensor names: malformed block prefixes are not blocks", "[tensor_names]") {
  for (const char* bad : {"blk.", "blk.3", "blk.x.attn_q.weight", "blk..attn_q.weight", "blk.-1.attn_q.weight",
                          "blk.+1.attn_q.weight", "blk.03.attn_q.weight", "blk.3x.attn_q.weight",
                          "blk.99999999999.attn_q.weight", "blocks.3.attn_q.weight", "Blk.3.attn_q.weight"}) {
    INFO(bad);
    CHECK(names::block_of(bad) == -1);
    CHECK(names::split(bad).rest == bad);
    CHECK_FALSE(names::gguf_to_hf(bad));
  }
  CHECK(names::block_of("blk.0.a") == 0);
  CHECK(names::block_of("blk.10.a") == 10);
}

TEST_CASE("tensor names: block_tensor is split's inverse", "[tensor_names]") {
  CHECK(names::block_tensor(3, "attn_q.weight") == "blk.3.attn_q.weight");
  CHECK(names::block_tensor(0, "ffn_up.weight") == "blk.0.ffn_up.weight");
  for (int b : {0, 1, 9, 10, 127}) {
    const std::string n = names::block_tensor(b, "ffn_gate.weight");
    CHECK(names::block_of(n) == b);
    CHECK(names::split(n).rest == "ffn_gate.weight");
  }
}

TEST_CASE("tensor names: GGUF <-> Hugging Face, both ways", "[tensor_names]") {
  struct Pair {
    const char* gguf;
    const char* hf;
  };
  const Pair pairs[] = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
      {"blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"},
      {"blk.1.ffn_norm.weight", "model.layers.1.post_attention_layernorm.weight"},
      {"blk.2.attn_q.weight", "model.layers.2.self_attn.q_proj.weight"},
      {"blk.3.attn_k.weight", "model.layers.3.self_attn.k_proj.weight"},
      {"blk.4.attn_v.weight", "model.layers.4.self_attn.v_proj.weight"},
      {"blk.5.attn_output.weight", "model.layers.5.self_attn.o_proj.weight"},
      {"blk.6.attn_q.bias", "model.layers.6.self_attn.q_proj.bias"},
      {"blk.7.attn_k.bias", "model.layers.7.self_attn.k_proj.bias"},
      {"blk.8.attn_v.bias", "model.layers.8.self_attn.v_proj.bias"},
      {"blk.9.ffn_gate.weight", "model.layers.9.mlp.gate_proj.weight"},
      {"blk.10.ffn_up.weight", "model.layers.10.mlp.up_proj.weight"},
      {"blk.31.ffn_down.weight", "model.layers.31.mlp.down_proj.weight"},
      {"blk.0.attn_q_norm.weight", "model.layers.0.self_attn.q_norm.weight"},  // qwen3
      {"blk.1.attn_k_norm.weight", "model.layers.1.self_attn.k_norm.weight"},
      {"blk.2.attn_qkv.weight", "model.layers.2.self_attn.qkv_proj.weight"},  // phi3
  };
  for (const auto& p : pairs) {
    INFO(p.gguf << " <-> " << p.hf);
    CHECK(names::gguf_to_hf(p.gguf) == std::string(p.hf));
    CHECK(names::hf_to_gguf(p.hf) == std::string(p.gguf));
  }
  // Names with no counterpart: the caller decides whether that is an error.
  // phi3's gate_up_proj is llama.cpp's ffn_up (gate and up rows); ffn_up reads back as Llama's up_proj
  CHECK(names::hf_to_gguf("model.layers.3.mlp.gate_up_proj.weight") == std::string("blk.3.ffn_up.weight"));
  for (const char* gguf : {"rope_freqs.weight", "blk.0.attn_kv_b.weight", "blk.0.ffn_gate_exps.weight", "output"})
    CHECK_FALSE(names::gguf_to_hf(gguf));
  for (const char* hf : {"model.layers.0.self_attn.rotary_emb.inv_freq", "model.layers.0.mlp.experts.0.w1.weight",
                         "model.layers.x.mlp.up_proj.weight", "model.layers.01.mlp.up_proj.weight",
                         "transformer.h.0.attn.c_attn.weight", "lm_head.bias", ""})
    CHECK_FALSE(names::hf_to_gguf(hf));
}

TEST_CASE("tensor names: buffers GGUF recomputes", "[tensor_names]") {
  CHECK(names::hf_recomputed("model.layers.0.self_attn.rotary_emb.inv_freq"));
  CHECK(names::hf_recomputed("model.layers.17.self_attn.rotary_emb.inv_freq"));
  CHECK_FALSE(names::hf_recomputed("self_attn.rotary_emb.inv_freq"));
  CHECK_FALSE(names::hf_recomputed("model.layers.0.self_attn.q_proj.weight"));
  CHECK_FALSE(names::hf_recomputed("model.embed_tokens.weight"));
}

TEST_CASE("tensor names: report names (module, layer, group)", "[tensor_names]") {
  CHECK(names::hf_module("blk.3.attn_q.weight") == "model.layers.3.self_attn.q_proj");
  CHECK(names::hf_module("blk.3.ffn_down.weight") == "model.layers.3.mlp.down_proj");
  CHECK(names::hf_module("blk.0.attn_norm.weight") == "model.layers.0.input_layernorm");
  CHECK(names::hf_module("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm");
  CHECK(names::hf_module("token_embd.weight") == "model.embed_tokens");
  CHECK(names::hf_module("output.weight") == "lm_head");
  CHECK(names::hf_module("output_norm.weight") == "output_norm.weight");
  // Unknown block suffixes keep their GGUF spelling (biases included: they are not modules).
  CHECK(names::hf_module("blk.2.attn_q.bias") == "model.layers.2.attn_q.bias");
  CHECK(names::hf_module("blk.2.ffn_gate_exps.weight") == "model.layers.2.ffn_gate_exps");

  CHECK(names::hf_layer("blk.11.ffn_up.weight") == "model.layers.11");
  CHECK(names::hf_layer("token_embd.weight") == "model.embed_tokens");
  CHECK(names::hf_layer("output.weight") == "lm_head");
  CHECK(names::hf_layer("output_norm.weight") == "output_norm.weight");

  CHECK(names::hf_group("blk.3.attn_q.weight") == "model.layers.3.self_attn");
  CHECK(names::hf_group("blk.12.attn_output.weight") == "model.layers.12.self_attn");
  CHECK(names::hf_group("blk.0.ffn_down.weight") == "model.layers.0.mlp");
  CHECK(names::hf_group("blk.4.attn_v.weight") == "model.layers.4.self_attn");
  CHECK(names::hf_group("blk.4.attn_q.bias") == "model.layers.4.self_attn");
  CHECK(names::hf_group("blk.4.ffn_gate.weight") == "model.layers.4.mlp");
  CHECK(names::hf_group("blk.4.attn_norm.weight") == "model.layers.4.self_attn");
  CHECK(names::hf_group("blk.4.ffn_norm.weight") == "model.layers.4.mlp");
  CHECK(names::hf_group("blk.4.layer_output_scale.weight") == "model.layers.4");
  CHECK(names::hf_group("token_embd.weight") == "model.embed_tokens");
  CHECK(names::hf_group("output.weight") == "lm_head");
  CHECK(names::hf_group("output_norm.weight").empty());
  CHECK(names::hf_group("rope_freqs.weight").empty());
}

TEST_CASE("tensor names: every tensor of llama.cpp's conversion round-trips", "[tensor_names]") {
  auto golden = test::shared_file("golden/tiny-llama-BF16.gguf");
  if (!golden) return;
  gguf::Reader r(*golden);
  int blocks = 0;
  for (const auto& t : r.tensors()) {
    INFO(t.name);
    const auto hf = names::gguf_to_hf(t.name);
    REQUIRE(hf);
    CHECK(names::hf_to_gguf(*hf) == t.name);
    if (names::block_of(t.name) >= 0) ++blocks;
  }
  CHECK(blocks == 6 * 9);
}
