// Inference engine: perplexity and greedy generation against llama.cpp / the model card, batched
// vs token-by-token consistency, hooks, weight replacement, RoPE variants, kernels, bad input.
#include <lq/backend.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/gguf.hpp>

#include "kernels/cpu/arch.hpp"
#include "kernels/cpu/engine_kernels.hpp"
#include "engine/impl.hpp"
#include "core/float_cast.hpp"
#include "core/half.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <fstream>
#include <random>

using namespace lq;

namespace {

std::vector<int32_t> eval_tokens() {
  auto p = test::shared_file("golden/eval-tokens.i32");
  if (!p) return {};
  std::ifstream in(*p, std::ios::binary);
  std::vector<int32_t> v(std::filesystem::file_size(*p) / 4);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  return v;
}

std::unique_ptr<Model> golden_model(const std::string& rel) {
  auto p = test::shared_file(rel);
  if (!p) return nullptr;
  return Model::load(*p);
}

double max_abs_diff(std::span<const float> a, std::span<const float> b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

// A small random model written as GGUF: 2 blocks, n_embd 64, 4 heads / 2 KV heads, ff 128.
struct ToySpec {
  test::ToyShape shape{.context_length = 128};
  bool neox_permuted = false;  // q/k rows of each head reordered (2i, 2i+1) -> (i, i + d/2)
  uint32_t seed = 7;
};

void write_toy(const std::filesystem::path& path, const ToySpec& s) {
  const int64_t hd = s.shape.d / s.shape.heads;
  const auto neox_permute = [&](const test::TensorShape& t, std::vector<float>& v) {
    const bool qk = t.name.find("attn_q.") != std::string::npos || t.name.find("attn_k.") != std::string::npos;
    if (!s.neox_permuted || !qk) return;
    // rows (or bias entries) of each head: new[i] = old[2i], new[i + hd/2] = old[2i + 1]
    const std::vector<float> o = v;
    const int64_t cols = t.ne[0], rows = t.ne.size() > 1 ? t.ne[1] : 1;
    const int64_t n_out = t.ne.size() == 1 ? cols : rows, stride = t.ne.size() == 1 ? 1 : cols;
    for (int64_t h0 = 0; h0 < n_out; h0 += hd)
      for (int64_t i = 0; i < hd / 2; ++i)
        for (int64_t c = 0; c < stride; ++c) {
          v[static_cast<size_t>((h0 + i) * stride + c)] = o[static_cast<size_t>((h0 + 2 * i) * stride + c)];
          v[static_cast<size_t>((h0 + i + hd / 2) * stride + c)] = o[static_cast<size_t>((h0 + 2 * i + 1) * stride + c)];
        }
  };
  test::write_toy_gguf(path, s.shape, s.seed, [](const test::TensorShape&) { return 0.2f; }, neox_permute);
}

std::unique_ptr<Model> toy_model(const test::TempDir& dir, const ToySpec& s, const std::string& name) {
  const auto p = dir / name;
  write_toy(p, s);
  return Model::load(p);
}

// The toy as Qwen2: q/k/v biases, tied embeddings.
std::unique_ptr<Model> qwen2_toy(const test::TempDir& dir) {
  ToySpec s;
  s.shape.arch = "qwen2";
  s.shape.biases = true;
  s.shape.tied = true;
  return toy_model(dir, s, "toy.gguf");
}

// Matches an Error of code invalid_argument.
auto invalid_arg() {
  return Catch::Predicate<Error>([](const Error& e) { return e.code() == Errc::invalid_argument; });
}

// The logits after a five-token prompt (a 16-position session), for before/after comparisons.
std::vector<float> prompt_logits(const Model& model) {
  const std::vector<int32_t> prompt = {1, 434, 461, 261, 409};
  Session s(model, SessionOptions{16, false});
  s.eval(prompt);
  auto l = s.logits(0);
  return std::vector<float>(l.begin(), l.end());
}

}  // namespace

TEST_CASE("engine: tensor buffers, small from the allocator and large mapped, aligned and writable", "[engine]") {
  for (const size_t n : {size_t{1}, size_t{100}, (size_t{1} << 20) - 1, size_t{1} << 20, (size_t{3} << 20) + 5}) {
    INFO(n);
    engine::Buffer b(n);
    REQUIRE(b.size() == n);
    CHECK_FALSE(b.is_shared());
    CHECK(reinterpret_cast<uintptr_t>(b.data()) % 64 == 0);
    for (size_t i = 0; i < n; i += 4093) b.data()[i] = static_cast<uint8_t>(i);
    b.data()[n - 1] = 7;
    engine::Buffer moved = std::move(b);
    CHECK(moved.size() == n);
    CHECK(moved.data()[n - 1] == 7);
    if (n > 4093) CHECK(moved.data()[4093] == static_cast<uint8_t>(4093));
  }
  CHECK(engine::Buffer(0).size() == 0);
}

TEST_CASE("engine: perplexity of the tiny model matches llama-perplexity", "[engine]") {
  const auto tokens = eval_tokens();
  if (tokens.empty()) return;
  // llama-perplexity -c 256 --chunks 4 -t 2 on corpus/eval.txt (llama.cpp d32676d, CPU build).
  const std::vector<std::pair<std::string, double>> cases = {
      {"golden/tiny-llama-BF16.gguf", 12.2140}, {"golden/pure/Q8_0.gguf", 12.2025}, {"golden/pure/Q4_0.gguf", 12.4083}};
  for (const auto& [rel, want] : cases) {
    auto model = golden_model(rel);
    if (!model) continue;
    PerplexityOptions o;
    o.ctx = 256;
    o.chunks = 4;
    const PerplexityResult r = perplexity(*model, tokens, o);
    INFO(rel << ": ppl " << r.ppl);
    CHECK(r.n_chunks == 4);
    CHECK(r.n_scored == 4 * 127);
    CHECK(std::fabs(r.ppl / want - 1) < 2e-3);
  }
}

TEST_CASE("engine: full-window perplexity scores every token once", "[engine]") {
  const auto tokens = eval_tokens();
  auto model = golden_model("golden/tiny-llama-BF16.gguf");
  if (!model || tokens.empty()) return;
  PerplexityOptions o;
  o.ctx = 256;
  o.full_window = true;
  const std::span<const int32_t> head(tokens.data(), 600);
  const PerplexityResult r = perplexity(*model, head, o);
  CHECK(r.n_chunks == 3);  // 255 + 255 + 90
  CHECK(r.n_scored == 600);
  CHECK(r.ppl > 5);
  CHECK(r.ppl < 30);
}

TEST_CASE("engine: greedy generation reproduces the model card", "[engine]") {
  auto model = golden_model("golden/tiny-llama-BF16.gguf");
  if (!model) return;
  // Prompt ids and 40 greedy continuations from shared/models/tiny-llama/README.md.
  const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> cases = {
      {{1, 434, 461, 261, 409},
       {1973, 405, 283, 261, 397, 447, 557, 382, 1965, 314, 548, 270, 367, 344, 318, 696, 267, 823, 1848, 1959,
        1965, 431, 359, 1973, 335, 421, 261, 408, 1973, 945, 695, 1965, 314, 442, 270, 367, 344, 308, 1973, 417}},
      {{1, 288, 397, 648},
       {283, 387, 413, 1965, 288, 648, 283, 413, 267, 814, 265, 648, 1965, 13, 13, 1983, 1956, 336, 461, 261,
        409, 1973, 405, 283, 261, 397, 447, 557, 382, 1965, 314, 548, 270, 367, 344, 318, 696, 267, 823, 1848}}};
  for (const auto& [prompt, want] : cases) {
    Session s(*model, SessionOptions{128, false});
    GenerateOptions g;
    g.temperature = 0;
    g.max_tokens = 40;
    g.stop_at_eos = false;
    CHECK(generate(s, prompt, g) == want);
    CHECK(s.n_past() == static_cast<int64_t>(prompt.size() + want.size() - 1));
  }
}

TEST_CASE("engine: sampling is seeded and bounded", "[engine]") {
  test::TempDir dir;
  auto model = toy_model(dir, ToySpec{}, "toy.gguf");
  const std::vector<int32_t> prompt = {1, 5, 9};
  GenerateOptions g{.max_tokens = 20, .temperature = 1.0f, .top_k = 10, .top_p = 0.9f, .seed = 42, .stop_at_eos = false};
  Session a(*model), b(*model);
  const auto ra = generate(a, prompt, g), rb = generate(b, prompt, g);
  CHECK(ra == rb);
  CHECK(ra.size() == 20);
  for (int32_t t : ra) CHECK((t >= 0 && t < 96));
  g.seed = 43;
  Session c(*model);
  CHECK(generate(c, prompt, g) != ra);
  g.top_k = 1;  // top-1 sampling is greedy
  Session d(*model), e(*model);
  GenerateOptions greedy = g;
  greedy.temperature = 0;
  CHECK(generate(d, prompt, g) == generate(e, prompt, greedy));
}

TEST_CASE("engine: batched prompt processing equals token-by-token decode", "[engine]") {
  const auto tokens = eval_tokens();
  if (tokens.empty()) return;
  // Float weights: the same products up to summation order. Quantized weights quantize the
  // activations per row, so a last-bit difference between the tiled (batched) and the single
  // dot (decode) kernels can flip one rounding step: small, rare differences remain.
  const std::vector<std::tuple<const char*, double, double>> cases = {
      {"golden/tiny-llama-BF16.gguf", 2e-3, 1e-4}, {"golden/pure/Q8_0.gguf", 0.5, 0.02}, {"golden/pure/Q4_1.gguf", 0.5, 0.02}};
  for (const auto& [rel, max_tol, mean_tol] : cases) {
    auto model = golden_model(rel);
    if (!model) continue;
    INFO(rel);
    const int64_t n = 40;
    std::vector<int32_t> prompt(tokens.begin(), tokens.begin() + n);
    prompt[0] = 1;
    Session batched(*model, SessionOptions{64, false});
    batched.eval(prompt, 0);
    REQUIRE(batched.n_outputs() == n);
    Session stepwise(*model, SessionOptions{64, false});
    // a split batch in the middle: 7 tokens at once, then one at a time
    stepwise.eval(std::span<const int32_t>(prompt.data(), 7), 0);
    double worst = 0, sum = 0;
    int same_top = 0;
    auto compare = [&](std::span<const float> a, std::span<const float> b) {
      worst = std::max(worst, max_abs_diff(a, b));
      for (size_t j = 0; j < a.size(); ++j) sum += std::fabs(a[j] - b[j]);
      same_top += std::max_element(a.begin(), a.end()) - a.begin() == std::max_element(b.begin(), b.end()) - b.begin();
    };
    for (int64_t i = 0; i < 7; ++i) compare(stepwise.logits(i), batched.logits(i));
    for (int64_t i = 7; i < n; ++i) {
      stepwise.eval(std::span<const int32_t>(prompt.data() + i, 1));
      compare(stepwise.logits(0), batched.logits(i));
    }
    CHECK(worst < max_tol);
    CHECK(sum / static_cast<double>(n * model->n_vocab()) < mean_tol);
    CHECK(same_top >= n - 1);
  }
}

TEST_CASE("engine: an F16 KV cache holds binary16 values", "[engine]") {
  // The rounding itself: bit for bit the F16 tensor format's (ties to even, subnormals, overflow).
  std::vector<float> v = {0.f, -0.f, 1.f, 1.00048828125f, 1.000732421875f, -3.14159f, 65504.f, 65520.f, -1e6f,
                          5.9604645e-8f, 2.9802322e-8f, 4.4703484e-8f, 1e-6f, 6.1035156e-5f};
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 4.f);
  for (int i = 0; i < 5000; ++i) v.push_back(nd(rng) * std::exp2(static_cast<float>(i % 40 - 28)));
  std::vector<float> r = v;
  engine::round_to_half(engine::Exec::with_threads(2), v.data(), r.data(), static_cast<int64_t>(r.size()));
  for (size_t i = 0; i < v.size(); ++i) {
    INFO(v[i]);
    CHECK(std::bit_cast<uint32_t>(r[i]) == std::bit_cast<uint32_t>(fp16_to_f32(f32_to_fp16(v[i]))));
  }
  // In a session: outputs move by the rounding, and a batch still equals token-by-token decode
  // (each cached value is rounded once, whatever the batch).
  auto model = golden_model("golden/tiny-llama-F16.gguf");
  if (!model) return;
  const std::vector<int32_t> prompt = {1, 434, 461, 261, 409, 1973, 405, 283, 261, 397, 447, 302};
  const int64_t n = static_cast<int64_t>(prompt.size());
  SessionOptions f16o{32, 0, false};
  f16o.kv_f16 = true;
  Session f32(*model, SessionOptions{32, false}), f16(*model, f16o), step(*model, f16o);
  f32.eval(prompt, 0);
  f16.eval(prompt, 0);
  step.eval(std::span<const int32_t>(prompt.data(), 5), 0);
  double moved = 0, worst_step = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (i >= 5) step.eval(std::span<const int32_t>(prompt.data() + i, 1));
    moved = std::max(moved, max_abs_diff(f16.logits(i), f32.logits(i)));
    worst_step = std::max(worst_step, max_abs_diff(f16.logits(i), step.logits(i < 5 ? i : 0)));
  }
  CHECK(moved > 0);
  CHECK(moved < 0.05);
  CHECK(worst_step < 2e-3);
}

