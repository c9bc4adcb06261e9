// AWQ streamed at bounded memory (awq_model on a checkpoint gptq_model streams): the same directory,
// byte for byte, and the same reports, as the in-memory AwqQuantizer on the tiny model (GQA: three
// groups a block) in two layouts, with down's clipping on its tokens and through its XᵀX (both
// read from its parked inputs when streamed; awq_vo_test.cpp has the MHA copy and its v_proj ->
// o_proj fold); `lq quantize MODEL awq`
// killed with SIGKILL after two blocks resumes from its checkpoint to the same bytes with every
// block's reports, and a checkpoint made for other settings is refused with exit 2.
#include <lq/lq.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <csignal>
#include <string>

#include <sys/wait.h>

using namespace lq;
namespace fs = std::filesystem;

namespace {

AwqConfig as_config(const fs::path& calib) {
  AwqConfig c;
  c.calibration_samples = 3;
  c.ctx = 48;
  c.calibration_data = calib;
  return c;
}

// In-memory and streamed outputs of `model` with c: the same files, sizes and reports.
void as_check_same(const fs::path& model, const AwqConfig& c, const fs::path& tmp) {
  auto src = ModelSource::open(model);
  AwqQuantizer q(*src, c);
  q.run();
  const AwqResult a = q.write(tmp / "memory");
  const AwqResult b = awq_model(model, tmp / "stream", c);
  CHECK(test::files_below(tmp / "memory") == test::files_below(tmp / "stream"));
  CHECK(a.gptq.files == b.gptq.files);
  CHECK(a.clipped_linears == b.clipped_linears);
  REQUIRE(a.groups.size() == b.groups.size());
  for (size_t i = 0; i < a.groups.size(); ++i) {
    CHECK(a.groups[i].group == b.groups[i].group);
    CHECK(a.groups[i].alpha == b.groups[i].alpha);
  }
  REQUIRE(a.gptq.layers.size() == b.gptq.layers.size());
  for (size_t i = 0; i < a.gptq.layers.size(); ++i) {
    CHECK(a.gptq.layers[i].module == b.gptq.layers[i].module);
    CHECK(a.gptq.layers[i].loss == b.gptq.layers[i].loss);
  }
  int entries = 0;
  for (const auto& e : fs::directory_iterator(tmp)) (void)e, ++entries;
  CHECK(entries >= 2);
  CHECK_FALSE(fs::exists(tmp / "stream" / ".gptq-work"));
}

}  // namespace

TEST_CASE("awq stream: the same bytes as the in-memory quantizer", "[awq][gptq-stream]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  {
    INFO("awq layout, 4-bit g128");
    test::TempDir tmp;
    as_check_same(t->dir, as_config(t->calib), tmp.path());
  }
  {
    INFO("compressed-tensors, 3-bit g64");
    test::TempDir tmp;
    AwqConfig c = as_config(t->calib);
    c.layout = GptqLayout::compressed_tensors;
    c.params.bits = 3;
    c.params.group_size = 64;
    as_check_same(t->dir, c, tmp.path());
  }
  // More tokens than down_proj's columns (1024 > 768): its search's XᵀX formed from the parked
  // inputs, its clipping's cross terms on the tokens (read group by group from a second file);
  // then enough tokens for its clipping to go through XᵀX too (2560 x 256 rows >= 768²).
  for (const auto& [samples, ctx] : {std::pair{8, 128}, std::pair{10, 256}}) {
    INFO(samples << " x " << ctx << " tokens");
    test::TempDir tmp;
    AwqConfig c = as_config(t->calib);
    c.calibration_samples = samples;
    c.ctx = ctx;
    as_check_same(t->dir, c, tmp.path());
  }
  {
    INFO("the scale search screened on 48 of 192 tokens");
    test::TempDir tmp;
    AwqConfig c = as_config(t->calib);
    c.calibration_samples = 4;
    c.params.search_tokens = 48;
    as_check_same(t->dir, c, tmp.path());
  }
}

