// Checkpoint and resume of GGUF quantization: a run stopped at any point (cancelled, its log torn,
// `lq quantize` killed with SIGKILL at several points, Ctrl-C) and resumed writes the same bytes
// as an uninterrupted run, for a level and for a dynamic profile; a checkpoint made for another
// model, level or options is refused with exit 2 and the reason.
#include <lq/lq.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace lq;
namespace fs = std::filesystem;

namespace {

// The files of a directory whose names start with `prefix`.
int resume_count_files(const fs::path& dir, const std::string& prefix) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind(prefix, 0) == 0) ++n;
  return n;
}

std::vector<std::string> resume_args(const std::string& model, const std::string& level, const fs::path& out) {
  return {"quantize", model, "gguf", "-q", level, "-o", out.string(), "--threads", "2"};
}

}  // namespace

TEST_CASE("resume: a cancelled run resumes to the same bytes, whatever tail of the log survived",
          "[resume][quantize]") {
  test::TempDir tmp;
  const fs::path model = test::synthetic_llama(tmp, 4);  // 39 tensors
  auto src = ModelSource::open(model);
  QuantizeOptions o;
  o.ftype = FileType::Q4_K_M;
  Context ctx;
  ctx.threads = 2;
  const QuantizeResult ref = Quantizer(o).quantize(*src, tmp / "ref.gguf", ctx);
  const std::string want = read_file(tmp / "ref.gguf");
  const size_t n_tensors = ref.tensors.size();
  REQUIRE(n_tensors == 39);
  CHECK(ref.checkpoint.empty());

  // Stop after 17 tensors: Errc::interrupted, no output, the checkpoint kept.
  o.checkpoint.dir = quantize_checkpoint_state(tmp / "ckpt", "Q4_K_M", false);
  CHECK(o.checkpoint.dir == tmp / "ckpt" / "gguf-Q4_K_M");
  test::CancelAfter stop(17, {}, ctx);
  const Context& stopping = stop.ctx();
  const auto stopped = test::check_error(Errc::interrupted, [&] { (void)Quantizer(o).quantize(*src, tmp / "out.gguf", stopping); },
                                         "the checkpoint was kept in", "the cancelled run finished");
  CHECK((stopped && stopped->suggestion().find("--resume") != std::string::npos));
  CHECK_FALSE(fs::exists(tmp / "out.gguf"));
  CHECK(resume_count_files(tmp.path(), ".out.gguf") == 0);
  REQUIRE(fs::exists(o.checkpoint.dir / "state.json"));
  const std::string log = read_file(o.checkpoint.dir / "tensors.log");
  const std::string data = read_file(o.checkpoint.dir / "data.bin");
  CHECK(std::count(log.begin(), log.end(), '\n') == 17);

  // The log cut at every byte of its last two lines (a process killed while appending), and
  // bytes of a tensor in progress after the recorded ones: each resumes to the same file, with
  // the tensors whose lines are whole.
  const size_t last2 = log.rfind('\n', log.rfind('\n', log.size() - 2) - 1) + 1;
  o.checkpoint.resume = true;
  int cases = 0;
  for (size_t cut = last2; cut <= log.size(); cut += 7) {
    const fs::path d = tmp / ("cut-" + std::to_string(cut));
    fs::create_directories(d);
    fs::copy_file(o.checkpoint.dir / "state.json", d / "state.json");
    std::ofstream(d / "tensors.log", std::ios::binary) << log.substr(0, cut);
    std::ofstream(d / "data.bin", std::ios::binary) << data << std::string(1000, '\x5a');
    QuantizeOptions r = o;
    r.checkpoint.dir = quantize_checkpoint_state(d, "Q4_K_M", true);
    CHECK(r.checkpoint.dir == d);
    const QuantizeResult res = Quantizer(r).quantize(*src, tmp / "resumed.gguf", ctx);
    const size_t whole = static_cast<size_t>(std::count(log.begin(), log.begin() + static_cast<std::ptrdiff_t>(cut), '\n'));
    CHECK(res.resumed_tensors == whole);
    CHECK(read_file(tmp / "resumed.gguf") == want);
    CHECK_FALSE(fs::exists(d));  // removed once the output is complete
    ++cases;
  }
  CHECK(cases >= 10);

  // A damaged tensor in the checkpoint is refused, not copied.
  {
    std::string bad = data;
    bad[bad.size() / 2] ^= 0x01;
    std::ofstream(o.checkpoint.dir / "data.bin", std::ios::binary) << bad;
    test::check_error(Errc::invalid_argument, [&] { (void)Quantizer(o).quantize(*src, tmp / "bad.gguf", ctx); }, "damaged",
                      "a damaged checkpoint was accepted");
    CHECK_FALSE(fs::exists(tmp / "bad.gguf"));
  }

  // Another level, other options and another model are refused, naming what differs.
  std::ofstream(o.checkpoint.dir / "data.bin", std::ios::binary) << data;
  auto refusal = [&](const QuantizeOptions& r, const ModelSource& s) -> std::string {
    try {
      (void)Quantizer(r).quantize(s, tmp / "other.gguf", ctx);
    } catch (const Error& e) {
      CHECK(e.code() == Errc::invalid_argument);
      return e.what();
    }
    FAIL("a checkpoint of another run was accepted");
    return "";
  };
  QuantizeOptions level = o;
  level.ftype = FileType::Q5_K_M;
  CHECK(refusal(level, *src).find("level Q4_K_M, this run is Q5_K_M") != std::string::npos);
  QuantizeOptions pure = o;
  pure.pure = true;
  CHECK(refusal(pure, *src).find("other options (tensor") != std::string::npos);
  auto other = ModelSource::open(test::synthetic_llama(tmp, 5));
  CHECK(refusal(o, *other).find("another model") != std::string::npos);
  // A state that is not ours, or malformed, is refused the same way.
  {
    const std::string good = read_file(o.checkpoint.dir / "state.json");
    for (const std::string bad : {std::string("{"), std::string("[1, 2]"),
                                  std::string(R"({"format": "lq.quantize-checkpoint", "model_id": 5})")}) {
      std::ofstream(o.checkpoint.dir / "state.json", std::ios::binary) << bad;
      const std::string why = refusal(o, *src);
      CHECK((why.find("malformed") != std::string::npos || why.find("not a GGUF quantization checkpoint") != std::string::npos));
    }
    std::ofstream(o.checkpoint.dir / "state.json", std::ios::binary) << good;
  }
  // A checkpoint another run holds is refused.
  {
    const int fd = ::open((o.checkpoint.dir / "lock").c_str(), O_RDWR | O_CREAT, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    CHECK(refusal(o, *src).find("in use by another running quantization") != std::string::npos);
    ::close(fd);
  }
  // The refused checkpoint is untouched and still resumes.
  CHECK(Quantizer(o).quantize(*src, tmp / "again.gguf", ctx).resumed_tensors == 17);
  CHECK(read_file(tmp / "again.gguf") == want);
}

TEST_CASE("resume: lq quantize killed with SIGKILL at several points resumes to the same bytes", "[resume][cli]") {
  test::TempDir tmp;
  const std::string model = test::synthetic_llama(tmp, 32).string();  // 291 tensors
  const auto ref = test::run(test::cli_path() + " quantize " + model + " gguf -q Q4_K_M --threads 2 --no-checkpoints -o " +
                             (tmp / "ref.gguf").string());
  REQUIRE(ref.status == 0);
  const std::string want = read_file(tmp / "ref.gguf");
  const fs::path ckpt = tmp / "ckpt";
  const fs::path state = ckpt / "gguf-Q4_K_M";

  // Killed three times, each run continuing the checkpoint of the one before.
  int64_t last = 0;
  for (const int64_t at : {30, 140, 250}) {
    auto args = resume_args(model, "Q4_K_M", tmp / "out.gguf");
    if (at == 30) args.insert(args.end(), {"--checkpoint-dir", ckpt.string()});
    else args.insert(args.end(), {"--resume", ckpt.string()});
    test::CliChild c(args);
    REQUIRE(c.wait_for_progress("Quantizing ", " tensors", at));
    const int st = c.signal_and_wait(SIGKILL);
    INFO(c.text());
    REQUIRE(WIFSIGNALED(st));
    CHECK(WTERMSIG(st) == SIGKILL);
    CHECK_FALSE(fs::exists(tmp / "out.gguf"));
    if (at != 30) {
      const size_t p = c.text().find("resumed: ");
      REQUIRE(p != std::string::npos);
      const int64_t resumed = std::stoll(c.text().substr(p + 9));
      CHECK(resumed >= last);
      CHECK(c.text().find("/291 tensors from " + state.string()) != std::string::npos);
    }
    const std::string log = read_file(state / "tensors.log");
    last = std::count(log.begin(), log.end(), '\n');
    CHECK(last >= at);
  }
  CHECK(last < 291);
  // SIGKILL leaves the output's temporary file behind: the resumed run removes it.
  CHECK(resume_count_files(tmp.path(), ".out.gguf.tmp-") >= 1);
  const auto done = test::run(test::cli_path() + " quantize " + model + " gguf -q Q4_K_M --threads 2 --resume " +
                              ckpt.string() + " -o " + (tmp / "out.gguf").string());
  REQUIRE(done.status == 0);
  CHECK(done.err.find("resumed: " + std::to_string(last) + "/291 tensors from " + state.string()) != std::string::npos);
  CHECK(read_file(tmp / "out.gguf") == want);
  CHECK_FALSE(fs::exists(ckpt));
  CHECK(resume_count_files(tmp.path(), ".out.gguf.tmp-") == 0);

  // Ctrl-C: exit 8, the checkpoint kept and named, no output; then resumed to the same bytes.
  {
    auto args = resume_args(model, "Q4_K_M", tmp / "int.gguf");
    args.insert(args.end(), {"--checkpoint-dir", ckpt.string()});
    test::CliChild c(args);
    REQUIRE(c.wait_for_progress("Quantizing ", " tensors", 60));
    const int st = c.signal_and_wait(SIGINT);
    INFO(c.text());
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 8);
    CHECK(c.text().find("the checkpoint was kept in " + state.string()) != std::string::npos);
    CHECK(test::error_lines(c.text()) == 1);
    CHECK(fs::exists(state / "state.json"));
    CHECK(resume_count_files(tmp.path(), "int.gguf") + resume_count_files(tmp.path(), ".int.gguf") == 0);
  }
  // Refusals, exit 2 with the reason, leaving the checkpoint as it was.
  auto refused = [&](const std::string& model_and_level, const fs::path& resume, const std::string& needle) {
    test::check_cli_failure(
        {"quantize " + model_and_level + " --resume " + resume.string() + " -o " + (tmp / "x.gguf").string(), 2, needle});
  };
  refused(model + " gguf -q Q5_K_M", state, "was made for level Q4_K_M, this run is Q5_K_M");
  refused(model + " gguf -q Q4_K_M --pure", state, "was made for other options");
  refused(test::synthetic_llama(tmp, 31).string() + " gguf -q Q4_K_M", state, "was made for another model");
  refused(model + " gguf -q Q5_K_M", ckpt, "holds no checkpoint of a Q5_K_M quantization");
  test::check_cli_failure({"quantize " + model + " gguf -q Q4_K_M --no-checkpoints --resume " + ckpt.string(), 2,
                           "--no-checkpoints contradicts --resume"});
  const auto resumed = test::run(test::cli_path() + " --format json quantize " + model +
                                 " gguf -q Q4_K_M --threads 2 --resume " + ckpt.string() + " -o " +
                                 (tmp / "int.gguf").string());
  REQUIRE(resumed.status == 0);
  CHECK(nlohmann::json::parse(resumed.out).value("resumed_tensors", 0) >= 60);
  CHECK(read_file(tmp / "int.gguf") == want);
  CHECK_FALSE(fs::exists(ckpt));
}

