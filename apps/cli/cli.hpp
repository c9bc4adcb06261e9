// The lq command-line tool: shared pieces of the commands (options, output, progress).
#pragma once

#include <lq/context.hpp>
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/profile.hpp>
#include <lq/progress.hpp>
#include <lq/quantizer.hpp>
#include <lq/sensitivity.hpp>
#include <lq/smoothquant.hpp>

#include <cxxopts.hpp>
#include <functional>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lq::cli {

/// Throws lq::Error with `code` and a formatted message (the CLI's usage errors and checks).
template <typename... Args>
[[noreturn]] void fail(Errc code, fmt::format_string<Args...> f, Args&&... args) {
  throw_error(code, fmt::format(f, std::forward<Args>(args)...));
}

enum class Format { human, json, csv };

/// Settings every command shares (global options).
struct Context {
  std::string program = "lq";  ///< name used in progress lines ("[lq] ...")
  Format format = Format::human;
  int threads = 0;
  bool quiet = false;
};

/// A command: name, one-line summary, and its entry point taking the arguments after its name.
struct Command {
  const char* name;
  const char* summary;
  int (*run)(Context& ctx, std::vector<std::string> args);
};

/// The registered commands (defined in main.cpp).
const std::vector<Command>& commands();

/// The parser of `PROGRAM COMMAND` ("lq analyze profile"): `usage` follows the command's name in
/// its --help ("MODEL", "ORIGINAL QUANTIZED..."), and the options named in `positional` (the
/// command adds them) take the positional arguments, in order.
cxxopts::Options command_options(const Context& ctx, const std::string& command, const std::string& usage,
                                 std::vector<std::string> positional, const std::string& summary);
/// A positional argument of a command: the string option it is parsed into and its help.
struct PositionalArg {
  std::string name;
  std::string help;
};
/// The help of a MODEL argument that any model path or Hub ID fills.
inline constexpr const char* kModelArgHelp = "Model: Hugging Face directory, GGUF file or Hub ID";
/// command_options() that also adds the positional arguments, each a string option with its help
/// (the first options the command's --help lists).
cxxopts::Options positional_command_options(const Context& ctx, const std::string& command, const std::string& usage,
                                            const std::vector<PositionalArg>& positional, const std::string& summary);
/// Adds the global options (--format, --threads, --backend, --quiet; --format csv is advertised
/// only with `allow_csv`) to `opts`, parses `args` with it and applies the global options to
/// `ctx`. cxxopts errors throw Errc::invalid_argument. Returns the parse result; prints help and
/// returns nullopt for --help.
std::optional<cxxopts::ParseResult> parse(Context& ctx, cxxopts::Options& opts, std::vector<std::string>& args,
                                          bool allow_csv = false);

/// The subcommand of a command group (`profile list`, `quality report`): takes it off the front of
/// `args`. When `args` is empty or starts with --help, prints `usage` on stdout instead and returns
/// nullopt, leaving `args` as it was.
std::optional<std::string> take_subcommand(std::vector<std::string>& args, const std::string& usage);

/// Fails with Errc::output_error unless the directory `out` is to be written in exists and, with
/// `writable`, may be written to: a command checks this before its heavy work.
void check_output_dir(const std::filesystem::path& out, bool writable);

/// The model directory a run writes: -o when given, else `fallback`; checked with
/// check_output_dir() (the directory it is made in) before the heavy work.
std::filesystem::path output_model_dir(const cxxopts::ParseResult& r, const std::filesystem::path& fallback);

/// The library context of a command: its --threads, its progress sink, the process's cancel
/// token (Ctrl-C).
lq::Context library_context(const Context& ctx, Progress& progress);

/// --checkpoint-dir / --resume / --no-checkpoints of the block-streamed outputs (gptq, rtn, awq):
/// `state(dir, resume)` gives the run's state directory (gptq_checkpoint_state, awq_checkpoint_state);
/// without an option, ./.checkpoint for models of 1 GB or more. Sets dir and resume.
void block_checkpoint_options(const cxxopts::ParseResult& r, const std::filesystem::path& model, Progress& progress,
                              const std::function<std::filesystem::path(const std::filesystem::path&, bool)>& state,
                              std::filesystem::path& dir, bool& resume);
/// Rethrows e; an interruption that left a checkpoint in dir names it and how to resume.
[[noreturn]] void rethrow_naming_checkpoint(const Error& e, const std::filesystem::path& dir);

/// Prints a JSON document on stdout (pretty, one trailing newline).
void print_json(const nlohmann::json& j);

/// The JSON fields every calibrated quantization reports (of a SmoothQuantResult or GptqResult):
/// the calibration's size, the output's and source's sizes and their ratio, bits per weight,
/// parameter counts, warnings and timings.
template <class Result>
nlohmann::json calibrated_result_json(const Result& r) {
  const double ratio = r.source_bytes ? static_cast<double>(r.output_bytes) / static_cast<double>(r.source_bytes) : 0;
  return {{"calibration_samples", r.chunks},
          {"ctx", r.ctx},
          {"calibration_tokens", r.tokens},
          {"file_size", r.output_bytes},
          {"source_size", r.source_bytes},
          {"parameter_count", r.n_parameters},
          {"quantized_parameter_count", r.n_quantized},
          {"effective_bpw", r.bpw},
          {"compression_ratio", ratio},
          {"warnings", r.warnings},
          {"calibration_seconds", r.calibration_seconds},
          {"duration_seconds", r.seconds}};
}

