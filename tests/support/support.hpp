// Test helpers: skipping a test that cannot run, locating ../shared, hashing, random rows.
#pragma once

#include <lq/quant_type.hpp>

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
/// n importance weights from U(0.05, 4) with a fixed seed.
std::vector<float> positive(size_t n, uint32_t seed);
/// n importance weights from a log-normal (0, 1.5): heavy-tailed, like real imatrix columns.
std::vector<float> uneven_importance(size_t n, uint32_t seed);
/// Nine rows of n values that stress searches and SIMD paths: Gaussian, heavy tails, all positive,
/// all negative, outliers, sparse, tiny (1e-6), large (1e3), few distinct values.
std::vector<std::vector<float>> varied_rows(int64_t n, uint32_t seed);

/// A named row of test values.
struct NamedRow {
  std::string name;
  std::vector<float> x;
};
/// Rows of n values (n >= 512) every quantizer must survive: zeros, constants of either sign,
/// subnormals, a single spike, alternating signs, a zero block beside a busy one.
std::vector<NamedRow> hostile_rows(int64_t n);

/// Quantizes x (rows of n values) with fn into rows of ti.row_bytes(n) bytes.
std::vector<uint8_t> quantize_rows(QuantizeFn fn, const TypeInfo& ti, const std::vector<float>& x, int64_t n,
                                   const float* imatrix);
/// Decodes rows of ti.row_bytes(n) bytes with fn, one call per row.
std::vector<float> dequantize_rows(DequantizeFn fn, const TypeInfo& ti, const std::vector<uint8_t>& q, int64_t n);
/// sqrt(sum (x - y)^2 / sum x^2) (the absolute RMS error when x is all zeros).
double rel_rmse(const std::vector<float>& x, const std::vector<float>& y);
/// Same size and the same bits (NaN payloads and the sign of zero included).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b);

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