TEST_CASE("engine: llama.cpp's activation rounding (bf16 for BF16 weights and binary16 for F16 ones)", "[engine]") {
  for (const bool f16 : {false, true}) {
    auto model = golden_model(f16 ? "golden/tiny-llama-F16.gguf" : "golden/tiny-llama-BF16.gguf");
    if (!model) continue;
    INFO((f16 ? "F16" : "BF16"));
    const auto round = [&](float x) { return f16 ? fp16_to_f32(f32_to_fp16(x)) : bf16_to_f32(f32_to_bf16(x)); };
    Session s(*model, SessionOptions{64, false, true});
    double worst_rounded = 0, worst_exact = 0;
    int64_t checked = 0;
    s.set_linear_hook([&](const LinearEvent& e) {
      if (e.n_tokens < 4) return;  // single tokens keep float activations
      const auto w = model->tensor_f32(e.linear->name);
      for (int64_t t = 0; t < e.n_tokens; t += 3)
        for (int64_t j = 0; j < e.linear->n_out; j += 29) {
          double rounded = 0, exact = 0;
          for (int64_t i = 0; i < e.linear->n_in; ++i) {
            const float x = e.input[t * e.linear->n_in + i];
            rounded += double(round(x)) * w[j * e.linear->n_in + i];
            exact += double(x) * w[j * e.linear->n_in + i];
          }
          const double y = e.output[t * e.linear->n_out + j];
          worst_rounded = std::max(worst_rounded, std::fabs(rounded - y) / (1 + std::fabs(rounded)));
          worst_exact = std::max(worst_exact, std::fabs(exact - y) / (1 + std::fabs(exact)));
          ++checked;
        }
    });
    const std::vector<int32_t> prompt = {1, 434, 461, 261, 409, 1973, 405, 283, 261, 397, 447};
    s.eval(prompt, 0);
    REQUIRE(checked > 0);
    CHECK(worst_rounded < (f16 ? 1e-5 : 1e-4));
    // the rounding did act (BF16: on the panel kernel, or rounded before the float GEMM elsewhere)
    CHECK(worst_exact > (f16 ? 1e-5 : 1e-4));
  }
}

