// Internal: streaming .safetensors writers. The tensor list (names, dtypes, shapes) is declared
// up front, so each file's header is written first and the tensors' bytes follow one by one in
// the declared order: nothing is held beyond the tensor being written. One file, or a directory
// of shards with model.safetensors.index.json as Hugging Face writes it. Files go to temporary
// names and are renamed when complete. File I/O only: no naming, no quantization.
#pragma once

#include "formats/safetensors.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lq {

class OutputFile;

/// One tensor to be written: its name, element type and shape (row-major, outermost first).
struct StTensorSpec {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  /// Bytes of its data: product of the shape × element size.
  uint64_t nbytes() const;
};

/// The header a .safetensors file with these tensors (data in this order) gets: the 8-byte
/// little-endian length, then the JSON padded with spaces to a multiple of 8 bytes.
std::string st_header_bytes(const std::vector<StTensorSpec>& tensors, const std::map<std::string, std::string>& metadata);

/// One .safetensors file: the header goes out at construction, then write() takes each declared
/// tensor's bytes in the declared order; commit() renames the finished file over `dest`.
/// Destroyed before commit(): the temporary file is removed. Errors throw Errc::output_error
/// (I/O) or Errc::general (a tensor out of order or of the wrong size: a caller's bug).
class SafetensorsWriter {
 public:
  SafetensorsWriter(std::filesystem::path dest, std::vector<StTensorSpec> tensors,
                    const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  /// The next tensor's bytes; `name` must be the next declared name and `nbytes` its size.
  void write(const std::string& name, const void* data, size_t nbytes);
  /// Bytes of the next tensor in parts: begin(name), then append() until its size is reached.
  void begin(const std::string& name);
  void append(const void* data, size_t nbytes);
  /// Checks every tensor was written and renames the file into place.
  void commit();
  /// Size of the finished file (header + data).
  uint64_t file_size() const { return file_size_; }
  const std::filesystem::path& dest() const { return dest_; }

 private:
  std::filesystem::path dest_;
  std::vector<StTensorSpec> tensors_;
  std::unique_ptr<OutputFile> out_;
  size_t next_ = 0;          // index of the tensor being (or next to be) written
  uint64_t pending_ = 0;     // bytes the current tensor still needs; 0 = between tensors
  bool open_tensor_ = false;
  uint64_t file_size_ = 0;
};

/// A checkpoint's weights in a directory: one `model.safetensors` when everything fits in
/// `max_shard_bytes`, else `model-0000i-of-0000n.safetensors` shards (tensors kept whole, in the
/// declared order) and `model.safetensors.index.json` ({"metadata": {"total_size"}, "weight_map"}).
/// Only one shard is open at a time; each is renamed into place when its last tensor is written.
class ShardedSafetensorsWriter {
 public:
  /// Hugging Face's default max_shard_size ("5GB").
  static constexpr uint64_t kDefaultShardBytes = 5'000'000'000ull;

  ShardedSafetensorsWriter(std::filesystem::path dir, std::vector<StTensorSpec> tensors,
                           uint64_t max_shard_bytes = kDefaultShardBytes,
                           std::map<std::string, std::string> metadata = {{"format", "pt"}});
  ~ShardedSafetensorsWriter();
  ShardedSafetensorsWriter(const ShardedSafetensorsWriter&) = delete;
  ShardedSafetensorsWriter& operator=(const ShardedSafetensorsWriter&) = delete;

  /// The next declared tensor's bytes (as SafetensorsWriter::write).
  void write(const std::string& name, const void* data, size_t nbytes);
  /// Checks every tensor was written; writes the index when there are several shards.
  void commit();
  /// The files this writer makes, relative to the directory (shards, then the index if any).
  std::vector<std::string> file_names() const;
  /// Sum of the tensors' data bytes (the index's total_size).
  uint64_t total_data_bytes() const { return total_; }
  /// Sum of the finished files' sizes (headers included), valid after commit().
  uint64_t bytes_written() const { return written_; }

 private:
  void open_shard(size_t s);
  std::filesystem::path dir_;
  std::vector<StTensorSpec> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<size_t> shard_begin_;  // first tensor index of each shard, plus tensors_.size()
  std::vector<std::string> shard_names_;
  std::unique_ptr<SafetensorsWriter> cur_;
  size_t cur_shard_ = 0;
  size_t next_ = 0;
  uint64_t total_ = 0;
  uint64_t written_ = 0;
};

}  // namespace lq
