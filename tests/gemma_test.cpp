// Gemma 2 and Gemma 3 text models: a tiny random checkpoint in Hugging Face layout converted to GGUF
// (names, shapes, the (1 + w) norms stored as w + 1, the converter's keys), the engine's logits
// against a plain implementation of transformers' Gemma forward pass written here (embedding
// scaling, pre/post norms, q/k norms, local/global RoPE, soft-capping, sliding windows, GELU-tanh),
// the same logits from the GGUF, llama-quantize's types for the tied output, and the backward pass
// (gradient and Fisher importance) through all of it against the loss's finite differences.
#include <catch2/catch.hpp>

#include <lq/awq.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/gguf.hpp>
#include <lq/gptq.hpp>
#include <lq/gptq_gguf.hpp>
#include <lq/model.hpp>
#include <lq/quantizer.hpp>
#include <lq/smoothquant.hpp>

#include "engine/backward.hpp"
#include "formats/safetensors.hpp"
#include "formats/safetensors_writer.hpp"
#include "support/support.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <random>

using namespace lq;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct GemmaToy {
  int version = 3;  // 2 or 3
  int64_t d = 256, heads = 4, kv = 2, hd = 64, ff = 512, vocab = 128, layers = 6, window = 4;
  float qpa = 64;  // query_pre_attn_scalar
  bool wrapped = false;  // gemma3 multimodal layout (text_config, language_model. names, a vision tower)
};

using GemmaWeights = std::map<std::string, std::vector<float>>;  // HF name -> values, row-major

// Writes the checkpoint (F32 safetensors, config.json, the tiny model's SentencePiece tokenizer)
// and returns its weights by HF name.
GemmaWeights write_gemma_toy(const fs::path& dir, const GemmaToy& s, const fs::path& tokenizer_model) {
  fs::create_directories(dir);
  std::mt19937 rng(1234 + s.version);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  GemmaWeights w;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float sd) {
    int64_t n = 1;
    for (auto v : shape) n *= v;
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = sd * nd(rng);
    w[name] = std::move(x);
    shapes.emplace_back(name, std::move(shape));
  };
  add("model.embed_tokens.weight", {s.vocab, s.d}, 0.5f);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* n : {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                          "post_feedforward_layernorm"})
      add(p + n + ".weight", {s.d}, 0.3f);
    add(p + "self_attn.q_proj.weight", {s.heads * s.hd, s.d}, 0.08f);
    add(p + "self_attn.k_proj.weight", {s.kv * s.hd, s.d}, 0.08f);
    add(p + "self_attn.v_proj.weight", {s.kv * s.hd, s.d}, 0.08f);
    add(p + "self_attn.o_proj.weight", {s.d, s.heads * s.hd}, 0.08f);
    if (s.version == 3) {
      add(p + "self_attn.q_norm.weight", {s.hd}, 0.3f);
      add(p + "self_attn.k_norm.weight", {s.hd}, 0.3f);
    }
    add(p + "mlp.gate_proj.weight", {s.ff, s.d}, 0.08f);
    add(p + "mlp.up_proj.weight", {s.ff, s.d}, 0.08f);
    add(p + "mlp.down_proj.weight", {s.d, s.ff}, 0.05f);
  }
  add("model.norm.weight", {s.d}, 0.3f);

  std::vector<StTensorSpec> specs;
  auto stored = [&](const std::string& n) { return s.wrapped ? "language_model." + n : n; };
  for (const auto& [n, shape] : shapes) specs.push_back({stored(n), StDtype::F32, shape});
  if (s.wrapped) specs.push_back({"vision_tower.vision_model.post_layernorm.weight", StDtype::F32, {8}});
  SafetensorsWriter out(dir / "model.safetensors", specs);
  for (const auto& [n, shape] : shapes) out.write(stored(n), w[n].data(), w[n].size() * sizeof(float));
  if (s.wrapped) {
    const std::vector<float> v(8, 1.0f);
    out.write("vision_tower.vision_model.post_layernorm.weight", v.data(), v.size() * sizeof(float));
  }
  out.commit();

  json t = {{"hidden_size", s.d},           {"intermediate_size", s.ff}, {"num_hidden_layers", s.layers},
            {"num_attention_heads", s.heads}, {"num_key_value_heads", s.kv}, {"head_dim", s.hd},
            {"vocab_size", s.vocab},         {"max_position_embeddings", 512}, {"rms_norm_eps", 1e-6},
            {"query_pre_attn_scalar", s.qpa}, {"sliding_window", s.window}, {"bos_token_id", 1},
            {"eos_token_id", 2},             {"hidden_activation", "gelu_pytorch_tanh"}};
  if (s.version == 2) {
    t["model_type"] = "gemma2";
    t["architectures"] = {"Gemma2ForCausalLM"};
    t["rope_theta"] = 10000.0;
    t["attn_logit_softcapping"] = 50.0;
    t["final_logit_softcapping"] = 30.0;
  } else {
    t["model_type"] = "gemma3_text";
    t["architectures"] = {"Gemma3ForCausalLM"};
    t["rope_theta"] = 1000000.0;
    t["rope_local_base_freq"] = 10000.0;
    t["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
    t["attn_logit_softcapping"] = nullptr;
    t["final_logit_softcapping"] = nullptr;
  }
  json cfg = t;
  if (s.wrapped)
    cfg = {{"model_type", "gemma3"}, {"architectures", {"Gemma3ForConditionalGeneration"}}, {"text_config", t},
           {"vision_config", {{"hidden_size", 8}}}};
  std::ofstream(dir / "config.json") << cfg.dump(2);
  fs::copy_file(tokenizer_model, dir / "tokenizer.model");
  std::ofstream(dir / "tokenizer_config.json") << json({{"add_bos_token", true}, {"add_eos_token", false}}).dump();
  return w;
}