TEST_CASE("engine: hook sees every linear layer with its shapes", "[engine]") {
  auto model = golden_model("golden/tiny-llama-BF16.gguf");
  if (!model) return;
  const ModelConfig& c = model->config();
  Session s(*model, SessionOptions{64, true});
  std::vector<std::string> seen;
  double worst = 0;
  s.set_linear_hook([&](const LinearEvent& e) {
    seen.push_back(e.linear->name);
    CHECK(e.linear->n_in == model->tensor_shape(e.linear->name)[0]);
    CHECK(e.linear->n_out == model->tensor_shape(e.linear->name)[1]);
    // output == input * W^T for a few entries
    const auto w = model->tensor_f32(e.linear->name);
    for (int64_t t = 0; t < e.n_tokens; t += 5)
      for (int64_t j = 0; j < e.linear->n_out; j += 37) {
        double acc = 0;
        for (int64_t i = 0; i < e.linear->n_in; ++i) acc += double(e.input[t * e.linear->n_in + i]) * w[j * e.linear->n_in + i];
        worst = std::max(worst, std::fabs(acc - e.output[t * e.linear->n_out + j]) / (1 + std::fabs(acc)));
      }
  });
  const std::vector<int32_t> prompt = {1, 434, 461, 261, 409, 1973, 405, 283, 261, 397, 447};
  s.eval(prompt, 6);
  CHECK(worst < 1e-4);
  REQUIRE(seen.size() == static_cast<size_t>(7 * c.n_layer + 1));
  CHECK(seen.front() == "blk.0.attn_q.weight");
  CHECK(seen[6] == "blk.0.ffn_down.weight");
  CHECK(seen.back() == "output.weight");
  std::vector<std::string> names;
  for (const auto& l : model->linears()) names.push_back(l.name);
  CHECK(seen == names);
  // saved activations are the hook inputs
  const LayerActivations& a0 = s.activations(0);
  CHECK(a0.attn_norm.size() == prompt.size() * static_cast<size_t>(c.n_embd));
  CHECK(a0.act.size() == prompt.size() * static_cast<size_t>(c.n_ff));
  CHECK(s.output_norm_activations().size() == 5 * static_cast<size_t>(c.n_embd));
  s.set_linear_hook({});
  s.clear();
  s.eval(prompt);
  CHECK(seen.size() == static_cast<size_t>(7 * c.n_layer + 1));
}

