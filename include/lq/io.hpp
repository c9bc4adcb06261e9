// liblq: file helpers: atomic output files, read-only mappings, process-wide interruption.
#pragma once

#include <lq/api.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace lq {

/// A buffered output file written to a temporary name in the destination directory and renamed
/// over the destination by commit(). If destroyed (or the process interrupted) before commit(),
/// the temporary file is removed. Errors throw Errc::output_error.
class LQ_API OutputFile {
 public:
  /// `buffer_bytes`: size of each of the two write buffers. `background`: hand full buffers to
  /// a writer thread (large outputs: computing and writing overlap) and bypass the page cache
  /// with O_DIRECT where the file system allows it, so a multi-GB output is not throttled by
  /// dirty-page write-back.
  explicit OutputFile(std::filesystem::path dest, size_t buffer_bytes = 1u << 20, bool background = false);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(const void* data, size_t n);
  void write_zeros(size_t n);
  /// Bytes written so far.
  uint64_t size() const { return written_; }
  /// Flushes and atomically renames to the destination.
  void commit();
  const std::filesystem::path& dest() const { return dest_; }
  /// The temporary file written until commit().
  const std::filesystem::path& temp_path() const { return tmp_; }

 private:
  struct Impl;
  void submit_current();
  std::filesystem::path dest_;
  std::filesystem::path tmp_;
  int tmp_slot_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
  std::unique_ptr<Impl> impl_;
};

/// Writes a whole file atomically (temp + rename).
LQ_API void write_file_atomic(const std::filesystem::path& dest, std::span<const uint8_t> bytes);
LQ_API void write_file_atomic(const std::filesystem::path& dest, const std::string& text);
/// Reads a whole file; throws Errc::not_found / Errc::general.
LQ_API std::string read_file(const std::filesystem::path& path);

/// A size for people: "1.2 GB", "750.0 MB", "3.4 KB", "512 B" (decimal units).
LQ_API std::string human_bytes(uint64_t n);

/// The current time as ISO 8601 UTC, "2026-12-05T00:16:07Z" (reports, profiles, analyses).
LQ_API std::string utc_timestamp();

/// A read-only memory mapping of a whole file.
class LQ_API MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  /// Drops the pages of [offset, offset + n) from this process's resident set.
  void release(size_t offset, size_t n) const;
  /// Asks the OS to read [offset, offset + n) ahead (asynchronously).
  void will_need(size_t offset, size_t n) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Process-wide interruption, for programs that stop on Ctrl-C (the CLI). These functions read
// and set CancelToken::process() (context.hpp). Library operations check the token of the
// Context they are given, which is this one unless Context::cancel names another: an embedder
// that cancels one operation among several passes its own CancelToken instead.

/// Installs SIGINT/SIGTERM handlers that cancel CancelToken::process() (idempotent); a second
/// signal, when the program did not stop in time, removes open temporary outputs and exits.
LQ_API void install_interrupt_handler();
/// Whether CancelToken::process() was cancelled.
LQ_API bool interrupt_requested() noexcept;
/// Throws Errc::interrupted when CancelToken::process() was cancelled.
LQ_API void check_interrupted();
/// Cancels CancelToken::process() by hand (tests, embedding applications).
LQ_API void request_interrupt() noexcept;
/// Resets CancelToken::process() (and the second-signal state).
LQ_API void clear_interrupt() noexcept;

}  // namespace lq