// transformers' Gemma2/Gemma3 forward pass in plain loops (double accumulators): every position's logits.
std::vector<float> gemma_reference(const GemmaToy& s, GemmaWeights& w, const std::vector<int32_t>& toks) {
  const int64_t n = static_cast<int64_t>(toks.size()), d = s.d, hd = s.hd, half = hd / 2;
  auto rms = [&](const float* x, int64_t len, const std::vector<float>& g, float* y) {
    double ss = 0;
    for (int64_t i = 0; i < len; ++i) ss += static_cast<double>(x[i]) * x[i];
    const double r = 1.0 / std::sqrt(ss / len + 1e-6);
    for (int64_t i = 0; i < len; ++i) y[i] = static_cast<float>(x[i] * r * (1.0 + g[static_cast<size_t>(i)]));
  };
  auto matvec = [](const std::vector<float>& W, int64_t out, int64_t in, const float* x, float* y) {
    for (int64_t o = 0; o < out; ++o) {
      double acc = 0;
      for (int64_t i = 0; i < in; ++i) acc += static_cast<double>(W[static_cast<size_t>(o * in + i)]) * x[i];
      y[o] = static_cast<float>(acc);
    }
  };
  std::vector<float> x(static_cast<size_t>(n * d));
  const auto& E = w["model.embed_tokens.weight"];
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < d; ++i) x[t * d + i] = E[toks[t] * d + i] * std::sqrt(static_cast<float>(d));
  const int period = s.version == 2 ? 2 : 6;
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const bool local = l % period < period - 1;
    const double base = s.version == 2 ? 10000.0 : local ? 10000.0 : 1000000.0;
    const double scale = s.version == 3 && !local ? 8.0 : 1.0;
    std::vector<float> h(d), q(n * s.heads * hd), k(n * s.kv * hd), v(n * s.kv * hd);
    for (int64_t t = 0; t < n; ++t) {
      rms(&x[t * d], d, w[p + "input_layernorm.weight"], h.data());
      matvec(w[p + "self_attn.q_proj.weight"], s.heads * hd, d, h.data(), &q[t * s.heads * hd]);
      matvec(w[p + "self_attn.k_proj.weight"], s.kv * hd, d, h.data(), &k[t * s.kv * hd]);
      matvec(w[p + "self_attn.v_proj.weight"], s.kv * hd, d, h.data(), &v[t * s.kv * hd]);
      auto rope = [&](float* vec) {  // rotate-half pairs (i, i + hd/2)
        for (int64_t i = 0; i < half; ++i) {
          const double th = t * std::pow(base, -2.0 * i / hd) / scale;
          const double a = vec[i], b = vec[i + half];
          vec[i] = static_cast<float>(a * std::cos(th) - b * std::sin(th));
          vec[i + half] = static_cast<float>(a * std::sin(th) + b * std::cos(th));
        }
      };
      for (int64_t hh = 0; hh < s.heads; ++hh) {
        float* qv = &q[(t * s.heads + hh) * hd];
        if (s.version == 3) rms(qv, hd, w[p + "self_attn.q_norm.weight"], qv);
        rope(qv);
      }
      for (int64_t hh = 0; hh < s.kv; ++hh) {
        float* kv = &k[(t * s.kv + hh) * hd];
        if (s.version == 3) rms(kv, hd, w[p + "self_attn.k_norm.weight"], kv);
        rope(kv);
      }
    }
    std::vector<float> attn(s.heads * hd), o(d), g(s.ff), u(s.ff), a(s.ff), dn(d);
    std::vector<float> xn = x;
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t hh = 0; hh < s.heads; ++hh) {
        const int64_t g_ = hh / (s.heads / s.kv);
        std::vector<double> sc(static_cast<size_t>(t + 1));
        double mx = -1e300;
        for (int64_t j = 0; j <= t; ++j) {
          double dot = 0;
          for (int64_t i = 0; i < hd; ++i)
            dot += static_cast<double>(q[(t * s.heads + hh) * hd + i]) * k[(j * s.kv + g_) * hd + i];
          dot /= std::sqrt(static_cast<double>(s.qpa));
          if (s.version == 2) dot = 50.0 * std::tanh(dot / 50.0);
          if (local && t - j >= s.window) dot = -1e300;
          sc[j] = dot;
          mx = std::max(mx, dot);
        }
        double sum = 0;
        for (auto& e : sc) sum += (e = e <= -1e299 ? 0.0 : std::exp(e - mx));
        for (int64_t i = 0; i < hd; ++i) {
          double acc = 0;
          for (int64_t j = 0; j <= t; ++j) acc += sc[j] / sum * v[(j * s.kv + g_) * hd + i];
          attn[hh * hd + i] = static_cast<float>(acc);
        }
      }
      matvec(w[p + "self_attn.o_proj.weight"], d, s.heads * hd, attn.data(), o.data());
      rms(o.data(), d, w[p + "post_attention_layernorm.weight"], o.data());
      for (int64_t i = 0; i < d; ++i) xn[t * d + i] = x[t * d + i] + o[i];
      rms(&xn[t * d], d, w[p + "pre_feedforward_layernorm.weight"], h.data());
      matvec(w[p + "mlp.gate_proj.weight"], s.ff, d, h.data(), g.data());
      matvec(w[p + "mlp.up_proj.weight"], s.ff, d, h.data(), u.data());
      for (int64_t i = 0; i < s.ff; ++i) {
        const double z = g[i];
        a[i] = static_cast<float>(0.5 * z * (1 + std::tanh(std::sqrt(2 / M_PI) * (z + 0.044715 * z * z * z))) * u[i]);
      }
      matvec(w[p + "mlp.down_proj.weight"], d, s.ff, a.data(), dn.data());
      rms(dn.data(), d, w[p + "post_feedforward_layernorm.weight"], dn.data());
      for (int64_t i = 0; i < d; ++i) xn[t * d + i] += dn[i];
    }
    x = xn;
  }
  std::vector<float> logits(static_cast<size_t>(n * s.vocab)), h(d);
  for (int64_t t = 0; t < n; ++t) {
    rms(&x[t * d], d, w["model.norm.weight"], h.data());
    matvec(E, s.vocab, d, h.data(), &logits[t * s.vocab]);
    if (s.version == 2)
      for (int64_t i = 0; i < s.vocab; ++i) logits[t * s.vocab + i] = 30.0f * std::tanh(logits[t * s.vocab + i] / 30.0f);
  }
  return logits;
}

