// GGUF quantization checkpoints (see checkpoint.hpp): state.json with the run's identity, data.bin
// with the finished tensors' bytes, tensors.log with one checksummed line per finished tensor,
// each flushed to disk in that order. Reuses the analysis checkpoints' model identity and hash.
#include "quantize/checkpoint.hpp"

#include <lq/error.hpp>
#include <lq/io.hpp>
#include "analysis/fingerprint.hpp"
#include "core/fail.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <sstream>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq {

fs::path quantize_checkpoint_state(const fs::path& dir, const std::string& level, bool resume) {
  const fs::path sub = quantize_ckpt::state_dir(dir, level);
  if (!resume) return sub;
  std::error_code ec;
  if (fs::is_regular_file(dir / "state.json", ec)) return dir;
  if (fs::is_regular_file(sub / "state.json", ec)) return sub;
  if (!fs::exists(dir, ec)) fail(Errc::invalid_argument, "--resume: checkpoint not found: {}", dir.string());
  fail(Errc::invalid_argument, "--resume: {} holds no checkpoint of a {} quantization (no state.json)", dir.string(),
       level);
}

namespace quantize_ckpt {

void StreamHash::add(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  total += n;
  while (nt > 0 && nt < 8 && n > 0) tail[nt++] = *p++, --n;
  if (nt == 8) {
    uint64_t w;
    std::memcpy(&w, tail, 8);
    word(w);
    nt = 0;
  }
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    word(w);
  }
  while (n > 0) tail[nt++] = *p++, --n;
}

uint64_t StreamHash::value() const {
  StreamHash c = *this;
  uint64_t w = 0;
  std::memcpy(&w, c.tail, c.nt);
  c.word(w);
  c.word(c.total);
  return c.h;
}

namespace {

constexpr const char* kStateFormat = "lq.quantize-checkpoint";

std::string errno_message() { return std::strerror(errno); }

// Writes all of [p, p + n) at `off`.
void pwrite_all(int fd, const void* data, size_t n, uint64_t off, const fs::path& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(Errc::output_error, "cannot write the checkpoint {}: {}", path.string(), errno_message());
    }
    p += w, off += static_cast<uint64_t>(w), n -= static_cast<size_t>(w);
  }
}

void sync_fd(int fd, const fs::path& path) {
  if (::fdatasync(fd) != 0)
    fail(Errc::output_error, "cannot write the checkpoint {}: {}", path.string(), errno_message());
}

int open_rw(const fs::path& path, bool truncate) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
  if (fd < 0) fail(Errc::output_error, "cannot open the checkpoint file {}: {}", path.string(), errno_message());
  return fd;
}

// The run's identity: the model, the level, each tensor's written type and size, the
// importance data the quantizer reads and the protected weights. Anything that changes a byte of
// tensor data changes one of these.
json run_identity(const ModelSource& src, const QuantizeOptions& o, const std::vector<TensorPlan>& plan) {
  json tensors = json::array();
  analysis::Fnv imatrix, protect;
  bool any_imatrix = false;
  for (const auto& p : plan) {
    tensors.push_back({p.name, type_name(p.type), p.bytes, p.quantize, p.split});
    if (p.uses_imatrix) {
      any_imatrix = true;
      const std::optional<std::vector<float>> w =
          o.imatrix->column_weights(p.name, p.ne[0], p.ne.size() == 3 && p.ne[2] > 0 ? p.ne[2] : 1);
      imatrix.add_string(p.name);
      if (w) imatrix.add(w->data(), w->size() * sizeof(float));
    }
  }
  for (const auto& pw : o.protect) {
    protect.add_string(pw.tensor);
    protect.add_value(pw.row);
    protect.add_value(pw.col);
  }
  const std::string level = o.checkpoint.level.empty() ? file_type_info(o.ftype).name : o.checkpoint.level;
  return {{"format", kStateFormat},
          {"version", 1},
          {"model_id", analysis::model_identity(src)},
          {"level", level},
          {"tensors", tensors},
          {"imatrix", any_imatrix ? json(imatrix.hex()) : json(nullptr)},
          {"protected", o.protect.empty() ? json(nullptr) : json(protect.hex())},
          {"gain_correction", o.gain_correction && o.imatrix != nullptr}};
}

