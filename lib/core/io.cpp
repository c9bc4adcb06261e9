// File helpers behind io.hpp: atomic output files (two buffers, an optional background writer,
// O_DIRECT where allowed), read-only mappings, whole-file reads, and the SIGINT/SIGTERM/SIGHUP
// handler that cancels CancelToken::process() (a second signal removes the temporary files and
// directories still registered, then dies). Must not know any file format.
#include <lq/context.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/io.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <system_error>
#include <thread>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fstream>
#include <mutex>
#include <random>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace lq {
namespace {

// Set by the first signal; a second one (the program did not stop in time) cleans up and dies.
std::atomic<bool> interrupt_seen{false};

// Temporary files currently open, in a fixed table the signal handler can walk safely: on a
// second signal (the program did not stop in time) it unlinks them and dies with the signal.
constexpr int kMaxTmp = 64;
char g_tmp_paths[kMaxTmp][4096];
std::atomic<bool> g_tmp_used[kMaxTmp];
std::atomic<bool> g_tmp_is_dir[kMaxTmp];
std::mutex g_tmp_mutex;

int register_tmp(const std::string& path, bool dir = false) {
  std::lock_guard<std::mutex> g(g_tmp_mutex);
  if (path.size() >= sizeof(g_tmp_paths[0])) return -1;
  for (int i = 0; i < kMaxTmp; ++i) {
    if (!g_tmp_used[i].load()) {
      std::memcpy(g_tmp_paths[i], path.c_str(), path.size() + 1);
      g_tmp_is_dir[i].store(dir);
      g_tmp_used[i].store(true);
      return i;
    }
  }
  return -1;
}

// Removes `name` under the directory `at` and, when it is a directory, its contents, with system
// calls only (async-signal-safe: no allocation, no locks). Depth-limited; a directory that does
// not empty in a few passes is left.
void remove_tree_in_handler(int at, const char* name, int depth) {
  if (::unlinkat(at, name, 0) == 0 || errno == ENOENT) return;
#ifdef SYS_getdents64
  if (depth > 16) return;
  const int fd = ::openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  struct Dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[1];
  };
  alignas(8) char buf[2048];
  for (int pass = 0; pass < 4; ++pass) {
    ::lseek(fd, 0, SEEK_SET);
    for (;;) {
      const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
      if (n <= 0) break;
      for (long off = 0; off < n;) {
        const auto* d = reinterpret_cast<const Dirent64*>(buf + off);
        off += d->d_reclen;
        const char* e = d->d_name;
        if (e[0] == '.' && (e[1] == 0 || (e[1] == '.' && e[2] == 0))) continue;
        remove_tree_in_handler(fd, e, depth + 1);
      }
    }
    if (::unlinkat(at, name, AT_REMOVEDIR) == 0) break;
  }
  ::close(fd);
#else
  (void)depth;
  ::unlinkat(at, name, AT_REMOVEDIR);
#endif
}

void unregister_tmp(int slot) {
  if (slot >= 0) g_tmp_used[slot].store(false);
}

