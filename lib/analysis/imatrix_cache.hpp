// Internal: the cache of completed importance analyses (`lq analyze` takes its directory from
// lq::imatrix_cache_dir()). A cached result is an imatrix GGUF plus a small JSON side file; the
// key is a hash of everything the result depends on. Reading and writing only: no evaluation.
#pragma once

#include "analysis/checkpoint.hpp"

#include <lq/importance.hpp>
#include <lq/progress.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace lq::analysis {

/// The cached result's path for a run whose identity is `base` (the checkpoint identity; its
/// "calibration" label is left out of the key).
std::filesystem::path cache_path(const std::filesystem::path& cache_dir, const nlohmann::json& base);

/// Fills `res.imatrix` and what the side file records from the cache entry at `path`, if there is
/// one with the entries of `acc`. An unreadable entry adds a warning and returns false. The
/// caller fills the scores.
bool load_cached(const std::filesystem::path& path, const std::vector<Accum>& acc, const std::string& source,
                 ImportanceResult& res, std::vector<std::string>& warnings);

/// Stores `res` at `path`. Best effort: a cache that cannot be written costs a warning, never the
/// result.
void store_cached(const std::filesystem::path& path, const ImportanceResult& res, std::vector<std::string>& warnings);

}  // namespace lq::analysis
