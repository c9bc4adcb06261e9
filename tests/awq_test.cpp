// AWQ (awq.hpp): the scale folding keeps the float model's output (and unfolding gives the
// weights back), the search keeps the identity when activations are flat and finds a better
// scaling when a few channels carry outliers, AutoAWQ's min-max grid and its clipping, the tiny
// model's outputs read back through the checkpoint readers (same logits as the quantizer's model),
// CLI errors with the contract's exit codes and nothing written.
#include "support/support.hpp"

#include "core/half.hpp"
#include "quantize/awq_block.hpp"

#include <lq/error.hpp>
#include <lq/awq.hpp>
#include <lq/calibration.hpp>
#include <lq/engine.hpp>
#include <lq/io.hpp>

#include <Eigen/Core>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <random>

namespace fs = std::filesystem;
using namespace lq;

namespace {

double aq_max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, static_cast<double>(std::abs(a[i] - b[i])));
  return d;
}

// Output MSE of x (n x d) through w (rows x d) after scaling columns by s, quantizing on AWQ's
// 4-bit g32 grid and unscaling (the search's loss on one linear).
double aq_linear_loss(const std::vector<float>& x, const std::vector<float>& w, int64_t n, int64_t d, int64_t rows,
                      std::span<const float> s) {
  std::vector<float> ws(w);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < d; ++c) ws[static_cast<size_t>(r * d + c)] *= s[static_cast<size_t>(c)];
  const GptqMatrix q = awq_quantize_matrix(ws.data(), rows, d, 4, 32);
  std::vector<float> dq = q.dequantize();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < d; ++c) dq[static_cast<size_t>(r * d + c)] /= s[static_cast<size_t>(c)];
  double e = 0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double a = 0;
      for (int64_t c = 0; c < d; ++c)
        a += double(x[static_cast<size_t>(t * d + c)]) * (dq[static_cast<size_t>(r * d + c)] - w[static_cast<size_t>(r * d + c)]);
      e += a * a;
    }
  return e / static_cast<double>(n * rows);
}

}  // namespace

TEST_CASE("awq: folding scales keeps the float model's output, unfolding gives the weights back", "[awq]") {
  auto dir = test::shared_file("models/tiny-llama");
  if (!dir) return;
  auto src = ModelSource::open(*dir);
  auto model = Model::load(*src);
  const std::vector<int32_t> toks = {1, 17, 300, 42, 999, 5, 77, 1500, 8, 64, 2000, 3};
  const auto before = test::logits_of(*model, toks);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> U(0.25f, 4.0f);
  const ModelConfig& c = model->config();
  std::vector<float> s1(static_cast<size_t>(c.n_embd)), s4(static_cast<size_t>(c.n_ff));
  for (auto& v : s1) v = U(rng);
  for (auto& v : s4) v = U(rng);
  // input_layernorm -> q, k, v of block 1 and up -> down of block 3.
  const auto norm0 = model->tensor_f32("blk.1.attn_norm.weight");
  const auto q0 = model->tensor_f32("blk.1.attn_q.weight"), up0 = model->tensor_f32("blk.3.ffn_up.weight"),
             down0 = model->tensor_f32("blk.3.ffn_down.weight");
  auto fold = [&](const std::vector<float>& a, const std::vector<float>& b) {
    std::vector<float> n = model->tensor_f32("blk.1.attn_norm.weight");
    awq_divide_rows(n, 1, a);
    model->replace_tensor("blk.1.attn_norm.weight", n);
    for (const char* t : {"blk.1.attn_q.weight", "blk.1.attn_k.weight", "blk.1.attn_v.weight"}) {
      std::vector<float> w = model->tensor_f32(t);
      awq_multiply_columns(w, a);
      model->replace_tensor(t, w);
    }
    std::vector<float> up = model->tensor_f32("blk.3.ffn_up.weight");
    awq_divide_rows(up, c.n_embd, b);
    model->replace_tensor("blk.3.ffn_up.weight", up);
    std::vector<float> down = model->tensor_f32("blk.3.ffn_down.weight");
    awq_multiply_columns(down, b);
    model->replace_tensor("blk.3.ffn_down.weight", down);
  };
  fold(s1, s4);
  CHECK(model->tensor_f32("blk.1.attn_norm.weight") != norm0);
  const auto after = test::logits_of(*model, toks);
  double scale = 0;
  for (float v : before) scale = std::max(scale, static_cast<double>(std::abs(v)));
  CHECK(aq_max_abs_diff(before, after) < 1e-4 * scale);
  // A wrong fold (the norm divided, the columns not multiplied) changes the output.
  {
    std::vector<float> n = model->tensor_f32("blk.1.attn_norm.weight");
    awq_divide_rows(n, 1, s1);
    model->replace_tensor("blk.1.attn_norm.weight", n);
    CHECK(aq_max_abs_diff(before, test::logits_of(*model, toks)) > 1e-2 * scale);
    awq_multiply_columns(n, s1);
    model->replace_tensor("blk.1.attn_norm.weight", n);
  }
  // Unfold with the reciprocal scales: the weights come back (to float rounding).
  std::vector<float> r1(s1.size()), r4(s4.size());
  for (size_t i = 0; i < s1.size(); ++i) r1[i] = 1 / s1[i];
  for (size_t i = 0; i < s4.size(); ++i) r4[i] = 1 / s4[i];
  fold(r1, r4);
  auto close = [](const std::vector<float>& a, const std::vector<float>& b) {
    for (size_t i = 0; i < a.size(); ++i)
      if (std::abs(a[i] - b[i]) > 1e-6f * std::max(1.0f, std::abs(b[i]))) return false;
    return a.size() == b.size();
  };
  CHECK(close(model->tensor_f32("blk.1.attn_norm.weight"), norm0));
  CHECK(close(model->tensor_f32("blk.1.attn_q.weight"), q0));
  CHECK(close(model->tensor_f32("blk.3.ffn_up.weight"), up0));
  CHECK(close(model->tensor_f32("blk.3.ffn_down.weight"), down0));
  CHECK_THROWS_AS(awq_divide_rows(std::span<float>(r1.data(), 5), 2, s1), Error);
}