std::vector<float> engine_logits(const ModelSource& src, const std::vector<int32_t>& toks) {
  return test::logits_of(*Model::load(src), toks);
}

/// The toy of Gemma `version` (2: with two layers) written to `dir`: its spec in `s`, its weights;
/// nullopt (the test is skipped) without the shared tokenizer.
std::optional<GemmaWeights> write_gemma_version_toy(const fs::path& dir, int version, GemmaToy& s) {
  auto tok = test::shared_file("models/tiny-llama/tokenizer.model");
  if (!tok) return std::nullopt;
  s = GemmaToy{};
  s.version = version;
  if (version == 2) s.layers = 2;
  return write_gemma_toy(dir, s, *tok);
}

/// A two-layer Gemma 2 toy written in `tmp` and opened, or null (skipped) without the tokenizer.
std::unique_ptr<ModelSource> gemma2_toy(const test::TempDir& tmp) {
  GemmaToy s;
  if (!write_gemma_version_toy(tmp / "m", 2, s)) return nullptr;
  return ModelSource::open(tmp / "m");
}

const std::vector<int32_t> kToks = {1, 17, 45, 3, 99, 120, 7, 64, 33, 88, 5, 101, 42, 9};

// A Gemma `version` toy to calibrate on the shared text: the tokenizer's vocabulary, a window
// shorter than the chunks (the local layers' mask matters), 2 layers (Gemma 2) or 6 (Gemma 3: five
// local, one global).
GemmaToy calibration_toy(int version) {
  GemmaToy s;
  s.version = version;
  s.layers = version == 2 ? 2 : 6;
  s.vocab = 2048;
  s.window = 16;
  return s;
}

}  // namespace

