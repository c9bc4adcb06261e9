// Operations from two threads of one process: the worker pools do not serialise them, and two
// quantizations of different models running at once each write the bytes they write alone.
#include <lq/lq.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <thread>

using namespace lq;
namespace fs = std::filesystem;

namespace {

std::string file_sha(const fs::path& p) {
  const std::string bytes = read_file(p);
  return test::sha256_hex({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
}

// Starts a thread running `fn`; an exception it throws is kept in `err`.
std::thread thread_keeping_error(std::function<void()> fn, std::exception_ptr& err) {
  return std::thread([fn = std::move(fn), &err] {
    try {
      fn();
    } catch (...) {
      err = std::current_exception();
    }
  });
}

}  // namespace

TEST_CASE("threads: a parallel loop on a second thread runs while the first thread's loop holds the pool",
          "[threads][concurrency]") {
  // Thread A's loop waits inside its job until thread B's loop has run. If B had to wait for A's
  // job to finish (one job at a time process-wide), A would time out and the check would fail.
  std::atomic<bool> a_inside{false}, b_ran{false};
  bool a_saw_b = false;
  std::thread a([&] {
    parallel_for(2, 2, 1, [&](int64_t, int64_t) {
      a_inside = true;
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (!b_ran && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    a_saw_b = b_ran;
  });
  std::thread b([&] {
    while (!a_inside) std::this_thread::yield();
    std::atomic<int64_t> sum{0};
    parallel_for(1000, 2, 10, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) sum += i;
    });
    if (sum == 999 * 1000 / 2) b_ran = true;
  });
  a.join();
  b.join();
  CHECK(a_saw_b);
}

TEST_CASE("quantize: two models quantized at once from two threads give the bytes each gives alone",
          "[quantize][concurrency]") {
  const auto tiny = test::tiny_with_imatrix();
  if (!tiny) return;
  test::TempDir tmp;
  const fs::path synth = test::synthetic_llama(tmp, 16);
  const Imatrix& im = tiny->imatrix;
  auto tiny_src = ModelSource::open(tiny->model);
  auto synth_src = ModelSource::open(synth);

  QuantizeOptions tiny_opts;  // the tiny model at Q4_K_M with llama.cpp's importance matrix
  tiny_opts.ftype = FileType::Q4_K_M;
  tiny_opts.imatrix = &im;
  QuantizeOptions synth_opts;  // a 16-layer synthetic model at Q5_K_M without one
  synth_opts.ftype = FileType::Q5_K_M;
  Context ctx;
  ctx.threads = 2;

  Quantizer(tiny_opts).quantize(*tiny_src, tmp / "tiny-alone.gguf", ctx);
  Quantizer(synth_opts).quantize(*synth_src, tmp / "synth-alone.gguf", ctx);
  const std::string tiny_sha = file_sha(tmp / "tiny-alone.gguf");
  const std::string synth_sha = file_sha(tmp / "synth-alone.gguf");
  REQUIRE(tiny_sha != synth_sha);

  for (int round = 0; round < 3; ++round) {
    std::exception_ptr tiny_err, synth_err;
    std::thread t1 = thread_keeping_error(
        [&] { Quantizer(tiny_opts).quantize(*tiny_src, tmp / "tiny-both.gguf", ctx); }, tiny_err);
    std::thread t2 = thread_keeping_error(
        [&] { Quantizer(synth_opts).quantize(*synth_src, tmp / "synth-both.gguf", ctx); }, synth_err);
    t1.join();
    t2.join();
    if (tiny_err) std::rethrow_exception(tiny_err);
    if (synth_err) std::rethrow_exception(synth_err);
    INFO("round " << round);
    CHECK(file_sha(tmp / "tiny-both.gguf") == tiny_sha);
    CHECK(file_sha(tmp / "synth-both.gguf") == synth_sha);
  }
}

TEST_CASE("quantize: a cancelled context stops its own quantization only", "[quantize][concurrency]") {
  test::TempDir tmp;
  const fs::path a = test::synthetic_llama(tmp, 4), b = test::synthetic_llama(tmp, 5);
  auto a_src = ModelSource::open(a);
  auto b_src = ModelSource::open(b);
  QuantizeOptions opts;
  opts.ftype = FileType::Q4_K_M;
  Context alone;
  alone.threads = 2;
  Quantizer(opts).quantize(*b_src, tmp / "b-alone.gguf", alone);

  CancelToken cancelled;
  cancelled.cancel();
  Context stop = alone;
  stop.cancel = &cancelled;
  Errc a_code = Errc::ok;
  std::thread t1([&] {
    try {
      Quantizer(opts).quantize(*a_src, tmp / "a.gguf", stop);
    } catch (const Error& e) {
      a_code = e.code();
    }
  });
  std::exception_ptr b_err;
  std::thread t2 = thread_keeping_error([&] { Quantizer(opts).quantize(*b_src, tmp / "b.gguf", alone); }, b_err);
  t1.join();
  t2.join();
  if (b_err) std::rethrow_exception(b_err);
  CHECK(a_code == Errc::interrupted);
  CHECK_FALSE(fs::exists(tmp / "a.gguf"));
  CHECK(file_sha(tmp / "b.gguf") == file_sha(tmp / "b-alone.gguf"));
  CHECK_FALSE(CancelToken::process().cancelled());
}
