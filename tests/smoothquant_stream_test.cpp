// SmoothQuant at bounded memory (smoothquant_model, one decoder block at a time) on the tiny
// Llama: the directory it writes is byte for byte the in-memory SmoothQuantizer's (fixed alpha,
// alpha auto, static activations, a percentile, the v_proj -> o_proj and up_proj -> down_proj
// mappings); the extra mappings keep the model's function when nothing is quantized (GQA: 4 query
// heads over 2 KV heads); cancellation and a shard cut short while blocks stream leave nothing.
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/model.hpp>
#include <lq/quality.hpp>
#include <lq/smoothquant.hpp>
#include <lq/tokenizer.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>

using namespace lq;
namespace fs = std::filesystem;

namespace {

SmoothQuantConfig sqs_config() {
  SmoothQuantConfig c;
  c.calibration_samples = 4;
  c.ctx = 96;
  return c;
}

// Every file of two directories, byte for byte (names listed when they differ).
void sqs_same_files(const fs::path& a, const fs::path& b) {
  std::vector<std::string> na, nb;
  for (const auto& e : fs::directory_iterator(a)) na.push_back(e.path().filename().string());
  for (const auto& e : fs::directory_iterator(b)) nb.push_back(e.path().filename().string());
  std::sort(na.begin(), na.end());
  std::sort(nb.begin(), nb.end());
  REQUIRE(na == nb);
  for (const auto& n : na) {
    INFO(n);
    CHECK(read_file(a / n) == read_file(b / n));
  }
}

// Calls `act` at the first progress update of `task` reaching `done`.
class SqsAtProgress final : public Progress {
 public:
  SqsAtProgress(std::string task, int64_t done, std::function<void()> act)
      : task_(std::move(task)), done_(done), act_(std::move(act)) {}
  void update(std::string_view task, int64_t done, int64_t, std::string_view) override {
    if (task == task_ && done >= done_ && act_) {
      auto a = std::move(act_);
      act_ = nullptr;
      a();
    }
  }
  std::vector<std::string> messages;
  void message(std::string_view m) override { messages.emplace_back(m); }

 private:
  std::string task_;
  int64_t done_;
  std::function<void()> act_;
};

bool sqs_only(const fs::path& parent, const std::vector<std::string>& names) {
  std::vector<std::string> got;
  for (const auto& e : fs::directory_iterator(parent)) got.push_back(e.path().filename().string());
  std::sort(got.begin(), got.end());
  auto want = names;
  std::sort(want.begin(), want.end());
  return got == want;
}

}  // namespace

TEST_CASE("smoothquant stream: the streamed directory equals the in-memory one byte for byte", "[smoothquant]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;  // skipped by shared_file
  struct Case {
    const char* what;
    std::function<void(SmoothQuantConfig&)> set;
  };
  const std::vector<Case> cases = {
      {"alpha 0.5", [](SmoothQuantConfig&) {}},
      {"alpha auto", [](SmoothQuantConfig& c) {
         c.alpha_auto = true;
         c.alpha_grid = {0, 0.25, 0.5, 0.75, 1};
         c.auto_rows = 96;
       }},
      {"static activations, alpha 0.8", [](SmoothQuantConfig& c) {
         c.static_activations = true;
         c.alpha = 0.8;
       }},
      {"all mappings, alpha auto, static, percentile 99.5", [](SmoothQuantConfig& c) {
         c.smooth_all = true;
         c.alpha_auto = true;
         c.alpha_grid = {0, 0.3, 0.6, 0.9};
         c.auto_rows = 64;
         c.static_activations = true;
         c.activation_percentile = 99.5;
       }},
      {"smoothing only, all mappings", [](SmoothQuantConfig& c) {
         c.smooth_all = true;
         c.quantize = false;
       }},
  };
  auto src = ModelSource::open(*dir);
  for (const auto& k : cases) {
    INFO(k.what);
    SmoothQuantConfig c = sqs_config();
    c.calibration_data = *calib;
    k.set(c);
    test::TempDir tmp;
    SmoothQuantizer sq(*src, c);
    sq.calibrate();
    const SmoothQuantResult a = sq.write(tmp / "memory");
    const SmoothQuantResult b = smoothquant_model(*dir, tmp / "streamed", c);
    sqs_same_files(tmp / "memory", tmp / "streamed");
    REQUIRE(a.groups.size() == b.groups.size());
    for (size_t g = 0; g < a.groups.size(); ++g) {
      CHECK(a.groups[g].norm == b.groups[g].norm);
      CHECK(a.groups[g].alpha == b.groups[g].alpha);
      CHECK(a.groups[g].scales == b.groups[g].scales);
      CHECK(a.groups[g].mse_chosen == b.groups[g].mse_chosen);
    }
    CHECK(a.tokens == b.tokens);
    CHECK(a.not_smoothed == b.not_smoothed);
    CHECK(b.groups.size() == (c.smooth_all ? 24u : 12u));
    CHECK(sqs_only(tmp.path(), {"memory", "streamed"}));  // no work files or temporary directories left
  }
}