TEST_CASE("gemma3: conversion as llama.cpp's converter writes it", "[arch][gemma]") {
  auto tok = test::shared_file("models/tiny-llama/tokenizer.model");
  if (!tok) return;
  test::TempDir tmp;
  GemmaToy s;
  auto w = write_gemma_toy(tmp / "g3", s, *tok);
  auto src = ModelSource::open(tmp / "g3");
  const ModelConfig& c = src->config();
  CHECK(c.architecture == "gemma3");
  CHECK(c.tie_embeddings);
  CHECK(src->find("output.weight") == nullptr);
  // HF's names -> GGUF's: post_attention_layernorm is the norm after attention here
  CHECK(src->find("blk.0.post_attention_norm.weight")->source_name == "model.layers.0.post_attention_layernorm.weight");
  CHECK(src->find("blk.0.ffn_norm.weight")->source_name == "model.layers.0.pre_feedforward_layernorm.weight");
  CHECK(src->find("blk.0.post_ffw_norm.weight")->source_name == "model.layers.0.post_feedforward_layernorm.weight");
  CHECK(src->find("blk.5.attn_q_norm.weight")->ne == std::vector<int64_t>{s.hd});
  CHECK(src->find("blk.5.attn_k_norm.weight")->ne == std::vector<int64_t>{s.hd});
  CHECK(src->tensors().size() == 2 + 13 * 6);
  // every norm is stored as float(w) + 1; other tensors as they are
  for (const auto& t : src->tensors()) {
    INFO(t.name);
    std::vector<float> v(static_cast<size_t>(t.n_elements()));
    src->read_rows_f32(t, 0, t.n_rows(), v.data());
    const auto& hf = w.at(t.source_name);
    const bool norm = t.name.find("norm.weight") != std::string::npos;
    for (size_t i = 0; i < v.size(); i += 7) REQUIRE(v[i] == (norm ? hf[i] + 1.0f : hf[i]));
  }
  const gguf::Metadata m = src->gguf_metadata();
  CHECK(m.get_float("gemma3.rope.freq_base") == 1000000.0);
  CHECK(m.get_float("gemma3.rope.freq_base_swa") == 10000.0);
  CHECK(m.get_string("gemma3.rope.scaling.type") == "linear");
  CHECK(m.get_float("gemma3.rope.scaling.factor") == 8.0);
  CHECK(m.get_int("gemma3.attention.sliding_window") == s.window);
  CHECK(m.get_int("gemma3.attention.key_length") == s.hd);
  CHECK(m.find("gemma3.rope.dimension_count") == nullptr);  // not written by Gemma3Model
  CHECK(m.find("gemma3.vocab_size") == nullptr);
  CHECK(m.find("gemma3.final_logit_softcapping") == nullptr);  // null in the config
  CHECK(m.find("tokenizer.ggml.add_space_prefix")->as_bool() == false);
  CHECK(m.get_string("tokenizer.ggml.model") == "llama");
}

TEST_CASE("gemma3: the multimodal layout's text model converts to the same tensors", "[arch][gemma]") {
  auto tok = test::shared_file("models/tiny-llama/tokenizer.model");
  if (!tok) return;
  test::TempDir tmp;
  GemmaToy s;
  write_gemma_toy(tmp / "plain", s, *tok);
  s.wrapped = true;
  write_gemma_toy(tmp / "wrapped", s, *tok);
  auto a = ModelSource::open(tmp / "plain");
  auto b = ModelSource::open(tmp / "wrapped");
  CHECK(b->config().model_type == "gemma3");
  CHECK(b->config().architecture == "gemma3");
  REQUIRE(a->tensors().size() == b->tensors().size());
  for (size_t i = 0; i < a->tensors().size(); ++i) {
    CHECK(a->tensors()[i].name == b->tensors()[i].name);
    CHECK(a->tensors()[i].ne == b->tensors()[i].ne);
  }
  CHECK(b->find("blk.0.attn_q.weight")->source_name == "language_model.model.layers.0.self_attn.q_proj.weight");
  CHECK(engine_logits(*a, kToks) == engine_logits(*b, kToks));
}

TEST_CASE("gemma: engine logits equal transformers' forward pass, from the checkpoint and its GGUF", "[arch][gemma]") {
  for (int version : {2, 3}) {
    INFO("gemma" << version);
    test::TempDir tmp;
    GemmaToy s;
    auto w = write_gemma_version_toy(tmp / "m", version, s);
    if (!w) return;
    auto src = ModelSource::open(tmp / "m");
    const auto ref = gemma_reference(s, *w, kToks);
    const auto ours = engine_logits(*src, kToks);
    CHECK(test::max_rel_diff(ours, ref) < 2e-5);
    // the window matters: the same model with no sliding window gives other logits
    GemmaToy wide = s;
    wide.window = 1000;
    const auto ref_wide = gemma_reference(wide, *w, kToks);
    CHECK(test::max_rel_diff(ref_wide, ref) > 1e-3);
    // GGUF F32 of it: same logits (query_pre_attn_scalar = head_dim, as llama.cpp assumes)
    QuantizeOptions o;
    o.ftype = FileType::F32;
    Quantizer(o).quantize(*src, tmp / "m.gguf");
    auto g = ModelSource::open(tmp / "m.gguf");
    CHECK(g->config().swa_period == (version == 2 ? 2 : 6));
    CHECK(g->config().sliding_window == s.window);
    if (version == 2) {
      CHECK(g->config().attn_softcap == 50.0f);
      CHECK(g->config().final_softcap == 30.0f);
    }
    CHECK(test::max_rel_diff(engine_logits(*g, kToks), ours) < 1e-6);
  }
}

