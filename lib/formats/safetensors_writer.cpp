// The streaming .safetensors writers (see safetensors_writer.hpp): header layout, declared-order
// data, sharding and the index. File I/O only: must not know models, names or quantization.
#include "formats/safetensors_writer.hpp"

#include <lq/error.hpp>
#include <lq/io.hpp>
#include "core/fail.hpp"

#include <nlohmann/json.hpp>

#include <cstring>
#include <set>

namespace fs = std::filesystem;

namespace lq {

uint64_t StTensorSpec::nbytes() const {
  uint64_t n = st_dtype_size(dtype);
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

std::string st_header_bytes(const std::vector<StTensorSpec>& tensors, const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    j["__metadata__"] = std::move(m);
  }
  uint64_t off = 0;
  std::set<std::string> seen;
  for (const auto& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      fail(Errc::general, "safetensors writer: invalid tensor name '{}'", t.name);
    if (!seen.insert(t.name).second) fail(Errc::general, "safetensors writer: tensor '{}' declared twice", t.name);
    for (int64_t d : t.shape)
      if (d < 0) fail(Errc::general, "safetensors writer: tensor '{}' has a negative dimension", t.name);
    const uint64_t n = t.nbytes();
    nlohmann::ordered_json e;
    e["dtype"] = st_dtype_name(t.dtype);
    e["shape"] = t.shape;
    e["data_offsets"] = {off, off + n};
    j[t.name] = std::move(e);
    off += n;
  }
  std::string text = j.dump();
  // The data that follows starts 8-byte aligned, as the reference implementation pads it.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + text;
}

SafetensorsWriter::SafetensorsWriter(fs::path dest, std::vector<StTensorSpec> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : dest_(std::move(dest)), tensors_(std::move(tensors)) {
  const std::string header = st_header_bytes(tensors_, metadata);
  out_ = std::make_unique<OutputFile>(dest_, 4u << 20);
  out_->write(header.data(), header.size());
}

SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::begin(const std::string& name) {
  if (open_tensor_) fail(Errc::general, "safetensors writer: {}: tensor '{}' is incomplete", dest_.string(), tensors_[next_].name);
  if (next_ >= tensors_.size())
    fail(Errc::general, "safetensors writer: {}: tensor '{}' was not declared (all {} are written)", dest_.string(), name,
         tensors_.size());
  if (tensors_[next_].name != name)
    fail(Errc::general, "safetensors writer: {}: expected tensor '{}', got '{}'", dest_.string(), tensors_[next_].name, name);
  pending_ = tensors_[next_].nbytes();
  open_tensor_ = true;
  if (pending_ == 0) {
    open_tensor_ = false;
    ++next_;
  }
}

void SafetensorsWriter::append(const void* data, size_t nbytes) {
  if (!open_tensor_) fail(Errc::general, "safetensors writer: {}: bytes written outside a tensor", dest_.string());
  if (nbytes > pending_)
    fail(Errc::general, "safetensors writer: {}: tensor '{}' given {} bytes more than its size", dest_.string(),
         tensors_[next_].name, nbytes - pending_);
  out_->write(data, nbytes);
  pending_ -= nbytes;
  if (pending_ == 0) {
    open_tensor_ = false;
    ++next_;
  }
}

void SafetensorsWriter::write(const std::string& name, const void* data, size_t nbytes) {
  const size_t index = next_;
  begin(name);
  if (nbytes != tensors_[index].nbytes())
    fail(Errc::general, "safetensors writer: {}: tensor '{}' needs {} bytes, given {}", dest_.string(), name,
         tensors_[index].nbytes(), nbytes);
  if (nbytes > 0) append(data, nbytes);
}

void SafetensorsWriter::commit() {
  if (open_tensor_ || next_ != tensors_.size())
    fail(Errc::general, "safetensors writer: {}: {} of {} tensors written", dest_.string(), next_, tensors_.size());
  file_size_ = out_->size();
  out_->commit();
}

ShardedSafetensorsWriter::ShardedSafetensorsWriter(fs::path dir, std::vector<StTensorSpec> tensors,
                                                   uint64_t max_shard_bytes, std::map<std::string, std::string> metadata)
    : dir_(std::move(dir)), tensors_(std::move(tensors)), metadata_(std::move(metadata)) {
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) fail(Errc::output_error, "cannot write into {}: not a directory", dir_.string());
  // Greedy in declared order, as transformers' shard splitting does: a shard is closed when the
  // next tensor would take it past the limit; a tensor larger than the limit gets a shard alone.
  uint64_t in_shard = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const uint64_t n = tensors_[i].nbytes();
    if (shard_begin_.empty() || (in_shard > 0 && in_shard + n > max_shard_bytes)) {
      shard_begin_.push_back(i);
      in_shard = 0;
    }
    in_shard += n;
    total_ += n;
  }
  if (shard_begin_.empty()) shard_begin_.push_back(0);
  const size_t count = shard_begin_.size();
  shard_begin_.push_back(tensors_.size());
  for (size_t s = 0; s < count; ++s)
    shard_names_.push_back(count == 1 ? std::string("model.safetensors")
                                      : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, count));
}

ShardedSafetensorsWriter::~ShardedSafetensorsWriter() = default;

void ShardedSafetensorsWriter::open_shard(size_t s) {
  std::vector<StTensorSpec> part(tensors_.begin() + static_cast<std::ptrdiff_t>(shard_begin_[s]),
                                 tensors_.begin() + static_cast<std::ptrdiff_t>(shard_begin_[s + 1]));
  cur_ = std::make_unique<SafetensorsWriter>(dir_ / shard_names_[s], std::move(part), metadata_);
  cur_shard_ = s;
}

void ShardedSafetensorsWriter::write(const std::string& name, const void* data, size_t nbytes) {
  if (next_ >= tensors_.size())
    fail(Errc::general, "safetensors writer: {}: tensor '{}' was not declared", dir_.string(), name);
  if (!cur_) {
    size_t s = 0;
    while (shard_begin_[s + 1] <= next_) ++s;
    open_shard(s);
  }
  cur_->write(name, data, nbytes);
  ++next_;
  if (next_ == shard_begin_[cur_shard_ + 1]) {
    cur_->commit();
    written_ += cur_->file_size();
    cur_.reset();
  }
}

void ShardedSafetensorsWriter::commit() {
  if (next_ != tensors_.size())
    fail(Errc::general, "safetensors writer: {}: {} of {} tensors written", dir_.string(), next_, tensors_.size());
  if (tensors_.empty()) {  // still a valid (empty) file
    open_shard(0);
    cur_->commit();
    written_ += cur_->file_size();
    cur_.reset();
  }
  if (shard_names_.size() > 1) {
    nlohmann::ordered_json idx;
    idx["metadata"] = {{"total_size", total_}};
    nlohmann::ordered_json map = nlohmann::ordered_json::object();
    for (size_t s = 0; s + 1 < shard_begin_.size(); ++s)
      for (size_t i = shard_begin_[s]; i < shard_begin_[s + 1]; ++i) map[tensors_[i].name] = shard_names_[s];
    idx["weight_map"] = std::move(map);
    const std::string text = idx.dump(2) + "\n";
    write_file_atomic(dir_ / "model.safetensors.index.json", text);
    written_ += text.size();
  }
}

std::vector<std::string> ShardedSafetensorsWriter::file_names() const {
  std::vector<std::string> v = shard_names_;
  if (shard_names_.size() > 1) v.push_back("model.safetensors.index.json");
  return v;
}

}  // namespace lq