TEST_CASE("smoothquant stream: v_proj -> o_proj and up_proj -> down_proj keep the logits", "[smoothquant]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;  // skipped by shared_file
  auto src = ModelSource::open(*dir);
  auto original = Model::load(*src);
  REQUIRE(original->config().n_head == 2 * original->config().n_head_kv);  // GQA: the scale spread is exercised
  const auto tokens = tokenizer_for(*src).encode("Once upon a time, there was a little dog named Max. He liked to run");
  const auto want = test::logits_of(*original, tokens);
  for (double alpha : {0.5, 1.0}) {
    INFO("alpha " << alpha);
    SmoothQuantConfig c = sqs_config();
    c.quantize = false;
    c.smooth_all = true;
    c.alpha = alpha;
    c.calibration_data = *calib;
    SmoothQuantizer sq(*src, c);
    sq.calibrate();
    REQUIRE(sq.groups().size() == 24);
    // The new groups: v_proj's rows (one scale per KV channel) and up_proj's rows; the scales move.
    for (size_t g = 0; g < sq.groups().size(); ++g) {
      const auto& G = sq.groups()[g];
      if (g % 4 == 2) {
        CHECK(G.norm == fmt::format("model.layers.{}.self_attn.v_proj", G.layer));
        CHECK(G.linears == std::vector<std::string>{fmt::format("model.layers.{}.self_attn.o_proj", G.layer)});
        CHECK(G.scales.size() == static_cast<size_t>(original->config().n_head_kv * original->config().head_dim));
        CHECK(G.scale_max / G.scale_min > 1.5);
      }
      if (g % 4 == 3) {
        CHECK(G.norm == fmt::format("model.layers.{}.mlp.up_proj", G.layer));
        CHECK(G.scales.size() == static_cast<size_t>(original->config().n_ff));
        CHECK(G.scale_max / G.scale_min > 1.5);
      }
    }
    auto smoothed = Model::load(*src);
    sq.apply(*smoothed);
    const auto got = test::logits_of(*smoothed, tokens);
    CHECK(test::worst_row_rel_diff(got, want, static_cast<size_t>(original->n_vocab())) < 1e-4);
    for (const char* t : {"blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.3.ffn_up.weight", "blk.3.ffn_down.weight"}) {
      INFO(t);
      CHECK(smoothed->tensor_f32(t) != original->tensor_f32(t));
    }
  }
}

TEST_CASE("smoothquant stream: cancellation between blocks leaves nothing", "[smoothquant]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;  // skipped by shared_file
  SmoothQuantConfig c = sqs_config();
  c.calibration_data = *calib;
  test::TempDir tmp;
  CancelToken token;
  bool saw_work = false;
  SqsAtProgress progress("Calibrating", 3, [&] {
    // Mid-stream: the temporary directory and its work files exist now.
    for (const auto& e : fs::directory_iterator(tmp.path()))
      if (e.path().filename().string().find(".tmp-") != std::string::npos && fs::exists(e.path() / ".smoothquant-work"))
        saw_work = true;
    token.cancel();
  });
  Context ctx;
  ctx.cancel = &token;
  ctx.progress = &progress;
  try {
    smoothquant_model(*dir, tmp / "out", c, ctx);
    FAIL("not interrupted");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::interrupted);
  }
  CHECK(saw_work);
  CHECK(fs::is_empty(tmp.path()));
}

TEST_CASE("smoothquant stream: a shard cut short mid-stream fails with exit 6 and leaves nothing", "[smoothquant]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;  // skipped by shared_file
  test::TempDir tmp;
  const fs::path model = tmp / "model";
  fs::create_directory(model);
  for (const auto& e : fs::directory_iterator(*dir)) fs::copy_file(e.path(), model / e.path().filename());
  for (const auto& e : fs::directory_iterator(model)) fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  // Blocks 3-5 live in the second shard: it is cut in half once block 1 is done.
  const fs::path shard = model / "model-00002-of-00002.safetensors";
  const auto size = fs::file_size(shard);
  SmoothQuantConfig c = sqs_config();
  c.calibration_data = *calib;
  SqsAtProgress progress("Calibrating", 2, [&] { fs::resize_file(shard, size / 2); });
  Context ctx;
  ctx.progress = &progress;
  fs::create_directory(tmp / "parent");
  try {
    smoothquant_model(model, tmp / "parent" / "out", c, ctx);
    FAIL("the cut shard was not noticed");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::invalid_model);
    CHECK_THAT(e.what(), Catch::Matchers::Contains("model-00002-of-00002.safetensors"));
  }
  CHECK(fs::is_empty(tmp / "parent"));
  // The CLI on the cut checkpoint: exit 6 naming the shard, nothing written.
  test::check_cli_failure({"quantize " + model.string() + " smoothquant --smoothquant --calibration-samples 2 --ctx 64 "
                           "--calibration-data " + calib->string() + " -o " + (tmp / "parent" / "out").string(),
                           6, "model-00002-of-00002.safetensors"});
  CHECK(fs::is_empty(tmp / "parent"));
}

TEST_CASE("smoothquant stream: CLI --smooth-mappings", "[smoothquant][cli]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;  // skipped by shared_file
  test::TempDir tmp;
  const std::string m = dir->string(), o = " -o " + (tmp / "bad").string();
  test::check_cli_failure({"quantize " + m + " smoothquant --smoothquant --smooth-mappings some" + o, 2, "--smooth-mappings"});
  test::check_cli_failure({"quantize " + m + " gguf -q Q8_0 --smooth-mappings all" + o, 2, "--smooth-mappings"});
  test::check_cli_failure(
      {"quantize " + m + " smoothquant --smoothquant --calibration-activations f16" + o, 2, "--calibration-activations"});
  test::check_cli_failure({"quantize " + m + " rtn --calibration-activations bf16" + o, 2, "--calibration-activations"});
  const auto r = test::run(test::cli_path() + " --format json quantize " + m +
                           " smoothquant --smoothquant --smooth-mappings all --calibration-samples 2 --ctx 64 "
                           "--calibration-data " + calib->string() + " -o " + (tmp / "out").string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["smooth_mappings"] == "all");
  CHECK(j["calibration_activations"] == "bf16");  // the default for a bf16 checkpoint
  CHECK(j["layer_summary"].size() == 24);
  CHECK(j["not_smoothed"].empty());
  CHECK(r.err.find("Smoothing mappings: all") != std::string::npos);
  CHECK(sqs_only(tmp.path(), {"out"}));
}
