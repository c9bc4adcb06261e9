// Measured sensitivity (objective kld): the per-tensor KLD table is ordered by bits on the tiny
// model, the model is restored after measuring, the table's cache round-trips and is reused only
// when it matches, the solver meets size targets with the measured cost, and the CLI's refusals.
#include <lq/lq.hpp>
#include <lq/sensitivity.hpp>
#include <lq/tokenizer.hpp>

#include "profile/solver.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <iterator>

using namespace lq;
namespace fs = std::filesystem;

namespace {

std::vector<int32_t> sens_test_tokens(const ModelSource& src) {
  const auto text = test::shared_file("corpus/calibration.txt");
  if (!text) return {};
  const Tokenizer tok = Tokenizer::from_gguf(src.gguf_metadata(), src.path().string());
  std::vector<int32_t> out;
  for (const auto& t : load_text(*text).texts) {
    const auto ids = tok.encode(t, false);
    out.insert(out.end(), ids.begin(), ids.end());
    if (out.size() > 4096) break;
  }
  return out;
}

/// The tiny model, its importance matrix and calibration tokens from ../shared.
struct SensInputs {
  test::TinyWithImatrix tiny;
  std::unique_ptr<ModelSource> src;
  std::vector<int32_t> tokens;

  /// Options measuring `types` on `chunks` chunks of `ctx` tokens with the importance matrix.
  SensitivityOptions options(int64_t ctx, int64_t chunks, std::vector<QuantType> types) const {
    SensitivityOptions so;
    so.imatrix = &tiny.imatrix;
    so.ctx = ctx;
    so.chunks = chunks;
    so.types = std::move(types);
    return so;
  }
};

/// The inputs, or nullopt (the test skipped) when ../shared lacks one.
std::optional<SensInputs> sens_inputs() {
  auto tiny = test::tiny_with_imatrix();
  if (!tiny) return std::nullopt;
  auto src = ModelSource::open(tiny->model);
  auto tokens = sens_test_tokens(*src);
  if (tokens.empty()) {
    test::skip("corpus/calibration.txt not found");
    return std::nullopt;
  }
  return SensInputs{std::move(*tiny), std::move(src), std::move(tokens)};
}

}  // namespace

TEST_CASE("sensitivity: a higher-bit type never costs more KLD than a lower-bit one on the tiny model",
          "[profile][dynamic]") {
  const auto in = sens_inputs();
  if (!in) return;
  const auto& [tiny, src, tokens] = *in;
  SensitivityOptions so = in->options(64, 3, {QuantType::IQ2_XXS, QuantType::Q2_K, QuantType::Q3_K, QuantType::Q4_K,
                                              QuantType::Q5_K, QuantType::Q6_K, QuantType::Q8_0});
  so.tensors = {"blk.0.attn_v.weight", "blk.2.attn_q.weight", "blk.5.ffn_down.weight", "blk.4.ffn_gate.weight"};
  const SensitivityTable t = measure_sensitivity(*src, tokens, so);
  REQUIRE(t.rows.size() == so.tensors.size());
  CHECK(t.evaluations == 28);
  // Every tensor restored exactly: the model gives its reference outputs again.
  CHECK(t.reference_kld_floor < 1e-9);
  for (const auto& r : t.rows) {
    INFO(r.tensor);
    REQUIRE(r.types == so.types);
    for (size_t lo = 0; lo < r.types.size(); ++lo)
      for (size_t hi = lo + 1; hi < r.types.size(); ++hi) {
        INFO(type_name(r.types[lo]) << " " << r.kld[lo] << " vs " << type_name(r.types[hi]) << " " << r.kld[hi]);
        CHECK(r.kld[hi] <= r.kld[lo] * 1.25 + 1e-6);
      }
    CHECK(r.kld.front() > 20 * r.kld.back());  // 2 bits cost far more than 8
    CHECK(r.kld.front() > 0);
  }
  // Tensors differ: the most sensitive tensor at 2 bits costs several times the least.
  double mx = 0, mn = 1e300;
  for (const auto& r : t.rows) mx = std::max(mx, r.kld[1]), mn = std::min(mn, r.kld[1]);
  CHECK(mx > 2 * mn);
}