TEST_CASE("engine: hook_inputs_only skips the last product only when no logits are wanted", "[engine]") {
  auto model = golden_model("golden/tiny-llama-BF16.gguf");
  if (!model) return;
  const std::vector<int32_t> prompt = {1, 434, 461, 261, 409, 1973, 405, 283, 261, 397, 447};
  const int64_t n = static_cast<int64_t>(prompt.size());
  // every product's input, in forward order, and which outputs were shown
  auto run = [&](bool inputs_only, int64_t first_output, std::vector<int>* null_outputs) {
    SessionOptions o{64, false};
    o.hook_inputs_only = inputs_only;
    Session s(*model, o, Context{2});
    std::vector<std::vector<float>> ins;
    int idx = 0;
    s.set_linear_hook([&](const LinearEvent& e) {
      ins.emplace_back(e.input, e.input + e.n_tokens * e.linear->n_in);
      if (!e.output && null_outputs) null_outputs->push_back(idx);
      ++idx;
    });
    s.eval(prompt, first_output);
    return ins;
  };
  std::vector<int> skipped, kept;
  const auto full = run(false, n, nullptr);
  const auto lean = run(true, n, &skipped);
  REQUIRE(lean.size() == full.size());
  CHECK(lean == full);  // the same inputs, bit for bit
  const int n_layer = static_cast<int>(model->config().n_layer);
  CHECK(skipped == std::vector<int>{7 * n_layer - 1});  // the last ffn_down only
  run(true, n - 1, &kept);                              // logits wanted: nothing skipped
  CHECK(kept.empty());
}

TEST_CASE("engine: replacing weights changes and restores the outputs", "[engine]") {
  auto model = golden_model("golden/tiny-llama-BF16.gguf");
  if (!model) return;
  auto run = [&] { return prompt_logits(*model); };
  const auto base = run();
  const std::string name = "blk.2.ffn_down.weight";
  const auto original = model->tensor_f32(name);
  REQUIRE(model->tensor_type(name) == QuantType::BF16);

  model->replace_tensor(name, std::vector<float>(original.size(), 0.f));
  CHECK(model->tensor_type(name) == QuantType::F32);
  CHECK(model->find_linear(name)->type == QuantType::F32);
  const auto zeroed = run();
  CHECK(max_abs_diff(zeroed, base) > 0.1);

  model->replace_tensor(name, original, QuantType::Q8_0);  // quantized on the way in
  CHECK(model->tensor_type(name) == QuantType::Q8_0);
  const auto q8 = run();
  CHECK(max_abs_diff(q8, base) > 0);
  CHECK(max_abs_diff(q8, base) < 0.1);

  model->replace_tensor(name, original);  // bf16 values are exact in F32
  CHECK(max_abs_diff(run(), base) < 1e-4);

  std::vector<uint8_t> bytes(original.size() * 2);
  Registry::instance().quantize(QuantType::BF16)(original.data(), bytes.data(), 1, static_cast<int64_t>(original.size()), nullptr);
  model->replace_tensor(name, QuantType::BF16, bytes);
  CHECK(max_abs_diff(run(), base) == 0);

  // norms take F32 values
  const auto norm = model->tensor_f32("output_norm.weight");
  std::vector<float> doubled(norm);
  for (auto& v : doubled) v *= 2;
  model->replace_tensor("output_norm.weight", doubled);
  CHECK(max_abs_diff(run(), base) > 0.1);
  model->replace_tensor("output_norm.weight", norm);
  CHECK(max_abs_diff(run(), base) == 0);

  CHECK_THROWS_MATCHES(model->replace_tensor("nope.weight", original), Error,
                       invalid_arg());
  CHECK_THROWS_MATCHES(model->replace_tensor(name, QuantType::BF16, std::span<const uint8_t>(bytes.data(), 10)), Error,
                       invalid_arg());
  CHECK_THROWS_MATCHES(model->replace_tensor("output_norm.weight", QuantType::BF16, bytes), Error,
                       invalid_arg());
}

TEST_CASE("engine: a released weight fails the products that read it until it is replaced", "[engine]") {
  auto model = golden_model("golden/tiny-llama-BF16.gguf");
  if (!model) return;
  auto run = [&] { return prompt_logits(*model); };
  const auto base = run();
  const std::string name = "blk.1.attn_v.weight";
  const auto original = model->tensor_f32(name);
  CHECK_FALSE(detail::ModelAccess::released(*model, name));
  detail::ModelAccess::release_weight(*model, name);
  CHECK(detail::ModelAccess::released(*model, name));
  CHECK_THROWS_WITH(run(), Catch::Contains("were released") && Catch::Contains(name));
  CHECK_THROWS_WITH(model->tensor_f32(name), Catch::Contains("were released"));
  CHECK_THROWS_MATCHES(detail::ModelAccess::release_weight(*model, "output_norm.weight"), Error, invalid_arg());
  model->replace_tensor(name, original, QuantType::BF16);
  CHECK_FALSE(detail::ModelAccess::released(*model, name));
  CHECK(max_abs_diff(run(), base) == 0);
}

TEST_CASE("engine: KL divergence against itself and a quantized copy", "[engine]") {
  const auto tokens = eval_tokens();
  auto ref = golden_model("golden/tiny-llama-BF16.gguf");
  auto q8 = golden_model("golden/pure/Q8_0.gguf");
  if (!ref || !q8 || tokens.empty()) return;
  PerplexityOptions o;
  o.ctx = 256;
  o.chunks = 2;
  const KldResult self = kl_divergence(*ref, *ref, tokens, o);
  CHECK(self.kld_mean == Approx(0).margin(1e-9));
  CHECK(self.same_top_pct == 100.0);
  CHECK(self.ppl == Approx(self.ppl_reference));
  const KldResult r = kl_divergence(*q8, *ref, tokens, o);
  CHECK(r.n_scored == 2 * 127);
  CHECK(r.kld_mean > 0);
  CHECK(r.kld_mean < 0.002);  // llama.cpp: 0.00012 over 100 chunks
  CHECK(r.same_top_pct > 95);
  CHECK(r.kld_p99 >= r.kld_median);
  CHECK(r.kld_max >= r.kld_p99);
  // The paired log ratio of the perplexities, and its uncertainty (0 against itself).
  CHECK(self.ln_ppl_ratio == Approx(0).margin(1e-12));
  CHECK(self.ln_ppl_ratio_error == Approx(0).margin(1e-12));
  CHECK(r.ln_ppl_ratio == Approx(std::log(r.ppl / r.ppl_reference)).epsilon(1e-9).margin(1e-12));
  CHECK(r.ln_ppl_ratio_error > 0);
  CHECK(r.ln_ppl_ratio_error < std::log(1 + r.ppl_error / r.ppl));  // pairing removes most of the text's own spread
}