TEST_CASE("awq: flat activations keep the identity, outlier channels get scaled", "[awq]") {
  const int64_t n = 96, d = 128, rows = 32;
  std::mt19937 rng(5);
  std::normal_distribution<float> N(0, 1);
  std::vector<float> w(static_cast<size_t>(rows * d)), x(static_cast<size_t>(n * d));
  for (auto& v : w) v = 0.05f * N(rng);
  for (auto& v : x) v = N(rng);
  std::vector<float> wmean(static_cast<size_t>(d));
  for (auto& v : wmean) v = 0.2f + 0.6f * std::abs(N(rng));
  AwqParams p;
  int calls = 0;
  auto loss = [&](std::span<const float> s) {
    ++calls;
    return aq_linear_loss(x, w, n, d, rows, s);
  };
  SECTION("flat: every activation-only candidate is the identity, the first (α = 0) is kept") {
    const std::vector<float> flat(static_cast<size_t>(d), 0.8f);
    p.duo_scaling = false;
    p.identity_candidate = false;
    const AwqSearch r = awq_search_scales(flat, wmean, p, loss);
    CHECK(calls == 20);
    CHECK(r.alpha == 0.0);
    CHECK(std::all_of(r.scales.begin(), r.scales.end(), [](float v) { return v == 1.0f; }));
    CHECK(r.losses.size() == 20);
    CHECK(std::all_of(r.losses.begin(), r.losses.end(), [&](double l) { return l == r.loss; }));
    // With the identity candidate, it is tried first and wins the ties.
    p.identity_candidate = true;
    const AwqSearch r2 = awq_search_scales(flat, wmean, p, loss);
    CHECK(r2.alpha == -1.0);
    CHECK(r2.loss == r2.identity_loss);
  }
  SECTION("outliers: a scaling beats the identity on the output error") {
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c : {3, 40, 77, 100}) x[static_cast<size_t>(t * d + c)] *= 40.0f;
    std::vector<float> xm(static_cast<size_t>(d), 0.0f);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < d; ++c) xm[static_cast<size_t>(c)] += std::abs(x[static_cast<size_t>(t * d + c)]) / n;
    const AwqSearch r = awq_search_scales(xm, wmean, p, loss);
    CHECK(r.alpha > 0.0);
    CHECK(r.loss < 0.8 * r.identity_loss);
    CHECK(r.scales[3] > r.scales[4]);  // the outlier channel is scaled up (its weights kept finer)

    // Screened: the screen costs all 20, `loss` only the identity and the search_keep cheapest there.
    int screens = 0;
    std::vector<double> seen;  // the screen's losses in call order
    auto on_sample = [&](std::span<const float> s) {
      ++screens;
      seen.push_back(aq_linear_loss(x, w, n / 4, d, rows, s));  // the first quarter of the tokens
      return seen.back();
    };
    calls = 0;
    p.search_keep = 3;
    const AwqSearch sc = awq_search_scales(xm, wmean, p, loss, on_sample);
    CHECK(screens == 20);
    CHECK(calls == 4);
    CHECK(sc.screen_losses == seen);
    REQUIRE(sc.losses.size() == 20);
    std::vector<double> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    int costed = 0;
    for (size_t i = 0; i < 20; ++i) {
      if (std::isnan(sc.losses[i])) continue;
      ++costed;
      CHECK(seen[i] <= sorted[2]);                 // one of the three cheapest on the sample
      CHECK(sc.losses[i] == r.losses[i]);          // costed as the full search costs it
      CHECK(sc.loss <= sc.losses[i]);
    }
    CHECK(costed == 3);
    CHECK(sc.identity_loss == r.identity_loss);
    CHECK(sc.loss <= sc.identity_loss);
    // The screen being the loss itself, the screened search picks the full search's winner.
    calls = 0;
    const AwqSearch same = awq_search_scales(xm, wmean, p, loss, loss);
    CHECK(same.alpha == r.alpha);
    CHECK(same.loss == r.loss);
    CHECK(same.scales == r.scales);
  }
  // Candidates are normalised: sqrt(max · min) = 1.
  std::vector<float> xm(static_cast<size_t>(d));
  for (auto& v : xm) v = 0.01f + std::abs(N(rng));
  const auto s = awq_candidate_scales(xm, wmean, 0.5, true);
  const auto [mn, mx] = std::minmax_element(s.begin(), s.end());
  CHECK(std::abs(*mn * *mx - 1.0f) < 1e-4f);
}

