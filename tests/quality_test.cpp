// Quality measurements: grades, coherence metrics on crafted sequences, per-tensor errors against
// llama.cpp's manifest, the report against perplexity()/kl_divergence(), and the CLI commands
// (quality report/compare, perplexity, tokenize, run, the quantize gates) with their exit codes.
#include <lq/calibration.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/gguf.hpp>
#include <lq/quality.hpp>

#include "quality/internal.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

using namespace lq;
namespace fs = std::filesystem;

namespace {

auto has_code(Errc c) {
  return Catch::Predicate<Error>([c](const Error& e) { return e.code() == c; }, "error code");
}

fs::path write_text(const test::TempDir& d, const std::string& name, const std::string& text) {
  const fs::path p = d / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

std::string lq_cmd() { return test::cli_path(); }

// The tiny model, llama.cpp's pure Q4_0 file of it and the evaluation text, from ../shared.
struct Q4Files {
  fs::path hf, q4, eval;
};
// All three, or nullopt when one is absent (the test is then skipped).
std::optional<Q4Files> q4_files() {
  const auto hf = test::shared_file("models/tiny-llama");
  const auto q4 = test::shared_file("golden/pure/Q4_0.gguf");
  const auto eval = test::shared_file("corpus/eval.txt");
  if (!hf || !q4 || !eval) return std::nullopt;
  return Q4Files{*hf, *q4, *eval};
}

// A copy of a GGUF file with token `id` of its vocabulary renamed.
// The GGUF `src` with token `id` renamed, or with its text kept and its type changed (retype: an
// unknown token's type for a control one and back, as tokenizer files rewritten by another tool
// may give it).
void write_renamed_vocab(const fs::path& src, const fs::path& dst, int32_t id, bool retype = false) {
  gguf::Reader in(src);
  gguf::Writer out(dst);
  for (const auto& [k, v] : in.metadata().entries()) {
    if (k == "tokenizer.ggml.tokens" && !retype) {
      auto tokens = v.as_strings();
      tokens[static_cast<size_t>(id)] = "\xE2\x96\x81zzzz-renamed";
      out.metadata().set(k, gguf::Value::strings(tokens));
    } else if (k == "tokenizer.ggml.token_type" && retype) {
      std::vector<int32_t> types(v.size());
      for (size_t i = 0; i < types.size(); ++i) types[i] = static_cast<int32_t>(v.int_at(i));
      types[static_cast<size_t>(id)] = types[static_cast<size_t>(id)] == 2 ? 3 : 2;
      out.metadata().set(k, gguf::Value::array<int32_t>(gguf::ValueType::INT32, types));
    } else {
      out.metadata().set(k, v);
    }
  }
  for (const auto& t : in.tensors()) out.add_tensor(t.name, t.type, t.ne);
  for (const auto& t : in.tensors()) {
    const auto bytes = in.data(t);
    out.write(bytes.data(), bytes.size());
  }
  out.commit();
}

}  // namespace

TEST_CASE("quality: grades follow the advanced-features table", "[quality]") {
  struct Case {
    double delta;
    std::optional<double> coherence;
    QualityGrade want;
  };
  const std::vector<Case> cases = {
      {-3.0, std::nullopt, QualityGrade::excellent},  {0.0, std::nullopt, QualityGrade::excellent},
      {4.99, std::nullopt, QualityGrade::excellent},  {5.0, std::nullopt, QualityGrade::good},
      {14.99, std::nullopt, QualityGrade::good},      {15.0, std::nullopt, QualityGrade::acceptable},
      {29.99, std::nullopt, QualityGrade::acceptable}, {30.0, std::nullopt, QualityGrade::degraded},
      {50.0, std::nullopt, QualityGrade::degraded},    {50.01, std::nullopt, QualityGrade::failed},
      {NAN, std::nullopt, QualityGrade::failed},
      {1.0, 0.96, QualityGrade::excellent},            {1.0, 0.95, QualityGrade::good},
      {1.0, 0.86, QualityGrade::good},                 {1.0, 0.85, QualityGrade::acceptable},
      {1.0, 0.71, QualityGrade::acceptable},           {1.0, 0.70, QualityGrade::degraded},
      {1.0, 0.50, QualityGrade::degraded},             {1.0, 0.49, QualityGrade::failed},
      {20.0, 0.99, QualityGrade::acceptable},          {60.0, 1.0, QualityGrade::failed},
      {1.0, NAN, QualityGrade::failed},
  };
  for (const auto& c : cases) {
    INFO("delta " << c.delta << " coherence " << (c.coherence ? *c.coherence : -1));
    CHECK(quality_grade(c.delta, c.coherence) == c.want);
  }
  CHECK(std::string(grade_name(QualityGrade::excellent)) == "EXCELLENT");
  CHECK(std::string(grade_name(QualityGrade::acceptable)) == "ACCEPTABLE");
  CHECK(std::string(grade_name(QualityGrade::failed)) == "FAILED");
}

TEST_CASE("quality: KLD grades follow llama.cpp's published levels, the worst grade decides", "[quality]") {
  // Boundaries.
  CHECK(grade_for_kld(0.0) == QualityGrade::excellent);
  CHECK(grade_for_kld(0.0499) == QualityGrade::excellent);
  CHECK(grade_for_kld(0.05) == QualityGrade::good);
  CHECK(grade_for_kld(0.1399) == QualityGrade::good);
  CHECK(grade_for_kld(0.14) == QualityGrade::acceptable);
  CHECK(grade_for_kld(0.2599) == QualityGrade::acceptable);
  CHECK(grade_for_kld(0.26) == QualityGrade::degraded);
  CHECK(grade_for_kld(0.405) == QualityGrade::degraded);
  CHECK(grade_for_kld(0.4051) == QualityGrade::failed);
  CHECK(grade_for_kld(NAN) == QualityGrade::failed);
  // llama.cpp's Llama 3 8B table (tools/perplexity/README.md): each level's mean KLD grades as its
  // perplexity ratio does.
  struct Level {
    const char* name;
    double kld, ppl_ratio;
  };
  for (const Level& l : {Level{"Q8_0", 0.001355, 1.000425}, Level{"Q6_K", 0.005452, 1.003490},
                         Level{"Q4_K_M", 0.031273, 1.028160}, Level{"Q3_K_M", 0.101913, 1.105},
                         Level{"IQ3_XXS", 0.183625, 1.197}, Level{"Q2_K WT 10m", 0.332223, 1.388},
                         Level{"Q2_K_S WT 10m", 0.403360, 1.495835}, Level{"Q2_K_S WT 100k", 0.408367, 1.502123},
                         Level{"Q2_K", 0.445132, 1.564849}, Level{"IQ2_XXS", 0.812022, 2.261}}) {
    INFO(l.name);
    CHECK(grade_for_kld(l.kld) == grade_for_perplexity(100 * (l.ppl_ratio - 1)));
  }
  // The tiny model's Q2_K on WikiText-2: perplexity down 3.3% but KLD 0.117 -> not EXCELLENT.
  CHECK(quality_grade(-3.3, 0.117, std::nullopt) == QualityGrade::good);
  CHECK(quality_grade(-3.3, std::nullopt, std::nullopt) == QualityGrade::excellent);
  CHECK(quality_grade(1.0, 0.01, 0.6) == QualityGrade::degraded);
  CHECK(quality_grade(20.0, 0.3, 0.99) == QualityGrade::degraded);
  // Far from the domain: perplexity above sqrt(vocabulary).
  CHECK(domain_warning(1393.3, 2048).find("far from the model's domain") != std::string::npos);
  CHECK(domain_warning(13.15, 2048).empty());
  CHECK(domain_warning(45.0, 2048).empty());
  CHECK_FALSE(domain_warning(45.3, 2048).empty());
  CHECK(domain_warning(6.23, 128256).empty());
  CHECK(domain_warning(NAN, 2048).empty());
}

TEST_CASE("quality: repetition score is the distinct n-gram ratio", "[quality]") {
  std::vector<int32_t> diverse(48), same(48, 7), period2(48), period10(48);
  for (int i = 0; i < 48; ++i) {
    diverse[static_cast<size_t>(i)] = i;
    period2[static_cast<size_t>(i)] = i % 2;
    period10[static_cast<size_t>(i)] = 100 + i % 10;
  }
  CHECK(repetition_score(diverse) == 1.0);
  CHECK(repetition_score(same) == Approx(1.0 / 46));
  CHECK(repetition_score(period2) == Approx(2.0 / 46));
  CHECK(repetition_score(period10) == Approx(10.0 / 46));
  // "a b c a b c d": 3-grams abc bca cab abc bcd -> 4 distinct of 5
  CHECK(repetition_score(std::vector<int32_t>{1, 2, 3, 1, 2, 3, 4}) == Approx(4.0 / 5));
  CHECK(repetition_score(std::vector<int32_t>{1, 2, 3, 1, 2, 3, 4}, 1) == Approx(4.0 / 7));
  CHECK(repetition_score(std::vector<int32_t>{5, 5}) == 1.0);  // shorter than n
  CHECK(repetition_score(std::vector<int32_t>{}) == 1.0);
  CHECK_THROWS_MATCHES(repetition_score(diverse, 0), Error, has_code(Errc::invalid_argument));
}

TEST_CASE("quality: fluency is the per-token probability relative to the original's", "[quality]") {
  CHECK(fluency_score(-0.7, -0.7) == 1.0);
  CHECK(fluency_score(-0.5, -0.7) == 1.0);  // more likely than the reference: clipped
  CHECK(fluency_score(-0.7 + std::log(0.5), -0.7) == Approx(0.5));
  CHECK(fluency_score(-10.0, -0.6) < 1e-4);
  CHECK(fluency_score(-INFINITY, -0.6) == 0.0);
  CHECK(fluency_score(NAN, -0.6) == 0.0);
}

TEST_CASE("quality: layer groups and their aggregation", "[quality]") {
  std::vector<TensorError> e(3);
  e[0] = {"blk.0.attn_q.weight", "model.layers.0.self_attn", "Q4_K", 100, 1.0, 0.5, 0.1, 4.5};
  e[1] = {"blk.0.attn_k.weight", "model.layers.0.self_attn", "Q6_K", 300, 3.0, 0.9, 0.1, 6.5625};
  e[2] = {"blk.0.ffn_up.weight", "model.layers.0.mlp", "Q4_K", 50, 2.0, 0.2, 0.1, 4.5};
  const auto g = group_layer_errors(e);
  REQUIRE(g.size() == 2);
  CHECK(g[0].layer_name == "model.layers.0.self_attn");
  CHECK(g[0].n_elements == 400);
  CHECK(g[0].mse == Approx((100 * 1.0 + 300 * 3.0) / 400));
  CHECK(g[0].max_error == 0.9);
  CHECK(g[0].bit_width == Approx((100 * 4.5 + 300 * 6.5625) / 400));
  CHECK(g[1].layer_name == "model.layers.0.mlp");
  CHECK(g[1].mse == 2.0);
}

TEST_CASE("quality: prompt files and text files", "[quality]") {
  test::TempDir d;
  CHECK(load_prompts(write_text(d, "a.json", R"(["One", "Two"])")) == std::vector<std::string>{"One", "Two"});
  CHECK(load_prompts(write_text(d, "b.json", R"([{"prompt": "x", "id": 1}, "y"])")) == std::vector<std::string>{"x", "y"});
  CHECK(load_prompts(write_text(d, "c.json", R"({"prompts": ["z"]})")) == std::vector<std::string>{"z"});
  for (const auto& [name, content] : std::vector<std::pair<std::string, std::string>>{
           {"bad1.json", "[\"unterminated"}, {"bad2.json", "[]"}, {"bad3.json", "[1, 2]"},
           {"bad4.json", R"([{"text": "no prompt key"}])"}, {"bad5.json", R"(["  "])"}, {"bad6.json", R"({"a": 1})"},
           {"bad7.json", ""}}) {
    INFO(name);
    CHECK_THROWS_MATCHES(load_prompts(write_text(d, name, content)), Error, has_code(Errc::calibration_error));
  }
  CHECK_THROWS_MATCHES(load_prompts(d / "missing.json"), Error, has_code(Errc::calibration_error));
  CHECK(load_text(write_text(d, "t.txt", "hello\n")).texts == std::vector<std::string>{"hello\n"});
  CHECK_THROWS_MATCHES(load_text(d / "missing.txt"), Error, has_code(Errc::calibration_error));
  // Whitespace is text (one space or one newline has tokens); only a 0-byte file is empty.
  CHECK(load_text(write_text(d, "s.txt", " ")).texts == std::vector<std::string>{" "});
  CHECK(load_text(write_text(d, "nl.txt", "\n")).texts == std::vector<std::string>{"\n"});
  CHECK_THROWS_MATCHES(load_text(write_text(d, "e.txt", "")), Error, has_code(Errc::calibration_error));
  CHECK_THROWS_MATCHES(load_text(write_text(d, "n.txt", std::string("a\0b", 3))), Error,
                       has_code(Errc::calibration_error));
  CHECK_THROWS_MATCHES(load_text(d.path()), Error, has_code(Errc::calibration_error));
}

TEST_CASE("quality: per-tensor errors equal llama.cpp's figures", "[quality]") {
  auto hf = test::shared_file("models/tiny-llama");
  auto q4 = test::shared_file("golden/pure/Q4_0.gguf");
  const auto golden = test::golden_manifest();
  if (!hf || !q4 || golden.is_null()) return;
  const auto& manifest = golden.at("files").at("pure/Q4_0.gguf").at("tensors");
  auto osrc = ModelSource::open(*hf);
  auto qsrc = ModelSource::open(*q4);
  const auto errors = weight_errors(*osrc, *qsrc, lq::Context{.threads = 2});
  CHECK(errors.size() == 2 + 6 * 7);  // token_embd, output, 7 linears per block
  for (const auto& e : errors) {
    INFO(e.tensor);
    REQUIRE(manifest.contains(e.tensor));
    const double rmse = manifest[e.tensor]["rmse"].get<double>();
    const double rel = manifest[e.tensor]["rel_rmse"].get<double>();
    CHECK(std::sqrt(e.mse) == Approx(rmse).epsilon(1e-5));
    CHECK(std::sqrt(e.rel_mse) == Approx(rel).epsilon(1e-5));
    CHECK(e.bit_width == 4.5);
    CHECK(e.type == "Q4_0");
    CHECK(e.max_error > std::sqrt(e.mse));
  }
  const auto groups = group_layer_errors(errors);
  CHECK(groups.size() == 2 + 6 * 2);
}

TEST_CASE("quality: the report agrees with perplexity() and kl_divergence()", "[quality]") {
  const auto files = q4_files();
  if (!files) return;
  auto osrc = ModelSource::open(files->hf);
  auto qsrc = ModelSource::open(files->q4);
  auto om = Model::load(*osrc);
  auto qm = Model::load(*qsrc);
  QualityOptions o;
  o.calibration = load_calibration(files->eval);
  o.ctx = 64;
  o.samples = 3;
  const QualityReport r = quality_report(*osrc, *om, *qsrc, *qm, o, lq::Context{.threads = 2});

  const Tokenizer tok = tokenizer_for(*osrc);
  const auto tokens = calibration_tokens(tok, *o.calibration);
  CHECK(r.calibration_tokens == static_cast<int64_t>(tokens.size()));
  PerplexityOptions po;
  po.ctx = 64;
  po.chunks = 3;
  const PerplexityResult po_orig = perplexity(*om, tokens, po, Context{2}), po_q = perplexity(*qm, tokens, po, Context{2});
  const KldResult k = kl_divergence(*qm, *om, tokens, po, Context{2});
  CHECK(r.ctx == 64);
  CHECK(r.chunks == 3);
  CHECK(r.perplexity_original == Approx(po_orig.ppl).epsilon(1e-6));
  CHECK(r.perplexity_quantized == Approx(po_q.ppl).epsilon(1e-6));
  CHECK(r.kld.ppl_error == Approx(po_q.ppl_error).epsilon(1e-4));
  CHECK(r.kld.ppl_reference_error == Approx(po_orig.ppl_error).epsilon(1e-4));
  // Both perplexities agree within 1e-6 relative; their ratio's percentage within 2e-4 absolute.
  CHECK(r.perplexity_delta_pct == Approx(100 * (po_q.ppl / po_orig.ppl - 1)).margin(2e-4));
  CHECK(r.kld.kld_mean == Approx(k.kld_mean).epsilon(1e-9));
  CHECK(r.kld.same_top_pct == k.same_top_pct);
  CHECK(r.kld.n_scored == 3 * (64 - 32 - 1));
  CHECK(r.quantization_level == "Q4_0");
  CHECK_FALSE(r.quantized_with_imatrix);
  CHECK(r.compression_ratio ==
        Approx(static_cast<double>(fs::file_size(files->q4)) / static_cast<double>(osrc->source_bytes())));
  CHECK(r.effective_bpw > 4.5);  // Q4_0 weights plus F32 norms
  CHECK(r.effective_bpw < 4.6);
  CHECK(r.original_size.bpw == Approx(16.0).epsilon(1e-3));
  CHECK(r.grade == quality_grade(r.perplexity_delta_pct, r.kld.kld_mean, std::nullopt));
  CHECK(r.layer_errors.empty());
  CHECK_FALSE(r.coherence);
  const auto j = nlohmann::json::parse(r.to_json_string());
  CHECK(j["metrics"]["perplexity_original"].get<double>() == r.perplexity_original);
  CHECK(j["coherence_score"].is_null());
  const auto a = nlohmann::json::parse(r.to_analysis_json_string());  // advanced-features' "Quality Report" (lq analyze quality)
  CHECK(a["model_name"] == "Q4_0");
  CHECK(a["quantization_format"] == "gguf");
  CHECK(a["quantization_level"] == "Q4_0");
  CHECK(a["perplexity_increase_percent"].get<double>() == r.perplexity_delta_pct);
  CHECK(a["coherence_results"].is_array());
  CHECK(a["quality_grade"] == grade_name(r.grade));
  for (const char* k : {"perplexity_original", "perplexity_quantized", "warnings", "recommendations"}) CHECK(a.contains(k));

  // Samples beyond the data: bounded, with a warning.
  o.samples = 1000000;
  o.ctx = 256;
  const QualityReport all = quality_report(*osrc, *om, *osrc, *om, [&] {
    QualityOptions s = o;
    s.calibration = CalibrationData{{std::string(o.calibration->texts[0].substr(0, 4000))}, "head of eval.txt"};
    return s;
  }());
  CHECK(all.chunks >= 2);
  CHECK(all.chunks == (all.calibration_tokens + 1) / 256);
  CHECK(all.perplexity_delta_pct == 0.0);
  CHECK(all.kld.kld_mean == Approx(0).margin(1e-12));
  CHECK(all.grade == QualityGrade::excellent);
  REQUIRE_FALSE(all.warnings.empty());
  CHECK(all.warnings[0].find("evaluated") != std::string::npos);

  // Too short for one chunk: calibration_error.
  QualityOptions tiny = o;
  tiny.calibration = CalibrationData{{"Once upon a time"}, "short"};
  CHECK_THROWS_MATCHES(quality_report(*osrc, *om, *qsrc, *qm, tiny), Error, has_code(Errc::calibration_error));
}

TEST_CASE("quality: compare_models measures every model on the same chunks", "[quality]") {
  const auto files = q4_files();
  if (!files) return;
  QualityOptions o;
  o.calibration = load_calibration(files->eval);
  o.ctx = 64;
  o.samples = 3;
  const std::vector<fs::path> paths = {files->hf, files->q4};
  const ModelComparison c = compare_models(paths, CompareMetrics{}, o, lq::Context{.threads = 2});
  REQUIRE(c.models.size() == 2);
  CHECK(c.ctx == 64);
  CHECK(c.chunks == 3);
  CHECK(c.warnings.empty());
  CHECK(c.models[1].quantization_level == "Q4_0");
  CHECK(c.models[0].quantization_level.empty());
  CHECK(c.models[1].size.file_bytes < c.models[0].size.file_bytes);

  // The perplexities are perplexity()'s on the same tokens (exactly without KLD; read off the KLD
  // evaluation within 1e-6 with it), the KLD kl_divergence()'s, the grade the worse of both.
  const auto tokens = calibration_tokens(tokenizer_for(*ModelSource::open(files->hf)), *o.calibration);
  PerplexityOptions po;
  po.ctx = 64;
  po.chunks = 3;
  const ModelComparison ppl_only = compare_models(paths, CompareMetrics{true, false}, o, lq::Context{.threads = 2});
  CHECK_FALSE(ppl_only.models[1].kld);
  CHECK_FALSE(ppl_only.models[1].grade);
  for (size_t i = 0; i < paths.size(); ++i) {
    REQUIRE(c.models[i].perplexity);
    REQUIRE(ppl_only.models[i].perplexity);
    const PerplexityResult p = perplexity(*Model::load(paths[i]), tokens, po, Context{2});
    CHECK(ppl_only.models[i].perplexity->ppl == Approx(p.ppl).epsilon(1e-9));
    CHECK(c.models[i].perplexity->ppl == Approx(p.ppl).epsilon(1e-6));
  }
  CHECK_FALSE(c.models[0].kld);
  REQUIRE(c.models[1].kld);
  const KldResult k = kl_divergence(*Model::load(paths[1]), *Model::load(paths[0]), tokens, po, Context{2});
  CHECK(c.models[1].kld->kld_mean == Approx(k.kld_mean).epsilon(1e-9));
  CHECK(c.models[1].kld->kld_p99 == Approx(k.kld_p99).epsilon(1e-6));
  CHECK(c.models[1].kld->same_top_pct == k.same_top_pct);
  REQUIRE(c.models[1].grade);
  CHECK(*c.models[1].grade ==
        std::max(grade_for_perplexity(100 * (c.models[1].perplexity->ppl / c.models[0].perplexity->ppl - 1)),
                 grade_for_kld(k.kld_mean)));
  CHECK(c.vocab_size == 2048);
  CHECK(c.warnings.empty());  // eval.txt is the model's kind of text: no domain warning

  // Sizes only; more chunks than the text holds are bounded with a warning; one model is refused.
  const ModelComparison sizes = compare_models(paths, CompareMetrics{false, false}, o);
  CHECK_FALSE(sizes.models[1].perplexity);
  CHECK(sizes.models[1].size.bpw == c.models[1].size.bpw);
  test::TempDir d;
  const std::string text = lq::read_file(files->eval);
  o.calibration = load_calibration(write_text(d, "short.txt", text.substr(0, 4000)));
  o.samples = 1000;
  const ModelComparison bounded = compare_models(paths, CompareMetrics{}, o, lq::Context{.threads = 2});
  CHECK(bounded.chunks < 1000);
  CHECK(bounded.warnings.size() == 1);
  CHECK_THROWS_AS(compare_models(std::span(paths).first(1), CompareMetrics{}), lq::Error);
}

TEST_CASE("quality: coherence scores the original 1 and a broken model near 0", "[quality]") {
  auto hf = test::shared_file("models/tiny-llama");
  auto tq = test::shared_file("golden/pure/TQ1_0.gguf");  // llama.cpp: perplexity 971 vs 11.16
  if (!hf || !tq) return;
  auto osrc = ModelSource::open(*hf);
  auto om = Model::load(*osrc);
  auto bad = Model::load(*tq);
  const Tokenizer tok = tokenizer_for(*osrc);
  CoherenceOptions co;
  co.prompts = {"Once upon a time", "The little dog"};
  co.max_tokens = 24;
  const lq::Context two{.threads = 2};
  const CoherenceResult self = coherence_check(*om, *om, tok, co, two);
  REQUIRE(self.samples.size() == 2);
  CHECK(self.score == 1.0);
  CHECK(self.n_coherent == 2);
  // The model card's greedy continuation (first 24 tokens).
  CHECK(self.samples[0].output.rfind(", there was a little girl named Lily.", 0) == 0);
  for (const auto& s : self.samples) {
    CHECK(s.grammar_score == 1.0);
    CHECK(s.output == s.reference_output);
    CHECK(s.repetition_score == s.reference_repetition_score);
    CHECK(s.mean_logp < 0);
  }
  const CoherenceResult broken = coherence_check(*bad, *om, tok, co, two);
  CHECK(broken.score < 0.1);
  CHECK(broken.n_coherent == 0);
  for (const auto& s : broken.samples) CHECK(s.mean_logp < s.reference_mean_logp - 3);
  co.max_tokens = 0;
  CHECK_THROWS_MATCHES(coherence_check(*om, *om, tok, co), Error, has_code(Errc::invalid_argument));
}

TEST_CASE("quality: mismatched vocabularies are refused", "[quality]") {
  auto hf = test::shared_file("models/tiny-llama");
  auto q8 = test::shared_file("golden/pure/Q8_0.gguf");
  if (!hf || !q8) return;
  test::TempDir d;
  const fs::path renamed = d / "renamed.gguf";
  write_renamed_vocab(*q8, renamed, 300);
  auto osrc = ModelSource::open(*hf);
  CHECK(vocabulary_mismatch(tokenizer_for(*osrc), tokenizer_for(*ModelSource::open(*q8))).empty());
  const std::string why = vocabulary_mismatch(tokenizer_for(*osrc), tokenizer_for(*ModelSource::open(renamed)));
  CHECK(why.find("token 300") != std::string::npos);
  // The same texts with another token type (a tokenizer rewritten by another tool): the logits of
  // the two models still compare id for id.
  const fs::path retyped = d / "retyped.gguf";
  write_renamed_vocab(*q8, retyped, 0, true);
  CHECK(tokenizer_for(*ModelSource::open(retyped)).token_type(0) != tokenizer_for(*osrc).token_type(0));
  CHECK(vocabulary_mismatch(tokenizer_for(*osrc), tokenizer_for(*ModelSource::open(retyped))).empty());
  QualityOptions o;
  o.samples = 1;
  CHECK_THROWS_MATCHES(quality_report(*hf, renamed, o), Error, has_code(Errc::invalid_argument));
  test::check_cli_failure({"quality report " + hf->string() + " " + renamed.string(), 2, "vocabulary"});
}

TEST_CASE("quality cli: bad input gives one error line and the exit code", "[quality][bad-input]") {
  const auto files = q4_files();
  if (!files) return;
  test::TempDir d;
  const std::string m = files->hf.string(), q = files->q4.string();
  const std::string empty = write_text(d, "empty.txt", "").string();
  const std::string blank = write_text(d, "blank.txt", "\n \n").string();
  const std::string shorty = write_text(d, "short.txt", "Once upon a time, there was a dog.").string();
  const std::string bad_prompts = write_text(d, "bad.json", "[\"unterminated").string();
  const std::string small = " --ctx 64 --calibration-samples 1 --calibration-data " + files->eval.string();
  const std::vector<test::CliFailure> cases = {
      {"perplexity " + m + " -f " + (d / "missing.txt").string(), 15, "missing.txt"},
      {"perplexity " + m + " -f " + empty, 15, "empty"},
      {"perplexity " + m + " -f " + blank + " --ctx 64", 15, "too short ("},
      {"perplexity " + m + " -f " + shorty + " --ctx 64", 15, "tokens, need 128"},
      {"tokenize " + m + " -f " + empty, 15, "empty"},
      {"perplexity " + m + " -f " + files->eval.string() + " --ctx 1", 2, "ctx"},
      {"perplexity " + (d / "nomodel").string() + " -f " + files->eval.string(), 3, "nomodel"},
      {"tokenize " + m + " -f " + (d / "missing.txt").string(), 15, "missing.txt"},
      {"tokenize " + m, 2, "-f"},
      {"run " + m, 2, "-p"},
      {"run " + m + " -p hi --top-p 0", 2, "top-p"},
      {"quality report " + m, 2, "usage"},
      {"quality report " + m + " " + (d / "nope.gguf").string(), 3, "nope.gguf"},
      {"quality report " + m + " " + q + " --calibration-data " + (d / "missing.txt").string(), 15, "missing.txt"},
      {"quality report " + m + " " + q + " --calibration-data " + shorty, 15, "too short"},
      {"quality report " + m + " " + q + small + " --coherence-check --prompts " + bad_prompts, 15, "bad.json"},
      {"quality report " + m + " " + q + small + " -o " + (d / "no-dir" / "r.json").string(), 7, "no-dir"},
      {"quality compare " + m, 2, "at least one"},
      {"quality compare " + m + " " + q + " --metrics speed", 2, "speed"},
      {"quality frobnicate", 2, "frobnicate"},
  };
  for (const auto& c : cases) {
    INFO(c.args);
    test::check_cli_failure(c);
  }
  // The JSON error shape.
  const auto r = test::run(lq_cmd() + " --format json perplexity " + m + " -f " + empty);
  CHECK(r.status == 15);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["status"] == "error");
  CHECK(j["error_code"] == 15);
  CHECK(j["error_type"] == "CalibrationDataError");
}