TEST_CASE("engine: NEOX RoPE (qwen2) equals normal RoPE on permuted q/k rows", "[engine]") {
  test::TempDir dir;
  ToySpec llama;
  ToySpec qwen = llama;
  qwen.shape.arch = "qwen2";
  qwen.neox_permuted = true;
  auto a = toy_model(dir, llama, "llama.gguf");
  auto b = toy_model(dir, qwen, "qwen.gguf");
  const std::vector<int32_t> prompt = {1, 17, 33, 8, 90, 4, 61, 2, 45};
  Session sa(*a), sb(*b);
  sa.eval(prompt, 0);
  sb.eval(prompt, 0);
  CHECK(max_abs_diff(test::all_logits(sa), test::all_logits(sb)) < 1e-4);
  // and the permutation matters for normal RoPE: same rows in a llama model differ
  ToySpec wrong = qwen;
  wrong.shape.arch = "llama";
  auto c = toy_model(dir, wrong, "wrong.gguf");
  Session sc(*c);
  sc.eval(prompt, 0);
  CHECK(max_abs_diff(test::all_logits(sa), test::all_logits(sc)) > 1e-2);
}

TEST_CASE("engine: biases and tied embeddings", "[engine]") {
  test::TempDir dir;
  auto model = qwen2_toy(dir);
  REQUIRE(model->linears().back().name == "token_embd.weight");
  const auto bias = model->tensor_f32("blk.1.attn_v.bias");
  const auto wv = model->tensor_f32("blk.1.attn_v.weight");
  const auto emb = model->tensor_f32("token_embd.weight");
  int checked = 0;
  Session sess(*model);
  sess.set_linear_hook([&](const LinearEvent& e) {
    const auto* w = e.linear->name == "blk.1.attn_v.weight" ? &wv : e.linear->role == "output" ? &emb : nullptr;
    if (!w) return;
    const bool with_bias = w == &wv;
    for (int64_t t = 0; t < e.n_tokens; ++t)
      for (int64_t j = 0; j < e.linear->n_out; ++j) {
        double acc = with_bias ? bias[static_cast<size_t>(j)] : 0.0;
        for (int64_t i = 0; i < e.linear->n_in; ++i) acc += double(e.input[t * e.linear->n_in + i]) * (*w)[j * e.linear->n_in + i];
        CHECK(std::fabs(acc - e.output[t * e.linear->n_out + j]) < 1e-3 * (1 + std::fabs(acc)));
      }
    ++checked;
  });
  const std::vector<int32_t> prompt = {1, 17, 33, 8};
  sess.eval(prompt, 2);
  CHECK(checked == 2);
  // batched vs stepwise with biases and NEOX rope
  Session a(*model), b(*model);
  a.eval(prompt, 0);
  for (size_t i = 0; i < prompt.size(); ++i) {
    b.eval(std::span<const int32_t>(prompt.data() + i, 1));
    CHECK(max_abs_diff(a.logits(static_cast<int64_t>(i)), b.logits(0)) < 1e-4);
  }
}

TEST_CASE("engine: the forward pass split over eval_blocks gives eval's logits bit for bit", "[engine]") {
  test::TempDir dir;
  auto model = qwen2_toy(dir);
  const int L = static_cast<int>(model->config().n_layer);
  REQUIRE(L == 2);
  const std::vector<int32_t> prompt = {1, 17, 33, 8, 5, 60, 2};
  const int64_t first = 3, n = static_cast<int64_t>(prompt.size());
  Session ref(*model);
  ref.eval(prompt, first);
  auto same_logits = [&](Session& t) {
    REQUIRE(t.n_outputs() == n - first);
    for (int64_t i = 0; i < n - first; ++i) {
      const auto a = ref.logits(i), b = t.logits(i);
      CHECK(std::equal(a.begin(), a.end(), b.begin(), [](float x, float y) { return std::bit_cast<uint32_t>(x) == std::bit_cast<uint32_t>(y); }));
    }
  };
  Session t(*model);
  std::vector<float> r;
  // Every split point, the head alone included: the residual leaving one call enters the next.
  for (int split = 0; split <= L; ++split) {
    INFO("split at block " << split);
    t.clear();
    t.eval_blocks(prompt, 0, split, r, n);
    REQUIRE(r.size() == static_cast<size_t>(n * model->config().n_embd));
    CHECK(t.n_outputs() == 0);
    const std::vector<float> entering = r;
    t.clear();
    t.eval_blocks(prompt, split, L, r, first);
    same_logits(t);
    // From the same residual again: the call does not depend on what the session held.
    r = entering;
    t.clear();
    t.eval_blocks(prompt, split, L, r, first);
    same_logits(t);
  }
  // The whole range in one call is eval() and leaves a whole cache: decoding may go on.
  t.clear();
  t.eval_blocks(prompt, 0, L, r, first);
  same_logits(t);
  CHECK_NOTHROW(t.eval(std::vector<int32_t>{4}));
  // Positions run through some blocks only: nothing may attend to them until they are dropped.
  t.clear();
  t.eval_blocks(prompt, 0, 1, r, n);
  CHECK_THROWS_MATCHES(t.eval(std::vector<int32_t>{4}), Error, invalid_arg());
  CHECK_THROWS_MATCHES(t.eval_blocks(prompt, 1, L, r, first), Error, invalid_arg());
  t.truncate(0);
  CHECK_NOTHROW(t.eval_blocks(prompt, 1, L, r, first));
  same_logits(t);
  // Bad ranges and residual sizes.
  t.clear();
  CHECK_THROWS_MATCHES(t.eval_blocks(prompt, 2, 1, r, first), Error, invalid_arg());
  CHECK_THROWS_MATCHES(t.eval_blocks(prompt, 0, L + 1, r, first), Error, invalid_arg());
  std::vector<float> short_r(5);
  CHECK_THROWS_MATCHES(t.eval_blocks(prompt, 1, L, short_r, first), Error, invalid_arg());
}

