// Mixture-of-experts architectures (mixtral, qwen2_moe, qwen3_moe): tiny Hugging Face checkpoints
// written here, read as GGUF tensors (merged 3-D experts, router, shared expert, q/k norms) with
// the converter's metadata, run by the engine (a Mixtral whose experts are all one MLP is that
// Llama), typed by llama-quantize's MoE rules, analysed into per-expert importance, and
// differentiated through the router and the experts (gradient and Fisher importance); quantized
// with GPTQ / RTN into compressed-tensors checkpoints (one packed module per expert, the routers
// float) that read back, and into GGUF with GPTQ's walk on every expert's slice (`--gptq`); AWQ
// (the mixture searched as one group, the norm folded into routers and experts, each expert's
// up -> down on its routed tokens); W8A8 with the attention smoothed and int8 experts (GPTQ or
// round to nearest).
#include <lq/awq.hpp>
#include <lq/convert.hpp>
#include <lq/decode.hpp>
#include <lq/engine.hpp>
#include <lq/gguf.hpp>
#include <lq/error.hpp>
#include <lq/gptq.hpp>
#include <lq/gptq_gguf.hpp>
#include <lq/importance.hpp>
#include <lq/model.hpp>
#include <lq/profile.hpp>
#include <lq/quality.hpp>
#include <lq/quantizer.hpp>
#include <lq/sensitivity.hpp>
#include <lq/smoothquant.hpp>
#include <lq/super_weights.hpp>
#include <lq/tokenizer.hpp>

#include "core/half.hpp"
#include "engine/backward.hpp"
#include "formats/safetensors.hpp"
#include "formats/safetensors_writer.hpp"
#include "formats/super_weight_json.hpp"
#include "model/tensor_names.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>

using namespace lq;
namespace fs = std::filesystem;

namespace {

struct MoeToy {
  std::string model_type = "mixtral";  // mixtral, qwen2_moe, qwen3_moe; "llama": the dense twin
  int64_t d = 64, heads = 4, kv = 2, layers = 2, ff = 64, experts = 4, top_k = 2, ff_shexp = 64;
  bool same_experts = false;  // every expert (and the dense twin's MLP) is expert 0
  bool bf16 = false;          // BF16 safetensors (GGUF output then converts the F32-kept routers)
  // Called on every Hugging Face tensor once drawn (planting values in a checkpoint).
  std::function<void(const std::string&, std::vector<float>&)> edit;
};

// Writes the checkpoint (F32 safetensors, config.json, tiny-llama's tokenizer); false when the
// shared tokenizer is absent (the test is skipped).
bool write_moe_toy(const fs::path& dir, const MoeToy& s) {
  const auto tok = test::shared_file("models/tiny-llama");
  if (!tok) return false;
  fs::create_directories(dir);
  for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
    fs::copy_file(*tok / f, dir / f, fs::copy_options::overwrite_existing);
  const int64_t vocab = 2048, hd = s.d / s.heads;
  const bool mixtral = s.model_type == "mixtral", dense = s.model_type == "llama";
  const bool q2 = s.model_type == "qwen2_moe", q3 = s.model_type == "qwen3_moe";
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> ts;
  uint32_t seed = 11;
  auto add = [&](const std::string& n, std::vector<int64_t> shape, float sd, bool norm = false) {
    size_t count = 1;
    for (auto v : shape) count *= static_cast<size_t>(v);
    std::vector<float> v = test::gaussian(count, seed++);
    for (auto& x : v) x = norm ? 1.0f + 0.1f * x : sd * x;
    if (s.edit) s.edit(n, v);
    ts[n] = {std::move(shape), std::move(v)};
  };
  add("model.embed_tokens.weight", {vocab, s.d}, 0.5f);
  add("lm_head.weight", {vocab, s.d}, 0.1f);
  add("model.norm.weight", {s.d}, 0, true);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {s.d}, 0, true);
    add(p + "post_attention_layernorm.weight", {s.d}, 0, true);
    add(p + "self_attn.q_proj.weight", {s.heads * hd, s.d}, 0.15f);
    add(p + "self_attn.k_proj.weight", {s.kv * hd, s.d}, 0.15f);
    add(p + "self_attn.v_proj.weight", {s.kv * hd, s.d}, 0.15f);
    add(p + "self_attn.o_proj.weight", {s.d, s.heads * hd}, 0.15f);
    if (q2)
      for (const char* b : {"q", "k", "v"})
        add(p + "self_attn." + b + "_proj.bias", {(b[0] == 'q' ? s.heads : s.kv) * hd}, 0.1f);
    if (q3) {
      add(p + "self_attn.q_norm.weight", {hd}, 0, true);
      add(p + "self_attn.k_norm.weight", {hd}, 0, true);
    }
    // Expert 0's MLP; the others are drawn (or copied with same_experts).
    const std::string mlp = p + (mixtral ? "block_sparse_moe." : "mlp.");
    auto expert = [&](int64_t e, const char* g, const char* u, const char* dn) {
      const std::string x = mlp + "experts." + std::to_string(e) + ".";
      const std::string x0 = mlp + "experts.0.";
      for (auto [name, shape] : {std::pair<const char*, std::vector<int64_t>>{g, {s.ff, s.d}}, {u, {s.ff, s.d}},
                                 {dn, {s.d, s.ff}}}) {
        if (s.same_experts && e > 0) ts[x + name] = ts[x0 + name];
        else add(x + name, shape, 0.2f);
      }
    };
    if (dense) {
      add(p + "mlp.gate_proj.weight", {s.ff, s.d}, 0.2f);
      add(p + "mlp.up_proj.weight", {s.ff, s.d}, 0.2f);
      add(p + "mlp.down_proj.weight", {s.d, s.ff}, 0.2f);
      continue;
    }
    add(mlp + "gate.weight", {s.experts, s.d}, 0.5f);
    for (int64_t e = 0; e < s.experts; ++e) {
      if (mixtral) expert(e, "w1.weight", "w3.weight", "w2.weight");
      else expert(e, "gate_proj.weight", "up_proj.weight", "down_proj.weight");
    }
    if (q2) {
      add(mlp + "shared_expert.gate_proj.weight", {s.ff_shexp, s.d}, 0.2f);
      add(mlp + "shared_expert.up_proj.weight", {s.ff_shexp, s.d}, 0.2f);
      add(mlp + "shared_expert.down_proj.weight", {s.d, s.ff_shexp}, 0.2f);
      add(mlp + "shared_expert_gate.weight", {1, s.d}, 0.5f);
    }
  }
  std::vector<StTensorSpec> specs;
  for (const auto& [n, v] : ts) specs.push_back({n, s.bf16 ? StDtype::BF16 : StDtype::F32, v.first});
  {
    SafetensorsWriter w(dir / "model.safetensors", specs);
    for (const auto& [n, v] : ts) {
      if (!s.bf16) {
        w.write(n, v.second.data(), v.second.size() * sizeof(float));
        continue;
      }
      std::vector<uint16_t> h(v.second.size());
      for (size_t i = 0; i < h.size(); ++i) h[i] = f32_to_bf16(v.second[i]);
      w.write(n, h.data(), h.size() * sizeof(uint16_t));
    }
    w.commit();
  }
  nlohmann::json cfg = {{"model_type", s.model_type}, {"hidden_size", s.d}, {"num_hidden_layers", s.layers},
                        {"num_attention_heads", s.heads}, {"num_key_value_heads", s.kv}, {"vocab_size", vocab},
                        {"intermediate_size", s.ff}, {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-5},
                        {"rope_theta", 10000.0}, {"tie_word_embeddings", false}, {"bos_token_id", 1},
                        {"eos_token_id", 2}};
  if (mixtral) {
    cfg["architectures"] = {"MixtralForCausalLM"};
    cfg["num_local_experts"] = s.experts;
    cfg["num_experts_per_tok"] = s.top_k;
  } else if (!dense) {
    cfg["architectures"] = {q2 ? "Qwen2MoeForCausalLM" : "Qwen3MoeForCausalLM"};
    cfg["num_experts"] = s.experts;
    cfg["num_experts_per_tok"] = s.top_k;
    cfg["moe_intermediate_size"] = s.ff;
    cfg["norm_topk_prob"] = q3;
    cfg["head_dim"] = hd;
    if (q2) cfg["shared_expert_intermediate_size"] = s.ff_shexp;
  } else {
    cfg["architectures"] = {"LlamaForCausalLM"};
  }
  std::ofstream(dir / "config.json") << cfg.dump(2);
  return true;
}

std::vector<float> expert_rows(const ModelSource& src, const std::string& name, int64_t expert) {
  const ModelTensor& t = src.at(name);
  std::vector<float> v(static_cast<size_t>(t.ne[0] * t.ne[1]));
  src.read_rows_f32(t, expert * t.ne[1], t.ne[1], v.data());
  return v;
}

// The logits of every position of `toks` (Session with a batch of 64, F32 KV cache).
std::vector<float> last_logits(const Model& m, const std::vector<int32_t>& toks) {
  return test::logits_of(m, toks, 0, SessionOptions{64, false});
}

}  // namespace

