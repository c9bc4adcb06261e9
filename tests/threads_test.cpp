// The thread pool under many short jobs: every index is run exactly once, jobs never outlive
// their call (a worker that arrives late must not enter a finished job), with more threads than
// cores so that workers are descheduled at every point of the hand-over.
#include <lq/threads.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <vector>

using namespace lq;

TEST_CASE("threads: short jobs on an oversubscribed pool run each index once", "[threads]") {
  constexpr int kThreads = 16;
  constexpr int kJobs = 5000;
  int64_t bad = 0;
  for (int j = 0; j < kJobs; ++j) {
    // A job's state lives on this frame only; a late worker entering it would write into the
    // next job's frame (or crash), and the counts would not match.
    const int64_t n = 1 + j % 37;
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    if (j % 5 == 4) {
      std::atomic<int> calls{0};
      parallel_run(kThreads, [&](int, int) { calls.fetch_add(1); });
      bad += calls.load() != kThreads;
    } else {
      parallel_for(n, kThreads, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
      });
      for (auto& h : hits) bad += h.load() != 1;
    }
  }
  CHECK(bad == 0);
}