TEST_CASE("engine: bad input gets invalid_argument", "[engine]") {
  test::TempDir dir;
  auto model = toy_model(dir, ToySpec{}, "toy.gguf");
  ToySpec other;
  other.shape.vocab = 128;
  auto bigger = toy_model(dir, other, "other.gguf");
  auto is_invalid = invalid_arg();
  Session s(*model, SessionOptions{8, false}, Context{1});
  CHECK_THROWS_MATCHES(s.eval({}), Error, is_invalid);
  const std::vector<int32_t> bad = {1, 96};
  CHECK_THROWS_MATCHES(s.eval(bad), Error, is_invalid);
  const std::vector<int32_t> neg = {-1};
  CHECK_THROWS_MATCHES(s.eval(neg), Error, is_invalid);
  const std::vector<int32_t> nine(9, 3);
  CHECK_THROWS_MATCHES(s.eval(nine), Error, is_invalid);  // beyond n_ctx 8
  s.eval(std::span<const int32_t>(nine.data(), 8));
  CHECK_THROWS_MATCHES(s.eval(std::span<const int32_t>(nine.data(), 1)), Error, is_invalid);
  CHECK_THROWS_MATCHES(s.logits(1), Error, is_invalid);
  CHECK_THROWS_MATCHES(s.truncate(9), Error, is_invalid);
  CHECK_THROWS_MATCHES(s.activations(0), Error, is_invalid);

  PerplexityOptions o;
  o.ctx = 16;
  CHECK_THROWS_MATCHES(perplexity(*model, {}, o), Error, is_invalid);
  const std::vector<int32_t> short_text(30, 5);  // + BOS = 31 < 2 * 16
  // Too short for one chunk: the calibration data's fault (exit 15), as in every evaluation.
  const auto is_short = Catch::Predicate<Error>([](const Error& e) { return e.code() == Errc::calibration_error; });
  CHECK_THROWS_MATCHES(perplexity(*model, short_text, o), Error, is_short);
  const std::vector<int32_t> text(31, 5);  // + BOS = 32: two chunks
  CHECK(perplexity(*model, text, o).n_chunks == 2);
  o.ctx = 2;
  CHECK_THROWS_MATCHES(perplexity(*model, text, o), Error, is_invalid);
  o.ctx = 16;
  o.chunks = 0;
  CHECK_THROWS_MATCHES(perplexity(*model, text, o), Error, is_invalid);
  o.chunks = -1;
  CHECK_THROWS_MATCHES(kl_divergence(*model, *bigger, text, o), Error, is_invalid);
  CHECK_THROWS_MATCHES(kl_divergence(*model, *model, short_text, o), Error, is_short);

  Session g(*model);
  CHECK_THROWS_MATCHES(generate(g, {}), Error, is_invalid);
  GenerateOptions go;
  go.top_p = 0;
  const std::vector<int32_t> prompt = {1};
  CHECK_THROWS_MATCHES(generate(g, prompt, go), Error, is_invalid);
}

TEST_CASE("engine: unsupported models are refused as invalid_model", "[engine]") {
  test::TempDir dir;
  ToySpec s;
  s.shape.arch = "gpt2";
  write_toy(dir / "gpt2.gguf", s);
  CHECK_THROWS_MATCHES(Model::load(dir / "gpt2.gguf"), Error,
                       Catch::Predicate<Error>([](const Error& e) { return e.code() == Errc::invalid_model; }));
}

TEST_CASE("engine: GEMM kernel matches a double-precision product", "[engine]") {
  // ragged shapes around the register and cache blocks, every B type, with and without accumulate
  const std::vector<std::array<int64_t, 3>> shapes = {{1, 7, 5}, {2, 33, 64}, {3, 64, 300}, {5, 31, 17},
                                                      {7, 65, 257}, {13, 130, 96}, {100, 40, 520}};
  for (QuantType bt : {QuantType::F32, QuantType::F16, QuantType::BF16}) {
    for (const auto& [m, n, k] : shapes) {
      INFO(type_name(bt) << " m=" << m << " n=" << n << " k=" << k);
      const auto a = test::gaussian(static_cast<size_t>(m * k), 1);
      auto bf = test::gaussian(static_cast<size_t>(n * k), 2);
      std::vector<uint8_t> b(bf.size() * (bt == QuantType::F32 ? 4 : 2));
      Registry::instance().quantize(bt)(bf.data(), b.data(), n, k, nullptr);
      Registry::instance().dequantize(bt)(b.data(), bf.data(), n * k);  // the exact values used
      std::vector<float> c(static_cast<size_t>(m * n), 1.0f);
      for (bool acc : {false, true}) {
        cpu::gemm_nt(cpu::GemmArgs{m, n, k, a.data(), k, b.data(), bt, k, c.data(), n, acc});
        double worst = 0;
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double s = 0;
            for (int64_t p = 0; p < k; ++p) s += double(a[i * k + p]) * bf[j * k + p];
            const double want = acc ? 2 * s : s;  // second pass adds the same product again
            worst = std::max(worst, std::fabs(want - c[i * n + j]) / std::sqrt(double(k)));
          }
        CHECK(worst < 1e-5);
      }
    }
  }
}

