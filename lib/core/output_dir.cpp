// OutputDir (core/output_dir.hpp): the atomic writing of a model directory.
#include "core/output_dir.hpp"

#include "core/fail.hpp"
#include <lq/io.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

namespace fs = std::filesystem;

namespace lq {

OutputDir::OutputDir(const fs::path& dir, std::vector<std::string> replaceable, std::string what) {
  dir_ = dir.has_filename() ? dir : dir.parent_path();
  parent_ = dir_.parent_path().empty() ? fs::path(".") : dir_.parent_path();
  std::error_code ec;
  if (!fs::is_directory(parent_, ec))
    fail(Errc::output_error, "cannot write {}: directory {} does not exist", dir_.string(), parent_.string());
  if (!fs::exists(dir_, ec)) return;
  if (!fs::is_directory(dir_, ec)) fail(Errc::output_error, "cannot write {}: it exists and is not a directory", dir_.string());
  if (!fs::is_empty(dir_, ec)) {
    const fs::path cfgp = dir_ / "config.json";
    bool ours = false;
    if (fs::exists(cfgp, ec)) {
      const auto j = nlohmann::json::parse(read_file(cfgp), nullptr, false);
      if (!j.is_discarded() && j.contains("quantization_config") && j["quantization_config"].is_object()) {
        const std::string qm = j["quantization_config"].value("quant_method", "");
        ours = std::find(replaceable.begin(), replaceable.end(), qm) != replaceable.end();
      }
    }
    if (!ours)
      fail(Errc::output_error, "cannot write {}: the directory exists and is not an earlier {} (remove it or choose another -o)",
           dir_.string(), what);
  }
  replace_ = true;
}

OutputDir::~OutputDir() {
  if (!tmp_.empty()) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
  detail::unregister_tmp_dir(tmp_slot_);
}

const fs::path& OutputDir::make_tmp() {
  if (!tmp_.empty()) return tmp_;
  std::error_code ec;
  for (int attempt = 0; attempt < 8 && tmp_.empty(); ++attempt) {
    fs::path t = parent_ / fmt::format("{}.tmp-{:08x}", dir_.filename().string(), rd_());
    if (fs::create_directory(t, ec)) tmp_ = t;
  }
  if (tmp_.empty())
    fail(Errc::output_error, "cannot write {}: cannot create a temporary directory in {}", dir_.string(), parent_.string());
  tmp_slot_ = detail::register_tmp_dir(fs::absolute(tmp_, ec).string());
  return tmp_;
}

void OutputDir::publish() {
  std::error_code ec;
  fs::path old;
  if (replace_) {
    old = parent_ / fmt::format("{}.old-{:08x}", dir_.filename().string(), rd_());
    fs::rename(dir_, old, ec);
    if (ec) fail(Errc::output_error, "cannot replace {}: {}", dir_.string(), ec.message());
  }
  fs::rename(tmp_, dir_, ec);
  if (ec) {
    if (!old.empty()) fs::rename(old, dir_, ec);
    fail(Errc::output_error, "cannot write {}: {}", dir_.string(), ec.message());
  }
  detail::unregister_tmp_dir(tmp_slot_);
  tmp_slot_ = -1;
  tmp_.clear();
  if (!old.empty()) fs::remove_all(old, ec);
}

}  // namespace lq