TEST_CASE("awq: AutoAWQ's min-max grid with zero points, and clipping", "[awq]") {
  // One group of 4: min -1, max 2 -> scale 3/15 (binary16), zero round(1 / scale) = 5.
  const std::vector<float> w = {-1.0f, 0.0f, 0.5f, 2.0f};
  const GptqMatrix q = awq_quantize_matrix(w.data(), 1, 4, 4, 4);
  REQUIRE(q.scales.size() == 1);
  CHECK(std::abs(q.scales[0] - 0.2f) < 1e-4f);
  CHECK(q.zeros[0] == 5);
  CHECK(q.codes == std::vector<uint8_t>({0, 5, 8, 15}));
  const auto d = q.dequantize();
  for (size_t i = 0; i < w.size(); ++i) CHECK(std::abs(d[i] - w[i]) <= q.scales[0] / 2 + 1e-6f);
  // Clipped to [-1, 1]: 2 becomes 1, scale 2/15, zero round(1 / scale) = 7 (7.5 rounds to even... of -(-7.5))
  const float clip = 1.0f;
  const GptqMatrix c = awq_quantize_matrix(w.data(), 1, 4, 4, 4, &clip);
  CHECK(std::abs(c.scales[0] - 2.0f / 15) < 1e-4f);
  CHECK(c.codes[3] == 15);
  CHECK(std::abs(c.dequantize()[3] - 1.0f) < 0.07f);
  // 3-bit: 8 levels.
  const GptqMatrix t = awq_quantize_matrix(w.data(), 1, 4, 3, 4);
  CHECK(std::abs(t.scales[0] - 3.0f / 7) < 1e-3f);
  CHECK(*std::max_element(t.codes.begin(), t.codes.end()) == 7);
  CHECK_THROWS_AS(awq_quantize_matrix(w.data(), 1, 4, 4, 3), Error);
  AwqParams bad;
  bad.bits = 5;
  CHECK_THROWS_AS(validate(bad), Error);
}

TEST_CASE("awq: a configured sliding window the engine does not apply keeps the attention inspected", "[awq]") {
  // Llama/Mistral/Qwen2 configs may carry sliding_window; the engine (as llama.cpp) attends to every
  // earlier position on those blocks, so the recomputed attention must too, or every block falls
  // back to the q/k/v outputs.
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;
  test::TempDir tmp;
  const fs::path m = tmp / "swa";
  fs::create_directories(m);
  for (const auto& e : fs::directory_iterator(*dir)) fs::copy_file(e.path(), m / e.path().filename());
  auto cfg = nlohmann::json::parse(read_file(m / "config.json"));
  cfg["sliding_window"] = 16;
  std::ofstream(m / "config.json") << cfg.dump(2);
  auto src = ModelSource::open(m);
  REQUIRE(src->config().sliding_window == 16);
  AwqConfig c;
  c.layout = GptqLayout::compressed_tensors;
  c.calibration_samples = 2;
  c.ctx = 64;
  c.calibration_data = *calib;
  AwqQuantizer q(*src, c);
  q.run();
  const AwqResult r = q.write(tmp / "out");
  CHECK(r.attention.starts_with("attention output"));  // not the q/k/v fallback
  CHECK(r.gptq.warnings.empty());
}

TEST_CASE("awq: tiny model outputs read back with the quantizer's logits", "[awq]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;
  auto src = ModelSource::open(*dir);
  const std::vector<int32_t> toks = {1, 100, 200, 300, 400, 500, 600, 700};
  for (const GptqLayout layout : {GptqLayout::awq, GptqLayout::compressed_tensors}) {
    AwqConfig c;
    c.layout = layout;
    c.params.bits = layout == GptqLayout::awq ? 4 : 3;
    c.params.group_size = layout == GptqLayout::awq ? 128 : 64;
    c.calibration_samples = 2;
    c.ctx = 64;
    c.calibration_data = *calib;
    AwqQuantizer q(*src, c);
    q.run();
    test::TempDir tmp;
    const AwqResult r = q.write(tmp / "out");
    INFO(static_cast<int>(layout));
    CHECK(r.gptq.layers.size() == 42);
    CHECK(r.groups.size() == 18);  // 3 groups a block: v -> o skipped under GQA (4 heads, 2 kv heads)
    CHECK(r.clipped_linears == 42);  // all 7 linears of the 6 blocks
    CHECK(r.gptq.chunks == 2);
    CHECK(r.attention.find("recomputed") != std::string::npos);
    int scaled = 0;
    for (const auto& g : r.groups) {
      CHECK(g.loss <= g.identity_loss);
      scaled += g.alpha >= 0;
    }
    CHECK(scaled > 0);
    const auto cfg = nlohmann::json::parse(read_file(tmp / "out" / "config.json"));
    CHECK(cfg["quantization_config"]["quant_method"] == (layout == GptqLayout::awq ? "awq" : "compressed-tensors"));
    // Read back: the linears dequantize to the quantizer's matrices and the folded norms are
    // written, so the directory's logits are the quantizer's model's.
    auto back_src = ModelSource::open(tmp / "out");
    auto back = Model::load(*back_src);
    const auto dq = q.matrix("model.layers.2.mlp.up_proj").dequantize();
    const auto bk = back->tensor_f32("blk.2.ffn_up.weight");
    CHECK(aq_max_abs_diff(dq, bk) == 0);
    CHECK(back->tensor_f32("blk.4.attn_norm.weight") == q.model().tensor_f32("blk.4.attn_norm.weight"));
    auto orig = Model::load(*src);
    CHECK(orig->tensor_f32("blk.4.attn_norm.weight") != q.model().tensor_f32("blk.4.attn_norm.weight"));
    const auto a = test::logits_of(q.model(), toks), b = test::logits_of(*back, toks);
    CHECK(aq_max_abs_diff(a, b) < 1e-3);
  }
}

