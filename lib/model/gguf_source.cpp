// ModelSource over a GGUF file: metadata and tensors as they are in the file.
#include "model/config.hpp"
#include "model/sources.hpp"

#include <lq/decode.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"

#include <cstring>
#include <unordered_set>

#include <fmt/format.h>

namespace lq {
namespace {

// The files of a split GGUF: "prefix-00001-of-00003.gguf" and its siblings (llama.cpp's naming).
std::vector<std::filesystem::path> split_files(const std::filesystem::path& first, int n) {
  const std::string name = first.filename().string();
  const std::string suffix = fmt::format("-{:05}-of-{:05}.gguf", 1, n);
  if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    fail(Errc::invalid_model, "{}: the first file of a {}-way split GGUF must end in {}", first.string(), n, suffix);
  const std::string prefix = name.substr(0, name.size() - suffix.size());
  std::vector<std::filesystem::path> out;
  for (int i = 0; i < n; ++i) out.push_back(first.parent_path() / fmt::format("{}-{:05}-of-{:05}.gguf", prefix, i + 1, n));
  return out;
}

class GgufSource final : public ModelSource {
 public:
  explicit GgufSource(const std::filesystem::path& path) : path_(path) {
    readers_.push_back(std::make_unique<gguf::Reader>(path));
    const auto& m = readers_[0]->metadata();
    const std::string arch = m.get_string("general.architecture").value_or("");
    if (arch.empty()) fail(Errc::invalid_model, "{}: no general.architecture key", path.string());
    if (const int64_t n = m.get_int("split.count").value_or(1); n > 1) {
      if (n > 99999)  // llama.cpp's names number splits with five digits
        fail(Errc::invalid_model, "{}: split.count {} is more than 99999", path.string(), n);
      if (m.get_int("split.no").value_or(0) != 0)
        fail(Errc::invalid_model, "{}: a split GGUF must be opened at its first file", path.string());
      const auto files = split_files(path, static_cast<int>(n));
      for (size_t i = 1; i < files.size(); ++i) {
        std::error_code ec;
        if (!std::filesystem::exists(files[i], ec))
          fail(Errc::invalid_model, "{}: split {} of {} is missing ({})", path.string(), i + 1, n, files[i].string());
        readers_.push_back(std::make_unique<gguf::Reader>(files[i]));
        if (readers_.back()->metadata().get_int("split.no").value_or(-1) != static_cast<int64_t>(i))
          fail(Errc::invalid_model, "{}: split.no is not {}", files[i].string(), i);
      }
    }
    config_ = config_from_gguf(m, path.string());
    std::unordered_set<std::string> seen;  // duplicates across splits, without a scan per tensor
    for (size_t k = 0; k < readers_.size(); ++k) {
      for (const auto& t : readers_[k]->tensors()) {
        if (!seen.insert(t.name).second) fail(Errc::invalid_model, "{}: tensor '{}' appears twice", readers_[k]->path().string(), t.name);
        ModelTensor mt;
        mt.name = t.name;
        mt.source_name = t.name;
        mt.type = t.type;
        mt.ne = t.ne;
        mt.split = static_cast<int>(k);
        tensors_.push_back(std::move(mt));
        infos_.push_back({readers_[k].get(), &t});
      }
    }
    if (const auto expect = m.get_int("split.tensors.count"); expect && *expect != static_cast<int64_t>(tensors_.size()))
      fail(Errc::invalid_model, "{}: split.tensors.count says {} tensors, the splits hold {}", path.string(), *expect,
           tensors_.size());
    config_.tie_embeddings = find("output.weight") == nullptr;
  }

  const ModelConfig& config() const override { return config_; }
  const std::vector<ModelTensor>& tensors() const override { return tensors_; }

  void read_rows_f32(const ModelTensor& t, int64_t row0, int64_t nrows, float* dst) const override {
    const Loc& l = loc(t);
    lq::read_rows_f32(*l.reader, *l.info, row0, nrows, dst);
  }

  void read_rows_raw(const ModelTensor& t, int64_t row0, int64_t nrows, void* dst) const override {
    const Loc& l = loc(t);
    const size_t rb = t.row_bytes();
    const auto data = l.reader->data(*l.info);
    std::memcpy(dst, data.data() + static_cast<size_t>(row0) * rb, static_cast<size_t>(nrows) * rb);
  }

  void release(const ModelTensor& t) const override { loc(t).reader->release(*loc(t).info); }
  std::shared_ptr<const uint8_t> share_raw(const ModelTensor& t) const override {
    return loc(t).reader->share(*loc(t).info);
  }
  gguf::Metadata gguf_metadata() const override {
    gguf::Metadata m = readers_[0]->metadata();
    for (const char* k : {"split.no", "split.count", "split.tensors.count"}) m.erase(k);
    return m;
  }
  bool is_gguf() const override { return true; }
  const std::filesystem::path& path() const override { return path_; }
  uint64_t source_bytes() const override {
    uint64_t n = 0;
    for (const auto& r : readers_) n += std::filesystem::file_size(r->path());
    return n;
  }
  int n_splits() const override { return static_cast<int>(readers_.size()); }

 private:
  struct Loc {
    const gguf::Reader* reader;
    const gguf::TensorInfo* info;
  };
  const Loc& loc(const ModelTensor& t) const {
    const size_t i = static_cast<size_t>(&t - tensors_.data());
    LQ_ASSERT(i < infos_.size());
    return infos_[i];
  }

  std::filesystem::path path_;
  std::vector<std::unique_ptr<gguf::Reader>> readers_;
  ModelConfig config_;
  std::vector<ModelTensor> tensors_;
  std::vector<Loc> infos_;
};

}  // namespace

std::unique_ptr<ModelSource> open_gguf_source(const std::filesystem::path& path) {
  return std::make_unique<GgufSource>(path);
}

}  // namespace lq
