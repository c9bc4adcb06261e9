// GPTQ streamed at bounded memory (gptq_model): the same directory, byte for byte, as the
// in-memory GptqQuantizer on the tiny model (several settings and layouts); the checkpoint after
// every block: a cancelled run and `lq quantize MODEL gptq` killed with SIGKILL resume to the same
// bytes, a torn log is cut back to its good prefix, and a checkpoint made for other settings,
// calibration data or no checkpoint at all is refused with exit 2.
#include <lq/lq.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace lq;
namespace fs = std::filesystem;

namespace {

GptqConfig gs_config(const fs::path& calib) {
  GptqConfig c;
  c.calibration_samples = 3;
  c.ctx = 48;
  c.calibration_data = calib;
  return c;
}

}  // namespace

TEST_CASE("gptq stream: the same bytes as the in-memory quantizer", "[gptq][gptq-stream]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  struct Case {
    const char* name;
    GptqLayout layout;
    int bits;
    int64_t group;
    bool sym, rtn;
    GptqActOrder act;
  };
  const Case cases[] = {
      {"w4 g128 compressed-tensors", GptqLayout::compressed_tensors, 4, 128, true, false, GptqActOrder::none},
      {"w3 g64 asym act-order group", GptqLayout::compressed_tensors, 3, 64, false, false, GptqActOrder::group},
      {"w4 gptq layout static act-order", GptqLayout::gptq, 4, 128, true, false, GptqActOrder::static_groups},
      {"rtn w8 per channel", GptqLayout::compressed_tensors, 8, -1, true, true, GptqActOrder::none},
  };
  for (const Case& k : cases) {
    INFO(k.name);
    GptqConfig c = gs_config(t->calib);
    c.layout = k.layout;
    c.params.bits = k.bits;
    c.params.group_size = k.group;
    c.params.sym = k.sym;
    c.params.rtn = k.rtn;
    c.params.act_order = k.act;
    test::TempDir tmp;
    auto src = ModelSource::open(t->dir);
    GptqQuantizer q(*src, c);
    q.run();
    const GptqResult a = q.write(tmp / "memory");
    const GptqResult b = gptq_model(t->dir, tmp / "stream", c);
    CHECK(test::files_below(tmp / "memory") == test::files_below(tmp / "stream"));
    CHECK(a.files == b.files);
    CHECK(a.output_bytes == b.output_bytes);
    CHECK(a.n_quantized == b.n_quantized);
    CHECK(a.tokens == b.tokens);
    CHECK(a.warnings == b.warnings);
    // Group act-order is refused by vLLM: both say so, the others do not.
    const bool vllm_warned = std::any_of(a.warnings.begin(), a.warnings.end(),
                                         [](const std::string& w) { return w.find("vLLM") != std::string::npos; });
    CHECK(vllm_warned == (k.act == GptqActOrder::group));
    REQUIRE(a.layers.size() == b.layers.size());
    for (size_t i = 0; i < a.layers.size(); ++i) {
      CHECK(a.layers[i].module == b.layers[i].module);
      CHECK(a.layers[i].loss == b.layers[i].loss);
    }
    // No work files are left beside the output.
    int entries = 0;
    for (const auto& e : fs::directory_iterator(tmp.path())) (void)e, ++entries;
    CHECK(entries == 2);
    CHECK_FALSE(fs::exists(tmp / "stream" / ".gptq-work"));
  }
}

TEST_CASE("gptq: the calibration in bf16 for a bf16 checkpoint, in float on request, streamed alike", "[gptq][gptq-stream][cli]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  auto src = ModelSource::open(t->dir);
  test::TempDir tmp;
  GptqConfig c = gs_config(t->calib);
  GptqQuantizer bq(*src, c);  // unset: the tiny model's linears are bf16
  bq.run();
  const GptqResult b = bq.write(tmp / "bf16");
  CHECK(b.calibration_bf16);
  c.bf16_activations = false;
  GptqQuantizer fq(*src, c);
  fq.run();
  const GptqResult f = fq.write(tmp / "f32");
  CHECK_FALSE(f.calibration_bf16);
  // Block 0's q/k/v read the norm of the embeddings, the same either way; later inputs come out of
  // products, so other Hessians, other codes; the linears' calibration errors alike.
  CHECK(bq.matrix("model.layers.0.self_attn.q_proj").codes == fq.matrix("model.layers.0.self_attn.q_proj").codes);
  CHECK(bq.matrix("model.layers.2.mlp.down_proj").codes != fq.matrix("model.layers.2.mlp.down_proj").codes);
  double lb = 0, lf = 0;
  REQUIRE(b.layers.size() == f.layers.size());
  for (size_t i = 0; i < b.layers.size(); ++i) lb += b.layers[i].loss, lf += f.layers[i].loss;
  CHECK(lb == Approx(lf).epsilon(0.05));
  // The streamed run writes the same bytes with float activations too.
  const GptqResult s = gptq_model(t->dir, tmp / "stream", c);
  CHECK_FALSE(s.calibration_bf16);
  CHECK(test::files_below(tmp / "f32") == test::files_below(tmp / "stream"));
  // The CLI says which it ran.
  const std::string args = t->dir.string() + " gptq --calibration-samples 2 --ctx 48 --calibration-data " + t->calib.string();
  CHECK(test::quantize_json_field(args + " -o " + (tmp / "cli").string(), "calibration_activations") == "bf16");
  CHECK(test::quantize_json_field(args + " --calibration-activations f32 -o " + (tmp / "cli32").string(),
                                  "calibration_activations") == "f32");
}

