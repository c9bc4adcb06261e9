// The per-call Context: resolution of its defaults (threads, back-end, cancel token, progress).
// Must not hold state of its own beyond the process cancel token that the signal handler sets.
#include <lq/backend.hpp>
#include <lq/context.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/threads.hpp>

namespace lq {

CancelToken& CancelToken::process() noexcept {
  static CancelToken token;
  return token;
}

int Context::thread_count() const noexcept { return threads > 0 ? threads : hardware_threads(); }

const Backend& Context::active_backend() const { return backend ? *backend : Registry::instance().active(); }

KernelSet Context::kernels(QuantType t) const {
  const Registry& r = Registry::instance();
  return backend ? r.kernels(*backend, t) : r.kernels(t);
}

Progress& Context::progress_sink() const noexcept { return progress ? *progress : null_progress(); }

bool Context::cancelled() const noexcept { return (cancel ? *cancel : CancelToken::process()).cancelled(); }

void Context::check_cancelled() const {
  if (cancelled()) fail(Errc::interrupted, "interrupted");
}

}  // namespace lq
