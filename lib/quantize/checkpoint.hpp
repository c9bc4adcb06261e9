// Internal: checkpoints of a GGUF quantization (Quantizer::quantize with options.checkpoint). A
// state directory holds state.json (what the run is: model identity, level, per-tensor plan,
// importance data and protected weights, written once at the start), data.bin (the bytes of each
// finished tensor, appended in file order) and tensors.log (one checksummed line per finished
// tensor: index, offset, size, checksum of its bytes, name). A tensor's bytes are flushed to disk
// (fdatasync) before its line is appended, so a process killed at any point, or a machine that
// stops, leaves a consistent prefix: a torn last line or bytes past the last line are dropped on
// resume. File layout and checks only: the write loop lives in quantizer.cpp.
#pragma once

#include <lq/model.hpp>
#include <lq/quantizer.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace lq::quantize_ckpt {

/// A checksum of a stream of bytes, the same however the stream is cut into pieces: 64-bit
/// words through an FNV-style multiply (8 bytes a step), the tail and the length at the end.
/// Tells a damaged checkpoint from a good one; not a security measure.
struct StreamHash {
  uint64_t h = 0xcbf29ce484222325ull;
  uint64_t total = 0;
  uint8_t tail[8] = {};
  size_t nt = 0;
  void add(const void* data, size_t n);
  uint64_t value() const;

 private:
  void word(uint64_t w) {
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
};

/// One open checkpoint, written as the quantizer finishes tensors.
class Checkpoint {
 public:
  /// Opens the state directory of `opts.checkpoint` for the run that `plan` describes. With
  /// resume: checks that the checkpoint was made by this model, level and options
  /// (Errc::invalid_argument naming what differs otherwise) and keeps its consistent prefix of
  /// finished tensors; without: replaces whatever the directory held with an empty checkpoint.
  Checkpoint(const ModelSource& src, const QuantizeOptions& opts, const std::vector<TensorPlan>& plan);
  ~Checkpoint();
  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  /// Tensors (a prefix of the plan) whose bytes the checkpoint holds.
  size_t n_done() const { return done_.size(); }

  /// Reads tensor `i` (< n_done()) in pieces of at most `chunk` bytes, handing each to `sink`;
  /// Errc::invalid_argument when its bytes no longer match their checksum.
  void replay(size_t i, size_t chunk, const std::function<void(const uint8_t*, size_t)>& sink);

  /// Appends bytes of tensor n_done() (the next one in the plan).
  void append(const void* data, size_t n);
  /// Tensor n_done() is complete: flushes its bytes, then records it.
  void finish_tensor();
  /// Records an output's temporary file: a killed run cannot remove it, the run that resumes
  /// (or replaces) this checkpoint does.
  void note_temp_output(const std::filesystem::path& temp);
  /// Removes the state directory (and its parent when that is left empty).
  void remove();

 private:
  struct Done {
    uint64_t offset = 0, bytes = 0;
    uint64_t hash = 0;
  };
  void start_fresh();
  void load();
  void remove_old_temp_outputs();
  void lock();

  std::filesystem::path dir_;
  const std::vector<TensorPlan>& plan_;
  std::string state_;  // state.json's identity of this run (dumped)
  std::vector<Done> done_;
  std::vector<std::filesystem::path> temps_;  // this run's temporary outputs
  int data_fd_ = -1, log_fd_ = -1, lock_fd_ = -1;
  uint64_t data_end_ = 0;       // bytes of finished tensors in data.bin
  uint64_t log_end_ = 0;        // bytes of tensors.log
  uint64_t cur_bytes_ = 0;      // bytes appended for the tensor in progress
  StreamHash cur_hash_;         // and their checksum
};

/// The state directory of a level in a checkpoint directory: DIR/gguf-LEVEL ("dynamic" for a
/// profile).
std::filesystem::path state_dir(const std::filesystem::path& checkpoint_dir, const std::string& level);

}  // namespace lq::quantize_ckpt
