// lq info PATH | --levels | --types
#include "cli.hpp"

#include <lq/lq.hpp>

#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <map>

namespace fs = std::filesystem;

namespace lq::cli {
namespace {

nlohmann::json value_json(const gguf::Value& v) {
  using VT = gguf::ValueType;
  if (v.type() == VT::STRING) return v.as_string();
  if (!v.is_array()) {
    if (v.type() == VT::BOOL) return v.as_bool();
    if (v.type() == VT::FLOAT32 || v.type() == VT::FLOAT64) return v.as_float();
    if (v.type() == VT::UINT64) return v.as_uint();
    return v.as_int();
  }
  nlohmann::json a = nlohmann::json::array();
  for (size_t i = 0; i < v.size(); ++i) {
    if (v.elem_type() == VT::STRING) a.push_back(v.as_strings()[i]);
    else if (v.elem_type() == VT::FLOAT32 || v.elem_type() == VT::FLOAT64) a.push_back(v.float_at(i));
    else a.push_back(v.int_at(i));
  }
  return a;
}

int list_levels(const Context& ctx) {
  if (ctx.format == Format::json) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& l : all_file_types())
      a.push_back({{"name", l.name}, {"ftype", static_cast<int>(l.ftype)}, {"base_type", type_name(l.default_type)},
                   {"bpw", type_info(l.default_type).bpw()}, {"requires_imatrix", l.requires_imatrix},
                   {"description", l.description}});
    print_json({{"levels", a}});
    return 0;
  }
  for (const auto& l : all_file_types())
    std::cout << fmt::format("  {:<8} {:<7} {:6.3f} bpw  {}\n", l.name, type_name(l.default_type),
                             type_info(l.default_type).bpw(), l.description);
  std::cout << "  Aliases: TERNARY = TQ1_0, Q3_K = Q3_K_M, Q4_K = Q4_K_M, Q5_K = Q5_K_M\n";
  return 0;
}

int list_types(const Context& ctx) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& t : all_types()) {
    if (!t.storable) continue;
    const bool ok = t.quantize_ref && t.dequantize_ref;
    if (ctx.format == Format::json)
      a.push_back({{"name", t.name}, {"id", static_cast<int>(t.type)}, {"block_size", t.block_size},
                   {"block_bytes", t.block_bytes}, {"bpw", t.bpw()}, {"needs_imatrix", t.needs_imatrix},
                   {"supported", ok}});
    else
      std::cout << fmt::format("  {:<8} id {:>2}  block {:>3} x {:>3} B  {:7.4f} bpw{}{}\n", t.name, static_cast<int>(t.type),
                               t.block_size, t.block_bytes, t.bpw(), t.needs_imatrix ? "  (needs imatrix)" : "",
                               ok ? "" : "  (not available in this build)");
  }
  if (ctx.format == Format::json) print_json({{"types", a}});
  return 0;
}

}  // namespace