TEST_CASE("sensitivity: starting each evaluation at the tensor's block gives the same table bit for bit",
          "[profile][dynamic]") {
  const auto in = sens_inputs();
  if (!in) return;
  const auto& [tiny, src, tokens] = *in;
  SensitivityOptions so = in->options(64, 2, {QuantType::Q2_K, QuantType::Q4_K});
  // Out of block order on purpose, with the embeddings (block 0) and the output head (after the last block).
  so.tensors = {"blk.4.ffn_up.weight", "output.weight", "blk.0.attn_k.weight", "token_embd.weight",
                "blk.5.ffn_down.weight", "blk.2.attn_output.weight"};
  REQUIRE(so.resume_at_block);
  const SensitivityTable fast = measure_sensitivity(*src, tokens, so);
  so.resume_at_block = false;
  const SensitivityTable whole = measure_sensitivity(*src, tokens, so);
  REQUIRE(fast.rows.size() == so.tensors.size());
  REQUIRE(whole.rows.size() == so.tensors.size());
  for (size_t i = 0; i < so.tensors.size(); ++i) {
    INFO(so.tensors[i]);
    CHECK(fast.rows[i].tensor == so.tensors[i]);  // the requested order, whatever the measuring order
    CHECK(fast.rows[i].types == whole.rows[i].types);
    REQUIRE(fast.rows[i].kld.size() == whole.rows[i].kld.size());
    for (size_t j = 0; j < fast.rows[i].kld.size(); ++j) {
      CHECK(fast.rows[i].kld[j] == whole.rows[i].kld[j]);
      CHECK(fast.rows[i].kld[j] > 0);
    }
  }
  CHECK(fast.reference_kld_floor < 1e-9);
  CHECK(fast.key == whole.key);  // the option does not change what the table means
}

TEST_CASE("sensitivity: the cache round-trips and is reused only for the same inputs", "[profile][dynamic]") {
  const auto in = sens_inputs();
  if (!in) return;
  const auto& [tiny, src, tokens] = *in;
  test::TempDir tmp;
  const fs::path cache = tmp.path() / "im.sensitivity.json";
  SensitivityOptions so = in->options(32, 2, {QuantType::Q2_K, QuantType::Q4_K});
  so.tensors = {"blk.1.attn_k.weight", "blk.3.ffn_up.weight"};
  bool reused = true;
  const SensitivityTable a = cached_sensitivity(*src, tokens, so, cache, &reused);
  CHECK_FALSE(reused);
  REQUIRE(fs::exists(cache));
  const SensitivityTable b = SensitivityTable::load(cache);
  CHECK(b.key == a.key);
  REQUIRE(b.rows.size() == a.rows.size());
  for (size_t i = 0; i < a.rows.size(); ++i) {
    CHECK(b.rows[i].tensor == a.rows[i].tensor);
    CHECK(b.rows[i].types == a.rows[i].types);
    for (size_t k = 0; k < a.rows[i].kld.size(); ++k) CHECK(b.rows[i].kld[k] == a.rows[i].kld[k]);
  }
  const SensitivityTable c = cached_sensitivity(*src, tokens, so, cache, &reused);
  CHECK(reused);
  CHECK(c.rows[0].kld == a.rows[0].kld);
  // Other chunks, other text, another imatrix or other types: measured again.
  SensitivityOptions so2 = so;
  so2.chunks = 3;
  (void)cached_sensitivity(*src, tokens, so2, cache, &reused);
  CHECK_FALSE(reused);
  std::vector<int32_t> other(tokens.begin() + 1, tokens.end());
  CHECK_FALSE(sensitivity_key(*src, other, so2) == sensitivity_key(*src, tokens, so2));
  so2.types = {QuantType::Q3_K};
  CHECK_FALSE(sensitivity_key(*src, tokens, so2) == sensitivity_key(*src, tokens, so));
  so2 = so;
  so2.imatrix = nullptr;
  CHECK_FALSE(sensitivity_key(*src, tokens, so2) == sensitivity_key(*src, tokens, so));
  // A table written before the quantizers' revision was recorded (its key has none) was measured
  // with other quantized bytes: measured again.
  (void)cached_sensitivity(*src, tokens, so, cache, &reused);  // the cache holds so's table again
  {
    auto j = nlohmann::json::parse(read_file(cache));
    REQUIRE(j.at("key").contains("revision"));
    j["key"].erase("revision");
    std::ofstream(cache, std::ios::trunc) << j.dump();
  }
  CHECK(SensitivityTable::load(cache).key.revision == 1);
  (void)cached_sensitivity(*src, tokens, so, cache, &reused);
  CHECK_FALSE(reused);
  (void)cached_sensitivity(*src, tokens, so, cache, &reused);
  CHECK(reused);
  // A damaged file is an error of its own kind.
  std::ofstream(tmp.path() / "bad.json") << "{\"format\": \"lq-sensitivity\", \"key\": 3}";
  try {
    (void)SensitivityTable::load(tmp.path() / "bad.json");
    FAIL("a malformed table was read");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::profile_error);
  }
}

