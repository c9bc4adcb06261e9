// Internal: a model directory written atomically. The checks before anything is written (the
// parent exists; the destination is absent, empty, or an earlier output of a kind the caller may
// replace), a temporary DIR.tmp-XXXXXXXX beside it that is removed unless published, and the
// publication by rename (an earlier output moved aside first, removed once the new one is in
// place, put back if the rename fails). Errors are Errc::output_error. Knows nothing of formats
// beyond reading config.json's quantization_config.quant_method of an existing directory.
#pragma once

#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace lq {

namespace detail {
/// The interruption handler's table of temporary outputs (core/io.cpp): a directory registered
/// here is removed, contents and all, when a second signal ends the process before the cooperative
/// cleanup could. Returns the slot (-1: the table is full or the path too long; then not covered).
int register_tmp_dir(const std::string& path);
void unregister_tmp_dir(int slot);
}  // namespace detail

class OutputDir {
 public:
  /// `dir`: the destination. An existing non-empty one is replaced only when its config.json
  /// names one of `replaceable` as quantization_config.quant_method; `what` names those outputs
  /// in the error ("compressed-tensors output").
  OutputDir(const std::filesystem::path& dir, std::vector<std::string> replaceable, std::string what);
  ~OutputDir();
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  const std::filesystem::path& parent() const { return parent_; }
  /// Creates the temporary directory (once the plan is known to be good) and returns it.
  const std::filesystem::path& make_tmp();
  const std::filesystem::path& tmp() const { return tmp_; }
  /// Moves the temporary directory into place.
  void publish();

 private:
  std::filesystem::path dir_, parent_, tmp_;
  bool replace_ = false;
  int tmp_slot_ = -1;  // the tmp directory's slot in the interruption handler's table
  std::random_device rd_;
};

}  // namespace lq