TEST_CASE("gemma: the tied output's type is llama-quantize's (token_embd as output)", "[arch][gemma]") {
  test::TempDir tmp;
  auto src = gemma2_toy(tmp);
  if (!src) return;
  for (auto [ft, embd] : {std::pair{FileType::Q4_K_M, QuantType::Q6_K}, std::pair{FileType::Q2_K, QuantType::Q6_K},
                          std::pair{FileType::Q8_0, QuantType::Q8_0}}) {
    QuantizeOptions o;
    o.ftype = ft;
    for (const auto& p : Quantizer(o).plan(*src)) {
      INFO(p.name);
      if (p.name == "token_embd.weight") CHECK(p.type == embd);
      if (p.ne.size() == 1) CHECK(p.type == QuantType::F32);  // every norm, q/k norms too
    }
  }
}

TEST_CASE("gemma: AWQ inspects the soft-capped, windowed attention and folds into the (1 + w) norms, streamed as whole", "[arch][gemma][awq]") {
  auto tok = test::shared_file("models/tiny-llama/tokenizer.model");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!tok || !calib) return;
  for (int version : {2, 3}) {
    INFO("gemma" << version);
    test::TempDir tmp;
    const GemmaToy s = calibration_toy(version);
    write_gemma_toy(tmp / "m", s, *tok);
    auto src = ModelSource::open(tmp / "m");
    AwqConfig c = test::small_awq_config(*calib, 3);
    AwqQuantizer q(*src, c);
    q.run();
    const AwqResult r = q.write(tmp / "out");
    // The recomputed attention (scale, soft-cap, windows, local RoPE base, q/k norms) agrees with
    // the engine's on every block, so the q/k/v group is costed at the attention output.
    CHECK(r.attention.starts_with("attention output"));
    CHECK(r.gptq.warnings.empty());
    CHECK(r.gptq.layers.size() == static_cast<size_t>(7 * s.layers));
    for (const auto& g : r.groups) CHECK(g.loss <= g.identity_loss);
    // The folded norms are written as w (the checkpoint's form): read back (as 1 + w) they are
    // the quantizer's, which differ from the original, and the logits agree.
    auto back_src = ModelSource::open(tmp / "out");
    auto back = Model::load(*back_src);
    auto orig = Model::load(*src);
    for (const char* n : {"blk.0.attn_norm.weight", "blk.1.ffn_norm.weight"}) {
      INFO(n);
      CHECK(back->tensor_f32(n) == q.model().tensor_f32(n));
      CHECK(orig->tensor_f32(n) != q.model().tensor_f32(n));
    }
    CHECK(back->tensor_f32("blk.1.post_attention_norm.weight") == orig->tensor_f32("blk.1.post_attention_norm.weight"));
    const auto a = test::logits_of(q.model(), kToks), b = test::logits_of(*back, kToks);
    CHECK(test::max_rel_diff(a, b) < 1e-4);
    // The streamed run (one block in memory: the block keeps its layer's window kind, the hidden
    // states enter scaled) writes the same bytes as the whole model's.
    awq_model(tmp / "m", tmp / "stream", c);
    CHECK(test::files_below(tmp / "out") == test::files_below(tmp / "stream"));
    GptqConfig g = test::small_gptq_config(*calib, 3);
    g.params.act_order = GptqActOrder::static_groups;
    GptqQuantizer gq(*src, g);
    gq.run();
    gq.write(tmp / "gptq-whole");
    gptq_model(tmp / "m", tmp / "gptq-stream", g);
    CHECK(test::files_below(tmp / "gptq-whole") == test::files_below(tmp / "gptq-stream"));
    // GPTQ for GGUF types streams its calibration the same way: the same tensor bytes
    QuantizeOptions qo;
    qo.ftype = FileType::Q4_K_M;
    GptqGgufConfig gg = test::small_gptq_gguf_config(*calib);
    const GptqGgufResult memory = gptq_gguf_tensors(*src, qo, gg);
    gg.work_dir = tmp / "work";
    fs::create_directories(gg.work_dir);
    const GptqGgufResult streamed = gptq_gguf_tensors(*src, qo, gg);
    CHECK_FALSE(memory.tensor_bytes.empty());
    REQUIRE(streamed.tensor_bytes.size() == memory.tensor_bytes.size());
    for (const auto& [name, bytes] : memory.tensor_bytes) {
      INFO(name);
      CHECK(streamed.tensor_bytes.at(name) == bytes);
    }
  }
}