TEST_CASE("awq: a screen that keeps every candidate gives the full search's bytes", "[awq][gptq-stream]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  test::TempDir tmp;
  AwqConfig c = as_config(t->calib);
  c.calibration_samples = 4;
  c.params.search_tokens = 0;  // every candidate on every token
  const AwqResult full = awq_model(t->dir, tmp.path() / "full", c);
  c.params.search_tokens = 48;
  c.params.search_keep = 20;  // all 20 α re-costed after the screen
  const AwqResult all = awq_model(t->dir, tmp.path() / "all", c);
  CHECK(test::files_below(tmp.path() / "full") == test::files_below(tmp.path() / "all"));
  c.params.search_keep = 1;  // the screen's winner alone, against the identity
  const AwqResult one = awq_model(t->dir, tmp.path() / "one", c);
  REQUIRE(one.groups.size() == full.groups.size());
  for (size_t i = 0; i < one.groups.size(); ++i) {
    CHECK(one.groups[i].loss <= one.groups[i].identity_loss);
    if (one.groups[i].layer > 0) continue;  // later blocks' inputs differ once an α does
    CHECK(one.groups[i].identity_loss == full.groups[i].identity_loss);
    CHECK(one.groups[i].loss >= full.groups[i].loss);  // never below the full search's minimum
  }
}

TEST_CASE("awq stream: lq quantize MODEL awq killed with SIGKILL resumes to the same bytes", "[awq][gptq-stream][cli]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  test::TempDir tmp;
  const std::string base = test::cli_path() + " --threads 2 quantize " + t->dir.string() +
                           " awq --calibration-samples 3 --ctx 48 --calibration-data " + t->calib.string();
  const auto ref = test::run(base + " --no-checkpoints -o " + (tmp / "ref").string());
  REQUIRE(ref.status == 0);
  const auto want = test::files_below(tmp / "ref");
  const fs::path ckpt = tmp / "ckpt";
  {
    test::CliChild c({"--threads", "2", "quantize", t->dir.string(), "awq", "--calibration-samples", "3", "--ctx", "48",
                      "--calibration-data", t->calib.string(), "--checkpoint-dir", ckpt.string(), "-o",
                      (tmp / "out").string()});
    REQUIRE(c.wait_for_progress("AWQ", " blocks", 2));
    const int st = c.signal_and_wait(SIGKILL);
    INFO(c.text());
    REQUIRE(WIFSIGNALED(st));
  }
  CHECK_FALSE(fs::exists(tmp / "out"));
  const fs::path state = ckpt / "awq-w4a16-g128";
  REQUIRE(fs::exists(state / "state.json"));

  // Other settings: exit 2, the checkpoint left as it was.
  const auto other = test::run(base + " --layout compressed-tensors --resume " + state.string() + " -o " +
                               (tmp / "out").string());
  CHECK(other.status == 2);
  CHECK(other.err.find("was made for other") != std::string::npos);
  REQUIRE(fs::exists(state / "state.json"));

  const auto done = test::run(base + " --format json --resume " + ckpt.string() + " -o " + (tmp / "out").string());
  INFO(done.err);
  REQUIRE(done.status == 0);
  CHECK(done.err.find("resumed: ") != std::string::npos);
  CHECK(test::files_below(tmp / "out") == want);
  CHECK_FALSE(fs::exists(ckpt));
  // The resumed blocks' reports come back from the checkpoint.
  const auto j = nlohmann::json::parse(done.out);
  const auto full = nlohmann::json::parse(test::run(base + " --format json --no-checkpoints -o " + (tmp / "again").string()).out);
  CHECK(j["resumed_blocks"].get<int>() >= 2);
  CHECK(j["scale_groups"] == full["scale_groups"]);
  CHECK(j["layer_summary"] == full["layer_summary"]);
  CHECK(j["clipped_linears"] == full["clipped_linears"]);
}