TEST_CASE("quality cli: report JSON shape, -o file and human output", "[quality]") {
  const auto files = q4_files();
  if (!files) return;
  test::TempDir d;
  const std::string prompts = write_text(d, "p.json", R"([{"prompt": "Once upon a time"}])").string();
  const std::string args = " quality report " + files->hf.string() + " " + files->q4.string() +
                           " --ctx 64 --calibration-samples 2 --calibration-data " + files->eval.string() +
                           " --include-layers --coherence-check --prompts " + prompts + " --threads 2 -o " +
                           (d / "report.json").string();
  const auto r = test::run(lq_cmd() + " --format json" + args);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  std::ifstream f(d / "report.json");
  const auto file = nlohmann::json::parse(f);
  CHECK(file == j);
  CHECK(j["status"] == "success");
  CHECK(j["original_model"] == files->hf.string());
  CHECK(j["quantized_model"] == files->q4.string());
  for (const char* k : {"perplexity_original", "perplexity_quantized", "perplexity_delta_pct", "effective_bpw",
                        "compression_ratio", "kld_mean", "kld_p99", "same_top_pct"})
    CHECK(j["metrics"][k].is_number());
  REQUIRE(j["layer_errors"].size() == 14);
  std::set<std::string> names;
  for (const auto& l : j["layer_errors"]) names.insert(l["layer_name"].get<std::string>());
  for (const char* n : {"lm_head", "model.embed_tokens", "model.layers.0.self_attn", "model.layers.5.mlp"}) CHECK(names.count(n));
  for (const auto& l : j["layer_errors"]) {
    CHECK(l["mse"].get<double>() > 0);
    CHECK(l["max_error"].get<double>() > 0);
    CHECK(l["bit_width"].get<double>() == 4.5);
  }
  CHECK(j["coherence_score"].is_number());
  REQUIRE(j["coherence_results"].size() == 1);
  for (const char* k : {"prompt", "output", "is_coherent", "repetition_score", "grammar_score"})
    CHECK(j["coherence_results"][0].contains(k));
  CHECK(j["quality_grade"].is_string());
  CHECK(j["warnings"].is_array());
  CHECK(j["recommendations"].is_array());
  CHECK(j["timestamp"].get<std::string>().size() == 20);

  const auto h = test::run(lq_cmd() + args);
  CHECK(h.status == 0);
  CHECK(h.out.find("Perplexity:") != std::string::npos);
  CHECK(h.out.find("model.layers.5.mlp") != std::string::npos);
  CHECK(h.out.find("Grade:") != std::string::npos);
}

