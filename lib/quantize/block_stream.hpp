// Internal: the pieces of the block-at-a-time calibration shared by the streamed quantizers (GPTQ
// in gptq_stream.cpp, SmoothQuant in smoothquant.cpp): BlockSource presents block L of a checkpoint
// as a one-block model whose token embedding is a table of calibration hidden states, and
// WorkFile is a plain descriptor for the work files (hidden states between blocks, spools) with a
// running checksum of what went through it.
#pragma once

#include <lq/model.hpp>

#include "core/fail.hpp"
#include "quantize/checkpoint.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace lq::block_stream {

// Block `layer` of `base` as a one-block model: blk.0.* are the block's tensors (read from the
// base, never shared from its mapping, so they leave memory with the Model), output_norm as in the
// base, and a token embedding of `rows` F32 rows (zeros here; each chunk's hidden states are put
// in with replace_tensor and "tokens" 0 .. n-1 select them). The output projection is tied to that
// table and never used (no logits are asked).
class BlockSource final : public ModelSource {
 public:
  BlockSource(const ModelSource& base, int64_t layer, int64_t rows) : base_(base) {
    cfg_ = base.config();
    const ModelTensor& embd = base.at("token_embd.weight");
    cfg_.n_layer = 1;
    cfg_.n_vocab = rows;
    cfg_.tie_embeddings = true;
    cfg_.unscaled_embeddings = true;  // the table holds hidden states (Gemma's already scaled)
    // Gemma's pattern: the block keeps layer `layer`'s kind (block 0 of a period-P model is a
    // sliding-window one for P >= 2, a global one for P = 1).
    if (cfg_.swa_period > 0) cfg_.swa_period = layer % cfg_.swa_period < cfg_.swa_period - 1 ? cfg_.swa_period : 1;
    if (cfg_.n_embd <= 0) cfg_.n_embd = embd.ne[0];
    ModelTensor e;
    e.name = e.source_name = "token_embd.weight";
    e.type = QuantType::F32;
    e.ne = {embd.ne[0], rows};
    tensors_.push_back(e);
    orig_.push_back(nullptr);
    const std::string p = "blk." + std::to_string(layer) + ".";
    for (const ModelTensor& t : base.tensors()) {
      if (t.name == "output_norm.weight" || t.name == "rope_freqs.weight" || t.name == "rope_factors_long.weight" ||
          t.name == "rope_factors_short.weight") {  // what every block's RoPE reads (Phi-3's LongRoPE factors)
        tensors_.push_back(t);
      } else if (t.name.rfind(p, 0) == 0) {
        tensors_.push_back(t);
        tensors_.back().name = "blk.0." + t.name.substr(p.size());
      } else {
        continue;
      }
      orig_.push_back(&t);
    }
  }

  const ModelConfig& config() const override { return cfg_; }
  const std::vector<ModelTensor>& tensors() const override { return tensors_; }
  void read_rows_f32(const ModelTensor& t, int64_t row0, int64_t nrows, float* dst) const override {
    if (const ModelTensor* o = orig(t)) return base_.read_rows_f32(*o, row0, nrows, dst);
    std::fill(dst, dst + nrows * t.row_length(), 0.f);
  }
  void read_rows_raw(const ModelTensor& t, int64_t row0, int64_t nrows, void* dst) const override {
    if (const ModelTensor* o = orig(t)) return base_.read_rows_raw(*o, row0, nrows, dst);
    std::memset(dst, 0, static_cast<size_t>(nrows) * t.row_bytes());
  }
  gguf::Metadata gguf_metadata() const override { return base_.gguf_metadata(); }
  bool is_gguf() const override { return false; }
  const std::filesystem::path& path() const override { return base_.path(); }
  uint64_t source_bytes() const override { return base_.source_bytes(); }

 private:
  const ModelTensor* orig(const ModelTensor& t) const {
    for (size_t i = 0; i < tensors_.size(); ++i)
      if (&tensors_[i] == &t || tensors_[i].name == t.name) return orig_[i];
    fail(Errc::invalid_argument, "no tensor {} in the block being calibrated", t.name);
  }
  const ModelSource& base_;
  ModelConfig cfg_;
  std::vector<ModelTensor> tensors_;
  std::vector<const ModelTensor*> orig_;
};

// Files of the work directory, written with plain descriptors and flushed before they are logged.
class WorkFile {
 public:
  WorkFile(const std::filesystem::path& p, bool write) : path_(p) {
    fd_ = write ? ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0)
      fail(write ? Errc::output_error : Errc::invalid_argument, "cannot open {}: {}", p.string(), std::strerror(errno));
  }
  ~WorkFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  WorkFile(const WorkFile&) = delete;
  WorkFile& operator=(const WorkFile&) = delete;
  void write(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    hash_.add(p, n);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail(Errc::output_error, "cannot write {}: {}", path_.string(), std::strerror(errno));
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  void read(void* data, size_t n) {
    auto* p = static_cast<uint8_t*>(data);
    while (n > 0) {
      const ssize_t r = ::read(fd_, p, n);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) fail(Errc::invalid_argument, "{} is shorter than its record (a damaged work file)", path_.string());
      hash_.add(p, static_cast<size_t>(r));
      p += r;
      n -= static_cast<size_t>(r);
    }
  }
  void seek(uint64_t off) {
    if (::lseek(fd_, static_cast<off_t>(off), SEEK_SET) < 0) fail(Errc::invalid_argument, "cannot seek in {}", path_.string());
  }
  void sync() {
    if (::fdatasync(fd_) != 0) fail(Errc::output_error, "cannot flush {}: {}", path_.string(), std::strerror(errno));
  }
  uint64_t hash() const { return hash_.value(); }
  uint64_t bytes() const { return hash_.total; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  quantize_ckpt::StreamHash hash_;
};

}  // namespace lq::block_stream