/// Tensors and bytes of each type of a written GGUF: type name -> {tensors, bytes}.
using TypeTally = std::map<std::string, std::pair<int, uint64_t>>;
TypeTally tensor_type_tally(const QuantizeResult& res);
/// The `tensor_types` ({tensors, bytes} per type) and `tensors` (one row a tensor) of a GGUF
/// result's JSON.
nlohmann::json tensor_types_json(const TypeTally& tally);
nlohmann::json tensor_rows_json(const QuantizeResult& res);

/// The JSON rows of SmoothQuant's smoothing groups (`layer_summary` of `quantize smoothquant`);
/// the relative errors are null unless alpha was searched (`alpha_auto`).
nlohmann::json smoothing_groups_json(const std::vector<SmoothQuantGroup>& groups, bool alpha_auto);

/// "1.2 GB" style sizes: the library's (lq/io.hpp).
using lq::human_bytes;

/// A size option's value: a number with an optional unit, B, KB/MB/GB/TB (powers of 1000) or
/// KiB/MiB/GiB/TiB (powers of 1024), case-insensitive ("3GB", "2.5 MiB", "750000B"). bytes is the
/// value times its unit; without a unit has_unit is false and the caller decides what the bare
/// number means (value). Anything else throws Errc::invalid_argument naming --flag and the examples.
struct ByteSize {
  double value = 0;
  bool has_unit = false;
  uint64_t bytes = 0;
};
ByteSize parse_byte_size(const std::string& s, std::string_view flag, std::string_view examples);

/// The value of a --kv-cache option: true for "f16", false for "f32"; anything else throws
/// Errc::invalid_argument.
bool parse_kv_cache_f16(const std::string& value);

/// `quantize MODEL gptq|rtn`: adds its options to the quantize command, and runs it
/// (cmd_quantize_gptq.cpp).
void add_gptq_options(cxxopts::Options& opts);
int run_gptq(Context& ctx, const cxxopts::ParseResult& r, const std::string& format);
/// --expert-hessian-memory in bytes (GptqConfig::expert_hessian_bytes), `fallback` when not given.
int64_t expert_hessian_memory(const cxxopts::ParseResult& r, int64_t fallback);
/// The SmoothQuant options (--alpha, --activation-percentile, --static-activations,
/// --per-tensor-weights, the calibration options) as a validated SmoothQuantConfig.
SmoothQuantConfig smoothquant_options(const cxxopts::ParseResult& r);
/// `quantize MODEL awq` (cmd_quantize_awq.cpp): uses the GPTQ options layout, bits, group-size.
int run_awq(Context& ctx, const cxxopts::ParseResult& r);
/// `convert SRC.gguf gptq|compressed-tensors`, with the options `convert` parsed
/// (cmd_convert_gptq.cpp).
int run_convert_to_gptq(Context& ctx, const cxxopts::ParseResult& r);

/// `--objective kld` and the sensitivity measurement's options, shared by `quantize -q dynamic`
/// and `profile create` (sensitivity_options.cpp).
void add_sensitivity_options(cxxopts::Options& opts);
/// Names of those options (to refuse them outside a dynamic run).
const std::vector<std::string>& sensitivity_option_names();
/// The measured sensitivity table for the kld objective (loaded from its cache when it matches,
/// else measured and cached): asked for with --objective kld, and the default when `solves` (the
/// size solver will run: a size target and an imatrix); nullopt for --objective error and where
/// nothing is solved. --objective kld needs the imatrix.
/// With it, `measure_mixes` measures candidate mixes whole on the table's text (ResolveOptions::
/// measure_mixes); it refers to `src` and `run_ctx`, which must outlive it.
struct KldObjective {
  SensitivityTable table;
  MixMeasure measure_mixes;
};
std::optional<KldObjective> sensitivity_from_options(const cxxopts::ParseResult& r, const ModelSource& src,
                                                     const Imatrix* imatrix, const std::string& imatrix_path,
                                                     bool solves, const lq::Context& run_ctx, Progress& progress);

/// Progress on stderr: "[lq] message" lines, and a bar on a terminal ("Quantizing ━━━ 40% 23/57
/// tensors [00:12 elapsed]") or plain lines at 10% steps otherwise. Silent with --quiet.
class TermProgress final : public Progress {
 public:
  explicit TermProgress(const Context& ctx);
  void message(std::string_view text) override;
  void update(std::string_view task, int64_t done, int64_t total, std::string_view unit) override;
  void finish(std::string_view task) override;

 private:
  const Context& ctx_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  std::string task_;
  int last_decile_ = -1;
  bool bar_open_ = false;
};

}  // namespace lq::cli
