// The .safetensors reader (see safetensors.hpp): header parsing and validation, pread access to
// tensor bytes, shared mappings. File I/O only: naming and decoding are lib/model's.
#include "formats/safetensors.hpp"

#include <lq/io.hpp>

#include <lq/error.hpp>
#include "core/fail.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lq {

size_t st_dtype_size(StDtype t) {
  switch (t) {
    case StDtype::F64: case StDtype::I64: return 8;
    case StDtype::F32: case StDtype::I32: return 4;
    case StDtype::F16: case StDtype::BF16: case StDtype::I16: return 2;
    case StDtype::I8: case StDtype::U8: case StDtype::BOOL: case StDtype::F8_E4M3: return 1;
  }
  return 0;
}

QuantType st_dtype_to_type(StDtype t) {
  switch (t) {
    case StDtype::F64: return QuantType::F64;
    case StDtype::F32: return QuantType::F32;
    case StDtype::F16: return QuantType::F16;
    case StDtype::BF16: return QuantType::BF16;
    case StDtype::I64: return QuantType::I64;
    case StDtype::I32: return QuantType::I32;
    case StDtype::I16: return QuantType::I16;
    case StDtype::I8: case StDtype::U8: case StDtype::BOOL: case StDtype::F8_E4M3: return QuantType::I8;
  }
  return QuantType::F32;
}

const char* st_dtype_name(StDtype t) {
  switch (t) {
    case StDtype::F64: return "F64";
    case StDtype::F32: return "F32";
    case StDtype::F16: return "F16";
    case StDtype::BF16: return "BF16";
    case StDtype::I64: return "I64";
    case StDtype::I32: return "I32";
    case StDtype::I16: return "I16";
    case StDtype::I8: return "I8";
    case StDtype::U8: return "U8";
    case StDtype::BOOL: return "BOOL";
    case StDtype::F8_E4M3: return "F8_E4M3";
  }
  return "?";
}

