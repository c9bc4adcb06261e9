// lq::quantize_model (quantize_job.hpp): the library runs what `lq quantize` runs, to the byte,
// and reports a failed gate in its result instead of throwing.
#include <lq/lq.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>

using namespace lq;
namespace fs = std::filesystem;

TEST_CASE("quantize_model: dynamic, protected and gated, as the CLI writes it, a failed gate is a verdict",
          "[quantize][job]") {
  const auto tiny = test::tiny_with_imatrix();
  if (!tiny) return;
  test::TempDir tmp;
  const Imatrix& im = tiny->imatrix;
  auto src = ModelSource::open(tiny->model);

  QuantizeJob job;
  job.profile = Profile::load("quality");
  job.options.imatrix = &im;
  job.options.imatrix_path = tiny->imatrix_path.string();
  job.protect_coverage = 1e-4;
  job.gates.perplexity = true;
  GateSettings gate;
  gate.samples = 2;
  gate.max_perplexity_increase_pct = -100;  // no quantization passes this
  job.gates.settings = gate;
  Context ctx;
  ctx.threads = 2;
  const QuantizeJobResult r = quantize_model(*src, tmp / "lib.gguf", job, ctx);

  CHECK(r.dynamic);
  CHECK(r.profile == "quality");
  CHECK(r.protected_weights.size() >= 400);
  CHECK(r.raised_tensors > 0);
  REQUIRE(r.resolution);
  CHECK(r.layers.size() == 8);  // 6 blocks, embeddings, lm_head
  REQUIRE(r.quality);
  CHECK(r.quality->chunks == 2);
  CHECK(r.gate == Errc::quality_degraded);
  CHECK_FALSE(r.passed());
  CHECK(r.gate_message.find("exceeds threshold (-100%)") != std::string::npos);
  CHECK(fs::exists(tmp / "lib.gguf"));

  // The CLI with the same flags writes the same bytes (and exits 11 on the same gate).
  const std::string cmd = test::cli_path() + " quantize " + tiny->model.string() + " gguf --dynamic --profile quality --imatrix " +
                          tiny->imatrix_path.string() + " --protect-super-weights --quality-report --threads 2 -o " +
                          (tmp / "cli.gguf").string();
  const auto cli = test::run("LLM_QUANTIZE_QUALITY_SAMPLES=2 LLM_QUANTIZE_QUALITY_THRESHOLD=-100 " + cmd);
  CHECK(cli.status == exit_code(Errc::quality_degraded));
  CHECK(read_file(tmp / "cli.gguf") == read_file(tmp / "lib.gguf"));

  // Protection needs the importance matrix it selects from.
  QuantizeJob bad;
  bad.protect_coverage = 1e-4;
  try {
    (void)quantize_model(*src, tmp / "bad.gguf", bad, ctx);
    FAIL("protection without an importance matrix was accepted");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::invalid_argument);
  }
}