TEST_CASE("engine: causal GEMM options give the full product's values where they are needed", "[engine]") {
  // c_causal: C[i][j] for j <= i + off equal the full product's, bit for bit; a_causal: A rows
  // zero past i + off give the full product's C, bit for bit (the skipped terms are exact zeros).
  for (int64_t off : {0, 5, 40, 300}) {
    for (const auto& [m, n, k] : std::vector<std::array<int64_t, 3>>{{7, 40, 64}, {100, 300, 64}, {260, 290, 70}}) {
      INFO("off=" << off << " m=" << m << " n=" << n << " k=" << k);
      const auto a = test::gaussian(static_cast<size_t>(m * k), 5), b = test::gaussian(static_cast<size_t>(n * k), 6);
      std::vector<float> full(static_cast<size_t>(m * n)), part(static_cast<size_t>(m * n), 12345.f);
      cpu::gemm_nt(cpu::GemmArgs{m, n, k, a.data(), k, b.data(), QuantType::F32, k, full.data(), n, false});
      cpu::GemmArgs g{m, n, k, a.data(), k, b.data(), QuantType::F32, k, part.data(), n, false};
      g.c_causal = off;
      cpu::gemm_nt(g);
      int64_t bad = 0;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j <= std::min(n - 1, i + off); ++j) bad += full[i * n + j] != part[i * n + j];
      CHECK(bad == 0);

      // A (m x n, masked) times B2 (k x n): k plays the output width here
      std::vector<float> am(static_cast<size_t>(m * n));
      for (int64_t i = 0; i < m; ++i)
        for (int64_t p = 0; p < n; ++p) am[i * n + p] = p <= i + off ? a[(i * n + p) % a.size()] : 0.f;
      std::vector<float> c1(static_cast<size_t>(m * k)), c2(static_cast<size_t>(m * k));
      cpu::gemm_nt(cpu::GemmArgs{m, k, n, am.data(), n, b.data(), QuantType::F32, n, c1.data(), k, false});
      cpu::GemmArgs h{m, k, n, am.data(), n, b.data(), QuantType::F32, n, c2.data(), k, false};
      h.a_causal = off;
      cpu::gemm_nt(h);
      CHECK(c1 == c2);
    }
  }
}

TEST_CASE("engine: quantized dot kernels match the scalar reference", "[engine]") {
  for (QuantType t : {QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::Q8_0}) {
    const TypeInfo& info = type_info(t);
    const TypeInfo& dt = type_info(info.dot_type);
    for (int64_t n : {32, 256, 4096}) {
      INFO(info.name << " n=" << n);
      const auto x = test::gaussian(static_cast<size_t>(n), 3), y = test::gaussian(static_cast<size_t>(n), 4);
      std::vector<uint8_t> xq(info.row_bytes(n)), yq(dt.row_bytes(n));
      info.quantize_ref(x.data(), xq.data(), 1, n, nullptr);
      dt.quantize_ref(y.data(), yq.data(), 1, n, nullptr);
      const float want = info.dot_ref(n, xq.data(), yq.data());
      const float got = Registry::instance().dot(t)(n, xq.data(), yq.data());
      CHECK(std::fabs(got - want) <= 1e-5f * (1 + std::fabs(want)) + 1e-6f * n);
    }
  }
}

TEST_CASE("engine: 4x4 tile kernels equal their single dots", "[engine]") {
  const std::vector<std::pair<QuantType, cpu::TileFn>> kernels = {
      {QuantType::Q8_0, cpu::tile_q8_0}, {QuantType::Q4_0, cpu::tile_q4_0}, {QuantType::Q5_0, cpu::tile_q5_0}};
  for (const auto& [t, tile] : kernels) {
    for (int64_t k : {32, 96, 2048}) {  // odd block counts exercise the half-filled 512-bit step
      INFO(type_name(t) << " k=" << k);
      const TypeInfo& info = type_info(t);
      const auto w = test::gaussian(static_cast<size_t>(4 * k), 8), x = test::gaussian(static_cast<size_t>(4 * k), 9);
      const size_t ws = info.row_bytes(k), xs = type_info(QuantType::Q8_0).row_bytes(k);
      std::vector<uint8_t> wq(4 * ws), xq(4 * xs);
      info.quantize_ref(w.data(), wq.data(), 4, k, nullptr);
      type_info(QuantType::Q8_0).quantize_ref(x.data(), xq.data(), 4, k, nullptr);
      float y[4 * 6];
      tile(k, wq.data(), ws, xq.data(), xs, y, 6);
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) {
          const float want = info.dot_ref(k, wq.data() + r * ws, xq.data() + c * xs);
          CHECK(std::fabs(y[c * 6 + r] - want) <= 1e-5f * (1 + std::fabs(want)) + 1e-6f * k);
        }
    }
  }
}

TEST_CASE("engine: the grid-error kernel gives the scalar values bit for bit", "[engine]") {
  // Ragged lengths (vector body and tail), clamps inside and outside the values, both widths, and
  // values on the rounding ties (x / s = k + 1/2 exactly) where only round-half-even is right.
  for (const int64_t n : {1, 7, 8, 33, 128}) {
    std::vector<float> x = test::gaussian(static_cast<size_t>(n), static_cast<uint32_t>(n));
    for (int64_t i = 0; i < n; i += 3) x[static_cast<size_t>(i)] = 0.25f * (static_cast<float>(i % 9) - 4.0f + 0.5f);
    for (const float maxq : {7.0f, 15.0f})
      for (const auto& [lo, hi, s, z] : std::vector<std::array<float, 4>>{
               {-1.0f, 1.0f, 0.25f, 4.0f}, {-3.0f, 3.0f, 0.4f, 7.0f}, {-0.3f, 0.8f, 0.0733f, 3.0f}, {0.1f, 0.1f, 0.5f, 0.0f},
               {-INFINITY, INFINITY, 0.1f, 3.0f}}) {  // unclamped: GPTQ's scale search
        INFO("n=" << n << " maxq=" << maxq << " lo=" << lo << " hi=" << hi << " s=" << s << " z=" << z);
        std::vector<float> d(static_cast<size_t>(n), 123.0f);
        cpu::grid_error(n, x.data(), lo, hi, s, z, maxq, d.data());
        int64_t bad = 0;
        for (int64_t i = 0; i < n; ++i) {
          const float v = x[static_cast<size_t>(i)];
          const float q = std::clamp(std::nearbyint(std::clamp(v, lo, hi) / s) + z, 0.0f, maxq);
          bad += std::bit_cast<uint32_t>(s * (q - z) - v) != std::bit_cast<uint32_t>(d[static_cast<size_t>(i)]);
        }
        CHECK(bad == 0);
      }
  }
  // Ties: 0.125 / 0.25 = 0.5 rounds to 0, 0.375 / 0.25 = 1.5 to 2.
  const float t[2] = {0.125f, 0.375f};
  float d[2];
  cpu::grid_error(2, t, -1.0f, 1.0f, 0.25f, 0.0f, 15.0f, d);
  CHECK(d[0] == -0.125f);
  CHECK(d[1] == 0.125f);
}

