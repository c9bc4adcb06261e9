// The worker pools behind parallel_for / parallel_run. One pool is shared by the process; a
// caller that finds it running another caller's job runs on a pool of its own thread's instead
// of waiting, so operations on two threads do not serialise. Which pool runs a job never changes
// what the job computes (the split into chunks depends only on n, threads and grain).
#include <lq/threads.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace lq {
namespace {

thread_local bool t_in_pool = false;

// A persistent pool: workers sleep on a condition variable between jobs and spin briefly
// after one, because the inference engine issues many short jobs per token.
class Pool {
 public:
  // Runs the job on the process's shared pool, or, when another thread's job holds it, on the
  // calling thread's own pool (created on first need, its workers joined when the thread ends).
  static void dispatch(int n_threads, const std::function<void(int, int)>& fn, bool optional = false) {
    static Pool shared;
    std::unique_lock<std::mutex> lock(shared.run_mutex_, std::try_to_lock);
    if (lock.owns_lock()) {
      shared.run(n_threads, fn, optional);
      return;
    }
    thread_local Pool own;
    std::lock_guard<std::mutex> own_lock(own.run_mutex_);
    own.run(n_threads, fn, optional);
  }

 private:
  // optional: the job is a dynamic work queue that the caller may finish alone, so workers that
  // have not started by the time the caller is done skip it and the caller does not wait for
  // them (on a loaded machine a descheduled worker would otherwise stall every job).
  // The caller holds run_mutex_.
  void run(int n_threads, const std::function<void(int, int)>& fn, bool optional) {
    ensure_workers(n_threads - 1);
    std::exception_ptr first_error;
    std::mutex err_mutex;
    const std::function<void(int)> body = [&](int idx) {
      try {
        fn(idx, n_threads);
      } catch (...) {
        std::lock_guard<std::mutex> g(err_mutex);
        if (!first_error) first_error = std::current_exception();
      }
    };
    {
      std::lock_guard<std::mutex> g(mutex_);
      job_ = &body;
      job_threads_ = n_threads;
      optional_ = optional;
      pending_.store(optional ? 0 : n_threads - 1, std::memory_order_relaxed);
      const uint64_t gen = generation_.fetch_add(1) + 1;
      // One atomic names the open job: a worker holding an older job's pointer can never see it
      // open (two flags, reset one after the other, left a window where it could).
      open_.store(optional ? gen : 0);
    }
    cv_.notify_all();
    t_in_pool = true;
    body(0);
    t_in_pool = false;
    open_.store(0);
    while (active_.load() != 0 || pending_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    {
      std::lock_guard<std::mutex> g(mutex_);
      job_ = nullptr;
    }
    if (first_error) std::rethrow_exception(first_error);
  }

 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> g(mutex_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  void ensure_workers(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      const int idx = static_cast<int>(workers_.size()) + 1;
      const uint64_t gen = generation_.load();  // the next job bumps it: the worker must see that
      workers_.emplace_back([this, idx, gen] { loop(idx, gen); });
    }
  }

  void loop(int idx, uint64_t seen) {
    t_in_pool = true;
    for (;;) {
      // spin a little before sleeping
      bool got = false;
      for (int i = 0; i < 2000; ++i) {
        if (generation_.load(std::memory_order_acquire) != seen) { got = true; break; }
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
      }
      if (!got) {
        std::unique_lock<std::mutex> lk(mutex_);
        cv_.wait(lk, [&] { return generation_.load() != seen; });
      }
      const std::function<void(int)>* job;
      int threads;
      bool optional;
      {
        // Generation and job are read together: a worker that woke late must not take the next
        // job under the previous generation (it would run it twice and leave pending_ at -1).
        std::lock_guard<std::mutex> g(mutex_);
        if (stop_) return;
        seen = generation_.load(std::memory_order_relaxed);
        job = job_;
        threads = job_threads_;
        optional = optional_;
      }
      if (job && idx < threads) {
        if (optional) {
          // Enter only while the job of generation `seen` is still open (checked after
          // announcing ourselves: the caller closes, then waits for active_, so either it waits
          // for us or we see it closed, or see a later generation open).
          active_.fetch_add(1);
          if (open_.load() == seen) (*job)(idx);
          active_.fetch_sub(1);
        } else {
          (*job)(idx);
          pending_.fetch_sub(1, std::memory_order_acq_rel);
        }
      }
    }
  }

  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> active_{0};
  std::atomic<uint64_t> open_{0};  // the generation of the open optional job, 0 when none
  const std::function<void(int)>* job_ = nullptr;
  int job_threads_ = 0;
  bool optional_ = false;
  bool stop_ = false;
};

}  // namespace

int hardware_threads() noexcept {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void parallel_run(int threads, const std::function<void(int, int)>& fn) {
  if (threads <= 0) threads = hardware_threads();
  if (threads == 1 || t_in_pool) {
    for (int i = 0; i < threads; ++i) fn(i, threads);
    return;
  }
  Pool::dispatch(threads, fn);
}

void parallel_for(int64_t n, int threads, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (threads <= 0) threads = hardware_threads();
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = (n + grain - 1) / grain;
  threads = static_cast<int>(std::min<int64_t>(threads, max_chunks));
  if (threads <= 1 || t_in_pool) {
    fn(0, n);
    return;
  }
  // Dynamic scheduling: chunks of `grain` (at least n / (8 * threads)) handed out atomically.
  const int64_t chunk = std::max<int64_t>(grain, n / (8 * threads));
  std::atomic<int64_t> next{0};
  Pool::dispatch(
      threads,
      [&](int, int) {
        for (;;) {
          const int64_t b = next.fetch_add(chunk);
          if (b >= n) break;
          fn(b, std::min(n, b + chunk));
        }
      },
      true);
}

}  // namespace lq
