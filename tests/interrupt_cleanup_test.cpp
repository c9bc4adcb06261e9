// Termination signals: SIGTERM and SIGHUP stop a writing command as Ctrl-C does (cancelled
// cooperatively, the output's temporary directory DIR.tmp-* removed, exit 8; a checkpointed run
// keeps its checkpoint), and a second signal, which ends the process at once, still removes the
// temporary directories registered by the atomic directory writer.
#include <lq/io.hpp>

#include "core/output_dir.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace lq;
namespace fs = std::filesystem;

namespace {

// Names in `dir` holding ".tmp-" (temporary outputs left behind).
std::vector<std::string> ic_leftovers(const fs::path& dir) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) v.push_back(e.path().filename().string());
  return v;
}

// Runs `args` (lq's arguments, without -o), waits for `done` units of the progress stage `label`,
// sends `sig` and returns the wait status; `out` is the output directory given.
int ic_signal_run(std::vector<std::string> args, const fs::path& out, const char* label, const char* unit, int64_t done,
                  int sig, std::string& err) {
  args.push_back("-o");
  args.push_back(out.string());
  test::CliChild c(args);
  REQUIRE(c.wait_for_progress(label, unit, done));
  const int st = c.signal_and_wait(sig);
  err = c.text();
  return st;
}

}  // namespace

TEST_CASE("interrupt: SIGTERM and SIGHUP stop quantize gptq and smoothquant with exit 8 and no temporary directory",
          "[interrupt][cli][gptq][smoothquant]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  test::TempDir tmp;
  const std::vector<std::string> gptq = {"--threads", "2", "quantize", t->dir.string(), "gptq", "--calibration-samples", "8",
                                         "--ctx", "128", "--calibration-data", t->calib.string(), "--no-checkpoints"};
  const std::vector<std::string> sq = {"--threads", "2", "quantize", t->dir.string(), "smoothquant", "--smoothquant",
                                       "--calibration-samples", "96", "--ctx", "128", "--calibration-data", t->calib.string()};
  struct Case {
    const char* what;
    const std::vector<std::string>* args;
    const char* label;
    const char* unit;
    int sig;
  };
  for (const Case& c : {Case{"gptq SIGTERM", &gptq, "GPTQ", " blocks", SIGTERM},
                        Case{"gptq SIGHUP", &gptq, "GPTQ", " blocks", SIGHUP},
                        Case{"smoothquant SIGTERM", &sq, "Calibrating", " blocks", SIGTERM}}) {
    INFO(c.what);
    std::string err;
    const int st = ic_signal_run(*c.args, tmp / "out", c.label, c.unit, 1, c.sig, err);
    INFO(err);
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 8);
    CHECK(err.find("interrupted") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp / "out"));
    CHECK(ic_leftovers(tmp.path()).empty());
  }
}

TEST_CASE("interrupt: SIGTERM keeps a GPTQ run's checkpoint, which resumes", "[interrupt][cli][gptq]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  test::TempDir tmp;
  const fs::path ckpt = tmp / "ckpt";
  std::vector<std::string> args = {"--threads", "2", "quantize", t->dir.string(), "gptq", "--calibration-samples", "8",
                                   "--ctx", "128", "--calibration-data", t->calib.string(), "--checkpoint-dir", ckpt.string()};
  std::string err;
  const int st = ic_signal_run(args, tmp / "out", "GPTQ", " blocks", 2, SIGTERM, err);
  INFO(err);
  REQUIRE(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 8);
  CHECK(err.find("the checkpoint was kept") != std::string::npos);
  CHECK(fs::exists(ckpt / "gptq-w4a16-g128" / "state.json"));
  CHECK_FALSE(fs::exists(tmp / "out"));
  CHECK(ic_leftovers(tmp.path()).empty());
  const auto done = test::run(test::cli_path() + " --threads 2 quantize " + t->dir.string() + " gptq --calibration-samples 8 --ctx 128 "
                              "--calibration-data " + t->calib.string() + " --resume " + ckpt.string() + " -o " + (tmp / "out").string());
  INFO(done.err);
  CHECK(done.status == 0);
  CHECK(done.err.find("resumed: ") != std::string::npos);
  CHECK(fs::exists(tmp / "out" / "config.json"));
  CHECK(ic_leftovers(tmp.path()).empty());
}

TEST_CASE("interrupt: a second signal removes the registered temporary directory before the process dies",
          "[interrupt]") {
  test::TempDir tmp;
  const fs::path out = tmp / "model";
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child: a directory being written (nested, as the GPTQ work files are), then two signals;
    // the first only cancels, the second ends the process.
    install_interrupt_handler();
    OutputDir od(out, {}, "test output");
    const fs::path& d = od.make_tmp();
    std::error_code ec;
    fs::create_directories(d / ".work" / "deeper", ec);
    for (int i = 0; i < 40; ++i) std::ofstream(d / ".work" / ("block-" + std::to_string(i) + ".bin")) << "data";
    std::ofstream(d / ".work" / "deeper" / "x") << "x";
    std::ofstream(d / "model.safetensors") << "partial";
    ::raise(SIGTERM);
    if (!interrupt_requested()) ::_exit(3);
    ::raise(SIGTERM);
    ::_exit(4);  // not reached: the second signal kills
  }
  int st = 0;
  REQUIRE(::waitpid(pid, &st, 0) == pid);
  REQUIRE(WIFSIGNALED(st));
  CHECK(WTERMSIG(st) == SIGTERM);
  CHECK(ic_leftovers(tmp.path()).empty());
  CHECK(fs::is_empty(tmp.path()));
}
