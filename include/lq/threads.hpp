// liblq: parallel loops on the library's worker pools. Calls from two threads run side by side
// (the second runs on a pool of its own thread when the shared one is busy).
#pragma once

#include <lq/api.hpp>

#include <cstdint>
#include <functional>

namespace lq {

/// Number of hardware threads (at least 1).
LQ_API int hardware_threads() noexcept;

/// Runs fn(begin, end) over [0, n) split into chunks of at least `grain` items, on up to `threads`
/// threads (the caller included; 0 = all hardware threads). Blocks until done; rethrows the first
/// exception a chunk threw. Nested calls run serially on the calling thread. The chunks fn sees
/// depend only on n, threads and grain, never on which pool runs them.
LQ_API void parallel_for(int64_t n, int threads, int64_t grain,
                         const std::function<void(int64_t, int64_t)>& fn);

/// Runs fn(thread_index, n_threads) once on each of `threads` threads (0 = all).
LQ_API void parallel_run(int threads, const std::function<void(int, int)>& fn);

}  // namespace lq