// Why a checkpoint made for `had` does not fit the run `want`: "" when it fits.
std::string identity_mismatch(const json& had, const json& want) {
  if (had.value("model_id", "") != want["model_id"])
    return fmt::format("another model (identity {}, this model {})", had.value("model_id", "(none)"),
                       want["model_id"].get<std::string>());
  if (had.value("level", "") != want["level"])
    return fmt::format("level {}, this run is {}", had.value("level", "(none)"), want["level"].get<std::string>());
  const json& a = had.contains("tensors") ? had["tensors"] : json::array();
  const json& b = want["tensors"];
  if (a.size() != b.size()) return fmt::format("{} tensors, this run has {}", a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == b[i]) continue;
    auto describe = [](const json& t) {
      return t.is_array() && t.size() >= 2 ? fmt::format("{} as {}", t[0].dump(), t[1].dump()) : t.dump();
    };
    return fmt::format("other options (tensor {} there, {} in this run)", describe(a[i]), describe(b[i]));
  }
  if (had.value("imatrix", json(nullptr)) != want["imatrix"])
    return want["imatrix"].is_null() ? "an importance matrix, this run has none"
           : had.value("imatrix", json(nullptr)).is_null() ? "no importance matrix, this run has one"
                                                            : "another importance matrix";
  if (had.value("protected", json(nullptr)) != want["protected"]) return "other protected weights";
  if (had.value("gain_correction", false) != want.value("gain_correction", false))
    return want.value("gain_correction", false) ? "no gain correction (an earlier lq), this run corrects"
                                               : "the gain correction, this run has none";
  return "";
}

// "INDEX OFFSET BYTES HASH NAME" and the checksum of that text: one finished tensor.
std::string log_line(size_t index, uint64_t offset, uint64_t bytes, uint64_t hash, const std::string& name) {
  const std::string body = fmt::format("{} {} {} {:016x} {}", index, offset, bytes, hash, name);
  analysis::Fnv f;
  f.add_string(body);
  return fmt::format("{} {}\n", body, f.hex());
}

}  // namespace

fs::path state_dir(const fs::path& checkpoint_dir, const std::string& level) { return checkpoint_dir / ("gguf-" + level); }

Checkpoint::Checkpoint(const ModelSource& src, const QuantizeOptions& opts, const std::vector<TensorPlan>& plan)
    : dir_(opts.checkpoint.dir), plan_(plan) {
  const json want = run_identity(src, opts, plan);
  state_ = want.dump();
  if (!opts.checkpoint.resume) {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) fail(Errc::output_error, "cannot create the checkpoint directory {}: {}", dir_.string(), ec.message());
    lock();
    remove_old_temp_outputs();
    start_fresh();
    return;
  }
  json had;
  try {
    had = json::parse(read_file(dir_ / "state.json"));
  } catch (const json::exception& e) {
    fail(Errc::invalid_argument, "--resume: {}: malformed checkpoint state: {}", (dir_ / "state.json").string(), e.what());
  } catch (const Error&) {
    fail(Errc::invalid_argument, "--resume: {} holds no checkpoint (no state.json)", dir_.string());
  }
  if (!had.is_object() || had.value("format", "") != kStateFormat)
    fail(Errc::invalid_argument, "--resume: {} is not a GGUF quantization checkpoint", dir_.string());
  std::string why;
  try {
    why = identity_mismatch(had, want);
  } catch (const json::exception& e) {
    fail(Errc::invalid_argument, "--resume: {}: malformed checkpoint state: {}", (dir_ / "state.json").string(), e.what());
  }
  if (!why.empty())
    throw Error(Errc::invalid_argument,
                fmt::format("--resume: the checkpoint in {} was made for {}", dir_.string(), why),
                "Resume with the same model, level and options, or start afresh without --resume");
  lock();
  remove_old_temp_outputs();
  load();
}