TEST_CASE("moe: a Mixtral checkpoint reads as merged 3-D experts with the converter's keys", "[arch][moe]") {
  test::TempDir tmp;
  MoeToy s;
  if (!write_moe_toy(tmp / "m", s)) return;
  auto src = ModelSource::open(tmp / "m");
  const ModelConfig& c = src->config();
  CHECK(c.architecture == "llama");
  CHECK(c.n_expert == 4);
  CHECK(c.n_expert_used == 2);
  CHECK(c.expert_weights_norm);
  CHECK(src->at("blk.1.ffn_gate_exps.weight").ne == std::vector<int64_t>{64, 64, 4});
  CHECK(src->at("blk.1.ffn_up_exps.weight").ne == std::vector<int64_t>{64, 64, 4});
  CHECK(src->at("blk.1.ffn_down_exps.weight").ne == std::vector<int64_t>{64, 64, 4});
  CHECK(src->at("blk.1.ffn_gate_inp.weight").ne == std::vector<int64_t>{64, 4});
  CHECK(src->find("blk.0.ffn_gate.weight") == nullptr);
  // Expert 2's rows of the merged up projection are its w3, row for row.
  const std::vector<float> merged = expert_rows(*src, "blk.1.ffn_up_exps.weight", 2);
  CHECK(merged.size() == 64 * 64);
  CHECK(merged != expert_rows(*src, "blk.1.ffn_up_exps.weight", 1));
  const gguf::Metadata m = src->gguf_metadata();
  CHECK(m.get_int("llama.expert_count") == 4);
  CHECK(m.get_int("llama.expert_used_count") == 2);
  CHECK(m.find("llama.expert_feed_forward_length") == nullptr);
  // 4 experts of 3 x 64 x 64 per layer count once: the label is "<experts>x<shared + one expert>".
  REQUIRE(m.get_string("general.size_label"));
  CHECK(m.get_string("general.size_label")->rfind("4x", 0) == 0);
  // BF16: the router stays F32 (the converter's rule), the experts are BF16.
  QuantizeOptions qo;
  qo.ftype = FileType::BF16;
  for (const auto& p : Quantizer(qo).plan(*src)) {
    INFO(p.name);
    if (p.name.find("ffn_gate_inp") != std::string::npos) CHECK(p.type == QuantType::F32);
    if (p.name.find("_exps") != std::string::npos) CHECK(p.type == QuantType::BF16);
  }
}

TEST_CASE("moe: Qwen2-MoE's shared expert and Qwen3-MoE's q/k norms", "[arch][moe]") {
  test::TempDir tmp;
  MoeToy s;
  s.model_type = "qwen2_moe";
  s.ff_shexp = 128;
  if (!write_moe_toy(tmp / "q2", s)) return;
  auto src = ModelSource::open(tmp / "q2");
  CHECK(src->config().architecture == "qwen2moe");
  CHECK_FALSE(src->config().expert_weights_norm);
  CHECK(src->at("blk.0.ffn_gate_inp_shexp.weight").ne == std::vector<int64_t>{64, 1});
  CHECK(src->at("blk.0.ffn_gate_shexp.weight").ne == std::vector<int64_t>{64, 128});
  CHECK(src->at("blk.0.ffn_down_shexp.weight").ne == std::vector<int64_t>{128, 64});
  CHECK(src->at("blk.0.attn_q.bias").ne == std::vector<int64_t>{64});
  const gguf::Metadata m = src->gguf_metadata();
  CHECK(m.get_int("qwen2moe.expert_feed_forward_length") == 64);
  CHECK(m.get_int("qwen2moe.expert_shared_feed_forward_length") == 128);
  CHECK(m.find("qwen2moe.vocab_size") == nullptr);  // the converter's Qwen classes write neither
  CHECK(m.find("qwen2moe.rope.dimension_count") == nullptr);
  QuantizeOptions qo;
  qo.ftype = FileType::BF16;
  for (const auto& p : Quantizer(qo).plan(*src))
    if (p.name.find("ffn_gate_inp_shexp") != std::string::npos) CHECK(p.type == QuantType::F32);
  // Quantized levels too: [n_embd, 1] is 1-D to llama-quantize (ggml_n_dims), so it stays F32.
  qo.ftype = FileType::Q8_0;
  for (const auto& p : Quantizer(qo).plan(*src)) {
    if (p.name.find("ffn_gate_inp_shexp") != std::string::npos) CHECK(p.type == QuantType::F32);
    if (p.name.find("ffn_up_shexp") != std::string::npos) CHECK(p.type == QuantType::Q8_0);
  }
  auto model = Model::load(*src);
  const std::vector<float> l = last_logits(*model, {1, 5, 9, 200, 7});
  for (float v : l) REQUIRE(std::isfinite(v));

  s.model_type = "qwen3_moe";
  if (!write_moe_toy(tmp / "q3", s)) return;
  auto src3 = ModelSource::open(tmp / "q3");
  CHECK(src3->config().architecture == "qwen3moe");
  CHECK(src3->config().qk_norm);
  CHECK(src3->config().expert_weights_norm);
  CHECK(src3->at("blk.1.attn_q_norm.weight").ne == std::vector<int64_t>{16});
  CHECK(src3->find("blk.1.ffn_gate_inp_shexp.weight") == nullptr);
  CHECK(src3->gguf_metadata().get_int("qwen3moe.expert_feed_forward_length") == 64);

  // As transformers 5 saves it: the expert count under num_local_experts, RoPE in rope_parameters.
  auto j = nlohmann::json::parse(std::ifstream(tmp / "q3" / "config.json"));
  j["num_local_experts"] = j["num_experts"];
  j.erase("num_experts");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", j.value("rope_theta", 10000.0)}};
  j.erase("rope_theta");
  std::ofstream(tmp / "q3" / "config.json") << j.dump();
  auto v5 = ModelSource::open(tmp / "q3");
  CHECK(v5->config().n_expert == src3->config().n_expert);
  CHECK(v5->config().rope_theta == src3->config().rope_theta);
  CHECK(last_logits(*Model::load(*v5), {1, 5, 9, 200, 7}) == last_logits(*Model::load(*src3), {1, 5, 9, 200, 7}));
}

TEST_CASE("moe: a Mixtral whose experts are one MLP computes that Llama's logits", "[arch][moe]") {
  // Routing weights are renormalised over the top k, so any choice of experts sums to 1 x MLP.
  test::TempDir tmp;
  MoeToy s;
  s.same_experts = true;
  s.experts = 4;
  s.top_k = 2;
  if (!write_moe_toy(tmp / "moe", s)) return;
  MoeToy dense = s;
  dense.model_type = "llama";
  if (!write_moe_toy(tmp / "dense", dense)) return;
  // The dense twin's MLP must be expert 0: same seeds in the same order except the router, so
  // copy the expert's values over the twin's instead of relying on the draw.
  auto moe_src = ModelSource::open(tmp / "moe");
  auto moe = Model::load(*moe_src);
  auto dense_model = Model::load(tmp / "dense");
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    for (auto [dn, en] : {std::pair<const char*, const char*>{"ffn_gate", "ffn_gate_exps"}, {"ffn_up", "ffn_up_exps"},
                          {"ffn_down", "ffn_down_exps"}})
      dense_model->replace_tensor(b + dn + ".weight", expert_rows(*moe_src, b + en + ".weight", 0), QuantType::F32);
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output", "attn_norm", "ffn_norm"})
      dense_model->replace_tensor(b + n + ".weight", moe->tensor_f32(b + n + ".weight"), QuantType::F32);
  }
  for (const char* n : {"token_embd.weight", "output.weight", "output_norm.weight"})
    dense_model->replace_tensor(n, moe->tensor_f32(n), QuantType::F32);
  const std::vector<int32_t> toks = {1, 17, 300, 45, 45, 1024, 7, 88, 2000, 3};
  const std::vector<float> a = last_logits(*moe, toks), b = last_logits(*dense_model, toks);
  REQUIRE(a.size() == b.size());
  CHECK(test::rel_rmse(a, b) < 1e-5);
  // Different experts change the result: the routing is not a no-op.
  moe->replace_tensor("blk.0.ffn_down_exps.weight", std::vector<float>(64 * 64 * 4, 0.0f), QuantType::F32);
  CHECK(test::rel_rmse(last_logits(*moe, toks), b) > 1e-3);
}

TEST_CASE("moe: per-expert importance matrix, one row and one count per expert", "[arch][moe]") {
  test::TempDir tmp;
  MoeToy s;
  s.experts = 4;
  s.top_k = 2;
  if (!write_moe_toy(tmp / "m", s)) return;
  auto src = ModelSource::open(tmp / "m");
  ImportanceOptions o;
  o.ctx = 32;
  o.samples = 2;
  o.kv_f16 = false;
  ImportanceAnalyzer an(*src, o);
  std::vector<int32_t> toks;
  for (int i = 0; i < 64; ++i) toks.push_back((i * 37 + 5) % 2000 + 3);
  an.set_tokens(toks, "test");
  const ImportanceResult r = an.run();
  const Imatrix& im = r.imatrix;
  const ImatrixEntry* g = im.find("blk.0.ffn_gate_exps.weight");
  const ImatrixEntry* u = im.find("blk.0.ffn_up_exps.weight");
  const ImatrixEntry* dn = im.find("blk.0.ffn_down_exps.weight");
  const ImatrixEntry* router = im.find("blk.0.ffn_gate_inp.weight");
  REQUIRE(g);
  REQUIRE(u);
  REQUIRE(dn);
  REQUIRE(router);
  CHECK(g->n_mat == 4);
  CHECK(g->in_sum2.size() == 4 * 64);
  CHECK(g->counts.size() == 4);
  float total = 0;
  int used = 0;
  for (float c : g->counts) {
    total += c;
    used += c > 0;
  }
  CHECK(total == 64 * 2);  // every token goes through top_k experts
  CHECK(used >= 2);
  CHECK(g->counts == u->counts);
  CHECK(g->counts == dn->counts);
  CHECK(g->in_sum2 == u->in_sum2);  // gate and up see the same rows
  CHECK(router->n_mat == 1);
  CHECK(router->counts == std::vector<float>{64});
  // The experts' sums add up to the router's (all tokens' squared inputs) times top_k.
  for (int64_t c = 0; c < 64; ++c) {
    double sum = 0;
    for (int64_t e = 0; e < 4; ++e) sum += g->in_sum2[static_cast<size_t>(e * 64 + c)];
    CHECK(sum == Approx(2.0 * router->in_sum2[static_cast<size_t>(c)]).epsilon(1e-4));
  }
  // Written and read back in llama-imatrix's GGUF layout.
  im.save_gguf(tmp / "im.gguf");
  const Imatrix back = Imatrix::load(tmp / "im.gguf");
  REQUIRE(back.find("blk.0.ffn_gate_exps.weight"));
  CHECK(back.find("blk.0.ffn_gate_exps.weight")->n_mat == 4);
  CHECK(back.find("blk.0.ffn_gate_exps.weight")->counts == g->counts);
  CHECK(back.find("blk.0.ffn_gate_exps.weight")->in_sum2 == g->in_sum2);
}