TEST_CASE("gemma3: GPTQ and AWQ on the multimodal layout write its text model's linears under their own names", "[arch][gemma][gptq]") {
  auto tok = test::shared_file("models/tiny-llama/tokenizer.model");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!tok || !calib) return;
  test::TempDir tmp;
  GemmaToy s;
  s.vocab = 2048;
  s.window = 16;
  s.wrapped = true;
  write_gemma_toy(tmp / "m", s, *tok);
  auto src = ModelSource::open(tmp / "m");
  GptqConfig g = test::small_gptq_config(*calib, 2);
  GptqQuantizer q(*src, g);
  q.run();
  q.write(tmp / "whole");
  gptq_model(tmp / "m", tmp / "stream", g);
  CHECK(test::files_below(tmp / "whole") == test::files_below(tmp / "stream"));
  const auto cfg = json::parse(std::ifstream(tmp / "whole" / "config.json"));
  const auto& ignore = cfg["quantization_config"]["ignore"];
  CHECK(std::find(ignore.begin(), ignore.end(), "re:.*vision_tower.*") != ignore.end());
  auto back_src = ModelSource::open(tmp / "whole");
  // the packed linears keep the checkpoint's language_model. names (lq reads them back through them)
  bool wrapped_name = false;
  const SafetensorsFile out(tmp / "whole" / "model.safetensors");
  for (const auto& t : out.tensors()) wrapped_name |= t.name == "language_model.model.layers.0.self_attn.q_proj.weight_packed";
  CHECK(wrapped_name);
  auto back = Model::load(*back_src);
  CHECK(test::max_rel_diff(test::logits_of(*back, kToks), test::logits_of(q.model(), kToks)) < 1e-4);
  AwqConfig a = test::small_awq_config(*calib, 2);
  const AwqResult r = awq_model(tmp / "m", tmp / "awq", a);
  CHECK(r.gptq.warnings.empty());
  CHECK(ModelSource::open(tmp / "awq")->find("blk.5.ffn_down.weight"));
}

TEST_CASE("gemma: GPTQ W8A8 after SmoothQuant folds into the (1 + w) norms and writes them as w", "[arch][gemma][smoothquant]") {
  auto tok = test::shared_file("models/tiny-llama/tokenizer.model");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!tok || !calib) return;
  for (int version : {2, 3}) {
    INFO("gemma" << version);
    test::TempDir tmp;
    const GemmaToy s = calibration_toy(version);
    write_gemma_toy(tmp / "m", s, *tok);
    SmoothQuantConfig sq;
    sq.calibration_samples = 3;
    sq.ctx = 64;
    sq.calibration_data = *calib;
    GptqConfig c;
    c.params.bits = 8;
    c.params.group_size = -1;
    c.calibration_samples = 3;
    c.ctx = 64;
    c.calibration_data = *calib;
    c.smoothquant = sq;
    const GptqResult r = gptq_model(tmp / "m", tmp / "w8", c);
    CHECK(r.smoothing.size() == static_cast<size_t>(2 * s.layers));
    auto src = ModelSource::open(tmp / "m");
    auto back_src = ModelSource::open(tmp / "w8");
    auto orig = Model::load(*src);
    auto back = Model::load(*back_src);
    // the folded norms differ from the original ones by the smoothing scales, which are far from
    // 1 + w's offset: written as 1 + w instead of w, every norm would be off by about 1
    const auto n0 = orig->tensor_f32("blk.0.attn_norm.weight"), n1 = back->tensor_f32("blk.0.attn_norm.weight");
    CHECK(n0 != n1);
    // W8A8 keeps the function: the logits stay close to the float model's
    CHECK(test::max_rel_diff(test::logits_of(*back, kToks), test::logits_of(*orig, kToks)) < 0.05);
  }
}