void Checkpoint::lock() {
  // One run at a time: a second one would interleave tensors, and would take the first one's
  // temporary output for a left-over. The lock goes with the process, however it ends.
  lock_fd_ = ::open((dir_ / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0)
    fail(Errc::output_error, "cannot open the checkpoint file {}: {}", (dir_ / "lock").string(), errno_message());
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0)
    fail(Errc::invalid_argument, "the checkpoint in {} is in use by another running quantization", dir_.string());
}

void Checkpoint::remove_old_temp_outputs() {
  std::error_code ec;
  if (!fs::is_regular_file(dir_ / "temp-outputs.txt", ec)) return;
  std::istringstream in(read_file(dir_ / "temp-outputs.txt"));
  // Only the hidden temporary names OutputFile makes (".NAME.tmp-XXXXXXXX"), nothing else.
  for (std::string line; std::getline(in, line);) {
    const fs::path p(line);
    const std::string f = p.filename().string();
    if (f.size() > 14 && f[0] == '.' && f.find(".tmp-") == f.size() - 13 && fs::is_regular_file(p, ec)) fs::remove(p, ec);
  }
  fs::remove(dir_ / "temp-outputs.txt", ec);
}

void Checkpoint::note_temp_output(const fs::path& temp) {
  if (temp.empty()) return;
  temps_.push_back(fs::absolute(temp));
  std::string text;
  for (const auto& t : temps_) text += t.string() + "\n";
  write_file_atomic(dir_ / "temp-outputs.txt", text);
}

Checkpoint::~Checkpoint() {
  if (data_fd_ >= 0) ::close(data_fd_);
  if (log_fd_ >= 0) ::close(log_fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void Checkpoint::start_fresh() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) fail(Errc::output_error, "cannot create the checkpoint directory {}: {}", dir_.string(), ec.message());
  // The old state goes first: until the new state.json exists, no checkpoint is there.
  for (const char* f : {"state.json", "tensors.log", "data.bin", "temp-outputs.txt"}) fs::remove(dir_ / f, ec);
  data_fd_ = open_rw(dir_ / "data.bin", true);
  log_fd_ = open_rw(dir_ / "tensors.log", true);
  write_file_atomic(dir_ / "state.json", state_ + "\n");
}

void Checkpoint::load() {
  data_fd_ = open_rw(dir_ / "data.bin", false);
  log_fd_ = open_rw(dir_ / "tensors.log", false);
  struct stat st {};
  if (::fstat(data_fd_, &st) != 0) fail(Errc::output_error, "cannot read {}: {}", (dir_ / "data.bin").string(), errno_message());
  const uint64_t data_size = static_cast<uint64_t>(st.st_size);
  const std::string log = read_file(dir_ / "tensors.log");
  // The consistent prefix: complete lines with a good checksum, for the plan's tensors in order,
  // whose bytes are all in data.bin. What follows (a torn line, a tensor cut short) is dropped.
  size_t pos = 0, kept = 0;
  uint64_t offset = 0;
  while (pos < log.size()) {
    const size_t nl = log.find('\n', pos);
    if (nl == std::string::npos) break;
    const std::string line = log.substr(pos, nl - pos);
    const size_t sp = line.rfind(' ');
    if (sp == std::string::npos) break;
    analysis::Fnv f;
    f.add_string(line.substr(0, sp));
    if (f.hex() != line.substr(sp + 1)) break;
    std::istringstream in(line.substr(0, sp));
    size_t index = 0;
    uint64_t off = 0, bytes = 0;
    std::string hash, name;
    if (!(in >> index >> off >> bytes >> hash >> name) || hash.size() != 16 ||
        hash.find_first_not_of("0123456789abcdef") != std::string::npos)
      break;
    const size_t i = done_.size();
    if (index != i || i >= plan_.size() || name != plan_[i].name || bytes != plan_[i].bytes || off != offset ||
        off + bytes > data_size)
      break;
    done_.push_back({off, bytes, std::stoull(hash, nullptr, 16)});
    offset += bytes;
    pos = nl + 1;
    kept = pos;
  }
  data_end_ = offset;
  log_end_ = kept;
  if (::ftruncate(data_fd_, static_cast<off_t>(data_end_)) != 0 || ::ftruncate(log_fd_, static_cast<off_t>(kept)) != 0)
    fail(Errc::output_error, "cannot write the checkpoint in {}: {}", dir_.string(), errno_message());
}