TEST_CASE("moe: llama-quantize's 8-expert rules for Q4_K_M and IQ2_XXS", "[arch][moe]") {
  test::TempDir tmp;
  MoeToy s;
  s.d = 256;
  s.ff = 256;
  s.heads = 8;
  s.experts = 8;
  s.layers = 2;
  if (!write_moe_toy(tmp / "m", s)) return;
  auto src = ModelSource::open(tmp / "m");
  QuantizeOptions qo;
  qo.ftype = FileType::Q4_K_M;
  std::map<std::string, QuantType> got;
  for (const auto& p : Quantizer(qo).plan(*src)) got[p.name] = p.type;
  // attn_v and attn_k: Q8_0 with 8 experts; attn_output Q5_K; ffn_down by layer (use_more_bits of
  // 2 layers: only the last); the router is never quantized.
  CHECK(got["blk.0.attn_v.weight"] == QuantType::Q8_0);
  CHECK(got["blk.1.attn_k.weight"] == QuantType::Q8_0);
  CHECK(got["blk.0.attn_q.weight"] == QuantType::Q4_K);
  CHECK(got["blk.0.attn_output.weight"] == QuantType::Q5_K);
  CHECK(got["blk.0.ffn_down_exps.weight"] == QuantType::Q4_K);
  CHECK(got["blk.1.ffn_down_exps.weight"] == QuantType::Q6_K);
  CHECK(got["blk.1.ffn_gate_exps.weight"] == QuantType::Q4_K);
  CHECK(got["blk.1.ffn_gate_inp.weight"] == QuantType::F32);
  CHECK(got["output.weight"] == QuantType::Q6_K);
  qo.ftype = FileType::IQ2_XXS;
  qo.imatrix = nullptr;
  got.clear();
  Imatrix im;  // any entry lets the level run; the types do not depend on the values
  for (const auto& t : src->tensors())
    if (t.ne.size() >= 2) {
      ImatrixEntry e;
      e.n_cols = t.ne[0];
      e.n_mat = t.ne.size() == 3 ? t.ne[2] : 1;
      e.in_sum2.assign(static_cast<size_t>(e.n_cols * e.n_mat), 1.0f);
      e.counts.assign(static_cast<size_t>(e.n_mat), 1.0f);
      im.entries[t.name] = e;
    }
  qo.imatrix = &im;
  for (const auto& p : Quantizer(qo).plan(*src)) got[p.name] = p.type;
  CHECK(got["blk.0.attn_v.weight"] == QuantType::Q4_K);  // n_expert >= 4
  CHECK(got["blk.0.attn_k.weight"] == QuantType::Q4_K);  // n_expert == 8
  CHECK(got["blk.0.attn_output.weight"] == QuantType::Q5_K);
  CHECK(got["blk.0.ffn_down_exps.weight"] == QuantType::IQ2_XXS);  // 2 layers: no first eighth
  CHECK(got["blk.1.ffn_down_exps.weight"] == QuantType::IQ2_XXS);
  CHECK(got["blk.0.ffn_up_exps.weight"] == QuantType::IQ2_XXS);
}

TEST_CASE("moe: the F32 GGUF of each MoE checkpoint runs as the checkpoint does", "[arch][moe]") {
  // config_from_gguf must recover the experts, the shared expert, the q/k norms and the routing
  // weights' normalisation from the GGUF keys alone (mixtral is GGUF "llama" with expert keys).
  for (const char* type : {"mixtral", "qwen2_moe", "qwen3_moe"}) {
    INFO(type);
    test::TempDir tmp;
    const MoeToy s{.model_type = type};
    if (!write_moe_toy(tmp / "m", s)) return;
    auto src = ModelSource::open(tmp / "m");
    QuantizeOptions qo;
    qo.ftype = FileType::F32;
    Quantizer(qo).quantize(*src, tmp / "m.gguf");
    auto from_gguf = ModelSource::open(tmp / "m.gguf");
    const ModelConfig& a = src->config();
    const ModelConfig& b = from_gguf->config();
    CHECK(b.n_expert == a.n_expert);
    CHECK(b.n_expert_used == a.n_expert_used);
    CHECK(b.n_ff_exp == a.n_ff_exp);
    CHECK(b.n_ff_shexp == a.n_ff_shexp);
    CHECK(b.qk_norm == a.qk_norm);
    CHECK(b.expert_weights_norm == a.expert_weights_norm);
    const std::vector<int32_t> toks = {1, 40, 41, 900, 13, 13, 77};
    const std::vector<float> x = last_logits(*Model::load(*src), toks), y = last_logits(*Model::load(*from_gguf), toks);
    CHECK(test::same_bits(x, y));
  }
}

TEST_CASE("moe: expert tensor names and a checkpoint missing an expert", "[arch][moe]") {
  auto x = names::hf_expert("model.layers.3.mlp.experts.5.up_proj.weight");
  REQUIRE(x);
  CHECK(x->gguf == "blk.3.ffn_up_exps.weight");
  CHECK(x->expert == 5);
  x = names::hf_expert("model.layers.0.block_sparse_moe.experts.7.w2.weight");
  REQUIRE(x);
  CHECK(x->gguf == "blk.0.ffn_down_exps.weight");
  CHECK(x->expert == 7);
  CHECK(names::hf_expert("model.layers.0.block_sparse_moe.experts.7.w1.weight")->gguf == "blk.0.ffn_gate_exps.weight");
  CHECK_FALSE(names::hf_expert("model.layers.0.mlp.experts.07.up_proj.weight"));
  CHECK_FALSE(names::hf_expert("model.layers.0.mlp.experts.x.up_proj.weight"));
  CHECK_FALSE(names::hf_expert("model.layers.0.mlp.experts.1.q_proj.weight"));
  CHECK_FALSE(names::hf_expert("model.layers.0.mlp.up_proj.weight"));
  CHECK(names::hf_to_gguf("model.layers.2.block_sparse_moe.gate.weight") == "blk.2.ffn_gate_inp.weight");
  CHECK(names::hf_to_gguf("model.layers.2.mlp.shared_expert_gate.weight") == "blk.2.ffn_gate_inp_shexp.weight");

  test::TempDir tmp;
  MoeToy s;
  if (!write_moe_toy(tmp / "m", s)) return;
  // Declare 5 experts where 4 are stored: expert 4 is named as missing.
  auto j = nlohmann::json::parse(std::ifstream(tmp / "m" / "config.json"));
  j["num_local_experts"] = 5;
  std::ofstream(tmp / "m" / "config.json") << j.dump();
  try {
    (void)ModelSource::open(tmp / "m");
    FAIL("a missing expert was accepted");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::invalid_model);
    CHECK(std::string(e.what()).find("expert 4") != std::string::npos);
  }
}

namespace {

const std::vector<int32_t> kMoePrompt = {1, 17, 333, 8, 1290, 4, 61, 2000, 45, 7, 99, 512, 3, 1024, 77, 5};

// Every wanted weight's full gradient, by name; a merged expert tensor's slices in expert order
// (zero for an expert no token was routed to).
std::map<std::string, std::vector<float>> moe_grads(const Model& m, const std::vector<char>& wanted, double* loss) {
  std::map<std::string, std::vector<float>> g;
  engine::Backprop bp(m, 2);
  const double l = bp.run(kMoePrompt, wanted, [&](const engine::WeightGrad& wg) {
    const LinearInfo& li = m.linears()[static_cast<size_t>(wg.linear)];
    auto& v = g[li.name];
    v.resize(static_cast<size_t>(li.n_in * li.n_out * li.n_expert), 0.0f);
    const size_t at = wg.expert > 0 ? static_cast<size_t>(wg.expert * wg.n_in * wg.n_out) : 0;
    engine::weight_grad_full(wg, v.data() + at, 2);
  });
  if (loss) *loss = l;
  return g;
}

}  // namespace

TEST_CASE("moe: the backward pass through router and experts matches the loss's finite differences",
          "[arch][moe][gradient]") {
  for (const char* type : {"mixtral", "qwen2_moe", "qwen3_moe"}) {
    INFO(type);
    test::TempDir tmp;
    const MoeToy s{.model_type = type};
    if (!write_moe_toy(tmp / "m", s)) return;
    auto model = Model::load(tmp / "m");
    std::vector<std::string> names = {"blk.0.attn_q.weight",       "blk.0.ffn_gate_inp.weight",
                                      "blk.1.ffn_gate_inp.weight", "blk.0.ffn_gate_exps.weight",
                                      "blk.1.ffn_up_exps.weight",  "blk.1.ffn_down_exps.weight"};
    if (s.model_type == "qwen2_moe")
      for (const char* n : {"blk.1.ffn_gate_inp_shexp.weight", "blk.0.ffn_up_shexp.weight", "blk.1.ffn_down_shexp.weight"})
        names.push_back(n);
    const std::vector<char> wanted = test::linear_mask(*model, names);
    double loss = 0;
    const auto grads = moe_grads(*model, wanted, &loss);
    // The backward pass's own forward is the engine's.
    CHECK(loss == Approx(test::mean_next_token_nll(last_logits(*model, kMoePrompt), kMoePrompt)).epsilon(1e-5));
    for (const std::string& name : names) {
      INFO(name);
      REQUIRE(grads.count(name));
      // The slope of the loss along the gradient's direction is the gradient's norm. Steps small
      // enough that no token changes its experts (top-k is piecewise constant).
      test::check_gradient_slope(*model, name, grads.at(name),
                                 [&] { return engine::Backprop(*model, 2).loss(kMoePrompt); });
    }
  }
}

