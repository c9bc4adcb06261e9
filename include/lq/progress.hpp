// liblq: progress reporting from long-running operations (the CLI draws it on stderr).
#pragma once

#include <lq/api.hpp>

#include <cstdint>
#include <string_view>

namespace lq {

/// Receives progress from library operations. All methods may be called from one thread only
/// (the operation's calling thread). The default implementations do nothing.
class LQ_API Progress {
 public:
  virtual ~Progress() = default;
  /// A status line ("Loading model: ...").
  virtual void message(std::string_view text) { (void)text; }
  /// Advance of a task: `done` of `total` `unit`s ("layers", "tensors", "chunks").
  virtual void update(std::string_view task, int64_t done, int64_t total, std::string_view unit) {
    (void)task, (void)done, (void)total, (void)unit;
  }
  /// The task is complete (the bar can be finished).
  virtual void finish(std::string_view task) { (void)task; }
};

/// A Progress that drops everything.
LQ_API Progress& null_progress();

}  // namespace lq