TEST_CASE("sensitivity: measured costs replace errors, unmeasured types scale by the nearest measured one",
          "[profile][dynamic]") {
  std::vector<profile::TensorErrors> errs(1);
  errs[0].tensor = "blk.0.attn_q.weight";
  errs[0].types = {QuantType::Q2_K, QuantType::Q4_K, QuantType::Q8_0};
  errs[0].error = {100, 10, 1};
  errs[0].bytes = {10, 20, 40};
  errs[0].protected_max_rel = {0, 0, 0};
  SensitivityTable t;
  t.rows.push_back({"blk.0.attn_q.weight", {QuantType::Q4_K}, {0.5}});
  profile::apply_sensitivity(errs, t);
  CHECK(errs[0].error[1] == 0.5);
  CHECK(errs[0].error[0] == Approx(5.0));
  CHECK(errs[0].error[2] == Approx(0.05));
  std::vector<profile::TensorErrors> missing(1);
  missing[0].tensor = "blk.1.attn_q.weight";
  missing[0].types = {QuantType::Q4_K};
  missing[0].error = {1};
  missing[0].bytes = {1};
  missing[0].protected_max_rel = {0};
  CHECK_THROWS_AS(profile::apply_sensitivity(missing, t), Error);
}

TEST_CASE("sensitivity: the solver meets the size target with the measured objective", "[profile][dynamic]") {
  const auto in = sens_inputs();
  if (!in) return;
  const auto& [tiny, src, tokens] = *in;
  // One probe type for every tensor: the others are estimated from it.
  SensitivityOptions so = in->options(32, 2, {QuantType::Q3_K});
  const SensitivityTable t = measure_sensitivity(*src, tokens, so);
  CHECK(t.rows.size() == 44);  // 6 blocks x 7 linears, token_embd, output
  ResolveOptions ro;
  ro.imatrix = &tiny.imatrix;
  ro.max_rows_per_tensor = 64;
  ro.sensitivity = &t;
  Profile p;
  p.name = "kld";
  for (const uint64_t target : {1'500'000ull, 2'500'000ull}) {
    p.target_bytes = target;
    const auto r = resolve_profile(p, *src, ro);
    INFO("target " << target << " got " << r.total_bytes);
    CHECK(r.total_bytes <= target);
    CHECK(static_cast<double>(r.total_bytes) >= 0.99 * static_cast<double>(target));
  }
  // A table that does not cover a tensor the solver must decide is refused.
  SensitivityTable partial = t;
  partial.rows.pop_back();
  ro.sensitivity = &partial;
  // (through in->src: a lambda may not capture a structured binding before clang 16)
  test::check_error(Errc::profile_error, [&] { (void)resolve_profile(p, *in->src, ro); }, "", "a partial table was accepted");
}