TEST_CASE("moe: gradient and Fisher importance, one row and one count per expert", "[arch][moe][gradient]") {
  test::TempDir tmp;
  MoeToy s;
  s.model_type = "qwen2_moe";
  if (!write_moe_toy(tmp / "m", s)) return;
  auto src = ModelSource::open(tmp / "m");
  std::vector<int32_t> toks;
  for (int i = 0; i < 64; ++i) toks.push_back((i * 37 + 5) % 2000 + 3);
  std::vector<std::vector<int32_t>> chunks;
  auto analyse = [&](ImportanceMethod method) {
    ImportanceOptions o;
    o.ctx = 32;
    o.samples = 2;
    o.kv_f16 = false;
    o.method = method;
    ImportanceAnalyzer an(*src, o);
    an.set_tokens(toks, "test");
    chunks = an.chunks();
    return an.run().imatrix;
  };
  const Imatrix act = analyse(ImportanceMethod::activation);
  const Imatrix fisher = analyse(ImportanceMethod::fisher);
  const Imatrix grad = analyse(ImportanceMethod::gradient);
  // Fisher's sums per expert from the backward pass directly: sum over chunks of dW_e[o, j]^2.
  auto model = Model::load(*src);
  const std::vector<char> all(model->linears().size(), 1);
  REQUIRE(chunks.size() == 2);
  for (const char* n : {"blk.1.ffn_down_exps.weight", "blk.0.ffn_gate_exps.weight"}) {
    const ImatrixEntry* f = fisher.find(n);
    const ImatrixEntry* gr = grad.find(n);
    const ImatrixEntry* a = act.find(n);
    REQUIRE(f);
    REQUIRE(gr);
    REQUIRE(a);
    INFO(n);
    CHECK(f->n_mat == 4);
    CHECK(f->counts.size() == 4);
    CHECK(gr->counts == f->counts);
    const LinearInfo* li = nullptr;
    for (const auto& l : model->linears())
      if (l.name == n) li = &l;
    REQUIRE(li);
    for (int64_t e = 0; e < 4; ++e) {
      // An expert has a count (its output rows once per chunk it saw tokens in) exactly when the
      // activation imatrix counted tokens for it, and sums only then.
      const float c = f->counts[static_cast<size_t>(e)];
      CHECK((c > 0) == (a->counts[static_cast<size_t>(e)] > 0));
      CHECK(std::fmod(c, float(li->n_out)) == 0);
      double row = 0;
      for (int64_t j = 0; j < f->n_cols; ++j) row += f->in_sum2[static_cast<size_t>(e * f->n_cols + j)];
      CHECK((row > 0) == (c > 0));
    }
  }
  // The router and the shared expert's gate are ordinary 2-D weights.
  REQUIRE(fisher.find("blk.0.ffn_gate_inp.weight"));
  CHECK(fisher.find("blk.0.ffn_gate_inp.weight")->n_mat == 1);
  REQUIRE(fisher.find("blk.1.ffn_gate_inp_shexp.weight"));
  // Fisher's rows equal the squared gradients summed directly from the backward pass.
  std::map<std::string, std::vector<double>> sq;
  for (const auto& ch : chunks) {
    const auto g = [&] {
      std::map<std::string, std::vector<float>> out;
      engine::Backprop bp(*model, 2);
      bp.run(ch, all, [&](const engine::WeightGrad& wg) {
        const LinearInfo& li = model->linears()[static_cast<size_t>(wg.linear)];
        auto& v = out[li.name];
        v.resize(static_cast<size_t>(li.n_in * li.n_out * li.n_expert), 0.0f);
        engine::weight_grad_full(wg, v.data() + (wg.expert > 0 ? wg.expert * wg.n_in * wg.n_out : 0), 2);
      });
      return out;
    }();
    const auto& dw = g.at("blk.1.ffn_down_exps.weight");
    const int64_t n_in = 64, n_out = 64;
    auto& acc = sq["d"];
    acc.resize(static_cast<size_t>(4 * n_in), 0.0);
    for (int64_t e = 0; e < 4; ++e)
      for (int64_t o = 0; o < n_out; ++o)
        for (int64_t j = 0; j < n_in; ++j) {
          const double v = dw[static_cast<size_t>((e * n_out + o) * n_in + j)];
          acc[static_cast<size_t>(e * n_in + j)] += v * v;
        }
  }
  const ImatrixEntry* fd = fisher.find("blk.1.ffn_down_exps.weight");
  for (size_t i = 0; i < sq["d"].size(); ++i) CHECK(fd->in_sum2[i] == Approx(sq["d"][i]).epsilon(1e-4).margin(1e-12));

  // The CLI end to end: `lq analyze --method gradient` writes the per-expert rows and counts.
  const auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return test::skip("corpus/calibration.txt not found");
  const auto r = test::run(test::cli_path() + " --quiet --threads 2 analyze " + (tmp / "m").string() +
                           " --method gradient --calibration-data " + calib->string() +
                           " --calibration-samples 2 --ctx 32 --no-cache -o " + (tmp / "g.gguf").string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const Imatrix cli = Imatrix::load(tmp / "g.gguf");
  for (const char* n : {"blk.0.ffn_gate_exps.weight", "blk.1.ffn_down_exps.weight"}) {
    INFO(n);
    REQUIRE(cli.find(n));
    CHECK(cli.find(n)->n_mat == 4);
    CHECK(cli.find(n)->counts.size() == 4);
  }
  REQUIRE(cli.find("blk.1.ffn_gate_inp_shexp.weight"));
  CHECK(cli.find("blk.1.ffn_gate_inp_shexp.weight")->n_mat == 1);
}

TEST_CASE("moe: a super weight planted in one expert is found there and survives the dynamic solver's types",
          "[arch][moe][super]") {
  test::TempDir tmp;
  MoeToy s;
  s.d = 256;
  s.ff = 256;
  s.heads = 8;
  s.layers = 4;
  if (!write_moe_toy(tmp / "plain", s)) return;
  const std::vector<int32_t> prompt = {1, 17, 333, 8, 1290, 4, 61, 2000, 45, 7, 99, 512, 3, 1024, 77, 5,
                                       260, 31, 1500, 9, 640, 12, 88, 1999, 6, 300, 41, 1200, 2, 73, 150, 11};
  const int64_t E = 2, j = 37, k = 101, d = s.d;
  // The first token block 1 routes to expert E: its MLP input, and its position.
  std::vector<float> h0;
  int32_t pos = -1;
  {
    auto plain = Model::load(tmp / "plain");
    REQUIRE(detect_super_weights(*plain, prompt).found.empty());  // no spike in the random model
    Session ses(*plain, SessionOptions{64, false}, Context{1});
    ses.set_linear_hook([&](const LinearEvent& ev) {
      if (ev.linear->name == "blk.1.ffn_gate_exps.weight" && ev.expert == E && h0.empty()) {
        REQUIRE(ev.positions);
        h0.assign(ev.input, ev.input + d);
        pos = ev.positions[0];
      }
    });
    ses.eval(prompt);
  }
  REQUIRE(!h0.empty());
  double n2 = 0;
  for (float v : h0) n2 += double(v) * v;
  // As the paper describes them: expert E's gate and up rows k aligned with that token's input (a
  // super activation at input channel k of its down projection), W_down[j, k] large and the rest
  // of column k small. Planted in the checkpoint (Mixtral: w1 gate, w3 up, w2 down).
  s.edit = [&](const std::string& name, std::vector<float>& v) {
    const std::string x = "model.layers.1.block_sparse_moe.experts." + std::to_string(E) + ".";
    if (name == x + "w1.weight" || name == x + "w3.weight")
      for (int64_t c = 0; c < d; ++c) v[static_cast<size_t>(k * d + c)] = static_cast<float>(64.0 * h0[static_cast<size_t>(c)] / n2);
    if (name == x + "w2.weight") {
      for (int64_t r = 0; r < d; ++r) v[static_cast<size_t>(r * s.ff + k)] *= 0.01f;
      v[static_cast<size_t>(j * s.ff + k)] = 8.0f;
    }
  };
  REQUIRE(write_moe_toy(tmp / "m", s));
  auto src = ModelSource::open(tmp / "m");
  auto model = Model::load(*src);
  const std::vector<float> before = model->tensor_f32("blk.1.ffn_down_exps.weight");
  const SuperWeightDetection det = detect_super_weights(*model, prompt);
  for (const auto& l : det.layers)
    UNSCOPED_INFO("layer " << l.layer << ": input " << l.input_max << " @" << l.input_channel << " (expert "
                           << l.input_expert << "), output " << l.output_max << " @" << l.output_channel
                           << " (expert " << l.expert << ") token " << l.token);
  REQUIRE(det.found.size() == 1);  // nothing else spikes once it is zeroed
  const DetectedSuperWeight& f = det.found[0];
  CHECK(f.layer == 1);
  CHECK(f.expert == E);
  CHECK(det.layers[1].token == pos);
  CHECK(f.weight.tensor == "blk.1.ffn_down_exps.weight");
  CHECK(f.weight.row == E * d + j);  // the row of the merged 3-D tensor
  CHECK(f.weight.col == k);
  CHECK(f.weight.value == 8.0f);
  CHECK(f.confirmed);
  CHECK(f.output_after < 0.1f * f.output_max);
  CHECK(model->tensor_f32("blk.1.ffn_down_exps.weight") == before);  // restored
  const SuperWeightDetection back = formats::detection_from_json(formats::detection_to_json(det));
  CHECK(back.found.at(0).expert == E);
  CHECK(back.layers.at(1).expert == E);

  // The dynamic solver with that weight protected: one type per tensor (a merged expert tensor
  // included), the target met, and the weight kept within 1% in the written file.
  ImportanceOptions io;
  io.ctx = 32;
  io.samples = 2;
  ImportanceAnalyzer an(*src, io);
  std::vector<int32_t> toks;
  for (int i = 0; i < 64; ++i) toks.push_back((i * 37 + 5) % 2000 + 3);
  an.set_tokens(toks, "test");
  const Imatrix im = an.run().imatrix;
  const std::vector<ProtectedWeight> protect = merge_super_weights(det, {});
  REQUIRE(protect.size() == 1);
  ResolveOptions ro;
  ro.imatrix = &im;
  ro.protect = protect;
  Profile p = Profile::load("balanced");
  p.target_bpw = 4.5;
  const ProfileResolution r = resolve_profile(p, *src, ro);
  std::map<std::string, int> seen;
  for (const auto& a : r.tensors) ++seen[a.tensor];
  for (const char* n : {"blk.1.ffn_down_exps.weight", "blk.0.ffn_gate_exps.weight", "blk.3.ffn_up_exps.weight"})
    CHECK(seen[n] == 1);
  for (const auto& [n, c] : seen) CHECK(c == 1);
  CHECK(std::fabs(r.effective_bpw() - 4.5) / 4.5 <= 0.02);
  QuantizeOptions qo;
  qo.ftype = FileType::Q4_K_M;
  qo.imatrix = &im;
  for (const auto& a : r.tensors) qo.tensor_type_map[a.tensor] = a.type;
  qo.protect = protect;
  Quantizer(qo).quantize(*src, tmp / "dyn.gguf");
  gguf::Reader out(tmp / "dyn.gguf");
  for (const auto& a : r.tensors) {
    const auto* t = out.find_tensor(a.tensor);
    REQUIRE(t);
    CHECK(t->type == a.type);
  }
  const auto* t = out.find_tensor("blk.1.ffn_down_exps.weight");
  REQUIRE(t);
  CHECK(t->ne == std::vector<int64_t>{s.ff, d, s.experts});
  std::vector<float> row(static_cast<size_t>(t->ne[0]));
  read_rows_f32(out, *t, E * d + j, 1, row.data());
  INFO("type " << type_name(t->type) << ": 8 -> " << row[k]);
  CHECK(std::fabs(row[static_cast<size_t>(k)] - 8.0f) <= 0.08f);
  // Measured sensitivity (objective kld) quantizes a merged expert tensor expert by expert with
  // that expert's importance, and restores it.
  SensitivityOptions so;
  so.imatrix = &im;
  so.ctx = 32;
  so.chunks = 2;
  so.types = {QuantType::Q2_K, QuantType::Q6_K};
  so.tensors = {"blk.0.ffn_down_exps.weight", "blk.2.ffn_up_exps.weight"};
  const SensitivityTable st = measure_sensitivity(*src, toks, so);
  REQUIRE(st.rows.size() == 2);
  CHECK(st.reference_kld_floor < 1e-9);
  for (const auto& sr : st.rows) {
    INFO(sr.tensor << ": Q2_K " << sr.kld[0] << ", Q6_K " << sr.kld[1]);
    CHECK(sr.kld[0] > 4 * sr.kld[1]);
    CHECK(sr.kld[1] > 0);
  }
  // The file runs.
  auto q = Model::load(tmp / "dyn.gguf");
  const std::vector<float> l = last_logits(*q, {1, 40, 41, 900});
  CHECK(std::all_of(l.begin(), l.end(), [](float v) { return std::isfinite(v); }));
}

namespace {

// GPTQ's settings for the toys (rows of 64): 3 chunks of 64 tokens, groups of 32.
GptqConfig moe_gptq_config(const fs::path& calib) {
  GptqConfig c = test::small_gptq_config(calib);
  c.params.group_size = 32;
  return c;
}

// The names of expert e's three projections in block l (gate, up, down).
std::vector<std::string> expert_modules(const std::string& type, int64_t l, int64_t e) {
  const bool mixtral = type == "mixtral";
  const std::string p = fmt::format("model.layers.{}.{}experts.{}.", l, mixtral ? "block_sparse_moe." : "mlp.", e);
  if (mixtral) return {p + "w1", p + "w3", p + "w2"};
  return {p + "gate_proj", p + "up_proj", p + "down_proj"};
}

// Runs body(type, toy, dir) on a toy of each mixture-of-experts type, its checkpoint in dir / "m";
// stops where the shared tokenizer is absent (the test is skipped).
void for_each_moe_toy(const std::function<void(const std::string&, const MoeToy&, const test::TempDir&)>& body) {
  for (const std::string type : {"mixtral", "qwen2_moe", "qwen3_moe"}) {
    INFO(type);
    test::TempDir tmp;
    MoeToy s;
    s.model_type = type;
    if (!write_moe_toy(tmp / "m", s)) return;
    body(type, s, tmp);
  }
}

// The linears a quantizer writes for toy s: per block q, k, v, o, each expert's three projections
// and the shared expert's three.
size_t moe_linears(const MoeToy& s) {
  return static_cast<size_t>(s.layers * (4 + 3 * s.experts + (s.model_type == "qwen2_moe" ? 3 : 0)));
}

std::map<std::string, std::vector<uint8_t>> output_tensors(const fs::path& dir) {
  std::map<std::string, std::vector<uint8_t>> m;
  test::for_each_safetensors_tensor(dir, [&](const StTensor& t, std::vector<uint8_t>& raw) { m[t.name] = raw; });
  return m;
}

}  // namespace

TEST_CASE("moe: GPTQ writes every expert as a packed module of its own, the routers float and ignored, and reads back",
          "[arch][moe][gptq]") {
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  for_each_moe_toy([&](const std::string& type, const MoeToy& s, const test::TempDir& tmp) {
    const bool shared = type == "qwen2_moe";
    const GptqResult r = gptq_model(tmp / "m", tmp / "out", moe_gptq_config(*calib));
    CHECK(r.layers.size() == moe_linears(s));
    CHECK(r.warnings.empty());  // 3 x 64 tokens reach every expert
    for (const GptqLayerReport& l : r.layers) CHECK(l.loss > 0);

    const auto out = output_tensors(tmp / "out");
    const std::string mlp = type == "mixtral" ? ".block_sparse_moe." : ".mlp.";
    for (int64_t l = 0; l < s.layers; ++l) {
      for (int64_t e = 0; e < s.experts; ++e)
        for (const std::string& m : expert_modules(type, l, e)) {
          CHECK(out.count(m + ".weight_packed"));
          CHECK(out.count(m + ".weight_scale"));
          CHECK_FALSE(out.count(m + ".weight"));
        }
      const std::string b = fmt::format("model.layers.{}", l);
      CHECK(out.count(b + mlp + "gate.weight"));  // the router as it was
      if (shared) {
        CHECK(out.count(b + ".mlp.shared_expert.down_proj.weight_packed"));
        CHECK(out.count(b + ".mlp.shared_expert_gate.weight"));
      }
    }
    const auto cfg = nlohmann::json::parse(read_file(tmp / "out" / "config.json"));
    const auto& ignore = cfg["quantization_config"]["ignore"];
    auto ignored = [&](const std::string& p) { return std::find(ignore.begin(), ignore.end(), p) != ignore.end(); };
    CHECK(ignored("lm_head"));
    CHECK(ignored("re:.*" + mlp.substr(1) + "gate$"));
    CHECK(ignored("re:.*mlp.shared_expert_gate$") == shared);

    // Read back: each expert's matrix is its own 4-bit grid (at most 16 values a group of 32),
    // near the float weights, and the quantized model runs close to the float one.
    auto src = ModelSource::open(tmp / "m");
    auto q = ModelSource::open(tmp / "out");
    // Its size is its files' (its linears are read dequantized to F32; the toy's F32 embeddings
    // keep the figure well above 4 bits)
    CHECK(size_info(*q).bpw < 0.8 * size_info(*src).bpw);
    for (const char* role : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}) {
      const std::string name = fmt::format("blk.1.{}.weight", role);
      REQUIRE(q->at(name).ne == src->at(name).ne);
      for (int64_t e = 0; e < s.experts; ++e) {
        const std::vector<float> a = expert_rows(*src, name, e), b = expert_rows(*q, name, e);
        CHECK(test::rel_rmse(a, b) > 0.01);
        CHECK(test::rel_rmse(a, b) < 0.25);
        for (size_t g = 0; g < b.size(); g += 32) {
          std::vector<float> v(b.begin() + static_cast<std::ptrdiff_t>(g), b.begin() + static_cast<std::ptrdiff_t>(g + 32));
          std::sort(v.begin(), v.end());
          CHECK(std::unique(v.begin(), v.end()) - v.begin() <= 16);
        }
      }
    }
    // The random toys are sensitive (a changed routing moves the logits far), but GPTQ's stay
    // closer to the float model's than round to nearest's.
    const std::vector<int32_t> toks = {1, 17, 300, 45, 45, 1024, 7, 88, 2000, 3};
    const std::vector<float> want = last_logits(*Model::load(*src), toks);
    const double err = test::rel_rmse(want, last_logits(*Model::load(*q), toks));
    GptqConfig rc = moe_gptq_config(*calib);
    rc.params.rtn = true;
    gptq_model(tmp / "m", tmp / "rtn", rc);
    const double rtn_err = test::rel_rmse(want, last_logits(*Model::load(tmp / "rtn"), toks));
    CHECK(err > 0);
    CHECK(err < rtn_err);
  });
}