TEST_CASE("gptq stream: a cancelled run resumes from its checkpoint to the same bytes", "[gptq][gptq-stream]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  test::TempDir tmp;
  GptqConfig c = gs_config(t->calib);
  gptq_model(t->dir, tmp / "ref", c);
  const auto want = test::files_below(tmp / "ref");

  c.checkpoint_dir = gptq_checkpoint_state(tmp / "ckpt", c, false);
  CHECK(c.checkpoint_dir == tmp / "ckpt" / "gptq-w4a16-g128");
  test::CancelAfter stop(2, "GPTQ");
  try {
    gptq_model(t->dir, tmp / "out", c, stop.ctx());
    FAIL("not interrupted");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::interrupted);
  }
  CHECK_FALSE(fs::exists(tmp / "out"));
  REQUIRE(fs::exists(c.checkpoint_dir / "state.json"));
  const std::string log = read_file(c.checkpoint_dir / "blocks.log");
  CHECK(std::count(log.begin(), log.end(), '\n') >= 2);

  // A torn last line (a process killed while appending it) is dropped.
  {
    std::ofstream(c.checkpoint_dir / "blocks.log", std::ios::app) << "block 9 0123";
  }
  GptqConfig other = c;
  other.resume = true;
  other.params.bits = 3;
  CHECK_THROWS_WITH(gptq_model(t->dir, tmp / "out", other), Catch::Matchers::Contains("other quantization settings"));
  other = c;
  other.resume = true;
  other.calibration_samples = 2;
  CHECK_THROWS_WITH(gptq_model(t->dir, tmp / "out", other), Catch::Matchers::Contains("other calibration data"));

  c.resume = true;
  const GptqResult r = gptq_model(t->dir, tmp / "out", c);
  CHECK(r.resumed_blocks >= 2);
  CHECK(r.resumed_blocks < 6);
  CHECK(r.layers.size() == 42);
  CHECK(test::files_below(tmp / "out") == want);
  CHECK_FALSE(fs::exists(tmp / "ckpt"));
  int entries = 0;
  for (const auto& e : fs::directory_iterator(tmp.path())) (void)e, ++entries;
  CHECK(entries == 2);  // ref and out: the cancelled run's temporary directory is gone
}

TEST_CASE("gptq stream: lq quantize MODEL gptq killed with SIGKILL resumes to the same bytes", "[gptq][gptq-stream][cli]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  test::TempDir tmp;
  const std::string base = test::cli_path() + " --threads 2 quantize " + t->dir.string() +
                           " gptq --calibration-samples 3 --ctx 48 --calibration-data " + t->calib.string();
  const auto ref = test::run(base + " --no-checkpoints -o " + (tmp / "ref").string());
  REQUIRE(ref.status == 0);
  const auto want = test::files_below(tmp / "ref");
  const fs::path ckpt = tmp / "ckpt";
  {
    test::CliChild c({"--threads", "2", "quantize", t->dir.string(), "gptq", "--calibration-samples", "3", "--ctx", "48",
               "--calibration-data", t->calib.string(), "--checkpoint-dir", ckpt.string(), "-o", (tmp / "out").string()});
    REQUIRE(c.wait_for_progress("GPTQ", " blocks", 2));
    const int st = c.signal_and_wait(SIGKILL);
    INFO(c.text());
    REQUIRE(WIFSIGNALED(st));
  }
  CHECK_FALSE(fs::exists(tmp / "out"));
  const fs::path state = ckpt / "gptq-w4a16-g128";
  REQUIRE(fs::exists(state / "state.json"));

  // Refusals: exit 2, the checkpoint left as it was.
  const auto bits = test::run(base + " --bits 3 --resume " + state.string() + " -o " + (tmp / "out").string());
  CHECK(bits.status == 2);
  CHECK(bits.err.find("was made for other quantization settings") != std::string::npos);
  const auto none = test::run(base + " --resume " + (tmp / "nothing").string() + " -o " + (tmp / "out").string());
  CHECK(none.status == 2);
  const auto both = test::run(base + " --resume " + ckpt.string() + " --no-checkpoints -o " + (tmp / "out").string());
  CHECK(both.status == 2);
  REQUIRE(fs::exists(state / "state.json"));

  const auto done = test::run(base + " --resume " + ckpt.string() + " -o " + (tmp / "out").string());
  INFO(done.err);
  REQUIRE(done.status == 0);
  CHECK(done.err.find("resumed: ") != std::string::npos);
  CHECK(done.err.find("/6 blocks from " + state.string()) != std::string::npos);
  CHECK(test::files_below(tmp / "out") == want);
  CHECK_FALSE(fs::exists(ckpt));
  for (const auto& e : fs::directory_iterator(tmp.path()))
    CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);  // the killed run's temporary output
}