TEST_CASE("awq: CLI writes AutoAWQ's layout, errors exit with the contract's codes, nothing written", "[awq][cli]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;
  const std::string m = dir->string();
  test::TempDir tmp;
  std::ofstream(tmp / "short.txt") << "only a few words here";
  const std::string o = " -o " + (tmp / "o").string();
  for (const auto& c : std::vector<test::CliFailure>{
           {"quantize " + m + " awq --bits 5" + o, 2, "bits"},
           {"quantize " + m + " awq --bits 8 --layout compressed-tensors" + o, 2, "bits must be 3 or 4"},
           {"quantize " + m + " awq --bits 3" + o, 2, "4-bit codes only"},
           {"quantize " + m + " awq --group-size 96" + o, 2, "does not divide"},
           {"quantize " + m + " awq --group-size -1" + o, 2, "group size"},
           {"quantize " + m + " awq --layout gptq_v2" + o, 2, "--layout"},
           {"quantize " + m + " awq --act-order" + o, 2, "--act-order applies to the awq output format with --gptq only"},
           {"quantize " + m + " awq --act-order-group --gptq" + o, 2, "--act-order-group does not apply"},
           {"quantize " + m + " awq --gptq --no-gain-correction" + o, 2, "--no-gain-correction does not apply with --gptq"},
           {"quantize " + m + " smoothquant --gptq" + o, 2, "--gptq applies to the gguf and awq output formats"},
           {"quantize " + m + " awq --damp 0.1" + o, 2, "--damp applies to the awq output format with --gptq only"},
           {"quantize " + m + " awq --gptq --damp 0" + o, 2, "damp must be in"},
           {"quantize " + m + " awq --gptq --scale-search 100" + o, 2, "scale search"},
           {"quantize " + m + " awq -q Q4_0" + o, 2, "--quantization"},
           {"quantize " + m + " awq --calibration-samples 0" + o, 2, "--calibration-samples"},
           {"quantize " + m + " awq --ctx 4096 --calibration-data " + (tmp / "short.txt").string() + o, 15, "short.txt"},
       })
    test::check_cli_failure(c);
  CHECK_FALSE(fs::exists(tmp / "o"));
  CHECK(test::no_write_leftovers(tmp.path()));

  const auto r = test::run(test::cli_path() + " --format json quantize " + m + " awq --calibration-samples 2 --ctx 64 " +
                           "--calibration-data " + calib->string() + " -o " + (tmp / "out").string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["status"] == "success");
  CHECK(j["format"] == "awq");
  CHECK(j["method"] == "awq");
  CHECK(j["quantization_level"] == "W4A16");
  CHECK(j["symmetric"] == false);
  CHECK(j["layer_summary"].size() == 42);
  CHECK(j["scale_groups"].size() == 18);
  CHECK(j["calibration_samples"] == 2);
  CHECK(j["effective_bpw"].get<double>() < 16);
  const auto cfg = nlohmann::json::parse(read_file(tmp / "out" / "config.json"));
  CHECK(cfg["quantization_config"]["quant_method"] == "awq");
  CHECK(cfg["quantization_config"]["zero_point"] == true);
  CHECK(fs::exists(tmp / "out" / "model.safetensors"));
  CHECK_FALSE(fs::exists(tmp / "out" / "quantize_config.json"));
  CHECK(test::no_write_leftovers(tmp.path()));
  CHECK(j["gain_correction"] == true);
  CHECK(j["scale_groups"][0].contains("duo_scaling"));

  // --no-gain-correction: the library's gain_correction = false (the clipped groups' scales as fitted).
  const auto r2 = test::run(test::cli_path() + " --format json quantize " + m + " awq --calibration-samples 2 --ctx 64 " +
                            "--calibration-data " + calib->string() + " --no-gain-correction -o " + (tmp / "nogain").string());
  INFO(r2.err);
  REQUIRE(r2.status == 0);
  CHECK(nlohmann::json::parse(r2.out)["gain_correction"] == false);
  AwqConfig c;
  c.params.gain_correction = false;
  c.calibration_samples = 2;
  c.ctx = 64;
  c.calibration_data = *calib;
  auto src = ModelSource::open(*dir);
  AwqQuantizer q(*src, c);
  q.run();
  q.write(tmp / "lib", {});
  CHECK(read_file(tmp / "nogain" / "model.safetensors") == read_file(tmp / "lib" / "model.safetensors"));
  CHECK(read_file(tmp / "nogain" / "model.safetensors") != read_file(tmp / "out" / "model.safetensors"));
}

namespace {

// Block 0's per-linear losses (relative output error on the calibration tokens) of the tiny model
// quantized by AWQ with `set` applied to its parameters (2 chunks of 64 tokens).
std::map<std::string, double> aw_block_losses(const ModelSource& src, const fs::path& calib, int bits,
                                              int64_t group, const std::function<void(AwqParams&)>& set) {
  AwqConfig c;
  c.layout = GptqLayout::compressed_tensors;
  c.params.bits = bits;
  c.params.group_size = group;
  set(c.params);
  c.calibration_samples = 2;
  c.ctx = 64;
  c.calibration_data = calib;
  AwqQuantizer q(src, c);
  q.run();
  std::map<std::string, double> loss;
  for (const auto& l : q.summary().gptq.layers) loss[l.module] = l.loss;
  return loss;
}

// Block 0 sees the same inputs and scales in both runs, only the clipped groups' grids differ: each
// linear's loss is at most 2% above (the reported error also holds the cross-group terms the
// per-group search ignores), their sum lower and at least `lower_at_least` of them below.
void aw_check_never_worse(std::map<std::string, double> base, std::map<std::string, double> better, int lower_at_least) {
  int lower = 0;
  double sum[2] = {0, 0};
  for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                        "mlp.up_proj", "mlp.down_proj"}) {
    const std::string name = std::string("model.layers.0.") + m;
    INFO(name);
    REQUIRE(base.count(name));
    CHECK(better[name] <= base[name] * 1.02);
    lower += better[name] < base[name] * 0.999;
    sum[0] += base[name], sum[1] += better[name];
  }
  CHECK(sum[1] < sum[0]);
  CHECK(lower >= lower_at_least);
}

}  // namespace

TEST_CASE("awq: the clipping search's candidates beyond AutoAWQ's never lose on the calibration tokens", "[awq]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;
  auto src = ModelSource::open(*dir);
  aw_check_never_worse(aw_block_losses(*src, *calib, 3, 64, [](AwqParams& p) { p.clip_asym = false, p.gain_correction = false; }),
                       aw_block_losses(*src, *calib, 3, 64, [](AwqParams& p) { p.clip_asym = true, p.gain_correction = false; }), 3);
}

