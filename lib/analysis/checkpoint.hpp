// Internal: the accumulators of an importance analysis and their checkpoints (state.json plus
// the raw double sums, written after every chunk so an interrupted run resumes bit-exactly).
// File layout only: the analysis loop lives in analyzer.cpp.
#pragma once

#include <lq/importance.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lq::analysis {

/// Accumulated sums of one analysed weight.
struct Accum {
  int linear = -1;  ///< index into Model::linears()
  std::string name;
  int64_t n_cols = 0;
  std::vector<double> sum;
  int64_t count = 0;
};

/// The method's key in checkpoint and cache names: "activation", "gradient", "fisher".
const char* method_key(ImportanceMethod m) noexcept;

/// Where a run with `checkpoint_dir` keeps its state: <checkpoint_dir>/analyze-<method>.
std::filesystem::path state_dir(const std::filesystem::path& checkpoint_dir, ImportanceMethod m);

/// The state directory `resume` names: itself when it holds state.json, else its
/// analyze-<method>/. Errc::invalid_argument when neither exists.
std::filesystem::path resume_dir(const std::filesystem::path& resume, ImportanceMethod m);

/// Writes the state after `done` chunks into `dir` (created when missing): `base` (the run's
/// identity) plus progress, and the sums; older sums files are removed.
void save_checkpoint(const std::filesystem::path& dir, const nlohmann::json& base, int64_t done, int64_t tokens_done,
                     double loss_sum, const std::vector<Accum>& acc);

/// Loads the state in `dir` into `acc`, `tokens_done` and `loss_sum`; returns the chunks done.
/// Errc::invalid_argument when the state was made by another run than `base` describes, or is
/// malformed.
int64_t load_checkpoint(const std::filesystem::path& dir, const nlohmann::json& base, int64_t n_chunks,
                        std::vector<Accum>& acc, int64_t& tokens_done, double& loss_sum);

}  // namespace lq::analysis
