// Internal: the library's throw helpers. fail() formats a message and throws lq::Error through
// lq::throw_error (the one funnel); LQ_ASSERT checks our own invariants, never user input. Kept
// out of the public error.hpp so that including the API does not require fmt.
#pragma once

#include <lq/error.hpp>

#include <fmt/format.h>

#include <utility>

namespace lq {

/// Formats the message with fmt and throws lq::Error with `code`.
template <typename... Args>
[[noreturn]] void fail(Errc code, fmt::format_string<Args...> f, Args&&... args) {
  throw_error(code, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace lq

/// Checks an internal invariant (never user input). Throws Errc::general on failure.
#define LQ_ASSERT(cond)                                                                      \
  do {                                                                                       \
    if (!(cond)) ::lq::throw_error(::lq::Errc::general,                                      \
                                   ::fmt::format("internal error: {} ({}:{})", #cond,        \
                                                 __FILE__, __LINE__));                       \
  } while (0)
