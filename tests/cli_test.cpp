// The CLI contract: exit codes, one-line errors, JSON shapes, no partial output files.
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using lq::test::run;

namespace {

std::string lq_cmd() { return lq::test::cli_path(); }

bool only_output(const fs::path& dir, const std::string& expected) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename() != expected) return false;
  return true;
}

}  // namespace

TEST_CASE("cli: --version and --help", "[cli]") {
  auto r = run(lq_cmd() + " --version");
  CHECK(r.status == 0);
  CHECK(r.out.find("lq 0.") == 0);
  r = run(lq_cmd() + " --help");
  CHECK(r.status == 0);
  CHECK(r.out.find("quantize") != std::string::npos);
  for (const char* cmd : {"quantize", "info"}) {
    r = run(lq_cmd() + " " + cmd + " --help");
    CHECK(r.status == 0);
    CHECK(r.out.find("Usage") != std::string::npos);
  }
  // Every option group is listed: quantize's GPTQ / RTN / AWQ options and the global ones.
  r = run(lq_cmd() + " quantize --help");
  for (const char* o : {"--layout", "--bits", "--group-size", "--act-order", "--asym", "--damp", "--scale-search", "--threads"})
    CHECK(r.out.find(o) != std::string::npos);
}

TEST_CASE("cli: bad input gives one error line and the contract's exit code", "[cli][bad-input]") {
  auto model = lq::test::shared_file("models/tiny-llama");
  if (!model) return;
  lq::test::TempDir tmp;
  const std::string m = model->string();
  const std::vector<lq::test::CliFailure> cases = {
      {"quantize " + m + " gguf -q Q9_X -o " + (tmp / "a.gguf").string(), 2, "Q9_X"},
      {"quantize " + m + " gguf -o " + (tmp / "a.gguf").string(), 2, "-q"},
      {"quantize " + m + " onnx -q Q8_0 -o " + (tmp / "a.gguf").string(), 2, "onnx"},
      {"quantize " + m + " gguf -q Q8_0 --no-such-flag", 2, "no-such-flag"},
      {"quantize " + (tmp / "missing").string() + " gguf -q Q8_0 -o " + (tmp / "a.gguf").string(), 3, "not found"},
      {"quantize " + m + " gguf -q Q8_0 -o " + (tmp / "no-dir" / "a.gguf").string(), 7, "no-dir"},
      {"quantize " + m + " gguf -q IQ1_S -o " + (tmp / "a.gguf").string(), 10, "importance matrix"},
      {"quantize " + m + " gguf -q Q4_0 --imatrix " + (tmp / "nope.imatrix").string() + " -o " + (tmp / "a.gguf").string(), 10, "nope.imatrix"},
      {"quantize " + m + " gguf -q Q8_0 --tensor-type 'attn_q=Q9' -o " + (tmp / "a.gguf").string(), 2, "Q9"},
      {"info " + (tmp / "missing.gguf").string(), 3, "not found"},
      {"frobnicate", 2, "frobnicate"},
  };
  for (const auto& c : cases) {
    INFO(c.args);
    lq::test::check_cli_failure(c);
    CHECK(fs::is_empty(tmp.path()));
  }
}

TEST_CASE("cli: --format json errors follow the contract's shape", "[cli][bad-input]") {
  lq::test::TempDir tmp;
  auto r = run(lq_cmd() + " --format json quantize " + (tmp / "missing").string() + " gguf -q Q8_0");
  CHECK(r.status == 3);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["status"] == "error");
  CHECK(j["error_code"] == 3);
  CHECK(j["error_type"] == "ModelNotFoundError");
  CHECK(j["message"].get<std::string>().find("missing") != std::string::npos);
  CHECK(j.contains("suggestion"));
}

TEST_CASE("cli: a malformed model is rejected with exit 6 and nothing written", "[cli][bad-input]") {
  auto model = lq::test::shared_file("models/tiny-llama");
  if (!model) return;
  lq::test::TempDir tmp;
  const fs::path bad = tmp / "bad.gguf";
  std::ofstream(bad, std::ios::binary) << "GGUF\x03\x00\x00\x00garbage";
  const fs::path out = tmp / "out";
  fs::create_directory(out);
  auto r = run(lq_cmd() + " quantize " + bad.string() + " gguf -q Q8_0 -o " + (out / "x.gguf").string());
  CHECK(r.status == 6);
  CHECK(lq::test::error_lines(r.err) == 1);
  CHECK(fs::is_empty(out));
}

TEST_CASE("cli: quantize writes the file and a JSON result", "[cli]") {
  auto model = lq::test::shared_file("models/tiny-llama");
  if (!model) return;
  lq::test::TempDir tmp;
  const fs::path out = tmp / "t.gguf";
  auto r = run(lq_cmd() + " --format json quantize " + model->string() + " gguf -q Q8_0 -o " + out.string());
  REQUIRE(r.status == 0);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["status"] == "success");
  CHECK(j["quantization_level"] == "Q8_0");
  CHECK(j["file_size"].get<uint64_t>() == fs::file_size(out));
  CHECK(j["effective_bpw"].get<double>() > 8.0);
  CHECK(only_output(tmp.path(), "t.gguf"));
  CHECK(r.err.find("[lq] Complete") != std::string::npos);
  // info reads it back
  r = run(lq_cmd() + " --format json info " + out.string());
  REQUIRE(r.status == 0);
  j = nlohmann::json::parse(r.out);
  CHECK(j["quantization_level"] == "Q8_0");
  CHECK(j["tensor_count"] == 57);
  CHECK(j["tensor_types"]["Q8_0"]["tensors"] == 44);
}