TEST_CASE("awq: q and k are clipped on the symmetric clamps, the other linears as without", "[awq]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;
  auto src = ModelSource::open(*dir);
  auto off = aw_block_losses(*src, *calib, 4, 64, [](AwqParams& p) { p.clip_qk = false, p.gain_correction = false; });
  auto on = aw_block_losses(*src, *calib, 4, 64, [](AwqParams& p) { p.clip_qk = true, p.gain_correction = false; });
  for (const char* m : {"self_attn.q_proj", "self_attn.k_proj"}) {
    const std::string name = std::string("model.layers.0.") + m;
    INFO(name);
    CHECK(on[name] < off[name] * 0.999);  // the clip (with its refit) lowers the output error
  }
  for (const char* m : {"self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}) {
    const std::string name = std::string("model.layers.0.") + m;
    INFO(name);
    CHECK(on[name] == off[name]);
  }
  // With the asymmetric candidates on (the default) q/k still get the symmetric ones only.
  auto sym = aw_block_losses(*src, *calib, 4, 64, [](AwqParams& p) { p.clip_asym = false, p.gain_correction = false; });
  CHECK(sym["model.layers.0.self_attn.q_proj"] == on["model.layers.0.self_attn.q_proj"]);
  CHECK(sym["model.layers.0.self_attn.k_proj"] == on["model.layers.0.self_attn.k_proj"]);
  CHECK(sym["model.layers.0.mlp.down_proj"] != on["model.layers.0.mlp.down_proj"]);
}

TEST_CASE("awq: the clipping search costed with each group's cross term lowers the linears' whole error", "[awq]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;
  auto src = ModelSource::open(*dir);
  // g32: 8 groups a row of 256 columns. The reported error is the whole row's, cross terms included.
  const auto alone = aw_block_losses(*src, *calib, 3, 32, [](AwqParams& p) { p.clip_cross = false, p.gain_correction = false; });
  const auto cross = aw_block_losses(*src, *calib, 3, 32, [](AwqParams& p) { p.clip_cross = true, p.gain_correction = false; });
  aw_check_never_worse(alone, cross, 5);
}

TEST_CASE("awq: refitting each group's scale to its codes lowers the calibration error", "[awq]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;
  auto src = ModelSource::open(*dir);
  // A refit is kept only where its group's error is lower.
  aw_check_never_worse(aw_block_losses(*src, *calib, 4, 64, [](AwqParams& p) { p.refit_scale = false, p.gain_correction = false; }),
                       aw_block_losses(*src, *calib, 4, 64, [](AwqParams& p) { p.refit_scale = true, p.gain_correction = false; }), 0);
}

TEST_CASE("awq: the gain correction gives a clipped group the float weights' projection on the inputs", "[awq]") {
  // One group of 64 weights with an outlier, inputs with correlated channels: clamped to 70% of
  // its range the group's dequantized values are shorter along G = XᵀX than the weights.
  const int64_t g = 64, T = 512;
  std::mt19937 rng(11);
  std::normal_distribution<float> N(0, 1);
  std::vector<float> x(static_cast<size_t>(g)), X(static_cast<size_t>(T * g)), G(static_cast<size_t>(g * g), 0.0f);
  for (auto& v : x) v = 0.02f * N(rng);
  x[5] = 0.2f;
  for (int64_t t = 0; t < T; ++t) {
    const float common = N(rng);
    for (int64_t c = 0; c < g; ++c) X[static_cast<size_t>(t * g + c)] = (1.0f + 0.1f * c) * (N(rng) + 0.5f * common);
  }
  for (int64_t i = 0; i < g; ++i)
    for (int64_t j = 0; j < g; ++j)
      for (int64_t t = 0; t < T; ++t) G[static_cast<size_t>(i * g + j)] += X[static_cast<size_t>(t * g + i)] * X[static_cast<size_t>(t * g + j)];
  const int maxq = 15;
  const auto [mn, mx] = std::minmax_element(x.begin(), x.end());
  const float lo = *mn * 0.7f, hi = *mx * 0.7f;
  const float scale = fp16_to_f32(f32_to_fp16((hi - lo) / maxq));
  const int32_t zero = static_cast<int32_t>(std::nearbyint(-lo / scale));
  auto proj = [&](float s) {  // x̂ᵀ G x with x̂ = s (code - zero), codes on `scale`
    double p = 0;
    for (int64_t i = 0; i < g; ++i) {
      const float q = std::clamp(std::nearbyint(x[static_cast<size_t>(i)] / scale) + static_cast<float>(zero), 0.0f, 15.0f);
      const double xi = s * (q - zero);
      for (int64_t j = 0; j < g; ++j) p += xi * G[static_cast<size_t>(i * g + j)] * x[static_cast<size_t>(j)];
    }
    return p;
  };
  double xgx = 0;
  for (int64_t i = 0; i < g; ++i)
    for (int64_t j = 0; j < g; ++j) xgx += static_cast<double>(x[static_cast<size_t>(i)]) * G[static_cast<size_t>(i * g + j)] * x[static_cast<size_t>(j)];
  REQUIRE(proj(scale) < 0.97 * xgx);  // the clamp shortened it
  const float s32 = awq_impl::awq_gain_scale(x.data(), g, G.data(), maxq, scale, zero, 0);
  CHECK(s32 > scale);
  CHECK(std::abs(proj(s32) / xgx - 1) < 1e-4);
  const float s16 = awq_impl::awq_gain_scale(x.data(), g, G.data(), maxq, scale, zero, 16);
  CHECK(s16 == fp16_to_f32(f32_to_fp16(s16)));
  CHECK(std::abs(proj(s16) / xgx - 1) < 2e-3);  // binary16's rounding
  // Weights on the grid itself keep their scale; a degenerate G leaves it alone.
  std::vector<float> on_grid(static_cast<size_t>(g));
  for (int64_t i = 0; i < g; ++i) on_grid[static_cast<size_t>(i)] = 0.125f * static_cast<float>(i % 16 - 6);
  CHECK(awq_impl::awq_gain_scale(on_grid.data(), g, G.data(), maxq, 0.125f, 6, 16) == 0.125f);
  const std::vector<float> zeroG(static_cast<size_t>(g * g), 0.0f);
  CHECK(awq_impl::awq_gain_scale(x.data(), g, zeroG.data(), maxq, scale, zero, 0) == scale);
}

TEST_CASE("awq: the clipping search's cost factor is lower triangular with MᵀM = G, none for a dead channel", "[awq]") {
  // G = XᵀX of 300 correlated tokens over a group of 128 columns (a group's block of the clip's
  // XᵀX), in float as the search holds it.
  const int64_t g = 128, T = 300;
  std::mt19937 rng(5);
  std::normal_distribution<float> N;
  std::vector<float> X(static_cast<size_t>(T * g));
  for (int64_t t = 0; t < T; ++t) {
    const float common = N(rng);
    for (int64_t c = 0; c < g; ++c) X[static_cast<size_t>(t * g + c)] = (1.0f + 0.05f * c) * (N(rng) + 0.5f * common);
  }
  auto gram = [&](const std::vector<float>& x) {
    Eigen::MatrixXd Xd(T, g);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < g; ++c) Xd(t, c) = x[static_cast<size_t>(t * g + c)];
    return Eigen::MatrixXd(Xd.transpose() * Xd);
  };
  const Eigen::MatrixXd Gd = gram(X);
  using RowMatf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const RowMatf G = Gd.cast<float>();
  RowMatf M(g, g);
  REQUIRE(awq_impl::aw_cost_factor(G.data(), g, M.data()));
  CHECK(M.triangularView<Eigen::StrictlyUpper>().toDenseMatrix().isZero(0.0f));
  const Eigen::MatrixXd Md = M.cast<double>();
  CHECK((Md.transpose() * Md - Gd).norm() / Gd.norm() < 1e-4);
  // A candidate's cost |M d|² is dᵀ G d.
  Eigen::VectorXd d(g);
  for (int64_t c = 0; c < g; ++c) d(c) = N(rng) * 0.01;
  CHECK((Md * d).squaredNorm() == Approx(d.dot(Gd * d)).epsilon(1e-4));
  // An input channel that is always zero leaves G singular: no factor (the search then costs
  // with G itself).
  std::vector<float> dead = X;
  for (int64_t t = 0; t < T; ++t) dead[static_cast<size_t>(t * g + 17)] = 0.0f;
  const RowMatf Gz = gram(dead).cast<float>();
  CHECK_FALSE(awq_impl::aw_cost_factor(Gz.data(), g, M.data()));
}

