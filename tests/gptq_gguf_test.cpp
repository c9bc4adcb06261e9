// GPTQ on GGUF block types (gptq_gguf.hpp): on a random linear with correlated calibration
// inputs the GPTQ-fed blocks of every type with a walk (the legacy 4-, 5- and 8-bit types, the
// k-quants, the i-quants) have a lower output error than the plain
// quantization of the same type (with and without importance weights), the written blocks decode
// through the registry to the values the walk used, and `lq quantize MODEL gguf --gptq` refuses
// combinations that make no sense and writes the same tensor types as without the flag.
#include "support/support.hpp"

#include <lq/backend.hpp>
#include <lq/error.hpp>
#include <lq/gguf.hpp>
#include <lq/gptq_gguf.hpp>
#include <lq/io.hpp>
#include <lq/quantizer.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstring>
#include <fstream>
#include <random>
#include <set>

#include <sys/wait.h>

namespace fs = std::filesystem;
using namespace lq;

namespace {

std::vector<float> gg_decode(QuantType t, const std::vector<uint8_t>& b, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  Registry::instance().kernels(t).dequantize(b.data(), v.data(), n);
  return v;
}

// Two GGUF files of the same model: every tensor has the same name and type in both; returns how
// many tensors' bytes differ and the quantized types of the block tensors.
std::pair<int, std::set<QuantType>> compare_gguf(const fs::path& pa, const fs::path& pb) {
  const gguf::Reader a(pa);
  const gguf::Reader b(pb);
  REQUIRE(a.tensors().size() == b.tensors().size());
  std::set<QuantType> types;
  int differ = 0;
  for (size_t i = 0; i < a.tensors().size(); ++i) {
    const auto& ta = a.tensors()[i];
    const auto& tb = b.tensors()[i];
    CHECK(ta.name == tb.name);
    CHECK(ta.type == tb.type);
    if (ta.name.rfind("blk.", 0) == 0 && !type_info(ta.type).is_float()) types.insert(ta.type);
    if (ta.nbytes == tb.nbytes && std::memcmp(a.data(ta).data(), b.data(tb).data(), ta.nbytes) != 0) ++differ;
  }
  return {differ, types};
}

}  // namespace

TEST_CASE("gptq-gguf: error feedback on GGUF grids beats the plain quantization of the same type", "[gptq-gguf]") {
  const test::CalibProblem p = test::calib_problem(512, 256, 24, 7);
  std::vector<float> imp(static_cast<size_t>(p.d));
  for (int64_t j = 0; j < p.d; ++j) imp[static_cast<size_t>(j)] = p.h[static_cast<size_t>(j * p.d + j)] / 2;
  for (QuantType t : {QuantType::Q4_0, QuantType::Q8_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1,
                      QuantType::Q2_K, QuantType::Q3_K, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K,
                      QuantType::IQ4_NL, QuantType::IQ4_XS, QuantType::IQ2_XXS, QuantType::IQ2_XS, QuantType::IQ2_S,
                      QuantType::IQ3_XXS, QuantType::IQ3_S, QuantType::IQ1_S, QuantType::IQ1_M}) {
    REQUIRE(gptq_gguf_supported(t));
    for (bool with_imatrix : {false, true}) {
      if (!with_imatrix && (t == QuantType::IQ2_XXS || t == QuantType::IQ2_XS || t == QuantType::IQ1_S))
        continue;  // these need importance data
      CAPTURE(type_info(t).name, with_imatrix);
      const float* im = with_imatrix ? imp.data() : nullptr;
      GptqParams gp;
      const GptqGgufMatrix g = gptq_gguf_quantize_matrix(t, p.w.data(), p.rows, p.d, p.h.data(), im, gp);
      const size_t rb = type_info(t).row_bytes(p.d);
      REQUIRE(g.bytes.size() == rb * static_cast<size_t>(p.rows));
      // The written blocks decode to exactly the values the walk used.
      const std::vector<float> dec = gg_decode(t, g.bytes, p.rows * p.d);
      CHECK(test::same_bits(dec, g.values));
      std::vector<uint8_t> plain(rb * static_cast<size_t>(p.rows));
      Quantizer::quantize_rows(t, p.w.data(), plain.data(), p.rows, p.d, im);
      const double e_plain = test::calib_output_error(p, gg_decode(t, plain, p.rows * p.d));
      const double e_gptq = test::calib_output_error(p, dec);
      CHECK(e_gptq < 0.9 * e_plain);
      CHECK(g.loss > 0);
    }
  }
}