TEST_CASE("sensitivity: mixes measured whole agree with the table, and the lower-KLD objective's mix is kept",
          "[profile][dynamic]") {
  const auto in = sens_inputs();
  if (!in) return;
  const auto& [tiny, src, tokens] = *in;
  SensitivityOptions so = in->options(32, 2, {QuantType::Q2_K});
  so.tensors = {"blk.2.ffn_up.weight", "output.weight"};
  const SensitivityTable t = measure_sensitivity(*src, tokens, so);
  // One tensor quantized alone gives the table's figure; a later mix that does not name it gets
  // it back unquantized (the floor). Both together: more than the smaller alone, but not the sum,
  // nor even above the larger here (0.0315 against output's 0.0319 alone): the KLDs do not add,
  // which is why the resolver measures whole mixes.
  const std::vector<double> k = measure_mix_kld(
      *src, tokens, so,
      {{{"blk.2.ffn_up.weight", QuantType::Q2_K}},
       {},
       {{"output.weight", QuantType::Q2_K}},
       {{"blk.2.ffn_up.weight", QuantType::Q2_K}, {"output.weight", QuantType::Q2_K}},
       {{"blk.2.ffn_up.weight", QuantType::BF16}}});
  REQUIRE(k.size() == 5);
  CHECK(k[0] == Approx(t.find("blk.2.ffn_up.weight")->kld[0]).epsilon(1e-9));
  CHECK(k[1] < 1e-9);
  CHECK(k[2] == Approx(t.find("output.weight")->kld[0]).epsilon(1e-9));
  CHECK(k[3] > std::min(k[0], k[2]));
  CHECK(k[3] < k[0] + k[2]);
  CHECK(k[4] < 1e-9);  // the stored type: the original values

  // The resolver keeps the mix its measurement ranks lower: a measurement preferring the error
  // objective's mix gives that objective's assignment, one preferring kld's the kld one.
  SensitivityOptions all = in->options(32, 2, {QuantType::Q3_K});
  const SensitivityTable table = measure_sensitivity(*src, tokens, all);
  Profile p;
  p.name = "mix";
  p.target_bytes = 2'500'000;
  ResolveOptions ro;
  ro.imatrix = &tiny.imatrix;
  ro.max_rows_per_tensor = 64;
  const auto by_error = resolve_profile(p, *in->src, ro);
  ro.sensitivity = &table;
  const auto by_kld = resolve_profile(p, *in->src, ro);
  CHECK(by_kld.objective == "kld");
  CHECK(by_error.objective == "error");
  auto types = [](const ProfileResolution& r) {
    std::vector<QuantType> v;
    for (const auto& a : r.tensors) v.push_back(a.type);
    return v;
  };
  REQUIRE(types(by_kld) != types(by_error));  // the two objectives disagree at this size
  int calls = 0;
  for (const bool prefer_error : {true, false}) {
    ro.measure_mixes = [&](const std::vector<TypeAssignment>& mixes) {
      ++calls;
      CHECK(mixes.size() == 2);
      return prefer_error ? std::vector<double>{2.0, 1.0} : std::vector<double>{1.0, 2.0};
    };
    const auto r = resolve_profile(p, *in->src, ro);
    CHECK(r.objective == (prefer_error ? "error" : "kld"));
    CHECK(r.mix_kld.size() == 2);
    CHECK(types(r) == types(prefer_error ? by_error : by_kld));
  }
  CHECK(calls == 2);
}