TEST_CASE("moe: an expert no calibration token reaches is rounded to nearest, with a warning", "[arch][moe][gptq]") {
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  test::TempDir tmp;
  MoeToy s;
  // The router reads channel 0 only: expert 0 when it is positive, expert 1 when negative; 2 and 3
  // tie at 0 and the lower index wins, so expert 3 is never chosen.
  s.edit = [&](const std::string& name, std::vector<float>& v) {
    if (!name.ends_with("block_sparse_moe.gate.weight")) return;
    std::fill(v.begin(), v.end(), 0.0f);
    v[0] = 100.0f;
    v[static_cast<size_t>(s.d)] = -100.0f;
  };
  if (!write_moe_toy(tmp / "m", s)) return;
  GptqConfig c = moe_gptq_config(*calib);
  const GptqResult r = gptq_model(tmp / "m", tmp / "gptq", c);
  REQUIRE(r.warnings.size() == 2);
  CHECK_THAT(r.warnings[0], Catch::Matchers::Contains("block 0") && Catch::Matchers::Contains("expert(s) 3;"));
  CHECK_THAT(r.warnings[1], Catch::Matchers::Contains("block 1") && Catch::Matchers::Contains("rounded to nearest"));
  c.params.rtn = true;
  gptq_model(tmp / "m", tmp / "rtn", c);
  const auto g = output_tensors(tmp / "gptq"), n = output_tensors(tmp / "rtn");
  for (int64_t l = 0; l < s.layers; ++l)
    for (int64_t e = 0; e < s.experts; ++e)
      for (const std::string& m : expert_modules("mixtral", l, e)) {
        INFO(m);
        const bool same = g.at(m + ".weight_packed") == n.at(m + ".weight_packed") &&
                          g.at(m + ".weight_scale") == n.at(m + ".weight_scale");
        CHECK(same == (e == 3));  // the others went through GPTQ's walk
      }
}