TEST_CASE("gptq-gguf: block headers come from the type's quantizer, codes stay on its grid", "[gptq-gguf]") {
  // With H = I there is no correlation to exploit: every block's first column sees the original
  // weights, so Q4_0's first block of each row has the plain quantizer's scale.
  const int64_t d = 64, rows = 4;
  std::vector<float> h(static_cast<size_t>(d * d), 0.0f), w = test::gaussian(static_cast<size_t>(d * rows), 3);
  for (int64_t i = 0; i < d; ++i) h[static_cast<size_t>(i * d + i)] = 1;
  GptqParams gp;
  const GptqGgufMatrix g = gptq_gguf_quantize_matrix(QuantType::Q4_0, w.data(), rows, d, h.data(), nullptr, gp);
  std::vector<uint8_t> plain(type_info(QuantType::Q4_0).row_bytes(d) * rows);
  Quantizer::quantize_rows(QuantType::Q4_0, w.data(), plain.data(), rows, d, nullptr);
  // A diagonal H gives no feedback: GPTQ is round to nearest, so the bytes are the plain ones.
  CHECK(g.bytes == plain);
}

TEST_CASE("gptq-gguf: usage errors", "[gptq-gguf]") {
  const test::CalibProblem p = test::calib_problem(64, 64, 2, 1);
  GptqParams gp;
  CHECK_THROWS_AS(gptq_gguf_quantize_matrix(QuantType::Q6_K, p.w.data(), 1, 64, p.h.data(), nullptr, gp), Error);
  CHECK_THROWS_AS(gptq_gguf_quantize_matrix(QuantType::Q4_K, p.w.data(), 2, 64, p.h.data(), nullptr, gp), Error);
  CHECK_THROWS_AS(gptq_gguf_quantize_matrix(QuantType::Q4_0, p.w.data(), 2, 64, nullptr, nullptr, gp), Error);
  CHECK(gptq_gguf_supported(QuantType::Q4_K));
  CHECK_FALSE(gptq_gguf_supported(QuantType::TQ1_0));
  CHECK_FALSE(gptq_gguf_supported(QuantType::F16));
  CHECK_THROWS_AS(gptq_gguf_quantize_matrix(QuantType::TQ2_0, p.w.data(), 1, 256, p.h.data(), nullptr, gp), Error);
}

TEST_CASE("gptq-gguf: CLI refusals exit 2, nothing written", "[gptq-gguf][cli]") {
  auto dir = test::shared_file("models/tiny-llama");
  if (!dir) return;
  const std::string m = dir->string();
  test::TempDir tmp;
  const std::string o = " -o " + (tmp / "o.gguf").string();
  std::vector<test::CliFailure> cases = {
      {"quantize " + m + " gguf -q Q4_0 --gptq --protect-super-weights" + o, 2,
       "--gptq cannot be combined with --protect-super-weights"},
      {"quantize " + m + " gguf -q Q4_0 --gptq --resume " + tmp.path().string() + o, 2, "--resume"},
      {"quantize " + m + " gguf -q Q4_0 --gptq --damp 0" + o, 2, "--damp"},
      {"quantize " + m + " gguf -q Q4_0 --gptq --calibration-samples 0" + o, 2, "--calibration-samples"},
      {"quantize " + m + " gguf -q Q4_0 --damp 0.01" + o, 2, "--gptq"},
      {"quantize " + m + " gguf -q Q4_0 --calibration-samples 8" + o, 2, "--gptq"},
      {"quantize " + m + " gptq --gptq" + o, 2, "--gptq applies to the gguf and awq output formats"},
  };
  if (auto f16 = test::shared_file("golden/tiny-llama-F16.gguf"))
    cases.push_back({"quantize " + f16->string() + " gguf -q Q4_0 --gptq" + o, 2, "Hugging Face"});
  for (const auto& c : cases) test::check_cli_failure(c);
  CHECK_FALSE(fs::exists(tmp / "o.gguf"));
}