TEST_CASE("resume: a dynamic profile killed with SIGKILL resumes to the same bytes", "[resume][cli]") {
  test::TempDir tmp;
  const std::string model = test::synthetic_llama(tmp, 24).string();  // 219 tensors
  const std::vector<std::string> dyn = {"--profile", "compression-max"};
  std::string flags;
  for (const auto& f : dyn) flags += " " + f;
  const auto ref = test::run(test::cli_path() + " quantize " + model + " gguf -q dynamic" + flags +
                             " --threads 2 --no-checkpoints -o " + (tmp / "ref.gguf").string());
  INFO(ref.err);
  REQUIRE(ref.status == 0);
  const std::string want = read_file(tmp / "ref.gguf");
  const fs::path ckpt = tmp / "ckpt";
  {
    auto args = resume_args(model, "dynamic", tmp / "out.gguf");
    args.insert(args.end(), dyn.begin(), dyn.end());
    args.insert(args.end(), {"--checkpoint-dir", ckpt.string()});
    test::CliChild c(args);
    REQUIRE(c.wait_for_progress("Quantizing ", " tensors", 100));
    const int st = c.signal_and_wait(SIGKILL);
    REQUIRE(WIFSIGNALED(st));
  }
  REQUIRE(fs::exists(ckpt / "gguf-dynamic" / "state.json"));
  // Another profile is another run.
  test::check_cli_failure({"quantize " + model + " gguf -q dynamic --profile balanced --resume " + ckpt.string() +
                               " -o " + (tmp / "x.gguf").string(),
                           2, "level dynamic (profile compression-max), this run is dynamic (profile balanced)"});
  const auto done = test::run(test::cli_path() + " quantize " + model + " gguf -q dynamic" + flags +
                              " --threads 2 --resume " + ckpt.string() + " -o " + (tmp / "out.gguf").string());
  INFO(done.err);
  REQUIRE(done.status == 0);
  const size_t p = done.err.find("resumed: ");
  REQUIRE(p != std::string::npos);
  CHECK(std::stoll(done.err.substr(p + 9)) >= 100);
  CHECK(done.err.find("/219 tensors from ") != std::string::npos);
  CHECK(read_file(tmp / "out.gguf") == want);
  CHECK_FALSE(fs::exists(ckpt));
  CHECK(resume_count_files(tmp.path(), ".out.gguf.tmp-") == 0);
}

