// Internal: the streamed GPTQ calibration (gptq_stream.cpp) for callers other than gptq_model.
#pragma once

#include <lq/awq.hpp>
#include <lq/gptq.hpp>
#include <lq/model.hpp>

#include <filesystem>

namespace lq {

/// A work folder of its own under the system's temporary directory (mkdtemp: unique per call,
/// where gptq_stream_hook's folder under its root is unique per process only), removed with its
/// contents when destroyed. Errc::output_error when it cannot be made.
class StreamWorkDir {
 public:
  explicit StreamWorkDir(const std::string& prefix);
  ~StreamWorkDir();
  StreamWorkDir(const StreamWorkDir&) = delete;
  StreamWorkDir& operator=(const StreamWorkDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// Whether gptq_model calibrates src block by block (a Hugging Face checkpoint; every architecture
/// liblq reads streams, a merged expert tensor one expert at a time).
bool gptq_streams(const ModelSource& src);

/// GPTQ's sequential calibration with one block in memory, each linear quantized by
/// config.matrix_hook (required; no RTN or SmoothQuant): its returned values feed the later
/// blocks. The work files (each block's input hidden states) live in a folder under work_root for
/// the run's duration, or, with config.checkpoint_dir, in that checkpoint (a block is logged once
/// the hook has run on all its linears; config.resume skips the logged blocks, whose hook calls are
/// not made again; the checkpoint is left for the caller to remove). Nothing else is written; the
/// summary has no layer reports. `data` (may be null): the calibration data to cut into chunks
/// instead of config.calibration_data's file or the built-in text.
GptqResult gptq_stream_hook(const std::filesystem::path& model, const std::filesystem::path& work_root,
                            const GptqConfig& config, const Context& ctx, const CalibrationData* data = nullptr);

/// awq_model's streamed run (the source must stream: gptq_streams): AWQ block by block on GPTQ's
/// streamed runner, with its checkpoint, work files and output; the same bytes as AwqQuantizer's.
AwqResult awq_stream(const std::filesystem::path& model, std::filesystem::path out, const AwqConfig& config,
                     const Context& ctx);

}  // namespace lq