TEST_CASE("gptq-gguf: CLI writes the plain run's tensor types with GPTQ blocks", "[gptq-gguf][cli]") {
  auto dir = test::shared_file("models/tiny-llama");
  if (!dir) return;
  test::TempDir tmp;
  std::ofstream(tmp / "calib.txt") << std::string(
      "The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill. ");
  {
    std::ofstream f(tmp / "calib.txt", std::ios::app);
    for (int i = 0; i < 60; ++i) f << "Sentence number " << i << " talks about rivers, mountains and old stone towns. ";
  }
  const std::string base = test::cli_path() + " quantize " + dir->string() + " gguf -q Q4_K_M ";
  const auto plain = test::run(base + "-o " + (tmp / "plain.gguf").string());
  REQUIRE(plain.status == 0);
  const auto g = test::run(base + "--gptq --calibration-samples 4 --ctx 64 --calibration-data " +
                           (tmp / "calib.txt").string() + " -o " + (tmp / "gptq.gguf").string());
  INFO(g.err);
  REQUIRE(g.status == 0);
  CHECK(g.out.find("GPTQ:") != std::string::npos);
  // Q4_K_M's Q4_K, Q5_K and Q6_K linears all have a walk.
  CHECK(g.out.find("42 linears with error feedback, 0 without") != std::string::npos);
  CHECK(compare_gguf(tmp / "plain.gguf", tmp / "gptq.gguf").first > 0);
  CHECK(fs::file_size(tmp / "plain.gguf") == fs::file_size(tmp / "gptq.gguf"));
}

TEST_CASE("gptq-gguf: the streamed calibration gives the in-memory run's bytes and leaves no work files",
          "[gptq-gguf]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  auto src = ModelSource::open(t->dir);
  QuantizeOptions qo;
  qo.ftype = FileType::Q4_K_M;
  GptqGgufConfig c;
  c.calibration_samples = 4;
  c.ctx = 64;
  c.calibration_data = t->calib;
  const GptqGgufResult memory = gptq_gguf_tensors(*src, qo, c);
  test::TempDir tmp;
  c.work_dir = tmp.path();
  const GptqGgufResult streamed = gptq_gguf_tensors(*src, qo, c);
  CHECK_FALSE(memory.tensor_bytes.empty());
  CHECK(streamed.gptq_tensors == memory.gptq_tensors);
  CHECK(streamed.plain_tensors == memory.plain_tensors);
  CHECK(streamed.tokens == memory.tokens);
  REQUIRE(streamed.tensor_bytes.size() == memory.tensor_bytes.size());
  for (const auto& [name, bytes] : memory.tensor_bytes) {
    INFO(name);
    CHECK(streamed.tensor_bytes.at(name) == bytes);
  }
  CHECK(fs::is_empty(tmp.path()));
}

TEST_CASE("gptq-gguf: an i-quant level walks every linear, on its planned types", "[gptq-gguf]") {
  auto t = test::tiny_with_calibration();
  auto im = test::shared_file("golden/imatrix.gguf");
  if (!t || !im) return;
  auto src = ModelSource::open(t->dir);
  const Imatrix imatrix = Imatrix::load(*im);
  QuantizeOptions qo;
  qo.ftype = FileType::IQ2_XXS;
  qo.imatrix = &imatrix;
  GptqGgufConfig c;
  c.calibration_samples = 4;
  c.ctx = 64;
  c.calibration_data = t->calib;
  const GptqGgufResult r = gptq_gguf_tensors(*src, qo, c);
  CHECK(r.plain_tensors.empty());
  CHECK(r.gptq_tensors.size() == 42);
  int lattice = 0;
  for (const TensorPlan& p : Quantizer(qo).plan(*src)) {
    auto it = r.tensor_bytes.find(p.name);
    if (it == r.tensor_bytes.end()) continue;
    INFO(p.name);
    CHECK(it->second.size() == type_info(p.type).row_bytes(p.ne[0]) * static_cast<size_t>(p.ne[1]));
    // The bytes decode to finite values (the codebook indices and signs are in range).
    const std::vector<float> v = gg_decode(p.type, it->second, p.ne[0] * p.ne[1]);
    CHECK(std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); }));
    lattice += p.type == QuantType::IQ2_XXS;
  }
  CHECK(lattice > 0);
}

