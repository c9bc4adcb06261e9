#include <lq/error.hpp>
#include <lq/io.hpp>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace lq {
namespace {

std::atomic<bool> g_interrupted{false};

// Temporary files currently open, in a fixed table the signal handler can walk safely: on a
// second signal (the program did not stop in time) it unlinks them and dies with the signal.
constexpr int kMaxTmp = 64;
char g_tmp_paths[kMaxTmp][4096];
std::atomic<bool> g_tmp_used[kMaxTmp];
std::mutex g_tmp_mutex;

int register_tmp(const std::string& path) {
  std::lock_guard<std::mutex> g(g_tmp_mutex);
  if (path.size() >= sizeof(g_tmp_paths[0])) return -1;
  for (int i = 0; i < kMaxTmp; ++i) {
    if (!g_tmp_used[i].load()) {
      std::memcpy(g_tmp_paths[i], path.c_str(), path.size() + 1);
      g_tmp_used[i].store(true);
      return i;
    }
  }
  return -1;
}

void unregister_tmp(int slot) {
  if (slot >= 0) g_tmp_used[slot].store(false);
}

extern "C" void on_signal(int sig) {
  if (g_interrupted.exchange(true)) {
    for (int i = 0; i < kMaxTmp; ++i)
      if (g_tmp_used[i].load()) ::unlink(g_tmp_paths[i]);
    signal(sig, SIG_DFL);
    raise(sig);
  }
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

OutputFile::OutputFile(fs::path dest, size_t buffer_bytes) : dest_(std::move(dest)), buf_(buffer_bytes) {
  fs::path dir = dest_.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail(Errc::output_error, "cannot write {}: directory {} does not exist", dest_.string(), dir.string());
  if (fs::is_directory(dest_, ec))
    fail(Errc::output_error, "cannot write {}: it is a directory", dest_.string());
  std::random_device rd;
  for (int attempt = 0; attempt < 8 && fd_ < 0; ++attempt) {
    tmp_ = dir / fmt::format(".{}.tmp-{:08x}", dest_.filename().string(), rd());
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0 && errno != EEXIST) break;
  }
  if (fd_ < 0) fail(Errc::output_error, "cannot write {}: {}", dest_.string(), errno_text());
  tmp_slot_ = register_tmp(tmp_.string());
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) {
    ::unlink(tmp_.c_str());
  }
  unregister_tmp(tmp_slot_);
}

void OutputFile::flush() {
  size_t off = 0;
  while (off < used_) {
    const ssize_t w = ::write(fd_, buf_.data() + off, used_ - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(Errc::output_error, "cannot write {}: {}", dest_.string(), errno_text());
    }
    off += static_cast<size_t>(w);
  }
  used_ = 0;
}

void OutputFile::write(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  written_ += n;
  if (n >= buf_.size()) {
    flush();
    size_t off = 0;
    while (off < n) {
      const ssize_t w = ::write(fd_, p + off, n - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail(Errc::output_error, "cannot write {}: {}", dest_.string(), errno_text());
      }
      off += static_cast<size_t>(w);
    }
    return;
  }
  while (n > 0) {
    const size_t k = std::min(n, buf_.size() - used_);
    std::memcpy(buf_.data() + used_, p, k);
    used_ += k;
    p += k;
    n -= k;
    if (used_ == buf_.size()) flush();
  }
}

void OutputFile::write_zeros(size_t n) {
  static const uint8_t zeros[256] = {};
  while (n > 0) {
    const size_t k = std::min(n, sizeof(zeros));
    write(zeros, k);
    n -= k;
  }
}

void OutputFile::commit() {
  check_interrupted();
  flush();
  if (::close(fd_) != 0) {
    fd_ = -1;
    fail(Errc::output_error, "cannot write {}: {}", dest_.string(), errno_text());
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), dest_.c_str()) != 0)
    fail(Errc::output_error, "cannot write {}: {}", dest_.string(), errno_text());
  committed_ = true;
}

void write_file_atomic(const fs::path& dest, std::span<const uint8_t> bytes) {
  OutputFile f(dest, 1 << 16);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

void write_file_atomic(const fs::path& dest, const std::string& text) {
  write_file_atomic(dest, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

std::string read_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(Errc::not_found, "{}: no such file", path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(Errc::general, "{}: cannot open: {}", path.string(), errno_text());
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return s;
}

MappedFile::MappedFile(const fs::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) fail(Errc::not_found, "{}: no such file", path.string());
    fail(Errc::invalid_model, "{}: cannot open: {}", path.string(), errno_text());
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(Errc::invalid_model, "{}: not a regular file", path.string());
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail(Errc::invalid_model, "{}: cannot map: {}", path.string(), errno_text());
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::release(size_t offset, size_t n) const {
  if (!data_ || n == 0) return;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size_t b = (offset / page) * page;
  size_t e = std::min(size_, offset + n);
  ::madvise(const_cast<uint8_t*>(data_) + b, e - b, MADV_DONTNEED);
}

void install_interrupt_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
  });
}

bool interrupt_requested() noexcept { return g_interrupted.load(std::memory_order_relaxed); }

void check_interrupted() {
  if (interrupt_requested()) fail(Errc::interrupted, "interrupted");
}

void request_interrupt() noexcept { g_interrupted.store(true); }
void clear_interrupt() noexcept { g_interrupted.store(false); }

}  // namespace lq
