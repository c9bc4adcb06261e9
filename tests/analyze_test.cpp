// Importance analysis: llama-imatrix's statistics on the tiny model, imatrix file formats, the
// backward pass against finite differences, gradient/Fisher aggregation, super-weight detection
// on a planted weight, checkpoint/resume equality, the CLI's exit codes.
#include <lq/calibration.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/gguf.hpp>
#include <lq/importance.hpp>
#include <lq/io.hpp>
#include <lq/super_weights.hpp>

#include "engine/backward.hpp"
#include "formats/super_weight_json.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

using namespace lq;
namespace fs = std::filesystem;

namespace {

// A small random Llama-family model written as GGUF (F32 weights, no tokenizer).
struct Toy {
  test::ToyShape shape;
  uint32_t seed = 11;
  std::string poison;  ///< a tensor whose first value is NaN
};

void write_toy(const fs::path& path, const Toy& s) {
  test::write_toy_gguf(
      path, s.shape, s.seed, [](const test::TensorShape& t) { return 1.0f / std::sqrt(static_cast<float>(t.ne[0])); },
      [&](const test::TensorShape& t, std::vector<float>& v) {
        if (t.name == s.poison) v[0] = std::nanf("");
      });
}

// Writes `spec` to tmp/toy.gguf and opens it.
std::unique_ptr<ModelSource> open_toy(const test::TempDir& tmp, const Toy& spec) {
  write_toy(tmp / "toy.gguf", spec);
  return ModelSource::open(tmp / "toy.gguf");
}

std::vector<int32_t> random_tokens(size_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> u(3, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> t(n);
  for (auto& x : t) x = u(rng);
  t[0] = 1;
  return t;
}

// Mean next-token cross-entropy of all positions by the engine's own forward pass.
double engine_loss(const Model& model, const std::vector<int32_t>& tokens) {
  Session s(model, SessionOptions{static_cast<int64_t>(tokens.size()), false}, Context{2});
  s.eval(tokens, 0);
  double sum = 0;
  for (size_t t = 0; t + 1 < tokens.size(); ++t) {
    const auto l = s.logits(static_cast<int64_t>(t));
    const float mx = *std::max_element(l.begin(), l.end());
    double z = 0;
    for (float v : l) z += std::exp(static_cast<double>(v - mx));
    sum += std::log(z) - static_cast<double>(l[static_cast<size_t>(tokens[t + 1])] - mx);
  }
  return sum / static_cast<double>(tokens.size() - 1);
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Calls request_interrupt() once `after` chunks are done.
class InterruptAfter final : public Progress {
 public:
  explicit InterruptAfter(int64_t after) : after_(after) {}
  void update(std::string_view, int64_t done, int64_t, std::string_view) override {
    if (done == after_) request_interrupt();
  }

 private:
  int64_t after_;
};

}  // namespace

TEST_CASE("analyze: activation statistics equal llama-imatrix's on the tiny model", "[analyze][golden]") {
  auto model = test::shared_file("models/tiny-llama");
  auto golden = test::shared_file("golden/imatrix.gguf");
  auto text = test::shared_file("corpus/calibration.txt");
  if (!model || !golden || !text) return;
  const Imatrix ref = Imatrix::load(*golden);
  REQUIRE(ref.chunk_count == 64);
  REQUIRE(ref.chunk_size == 256);
  auto src = ModelSource::open(*model);
  // Default (K and V cached as binary16, as llama-imatrix's cache holds them), then a float
  // cache: both within the acceptance's 1e-3; the default an order of magnitude closer.
  for (const bool kv_f16 : {true, false}) {
    INFO("kv_f16 " << kv_f16);
    ImportanceOptions o;
    o.ctx = 256;
    o.samples = 64;  // as the golden file was made (manifest.json "imatrix")
    o.kv_f16 = kv_f16;
    ImportanceAnalyzer an(*src, o);
    an.set_calibration(load_calibration(*text));
    REQUIRE(an.chunks().size() == 64);
    const ImportanceResult res = an.run();
    CHECK(res.kv_f16 == kv_f16);
    REQUIRE(res.imatrix.entries.size() == ref.entries.size());
    double worst_all = 0;
    for (const auto& [name, e] : ref.entries) {
      INFO(name);
      const ImatrixEntry* ours = res.imatrix.find(name);
      REQUIRE(ours != nullptr);
      REQUIRE(ours->n_cols == e.n_cols);
      REQUIRE(ours->counts == e.counts);  // 64 x 256 rows, exactly
      double worst = 0;
      for (int64_t j = 0; j < e.n_cols; ++j) {
        const double a = ours->in_sum2[static_cast<size_t>(j)], b = e.in_sum2[static_cast<size_t>(j)];
        worst = std::max(worst, std::fabs(a - b) / std::max(std::fabs(b), 1e-30));
      }
      CHECK(worst < 1e-3);
      worst_all = std::max(worst_all, worst);
    }
    // Measured: 4.0e-5 with the binary16 cache, 3.1e-4 with a float one.
    if (kv_f16) CHECK(worst_all < 1e-4);
    CHECK(res.imatrix.chunk_count == 64);
    CHECK(res.imatrix.chunk_size == 256);
    CHECK(res.layers.size() == ref.entries.size());
    for (const auto& l : res.layers) {
      CHECK(l.importance_score >= 0);
      CHECK(l.importance_score <= 1);
    }
  }
}

TEST_CASE("analyze: llama.cpp's imatrix files read as recorded, ours round-trip", "[analyze]") {
  auto g = test::shared_file("golden/imatrix.gguf");
  auto d = test::shared_file("golden/imatrix.dat");
  if (!g || !d) return;
  const Imatrix a = Imatrix::load(*g), b = Imatrix::load(*d);
  CHECK(a.entries.size() == 42);  // 6 blocks x 7 weights, no output.weight
  CHECK(b.entries.size() == a.entries.size());
  CHECK(a.datasets.size() == 1);
  CHECK(b.chunk_count == 64);
  for (const auto& [name, e] : a.entries) {
    INFO(name);
    CHECK(e.counts == std::vector<float>{64.f * 256.f});
    const ImatrixEntry* f = b.find(name);
    REQUIRE(f != nullptr);
    CHECK(f->counts == std::vector<float>{64.f});  // ncall = count / chunk size
    const auto ma = e.mean(), mb = f->mean();
    for (size_t j = 0; j < ma.size(); ++j) CHECK(std::fabs(ma[j] - mb[j]) <= 1e-6f * std::fabs(ma[j]));
  }
  test::TempDir tmp;
  a.save_gguf(tmp / "a.gguf");
  const Imatrix a2 = Imatrix::load(tmp / "a.gguf");
  CHECK(a2.chunk_count == a.chunk_count);
  CHECK(a2.chunk_size == a.chunk_size);
  CHECK(a2.datasets == a.datasets);
  for (const auto& [name, e] : a.entries) {
    CHECK(a2.find(name)->in_sum2 == e.in_sum2);
    CHECK(a2.find(name)->counts == e.counts);
  }
  a2.save_gguf(tmp / "a2.gguf");
  CHECK(read_bytes(tmp / "a.gguf") == read_bytes(tmp / "a2.gguf"));
  // Legacy: we write what llama.cpp wrote for the same statistics, byte for byte.
  a.save_dat(tmp / "a.dat");
  CHECK(read_bytes(tmp / "a.dat") == read_bytes(*d));
  const Imatrix b2 = Imatrix::load(tmp / "a.dat");
  b2.save_dat(tmp / "b2.dat");
  CHECK(read_bytes(tmp / "b2.dat") == read_bytes(*d));
}

TEST_CASE("analyze: importance matrices combine as llama-imatrix sums its inputs", "[analyze]") {
  auto g = test::shared_file("golden/imatrix.gguf");
  auto d = test::shared_file("golden/imatrix.dat");
  if (!g || !d) return;
  const Imatrix a = Imatrix::load(*g), b = Imatrix::load(*d);
  REQUIRE(b.counts_in_chunks);
  // Twice the same file: every sum and count doubles; the dataset is listed twice, as
  // llama-imatrix lists it.
  const Imatrix aa = Imatrix::combine({a, a});
  CHECK(aa.chunk_count == 128);
  CHECK(aa.chunk_size == 256);
  CHECK(aa.datasets == std::vector<std::string>{a.datasets[0], a.datasets[0]});
  REQUIRE(aa.entries.size() == a.entries.size());
  for (const auto& [name, e] : a.entries) {
    const ImatrixEntry* c = aa.find(name);
    REQUIRE(c != nullptr);
    for (size_t j = 0; j < e.in_sum2.size(); ++j) CHECK(c->in_sum2[j] == 2 * e.in_sum2[j]);
    CHECK(c->counts == std::vector<float>{2 * e.counts[0]});
  }
  // GGUF + legacy: the legacy file is put in tokens at the GGUF input's 256 tokens per chunk, so
  // the counts match and the means stay llama.cpp's.
  const Imatrix ab = Imatrix::combine({a, b});
  CHECK(ab.chunk_size == 256);
  CHECK(!ab.counts_in_chunks);
  for (const auto& [name, e] : a.entries) {
    INFO(name);
    const ImatrixEntry* c = ab.find(name);
    CHECK(c->counts == std::vector<float>{2 * 64.f * 256.f});
    const auto ma = e.mean(), mc = c->mean();
    for (size_t j = 0; j < ma.size(); ++j) CHECK(std::fabs(ma[j] - mc[j]) <= 1e-6f * std::fabs(ma[j]));
  }
  // A weight with another shape, or inputs with other chunk sizes, are refused.
  Imatrix odd = a;
  odd.entries["blk.0.attn_q.weight"].n_cols = 10;
  odd.entries["blk.0.attn_q.weight"].in_sum2.resize(10);
  auto refused = [](const std::vector<Imatrix>& v, const char* what) {
    CHECK_THROWS_MATCHES(Imatrix::combine(v), Error, Catch::Predicate<Error>([&](const Error& e) {
                           return e.code() == Errc::imatrix_error && std::string(e.what()).find(what) != std::string::npos;
                         }));
  };
  refused({a, odd}, "blk.0.attn_q.weight");
  Imatrix other = a;
  other.chunk_size = 512;
  refused({a, other}, "512");
  // The CLI converts the legacy file to GGUF (llama.cpp's 256 tokens per chunk given).
  test::TempDir tmp;
  const auto r = test::run(test::cli_path() + " --format json analyze combine " + d->string() + " --chunk-size 256 -o " +
                           (tmp / "from-dat.gguf").string());
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["entries"] == 42);
  CHECK(j["chunk_size"] == 256);
  const Imatrix c = Imatrix::load(tmp / "from-dat.gguf");
  for (const auto& [name, e] : a.entries) {
    CHECK(c.find(name)->counts == e.counts);
    const auto ma = e.mean(), mc = c.find(name)->mean();
    for (size_t k = 0; k < ma.size(); ++k) CHECK(std::fabs(ma[k] - mc[k]) <= 1e-6f * std::fabs(ma[k]));
  }
  const std::string lq = test::cli_path() + " analyze combine ";
  for (const auto& [args, code] : std::vector<std::pair<std::string, int>>{
           {(tmp / "none.gguf").string(), 10},
           {g->string() + " --output-format bin", 2},
           {d->string() + " --chunk-size 0", 2},
           {"", 2}}) {
    INFO(args);
    CHECK(test::run(lq + args + " -o " + (tmp / "x.imatrix").string()).status == code);
    CHECK(!fs::exists(tmp / "x.imatrix"));
  }
}

TEST_CASE("analyze: the backward pass matches finite differences of the engine's loss", "[analyze][gradient]") {
  for (const Toy spec : {Toy{}, Toy{.shape = {.arch = "qwen2", .biases = true, .tied = true}, .seed = 5}}) {
    INFO(spec.shape.arch);
    test::TempDir tmp;
    write_toy(tmp / "toy.gguf", spec);
    auto model = Model::load(tmp / "toy.gguf");
    const auto tokens = random_tokens(24, spec.shape.vocab, 3);
    engine::Backprop bp(*model, 2);
    // Our float forward agrees with the engine's.
    const double l0 = engine_loss(*model, tokens);
    CHECK(std::fabs(bp.loss(tokens) - l0) < 1e-5 * l0);

    const auto& lin = model->linears();
    std::vector<char> wanted(lin.size(), 1);
    std::vector<std::vector<float>> grads(lin.size());
    const double loss = bp.run(tokens, wanted, [&](const engine::WeightGrad& g) {
      auto& dw = grads[static_cast<size_t>(g.linear)];
      dw.resize(static_cast<size_t>(g.n_in * g.n_out));
      engine::weight_grad_full(g, dw.data(), 2);
    });
    CHECK(std::fabs(loss - l0) < 1e-5 * l0);
    double worst = 0;
    int checked = 0;
    for (size_t i = 0; i < lin.size(); ++i) {
      INFO(lin[i].name);
      // A tied output shares token_embd with the input: a finite difference there also moves the
      // embedding, whose gradient the backward pass does not compute.
      if (lin[i].role == "output" && spec.shape.tied) continue;
      const auto& g = grads[i];
      REQUIRE(g.size() == static_cast<size_t>(lin[i].n_in * lin[i].n_out));
      // The three largest gradients and two random ones above a tenth of the largest.
      std::vector<size_t> order(g.size());
      for (size_t k = 0; k < order.size(); ++k) order[k] = k;
      std::partial_sort(order.begin(), order.begin() + 3, order.end(),
                        [&](size_t a, size_t b) { return std::fabs(g[a]) > std::fabs(g[b]); });
      std::vector<size_t> pick(order.begin(), order.begin() + 3);
      const float gmax = std::fabs(g[order[0]]);
      std::mt19937 rng(static_cast<uint32_t>(i));
      for (int tries = 0; tries < 1000 && pick.size() < 5; ++tries) {
        const size_t k = rng() % g.size();
        if (std::fabs(g[k]) > 0.1f * gmax) pick.push_back(k);
      }
      const std::vector<float> w0 = model->tensor_f32(lin[i].name);
      for (size_t k : pick) {
        const float eps = 1e-2f;
        std::vector<float> w = w0;
        w[k] = w0[k] + eps;
        model->replace_tensor(lin[i].name, w);
        const double lp = engine_loss(*model, tokens);
        w[k] = w0[k] - eps;
        model->replace_tensor(lin[i].name, w);
        const double lm = engine_loss(*model, tokens);
        const double fd = (lp - lm) / (2.0 * (static_cast<double>(w0[k] + eps) - static_cast<double>(w0[k])));
        const double rel = std::fabs(fd - g[k]) / std::fabs(g[k]);
        worst = std::max(worst, rel);
        ++checked;
        CHECK(rel < 1e-2);
      }
      model->replace_tensor(lin[i].name, w0);
    }
    CHECK(checked >= 5 * static_cast<int>(lin.size() - (spec.shape.tied ? 1 : 0)));
    WARN(spec.shape.arch << ": finite differences on " << checked << " weights, worst relative error " << worst);
  }
}

TEST_CASE("analyze: gradient and Fisher aggregation", "[analyze][gradient]") {
  test::TempDir tmp;
  const Toy spec;
  auto src = open_toy(tmp, spec);
  const auto stream = random_tokens(16 * 3 + 5, spec.shape.vocab, 9);
  std::map<ImportanceMethod, ImportanceResult> res;
  for (auto m : {ImportanceMethod::gradient, ImportanceMethod::fisher}) {
    ImportanceOptions o;
    o.method = m;
    o.ctx = 16;
    o.samples = 8;
    ImportanceAnalyzer an(*src, o);
    an.set_tokens(stream, "random");
    REQUIRE(an.chunks().size() == 3);
    CHECK(an.warnings().size() == 1);  // 3 chunks available, 8 asked
    res[m] = an.run(lq::Context{.threads = 2});
  }
  // Reference: full weight gradients per chunk, reduced here.
  auto model = Model::load(*src);
  const auto& lin = model->linears();
  engine::Backprop bp(*model, 1);
  std::vector<char> wanted(lin.size(), 1);
  std::vector<std::vector<double>> abs_ref(lin.size()), sq_ref(lin.size());
  const auto chunks = make_chunks(stream, 16, 8, model->bos_token());
  for (const auto& ch : chunks)
    bp.run(ch, wanted, [&](const engine::WeightGrad& g) {
      std::vector<float> dw(static_cast<size_t>(g.n_in * g.n_out));
      engine::weight_grad_full(g, dw.data(), 1);
      auto& a = abs_ref[static_cast<size_t>(g.linear)];
      auto& s = sq_ref[static_cast<size_t>(g.linear)];
      a.resize(static_cast<size_t>(g.n_in), 0.0);
      s.resize(static_cast<size_t>(g.n_in), 0.0);
      for (int64_t o = 0; o < g.n_out; ++o)
        for (int64_t j = 0; j < g.n_in; ++j) {
          const double v = dw[static_cast<size_t>(o * g.n_in + j)];
          a[static_cast<size_t>(j)] += std::fabs(v);
          s[static_cast<size_t>(j)] += v * v;
        }
    });
  for (auto m : {ImportanceMethod::gradient, ImportanceMethod::fisher}) {
    const ImportanceResult& r = res[m];
    CHECK(r.mean_loss > 0);
    CHECK(r.imatrix.entries.size() == lin.size() - 1);  // no output.weight by default
    CHECK(r.layers.size() == lin.size() - 1);
    for (size_t i = 0; i < lin.size(); ++i) {
      if (lin[i].role == "output") continue;
      INFO(lin[i].name);
      const ImatrixEntry* e = r.imatrix.find(lin[i].name);
      REQUIRE(e != nullptr);
      CHECK(e->n_cols == lin[i].n_in);
      CHECK(e->counts == std::vector<float>{static_cast<float>(3 * lin[i].n_out)});  // chunks x output rows
      const auto& ref = m == ImportanceMethod::fisher ? sq_ref[i] : abs_ref[i];
      for (int64_t j = 0; j < e->n_cols; ++j)
        CHECK(e->in_sum2[static_cast<size_t>(j)] == Approx(ref[static_cast<size_t>(j)]).epsilon(1e-5));
    }
  }
  CHECK(res[ImportanceMethod::gradient].imatrix.find("blk.0.attn_q.weight")->in_sum2 !=
        res[ImportanceMethod::fisher].imatrix.find("blk.0.attn_q.weight")->in_sum2);
}

TEST_CASE("analyze: results do not depend on the thread count", "[analyze]") {
  test::TempDir tmp;
  const Toy spec{.shape = {.d = 128, .ff = 256}};
  auto src = open_toy(tmp, spec);
  const auto stream = random_tokens(64 * 2, spec.shape.vocab, 4);
  for (auto m : {ImportanceMethod::activation, ImportanceMethod::fisher}) {
    std::string bytes[2];
    for (int t : {1, 2}) {
      ImportanceOptions o;
      o.method = m;
      o.ctx = 64;
      ImportanceAnalyzer an(*src, o);
      an.set_tokens(stream, "random");
      an.run(lq::Context{.threads = t}).imatrix.save_gguf(tmp / "t.gguf");
      bytes[t - 1] = read_bytes(tmp / "t.gguf");
    }
    CHECK(bytes[0] == bytes[1]);
  }
}

TEST_CASE("analyze: auto activation rounding follows llama-imatrix on the same file", "[analyze][golden]") {
  // A BF16 GGUF: bf16-rounded activations, as llama.cpp computes; the Hugging Face checkpoint:
  // exact float ones (llama-imatrix on its F32 conversion). Explicit settings override both.
  // The KV cache holds binary16 in every run (the default), so only the rounding differs.
  auto hf = test::shared_file("models/tiny-llama");
  auto gg = test::shared_file("golden/tiny-llama-BF16.gguf");
  if (!hf || !gg) return;
  const auto run = [](const fs::path& model, ActivationRounding r) {
    auto src = ModelSource::open(model);
    ImportanceOptions o;
    o.ctx = 64;
    o.samples = 4;
    o.activations = r;
    ImportanceAnalyzer an(*src, o);
    std::vector<int32_t> tokens(64 * 4);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(3 + (i * 37) % 1500);
    an.set_tokens(tokens, "synthetic");
    return an.run();
  };
  const auto sums = [](const ImportanceResult& r) {
    std::vector<float> v;
    for (const auto& [name, e] : r.imatrix.entries) v.insert(v.end(), e.in_sum2.begin(), e.in_sum2.end());
    return v;
  };
  const ImportanceResult g_auto = run(*gg, ActivationRounding::automatic), g_bf16 = run(*gg, ActivationRounding::llama),
                         g_exact = run(*gg, ActivationRounding::exact);
  CHECK(g_auto.bf16_activations);
  CHECK_FALSE(g_exact.bf16_activations);
  CHECK(sums(g_auto) == sums(g_bf16));
  CHECK(sums(g_auto) != sums(g_exact));  // the rounding reaches the sums
  const ImportanceResult h_auto = run(*hf, ActivationRounding::automatic);
  CHECK_FALSE(h_auto.bf16_activations);
  CHECK(sums(h_auto) == sums(g_exact));  // same weights, same exact arithmetic
  CHECK_FALSE(g_auto.f16_activations);
  // An F16 GGUF: binary16-rounded activations, as llama.cpp multiplies F16 weights.
  if (auto f16 = test::shared_file("golden/tiny-llama-F16.gguf")) {
    const ImportanceResult f_auto = run(*f16, ActivationRounding::automatic),
                           f_exact = run(*f16, ActivationRounding::exact);
    CHECK_FALSE(f_auto.bf16_activations);
    CHECK(f_auto.f16_activations);
    CHECK_FALSE(f_exact.f16_activations);
    CHECK(sums(f_auto) != sums(f_exact));
  }
  CHECK_THROWS_AS(parse_activation_rounding("fp8"), Error);
}

TEST_CASE("analyze: the result cache returns a matching run's result and misses on any change", "[analyze][cache]") {
  test::TempDir tmp;
  const Toy spec{.shape = {.d = 128, .ff = 256}};
  auto src = open_toy(tmp, spec);
  const auto stream = random_tokens(64 * 3, spec.shape.vocab, 9);
  const auto run = [&](int64_t ctx, ImportanceMethod m = ImportanceMethod::activation) {
    ImportanceOptions o;
    o.method = m;
    o.ctx = ctx;
    o.cache_dir = tmp / "cache";
    ImportanceAnalyzer an(*src, o);
    an.set_tokens(stream, "random");
    return an.run();
  };
  const auto bytes = [&](const ImportanceResult& r) {
    r.imatrix.save_gguf(tmp / "r.gguf");
    return read_bytes(tmp / "r.gguf");
  };
  const ImportanceResult first = run(64);
  CHECK_FALSE(first.from_cache);
  const ImportanceResult again = run(64);
  CHECK(again.from_cache);
  CHECK(again.tokens == 0);
  CHECK(bytes(again) == bytes(first));
  REQUIRE(again.layers.size() == first.layers.size());
  for (size_t i = 0; i < first.layers.size(); ++i) CHECK(again.layers[i].importance_score == first.layers[i].importance_score);
  CHECK_FALSE(run(32).from_cache);  // another ctx
  const ImportanceResult fisher = run(64, ImportanceMethod::fisher);
  CHECK_FALSE(fisher.from_cache);   // another method
  const ImportanceResult fisher2 = run(64, ImportanceMethod::fisher);
  CHECK(fisher2.from_cache);
  CHECK(fisher2.mean_loss == fisher.mean_loss);
  // A damaged entry is ignored (with a warning) and recomputed to the same bytes.
  for (const auto& e : fs::directory_iterator(tmp / "cache"))
    if (e.path().extension() == ".imatrix") std::ofstream(e.path(), std::ios::trunc) << "GGUF";
  const ImportanceResult redone = run(64);
  CHECK_FALSE(redone.from_cache);
  CHECK(bytes(redone) == bytes(first));
  CHECK(!redone.warnings.empty());
}

TEST_CASE("analyze: CLI uses $LLM_QUANTIZE_IMATRIX_CACHE, --no-cache bypasses it", "[analyze][cache][cli]") {
  auto model = test::shared_file("models/tiny-llama");
  auto text = test::shared_file("corpus/calibration.txt");
  if (!model || !text) return;
  test::TempDir tmp;
  const std::string cmd = "LLM_QUANTIZE_IMATRIX_CACHE=" + (tmp / "cache").string() + " " + test::cli_path() +
                          " --format json analyze " + model->string() + " --calibration-data " + text->string() +
                          " --ctx 64 --calibration-samples 2 --checkpoint-dir " + (tmp / "ck").string() + " -o ";
  const auto from_cache = [&](const std::string& extra, const std::string& out) {
    const auto r = test::run(cmd + (tmp / out).string() + extra);
    REQUIRE(r.status == 0);
    return nlohmann::json::parse(r.out)["from_cache"].get<bool>();
  };
  CHECK_FALSE(from_cache("", "a.imatrix"));
  CHECK(from_cache("", "b.imatrix"));
  CHECK_FALSE(from_cache(" --no-cache", "c.imatrix"));
  CHECK(read_bytes(tmp / "a.imatrix") == read_bytes(tmp / "b.imatrix"));
  CHECK(read_bytes(tmp / "a.imatrix") == read_bytes(tmp / "c.imatrix"));
}

TEST_CASE("analyze: a resumed run gives the same bytes as an uninterrupted one", "[analyze][resume]") {
  test::TempDir tmp;
  const Toy spec;
  auto src = open_toy(tmp, spec);
  const auto stream = random_tokens(16 * 6, spec.shape.vocab, 21);
  for (auto m : {ImportanceMethod::activation, ImportanceMethod::fisher}) {
    INFO(importance_method_name(m));
    ImportanceOptions o;
    o.method = m;
    o.ctx = 16;
    {
      ImportanceAnalyzer an(*src, o);
      an.set_tokens(stream, "random");
      an.run(lq::Context{.threads = 2}).imatrix.save_gguf(tmp / "full.gguf");
    }
    const fs::path ck = tmp / "ck";
    ImportanceOptions oi = o;
    oi.checkpoint_dir = ck;
    InterruptAfter stop(2);
    {
      ImportanceAnalyzer an(*src, oi);
      an.set_tokens(stream, "random");
      try {
        an.run(lq::Context{.threads = 2, .progress = &stop});
        FAIL("not interrupted");
      } catch (const Error& e) {
        CHECK(e.code() == Errc::interrupted);
        CHECK(std::string(e.what()).find("2 of 6") != std::string::npos);
      }
    }
    clear_interrupt();
    REQUIRE(fs::exists(ck / (std::string("analyze-") + (m == ImportanceMethod::fisher ? "fisher" : "activation")) /
                       "state.json"));
    // Another ctx, KV cache type or model is refused, naming what differs.
    const auto refused = [&](const ModelSource& model, ImportanceOptions bad, const std::string& what) {
      INFO(what);
      bad.resume = ck;
      ImportanceAnalyzer an(model, bad);
      an.set_tokens(stream, "random");
      CHECK_THROWS_MATCHES(an.run(), Error, Catch::Predicate<Error>([&](const Error& e) {
                             return e.code() == Errc::invalid_argument && std::string(e.what()).find(what) != std::string::npos;
                           }));
    };
    {
      ImportanceOptions bad = o;
      bad.ctx = 8;
      refused(*src, bad, "ctx");
      if (m == ImportanceMethod::activation) {
        ImportanceOptions kv = o;
        kv.kv_f16 = false;
        refused(*src, kv, "KV cache");
      }
      Toy other = spec;
      other.seed = 99;
      write_toy(tmp / "other.gguf", other);
      refused(*ModelSource::open(tmp / "other.gguf"), o, "model");
    }
    ImportanceOptions orr = o;
    orr.checkpoint_dir = ck;
    orr.resume = ck;
    ImportanceAnalyzer an(*src, orr);
    an.set_tokens(stream, "random");
    const ImportanceResult r = an.run();
    CHECK(r.chunks_resumed == 2);
    CHECK(r.chunks == 6);
    r.imatrix.save_gguf(tmp / "resumed.gguf");
    CHECK(read_bytes(tmp / "resumed.gguf") == read_bytes(tmp / "full.gguf"));
    an.remove_checkpoint();
    CHECK(!fs::exists(ck));
  }
}

TEST_CASE("analyze: a planted super weight is found at its coordinates", "[analyze][super]") {
  test::TempDir tmp;
  const Toy spec{.shape = {.layers = 4}};
  write_toy(tmp / "toy.gguf", spec);
  auto model = Model::load(tmp / "toy.gguf");
  const auto prompt = random_tokens(32, spec.shape.vocab, 5);
  REQUIRE(detect_super_weights(*model, prompt).found.empty());  // no spike in the random model

  // Plant one as the paper describes them: in block 1, gate and up rows k aligned with the first
  // token's ffn input (a super activation at input channel k of ffn_down), W_down[j, k] large and
  // the rest of column k small.
  const int64_t j = 37, k = 101, d = spec.shape.d, ff = spec.shape.ff;
  std::vector<float> h0;
  {
    Session s(*model, SessionOptions{32, false}, Context{1});
    s.set_linear_hook([&](const LinearEvent& ev) {
      if (ev.linear->name == "blk.1.ffn_gate.weight") h0.assign(ev.input, ev.input + d);
    });
    s.eval(prompt);
  }
  double n2 = 0;
  for (float v : h0) n2 += static_cast<double>(v) * v;
  for (const char* name : {"blk.1.ffn_gate.weight", "blk.1.ffn_up.weight"}) {
    auto w = model->tensor_f32(name);
    for (int64_t c = 0; c < d; ++c) w[static_cast<size_t>(k * d + c)] = static_cast<float>(16.0 * h0[static_cast<size_t>(c)] / n2);
    model->replace_tensor(name, w);
  }
  auto down = model->tensor_f32("blk.1.ffn_down.weight");
  for (int64_t r = 0; r < d; ++r) down[static_cast<size_t>(r * ff + k)] *= 0.01f;  // the channel feeds only j
  down[static_cast<size_t>(j * ff + k)] = 8.0f;
  model->replace_tensor("blk.1.ffn_down.weight", down);

  const std::vector<float> before = model->tensor_f32("blk.1.ffn_down.weight");
  const SuperWeightDetection det = detect_super_weights(*model, prompt);
  REQUIRE(det.layers.size() == 4);
  for (const auto& l : det.layers)
    UNSCOPED_INFO("layer " << l.layer << ": input " << l.input_max << " @" << l.input_channel << ", output "
                           << l.output_max << " @" << l.output_channel << " token " << l.token);
  REQUIRE(!det.found.empty());
  const DetectedSuperWeight& f = det.found[0];
  CHECK(f.layer == 1);
  CHECK(f.weight.tensor == "blk.1.ffn_down.weight");
  CHECK(f.weight.row == 37);
  CHECK(f.weight.col == 101);
  CHECK(f.weight.value == 8.0f);
  CHECK(f.confirmed);
  CHECK(f.output_after < 0.1f * f.output_max);
  for (const auto& f2 : det.found) UNSCOPED_INFO("found layer " << f2.layer << " [" << f2.weight.row << "," << f2.weight.col << "] in x" << f2.input_ratio << " out x" << f2.output_ratio << " confirmed " << f2.confirmed);
  CHECK(det.found.size() == 1);  // nothing else spikes once it is zeroed
  CHECK(model->tensor_f32("blk.1.ffn_down.weight") == before);  // restored
  const auto js = formats::detection_to_json(det);
  CHECK(js["found"][0]["row"] == 37);

}

TEST_CASE("analyze: CLI bad input and exit codes", "[analyze][cli]") {
  auto model = test::shared_file("models/tiny-llama");
  if (!model) return;
  test::TempDir tmp;
  const std::string m = "analyze " + model->string();
  std::ofstream(tmp / "empty.txt") << "  \n";
  std::ofstream(tmp / "bad.json") << "[\"a\", ";
  std::ofstream(tmp / "bad.jsonl") << "{\"text\": \"ok\"}\n{nope}\n";
  std::ofstream(tmp / "short.txt") << "Too short.";
  const std::string out = " -o " + (tmp / "x.imatrix").string() + " --checkpoint-dir " + (tmp / "ck").string();
  const std::vector<test::CliFailure> cases = {
      {m + " --calibration-data " + (tmp / "empty.txt").string() + out, 15, "empty"},
      {m + " --calibration-data " + (tmp / "bad.json").string() + out, 15, "bad.json"},
      {m + " --calibration-data " + (tmp / "bad.jsonl").string() + out, 15, "line 2"},
      {m + " --calibration-data " + (tmp / "missing.txt").string() + out, 15, "missing.txt"},
      {m + " --calibration-data " + (tmp / "short.txt").string() + out, 15, "too short ("},
      {m + " --method hessian" + out, 2, "hessian"},
      {m + " --coverage 0" + out + " --identify-super-weights", 2, "coverage"},
      {m + " --coverage 1.5" + out + " --identify-super-weights", 2, "coverage"},
      {m + " --output-format bin" + out, 2, "bin"},
      {m + " --activations fp8" + out, 2, "fp8"},
      {m + " --activations exact --bf16-activations" + out, 2, "contradicts"},
      {"analyze " + (tmp / "no-model").string() + out, 3, "not found"},
      {m + " -o " + (tmp / "no-dir" / "x.imatrix").string(), 7, "no-dir"},
      {m + " --resume " + (tmp / "nothing").string() + out, 2, "nothing"},
  };
  for (const auto& c : cases) {
    INFO(c.args);
    test::check_cli_failure(c);
    CHECK(!fs::exists(tmp / "x.imatrix"));
  }
}

TEST_CASE("analyze: NaN or infinite values stop the analysis (exit 16) and write nothing", "[analyze]") {
  // A NaN weight in blk.1's up projection reaches the input of blk.1's down projection first.
  test::TempDir tmp;
  const Toy spec{.poison = "blk.1.ffn_up.weight"};
  write_toy(tmp / "nan.gguf", spec);
  auto src = ModelSource::open(tmp / "nan.gguf");
  for (auto [m, named] : {std::pair{ImportanceMethod::activation, "blk.1.ffn_down.weight"},
                          {ImportanceMethod::gradient, ".weight"}, {ImportanceMethod::fisher, ".weight"}}) {
    const std::string tensor = named;  // a plain variable the predicate can capture (clang 14)
    INFO(importance_method_name(m));
    ImportanceOptions o;
    o.method = m;
    o.ctx = 16;
    o.checkpoint_dir = tmp / "ck";
    ImportanceAnalyzer an(*src, o);
    an.set_tokens(random_tokens(16 * 3, spec.shape.vocab, 4), "random");
    CHECK_THROWS_MATCHES(an.run(), Error, Catch::Predicate<Error>([&](const Error& e) {
                           const std::string w = e.what();
                           return e.code() == Errc::importance_failed && w.find("chunk 1") != std::string::npos &&
                                  w.find(tensor) != std::string::npos && w.find("not finite") != std::string::npos;
                         }));
  }

  // The CLI: a copy of the tiny model with a NaN in model.layers.1.mlp.up_proj.weight.
  auto model = test::shared_file("models/tiny-llama");
  if (!model) return;
  const fs::path dir = tmp / "tiny-nan";
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(*model)) fs::copy_file(e.path(), dir / e.path().filename());
  const std::string name = "model.layers.1.mlp.up_proj.weight";
  std::ifstream idx(dir / "model.safetensors.index.json");
  const fs::path shard = dir / nlohmann::json::parse(idx)["weight_map"][name].get<std::string>();
  fs::permissions(shard, fs::perms::owner_write, fs::perm_options::add);
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    uint64_t hlen = 0;
    f.read(reinterpret_cast<char*>(&hlen), 8);
    std::string header(hlen, '\0');
    f.read(header.data(), static_cast<std::streamsize>(hlen));
    const auto off = nlohmann::json::parse(header)[name]["data_offsets"][0].get<uint64_t>();
    f.seekp(static_cast<std::streamoff>(8 + hlen + off));
    const uint16_t nan_bf16 = 0x7fc0;
    f.write(reinterpret_cast<const char*>(&nan_bf16), 2);
  }
  const auto r = test::run(test::cli_path() + " analyze " + dir.string() + " --calibration-samples 2 --ctx 64 --no-cache -o " +
                           (tmp / "x.imatrix").string() + " --checkpoint-dir " + (tmp / "ck2").string());
  CHECK(r.status == 16);
  CHECK(r.err.find("blk.1.ffn_down.weight") != std::string::npos);
  CHECK(!fs::exists(tmp / "x.imatrix"));
}

