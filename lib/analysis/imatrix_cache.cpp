// The imatrix cache of completed analyses (see imatrix_cache.hpp).
#include "analysis/imatrix_cache.hpp"

#include "analysis/fingerprint.hpp"

#include <lq/io.hpp>

#include <fmt/format.h>

#include <fstream>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq::analysis {

fs::path cache_path(const fs::path& cache_dir, const json& base) {
  json key = base;
  key.erase("calibration");
  Fnv f;
  f.add_string(key.dump());
  return cache_dir / (f.hex() + ".imatrix");
}

bool load_cached(const fs::path& path, const std::vector<Accum>& acc, const std::string& source, ImportanceResult& res,
                 std::vector<std::string>& warnings) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return false;
  Imatrix im;
  json side;
  try {
    im = Imatrix::load(path);
    std::ifstream in(fs::path(path).replace_extension(".json"));
    side = json::parse(in);
  } catch (const std::exception& e) {
    warnings.push_back(fmt::format("ignoring the unreadable cached result {}: {}", path.string(), e.what()));
    return false;
  }
  if (im.entries.size() != acc.size()) return false;
  for (const auto& a : acc) {
    const ImatrixEntry* e = im.find(a.name);
    if (!e || e->n_cols != a.n_cols) return false;
  }
  im.datasets = {source};
  res.imatrix = std::move(im);
  res.chunks = res.imatrix.chunk_count;
  res.mean_loss = side.value("mean_loss", 0.0);
  res.bf16_activations = side.value("bf16_activations", false);
  res.f16_activations = side.value("f16_activations", false);
  res.from_cache = true;
  return true;
}

void store_cached(const fs::path& path, const ImportanceResult& res, std::vector<std::string>& warnings) {
  try {
    fs::create_directories(path.parent_path());
    write_file_atomic(fs::path(path).replace_extension(".json"),
                      json{{"mean_loss", res.mean_loss},
                           {"bf16_activations", res.bf16_activations},
                           {"f16_activations", res.f16_activations}}
                              .dump() + "\n");
    res.imatrix.save_gguf(path);
  } catch (const std::exception& e) {
    warnings.push_back(fmt::format("could not write the cache {}: {}", path.string(), e.what()));
  }
}

}  // namespace lq::analysis