namespace {

std::optional<StDtype> parse_dtype(const std::string& s) {
  static const std::pair<const char*, StDtype> kNames[] = {
      {"F64", StDtype::F64}, {"F32", StDtype::F32}, {"F16", StDtype::F16}, {"BF16", StDtype::BF16},
      {"I64", StDtype::I64}, {"I32", StDtype::I32}, {"I16", StDtype::I16}, {"I8", StDtype::I8},
      {"U8", StDtype::U8},   {"BOOL", StDtype::BOOL}, {"F8_E4M3", StDtype::F8_E4M3}};
  for (const auto& [n, t] : kNames)
    if (s == n) return t;
  return std::nullopt;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : path_(path) {
  const std::string file = path.string();
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    if (errno == ENOENT) fail(Errc::invalid_model, "{}: safetensors file is missing", file);
    fail(Errc::invalid_model, "{}: cannot open: {}", file, std::strerror(errno));
  }
  // The destructor does not run when the constructor throws: close the file on every refusal.
  struct CloseOnThrow {
    int& fd;
    bool armed = true;
    ~CloseOnThrow() {
      if (armed && fd >= 0) {
        ::close(fd);
        fd = -1;
      }
    }
  } close_on_throw{fd_};
  struct stat st{};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) fail(Errc::invalid_model, "{}: not a regular file", file);
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ < 8) fail(Errc::invalid_model, "{}: truncated safetensors file ({} bytes, no header length)", file, size_);
  uint64_t hlen = 0;
  read(0, 8, &hlen);
  if (hlen > size_ - 8)
    fail(Errc::invalid_model, "{}: safetensors header length {} runs past the end of the file ({} bytes)", file, hlen,
         size_);
  if (hlen > (100u << 20)) fail(Errc::invalid_model, "{}: safetensors header of {} bytes is implausibly large", file, hlen);
  std::string header(static_cast<size_t>(hlen), '\0');
  read(8, static_cast<size_t>(hlen), header.data());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const nlohmann::json::exception& e) {
    fail(Errc::invalid_model, "{}: malformed safetensors header JSON: {}", file, e.what());
  }
  if (!j.is_object()) fail(Errc::invalid_model, "{}: safetensors header is not a JSON object", file);
  const uint64_t data_start = 8 + hlen;
  const uint64_t data_size = size_ - data_start;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it->is_object())
        for (auto m = it->begin(); m != it->end(); ++m)
          if (m->is_string()) metadata_[m.key()] = m->get<std::string>();
      continue;
    }
    const std::string& name = it.key();
    const auto& e = *it;
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      fail(Errc::invalid_model, "{}: tensor '{}': header entry needs dtype, shape and data_offsets", file, name);
    StTensor t;
    t.name = name;
    if (!e["dtype"].is_string()) fail(Errc::invalid_model, "{}: tensor '{}': dtype is not a string", file, name);
    auto dt = parse_dtype(e["dtype"].get<std::string>());
    if (!dt) fail(Errc::invalid_model, "{}: tensor '{}': unsupported dtype '{}'", file, name, e["dtype"].get<std::string>());
    t.dtype = *dt;
    if (!e["shape"].is_array()) fail(Errc::invalid_model, "{}: tensor '{}': shape is not an array", file, name);
    unsigned __int128 count = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        fail(Errc::invalid_model, "{}: tensor '{}': invalid shape", file, name);
      t.shape.push_back(d.get<int64_t>());
      count *= static_cast<uint64_t>(d.get<int64_t>());  // < 2^63 * 2^63: no wrap before the check
      if (count > static_cast<unsigned __int128>(INT64_MAX))
        fail(Errc::invalid_model, "{}: tensor '{}': shape declares more than 2^63 elements", file, name);
    }
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(Errc::invalid_model, "{}: tensor '{}': data_offsets must be two non-negative integers", file, name);
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (en < b) fail(Errc::invalid_model, "{}: tensor '{}': data_offsets end before they begin", file, name);
    if (en > data_size)
      fail(Errc::invalid_model, "{}: tensor '{}': data runs past the end of the file (offset {} > {} data bytes)", file,
           name, en, data_size);
    const unsigned __int128 expect = count * st_dtype_size(t.dtype);
    if (expect != en - b)
      fail(Errc::invalid_model, "{}: tensor '{}': {} {} values need {} bytes but data_offsets span {}", file, name,
           static_cast<uint64_t>(count), st_dtype_name(t.dtype), static_cast<uint64_t>(expect), en - b);
    t.begin = data_start + b;
    t.nbytes = en - b;
    tensors_.push_back(std::move(t));
  }
  // Overlap check: sort by offset.
  std::vector<const StTensor*> order;
  for (const auto& t : tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i]->begin < order[i - 1]->begin + order[i - 1]->nbytes && order[i]->nbytes > 0 && order[i - 1]->nbytes > 0)
      fail(Errc::invalid_model, "{}: tensors '{}' and '{}' overlap", file, order[i - 1]->name, order[i]->name);
  }
  close_on_throw.armed = false;
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

const StTensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::shared_ptr<const uint8_t> SafetensorsFile::share(uint64_t off, size_t n) const {
  std::call_once(map_once_, [&] { map_ = std::make_shared<MappedFile>(path_); });
  if (off + n > map_->size()) fail(Errc::invalid_model, "{}: bytes {}..{} lie past the end of the file", path_.string(), off, off + n);
  map_->will_need(off, n);
  return {map_, map_->data() + off};
}

void SafetensorsFile::read(uint64_t off, size_t n, void* dst) const {
  auto* p = static_cast<uint8_t*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd_, p, n, static_cast<off_t>(off));
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(Errc::invalid_model, "{}: read error: {}", path_.string(), std::strerror(errno));
    }
    if (r == 0) fail(Errc::invalid_model, "{}: unexpected end of file at byte {}", path_.string(), off);
    p += r;
    off += static_cast<uint64_t>(r);
    n -= static_cast<size_t>(r);
  }
}

}  // namespace lq
