// Dense architectures beyond Llama: qwen3 (per-head q/k RMSNorm before RoPE), tied embeddings and
// phi3 (fused qkv and gate_up projections). Small Hugging Face checkpoints are written here (F32
// safetensors, the tiny model's tokenizer), opened as llama.cpp's converter names them, run by the
// engine against references computed here, and planned at a level.
#include <lq/awq.hpp>
#include <lq/engine.hpp>
#include <lq/gptq.hpp>
#include <lq/error.hpp>
#include <lq/model.hpp>
#include <lq/quantizer.hpp>

#include "engine/backward.hpp"
#include "formats/safetensors_writer.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <map>

using namespace lq;
namespace fs = std::filesystem;

namespace {

// Shapes: rows of 256 so that every k-quant fits; qwen3 with head_dim 64 over 8 heads (q is wider
// than the hidden size, as in Qwen3-0.6B).
struct DenseToy {
  std::string model_type = "qwen3";
  int64_t d = 256, ff = 512, heads = 8, kv = 2, head_dim = 64, layers = 2, vocab = 2048;
  bool tied = false;
  bool write_head_dim = true;  // config.json has "head_dim" (phi3's does not)
};

struct DenseTensor {
  std::string name;
  std::vector<int64_t> shape;  // Hugging Face order (rows first)
  std::vector<float> v;
};
using DenseWeights = std::vector<DenseTensor>;

// Separate q/k/v and gate/up weights (plus zero q/k/v biases for qwen2, q/k norms for qwen3).
DenseWeights dense_weights(const DenseToy& t, uint32_t seed) {
  DenseWeights w;
  uint32_t s = seed;
  auto mat = [&](const std::string& n, int64_t rows, int64_t cols, float sd) {
    auto g = test::gaussian(static_cast<size_t>(rows * cols), ++s);
    for (auto& x : g) x *= sd;
    w.push_back({n, {rows, cols}, std::move(g)});
  };
  auto norm = [&](const std::string& n, int64_t len) {
    auto g = test::gaussian(static_cast<size_t>(len), ++s);
    for (auto& x : g) x = 1.0f + 0.2f * x;
    w.push_back({n, {len}, std::move(g)});
  };
  const int64_t nq = t.heads * t.head_dim, nkv = t.kv * t.head_dim;
  mat("model.embed_tokens.weight", t.vocab, t.d, 1.0f);
  for (int64_t l = 0; l < t.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    norm(p + "input_layernorm.weight", t.d);
    mat(p + "self_attn.q_proj.weight", nq, t.d, 0.08f);
    mat(p + "self_attn.k_proj.weight", nkv, t.d, 0.08f);
    mat(p + "self_attn.v_proj.weight", nkv, t.d, 0.08f);
    if (t.model_type == "qwen2")
      for (const char* b : {"q", "k", "v"})
        w.push_back({p + "self_attn." + b + "_proj.bias", {b[0] == 'q' ? nq : nkv},
                     std::vector<float>(static_cast<size_t>(b[0] == 'q' ? nq : nkv), 0.f)});
    if (t.model_type == "qwen3") {
      norm(p + "self_attn.q_norm.weight", t.head_dim);
      norm(p + "self_attn.k_norm.weight", t.head_dim);
    }
    mat(p + "self_attn.o_proj.weight", t.d, nq, 0.05f);
    norm(p + "post_attention_layernorm.weight", t.d);
    mat(p + "mlp.gate_proj.weight", t.ff, t.d, 0.08f);
    mat(p + "mlp.up_proj.weight", t.ff, t.d, 0.08f);
    mat(p + "mlp.down_proj.weight", t.d, t.ff, 0.05f);
  }
  norm("model.norm.weight", t.d);
  if (!t.tied) mat("lm_head.weight", t.vocab, t.d, 0.08f);
  return w;
}

// phi3's layout of the same weights: qkv_proj = [q; k; v] rows, gate_up_proj = [gate; up] rows.
DenseWeights fuse_phi3(const DenseWeights& in) {
  std::map<std::string, const DenseTensor*> by;
  for (const auto& t : in) by[t.name] = &t;
  DenseWeights out;
  auto cat = [&](const std::string& name, std::initializer_list<std::string> parts) {
    DenseTensor f{name, {0, 0}, {}};
    for (const auto& p : parts) {
      const DenseTensor& t = *by.at(p);
      f.shape = {f.shape[0] + t.shape[0], t.shape[1]};
      f.v.insert(f.v.end(), t.v.begin(), t.v.end());
    }
    out.push_back(std::move(f));
  };
  for (const auto& t : in) {
    const auto at = [&](const char* s) { return t.name.find(s) != std::string::npos; };
    if (at(".bias") || at("k_proj") || at("v_proj") || at("up_proj")) continue;
    const std::string p = t.name.substr(0, t.name.find(at("self_attn") ? "self_attn" : "mlp"));
    if (at("q_proj")) cat(p + "self_attn.qkv_proj.weight", {p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                                                            p + "self_attn.v_proj.weight"});
    else if (at("gate_proj")) cat(p + "mlp.gate_up_proj.weight", {p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"});
    else out.push_back(t);
  }
  return out;
}

// config.json, model.safetensors and the tiny model's tokenizer files; false (skipped) without them.
bool write_dense_hf(const fs::path& dir, const DenseToy& t, const DenseWeights& w) {
  const auto tok = test::shared_file("models/tiny-llama/tokenizer.model");
  if (!tok) {
    test::skip("the tiny model's tokenizer (../shared/models/tiny-llama) is not available");
    return false;
  }
  fs::create_directories(dir);
  for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
    if (fs::exists(tok->parent_path() / f)) fs::copy_file(tok->parent_path() / f, dir / f);
  const std::map<std::string, std::string> hf_class = {
      {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"}, {"phi3", "Phi3ForCausalLM"}};
  nlohmann::json c = {{"architectures", {hf_class.at(t.model_type)}},
                      {"model_type", t.model_type},
                      {"hidden_size", t.d},
                      {"intermediate_size", t.ff},
                      {"num_hidden_layers", t.layers},
                      {"num_attention_heads", t.heads},
                      {"num_key_value_heads", t.kv},
                      {"vocab_size", t.vocab},
                      {"max_position_embeddings", 512},
                      {"rms_norm_eps", 1e-6},
                      {"rope_theta", 10000.0},
                      {"tie_word_embeddings", t.tied},
                      {"bos_token_id", 1},
                      {"eos_token_id", 2},
                      {"torch_dtype", "float32"}};
  if (t.write_head_dim) c["head_dim"] = t.head_dim;
  if (t.model_type == "phi3") {
    c["original_max_position_embeddings"] = 512;
    c["sliding_window"] = 2047;
    c["rope_scaling"] = nullptr;
  }
  std::ofstream(dir / "config.json") << c.dump(2);
  std::vector<StTensorSpec> specs;
  for (const auto& x : w) specs.push_back({x.name, StDtype::F32, x.shape});
  SafetensorsWriter out(dir / "model.safetensors", specs);
  for (const auto& x : w) out.write(x.name, x.v.data(), x.v.size() * sizeof(float));
  out.commit();
  return true;
}

// The Phi-3 toy (4 heads, no head_dim key in config.json): the separate weights of `seed` fused as
// Phi-3 stores them, written to dir; false when the test is skipped.
bool write_phi3_toy(const fs::path& dir, uint32_t seed, DenseToy& phi) {
  phi.model_type = "phi3";
  phi.heads = 4;
  phi.write_head_dim = false;
  DenseToy base = phi;
  base.model_type = "qwen2";
  return write_dense_hf(dir, phi, fuse_phi3(dense_weights(base, seed)));
}

QuantType planned(const std::vector<TensorPlan>& plan, const std::string& name) {
  for (const auto& p : plan)
    if (p.name == name) return p.type;
  FAIL("no tensor " << name << " in the plan");
  return QuantType::F32;
}

const std::vector<int32_t> kPrompt = {1, 17, 333, 8, 1290, 4, 61, 2000, 45, 7, 99};

}  // namespace

TEST_CASE("qwen3: converted names, shapes and keys, the engine's per-head q/k RMSNorm", "[arch][dense]") {
  test::TempDir tmp;
  DenseToy t;
  t.tied = true;
  const DenseWeights w = dense_weights(t, 11);
  if (!write_dense_hf(tmp / "qwen3", t, w)) return;
  auto src = ModelSource::open(tmp / "qwen3");
  // as llama.cpp's converter writes a Qwen3 with tied embeddings: q/k norms of head_dim values,
  // no output.weight, the common keys plus key/value length, no vocab_size / rope.dimension_count
  const ModelTensor* qn = src->find("blk.1.attn_q_norm.weight");
  REQUIRE(qn);
  CHECK(qn->ne == std::vector<int64_t>{64});
  CHECK(src->find("blk.0.attn_k_norm.weight")->ne == std::vector<int64_t>{64});
  CHECK(src->find("blk.0.attn_q.weight")->ne == std::vector<int64_t>{256, 512});
  CHECK(src->find("blk.0.attn_output.weight")->ne == std::vector<int64_t>{512, 256});
  CHECK(src->find("output.weight") == nullptr);
  const gguf::Metadata meta = src->gguf_metadata();
  CHECK(meta.get_string("general.architecture") == "qwen3");
  CHECK(meta.get_int("qwen3.attention.key_length") == 64);
  CHECK(meta.get_int("qwen3.attention.head_count") == 8);
  CHECK(meta.find("qwen3.vocab_size") == nullptr);
  CHECK(meta.find("qwen3.rope.dimension_count") == nullptr);

  // The engine: the input of attn_output in block 0 recomputed here from the engine's own q/k/v
  // products: per-head RMSNorm with the q/k norm weights, NEOX RoPE (theta 10000), causal softmax.
  auto model = Model::load(*src);
  REQUIRE(model->linears().back().name == "token_embd.weight");  // tied: the embedding is the output
  std::map<std::string, std::vector<float>> out;
  std::vector<float> attn_in;
  Session s(*model);
  s.set_linear_hook([&](const LinearEvent& e) {
    if (e.linear->layer != 0) return;
    if (e.linear->role == "attn_output") attn_in.assign(e.input, e.input + e.n_tokens * e.linear->n_in);
    else if (e.output) out[e.linear->role].assign(e.output, e.output + e.n_tokens * e.linear->n_out);
  });
  const int64_t n = static_cast<int64_t>(kPrompt.size()), hd = 64, nq = 512, nkv = 128;
  s.eval(kPrompt, n - 1);
  REQUIRE(out.count("attn_q"));
  REQUIRE(attn_in.size() == static_cast<size_t>(n * nq));
  const auto gq = w[5].v, gk = w[6].v;  // layer 0's q_norm, k_norm (see dense_weights)
  REQUIRE(w[5].name == "model.layers.0.self_attn.q_norm.weight");
  auto norm_rope = [&](const float* x, const std::vector<float>& g, int64_t pos) {
    std::vector<double> y(static_cast<size_t>(hd));
    double ss = 0;
    for (int64_t i = 0; i < hd; ++i) ss += double(x[i]) * x[i];
    const double r = 1.0 / std::sqrt(ss / hd + 1e-6);
    for (int64_t i = 0; i < hd; ++i) y[i] = x[i] * r * g[i];
    for (int64_t i = 0; i < hd / 2; ++i) {
      const double th = pos * std::pow(10000.0, -2.0 * i / hd), a = y[i], b = y[i + hd / 2];
      y[i] = a * std::cos(th) - b * std::sin(th);
      y[i + hd / 2] = a * std::sin(th) + b * std::cos(th);
    }
    return y;
  };
  double worst = 0;
  for (int64_t t0 = 0; t0 < n; ++t0)
    for (int64_t h = 0; h < 8; ++h) {
      const int64_t kvh = h / 4;
      const auto q = norm_rope(out["attn_q"].data() + t0 * nq + h * hd, gq, t0);
      std::vector<double> sc(static_cast<size_t>(t0 + 1));
      double mx = -1e300;
      for (int64_t j = 0; j <= t0; ++j) {
        const auto k = norm_rope(out["attn_k"].data() + j * nkv + kvh * hd, gk, j);
        double dot = 0;
        for (int64_t i = 0; i < hd; ++i) dot += q[i] * k[i];
        sc[j] = dot / std::sqrt(double(hd));
        mx = std::max(mx, sc[j]);
      }
      double sum = 0;
      for (auto& v : sc) sum += (v = std::exp(v - mx));
      for (int64_t i = 0; i < hd; ++i) {
        double o = 0;
        for (int64_t j = 0; j <= t0; ++j) o += sc[j] / sum * out["attn_v"][j * nkv + kvh * hd + i];
        worst = std::max(worst, std::fabs(o - attn_in[t0 * nq + h * hd + i]));
      }
    }
  CHECK(worst < 2e-4);
}

TEST_CASE("qwen3: AWQ inspects the attention output through the q/k norms, the directory reads back", "[arch][dense][awq]") {
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  test::TempDir tmp;
  DenseToy t;
  const DenseWeights w = dense_weights(t, 23);
  if (!write_dense_hf(tmp / "qwen3", t, w)) return;
  auto src = ModelSource::open(tmp / "qwen3");
  AwqConfig c = test::small_awq_config(*calib, 3);
  AwqQuantizer q(*src, c);
  q.run();
  const AwqResult r = q.write(tmp / "out");
  // The recomputed attention (q/k RMSNorm per head, then NEOX RoPE) agrees with the engine's on
  // every block, so the q/k/v group is costed at the attention output, not on q/k/v alone.
  CHECK(r.attention.starts_with("attention output"));
  CHECK(r.gptq.warnings.empty());
  CHECK(r.gptq.layers.size() == 14);
  for (const auto& g : r.groups) CHECK(g.loss <= g.identity_loss);
  // the streamed run (one block in memory, as the CLI runs a Qwen3) writes the same bytes
  awq_model(tmp / "qwen3", tmp / "stream", c);
  CHECK(test::files_below(tmp / "out") == test::files_below(tmp / "stream"));
  // q/k norms are written unchanged beside the folded norms and the linears
  auto back_src = ModelSource::open(tmp / "out");
  auto back = Model::load(*back_src);
  auto orig = Model::load(*src);
  CHECK(back->tensor_f32("blk.1.attn_q_norm.weight") == orig->tensor_f32("blk.1.attn_q_norm.weight"));
  CHECK(back->tensor_f32("blk.1.attn_k_norm.weight") == orig->tensor_f32("blk.1.attn_k_norm.weight"));
  CHECK(test::max_rel_diff(test::logits_of(q.model(), kPrompt), test::logits_of(*back, kPrompt)) < 1e-4);
}

TEST_CASE("qwen3: the gradient through the q/k norms matches the loss's finite difference", "[arch][dense]") {
  test::TempDir tmp;
  DenseToy t;
  t.layers = 1;
  const DenseWeights w = dense_weights(t, 5);
  if (!write_dense_hf(tmp / "qwen3", t, w)) return;
  auto model = Model::load(tmp / "qwen3");
  int iq = -1;
  for (size_t i = 0; i < model->linears().size(); ++i)
    if (model->linears()[i].name == "blk.0.attn_q.weight") iq = static_cast<int>(i);
  REQUIRE(iq >= 0);
  std::vector<char> wanted(model->linears().size(), 0);
  wanted[static_cast<size_t>(iq)] = 1;
  engine::Backprop bp(*model, 2);
  std::vector<float> g(static_cast<size_t>(512 * 256));
  bp.run(kPrompt, wanted, [&](const engine::WeightGrad& wg) { engine::weight_grad_full(wg, g.data(), 2); });
  double norm = 0;
  for (float v : g) norm += double(v) * v;
  norm = std::sqrt(norm);
  REQUIRE(norm > 0);
  // The loss along the gradient's direction: its slope must be the gradient's norm.
  const std::vector<float> q0 = model->tensor_f32("blk.0.attn_q.weight");
  auto loss_at = [&](double eps) {
    std::vector<float> q = q0;
    for (size_t i = 0; i < q.size(); ++i) q[i] += static_cast<float>(eps * g[i] / norm);
    model->replace_tensor("blk.0.attn_q.weight", std::span<const float>(q));
    engine::Backprop b2(*model, 2);
    return b2.loss(kPrompt);
  };
  const double eps = 0.05;
  const double slope = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
  CHECK(slope == Approx(norm).epsilon(0.03));
}

TEST_CASE("phi3: fused qkv and gate_up as llama.cpp stores them equal the separate projections", "[arch][dense]") {
  test::TempDir tmp;
  DenseToy split;
  split.model_type = "qwen2";  // NEOX RoPE, biases zero: the same function as phi3 with split weights
  split.heads = 4;
  const DenseWeights w = dense_weights(split, 23);
  DenseToy phi = split;
  phi.model_type = "phi3";
  phi.write_head_dim = false;
  if (!write_dense_hf(tmp / "qwen2", split, w) || !write_dense_hf(tmp / "phi3", phi, fuse_phi3(w))) return;
  auto src = ModelSource::open(tmp / "phi3");
  CHECK(src->find("blk.0.attn_qkv.weight")->ne == std::vector<int64_t>{256, 256 + 2 * 128});
  CHECK(src->find("blk.1.ffn_up.weight")->ne == std::vector<int64_t>{256, 1024});
  CHECK(src->find("blk.0.attn_q.weight") == nullptr);
  CHECK(src->find("blk.0.ffn_gate.weight") == nullptr);
  const gguf::Metadata meta = src->gguf_metadata();
  CHECK(meta.get_string("general.architecture") == "phi3");
  CHECK(meta.get_int("phi3.attention.sliding_window") == 2047);
  CHECK(meta.get_int("phi3.rope.scaling.original_context_length") == 512);
  CHECK(meta.get_int("phi3.rope.dimension_count") == 64);
  CHECK(meta.find("phi3.attention.key_length") == nullptr);
  CHECK(meta.find("phi3.vocab_size") == nullptr);

  auto a = Model::load(tmp / "qwen2");
  auto b = Model::load(*src);
  CHECK(test::max_rel_diff(test::logits_of(*b, kPrompt), test::logits_of(*a, kPrompt)) < 1e-5);

  // Gradients: the fused weights' are the separate ones' stacked in the same row order.
  auto grads = [&](const Model& m) {
    std::map<std::string, std::vector<float>> g;
    std::vector<char> wanted(m.linears().size(), 1);
    engine::Backprop bp(m, 2);
    bp.run(kPrompt, wanted, [&](const engine::WeightGrad& wg) {
      auto& v = g[m.linears()[static_cast<size_t>(wg.linear)].name];
      v.resize(static_cast<size_t>(wg.n_in * wg.n_out));
      engine::weight_grad_full(wg, v.data(), 2);
    });
    return g;
  };
  auto ga = grads(*a), gb = grads(*b);
  auto stacked = [&](std::initializer_list<std::string> names) {
    std::vector<float> v;
    for (const auto& n : names) v.insert(v.end(), ga.at(n).begin(), ga.at(n).end());
    return v;
  };
  CHECK(test::max_rel_diff(gb.at("blk.0.attn_qkv.weight"),
                     stacked({"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"})) < 1e-4);
  CHECK(test::max_rel_diff(gb.at("blk.1.ffn_up.weight"), stacked({"blk.1.ffn_gate.weight", "blk.1.ffn_up.weight"})) < 1e-4);
}

TEST_CASE("qwen3 and phi3: per-tensor types at Q4_K_M and Q3_K_M as llama-quantize assigns them", "[arch][dense]") {
  test::TempDir tmp;
  DenseToy q3;
  const DenseWeights w = dense_weights(q3, 3);
  DenseToy phi;
  phi.model_type = "phi3";
  phi.heads = 4;
  phi.write_head_dim = false;
  if (!write_dense_hf(tmp / "qwen3", q3, w)) return;
  DenseToy base = phi;
  base.model_type = "qwen2";
  if (!write_dense_hf(tmp / "phi3", phi, fuse_phi3(dense_weights(base, 4)))) return;
  auto plan = [&](const char* dir, FileType f) {
    QuantizeOptions o;
    o.ftype = f;
    return Quantizer(o).plan(*ModelSource::open(tmp / dir));
  };
  // llama-quantize's rules on these shapes (2 layers): Q4_K_M promotes attn_v / attn_qkv and
  // ffn_down where use_more_bits(i, 2) holds, i.e. in the last layer only (i >= 7 * 2 / 8), and
  // output to Q6_K; the q/k norm vectors stay F32. (arch_parity.sh checks whole plans against
  // llama-quantize on 4-layer synthetics.)
  const auto a = plan("qwen3", FileType::Q4_K_M);
  CHECK(planned(a, "blk.0.attn_q_norm.weight") == QuantType::F32);
  CHECK(planned(a, "blk.1.attn_k_norm.weight") == QuantType::F32);
  CHECK(planned(a, "blk.0.attn_q.weight") == QuantType::Q4_K);
  CHECK(planned(a, "blk.1.attn_v.weight") == QuantType::Q6_K);
  CHECK(planned(a, "blk.0.attn_v.weight") == QuantType::Q4_K);
  CHECK(planned(a, "blk.0.ffn_down.weight") == QuantType::Q4_K);
  CHECK(planned(a, "blk.1.ffn_down.weight") == QuantType::Q6_K);
  CHECK(planned(a, "output.weight") == QuantType::Q6_K);
  const auto b = plan("phi3", FileType::Q4_K_M);
  CHECK(planned(b, "blk.0.attn_qkv.weight") == QuantType::Q4_K);
  CHECK(planned(b, "blk.1.attn_qkv.weight") == QuantType::Q6_K);
  CHECK(planned(b, "blk.1.ffn_up.weight") == QuantType::Q4_K);
  CHECK(planned(b, "blk.1.ffn_down.weight") == QuantType::Q6_K);
  // Q3_K_M: attn_v-like tensors Q5_K for the first two, attn_output Q4_K, ffn_down Q4_K (n/16 = 0)
  const auto c = plan("phi3", FileType::Q3_K_M);
  CHECK(planned(c, "blk.1.attn_qkv.weight") == QuantType::Q5_K);
  CHECK(planned(c, "blk.0.attn_output.weight") == QuantType::Q4_K);
  CHECK(planned(c, "blk.0.ffn_up.weight") == QuantType::Q3_K);
}

TEST_CASE("phi3: GPTQ writes the fused qkv_proj and gate_up_proj, streamed and whole agree, the directory reads back", "[arch][dense][gptq]") {
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  test::TempDir tmp;
  DenseToy phi;
  if (!write_phi3_toy(tmp / "phi3", 31, phi)) return;
  auto src = ModelSource::open(tmp / "phi3");
  GptqConfig c = test::small_gptq_config(*calib, 3);
  c.params.act_order = GptqActOrder::static_groups;
  GptqQuantizer q(*src, c);
  q.run();
  const GptqResult r = q.write(tmp / "whole");
  CHECK(r.layers.size() == 8);  // qkv, o, gate_up, down in each of 2 blocks
  const int64_t hd = phi.d / phi.heads;
  CHECK(q.matrix("model.layers.1.self_attn.qkv_proj").rows == (phi.heads + 2 * phi.kv) * hd);
  CHECK(q.matrix("model.layers.1.mlp.gate_up_proj").rows == 2 * phi.ff);
  // the CLI's run (one block in memory) writes the same bytes
  gptq_model(tmp / "phi3", tmp / "stream", c);
  CHECK(test::files_below(tmp / "whole") == test::files_below(tmp / "stream"));
  // read back: the fused modules dequantize into the engine's fused tensors
  auto back_src = ModelSource::open(tmp / "whole");
  auto back = Model::load(*back_src);
  CHECK(test::max_rel_diff(test::logits_of(q.model(), kPrompt), test::logits_of(*back, kPrompt)) < 1e-4);
}

TEST_CASE("phi3: AWQ searches and clips the fused projections' parts and writes them fused", "[arch][dense][awq]") {
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  test::TempDir tmp;
  DenseToy phi;
  phi.model_type = "phi3";
  phi.heads = 4;
  phi.kv = 4;  // v's rows are o's columns: the v -> o group runs, its scales divide qkv_proj's v rows
  phi.write_head_dim = false;
  DenseToy base = phi;
  base.model_type = "qwen2";
  if (!write_dense_hf(tmp / "phi3", phi, fuse_phi3(dense_weights(base, 37)))) return;
  auto src = ModelSource::open(tmp / "phi3");
  AwqConfig c = test::small_awq_config(*calib, 3);
  AwqQuantizer q(*src, c);
  q.run();
  const AwqResult r = q.write(tmp / "whole");
  CHECK(r.attention.starts_with("attention output"));
  CHECK(r.gptq.warnings.empty());
  CHECK(r.groups.size() == 8);  // 4 groups a block, v -> o included
  CHECK(r.gptq.layers.size() == 8);
  const int64_t hd = phi.d / phi.heads;
  CHECK(q.matrix("model.layers.0.self_attn.qkv_proj").rows == 3 * phi.heads * hd);
  CHECK(q.matrix("model.layers.0.mlp.gate_up_proj").rows == 2 * phi.ff);
  awq_model(tmp / "phi3", tmp / "stream", c);
  CHECK(test::files_below(tmp / "whole") == test::files_below(tmp / "stream"));
  auto back_src = ModelSource::open(tmp / "whole");
  auto back = Model::load(*back_src);
  CHECK(back->tensor_f32("blk.1.attn_qkv.weight") == q.model().tensor_f32("blk.1.attn_qkv.weight"));
  CHECK(test::max_rel_diff(test::logits_of(q.model(), kPrompt), test::logits_of(*back, kPrompt)) < 1e-4);
}

TEST_CASE("phi3: SmoothQuant W8A8 smooths the fused projections, refuses row mappings, partial rotary is refused", "[arch][dense]") {
  test::TempDir tmp;
  DenseToy phi;
  phi.model_type = "phi3";
  phi.heads = 4;
  phi.write_head_dim = false;
  phi.layers = 1;
  DenseToy base = phi;
  base.model_type = "qwen2";
  if (!write_dense_hf(tmp / "phi3", phi, fuse_phi3(dense_weights(base, 9)))) return;
  const std::string lq = test::cli_path();
  const std::string sq = lq + " quantize " + (tmp / "phi3").string() + " smoothquant --smoothquant --calibration-samples 2 --ctx 64";
  // the default mappings (the two norms) fold into qkv_proj's and gate_up_proj's columns; with
  // static activations one input_scale per fused module, which the reader takes back
  for (const std::string extra : {"", " --static-activations"}) {
    INFO(extra);
    const fs::path out = tmp / ("w8" + std::to_string(extra.size()));
    const auto r = test::run(sq + extra + " -o " + out.string());
    REQUIRE(r.status == 0);
    auto back = ModelSource::open(out);
    CHECK(back->find("blk.0.attn_qkv.weight"));
    CHECK(back->find("blk.0.ffn_up.weight"));
    CHECK(std::isfinite(test::logits_of(*Model::load(*back), kPrompt)[5]));
  }
  // v -> o and up -> down divide rows that Phi-3 fuses with others: refused, nothing written
  const auto r = test::run(sq + " --smooth-mappings all -o " + (tmp / "out").string());
  CHECK(r.status == 2);
  CHECK(r.err.find("fuses") != std::string::npos);
  CHECK(!fs::exists(tmp / "out"));
  // partial rotary (Phi-4-mini) and LongRoPE factor lists of the wrong length: refused by name, exit 6
  const auto cfg0 = nlohmann::json::parse(std::ifstream(tmp / "phi3" / "config.json"));
  auto refused = [&](const nlohmann::json& cfg, const std::string& says) {
    std::ofstream(tmp / "phi3" / "config.json") << cfg.dump();
    const auto r2 = test::run(lq + " quantize " + (tmp / "phi3").string() + " gguf -q F32 -o " + (tmp / "x.gguf").string());
    CHECK(r2.status == 6);
    CHECK(r2.err.find(says) != std::string::npos);
    CHECK(!fs::exists(tmp / "x.gguf"));
  };
  auto partial = cfg0;
  partial["partial_rotary_factor"] = 0.75;
  refused(partial, "partial_rotary_factor");
  auto longrope = cfg0;
  longrope["rope_scaling"] = {{"type", "longrope"}, {"long_factor", std::vector<double>(31, 1.0)},
                              {"short_factor", std::vector<double>(32, 1.0)}};
  refused(longrope, "long_factor");
}

TEST_CASE("phi3 LongRoPE: factor tensors, attention factor, short and long frequencies", "[arch][dense]") {
  test::TempDir tmp;
  DenseToy phi;
  phi.model_type = "phi3";
  phi.heads = 4;  // head_dim 64: 32 factors
  phi.write_head_dim = false;
  phi.layers = 1;
  DenseToy base = phi;
  base.model_type = "qwen2";
  const DenseWeights w = fuse_phi3(dense_weights(base, 31));
  if (!write_dense_hf(tmp / "plain", phi, w)) return;
  // Unit short factors and no extension (context = original): the plain model's function.
  auto cfg = nlohmann::json::parse(std::ifstream(tmp / "plain" / "config.json"));
  std::vector<double> ones(32, 1.0), grow;
  for (int i = 0; i < 32; ++i) grow.push_back(1.0 + 0.25 * i);
  cfg["rope_scaling"] = {{"type", "longrope"}, {"long_factor", grow}, {"short_factor", ones}};
  if (!write_dense_hf(tmp / "unit", phi, w)) return;
  std::ofstream(tmp / "unit" / "config.json") << cfg.dump();
  // The 128k form: context 8 x the original; short factors that matter.
  cfg["max_position_embeddings"] = 4096;
  std::vector<double> shrt;
  for (int i = 0; i < 32; ++i) shrt.push_back(1.0 + 0.5 * i);
  cfg["rope_scaling"]["short_factor"] = shrt;
  if (!write_dense_hf(tmp / "long", phi, w)) return;
  std::ofstream(tmp / "long" / "config.json") << cfg.dump();

  auto src = ModelSource::open(tmp / "long");
  REQUIRE(src->find("rope_factors_long.weight"));
  CHECK(src->find("rope_factors_short.weight")->ne == std::vector<int64_t>{32});
  std::vector<float> lf(32);
  src->read_rows_f32(*src->find("rope_factors_long.weight"), 0, 1, lf.data());
  CHECK(lf[3] == 1.75f);
  const auto meta = src->gguf_metadata();
  // the converter's attention factor: sqrt(1 + ln(4096 / 512) / ln(512))
  CHECK(meta.get_float("phi3.rope.scaling.attn_factor").value_or(0) ==
        Approx(std::sqrt(1 + std::log(8.0) / std::log(512.0))).epsilon(1e-6));
  CHECK(meta.get_int("phi3.rope.scaling.original_context_length") == 512);

  auto plain = Model::load(tmp / "plain");
  auto unit = Model::load(tmp / "unit");
  CHECK(test::max_rel_diff(test::logits_of(*unit, kPrompt), test::logits_of(*plain, kPrompt)) < 1e-6);
  auto lm = Model::load(*src);
  // the short factors up to the original context, the long ones beyond (llama.cpp's choice by the
  // context it is given)
  auto with_ctx = [&](int64_t n_ctx) {
    SessionOptions so;
    so.n_ctx = n_ctx;
    return test::logits_of(*lm, kPrompt, 0, so);
  };
  const auto short_logits = with_ctx(512), long_logits = with_ctx(1024);
  CHECK(test::max_rel_diff(short_logits, test::logits_of(*plain, kPrompt)) > 1e-3);
  CHECK(test::max_rel_diff(long_logits, short_logits) > 1e-3);
  CHECK(test::max_rel_diff(with_ctx(4096), long_logits) < 1e-6);

  // GPTQ and AWQ stream one block at a time: the block model keeps the factor tensors, so the run
  // matches the whole-model one (AWQ's recomputed attention uses the short factors and the
  // attention factor, as the engine at this context).
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!calib) return;
  GptqConfig g = test::small_gptq_config(*calib, 2);
  GptqQuantizer gq(*src, g);
  gq.run();
  gq.write(tmp / "gptq-whole");
  gptq_model(tmp / "long", tmp / "gptq-stream", g);
  CHECK(test::files_below(tmp / "gptq-whole") == test::files_below(tmp / "gptq-stream"));
  AwqConfig a;
  a.calibration_samples = 2;
  a.ctx = 64;
  a.calibration_data = *calib;
  const AwqResult ar = awq_model(tmp / "long", tmp / "awq", a);
  CHECK(ar.attention.starts_with("attention output"));
  CHECK(ar.gptq.warnings.empty());
}

TEST_CASE("phi3: convert X.gguf writes the fused projections, the window and LongRoPE's factors, and reads back",
          "[arch][dense]") {
  for (const bool longrope : {false, true}) {
    INFO("longrope " << longrope);
    test::TempDir tmp;
    DenseToy phi;
    if (!write_phi3_toy(tmp / "phi3", 37, phi)) return;
    std::vector<double> short_f, long_f;
    if (longrope) {  // LongRoPE over an original context of 512 (32 rotated pairs)
      auto cfg = nlohmann::json::parse(read_file(tmp / "phi3" / "config.json"));
      for (int i = 0; i < 32; ++i) short_f.push_back(1.0 + 0.01 * i), long_f.push_back(1.0 + 0.25 * i);
      cfg["max_position_embeddings"] = 8192;
      cfg["rope_scaling"] = {{"type", "longrope"}, {"short_factor", short_f}, {"long_factor", long_f}};
      std::ofstream(tmp / "phi3" / "config.json") << cfg.dump(2);
    }
    const fs::path gguf = tmp / "phi3.gguf";
    REQUIRE(test::run(test::cli_path() + " quantize " + (tmp / "phi3").string() + " gguf -q Q8_0 -o " + gguf.string())
                .status == 0);
    const GgufConvertResult r = convert_gguf_to_gptq(gguf, tmp / "ct", GptqLayout::compressed_tensors);
    CHECK(r.requantized.empty());
    CHECK(r.exact.size() == 8);  // qkv, o, gate_up, down in each of 2 blocks
    const auto cfg = nlohmann::json::parse(read_file(tmp / "ct" / "config.json"));
    CHECK(cfg["model_type"] == "phi3");
    CHECK(cfg["original_max_position_embeddings"] == 512);
    CHECK(cfg["sliding_window"] == 2047);
    CHECK_FALSE(cfg.contains("head_dim"));
    if (longrope) {
      REQUIRE(cfg["rope_scaling"].is_object());
      CHECK(cfg["rope_scaling"]["type"] == "longrope");
      for (size_t i = 0; i < 32; ++i) {
        CHECK(cfg["rope_scaling"]["short_factor"][i].get<double>() == static_cast<float>(short_f[i]));
        CHECK(cfg["rope_scaling"]["long_factor"][i].get<double>() == static_cast<float>(long_f[i]));
      }
    } else {
      CHECK(cfg["rope_scaling"].is_null());
    }
    // The fused modules read back to the GGUF's values; the directory reads as the same model.
    auto g = ModelSource::open(gguf), d = ModelSource::open(tmp / "ct");
    CHECK(d->config().rope_scaling.has_value() == longrope);
    for (const char* name : {"blk.1.attn_qkv.weight", "blk.1.ffn_up.weight"}) {
      INFO(name);
      const ModelTensor& a = g->at(name);
      REQUIRE(d->at(name).ne == a.ne);
      std::vector<float> x(static_cast<size_t>(a.n_elements())), y(x.size());
      g->read_rows_f32(a, 0, a.n_rows(), x.data());
      d->read_rows_f32(d->at(name), 0, a.n_rows(), y.data());
      CHECK(x == y);
    }
  }
}
