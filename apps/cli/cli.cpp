#include "cli.hpp"

#include <lq/backend.hpp>
#include <lq/quant_type.hpp>

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <regex>
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

namespace lq::cli {

namespace {

void add_global_options(cxxopts::Options& opts, bool allow_csv) {
  opts.add_options("Global")
      ("format", allow_csv ? "Output format: human, json, csv" : "Output format: human, json",
       cxxopts::value<std::string>())
      ("threads", "Worker threads (0 = all cores)", cxxopts::value<int>())
      ("backend", "Compute back-end: auto, cpu, cuda", cxxopts::value<std::string>())
      ("quiet", "No progress output on stderr")
      ("h,help", "Show this help");
}

}  // namespace

cxxopts::Options command_options(const Context& ctx, const std::string& command, const std::string& usage,
                                 std::vector<std::string> positional, const std::string& summary) {
  cxxopts::Options opts(ctx.program + " " + command, summary);
  opts.positional_help(usage);
  opts.parse_positional(std::move(positional));
  return opts;
}

cxxopts::Options positional_command_options(const Context& ctx, const std::string& command, const std::string& usage,
                                            const std::vector<PositionalArg>& positional, const std::string& summary) {
  std::vector<std::string> names;
  for (const auto& p : positional) names.push_back(p.name);
  cxxopts::Options opts = command_options(ctx, command, usage, std::move(names), summary);
  for (const auto& p : positional) opts.add_options()(p.name, p.help, cxxopts::value<std::string>());
  return opts;
}

std::optional<cxxopts::ParseResult> parse(Context& ctx, cxxopts::Options& opts, std::vector<std::string>& args,
                                          bool allow_csv) {
  add_global_options(opts, allow_csv);
  std::vector<char*> argv;
  std::string prog = ctx.program;
  argv.push_back(prog.data());
  for (auto& a : args) argv.push_back(a.data());
  cxxopts::ParseResult r;
  try {
    r = opts.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const cxxopts::exceptions::exception& e) {
    throw Error(Errc::invalid_argument, e.what(), fmt::format("Run `{} --help`", opts.program()));
  }
  if (r.count("help")) {  // every group of the command's options, the global ones last
    std::vector<std::string> groups = {""};
    for (const std::string& g : opts.groups())
      if (!g.empty() && g != "Global") groups.push_back(g);
    groups.push_back("Global");
    std::cout << opts.help(groups) << std::flush;
    return std::nullopt;
  }
  if (r.count("format")) {
    const std::string f = r["format"].as<std::string>();
    if (f == "human") ctx.format = Format::human;
    else if (f == "json") ctx.format = Format::json;
    else if (f == "csv") ctx.format = Format::csv;
    else fail(Errc::invalid_argument, "--format: unknown format '{}' (human, json{})", f, "");
  }
  if (r.count("threads")) {
    ctx.threads = r["threads"].as<int>();
    if (ctx.threads < 0) fail(Errc::invalid_argument, "--threads must be >= 0, got {}", ctx.threads);
  }
  if (r.count("backend")) Registry::instance().select(r["backend"].as<std::string>());
  if (r.count("quiet")) ctx.quiet = true;
  return r;
}

std::optional<std::string> take_subcommand(std::vector<std::string>& args, const std::string& usage) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << usage;
    return std::nullopt;
  }
  std::string sub = args[0];
  args.erase(args.begin());
  return sub;
}

void check_output_dir(const std::filesystem::path& out, bool writable) {
  const std::filesystem::path dir = out.parent_path().empty() ? std::filesystem::path(".") : out.parent_path();
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    fail(Errc::output_error, "cannot write {}: directory {} does not exist", out.string(), dir.string());
  if (writable && ::access(dir.c_str(), W_OK) != 0)
    fail(Errc::output_error, "cannot write {}: directory {} is not writable", out.string(), dir.string());
}

std::filesystem::path output_model_dir(const cxxopts::ParseResult& r, const std::filesystem::path& fallback) {
  const std::filesystem::path out = r.count("output") ? std::filesystem::path(r["output"].as<std::string>()) : fallback;
  check_output_dir(out.has_filename() ? out : out.parent_path(), /*writable=*/true);
  return out;
}

TypeTally tensor_type_tally(const QuantizeResult& res) {
  TypeTally tally;
  for (const auto& t : res.tensors) {
    auto& e = tally[type_name(t.type)];
    e.first += 1;
    e.second += t.bytes;
  }
  return tally;
}

