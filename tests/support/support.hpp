// Test helpers: skipping a test that cannot run, locating ../shared and its golden files, hashing,
// random rows, small random models, logits of a session, and checking errors and the CLI's failures.
#pragma once

#include <lq/awq.hpp>
#include <lq/context.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/gguf.hpp>
#include <lq/gptq.hpp>
#include <lq/gptq_gguf.hpp>
#include <lq/imatrix.hpp>
#include <lq/progress.hpp>
#include <lq/quant_type.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lq {
struct StTensor;
}

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
/// shared_file() of each path, or nullopt when any is absent (each absent one reported).
template <size_t N>
std::optional<std::array<std::filesystem::path, N>> shared_files(const std::array<std::string, N>& rel) {
  std::array<std::filesystem::path, N> out;
  bool all = true;
  for (size_t i = 0; i < N; ++i) {
    const auto f = shared_file(rel[i]);
    if (f) out[i] = *f;
    all = all && f.has_value();
  }
  if (!all) return std::nullopt;
  return out;
}
/// shared_dir()/rel if it exists, else nullopt, without skipping: for files that are optional.
std::optional<std::filesystem::path> find_shared_file(const std::string& rel);
/// tests/data/rel
std::filesystem::path data_file(const std::string& rel);
/// llama.cpp's records of the golden files (golden/manifest.json), or null when it is absent (as
/// with shared_file(), the test is then skipped).
nlohmann::json golden_manifest();

/// The tiny Llama checkpoint and llama.cpp's importance matrix of it, from ../shared.
struct TinyWithImatrix {
  std::filesystem::path model;         ///< models/tiny-llama
  std::filesystem::path imatrix_path;  ///< golden/imatrix.gguf
  Imatrix imatrix;                     ///< loaded from imatrix_path
};
/// Both, or nullopt when either is absent (as with shared_file(), the test is then skipped).
std::optional<TinyWithImatrix> tiny_with_imatrix();

/// The tiny Llama checkpoint and the calibration text, from ../shared.
struct TinyWithCalibration {
  std::filesystem::path dir;    ///< models/tiny-llama
  std::filesystem::path calib;  ///< corpus/calibration.txt
};
/// Both, or nullopt when either is absent (as with shared_file(), the test is then skipped).
std::optional<TinyWithCalibration> tiny_with_calibration();
/// Every regular file below `dir`: its path relative to dir -> its bytes.
std::map<std::string, std::string> files_below(const std::filesystem::path& dir);

/// The command that runs the built lq CLI, for a shell command line: its path, preceded by the
/// words of LQ_TEST_CLI_WRAPPER when that is set (an emulator such as qemu-user for a cross build;
/// scripts/check-aarch64.sh sets it).
std::string cli_path();
/// `lq ARGS...` started in the background with stderr on a pipe, so that a test can read its
/// progress lines and signal it at a chosen point (killed and reaped when destroyed).
class CliChild {
 public:
  explicit CliChild(const std::vector<std::string>& args);
  ~CliChild();
  CliChild(const CliChild&) = delete;
  CliChild& operator=(const CliChild&) = delete;
  /// Reads stderr until a progress line "`label` ... % D/N`unit`" with D >= `done`; false when
  /// stderr ends first.
  bool wait_for_progress(const char* label, const char* unit, int64_t done);
  /// Sends `sig`, reads the rest of stderr and waits: the wait status.
  int signal_and_wait(int sig);
  const std::string& text() const { return text_; }  ///< stderr read so far

 private:
  int pid_ = -1;
  std::FILE* err_ = nullptr;
  std::string text_;
};

/// Lines of a CLI's stderr that report an error (progress lines may precede the one error line).
int error_lines(const std::string& err);
/// A run of the lq CLI that must fail: the arguments after `lq`, the exit code, and a text the
/// error line holds.
struct CliFailure {
  std::string args;
  int code;
  std::string needle;
};
/// Runs `lq ARGS` and checks the exit code, that stderr holds exactly one error line, and the needle.
void check_cli_failure(const CliFailure& c);

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