int run_info(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts = positional_command_options(ctx, "info", "PATH",
      {{"path", "Model directory, .safetensors or .gguf file, or Hub ID"}},
      "Describe a model: architecture, tensors per type, size, metadata.");
  opts.add_options()
      ("levels", "List the quantization levels")
      ("types", "List the tensor types")
      ("tensors", "List every tensor");
  auto parsed = parse(ctx, opts, args);
  if (!parsed) return 0;
  const auto& r = *parsed;
  if (r.count("levels")) return list_levels(ctx);
  if (r.count("types")) return list_types(ctx);
  if (!r.count("path")) fail(Errc::invalid_argument, "missing PATH (usage: {} info PATH)", ctx.program);
  const fs::path path = r["path"].as<std::string>();
  auto src = ModelSource::open(path);
  const ModelConfig& c = src->config();
  const gguf::Metadata meta = src->gguf_metadata();

  std::map<std::string, std::pair<int, uint64_t>> per_type;
  uint64_t n_weights = 0, bytes = 0;
  for (const auto& t : src->tensors()) {
    const uint64_t b = t.row_bytes() * static_cast<uint64_t>(t.n_rows());
    auto& e = per_type[type_name(t.type)];
    e.first += 1;
    e.second += b;
    bytes += b;
    n_weights += static_cast<uint64_t>(t.n_elements());
  }
  const double bpw = n_weights ? 8.0 * static_cast<double>(bytes) / static_cast<double>(n_weights) : 0;
  std::string level;
  if (auto ft = meta.get_int("general.file_type")) {
    for (const auto& l : all_file_types())
      if (static_cast<int64_t>(l.ftype) == *ft) level = l.name;
  }

  // GPTQ / AWQ / compressed-tensors: the scheme its linears are read (dequantized) from.
  const std::string third_party = third_party_quantization(*src);
  if (ctx.format == Format::json) {
    nlohmann::json types = nlohmann::json::object();
    for (const auto& [name, e] : per_type) types[name] = {{"tensors", e.first}, {"bytes", e.second}};
    nlohmann::json md = nlohmann::json::object();
    for (const auto& [k, v] : meta.entries()) md[k] = value_json(v);
    nlohmann::json j = {{"status", "success"},
                        {"path", path.string()},
                        {"format", src->is_gguf() ? "gguf" : "huggingface"},
                        {"architecture", c.architecture},
                        {"model_type", c.model_type},
                        {"name", c.name},
                        {"n_layer", c.n_layer},
                        {"n_embd", c.n_embd},
                        {"n_head", c.n_head},
                        {"n_head_kv", c.n_head_kv},
                        {"n_ff", c.n_ff},
                        {"n_vocab", c.n_vocab},
                        {"tensor_count", src->tensors().size()},
                        {"parameter_count", n_weights},
                        {"tensor_bytes", bytes},
                        {"file_bytes", src->source_bytes()},
                        {"bits_per_weight", bpw},
                        {"quantization_level", level.empty() ? nlohmann::json(nullptr) : nlohmann::json(level)},
                        {"source_quantization", third_party.empty() ? nlohmann::json(nullptr) : nlohmann::json(third_party)},
                        {"tensor_types", types},
                        {"metadata", md}};
    if (r.count("tensors")) {
      nlohmann::json ts = nlohmann::json::array();
      for (const auto& t : src->tensors()) ts.push_back({{"name", t.name}, {"type", type_name(t.type)}, {"shape", t.ne}});
      j["tensors"] = ts;
    }
    print_json(j);
    return 0;
  }
  std::cout << fmt::format("Path:          {} ({})\n", path.string(), src->is_gguf() ? "GGUF" : "Hugging Face");
  std::cout << fmt::format("Architecture:  {} (model_type {}), name \"{}\"\n", escape_text(c.architecture),
                           escape_text(c.model_type), escape_text(c.name));
  std::cout << fmt::format("Shape:         {} layers, hidden {}, heads {}/{} (head dim {}), ffn {}, vocab {}\n", c.n_layer,
                           c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, c.n_vocab);
  if (!level.empty()) std::cout << fmt::format("Level:         {}\n", level);
  if (!third_party.empty())
    std::cout << fmt::format("Quantization:  {} (linears read dequantized to F32)\n", third_party);
  std::cout << fmt::format("Tensors:       {} ({} parameters)\n", src->tensors().size(), n_weights);
  for (const auto& [name, e] : per_type)
    std::cout << fmt::format("  {:<8} {:>4} tensors  {:>10}\n", name, e.first, human_bytes(e.second));
  std::cout << fmt::format("Size:          {} of tensors, {:.3f} bits per weight; {} on disk\n", human_bytes(bytes), bpw,
                           human_bytes(src->source_bytes()));
  std::cout << fmt::format("Metadata:      {} keys\n", meta.size());
  for (const auto& [k, v] : meta.entries())
    std::cout << fmt::format("  {} = {}\n", escape_text(k), escape_text(v.to_string(4)));
  if (r.count("tensors"))
    for (const auto& t : src->tensors())
      std::cout << fmt::format("  {:<32} {:<8} [{}]\n", escape_text(t.name), type_name(t.type), fmt::join(t.ne, ", "));
  return 0;
}

}  // namespace lq::cli