TEST_CASE("analyze: CLI writes the matrix, the JSON report and the super-weight mask", "[analyze][cli]") {
  auto model = test::shared_file("models/tiny-llama");
  auto text = test::shared_file("corpus/calibration.txt");
  if (!model || !text) return;
  test::TempDir tmp;
  const auto r = test::run(test::cli_path() + " --format json analyze importance " + model->string() +
                           " --calibration-data " + text->string() + " --ctx 64 --calibration-samples 4 --threads 2" +
                           " --identify-super-weights --output-format dat -o " + (tmp / "rep.json").string() +
                           " --checkpoint-dir " + (tmp / "ck").string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["status"] == "success");
  CHECK(j["method"] == "activation_magnitude");
  CHECK(j["num_layers"] == 6);
  CHECK(j["calibration_samples"] == 4);
  CHECK(j["activation_rounding"] == "exact");  // a Hugging Face checkpoint under auto
  CHECK(j["layer_scores"].size() == 42);
  CHECK(j["layer_scores"][0]["layer_name"] == "model.layers.0.self_attn.q_proj");
  CHECK(j["super_weights"]["identified"] == true);
  CHECK(j["super_weights"]["total_protected"].get<int64_t>() >= 1);
  CHECK(j["global_statistics"]["max"].get<double>() >= j["global_statistics"]["mean"].get<double>());
  CHECK(fs::exists(tmp / "rep.json"));
  const Imatrix im = Imatrix::load(tmp / "rep.imatrix");
  CHECK(im.entries.size() == 42);
  CHECK(im.chunk_count == 4);
  const auto mask = load_super_weights(tmp / "rep.super_weights.json");
  CHECK(static_cast<int64_t>(mask.size()) == j["super_weights"]["total_protected"].get<int64_t>());
  CHECK(!fs::exists(tmp / "ck"));  // removed after success
  CHECK(r.err.find("Computing importance matrix (activation_magnitude)") != std::string::npos);
  CHECK(r.err.find("Complete: ") != std::string::npos);

  // analyze profile from the report.
  const auto p = test::run(test::cli_path() + " analyze profile " + model->string() + " --imatrix " +
                           (tmp / "rep.json").string() + " --preset quality -o " + (tmp / "q.dqprofile").string());
  INFO(p.err);
  CHECK(p.status == 0);
  const Profile prof = Profile::load((tmp / "q.dqprofile").string());
  CHECK(prof.name == "quality");
}