TEST_CASE("quality cli: compare prints the table, JSON and CSV", "[quality]") {
  auto hf = test::shared_file("models/tiny-llama");
  auto q4 = test::shared_file("golden/pure/Q4_0.gguf");
  auto q8 = test::shared_file("golden/pure/Q8_0.gguf");
  auto eval = test::shared_file("corpus/eval.txt");
  if (!hf || !q4 || !q8 || !eval) return;
  const std::string args = " quality compare " + hf->string() + " " + q4->string() + " " + q8->string() +
                           " --ctx 64 --calibration-samples 2 --threads 2 --calibration-data " + eval->string();
  const auto h = test::run(lq_cmd() + args);
  REQUIRE(h.status == 0);
  CHECK(h.out.find("Model                  | Perplexity | Delta  | KLD mean | KLD p99 | Same top | Grade     | Size  | BPW") !=
        std::string::npos);
  CHECK(h.out.find("-----------------------|------------|--------|----------|---------|----------|-----------|-------|-----") !=
        std::string::npos);
  CHECK(h.out.find("Q4_0.gguf") != std::string::npos);
  CHECK(h.out.find("Q8_0.gguf") != std::string::npos);

  const auto js = test::run(lq_cmd() + " --format json" + args);
  REQUIRE(js.status == 0);
  const auto j = nlohmann::json::parse(js.out);
  CHECK(j["status"] == "success");
  REQUIRE(j["models"].size() == 2);
  for (const auto& m : j["models"]) {
    for (const char* k : {"model", "path", "perplexity", "perplexity_delta_pct", "kld_mean", "kld_p99", "same_top_pct",
                          "quality_grade", "file_size", "effective_bpw"})
      CHECK(m.contains(k));
    CHECK(m["kld_mean"].get<double>() > 0);
    CHECK(m["kld_p99"].get<double>() >= m["kld_mean"].get<double>());
    CHECK(m["same_top_pct"].get<double>() > 50);
    CHECK(m["same_top_pct"].get<double>() <= 100);
  }
  // Q8_0 is closer to the original than Q4_0.
  CHECK(j["models"][1]["kld_mean"].get<double>() < j["models"][0]["kld_mean"].get<double>());
  CHECK(j["models"][1]["same_top_pct"].get<double>() >= j["models"][0]["same_top_pct"].get<double>());
  CHECK_FALSE(j["original"].contains("kld_mean"));
  CHECK(j["warnings"].empty());
  CHECK(j["models"][0]["model"] == "Q4_0.gguf");
  CHECK(j["models"][0]["effective_bpw"].get<double>() < j["models"][1]["effective_bpw"].get<double>());
  CHECK(j["models"][0]["file_size"] == fs::file_size(*q4));
  CHECK(j["original"]["perplexity"].get<double>() > 1);

  const auto csv = test::run(lq_cmd() + " --format csv" + args);
  REQUIRE(csv.status == 0);
  std::istringstream in(csv.out);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  REQUIRE(lines.size() == 4);
  CHECK(lines[0] ==
        "model,role,path,perplexity,perplexity_delta_pct,kld_mean,kld_p99,same_top_pct,quality_grade,file_size,effective_bpw");
  for (const auto& l : lines) CHECK(std::count(l.begin(), l.end(), ',') == 10);
  CHECK(lines[1].rfind("tiny-llama,original,", 0) == 0);
  CHECK(lines[2].rfind("Q4_0.gguf,quantized,", 0) == 0);

  // --metrics size,bpw needs no model evaluation
  const auto sz = test::run(lq_cmd() + " --format csv quality compare " + hf->string() + " " + q4->string() +
                            " --metrics size,bpw");
  REQUIRE(sz.status == 0);
  CHECK(sz.out.rfind("model,role,path,file_size,effective_bpw\n", 0) == 0);
}