TEST_CASE("resume: a job with an importance matrix and protected weights resumes to the same bytes",
          "[resume][quantize][job]") {
  const auto tiny = test::tiny_with_imatrix();
  if (!tiny) return;
  test::TempDir tmp;
  auto src = ModelSource::open(tiny->model);
  QuantizeJob job;
  job.options.ftype = FileType::Q4_K_M;
  job.options.imatrix = &tiny->imatrix;
  job.options.imatrix_path = tiny->imatrix_path.string();
  job.protect_coverage = 1e-4;
  Context ctx;
  ctx.threads = 2;
  const QuantizeJobResult ref = quantize_model(*src, tmp / "ref.gguf", job, ctx);
  REQUIRE_FALSE(ref.protected_weights.empty());
  const std::string want = read_file(tmp / "ref.gguf");

  job.options.checkpoint.dir = quantize_checkpoint_state(tmp / "ckpt", "Q4_K_M", false);
  test::CancelAfter stop(20, {}, ctx);
  const Context& stopping = stop.ctx();
  CHECK_THROWS_AS(quantize_model(*src, tmp / "out.gguf", job, stopping), Error);
  REQUIRE(fs::exists(job.options.checkpoint.dir / "state.json"));

  job.options.checkpoint.resume = true;
  auto refused = [&](const QuantizeJob& j) -> std::string {
    try {
      (void)quantize_model(*src, tmp / "other.gguf", j, ctx);
    } catch (const Error& e) {
      CHECK(e.code() == Errc::invalid_argument);
      return e.what();
    }
    return "(accepted)";
  };
  QuantizeJob no_imatrix = job;
  no_imatrix.options.imatrix = nullptr;
  no_imatrix.protect_coverage.reset();
  CHECK(refused(no_imatrix).find("was made for") != std::string::npos);
  QuantizeJob more = job;
  more.protect_coverage = 1e-3;
  CHECK(refused(more).find("was made for") != std::string::npos);
  QuantizeJob dyn = job;
  dyn.profile = Profile::load("quality");
  CHECK(refused(dyn).find("level Q4_K_M, this run is dynamic (profile quality)") != std::string::npos);

  const QuantizeJobResult res = quantize_model(*src, tmp / "out.gguf", job, ctx);
  CHECK(res.quantize.resumed_tensors >= 20);
  CHECK(read_file(tmp / "out.gguf") == want);
  CHECK_FALSE(fs::exists(job.options.checkpoint.dir));
}