TEST_CASE("gptq-gguf: a dynamic profile's types, walked", "[gptq-gguf][cli]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  test::TempDir tmp;
  const std::string base = test::cli_path() + " quantize " + t->dir.string() + " gguf -q dynamic --profile balanced ";
  const auto plain = test::run(base + "-o " + (tmp / "plain.gguf").string());
  REQUIRE(plain.status == 0);
  CHECK(plain.out.find("Level:       dynamic (profile balanced)") != std::string::npos);  // not the placeholder level
  const auto g = test::run(base + "--gptq --calibration-samples 4 --ctx 64 --calibration-data " + t->calib.string() +
                           " --format json -o " + (tmp / "gptq.gguf").string());
  INFO(g.err);
  REQUIRE(g.status == 0);
  const auto j = nlohmann::json::parse(g.out);
  CHECK(j.at("quantization_level") == "dynamic");
  CHECK(j.at("gptq").at("tensors").size() == 42);
  // The profile's types, tensor by tensor; the walked bytes differ.
  const auto [differ, types] = compare_gguf(tmp / "plain.gguf", tmp / "gptq.gguf");
  CHECK(types.size() > 1);  // a mix, not one level
  CHECK(differ > 0);
}

TEST_CASE("gptq-gguf: lq quantize --gptq killed with SIGKILL resumes to the same bytes", "[gptq-gguf][cli]") {
  auto t = test::tiny_with_calibration();
  auto im = test::shared_file("golden/imatrix.gguf");
  if (!t || !im) return;
  test::TempDir tmp;
  const std::vector<std::string> args = {"--threads", "2", "quantize", t->dir.string(), "gguf", "-q", "IQ2_XXS",
                                         "--imatrix", im->string(), "--gptq", "--calibration-samples", "3",
                                         "--ctx", "48", "--calibration-data", t->calib.string()};
  std::string base = test::cli_path();
  for (const auto& a : args) base += " " + a;
  const auto ref = test::run(base + " --no-checkpoints -o " + (tmp / "ref.gguf").string());
  REQUIRE(ref.status == 0);
  const fs::path ckpt = tmp / "ckpt", state = ckpt / "gguf-gptq-IQ2_XXS";
  for (int64_t at : {1, 4}) {  // killed after one block, and after four of six
    INFO("killed after block " << at);
    fs::remove_all(ckpt);
    fs::remove(tmp / "out.gguf");
    {
      std::vector<std::string> a = args;
      // Strings, not c_str() of temporaries: a temporary path dies before the loop body runs.
      for (const std::string& x : {std::string("--checkpoint-dir"), ckpt.string(), std::string("-o"), (tmp / "out.gguf").string()})
        a.push_back(x);
      test::CliChild c(a);
      REQUIRE(c.wait_for_progress("GPTQ", " blocks", at));
      const int st = c.signal_and_wait(SIGKILL);
      INFO(c.text());
      REQUIRE(WIFSIGNALED(st));
    }
    CHECK_FALSE(fs::exists(tmp / "out.gguf"));
    REQUIRE(fs::exists(state / "state.json"));
    // Another level's or another imatrix's settings are refused, the checkpoint kept.
    std::string other = base;
    other.replace(other.find("IQ2_XXS"), 7, "IQ2_XS");
    const auto lvl = test::run(other + " --resume " + state.string() + " -o " + (tmp / "out.gguf").string());
    CHECK(lvl.status == 2);
    CHECK(lvl.err.find("was made for other quantization settings") != std::string::npos);
    REQUIRE(fs::exists(state / "state.json"));
    const auto done = test::run(base + " --resume " + ckpt.string() + " -o " + (tmp / "out.gguf").string());
    INFO(done.err);
    REQUIRE(done.status == 0);
    CHECK(done.err.find("resumed: ") != std::string::npos);
    CHECK(read_file(tmp / "out.gguf") == read_file(tmp / "ref.gguf"));
    CHECK_FALSE(fs::exists(ckpt));  // removed once the file is written
  }
}