TEST_CASE("quality cli: perplexity, tokenize and run", "[quality]") {
  auto hf = test::shared_file("models/tiny-llama");
  auto eval = test::shared_file("corpus/eval.txt");
  auto golden = test::shared_file("golden/eval-tokens.i32");
  if (!hf || !eval || !golden) return;
  // Tokens: SentencePiece's own ids of the whole file.
  const auto t = test::run(lq_cmd() + " --format json tokenize " + hf->string() + " -f " + eval->string());
  REQUIRE(t.status == 0);
  const auto ids = nlohmann::json::parse(t.out)["tokens"].get<std::vector<int32_t>>();
  std::ifstream gin(*golden, std::ios::binary);
  std::vector<int32_t> want(fs::file_size(*golden) / 4);
  gin.read(reinterpret_cast<char*>(want.data()), static_cast<std::streamsize>(want.size() * 4));
  CHECK(ids == want);

  // Whitespace-only files are text: llama.cpp's test vectors for the Llama-2 vocabulary (" " ->
  // 259, "\n" -> 29871 13, "\t\n" -> 29871 12 13), by -f and by -p.
  if (const auto spm = test::shared_file("golden/vocab/ggml-vocab-llama-spm.gguf")) {
    test::TempDir d;
    const std::vector<std::pair<std::string, std::string>> vectors = {
        {" ", "259"}, {"\n", "29871 13"}, {"\t\n", "29871 12 13"}, {"   ", "268"}};
    for (size_t i = 0; i < vectors.size(); ++i) {
      const fs::path f = write_text(d, "ws" + std::to_string(i) + ".txt", vectors[i].first);
      const auto r = test::run(lq_cmd() + " tokenize " + spm->string() + " -f " + f.string());
      INFO("input " << nlohmann::json(vectors[i].first).dump());
      REQUIRE(r.status == 0);
      CHECK(r.out == vectors[i].second + "\n");
    }
    const auto pr = test::run(lq_cmd() + " tokenize " + spm->string() + " -p ' '");
    CHECK(pr.out == "259\n");
  }

  // llama-perplexity -c 256 --chunks 4 on the BF16 conversion: 12.2140
  const auto p = test::run(lq_cmd() + " --format json perplexity " + hf->string() + " -f " + eval->string() +
                           " --ctx 256 --chunks 4 --threads 2");
  REQUIRE(p.status == 0);
  const auto pj = nlohmann::json::parse(p.out);
  CHECK(pj["perplexity"].get<double>() == Approx(12.2140).epsilon(2e-3));
  CHECK(pj["chunks"] == 4);
  CHECK(pj["ctx"] == 256);
  CHECK(pj["tokens"] == want.size());
  CHECK(pj["tokens_scored"] == 4 * 127);
  for (const char* k : {"error", "seconds", "tokens_per_second"}) CHECK(pj[k].is_number());

  // KL divergence against itself is zero.
  const auto k = test::run(lq_cmd() + " --format json perplexity " + hf->string() + " -f " + eval->string() +
                           " --ctx 128 --chunks 2 --threads 2 --kl-divergence " + hf->string());
  REQUIRE(k.status == 0);
  const auto kj = nlohmann::json::parse(k.out);
  CHECK(kj["kl_divergence"]["kld_mean"].get<double>() == Approx(0).margin(1e-9));
  CHECK(kj["kl_divergence"]["same_top_pct"] == 100.0);
  CHECK(kj["perplexity"].get<double>() == Approx(kj["kl_divergence"]["reference_perplexity"].get<double>()));

  // Greedy generation: the model card's continuation.
  const auto g = test::run(lq_cmd() + " --format json run " + hf->string() + " -p 'Once upon a time' -n 40");
  REQUIRE(g.status == 0);
  const auto gj = nlohmann::json::parse(g.out);
  CHECK(gj["prompt_tokens"] == std::vector<int32_t>{1, 434, 461, 261, 409});
  CHECK(gj["tokens"] == std::vector<int32_t>{1973, 405, 283, 261, 397, 447, 557, 382, 1965, 314, 548, 270, 367, 344,
                                             318,  696, 267, 823, 1848, 1959, 1965, 431, 359, 1973, 335, 421, 261, 408,
                                             1973, 945, 695, 1965, 314, 442, 270, 367, 344, 308, 1973, 417});
  CHECK(gj["text"] ==
        ", there was a little girl named Lily. She loved to play with her toys and eat snacks. One day, she saw a big, "
        "red ball. She wanted to play with it, but");
  const auto gh = test::run(lq_cmd() + " run " + hf->string() + " -p 'Once upon a time' -n 9");
  CHECK(gh.out == "Once upon a time, there was a little girl named Lily.\n");
}