/// A layer's calibration problem for GPTQ-style tests: n inputs x of d correlated columns with uneven
/// energy (x = z A diag(s), A = I + 0.3 N(0, 1), s = exp N(0, 1)), their H = 2/n XᵀX (d x d), and
/// weights W ~ 0.05 N(0, 1) of `rows` rows; all drawn from `seed`.
struct CalibProblem {
  int64_t n = 0, d = 0, rows = 0;
  std::vector<float> x, h, w;
};
CalibProblem calib_problem(int64_t n, int64_t d, int64_t rows, uint32_t seed);
/// ‖X Wᵀ − X Ŵᵀ‖² over the problem's inputs, for the weights q (rows x d) in place of W.
double calib_output_error(const CalibProblem& p, const std::vector<float>& q);

/// Quantizes x (rows of n values) with fn into rows of ti.row_bytes(n) bytes.
std::vector<uint8_t> quantize_rows(QuantizeFn fn, const TypeInfo& ti, const std::vector<float>& x, int64_t n,
                                   const float* imatrix);
/// Decodes rows of ti.row_bytes(n) bytes with fn, one call per row.
std::vector<float> dequantize_rows(DequantizeFn fn, const TypeInfo& ti, const std::vector<uint8_t>& q, int64_t n);
/// sqrt(sum (x - y)^2 / sum x^2) (the absolute RMS error when x is all zeros).
double rel_rmse(const std::vector<float>& x, const std::vector<float>& y);
/// Same size and the same bits (NaN payloads and the sign of zero included).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b);
/// max |a - b| / max |b| over values of two vectors of the same size (checked).
double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b);
/// The largest max_rel_diff() of a row against b's row, over rows of `row` values (a and b of the
/// same size, checked): e.g. logits compared position by position.
double worst_row_rel_diff(const std::vector<float>& a, const std::vector<float>& b, size_t row);
/// n bfloat16 values stored little-endian at `raw`, widened to float.
std::vector<float> bf16_values(const uint8_t* raw, size_t n);

/// Calls fn with each tensor of the *.safetensors files in `dir` and its stored bytes.
void for_each_safetensors_tensor(const std::filesystem::path& dir,
                                 const std::function<void(const StTensor&, std::vector<uint8_t>&)>& fn);

/// The logits of every output row of the session's last eval(), row after row.
std::vector<float> all_logits(const Session& s);
/// all_logits() of a fresh session on `m` (options `so`) after eval(prompt, first_output).
std::vector<float> logits_of(const Model& m, std::span<const int32_t> prompt, int64_t first_output = 0,
                             const SessionOptions& so = {});

/// GPTQ and AWQ on the tests' small models: `samples` chunks of `ctx` tokens of `calib`, the
/// compressed-tensors layout, the other settings the defaults.
GptqConfig small_gptq_config(const std::filesystem::path& calib, int samples = 3, int64_t ctx = 64);
AwqConfig small_awq_config(const std::filesystem::path& calib, int samples = 3, int64_t ctx = 64);
/// GptqGgufConfig for the small test models: `samples` chunks of `ctx` tokens of `calib`, no work
/// directory (the whole model in memory).
GptqGgufConfig small_gptq_gguf_config(const std::filesystem::path& calib, int samples = 3, int64_t ctx = 64);

/// The mean next-token cross-entropy (in double) of `logits`, one row per token of `tokens`: row t
/// predicts tokens[t + 1].
double mean_next_token_nll(const std::vector<float>& logits, std::span<const int32_t> tokens);
/// A mask over model.linears(): 1 for those named in `names`.
std::vector<char> linear_mask(const Model& model, const std::vector<std::string>& names);
/// Checks a backward pass's gradient `g` of the tensor `name` of `model` against finite
/// differences: the slope of `loss` (the model's loss, evaluated afresh) along g's direction,
/// by central differences with steps of 0.002, equals ‖g‖ within 1%. The tensor is restored.
void check_gradient_slope(Model& model, const std::string& name, const std::vector<float>& g,
                          const std::function<double()>& loss);

