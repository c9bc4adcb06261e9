// What the example programs share (public API only): progress lines on stderr, the usage line
// for too few arguments (exit 2) and an lq::Error's message with its exit code.
#pragma once

#include <lq/lq.hpp>

#include <cstdio>
#include <string_view>

namespace example {

// Progress lines on stderr, one per message (updates are left out).
class StderrProgress final : public lq::Progress {
 public:
  void message(std::string_view text) override { std::fprintf(stderr, "%.*s\n", static_cast<int>(text.size()), text.data()); }
};

// "usage: PROGRAM ARGS" on stderr; returns the contract's exit code for bad arguments (2).
inline int usage(const char* program, const char* args) {
  std::fprintf(stderr, "usage: %s %s\n", program, args);
  return 2;
}

// "error: MESSAGE" on stderr; returns the error's exit code.
inline int report(const lq::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return lq::exit_code(e.code());
}

}  // namespace example