TEST_CASE("quality cli: a Q2_K of the tiny model is not EXCELLENT on the default text", "[quality]") {
  auto hf = test::shared_file("models/tiny-llama");
  auto im = test::shared_file("golden/imatrix.gguf");
  if (!hf || !im) return;
  test::TempDir d;
  const std::string q2 = (d / "tiny-Q2_K.gguf").string();
  auto r = test::run(lq_cmd() + " --format json quantize " + hf->string() + " gguf -q Q2_K --imatrix " + im->string() +
                     " --protect-super-weights --threads 2 -o " + q2);
  REQUIRE(r.status == 0);
  // The built-in WikiText-2 text (4 chunks of 512 tokens): the perplexity barely moves (the text
  // is far from the model's stories), the KL divergence does.
  r = test::run(lq_cmd() + " --format json quality report " + hf->string() + " " + q2 +
                " --calibration-samples 4 --threads 2");
  REQUIRE(r.status == 0);
  auto j = nlohmann::json::parse(r.out);
  INFO(r.out);
  CHECK(j["quality_grade"] != "EXCELLENT");
  CHECK(j["grades"]["kld"] != "EXCELLENT");
  CHECK(j["grades"]["coherence"].is_null());
  CHECK(j["metrics"]["kld_mean"].get<double>() >= 0.05);
  CHECK(std::fabs(j["metrics"]["perplexity_delta_pct"].get<double>()) < 5);
  const std::string warnings = j["warnings"].dump();
  CHECK(warnings.find("far from the model's domain") != std::string::npos);
  CHECK(warnings.find("more than its perplexity shows") != std::string::npos);
  // Human: the grade line names each measurement's grade.
  r = test::run(lq_cmd() + " quality report " + hf->string() + " " + q2 + " --calibration-samples 4 --threads 2");
  REQUIRE(r.status == 0);
  CHECK(r.out.find("Grade:          EXCELLENT") == std::string::npos);
  CHECK(r.out.find("(perplexity EXCELLENT, KLD ") != std::string::npos);
  // The quantize quality block grades it the same way.
  const std::string q2b = (d / "b.gguf").string();
  r = test::run("LLM_QUANTIZE_QUALITY_SAMPLES=4 " + lq_cmd() + " --format json quantize " + hf->string() +
                " gguf -q Q2_K --imatrix " + im->string() + " --protect-super-weights --threads 2 --quality-report -o " + q2b);
  REQUIRE(r.status == 0);
  j = nlohmann::json::parse(r.out)["quality_report"];
  CHECK(j["quality_grade"] != "EXCELLENT");
  CHECK(j["kld_p99"].get<double>() > j["kld_mean"].get<double>());
  CHECK(j["same_top_pct"].get<double>() < 95);
  r = test::run("LLM_QUANTIZE_QUALITY_SAMPLES=4 " + lq_cmd() + " quantize " + hf->string() + " gguf -q Q2_K --imatrix " +
                im->string() + " --protect-super-weights --threads 2 --quality-report -o " + q2b);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("KLD:         mean ") != std::string::npos);
  CHECK(r.out.find("Grade:       ") != std::string::npos);
}

