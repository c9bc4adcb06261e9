// liblq: the per-call context every long operation takes: threads, back-end, cancellation and
// progress. Nothing here is process-global: two operations with two contexts run side by side.
#pragma once

#include <lq/api.hpp>
#include <lq/progress.hpp>
#include <lq/quant_type.hpp>

#include <atomic>

namespace lq {

class Backend;

/// A cancellation flag an embedder sets from any thread; operations that see it throw
/// Errc::interrupted at their next check (keeping their checkpoint where they have one).
class LQ_API CancelToken {
 public:
  /// Requests cancellation (thread-safe, async-signal-safe).
  void cancel() noexcept { flag_.store(true, std::memory_order_relaxed); }
  /// Clears a previous request.
  void reset() noexcept { flag_.store(false, std::memory_order_relaxed); }
  /// Whether cancellation was requested.
  bool cancelled() const noexcept { return flag_.load(std::memory_order_relaxed); }
  /// The process's token: what install_interrupt_handler() sets on SIGINT/SIGTERM, and what a
  /// Context without a token of its own checks.
  static CancelToken& process() noexcept;

 private:
  std::atomic<bool> flag_{false};
};

/// What a long operation runs with. Default-constructed: all hardware threads, the registry's
/// scored back-end, the process's cancel token (Ctrl-C), no progress output.
struct LQ_API Context {
  int threads = 0;                      ///< worker threads; 0 = all hardware threads
  const Backend* backend = nullptr;     ///< (optional) back-end for kernels; nullptr = Registry's choice
  const CancelToken* cancel = nullptr;  ///< (optional) nullptr = CancelToken::process()
  Progress* progress = nullptr;         ///< (optional) nullptr = null_progress()

  /// Threads to use: `threads`, or all hardware threads when it is 0.
  int thread_count() const noexcept;
  /// The back-end to take kernels from: `backend`, or the registry's active one.
  const Backend& active_backend() const;
  /// The kernels for `t`: Registry::kernels(*backend, t) where a back-end is set, else the
  /// registry's process choice (Registry::kernels(t)).
  KernelSet kernels(QuantType t) const;
  /// The progress sink (never null).
  Progress& progress_sink() const noexcept;
  /// Whether cancellation was requested on this context's token.
  bool cancelled() const noexcept;
  /// Throws Errc::interrupted when cancellation was requested.
  void check_cancelled() const;
};

}  // namespace lq