TEST_CASE("engine: round_half_even_clamped gives nearbyint's codes once clamped", "[engine]") {
  // Ties at every magnitude up to 2^22, values around 2^22 .. 2^24 where the sum loses the
  // fraction, huge values and infinities: the clamped code is nearbyint's.
  std::vector<float> v = test::gaussian(4096, 77);
  for (float& x : v) x *= 40.0f;
  for (int k = -300; k <= 300; ++k) v.push_back(static_cast<float>(k) + 0.5f);
  for (const float big : {0x1p21f, 0x1p22f, 0x1p23f, 0x1p24f, 1e30f})
    for (const float off : {-2.5f, -1.5f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f, 2.5f}) {
      v.push_back(big + off);
      v.push_back(-big + off);
    }
  v.push_back(INFINITY);
  v.push_back(-INFINITY);
  int64_t bad = 0;
  for (const float x : v) {
    bad += round_half_even_clamped(x) != std::nearbyint(x) && std::fabs(x) < 0x1p22f;
    for (const float z : {0.0f, 8.0f, 128.0f})
      for (const float maxq : {7.0f, 15.0f, 255.0f})
        bad += std::clamp(round_half_even_clamped(x) + z, 0.0f, maxq) != std::clamp(std::nearbyint(x) + z, 0.0f, maxq);
  }
  CHECK(bad == 0);
}

TEST_CASE("engine: softmax and SiLU kernels", "[engine]") {
  std::vector<float> x = test::gaussian(37, 5), y = x;
  cpu::softmax_row(37, y.data(), 0.5f);
  double mx = -1e30, sum = 0;
  for (float v : x) mx = std::max<double>(mx, 0.5 * v);
  for (float v : x) sum += std::exp(0.5 * v - mx);
  for (size_t i = 0; i < x.size(); ++i) CHECK(y[i] == Approx(std::exp(0.5 * x[i] - mx) / sum).epsilon(1e-5));
  const auto g = test::gaussian(37, 6), u = test::gaussian(37, 7);
  std::vector<float> o(37);
  cpu::silu_mul(37, g.data(), u.data(), o.data());
  for (size_t i = 0; i < o.size(); ++i) CHECK(o[i] == Approx(g[i] / (1 + std::exp(-g[i])) * u[i]).epsilon(1e-5).margin(1e-7));
}

TEST_CASE("engine: log-softmax sums and a position's KL divergence equal double-precision loops", "[engine]") {
  // Bodies and tails of the 16-element steps (n = 1 .. 32000), a maximum held twice (the first
  // index is the argmax), against the scalar loops perplexity and kl_divergence ran before.
  for (int64_t n : {1, 7, 16, 17, 37, 2053, 32000}) {
    INFO("n = " << n);
    std::vector<float> x = test::gaussian(static_cast<size_t>(n), 21), e = test::gaussian(static_cast<size_t>(n), 22);
    for (float& v : x) v *= 4.0f;
    const size_t hi = static_cast<size_t>(n / 2);
    x[hi] = 30.0f;
    x[static_cast<size_t>(n - 1)] = 30.0f;
    float mx = 0;
    int64_t am = -1;
    const double sum = cpu::sum_exp_row(n, x.data(), &mx, &am);
    CHECK(mx == 30.0f);
    CHECK(am == static_cast<int64_t>(hi));
    double want = 0;
    for (float v : x) want += std::exp(static_cast<double>(v) - mx);
    CHECK(sum == Approx(want).epsilon(1e-6));

    std::vector<float> m = x;
    for (size_t i = 0; i < m.size(); ++i) m[i] += 0.3f * e[i];
    float mm = 0;
    int64_t mam = 0;
    const double msum = cpu::sum_exp_row(n, m.data(), &mm, &mam);
    const float rls = static_cast<float>(std::log(sum)), mls = static_cast<float>(std::log(msum));
    const double k = (static_cast<double>(mx) + rls) - (static_cast<double>(mm) + mls);
    double kl = 0;
    for (int64_t v = 0; v < n; ++v) {
      const double lpr = static_cast<double>(x[static_cast<size_t>(v)]) - mx - rls;
      const double lpm = static_cast<double>(m[static_cast<size_t>(v)]) - mm - mls;
      kl += std::exp(lpr) * (lpr - lpm);
    }
    CHECK(cpu::kld_row(n, x.data(), m.data(), mx, rls, k) == Approx(kl).epsilon(1e-5).margin(1e-12));
    CHECK(cpu::kld_row(n, x.data(), x.data(), mx, rls, 0.0) == 0.0);  // a row against itself
  }
}

TEST_CASE("engine: GELU-tanh and soft-cap kernels equal the C library's tanh within float rounding", "[engine]") {
  // Every vector width's body and tail (n = 1 .. 67), wide arguments (tanh saturating both ways),
  // in place (out = gate), against double-precision references.
  for (int64_t n : {1, 7, 16, 37, 67}) {
    INFO("n = " << n);
    std::vector<float> g = test::gaussian(static_cast<size_t>(n), 11), u = test::gaussian(static_cast<size_t>(n), 12);
    for (int64_t i = 0; i < n; i += 5) g[static_cast<size_t>(i)] *= 8.0f;
    std::vector<float> o(static_cast<size_t>(n)), inplace = g, x = g;
    cpu::gelu_tanh_mul(n, g.data(), u.data(), o.data());
    cpu::gelu_tanh_mul(n, inplace.data(), u.data(), inplace.data());
    CHECK(inplace == o);
    cpu::soft_cap(n, x.data(), 0.125f, 50.0f);
    for (int64_t i = 0; i < n; ++i) {
      const double gi = g[static_cast<size_t>(i)];
      const double want = 0.5 * gi * (1 + std::tanh(0.7978845608 * (gi + 0.044715 * gi * gi * gi))) * u[static_cast<size_t>(i)];
      CHECK(o[static_cast<size_t>(i)] == Approx(want).epsilon(2e-6).margin(1e-7));
      CHECK(x[static_cast<size_t>(i)] == Approx(50.0 * std::tanh(gi * 0.125 / 50.0)).epsilon(2e-6).margin(1e-7));
    }
  }
}