extern "C" void on_signal(int sig) {
  CancelToken::process().cancel();
  if (interrupt_seen.exchange(true)) {
    for (int i = 0; i < kMaxTmp; ++i) {
      if (!g_tmp_used[i].load()) continue;
      if (g_tmp_is_dir[i].load()) remove_tree_in_handler(AT_FDCWD, g_tmp_paths[i], 0);
      else ::unlink(g_tmp_paths[i]);
    }
    signal(sig, SIG_DFL);
    raise(sig);
  }
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

// Two aligned buffers: the caller fills one while the writer (the caller itself, or a
// background thread) writes the other at its file offset with pwrite.
struct OutputFile::Impl {
  int fd = -1;
  bool direct = false;
  bool background = false;
  size_t cap = 0;
  uint8_t* buf[2] = {nullptr, nullptr};
  size_t used = 0;        // bytes in buf[cur]
  int cur = 0;
  uint64_t file_off = 0;  // offset of buf[cur]'s first byte
  std::thread writer;
  std::mutex m;
  std::condition_variable cv;
  bool job = false;       // a buffer is being written
  int job_buf = 0;
  size_t job_len = 0;
  uint64_t job_off = 0;
  bool stop = false;
  int error = 0;

  void write_all(const uint8_t* p, size_t n, uint64_t off) {
    while (n > 0) {
      const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
      if (w < 0) {
        if (errno == EINTR) continue;
        throw std::system_error(errno, std::generic_category());
      }
      p += w;
      off += static_cast<uint64_t>(w);
      n -= static_cast<size_t>(w);
    }
  }

  void loop() {
    std::unique_lock<std::mutex> lk(m);
    for (;;) {
      cv.wait(lk, [&] { return job || stop; });
      if (!job && stop) return;
      const int b = job_buf;
      const size_t len = job_len;
      const uint64_t off = job_off;
      lk.unlock();
      int err = 0;
      try {
        write_all(buf[b], len, off);
      } catch (const std::system_error& e) {
        err = e.code().value();
      }
      lk.lock();
      if (err && !error) error = err;
      job = false;
      cv.notify_all();
    }
  }

  void wait_idle() {
    std::unique_lock<std::mutex> lk(m);
    cv.wait(lk, [&] { return !job; });
  }

  ~Impl() {
    if (writer.joinable()) {
      {
        std::lock_guard<std::mutex> g(m);
        stop = true;
      }
      cv.notify_all();
      writer.join();
    }
    for (auto* b : buf) std::free(b);
    if (fd >= 0) ::close(fd);
  }
};

OutputFile::OutputFile(fs::path dest, size_t buffer_bytes, bool background)
    : dest_(std::move(dest)), impl_(std::make_unique<Impl>()) {
  fs::path dir = dest_.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail(Errc::output_error, "cannot write {}: directory {} does not exist", dest_.string(), dir.string());
  if (fs::is_directory(dest_, ec))
    fail(Errc::output_error, "cannot write {}: it is a directory", dest_.string());
  Impl& im = *impl_;
  im.background = background;
  std::random_device rd;
  for (int attempt = 0; attempt < 8 && im.fd < 0; ++attempt) {
    tmp_ = dir / fmt::format(".{}.tmp-{:08x}", dest_.filename().string(), rd());
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
    im.fd = ::open(tmp_.c_str(), flags, 0644);
    if (im.fd < 0 && errno != EEXIST) break;
  }
  if (im.fd < 0) fail(Errc::output_error, "cannot write {}: {}", dest_.string(), errno_text());
  tmp_slot_ = register_tmp(tmp_.string());
  if (background) {
    // O_DIRECT needs block-aligned buffers, sizes and offsets; fall back to buffered I/O where
    // the file system refuses it.
    const int fl = ::fcntl(im.fd, F_GETFL);
    im.direct = fl >= 0 && ::fcntl(im.fd, F_SETFL, fl | O_DIRECT) == 0;
  }
  constexpr size_t kAlign = 4096;
  im.cap = std::max(kAlign, (buffer_bytes + kAlign - 1) / kAlign * kAlign);
  for (auto& b : im.buf) {
    b = static_cast<uint8_t*>(std::aligned_alloc(kAlign, im.cap));
    if (!b) throw std::bad_alloc();
  }
  if (background) im.writer = std::thread([&im] { im.loop(); });
}

OutputFile::~OutputFile() {
  impl_.reset();  // stops the writer and closes the file
  if (!committed_) ::unlink(tmp_.c_str());
  unregister_tmp(tmp_slot_);
}

void OutputFile::submit_current() {
  Impl& im = *impl_;
  if (im.used == 0) return;
  if (!im.background) {
    try {
      im.write_all(im.buf[im.cur], im.used, im.file_off);
    } catch (const std::system_error& e) {
      fail(Errc::output_error, "cannot write {}: {}", dest_.string(), std::strerror(e.code().value()));
    }
  } else {
    im.wait_idle();
    {
      std::lock_guard<std::mutex> g(im.m);
      if (im.error) fail(Errc::output_error, "cannot write {}: {}", dest_.string(), std::strerror(im.error));
      im.job = true;
      im.job_buf = im.cur;
      im.job_len = im.used;
      im.job_off = im.file_off;
    }
    im.cv.notify_all();
    im.cur ^= 1;
  }
  im.file_off += im.used;
  im.used = 0;
}

void OutputFile::write(const void* data, size_t n) {
  Impl& im = *impl_;
  const auto* p = static_cast<const uint8_t*>(data);
  written_ += n;
  while (n > 0) {
    const size_t k = std::min(n, im.cap - im.used);
    std::memcpy(im.buf[im.cur] + im.used, p, k);
    im.used += k;
    p += k;
    n -= k;
    if (im.used == im.cap) submit_current();
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
  Impl& im = *impl_;
  if (im.direct && im.used % 4096 != 0) {
    // The last block goes out padded to the block size; the file is then cut to its length.
    const size_t pad = 4096 - im.used % 4096;
    std::memset(im.buf[im.cur] + im.used, 0, pad);
    im.used += pad;
  }
  submit_current();
  if (im.background) im.wait_idle();
  if (im.error) fail(Errc::output_error, "cannot write {}: {}", dest_.string(), std::strerror(im.error));
  if (im.direct && ::ftruncate(im.fd, static_cast<off_t>(written_)) != 0)
    fail(Errc::output_error, "cannot write {}: {}", dest_.string(), errno_text());
  if (::close(im.fd) != 0) {
    im.fd = -1;
    fail(Errc::output_error, "cannot write {}: {}", dest_.string(), errno_text());
  }
  im.fd = -1;
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

void MappedFile::will_need(size_t offset, size_t n) const {
  if (!data_ || n == 0 || offset >= size_) return;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t b = (offset / page) * page, e = std::min(size_, offset + n);
  ::madvise(const_cast<uint8_t*>(data_) + b, e - b, MADV_WILLNEED);
}

void install_interrupt_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    CancelToken::process();  // constructed here, not first in the handler
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);
  });
}

namespace detail {
int register_tmp_dir(const std::string& path) { return register_tmp(path, true); }
void unregister_tmp_dir(int slot) { unregister_tmp(slot); }
}  // namespace detail

bool interrupt_requested() noexcept { return CancelToken::process().cancelled(); }

void check_interrupted() {
  if (interrupt_requested()) fail(Errc::interrupted, "interrupted");
}

void request_interrupt() noexcept { CancelToken::process().cancel(); }
void clear_interrupt() noexcept {
  CancelToken::process().reset();
  interrupt_seen.store(false);
}

std::string utc_timestamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string human_bytes(uint64_t n) {
  const double v = static_cast<double>(n);
  if (v >= 1e9) return fmt::format("{:.1f} GB", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.1f} MB", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f} KB", v / 1e3);
  return fmt::format("{} B", n);
}

}  // namespace lq