TEST_CASE("moe: the in-memory GptqQuantizer writes gptq_model's bytes, holds every expert's matrix and runs them",
          "[arch][moe][gptq]") {
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  for_each_moe_toy([&](const std::string& type, const MoeToy& s, const test::TempDir& tmp) {
    const GptqConfig c = moe_gptq_config(*calib);
    gptq_model(tmp / "m", tmp / "ref", c);
    auto src = ModelSource::open(tmp / "m");
    GptqQuantizer q(*src, c);
    q.run();
    const GptqResult r = q.write(tmp / "mem");
    CHECK(test::files_below(tmp / "mem") == test::files_below(tmp / "ref"));
    CHECK(r.layers.size() == moe_linears(s));
    CHECK(r.tokens > 0);
    for (const GptqLayerReport& l : r.layers) CHECK(l.loss > 0);

    // Each expert is a matrix of its own, the one written; the model in memory holds the
    // dequantized experts and computes what the written directory does.
    auto ref = ModelSource::open(tmp / "ref");
    for (int64_t e = 0; e < s.experts; ++e) {
      const GptqMatrix& m = q.matrix(expert_modules(type, 1, e)[2]);
      CHECK(m.dequantize() == expert_rows(*ref, "blk.1.ffn_down_exps.weight", e));
    }
    const std::vector<int32_t> toks = {1, 17, 300, 45, 45, 1024, 7, 88, 2000, 3};
    CHECK(test::rel_rmse(last_logits(*Model::load(*ref), toks), last_logits(q.model(), toks)) < 1e-5);

    if (type != "mixtral") return;
    // Calibration data given as such: the same bytes as from its file.
    GptqConfig nc = c;
    nc.calibration_data.clear();
    GptqQuantizer g(*src, nc);
    g.set_calibration(load_calibration(*calib));
    g.run();
    g.write(tmp / "given");
    CHECK(test::files_below(tmp / "given") == test::files_below(tmp / "ref"));
    // Round to nearest, no calibration: gptq_model's bytes too.
    GptqConfig rc = c;
    rc.params.rtn = true;
    gptq_model(tmp / "m", tmp / "rtn-ref", rc);
    GptqQuantizer n(*src, rc);
    n.run();
    n.write(tmp / "rtn");
    CHECK(test::files_below(tmp / "rtn") == test::files_below(tmp / "rtn-ref"));
  });
}

TEST_CASE("moe: AWQ searches the mixture and each expert, folds the norm into router and experts, and reads back",
          "[arch][moe][awq]") {
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  for_each_moe_toy([&](const std::string& type, const MoeToy& s, const test::TempDir& tmp) {
    const bool shared = type == "qwen2_moe";
    AwqConfig a = test::small_awq_config(*calib, 8, 64);
    a.params.group_size = 32;
    a.params.search_tokens = 128;  // the mixture's candidates screened on 128 of the 512 tokens
    const AwqResult r = awq_model(tmp / "m", tmp / "awq", a);
    CHECK(r.gptq.layers.size() == moe_linears(s));
    CHECK(r.gptq.warnings.empty());
    // Per block: q/k/v (v -> o is skipped under GQA), the mixture, each expert's up -> down, the
    // shared expert's.
    REQUIRE(r.groups.size() == static_cast<size_t>(s.layers * (2 + s.experts + (shared ? 1 : 0))));
    CHECK(r.groups[1].group == "post_attention_layernorm->router,experts.gate,up");
    CHECK(r.groups[2].group == "experts.0.up->down");
    if (shared) CHECK(r.groups[2 + static_cast<size_t>(s.experts)].group == "shared_expert.up->down");
    for (const AwqGroupReport& g : r.groups) CHECK(g.loss <= g.identity_loss);

    const auto out = output_tensors(tmp / "awq"), in = output_tensors(tmp / "m");
    const std::string mlp = type == "mixtral" ? ".block_sparse_moe." : ".mlp.";
    for (int64_t l = 0; l < s.layers; ++l) {
      const std::string b = fmt::format("model.layers.{}", l);
      for (int64_t e = 0; e < s.experts; ++e)
        for (const std::string& m : expert_modules(type, l, e)) {
          CHECK(out.count(m + ".weight_packed"));
          CHECK(out.count(m + ".weight_zero_point"));
        }
      // The MLP norm divided by the scales, the routers' columns multiplied: float, ignored.
      CHECK(out.at(b + ".post_attention_layernorm.weight") != in.at(b + ".post_attention_layernorm.weight"));
      CHECK(out.at(b + mlp + "gate.weight") != in.at(b + mlp + "gate.weight"));
      if (shared) CHECK(out.at(b + ".mlp.shared_expert_gate.weight") != in.at(b + ".mlp.shared_expert_gate.weight"));
    }
    const auto cfg = nlohmann::json::parse(read_file(tmp / "awq" / "config.json"));
    const auto& ignore = cfg["quantization_config"]["ignore"];
    CHECK(std::find(ignore.begin(), ignore.end(), "re:.*" + mlp.substr(1) + "gate$") != ignore.end());
    // The in-memory quantizer writes the same bytes.
    {
      auto src = ModelSource::open(tmp / "m");
      AwqQuantizer qz(*src, a);
      qz.run();
      qz.write(tmp / "awq-mem");
      CHECK(test::files_below(tmp / "awq-mem") == test::files_below(tmp / "awq"));
    }
    // With GPTQ's rounding (each expert on its routed tokens' XᵀX): other codes, the same bytes
    // streamed and in memory.
    {
      AwqConfig g = a;
      g.params.gptq_rounding = true;
      g.params.gptq_act_order = true;
      const AwqResult rg = awq_model(tmp / "m", tmp / "awq-gptq", g);
      CHECK(rg.gptq.warnings.empty());
      CHECK(test::files_below(tmp / "awq-gptq") != test::files_below(tmp / "awq"));
      auto src = ModelSource::open(tmp / "m");
      AwqQuantizer qz(*src, g);
      qz.run();
      qz.write(tmp / "awq-gptq-mem");
      CHECK(test::files_below(tmp / "awq-gptq-mem") == test::files_below(tmp / "awq-gptq"));
    }

    // Read back as merged 3-D experts.
    auto src = ModelSource::open(tmp / "m"), q = ModelSource::open(tmp / "awq");
    for (const char* role : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}) {
      const std::string name = fmt::format("blk.1.{}.weight", role);
      REQUIRE(q->at(name).ne == src->at(name).ne);
    }
    // Closer to the float model than round to nearest on the same asymmetric grid (the logits of
    // 64 positions of eval.txt), on a toy whose experts are one MLP: there the model's function
    // does not hang on the routing, which the random toy's flips at the slightest change.
    MoeToy same = s;
    same.same_experts = true;
    REQUIRE(write_moe_toy(tmp / "same", same));
    awq_model(tmp / "same", tmp / "same-awq", a);
    GptqConfig rc = moe_gptq_config(*calib);
    rc.params.rtn = true;
    rc.params.sym = false;
    gptq_model(tmp / "same", tmp / "same-rtn", rc);
    auto eval = test::shared_file("corpus/eval.txt");
    REQUIRE(eval);
    std::vector<int32_t> toks = Tokenizer::from_hf_dir(tmp / "m").encode(read_file(*eval).substr(0, 2000));
    toks.resize(64);
    const std::vector<float> want = last_logits(*Model::load(tmp / "same"), toks);
    const double err = test::rel_rmse(want, last_logits(*Model::load(tmp / "same-awq"), toks));
    const double rtn_err = test::rel_rmse(want, last_logits(*Model::load(tmp / "same-rtn"), toks));
    CHECK(err > 0);
    CHECK(err < rtn_err);
  });
}

