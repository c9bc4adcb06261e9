// lq: the command-line front end of liblq. One try/catch: every failure prints one line (or the
// contract's JSON error with --format json) and exits with the contract's code.
#include "cli.hpp"

#include <lq/lq.hpp>

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <iostream>
#include <new>

namespace lq::cli {

int run_quantize(Context& ctx, std::vector<std::string> args);
int run_info(Context& ctx, std::vector<std::string> args);
int run_profile(Context& ctx, std::vector<std::string> args);
int run_quality(Context& ctx, std::vector<std::string> args);
int run_perplexity(Context& ctx, std::vector<std::string> args);
int run_run(Context& ctx, std::vector<std::string> args);
int run_tokenize(Context& ctx, std::vector<std::string> args);
int run_analyze(Context& ctx, std::vector<std::string> args);
int run_convert(Context& ctx, std::vector<std::string> args);

const std::vector<Command>& commands() {
  static const std::vector<Command> kCommands = {
      {"quantize", "Quantize a model (Hugging Face directory or GGUF) into GGUF", run_quantize},
      {"info", "Describe a model directory, safetensors or GGUF file", run_info},
      {"profile", "Dynamic quantization profiles: list, show, create, validate", run_profile},
      {"quality", "Quality of quantized models: report, compare", run_quality},
      {"perplexity", "Perplexity of a model on a text (llama-perplexity's method), KL divergence", run_perplexity},
      {"run", "Generate text from a prompt", run_run},
      {"tokenize", "Token ids of a text", run_tokenize},
      {"analyze", "Importance analysis: importance matrix, super weights; analyze profile / quality", run_analyze},
      {"convert", "Convert between quantized formats: GPTQ / AWQ / compressed-tensors -> GGUF, GGUF -> GPTQ / compressed-tensors", run_convert},
  };
  return kCommands;
}

namespace {

void print_usage(const Context& ctx) {
  std::cout << fmt::format(
      "{} {}: turn Hugging Face LLM checkpoints into smaller, faster models with measured quality\n\n"
      "Usage: {} [--format human|json] [--threads N] [--backend auto|cpu|cuda] [--quiet] COMMAND [ARGS]\n\n"
      "Commands:\n",
      ctx.program, lq::version(), ctx.program);
  for (const auto& c : commands()) std::cout << fmt::format("  {:<12} {}\n", c.name, c.summary);
  std::cout << fmt::format("\nRun `{} COMMAND --help` for a command's options.\n", ctx.program);
}

std::string version_line(const Context& ctx) {
  const Backend& b = Registry::instance().active();
  std::string backends;
  for (const auto& be : Registry::instance().backends()) {
    if (!backends.empty()) backends += ", ";
    backends += std::string(be->name());
  }
  return fmt::format("{} {} (back-ends: {}; active: {})", ctx.program, lq::version(), backends, b.description());
}

int report(const Context& ctx, Errc code, const std::string& message, const std::string& suggestion) {
  const ErrcInfo& info = errc_info(code);
  if (ctx.format == Format::json) {
    nlohmann::json j = {{"status", "error"},
                        {"error_code", info.exit_code},
                        {"error_type", info.type_name},
                        {"message", message},
                        {"suggestion", suggestion.empty() ? std::string(info.suggestion) : suggestion}};
    print_json(j);
  }
  std::cerr << ctx.program << ": error: " << message << "\n";
  return info.exit_code;
}

}  // namespace

int main_impl(int argc, char** argv) {
  Context ctx;
  ctx.program = std::filesystem::path(argv[0]).filename().string();
  if (ctx.program.empty()) ctx.program = "lq";
  install_interrupt_handler();
  try {
    std::vector<std::string> globals, rest;
    int i = 1;
    for (; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--version" || a == "-V") {
        std::cout << version_line(ctx) << "\n";
        return 0;
      }
      if (a == "--help" || a == "-h") {
        print_usage(ctx);
        return 0;
      }
      if (a == "--quiet") { globals.push_back(a); continue; }
      if (a == "--format" || a == "--threads" || a == "--backend") {
        if (i + 1 >= argc) fail(Errc::invalid_argument, "option {} needs a value", a);
        globals.push_back(a);
        globals.push_back(argv[++i]);
        continue;
      }
      if (a.rfind("--format=", 0) == 0 || a.rfind("--threads=", 0) == 0 || a.rfind("--backend=", 0) == 0) {
        globals.push_back(a);
        continue;
      }
      if (!a.empty() && a[0] == '-') fail(Errc::invalid_argument, "unknown option '{}' (before the command)", a);
      break;
    }
    if (i >= argc) {
      print_usage(ctx);
      return exit_code(Errc::invalid_argument);
    }
    const std::string name = argv[i];
    const Command* cmd = nullptr;
    for (const auto& c : commands())
      if (name == c.name) cmd = &c;
    if (!cmd) fail(Errc::invalid_argument, "unknown command '{}' (run `{} --help`)", name, ctx.program);
    rest = globals;
    for (int k = i + 1; k < argc; ++k) rest.emplace_back(argv[k]);
    return cmd->run(ctx, std::move(rest));
  } catch (const Error& e) {
    return report(ctx, e.code(), e.what(), e.suggestion());
  } catch (const std::bad_alloc&) {
    return report(ctx, Errc::out_of_memory, "out of memory", "");
  } catch (const std::exception& e) {
    return report(ctx, Errc::general, e.what(), "");
  }
}

}  // namespace lq::cli

int main(int argc, char** argv) { return lq::cli::main_impl(argc, argv); }