TEST_CASE("awq: the search's XᵀX divided by the scales is the XᵀX of the divided inputs", "[awq]") {
  // Inputs with a few outlier channels (the scales then span a wide range, as AWQ's do), their XᵀX
  // in double as the reference; the clipping takes D⁻¹ (XᵀX) D⁻¹ from the search instead of forming
  // (X D⁻¹)ᵀ (X D⁻¹).
  const int64_t n = 96, T = 500;
  std::mt19937 rng(17);
  std::normal_distribution<float> N;
  std::vector<float> X(static_cast<size_t>(T * n)), s(static_cast<size_t>(n));
  for (int64_t c = 0; c < n; ++c) s[static_cast<size_t>(c)] = std::exp(0.8f * N(rng)) * (c % 17 == 3 ? 20.0f : 1.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < n; ++c) X[static_cast<size_t>(t * n + c)] = N(rng) * (c % 17 == 3 ? 30.0f : 1.0f);
  Eigen::MatrixXd Xd(T, n), Yd(T, n);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < n; ++c) {
      Xd(t, c) = X[static_cast<size_t>(t * n + c)];
      Yd(t, c) = static_cast<double>(X[static_cast<size_t>(t * n + c)] / s[static_cast<size_t>(c)]);  // the divided inputs, as read
    }
  const Eigen::MatrixXd want = Yd.transpose() * Yd;
  using RowMatf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  for (const int threads : {1, 3}) {
    RowMatf G = Eigen::MatrixXd(Xd.transpose() * Xd).cast<float>();
    awq_impl::aw_divide_gram(G.data(), n, s.data(), threads);
    const Eigen::MatrixXd got = G.cast<double>();
    double worst = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        worst = std::max(worst, std::abs(got(i, j) - want(i, j)) / std::sqrt(want(i, i) * want(j, j)));
    INFO("threads " << threads << ": worst entry error " << worst << " of sqrt(G_ii G_jj)");
    CHECK(worst < 1e-5);
    CHECK(got.isApprox(got.transpose(), 0.0));  // still symmetric, exactly
    // Undivided, the matrix would be far off: the check can fail.
    CHECK((Eigen::MatrixXd(Xd.transpose() * Xd) - want).norm() > 0.5 * want.norm());
  }
}