nlohmann::json tensor_types_json(const TypeTally& tally) {
  nlohmann::json types = nlohmann::json::object();
  for (const auto& [name, e] : tally) types[name] = {{"tensors", e.first}, {"bytes", e.second}};
  return types;
}

nlohmann::json tensor_rows_json(const QuantizeResult& res) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : res.tensors)
    tensors.push_back({{"name", t.name}, {"type", type_name(t.type)}, {"shape", t.ne}, {"bytes", t.bytes},
                       {"imatrix", t.uses_imatrix}, {"fallback", t.fallback}});
  return tensors;
}

lq::Context library_context(const Context& ctx, Progress& progress) {
  lq::Context run_ctx;
  run_ctx.threads = ctx.threads;
  run_ctx.progress = &progress;
  return run_ctx;
}

void print_json(const nlohmann::json& j) {
  std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n" << std::flush;
}

ByteSize parse_byte_size(const std::string& s, std::string_view flag, std::string_view examples) {
  static const std::regex re(R"(^\s*([0-9]*\.?[0-9]+)\s*([KkMmGgTt]?[Bb]?|[KkMmGgTt]i[Bb])?\s*$)");
  std::smatch m;
  if (!std::regex_match(s, m, re)) fail(Errc::invalid_argument, "--{}: cannot read '{}' (e.g. {})", flag, s, examples);
  ByteSize b;
  b.value = std::stod(m[1]);
  std::string unit = m[2];
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.empty()) return b;
  b.has_unit = true;
  const bool binary = unit.find('I') != std::string::npos;
  const int power = std::string_view("BKMGT").find(unit[0]);  // B (or none): 0, K: 1, ..., T: 4
  b.bytes = static_cast<uint64_t>(b.value * std::pow(binary ? 1024.0 : 1000.0, power));
  return b;
}

bool parse_kv_cache_f16(const std::string& value) {
  if (value != "f16" && value != "f32") fail(Errc::invalid_argument, "--kv-cache: unknown type '{}' (f16, f32)", value);
  return value == "f16";
}

TermProgress::TermProgress(const Context& ctx)
    : ctx_(ctx), tty_(::isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()) {}

void TermProgress::message(std::string_view text) {
  if (ctx_.quiet) return;
  if (bar_open_) {
    std::fputs("\n", stderr);
    bar_open_ = false;
  }
  const std::string safe = escape_text(text);  // status lines quote names read from files
  std::fprintf(stderr, "[%s] %s\n", ctx_.program.c_str(), safe.c_str());
  std::fflush(stderr);
}

void TermProgress::update(std::string_view task, int64_t done, int64_t total, std::string_view unit) {
  if (ctx_.quiet || total <= 0) return;
  if (task_ != task) {
    task_ = std::string(task);
    start_ = std::chrono::steady_clock::now();
    last_decile_ = -1;
  }
  const double frac = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
  const auto secs = static_cast<int64_t>(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  const std::string elapsed = fmt::format("{:02}:{:02}", secs / 60, secs % 60);
  if (tty_) {
    constexpr int kWidth = 20;
    const int filled = static_cast<int>(frac * kWidth + 0.5);
    std::string bar;
    for (int i = 0; i < kWidth; ++i) bar += i < filled ? "\u2501" : "\u2500";
    std::fprintf(stderr, "\r%.*s %s %3d%% %lld/%lld %.*s [%s elapsed]", static_cast<int>(task.size()), task.data(),
                 bar.c_str(), static_cast<int>(frac * 100), static_cast<long long>(done), static_cast<long long>(total),
                 static_cast<int>(unit.size()), unit.data(), elapsed.c_str());
    bar_open_ = true;
  } else {
    const int decile = static_cast<int>(frac * 10);
    if (decile == last_decile_) return;
    last_decile_ = decile;
    std::fprintf(stderr, "%.*s %3d%% %lld/%lld %.*s [%s elapsed]\n", static_cast<int>(task.size()), task.data(),
                 static_cast<int>(frac * 100), static_cast<long long>(done), static_cast<long long>(total),
                 static_cast<int>(unit.size()), unit.data(), elapsed.c_str());
  }
  std::fflush(stderr);
}

void TermProgress::finish(std::string_view) {
  if (bar_open_) {
    std::fputs("\n", stderr);
    bar_open_ = false;
  }
  task_.clear();
}

}  // namespace lq::cli