TEST_CASE("gemma: SmoothQuant folds into the (1 + w) input and pre-feed-forward norms, streamed as in memory", "[arch][gemma][smoothquant]") {
  auto tok = test::shared_file("models/tiny-llama/tokenizer.model");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!tok || !calib) return;
  for (int version : {2, 3}) {
    for (const bool all : {false, true}) {
      INFO("gemma" << version << (all ? ", all mappings" : ""));
      test::TempDir tmp;
      const GemmaToy s = calibration_toy(version);
      write_gemma_toy(tmp / "m", s, *tok);
      auto src = ModelSource::open(tmp / "m");
      SmoothQuantConfig c;
      c.calibration_samples = 3;
      c.ctx = 64;
      c.calibration_data = *calib;
      c.smooth_all = all;
      SmoothQuantizer sq(*src, c);
      sq.calibrate();
      const SmoothQuantResult a = sq.write(tmp / "memory");
      const SmoothQuantResult b = smoothquant_model(tmp / "m", tmp / "streamed", c);
      CHECK(test::files_below(tmp / "memory") == test::files_below(tmp / "streamed"));
      REQUIRE(a.groups.size() == b.groups.size());
      CHECK(a.groups[1].norm == "model.layers.0.pre_feedforward_layernorm");  // not Gemma's attention post-norm
      // smoothing alone keeps the function: the folded (1 + w) norms written as w
      c.quantize = false;
      smoothquant_model(tmp / "m", tmp / "smoothed", c);
      auto back = Model::load(*ModelSource::open(tmp / "smoothed"));
      auto orig = Model::load(*src);
      CHECK(back->tensor_f32("blk.0.attn_norm.weight") != orig->tensor_f32("blk.0.attn_norm.weight"));
      CHECK(test::max_rel_diff(test::logits_of(*back, kToks), test::logits_of(*orig, kToks)) < 1e-2);
    }
  }
}

TEST_CASE("gemma: the backward pass matches the loss's finite differences", "[arch][gemma][gradient]") {
  for (int version : {2, 3}) {
    INFO("gemma" << version);
    test::TempDir tmp;
    GemmaToy s;
    if (!write_gemma_version_toy(tmp / "m", version, s)) return;
    auto src = ModelSource::open(tmp / "m");
    auto model = Model::load(*src);
    const std::string last = "blk." + std::to_string(s.layers - 1) + ".";
    // Layer 0 slides (window 4 < 14 tokens); gemma3's last of six is global.
    const std::vector<std::string> names = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_output.weight",
                                            "blk.0.ffn_gate.weight", last + "attn_v.weight", last + "ffn_down.weight",
                                            last + "ffn_up.weight"};
    const std::vector<char> wanted = test::linear_mask(*model, names);
    std::map<std::string, std::vector<float>> grads;
    engine::Backprop bp(*model, 2);
    const double loss = bp.run(kToks, wanted, [&](const engine::WeightGrad& wg) {
      auto& v = grads[model->linears()[static_cast<size_t>(wg.linear)].name];
      v.resize(static_cast<size_t>(wg.n_in * wg.n_out));
      engine::weight_grad_full(wg, v.data(), 2);
    });
    // Its forward pass is the engine's (soft-capped logits).
    CHECK(loss == Approx(test::mean_next_token_nll(engine_logits(*src, kToks), kToks)).epsilon(1e-5));
    for (const std::string& name : names) {
      INFO(name);
      REQUIRE(grads.count(name));
      test::check_gradient_slope(*model, name, grads.at(name), [&] { return engine::Backprop(*model, 2).loss(kToks); });
    }
  }
}