TEST_CASE("awq: the column means of rows read a slab at a time are the matrix expression's floats", "[awq]") {
  // Heavy-tailed values over wide ranges, so that any other order of the sums rounds differently;
  // row counts around the fours the sums go in, column counts around the vector unit's packets.
  std::mt19937 rng(11);
  std::student_t_distribution<float> heavy(1.5f);
  using RowMatf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  int differ = 0, cases = 0;
  for (const int64_t rows : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 64, 257, 1000, 4099})
    for (const int64_t cols : {1, 3, 4, 5, 8, 15, 16, 17, 33, 256}) {
      RowMatf x(rows, cols);
      for (int64_t i = 0; i < x.size(); ++i) x.data()[i] = heavy(rng) * std::ldexp(1.0f, static_cast<int>(rng() % 24) - 12);
      std::vector<float> want(static_cast<size_t>(cols));
      Eigen::Map<Eigen::RowVectorXf>(want.data(), cols) =
          x.cwiseAbs().colwise().sum().cast<float>() / static_cast<float>(std::max<Eigen::Index>(1, x.rows()));
      for (const int64_t slab : {int64_t{1}, int64_t{3}, rows}) {
        awq_impl::AwColAbsMean m(rows, cols);
        for (int64_t t0 = 0; t0 < rows; t0 += slab) m.add(x.data() + t0 * cols, std::min(slab, rows - t0));
        const std::vector<float> got = m.mean();
        ++cases;
        if (std::memcmp(got.data(), want.data(), want.size() * sizeof(float)) != 0) {
          ++differ;
          INFO("rows " << rows << ", cols " << cols << ", slab " << slab);
          CHECK(got == want);
        }
      }
    }
  CHECK(differ == 0);
  CHECK(cases == 14 * 10 * 3);
  // The order matters on these values: row after row gives other floats for some column.
  RowMatf x(4099, 16);
  for (int64_t i = 0; i < x.size(); ++i) x.data()[i] = heavy(rng) * std::ldexp(1.0f, static_cast<int>(rng() % 24) - 12);
  Eigen::RowVectorXf want = x.cwiseAbs().colwise().sum() / 4099.0f;
  bool seq_differs = false;
  for (int64_t c = 0; c < 16; ++c) {
    float s = std::abs(x(0, c));
    for (int64_t r = 1; r < 4099; ++r) s += std::abs(x(r, c));
    seq_differs = seq_differs || s / 4099.0f != want(c);
  }
  CHECK(seq_differs);
}

TEST_CASE("awq: with the gain correction only the clipped linears' scales move, codes and zeros kept", "[awq]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;
  auto src = ModelSource::open(*dir);
  auto run = [&](bool gain) {
    AwqConfig c;
    c.layout = GptqLayout::compressed_tensors;
    c.params.gain_correction = gain;
    c.params.clip_cross = false;  // (with it a group's corrected error moves the later groups' clips)
    c.calibration_samples = 2;
    c.ctx = 64;
    c.calibration_data = *calib;
    auto q = std::make_unique<AwqQuantizer>(*src, c);
    q->run();
    return q;
  };
  const auto off = run(false), on = run(true);
  // Block 0 sees the same inputs in both runs; every linear is clipped (q/k on the symmetric clamps).
  for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}) {
    const std::string name = std::string("model.layers.0.") + m;
    INFO(name);
    const GptqMatrix &a = off->matrix(name), &b = on->matrix(name);
    CHECK(a.codes == b.codes);
    CHECK(a.zeros == b.zeros);
    size_t moved = 0, up = 0;
    for (size_t i = 0; i < a.scales.size(); ++i) {
      const double f = b.scales[i] / a.scales[i];
      CHECK((f >= 0.5 * 0.999 && f <= 2 * 1.001));
      moved += b.scales[i] != a.scales[i];
      up += b.scales[i] > a.scales[i];
    }
    CHECK(moved > a.scales.size() / 2);
    CHECK(up > moved / 2);  // mostly lengthened: the clamp and the refit shorten
  }
}

TEST_CASE("awq --gptq: AWQ's scales then GPTQ's rounding, the same bytes streamed, the CLI says so", "[awq][gptq]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) {
    test::skip("the tiny model or the calibration text is missing (../shared)");
    return;
  }
  auto src = ModelSource::open(*dir);
  AwqConfig c = test::small_awq_config(*calib, 4, 64);
  AwqParams bad = c.params;
  bad.gptq_act_order = true;  // act-order without GPTQ's rounding
  CHECK_THROWS_AS(validate(bad), Error);
  auto run = [&](bool gptq, bool act) {
    AwqConfig k = c;
    k.params.gptq_rounding = gptq;
    k.params.gptq_act_order = act;
    auto q = std::make_unique<AwqQuantizer>(*src, k);
    q->run();
    return q;
  };
  const auto clip = run(false, false), gq = run(true, false), ga = run(true, true);
  // Block 0 sees the same inputs in all three runs, so its scale search is the same; its
  // linears' calibration output error is lower with GPTQ's error feedback than with the clip and
  // round to nearest, over the seven linears and on most of them.
  REQUIRE(clip->summary().groups.size() == gq->summary().groups.size());
  for (size_t i = 0; i < 3; ++i) {
    CHECK(clip->summary().groups[i].alpha == gq->summary().groups[i].alpha);
    CHECK(clip->summary().groups[i].loss == gq->summary().groups[i].loss);
  }
  CHECK(gq->summary().clipped_linears == 42);  // every linear fitted on its inputs (by GPTQ)
  const auto& lc = clip->summary().gptq.layers;
  const auto& lg = gq->summary().gptq.layers;
  REQUIRE(lc.size() == lg.size());
  double sum_c = 0, sum_g = 0;
  int lower = 0, n0 = 0;
  for (size_t i = 0; i < lc.size(); ++i) {
    REQUIRE(lc[i].module == lg[i].module);
    if (lc[i].layer != 0) continue;
    ++n0;
    sum_c += lc[i].loss, sum_g += lg[i].loss;
    lower += lg[i].loss < lc[i].loss;
  }
  INFO("block 0 relative output error: clip " << sum_c << ", GPTQ " << sum_g << "; lower on " << lower << " of " << n0);
  CHECK(n0 == 7);
  CHECK(sum_g < sum_c);
  CHECK(lower >= 5);
  // Act-order changes the codes.
  CHECK(ga->matrix("model.layers.0.mlp.down_proj").codes != gq->matrix("model.layers.0.mlp.down_proj").codes);

  // The streamed run writes the whole-model quantizer's bytes.
  test::TempDir tmp;
  AwqConfig k = c;
  k.params.gptq_rounding = true;
  k.params.gptq_act_order = true;
  ga->write(tmp / "memory");
  const AwqResult streamed = awq_model(*dir, tmp / "stream", k);
  CHECK(test::files_below(tmp / "memory") == test::files_below(tmp / "stream"));
  CHECK(streamed.clipped_linears == 42);

  // The CLI: the result says how it rounded.
  const auto r = test::run(test::cli_path() + " --format json quantize " + dir->string() + " awq --gptq --act-order --layout compressed-tensors " +
                           "--calibration-samples 4 --ctx 64 --calibration-data " + calib->string() + " -o " +
                           (tmp / "cli").string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["rounding"] == "gptq");
  CHECK(j["act_order"] == true);
  CHECK(j["gptq_linears"] == 42);
  CHECK_FALSE(j.contains("clipped_linears"));
  CHECK(j["damp_raises"] == 0);
  CHECK(j["damp"] == 0.01);
  CHECK(j["layer_summary"][0]["damp"] == 0.01);
  // GPTQ's knobs: another dampening and scale search give other bytes, reported.
  const auto r2 = test::run(test::cli_path() + " --format json quantize " + dir->string() + " awq --gptq --damp 0.1 " +
                            "--scale-search 0 --layout compressed-tensors --calibration-samples 4 --ctx 64 " +
                            "--calibration-data " + calib->string() + " -o " + (tmp / "cli2").string());
  INFO(r2.err);
  REQUIRE(r2.status == 0);
  const auto j2 = nlohmann::json::parse(r2.out);
  CHECK(j2["damp"] == 0.1);
  CHECK(j2["layer_summary"][0]["damp"] == 0.1);
  CHECK(test::files_below(tmp / "cli2") != test::files_below(tmp / "cli"));
  CHECK(test::files_below(tmp / "cli") == test::files_below(tmp / "stream"));
}

