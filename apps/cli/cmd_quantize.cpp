// lq quantize MODEL OUTPUT_FORMAT -q LEVEL [options]
#include "cli.hpp"

#include <lq/lq.hpp>

#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <map>

#include <unistd.h>

namespace fs = std::filesystem;

namespace lq::cli {
namespace {

QuantType parse_type_option(const std::string& opt, const std::string& v) {
  auto t = parse_quant_type(v);
  if (!t || !type_info(*t).storable || !type_info(*t).quantize_ref)
    fail(Errc::invalid_argument, "{}: unknown or unsupported tensor type '{}'", opt, v);
  return *t;
}

std::string default_output(const fs::path& model, const std::string& level) {
  fs::path m = model;
  if (m.has_filename() == false) m = m.parent_path();
  std::string stem = m.filename().string();
  if (m.extension() == ".gguf") stem = m.stem().string();
  if (stem.empty() || stem == "." || stem == "..") stem = "model";
  return stem + "-" + level + ".gguf";
}

}  // namespace

int run_quantize(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts(ctx.program + " quantize", "Quantize a model into GGUF (llama.cpp's levels and mixtures).");
  opts.positional_help("MODEL OUTPUT_FORMAT");
  opts.add_options()
      ("model", "Model: Hugging Face directory, .safetensors, GGUF file or Hub ID", cxxopts::value<std::string>())
      ("output_format", "Output format: gguf", cxxopts::value<std::string>())
      ("q,quantization", "Level: Q4_K_M, Q8_0, IQ1_S, TERNARY, F16, ... (see `info --levels`)", cxxopts::value<std::string>())
      ("o,output", "Output file [default: ./MODEL-LEVEL.gguf]", cxxopts::value<std::string>())
      ("pure", "Every weight in the level's base type (no mixture)")
      ("imatrix", "Importance matrix (llama.cpp GGUF or .dat format)", cxxopts::value<std::string>())
      ("output-tensor-type", "Type for output.weight", cxxopts::value<std::string>())
      ("token-embedding-type", "Type for token_embd.weight", cxxopts::value<std::string>())
      ("leave-output-tensor", "Keep output.weight unquantized")
      ("tensor-type", "REGEX=TYPE: type for matching tensors (repeatable, first match wins)",
       cxxopts::value<std::vector<std::string>>())
      ("allow-requantize", "Allow re-quantizing tensors that are already quantized");
  add_global_options(opts);
  opts.parse_positional({"model", "output_format"});
  auto parsed = parse(ctx, opts, args);
  if (!parsed) return 0;
  const auto& r = *parsed;
  if (!r.count("model")) fail(Errc::invalid_argument, "missing MODEL (usage: {} quantize MODEL gguf -q LEVEL)", ctx.program);
  if (!r.count("output_format")) fail(Errc::invalid_argument, "missing OUTPUT_FORMAT (gguf)");
  const std::string format = r["output_format"].as<std::string>();
  if (format != "gguf") fail(Errc::invalid_argument, "unknown output format '{}' (supported: gguf)", format);
  if (!r.count("quantization")) fail(Errc::invalid_argument, "missing -q LEVEL");
  const std::string level_name = r["quantization"].as<std::string>();
  auto ftype = parse_file_type(level_name);
  if (!ftype) fail(Errc::invalid_argument, "unknown quantization level '{}' (run `{} info --levels`)", level_name, ctx.program);
  const FileTypeInfo& level = file_type_info(*ftype);

  QuantizeOptions qo;
  qo.ftype = *ftype;
  qo.threads = ctx.threads;
  qo.pure = r.count("pure") > 0;
  qo.leave_output_tensor = r.count("leave-output-tensor") > 0;
  qo.allow_requantize = r.count("allow-requantize") > 0;
  if (r.count("output-tensor-type"))
    qo.output_tensor_type = parse_type_option("--output-tensor-type", r["output-tensor-type"].as<std::string>());
  if (r.count("token-embedding-type"))
    qo.token_embedding_type = parse_type_option("--token-embedding-type", r["token-embedding-type"].as<std::string>());
  if (r.count("tensor-type")) {
    for (const auto& spec : r["tensor-type"].as<std::vector<std::string>>()) {
      const size_t eq = spec.rfind('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
        fail(Errc::invalid_argument, "--tensor-type: expected REGEX=TYPE, got '{}'", spec);
      qo.tensor_types.emplace_back(spec.substr(0, eq), parse_type_option("--tensor-type", spec.substr(eq + 1)));
    }
  }

  const fs::path model = r["model"].as<std::string>();
  const fs::path out = r.count("output") ? fs::path(r["output"].as<std::string>()) : fs::path(default_output(model, level.name));

  // Fail fast on an unusable output location, before any heavy work.
  {
    const fs::path dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
      fail(Errc::output_error, "cannot write {}: directory {} does not exist", out.string(), dir.string());
    if (::access(dir.c_str(), W_OK) != 0)
      fail(Errc::output_error, "cannot write {}: directory {} is not writable", out.string(), dir.string());
  }
  TermProgress progress(ctx);
  qo.progress = &progress;
  Imatrix imatrix;
  if (r.count("imatrix")) {
    const std::string ip = r["imatrix"].as<std::string>();
    progress.message(fmt::format("Loading importance matrix: {}", ip));
    imatrix = Imatrix::load(ip);
    qo.imatrix = &imatrix;
    qo.imatrix_path = ip;
  }
  progress.message(fmt::format("Loading model: {}", model.string()));
  auto src = ModelSource::open(model);
  progress.message(fmt::format("Quantizing to {} ({}){}", level.name, level.description, qo.pure ? ", pure" : ""));
  const QuantizeResult res = Quantizer(qo).quantize(*src, out);

  std::map<std::string, std::pair<int, uint64_t>> per_type;
  for (const auto& t : res.tensors) {
    auto& e = per_type[type_name(t.type)];
    e.first += 1;
    e.second += t.bytes;
  }
  const double ratio = res.source_bytes ? static_cast<double>(res.file_bytes) / static_cast<double>(res.source_bytes) : 0;
  if (res.n_fallback > 0)
    progress.message(fmt::format("{} tensor(s) fell back to another type (row length not a multiple of the block)",
                                 res.n_fallback));
  progress.message(fmt::format("Complete: {} ({}, {:.2f} bpw)", out.string(), human_bytes(res.file_bytes), res.bpw));

  if (ctx.format == Format::json) {
    nlohmann::json types = nlohmann::json::object();
    for (const auto& [name, e] : per_type) types[name] = {{"tensors", e.first}, {"bytes", e.second}};
    nlohmann::json tensors = nlohmann::json::array();
    for (const auto& t : res.tensors)
      tensors.push_back({{"name", t.name}, {"type", type_name(t.type)}, {"shape", t.ne}, {"bytes", t.bytes},
                         {"imatrix", t.uses_imatrix}, {"fallback", t.fallback}});
    print_json({{"status", "success"},
                {"output_path", fs::absolute(out).string()},
                {"model_path", model.string()},
                {"format", "gguf"},
                {"quantization_level", level.name},
                {"file_size", res.file_bytes},
                {"source_size", res.source_bytes},
                {"parameter_count", res.n_weights},
                {"effective_bpw", res.bpw},
                {"compression_ratio", ratio},
                {"imatrix", qo.imatrix ? nlohmann::json(qo.imatrix_path) : nlohmann::json(nullptr)},
                {"tensor_types", types},
                {"tensors", tensors},
                {"duration_seconds", res.seconds}});
  } else {
    std::cout << fmt::format("Output:      {}\n", out.string());
    std::cout << fmt::format("Level:       {}{}\n", level.name, qo.pure ? " (pure)" : "");
    std::cout << fmt::format("Size:        {} ({:.1f}% of {})\n", human_bytes(res.file_bytes), 100 * ratio,
                             human_bytes(res.source_bytes));
    std::cout << fmt::format("Weights:     {} ({:.3f} bits per weight)\n", res.n_weights, res.bpw);
    std::cout << "Tensor types:";
    for (const auto& [name, e] : per_type) std::cout << fmt::format(" {} x{}", name, e.first);
    std::cout << fmt::format("\nTime:        {:.2f} s\n", res.seconds);
  }
  return 0;
}

}  // namespace lq::cli