/// Runs `fn` and checks that it throws lq::Error with code `want` whose message holds `needle`;
/// `what` names the case when nothing is thrown. Returns the error thrown, if any.
std::optional<Error> check_error(Errc want, const std::function<void()>& fn, const std::string& needle = {},
                 const std::string& what = "the call succeeded");

/// Runs a shell command; returns its exit status and captures stdout/stderr.
struct RunResult {
  int status = -1;
  std::string out;
  std::string err;
};
RunResult run(const std::string& command);
/// `lq --format json quantize ARGS` run as by run(): its exit status must be 0 (REQUIREd, the
/// stderr shown otherwise); returns the result document's `field`.
nlohmann::json quantize_json_field(const std::string& args, const std::string& field);

/// True when `dir` holds no temporary (".tmp-") or set-aside (".old-") entry of an output write.
bool no_write_leftovers(const std::filesystem::path& dir);
/// Checks how `write(dir, ctx)`, a writer of a model directory, treats its destination (in a fresh
/// temporary directory): a cancelled write throws interrupted and leaves nothing; a directory that
/// is not an earlier output is refused and kept as it was; an earlier output is replaced (written
/// twice), leaving model.safetensors and no temporary entries.
void check_directory_writes(const std::function<void(const std::filesystem::path&, const Context&)>& write);

/// A run that cancels itself: ctx() is a copy of `base` whose cancel token trips at the first
/// progress update of `stage` (of any task when empty) with at least `after` units done.
class CancelAfter final : public Progress {
 public:
  explicit CancelAfter(int64_t after, std::string stage = {}, const Context& base = {})
      : after_(after), stage_(std::move(stage)), ctx_(base) {
    ctx_.cancel = &token_;
    ctx_.progress = this;
  }
  CancelAfter(const CancelAfter&) = delete;
  CancelAfter& operator=(const CancelAfter&) = delete;
  const Context& ctx() const { return ctx_; }
  void update(std::string_view task, int64_t done, int64_t, std::string_view) override {
    if ((stage_.empty() || task == stage_) && done >= after_) token_.cancel();
  }

 private:
  CancelToken token_;
  int64_t after_;
  std::string stage_;
  Context ctx_;
};

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

/// The shape of a small Llama-family model written by a test (llama, or qwen2 with q/k/v biases).
struct ToyShape {
  std::string arch = "llama";
  int64_t d = 64, ff = 128, heads = 4, kv = 2, layers = 2, vocab = 96;
  bool biases = false;  ///< attn_q/k/v biases
  bool tied = false;    ///< no output.weight: the token embedding serves as the output too
  uint32_t context_length = 256;  ///< the training context the GGUF records
};

/// A weight's name and GGUF dimensions (ne[0] is the row length).
struct TensorShape {
  std::string name;
  std::vector<int64_t> ne;
};

/// Writes a random F32 model of shape `s` as GGUF: the keys llama.cpp needs (architecture, sizes,
/// rope base 10000, RMS norm epsilon 1e-5, vocabulary size, BOS 1, EOS 2), then the weights in
/// llama.cpp's order (token_embd; per block attn_norm, attn_q/k/v and their biases, attn_output,
/// ffn_norm, ffn_gate/up/down; output_norm, output). Values are z ~ N(0, 1) drawn in file order
/// from `seed`: norm weights 1 + 0.1 z, other vectors 0.1 z, a matrix t matrix_sd(t) z. `edit`,
/// when given, may change a tensor's values before they are written.
void write_toy_gguf(const std::filesystem::path& path, const ToyShape& s, uint32_t seed,
                    const std::function<float(const TensorShape&)>& matrix_sd,
                    const std::function<void(const TensorShape&, std::vector<float>&)>& edit = {});

/// A random Llama GGUF of `layers` layers in `dir` (hidden size 256, so every type fits; F32
/// weights drawn with the layer count as seed): "synth-LAYERS.gguf".
std::filesystem::path synthetic_llama(const TempDir& dir, int layers);

}  // namespace lq::test
