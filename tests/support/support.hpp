// Test helpers: locating ../shared, hashing, random rows.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace lq::test {

/// The shared data directory ($LQ_SHARED_DIR, else ../shared beside the project), or nullopt.
std::optional<std::filesystem::path> shared_dir();
/// shared_dir()/rel if it exists; otherwise prints a SKIP reason (via Catch WARN) and returns nullopt.
std::optional<std::filesystem::path> shared_file(const std::string& rel);
/// tests/data/rel
std::filesystem::path data_file(const std::string& rel);
/// Path of the built lq CLI.
std::string cli_path();

/// SHA-256 of bytes as lowercase hex.
std::string sha256_hex(std::span<const uint8_t> bytes);

/// n floats from N(0, 1) with a fixed seed.
std::vector<float> gaussian(size_t n, uint32_t seed);

/// Runs a shell command; returns its exit status and captures stdout/stderr.
struct RunResult {
  int status = -1;
  std::string out;
  std::string err;
};
RunResult run(const std::string& command);

/// A fresh temporary directory removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& rel) const { return path_ / rel; }

 private:
  std::filesystem::path path_;
};

/// A random Llama GGUF of `layers` layers in `dir` (hidden size 256, so every type fits; F32
/// weights drawn with the layer count as seed): "synth-LAYERS.gguf".
std::filesystem::path synthetic_llama(const TempDir& dir, int layers);

}  // namespace lq::test