TEST_CASE("moe: AWQ rounds an expert no token reaches on its grid with a warning, and resumes to the same bytes",
          "[arch][moe][awq]") {
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  test::TempDir tmp;
  MoeToy s;
  s.layers = 3;
  // The router reads channel 0 only: expert 0 when it is positive, expert 1 when negative; 2 and 3
  // tie at 0 and the lower index wins, so expert 3 is never chosen.
  s.edit = [&](const std::string& name, std::vector<float>& v) {
    if (!name.ends_with("block_sparse_moe.gate.weight")) return;
    std::fill(v.begin(), v.end(), 0.0f);
    v[0] = 100.0f;
    v[static_cast<size_t>(s.d)] = -100.0f;
  };
  if (!write_moe_toy(tmp / "m", s)) return;
  AwqConfig a = test::small_awq_config(*calib);
  a.params.group_size = 32;
  const AwqResult r = awq_model(tmp / "m", tmp / "ref", a);
  REQUIRE(r.gptq.warnings.size() == 3);
  CHECK_THAT(r.gptq.warnings[0], Catch::Matchers::Contains("block 0") && Catch::Matchers::Contains("expert(s) 3;"));
  for (const GptqLayerReport& l : r.gptq.layers) {
    INFO(l.module);
    CHECK((l.loss == 0) == (l.module.find("experts.3.") != std::string::npos));  // no tokens, no error measured
  }
  for (const AwqGroupReport& g : r.groups) CHECK(g.group != "experts.3.up->down");

  // Cancelled after its first block, resumed from the checkpoint: the same bytes.
  a.checkpoint_dir = awq_checkpoint_state(tmp / "ckpt", a, false);
  test::CancelAfter stop(1, "AWQ");
  test::check_error(Errc::interrupted, [&] { awq_model(tmp / "m", tmp / "out", a, stop.ctx()); });
  CHECK_FALSE(fs::exists(tmp / "out"));
  a.resume = true;
  const AwqResult b = awq_model(tmp / "m", tmp / "out", a);
  CHECK(b.gptq.resumed_blocks >= 1);
  CHECK(test::files_below(tmp / "out") == test::files_below(tmp / "ref"));
  CHECK(b.groups.size() == r.groups.size());

  // The in-memory AwqQuantizer: the same bytes, the unreached expert's matrix on its grid too.
  auto src = ModelSource::open(tmp / "m");
  AwqConfig m = test::small_awq_config(*calib);
  m.params.group_size = 32;
  AwqQuantizer qz(*src, m);
  qz.run();
  qz.write(tmp / "mem");
  CHECK(test::files_below(tmp / "mem") == test::files_below(tmp / "ref"));
  CHECK(qz.matrix(expert_modules("mixtral", 0, 3)[0]).rows > 0);

  // AutoAWQ's GEMM layout: every expert a qweight / qzeros / scales module, read back as 4-bit
  // grids (at most 16 values a group of 32).
  AwqConfig g = test::small_awq_config(*calib);
  g.params.group_size = 32;
  g.layout = GptqLayout::awq;
  awq_model(tmp / "m", tmp / "gemm", g);
  const auto out = output_tensors(tmp / "gemm");
  for (const std::string& m : expert_modules("mixtral", 2, 3)) {
    CHECK(out.count(m + ".qweight"));
    CHECK(out.count(m + ".qzeros"));
    CHECK(out.count(m + ".scales"));
  }
  auto gemm = ModelSource::open(tmp / "gemm");
  for (const char* role : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"})
    for (int64_t e = 0; e < s.experts; ++e) {
      const std::vector<float> w = expert_rows(*gemm, fmt::format("blk.2.{}.weight", role), e);
      for (size_t g = 0; g < w.size(); g += 32) {
        std::vector<float> v(w.begin() + static_cast<std::ptrdiff_t>(g), w.begin() + static_cast<std::ptrdiff_t>(g + 32));
        std::sort(v.begin(), v.end());
        CHECK(std::unique(v.begin(), v.end()) - v.begin() <= 16);
      }
    }
}

TEST_CASE("moe: W8A8 after SmoothQuant smooths the attention and writes int8 experts", "[arch][moe][gptq]") {
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  test::TempDir tmp;
  MoeToy s;
  if (!write_moe_toy(tmp / "m", s)) return;

  GptqConfig c = moe_gptq_config(*calib);
  c.params.bits = 8;
  c.params.group_size = -1;
  c.smoothquant = SmoothQuantConfig{};
  c.smoothquant->static_activations = true;
  test::check_error(Errc::invalid_argument, [&] { gptq_model(tmp / "m", tmp / "w8a8", c); }, "dynamically per token");
  CHECK_FALSE(fs::exists(tmp / "w8a8"));
  c.smoothquant->static_activations = false;
  const GptqResult r = gptq_model(tmp / "m", tmp / "w8a8", c);
  // One smoothing group a block: input_layernorm -> q/k/v (the MLP norm feeds router and experts).
  REQUIRE(r.smoothing.size() == static_cast<size_t>(s.layers));
  for (const SmoothQuantGroup& g : r.smoothing) CHECK(g.norm.ends_with("input_layernorm"));
  const auto out = output_tensors(tmp / "w8a8"), in = output_tensors(tmp / "m");
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string b = fmt::format("model.layers.{}.", l);
    CHECK(out.at(b + "input_layernorm.weight") != in.at(b + "input_layernorm.weight"));  // γ / s
    CHECK(out.at(b + "post_attention_layernorm.weight") == in.at(b + "post_attention_layernorm.weight"));
    CHECK(out.at(b + "block_sparse_moe.gate.weight") == in.at(b + "block_sparse_moe.gate.weight"));
    for (int64_t e = 0; e < s.experts; ++e)
      for (const std::string& m : expert_modules("mixtral", l, e)) {
        CHECK(out.at(m + ".weight").size() == static_cast<size_t>(s.d * s.ff));  // int8
        CHECK(out.count(m + ".weight_scale"));
      }
  }
  // Read back as int8 rows (W8) of the merged tensors, each expert near its float weights, and the
  // model near the float one.
  auto src = ModelSource::open(tmp / "m"), q = ModelSource::open(tmp / "w8a8");
  CHECK(q->at("blk.1.ffn_down_exps.weight").type == QuantType::W8);
  for (int64_t e = 0; e < s.experts; ++e) {
    const double err = test::rel_rmse(expert_rows(*src, "blk.1.ffn_down_exps.weight", e),
                                      expert_rows(*q, "blk.1.ffn_down_exps.weight", e));
    CHECK(err > 0);
    CHECK(err < 0.02);
  }
  const std::vector<int32_t> toks = {1, 17, 300, 45, 45, 1024, 7, 88, 2000, 3};
  CHECK(test::rel_rmse(last_logits(*Model::load(*src), toks), last_logits(*Model::load(*q), toks)) < 0.1);
}