TEST_CASE("awq: the scale search in bf16 costs the candidates as in float, any thread count, streamed alike", "[awq][cli]") {
  const auto t = test::tiny_with_calibration();
  if (!t) return;  // skipped (shared_file)
  const std::optional<fs::path> dir = t->dir, calib = t->calib;
  auto src = ModelSource::open(*dir);
  const AwqConfig c = test::small_awq_config(*calib, 4, 64);
  auto run = [&](bool bf16, int threads) {
    AwqConfig k = c;
    k.params.search_bf16 = bf16;
    auto q = std::make_unique<AwqQuantizer>(*src, k);
    Context ctx;
    ctx.threads = threads;
    q->run(ctx);
    return q;
  };
  const auto f = run(false, 2), b = run(true, 2), b1 = run(true, 1);
  // Block 0 sees the same inputs in both runs: each group's loss of the identity (the unscaled
  // weights' round to nearest) and of its best candidate are the float search's, up to bf16's
  // rounding of the weights and activations (2^-9 relative), and never the same to the bit.
  const auto& gf = f->summary().groups;
  const auto& gb = b->summary().groups;
  REQUIRE(gf.size() == gb.size());
  REQUIRE(gf.size() >= 3);
  bool moved = false;
  for (size_t i = 0; i < 3; ++i) {
    INFO(gf[i].group << ": identity " << gf[i].identity_loss << " / " << gb[i].identity_loss << ", best " << gf[i].loss
                     << " / " << gb[i].loss);
    CHECK(gb[i].identity_loss == Approx(gf[i].identity_loss).epsilon(0.02));
    CHECK(gb[i].loss == Approx(gf[i].loss).epsilon(0.05));
    CHECK(gb[i].loss <= gb[i].identity_loss);
    moved = moved || gb[i].identity_loss != gf[i].identity_loss;
  }
  CHECK(moved);
  // The whole model's linears end as close to their float weights on the calibration tokens.
  double ef = 0, eb = 0;
  const auto& lf = f->summary().gptq.layers;
  const auto& lb = b->summary().gptq.layers;
  REQUIRE(lf.size() == lb.size());
  for (size_t i = 0; i < lf.size(); ++i) ef += lf[i].loss, eb += lb[i].loss;
  CHECK(eb < 1.05 * ef);
  // The products do not depend on the thread count, and the streamed run writes the same bytes.
  test::TempDir tmp;
  b->write(tmp / "two");
  b1->write(tmp / "one");
  CHECK(test::files_below(tmp / "two") == test::files_below(tmp / "one"));
  AwqConfig k = c;
  k.params.search_bf16 = true;
  awq_model(*dir, tmp / "stream", k);
  CHECK(test::files_below(tmp / "two") == test::files_below(tmp / "stream"));

  // The default follows the checkpoint's dtype (the tiny model's linears are bf16), as the result
  // says; --calibration-activations f32 keeps the float search; anything else is exit 2.
  const std::string args = dir->string() + " awq --calibration-samples 2 --ctx 64 --calibration-data " + calib->string();
  CHECK(test::quantize_json_field(args + " -o " + (tmp / "cli").string(), "search_products") == "bf16");
  CHECK(test::quantize_json_field(args + " --calibration-activations f32 -o " + (tmp / "cli32").string(),
                                  "search_products") == "f32");
  CHECK(AwqQuantizer(*src, c).summary().search_bf16);
  const auto bad = test::run(test::cli_path() + " quantize " + args + " --calibration-activations fp8 -o " +
                             (tmp / "bad").string());
  CHECK(bad.status == 2);
  CHECK(bad.err.find("expected 'f32' or 'bf16'") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp / "bad"));
}