void Checkpoint::replay(size_t i, size_t chunk, const std::function<void(const uint8_t*, size_t)>& sink) {
  LQ_ASSERT(i < done_.size());
  const Done& d = done_[i];
  std::vector<uint8_t> buf(std::min<uint64_t>(std::max<size_t>(chunk, 1), std::max<uint64_t>(d.bytes, 1)));
  StreamHash h;
  for (uint64_t pos = 0; pos < d.bytes;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), d.bytes - pos));
    const ssize_t got = ::pread(data_fd_, buf.data(), want, static_cast<off_t>(d.offset + pos));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0)
      fail(Errc::invalid_argument, "--resume: cannot read {} from the checkpoint {}: {}", plan_[i].name,
           (dir_ / "data.bin").string(), got < 0 ? errno_message() : std::string("file cut short"));
    h.add(buf.data(), static_cast<size_t>(got));
    sink(buf.data(), static_cast<size_t>(got));
    pos += static_cast<uint64_t>(got);
  }
  if (h.value() != d.hash)
    throw Error(Errc::invalid_argument,
                fmt::format("--resume: the checkpoint in {} is damaged: the bytes of tensor {} do not match their checksum",
                            dir_.string(), plan_[i].name),
                "Start afresh without --resume");
}

void Checkpoint::append(const void* data, size_t n) {
  pwrite_all(data_fd_, data, n, data_end_ + cur_bytes_, dir_ / "data.bin");
  cur_hash_.add(data, n);
  cur_bytes_ += n;
}

void Checkpoint::finish_tensor() {
  const size_t i = done_.size();
  LQ_ASSERT(i < plan_.size() && cur_bytes_ == plan_[i].bytes);
  // The bytes reach the disk before the line that records them: a line that survives a crash
  // (even of the machine) names bytes that did. The line itself is not synced: a process killed
  // after write() returns keeps it (the kernel holds it), and a line lost with the machine only
  // loses that tensor's progress, as does a torn one.
  sync_fd(data_fd_, dir_ / "data.bin");
  const Done d{data_end_, cur_bytes_, cur_hash_.value()};
  const std::string line = log_line(i, d.offset, d.bytes, d.hash, plan_[i].name);
  pwrite_all(log_fd_, line.data(), line.size(), log_end_, dir_ / "tensors.log");
  log_end_ += line.size();
  done_.push_back(d);
  data_end_ += cur_bytes_;
  cur_bytes_ = 0;
  cur_hash_ = StreamHash{};
}

void Checkpoint::remove() {
  if (data_fd_ >= 0) ::close(data_fd_), data_fd_ = -1;
  if (log_fd_ >= 0) ::close(log_fd_), log_fd_ = -1;
  std::error_code ec;
  fs::remove_all(dir_, ec);
  if (lock_fd_ >= 0) ::close(lock_fd_), lock_fd_ = -1;
  const fs::path parent = dir_.parent_path();
  if (!parent.empty() && fs::is_directory(parent, ec) && fs::is_empty(parent, ec)) fs::remove(parent, ec);
}

}  // namespace quantize_ckpt
}  // namespace lq
