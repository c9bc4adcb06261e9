// Test helpers: skipping a test that cannot run, locating ../shared, hashing, random rows.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace lq::test {

/// Exit status of the runner when every test it ran passed but at least one skipped (ctest's
/// SKIP_RETURN_CODE, set in tests/CMakeLists.txt). A run with failures never returns it.
inline constexpr int kSkipExitCode = 77;

/// Marks the running test case as skipped: prints "SKIPPED: <reason>" (a Catch warning) and makes
/// the runner exit with kSkipExitCode unless something failed. Catch2 2.x has no SKIP, so the
/// caller returns from the test case right after calling it.
void skip(const std::string& reason);
/// Number of skip() calls so far in this run.
int skip_count();
/// True when the environment says this is a CI run (CI=true or CI=1).
bool in_ci();

/// The shared data directory ($LQ_SHARED_DIR, else ../shared beside the project), or nullopt.
std::optional<std::filesystem::path> shared_dir();
/// Where shared_dir() looks: $LQ_SHARED_DIR if set, else ../shared beside the project.
std::filesystem::path shared_dir_searched();
/// shared_dir()/rel if it exists. Otherwise skips the test (skip()) and returns nullopt; in CI,
/// where ../shared is always present, fails the test instead, naming the path it looked for.
std::optional<std::filesystem::path> shared_file(const std::string& rel);
/// shared_dir()/rel if it exists, else nullopt, without skipping: for files that are optional.
std::optional<std::filesystem::path> find_shared_file(const std::string& rel);
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

}  // namespace lq::test