TEST_CASE("gemma: convert X.gguf writes the (1 + w) norms back as w, the sandwich names and Gemma's keys", "[arch][gemma]") {
  auto tok = test::shared_file("models/tiny-llama/tokenizer.model");
  if (!tok) return;
  for (int version : {2, 3}) {
    INFO("gemma" << version);
    test::TempDir tmp;
    GemmaToy s = calibration_toy(version);
    const GemmaWeights w = write_gemma_toy(tmp / "m", s, *tok);
    const fs::path gguf = tmp / "m.gguf";
    REQUIRE(test::run(test::cli_path() + " quantize " + (tmp / "m").string() + " gguf -q Q8_0 -o " + gguf.string())
                .status == 0);
    const GgufConvertResult r = convert_gguf_to_gptq(gguf, tmp / "ct", GptqLayout::compressed_tensors);
    CHECK(r.requantized.empty());
    const auto cfg = nlohmann::json::parse(read_file(tmp / "ct" / "config.json"));
    CHECK(cfg["model_type"] == (version == 2 ? "gemma2" : "gemma3_text"));
    CHECK(cfg["hidden_activation"] == "gelu_pytorch_tanh");
    CHECK(cfg["query_pre_attn_scalar"] == 64);
    CHECK(cfg["sliding_window"] == s.window);
    CHECK(cfg["tie_word_embeddings"] == true);
    REQUIRE(cfg["layer_types"].size() == static_cast<size_t>(s.layers));
    const int period = version == 2 ? 2 : 6;
    for (int64_t l = 0; l < s.layers; ++l)
      CHECK(cfg["layer_types"][static_cast<size_t>(l)] ==
            (l % period < period - 1 ? "sliding_attention" : "full_attention"));
    if (version == 2) {
      CHECK(cfg["attn_logit_softcapping"] == 50.0);
      CHECK(cfg["final_logit_softcapping"] == 30.0);
    } else {
      CHECK(cfg.contains("rope_local_base_freq"));
    }
    // The norms are w again under their sandwich names (the GGUF's 1 + w, less 1); the linears
    // and the norms read back as the GGUF holds them.
    const auto out = [&] {
      std::map<std::string, std::vector<float>> m;
      test::for_each_safetensors_tensor(tmp / "ct", [&](const StTensor& t, std::vector<uint8_t>& raw) {
        if (t.dtype != StDtype::F32) return;
        std::vector<float> v(raw.size() / 4);
        std::memcpy(v.data(), raw.data(), raw.size());
        m[t.name] = std::move(v);
      });
      return m;
    }();
    for (const char* n : {"model.layers.1.post_attention_layernorm.weight", "model.layers.1.pre_feedforward_layernorm.weight",
                          "model.layers.1.post_feedforward_layernorm.weight", "model.layers.1.input_layernorm.weight"}) {
      INFO(n);
      REQUIRE(out.count(n));
      CHECK(test::max_rel_diff(w.at(n), out.at(n)) < 1e-6);
    }
    auto g = ModelSource::open(gguf), d = ModelSource::open(tmp / "ct");
    for (const char* name : {"blk.1.ffn_norm.weight", "blk.1.post_ffw_norm.weight", "blk.1.attn_q.weight"}) {
      INFO(name);
      const ModelTensor& a = g->at(name);
      std::vector<float> x(static_cast<size_t>(a.n_elements())), y(x.size());
      g->read_rows_f32(a, 0, a.n_rows(), x.data());
      d->read_rows_f32(d->at(name), 0, a.n_rows(), y.data());
      CHECK(test::max_rel_diff(x, y) < 1e-6);
    }
  }
}

TEST_CASE("gemma: Gemma 3's per-attention-type rope_parameters (transformers 5) read as the legacy keys",
          "[arch][gemma]") {
  test::TempDir tmp;
  GemmaToy s;
  if (!write_gemma_version_toy(tmp / "legacy", 3, s)) return;
  write_gemma_version_toy(tmp / "v5", 3, s);
  auto cfg = json::parse(std::ifstream(tmp / "v5" / "config.json"));
  for (const char* k : {"rope_theta", "rope_local_base_freq", "rope_scaling"}) cfg.erase(k);
  cfg["rope_parameters"]["sliding_attention"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}};
  cfg["rope_parameters"]["full_attention"] = {{"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 1000000.0}};
  std::ofstream(tmp / "v5" / "config.json") << cfg.dump(2);
  const auto a = ModelSource::open(tmp / "legacy"), b = ModelSource::open(tmp / "v5");
  CHECK(b->config().rope_theta == 1000000.0f);
  CHECK(b->config().rope_theta_swa == 10000.0f);
  REQUIRE(b->config().rope_scaling);
  CHECK(b->config().rope_scaling->type == "linear");
  CHECK(b->config().rope_scaling->factor == 8.0f);
  CHECK(a->gguf_metadata().get_float("gemma3.rope.freq_base") == b->gguf_metadata().get_float("gemma3.rope.freq_base"));
  auto la = Model::load(*a), lb = Model::load(*b);
  Session sa(*la), sb(*lb);
  sa.eval(kToks, 0);
  sb.eval(kToks, 0);
  const auto x = sa.logits(13), y = sb.logits(13);
  CHECK(std::vector<float>(x.begin(), x.end()) == std::vector<float>(y.begin(), y.end()));

  // layer_types: the architecture's pattern reads as before, all full turns the window off, and
  // another pattern is refused.
  auto types = [&](const std::vector<std::string>& lt) {
    cfg["layer_types"] = lt;
    std::ofstream(tmp / "v5" / "config.json") << cfg.dump(2);
  };
  std::vector<std::string> lt(static_cast<size_t>(s.layers), "sliding_attention");
  for (size_t l = 5; l < lt.size(); l += 6) lt[l] = "full_attention";
  types(lt);
  CHECK(ModelSource::open(tmp / "v5")->config().swa_period == 6);
  types(std::vector<std::string>(static_cast<size_t>(s.layers), "full_attention"));
  CHECK(ModelSource::open(tmp / "v5")->config().sliding_window == 0);
  lt[0] = "full_attention";
  types(lt);
  try {
    (void)ModelSource::open(tmp / "v5");
    FAIL("an unsupported layer_types pattern was accepted");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::invalid_model);
    CHECK(std::string(e.what()).find("layer_types") != std::string::npos);
  }
}