TEST_CASE("moe: a cancelled GPTQ run resumes from its checkpoint to the same bytes, and the GPTQ layout reads back",
          "[arch][moe][gptq]") {
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  test::TempDir tmp;
  MoeToy s;
  s.model_type = "qwen2_moe";  // routed and shared experts
  s.layers = 3;
  if (!write_moe_toy(tmp / "m", s)) return;
  GptqConfig c = moe_gptq_config(*calib);
  CHECK(gptq_model(tmp / "m", tmp / "ref", c).expert_inputs_spooled == 0);  // under the budget: in memory
  {
    // The experts' down inputs spooled to the work directory, each Hessian formed when its expert
    // is quantized: the same bytes (and the work file gone).
    GptqConfig sp = c;
    sp.expert_hessian_bytes = 0;
    CHECK(gptq_model(tmp / "m", tmp / "spooled", sp).expert_inputs_spooled > 0);
    CHECK(test::files_below(tmp / "spooled") == test::files_below(tmp / "ref"));
    // The CLI's --expert-hessian-memory sets that budget: 0 spools (its JSON says how much), the
    // same bytes again.
    const auto r = test::run(test::cli_path() + " --quiet --threads 2 --format json quantize " + (tmp / "m").string() +
                             " gptq --group-size 32 --calibration-data " + calib->string() +
                             " --calibration-samples 3 --ctx 64 --expert-hessian-memory 0 -o " + (tmp / "cli").string());
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(nlohmann::json::parse(r.out).at("expert_inputs_spooled").get<int64_t>() > 0);
    CHECK(test::files_below(tmp / "cli") == test::files_below(tmp / "ref"));
  }
  c.checkpoint_dir = gptq_checkpoint_state(tmp / "ckpt", c, false);
  test::CancelAfter stop(1, "GPTQ");
  test::check_error(Errc::interrupted, [&] { gptq_model(tmp / "m", tmp / "out", c, stop.ctx()); });
  CHECK_FALSE(fs::exists(tmp / "out"));
  c.resume = true;
  c.expert_hessian_bytes = 0;  // resumed with the inputs spooled: still the same bytes
  const GptqResult r = gptq_model(tmp / "m", tmp / "out", c);
  CHECK(r.resumed_blocks >= 1);
  CHECK(r.resumed_blocks < 3);
  CHECK(test::files_below(tmp / "out") == test::files_below(tmp / "ref"));
  for (const auto& e : fs::recursive_directory_iterator(tmp.path()))
    CHECK(e.path().filename().string().rfind("experts-", 0) != 0);  // no spool left behind

  // AutoGPTQ's layout (qweight, qzeros, scales in fp16): every expert reads back near its float
  // weights (its rounding differs from the compressed-tensors run's: fp16 scales steer the walk).
  GptqConfig g = moe_gptq_config(*calib);
  g.layout = GptqLayout::gptq;
  gptq_model(tmp / "m", tmp / "gptq", g);
  const auto out = output_tensors(tmp / "gptq");
  CHECK(out.count("model.layers.2.mlp.experts.3.down_proj.qweight"));
  CHECK(out.count("model.layers.2.mlp.shared_expert.up_proj.qweight"));
  CHECK(out.count("model.layers.2.mlp.gate.weight"));
  auto src = ModelSource::open(tmp / "m"), gl = ModelSource::open(tmp / "gptq");
  for (const char* role : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"})
    for (int64_t e = 0; e < s.experts; ++e) {
      const std::string name = fmt::format("blk.2.{}.weight", role);
      const double err = test::rel_rmse(expert_rows(*src, name, e), expert_rows(*gl, name, e));
      CHECK(err > 0.01);
      CHECK(err < 0.25);
    }
}

TEST_CASE("moe: GGUF --gptq walks every expert's slice of the merged tensors, closer to the float model than without",
          "[arch][moe][gptq-gguf]") {
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  test::TempDir tmp;
  MoeToy s;
  s.model_type = "qwen2_moe";
  s.bf16 = true;  // the routers are converted to F32 (planned, not walked: a resume must not look for them)
  if (!write_moe_toy(tmp / "m", s)) return;
  auto src = ModelSource::open(tmp / "m");
  QuantizeOptions qo;
  qo.ftype = FileType::Q4_0;
  GptqGgufConfig c = test::small_gptq_gguf_config(*calib);
  c.work_dir = tmp / "work";
  fs::create_directories(c.work_dir);
  const GptqGgufResult r = gptq_gguf_tensors(*src, qo, c);
  CHECK(r.plain_tensors.empty());
  const size_t per_block = 4 + 3 + 3;  // attention, experts (merged), shared expert
  CHECK(r.gptq_tensors.size() == per_block * static_cast<size_t>(s.layers));
  CHECK(fs::is_empty(c.work_dir));
  {
    // Without a work folder (the API's default): streamed through a private temporary folder,
    // the same bytes, nothing left in TMPDIR.
    const fs::path tmpdir = tmp / "tmpdir";
    fs::create_directories(tmpdir);
    const char* old = std::getenv("TMPDIR");
    const std::string saved = old ? old : "";
    ::setenv("TMPDIR", tmpdir.c_str(), 1);
    GptqGgufConfig d = c;
    d.work_dir.clear();
    const GptqGgufResult r2 = gptq_gguf_tensors(*src, qo, d);
    if (old) ::setenv("TMPDIR", saved.c_str(), 1);
    else ::unsetenv("TMPDIR");
    CHECK(r2.tensor_bytes == r.tensor_bytes);
    CHECK(fs::is_empty(tmpdir));
  }

  // The float model with every linear in its Q4_0 bytes: walked, or as the plain run makes them.
  auto model_with = [&](bool walked) {
    auto m = Model::load(*src);
    for (const TensorPlan& p : Quantizer(qo).plan(*src)) {
      if (p.name.rfind("blk.", 0) != 0 || p.ne.size() < 2 || !p.quantize || p.name.find("gate_inp") != std::string::npos)
        continue;
      INFO(p.name);
      const int64_t rows = p.n_elements() / p.ne[0];
      std::vector<uint8_t> b;
      if (walked) {
        b = r.tensor_bytes.at(p.name);
      } else {
        std::vector<float> w(static_cast<size_t>(p.n_elements()));
        src->read_rows_f32(src->at(p.name), 0, rows, w.data());
        b.resize(type_info(p.type).row_bytes(p.ne[0]) * static_cast<size_t>(rows));
        Quantizer::quantize_rows(p.type, w.data(), b.data(), rows, p.ne[0], nullptr, Context{}, false, false);
      }
      REQUIRE(b.size() == type_info(p.type).row_bytes(p.ne[0]) * static_cast<size_t>(rows));
      m->replace_tensor(p.name, p.type, b);
    }
    return m;
  };
  // On the calibration text's first chunk (the random toy's logits move far on any change of
  // routing; on the data it was calibrated on the walk must still win).
  std::vector<int32_t> toks = Tokenizer::from_hf_dir(tmp / "m").encode(read_file(*calib));
  toks.resize(64);
  const std::vector<float> want = last_logits(*Model::load(*src), toks);
  const double walked = test::rel_rmse(want, last_logits(*model_with(true), toks));
  const double plain = test::rel_rmse(want, last_logits(*model_with(false), toks));
  CHECK(walked > 0);
  CHECK(walked < plain);

  // Streamed with a checkpoint: cancelled after a block, resumed to the same bytes.
  GptqGgufConfig k = c;
  k.checkpoint_dir = tmp / "ckpt" / "gguf-gptq-Q4_0";
  test::CancelAfter stop(1, "GPTQ");
  test::check_error(Errc::interrupted, [&] { gptq_gguf_tensors(*src, qo, k, stop.ctx()); });
  k.resume = true;
  const GptqGgufResult again = gptq_gguf_tensors(*src, qo, k);
  CHECK(again.tensor_bytes == r.tensor_bytes);
}

TEST_CASE("moe: convert X.gguf to compressed-tensors or gptq writes every expert's Q4_0 codes as a module of its own",
          "[arch][moe][cli]") {
  for_each_moe_toy([&](const std::string& type, const MoeToy& s, const test::TempDir& tmp) {
    const fs::path gguf = tmp / "m.gguf";
    REQUIRE(test::run(test::cli_path() + " quantize " + (tmp / "m").string() + " gguf -q Q4_0 -o " + gguf.string())
                .status == 0);
    for (const GptqLayout layout : {GptqLayout::compressed_tensors, GptqLayout::gptq}) {
      const fs::path dir = tmp / (layout == GptqLayout::gptq ? "gptq" : "ct");
      const GgufConvertResult r = convert_gguf_to_gptq(gguf, dir, layout);
      CHECK(r.requantized.empty());  // every linear, experts included, maps exactly
      CHECK(r.exact.size() == moe_linears(s));
      const auto cfg = nlohmann::json::parse(read_file(dir / "config.json"));
      CHECK(cfg["model_type"] == type);
      CHECK(cfg[type == "mixtral" ? "num_local_experts" : "num_experts"] == s.experts);
      CHECK(cfg["num_experts_per_tok"] == s.top_k);
      const auto out = output_tensors(dir);
      const std::string packed = layout == GptqLayout::gptq ? ".qweight" : ".weight_packed";
      for (const std::string& m : expert_modules(type, 1, s.experts - 1)) CHECK(out.count(m + packed));
      CHECK(out.count(type == "mixtral" ? "model.layers.1.block_sparse_moe.gate.weight" : "model.layers.1.mlp.gate.weight"));
      // The directory reads back to the GGUF's values, expert by expert.
      auto g = ModelSource::open(gguf), d = ModelSource::open(dir);
      for (const char* role : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"})
        for (int64_t e = 0; e < s.experts; ++e) {
          const std::string name = fmt::format("blk.1.{}.weight", role);
          CHECK(expert_rows(*g, name, e) == expert_rows(*d, name, e));
        }
    }
  });
}

TEST_CASE("moe: convert DIR gguf -q exact writes every quantized expert's codes as Q4_0 or Q8_0 blocks", "[arch][moe]") {
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  test::TempDir tmp;
  MoeToy s;
  s.model_type = "qwen2_moe";
  if (!write_moe_toy(tmp / "m", s)) return;
  GptqConfig c4 = moe_gptq_config(*calib);  // symmetric 4-bit g32 with fp16 scales: Q4_0's grid
  c4.layout = GptqLayout::gptq;
  gptq_model(tmp / "m", tmp / "w4", c4);
  GptqConfig c8 = moe_gptq_config(*calib);
  c8.params.bits = 8;
  c8.params.group_size = -1;
  c8.smoothquant = SmoothQuantConfig{};
  gptq_model(tmp / "m", tmp / "w8a8", c8);  // int8 rows: Q8_0 keeps them
  for (const auto& [dir, type] : {std::pair<const char*, const char*>{"w4", "Q4_0"}, {"w8a8", "Q8_0"}}) {
    INFO(dir);
    auto q = ModelSource::open(tmp / dir);
    const ExactConvertResult r = convert_exact_to_gguf(*q, tmp / (std::string(dir) + ".gguf"));
    int experts = 0;
    for (const ExactTensor& t : r.tensors)
      if (t.name.find("_exps.") != std::string::npos) {
        INFO(t.name);
        CHECK(t.type == type);
        // W4: exact; W8A8's F32 row scales become each block's fp16 scale, the codes kept
        CHECK(t.mapping == (type == std::string("Q4_0") ? "exact" : "codes_kept"));
        ++experts;
      }
    CHECK(experts == 3 * s.layers);
    // The GGUF's experts decode to the directory's values (up to W8A8's scales in fp16).
    auto g = ModelSource::open(tmp / (std::string(dir) + ".gguf"));
    for (int64_t e = 0; e < s.experts; ++e) {
      const std::vector<float> a = expert_rows(*g, "blk.1.ffn_down_exps.weight", e);
      const std::vector<float> b = expert_rows(*q, "blk.1.ffn_down_exps.weight", e);
      if (type == std::string("Q4_0")) CHECK(a == b);
      else CHECK(test::rel_rmse(b, a) < 1e-3);
    }
  }
}

TEST_CASE("moe: quantize MODEL smoothquant smooths the attention, writes int8 experts, streamed as in memory",
          "[arch][moe]") {
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  for (const std::string type : {"mixtral", "qwen2_moe"}) {
    INFO(type);
    test::TempDir tmp;
    MoeToy s;
    s.model_type = type;
    if (!write_moe_toy(tmp / "m", s)) return;
    SmoothQuantConfig c;
    c.calibration_data = *calib;
    c.calibration_samples = 3;
    c.ctx = 64;
    auto src = ModelSource::open(tmp / "m");
    SmoothQuantizer q(*src, c);
    q.calibrate();
    REQUIRE(q.groups().size() == static_cast<size_t>(s.layers));  // input_layernorm -> q/k/v only
    for (const SmoothQuantGroup& g : q.groups()) CHECK(g.norm.ends_with("input_layernorm"));
    const SmoothQuantResult r = q.write(tmp / "whole");
    CHECK(std::count_if(r.not_smoothed.begin(), r.not_smoothed.end(), [](const std::string& m) {
            return m.find(".experts.") != std::string::npos;
          }) == 3 * s.experts * s.layers);
    smoothquant_model(tmp / "m", tmp / "streamed", c);
    CHECK(test::files_below(tmp / "whole") == test::files_below(tmp / "streamed"));
    const auto cfg = nlohmann::json::parse(read_file(tmp / "streamed" / "config.json"));
    const auto& ignore = cfg["quantization_config"]["ignore"];
    CHECK(std::find(ignore.begin(), ignore.end(),
                    type == "mixtral" ? "re:.*block_sparse_moe.gate$" : "re:.*mlp.gate$") != ignore.end());
    // Read back: int8 experts near the float ones; the model near the float one, as apply() makes it.
    auto out = ModelSource::open(tmp / "streamed");
    CHECK(out->at("blk.1.ffn_up_exps.weight").type == QuantType::W8);
    for (int64_t e = 0; e < s.experts; ++e)
      CHECK(test::rel_rmse(expert_rows(*src, "blk.1.ffn_up_exps.weight", e), expert_rows(*out, "blk.1.ffn_up_exps.weight", e)) < 0.02);
    auto applied = Model::load(*src);
    q.apply(*applied);
    const std::vector<int32_t> toks = {1, 17, 300, 45, 45, 1024, 7, 88, 2000, 3};
    const std::vector<float> want = last_logits(*Model::load(*src), toks);
    CHECK(test::rel_rmse(want, last_logits(*applied, toks)) < 0.1);
    CHECK(test::rel_rmse(want, last_logits(*Model::load(*out), toks)) < 0.1);
    // Refused for experts: all mappings (up -> down is not laid out per expert)
    // and static input scales.
    SmoothQuantConfig all = c;
    all.smooth_all = true;
    test::check_error(Errc::invalid_argument, [&] { smoothquant_model(tmp / "m", tmp / "all", all); }, "mixtures of experts");
    SmoothQuantConfig st = c;
    st.static_activations = true;
    test::check_error(Errc::invalid_argument, [&] { smoothquant_model(tmp / "m", tmp / "static", st); }, "static");
  }
}