TEST_CASE("sensitivity: CLI refusals of the kld objective", "[profile][dynamic][cli]") {
  const auto tiny = test::tiny_with_imatrix();
  if (!tiny) return;
  test::TempDir tmp;
  const std::string m = tiny->model.string(), im = tiny->imatrix_path.string();
  const std::string out = (tmp.path() / "o.gguf").string();
  test::check_cli_failure({"quantize " + m + " gguf -q Q4_K_M --objective kld --imatrix " + im + " -o " + out, 2,
                           "-q dynamic only"});
  test::check_cli_failure({"quantize " + m + " gguf -q dynamic --objective mse --imatrix " + im + " -o " + out, 2,
                           "expected error or kld"});
  test::check_cli_failure({"quantize " + m + " gguf -q dynamic --objective kld -o " + out, 2, "needs --imatrix"});
  test::check_cli_failure({"quantize " + m + " gguf -q dynamic --objective error --sensitivity-chunks 2 --imatrix " + im +
                               " -o " + out,
                           2, "--objective kld only"});
  test::check_cli_failure({"quantize " + m + " gguf -q dynamic --objective kld --sensitivity-chunks 0 --imatrix " + im +
                               " -o " + out,
                           2, "must be positive"});
  test::check_cli_failure({"quantize " + m + " smoothquant --smoothquant --objective kld -o " + out, 2,
                           "gguf output"});
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("sensitivity: kld is the default objective wherever the solver runs, cached beside the imatrix",
          "[profile][dynamic][cli]") {
  const auto tiny = test::tiny_with_imatrix();
  if (!tiny) return;
  test::TempDir tmp;
  const fs::path im = tmp.path() / "tiny.imatrix";
  fs::copy_file(tiny->imatrix_path, im);
  const std::string m = tiny->model.string();
  const std::string small = " --sensitivity-chunks 1 --sensitivity-ctx 64";
  // The balanced preset solves to 3.5 bpw with an imatrix: measured by default, cached beside it.
  auto r = test::run(test::cli_path() + " quantize " + m + " gguf -q dynamic --imatrix " + im.string() + small +
                     " -o " + (tmp.path() / "kld.gguf").string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("objective kld, the default") != std::string::npos);
  CHECK(fs::exists(fs::path(im.string() + ".sensitivity.json")));
  // The same again: the table is reused.
  r = test::run(test::cli_path() + " quantize " + m + " gguf -q dynamic --imatrix " + im.string() + small + " -o " +
                (tmp.path() / "kld2.gguf").string());
  REQUIRE(r.status == 0);
  CHECK(r.err.find("Sensitivity: reused") != std::string::npos);
  auto bytes = [](const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  CHECK(bytes(tmp.path() / "kld.gguf") == bytes(tmp.path() / "kld2.gguf"));
  // The JSON result names the objective whose mix was kept; where the two mixes differ, both
  // were measured whole and the lower was kept.
  r = test::run(test::cli_path() + " --format json quantize " + m + " gguf -q dynamic --imatrix " + im.string() +
                small + " -o " + (tmp.path() / "kld3.gguf").string());
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  const std::string kept = j.at("solver_objective").get<std::string>();
  CHECK((kept == "kld" || kept == "error"));
  if (j.contains("solver_mix_kld")) {
    const double k = j["solver_mix_kld"].at("kld").get<double>(), e = j["solver_mix_kld"].at("error").get<double>();
    CHECK(kept == (e < k ? "error" : "kld"));
    CHECK(r.err.find("keeping the") != std::string::npos);
  }
  // --objective error measures nothing.
  r = test::run(test::cli_path() + " quantize " + m + " gguf -q dynamic --objective error --imatrix " + im.string() +
                " -o " + (tmp.path() / "err.gguf").string());
  REQUIRE(r.status == 0);
  CHECK(r.err.find("Sensitivity") == std::string::npos);
  // No imatrix, no solve: the preset's importance-free rules, nothing measured, no refusal.
  r = test::run(test::cli_path() + " quantize " + m + " gguf -q dynamic -o " + (tmp.path() / "rules.gguf").string());
  REQUIRE(r.status == 0);
  CHECK(r.err.find("Sensitivity") == std::string::npos);
}
