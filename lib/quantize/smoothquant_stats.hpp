// Internal: SmoothQuant's per-channel activation statistic of one smoothing input (the maximum
// |x_j|, or a percentile from a histogram, and the reservoir of token rows the alpha search
// reads), gathered outside SmoothQuantizer: the streamed GPTQ path's W8A8 recipe (gptq_stream.cpp)
// feeds it block by block. The statistic itself is smoothquant.cpp's (SqSite); this is its handle.
// Also the source files the SmoothQuant writer reads and copies, which the GPTQ writers share.
#pragma once

#include <lq/smoothquant.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace lq::sq_impl {

struct SqSite;

class SqInputStats {
 public:
  /// `n` channels; `what` names the input in errors ("model.layers.3.input_layernorm output").
  /// The percentile, and the reservoir of cfg.auto_rows rows when cfg.alpha_auto, follow `cfg`;
  /// `seed` fixes the reservoir's draws.
  SqInputStats(std::string what, int64_t n, const SmoothQuantConfig& cfg, uint64_t seed);
  ~SqInputStats();
  SqInputStats(SqInputStats&&) noexcept;
  SqInputStats& operator=(SqInputStats&&) noexcept;

  /// Adds `rows` token rows of n values.
  void observe(const float* x, int64_t rows, int threads);
  /// a_j per channel at the configured percentile; Errc::smoothquant_failed naming the input when
  /// it saw NaN or infinite values or no signal at all.
  std::vector<float> statistic() const;
  /// The reservoir's rows (alpha_auto), rows() of n values.
  std::vector<float> sample() const;
  int64_t rows() const;
  int64_t channels() const;

 private:
  std::unique_ptr<SqSite> site_;
  double percentile_ = 100;
};

/// The source checkpoint's weight files (index order, else the directory's *.safetensors sorted).
std::vector<std::filesystem::path> sq_source_files(const std::filesystem::path& path);
/// Whether a file of the source is copied beside the written weights (tokenizer and generation
/// settings).
bool sq_copied_file(const std::string& name);

}  // namespace lq::sq_impl