TEST_CASE("quality cli: quantize quality gates", "[quality]") {
  auto hf = test::shared_file("models/tiny-llama");
  if (!hf) return;
  test::TempDir d;
  const std::string out = (d / "q.gguf").string();
  const std::string base = lq_cmd() + " --format json quantize " + hf->string() + " gguf -q Q8_0 --threads 2 -o " + out;
  const std::string few = "LLM_QUANTIZE_QUALITY_SAMPLES=2 ";

  // Passing gate: the contract's quality_report block.
  auto r = test::run(few + base + " --quality-report");
  REQUIRE(r.status == 0);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["status"] == "success");
  for (const char* k : {"perplexity_original", "perplexity_quantized", "perplexity_delta_pct", "kld_mean", "kld_p99",
                        "same_top_pct"})
    CHECK(j["quality_report"][k].is_number());
  CHECK(j["quality_report"]["quality_grade"] == "EXCELLENT");  // Q8_0
  CHECK(j["quality_report"]["warnings"].is_array());
  CHECK(std::fabs(j["quality_report"]["perplexity_delta_pct"].get<double>()) < 1.0);
  CHECK(j["quality_report"]["chunks"] == 2);
  CHECK(r.err.find("Computing quality metrics...") != std::string::npos);
  CHECK(r.err.find("Perplexity: ") != std::string::npos);
  fs::remove(out);

  // Failing perplexity gate: exit 11, the output is kept.
  r = test::run("LLM_QUANTIZE_QUALITY_THRESHOLD=-100 " + few + base + " --quality-report");
  CHECK(r.status == 11);
  CHECK(fs::exists(out));
  CHECK(test::error_lines(r.err) == 1);
  j = nlohmann::json::parse(r.out);
  CHECK(j["status"] == "error");
  CHECK(j["error_code"] == 11);
  CHECK(j["error_type"] == "QualityDegradationError");
  CHECK(j["message"].get<std::string>().find("exceeds threshold (-100%)") != std::string::npos);
  CHECK(j["suggestion"].is_string());
  fs::remove(out);

  // Failing coherence gate: exit 12, the output is kept (human format: one error line).
  r = test::run("LLM_QUANTIZE_COHERENCE_THRESHOLD=1.01 " + lq_cmd() + " quantize " + hf->string() +
                " gguf -q Q8_0 --threads 2 --coherence-check -o " + out);
  CHECK(r.status == 12);
  CHECK(fs::exists(out));
  CHECK(test::error_lines(r.err) == 1);
  CHECK(r.err.find("coherence check failed") != std::string::npos);

  // A threshold that is not a number: exit 2 before any work.
  fs::remove(out);
  r = test::run("LLM_QUANTIZE_QUALITY_THRESHOLD=abc " + base + " --quality-report");
  CHECK(r.status == 2);
  CHECK_FALSE(fs::exists(out));
}
