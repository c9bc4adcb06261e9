// ModelSource::open and the ModelTensor helpers: telling a GGUF file from a Hugging Face
// directory or a Hub ID (resolved in the local Hugging Face cache) and opening the right source.
// Must not read tensors itself (gguf_source.cpp, hf_source.cpp).
#include <lq/error.hpp>
#include "core/fail.hpp"
#include "core/shape.hpp"
#include <lq/model.hpp>
#include <lq/settings.hpp>

#include "model/sources.hpp"

#include <cstdlib>
#include <fstream>

namespace fs = std::filesystem;

namespace lq {

int64_t ModelTensor::n_elements() const { return element_count(ne); }

int64_t ModelTensor::n_rows() const { return row_count(ne); }

size_t ModelTensor::row_bytes() const { return type_info(type).row_bytes(row_length()); }

const ModelTensor* ModelSource::find(const std::string& gguf_name) const {
  for (const auto& t : tensors())
    if (t.name == gguf_name) return &t;
  return nullptr;
}

const ModelTensor& ModelSource::at(const std::string& gguf_name) const {
  const ModelTensor* t = find(gguf_name);
  if (!t) fail(Errc::invalid_model, "{}: tensor '{}' is missing", path().string(), gguf_name);
  return *t;
}

namespace {

bool is_gguf_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::string(magic, 4) == "GGUF";
}

// Resolves a Hub ID (org/name) against the local Hugging Face cache: the snapshot that
// refs/main points to, else the only snapshot.
std::optional<fs::path> resolve_hub_id(const std::string& id) {
  if (id.find('/') == std::string::npos || id.front() == '/' || id.front() == '.') return std::nullopt;
  const auto hub = hf_hub_cache_dir();
  if (!hub) return std::nullopt;
  const fs::path cache = *hub;
  std::string folder = "models--";
  for (char ch : id) {
    if (ch == '/') folder += "--";
    else folder += ch;
  }
  const fs::path repo = cache / folder;
  std::error_code ec;
  if (!fs::is_directory(repo / "snapshots", ec)) return std::nullopt;
  std::ifstream ref(repo / "refs" / "main");
  std::string rev;
  if (ref && std::getline(ref, rev) && fs::is_directory(repo / "snapshots" / rev, ec)) return repo / "snapshots" / rev;
  std::optional<fs::path> only;
  for (const auto& e : fs::directory_iterator(repo / "snapshots", ec)) {
    if (only) return std::nullopt;
    only = e.path();
  }
  return only;
}

}  // namespace

std::unique_ptr<ModelSource> ModelSource::open(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    if (auto snap = resolve_hub_id(path.string())) return open_hf_source(*snap);
    fail(Errc::not_found, "model not found: {} (no such file or directory, and not a Hub ID in the local cache)",
         path.string());
  }
  if (fs::is_regular_file(path, ec) && is_gguf_file(path)) return open_gguf_source(path);
  return open_hf_source(path);
}

}  // namespace lq
