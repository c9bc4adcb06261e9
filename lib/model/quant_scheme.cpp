// Third-party quantization configs (see quant_scheme.hpp): GPTQ (quantize_config.json or
// config.json), AWQ, compressed-tensors config groups, and the module -> scheme decision.
#include "model/quant_scheme.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"
#include "core/json_number.hpp"

#include <fmt/format.h>

#include <regex>
#include <set>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq {
namespace {

template <typename T>
T qs_get(const json& j, const char* key, T def) {
  if (j.contains(key) && !j[key].is_null()) return json_number<T>(j[key], std::string("quantization_config: ") + key);
  return def;
}

// Python's re.match: the pattern anchored at the start of the name.
bool qs_re_match(const std::string& pattern, const std::string& name) {
  try {
    return std::regex_search(name, std::regex("^(?:" + pattern + ")"));
  } catch (const std::regex_error&) {
    fail(Errc::invalid_model, "quantization_config: pattern '{}' is not a valid regular expression", pattern);
  }
}

bool qs_matches(const std::string& target, const std::string& mod) {
  if (target.rfind("re:", 0) == 0) return qs_re_match(target.substr(3), mod);
  if (target == "Linear") return true;  // every module asked about is a linear
  return target == mod;
}

void qs_check_bits(int bits, const std::set<int>& ok, const fs::path& file, const std::string& what) {
  if (!ok.count(bits))
    fail(Errc::invalid_model, "{}: {} bits {} are not supported (supported: {})", file.string(), what, bits,
         fmt::join(ok, ", "));
}

// The packing, the bits ("bits" or AutoAWQ's "w_bit", default 4, checked against `bits_ok`) and
// the group size ("group_size" or "q_group_size") of a GPTQ or AWQ config.
WeightScheme qs_packed_scheme(const json& q, Packing packing, const std::set<int>& bits_ok, int64_t default_group,
                              const fs::path& file, const std::string& what) {
  WeightScheme s;
  s.packing = packing;
  s.bits = q.contains("bits") ? qs_get<int>(q, "bits", 4) : qs_get<int>(q, "w_bit", 4);
  qs_check_bits(s.bits, bits_ok, file, what);
  s.group_size = q.contains("group_size") ? qs_get<int64_t>(q, "group_size", default_group)
                                          : qs_get<int64_t>(q, "q_group_size", default_group);
  return s;
}

QuantCheckpoint qs_read_gptq(const json& q, const fs::path& file) {
  QuantCheckpoint c;
  c.method = "gptq";
  WeightScheme s = qs_packed_scheme(q, Packing::gptq, {2, 3, 4, 8}, -1, file, "GPTQ");
  if (s.group_size == 0 || s.group_size < -1)
    fail(Errc::invalid_model, "{}: GPTQ group_size {} is not supported (-1 or a positive size)", file.string(), s.group_size);
  s.sym = qs_get<bool>(q, "sym", true);
  s.actorder = qs_get<bool>(q, "desc_act", false);
  c.format = qs_get<std::string>(q, "checkpoint_format", qs_get<std::string>(q, "format", "gptq"));
  if (c.format != "gptq" && c.format != "gptq_v2")
    fail(Errc::invalid_model, "{}: GPTQ checkpoint_format '{}' is not supported (supported: gptq, gptq_v2)", file.string(),
         c.format);
  s.v1_zeros = c.format == "gptq";
  if (const std::string pd = qs_get<std::string>(q, "pack_dtype", "int32"); pd != "int32")
    fail(Errc::invalid_model, "{}: GPTQ pack_dtype '{}' is not supported (int32 only)", file.string(), pd);
  c.lm_head = qs_get<bool>(q, "lm_head", false);
  if (q.contains("dynamic") && q["dynamic"].is_object())
    for (auto it = q["dynamic"].begin(); it != q["dynamic"].end(); ++it) c.dynamic.emplace_back(it.key(), it.value());
  c.groups.push_back({"gptq", {"Linear"}, s});
  return c;
}

QuantCheckpoint qs_read_awq(const json& q, const fs::path& file) {
  QuantCheckpoint c;
  c.method = "awq";
  WeightScheme s = qs_packed_scheme(q, Packing::awq_gemm, {4}, 128, file, "AWQ");
  if (s.group_size <= 0)
    fail(Errc::invalid_model, "{}: AWQ group_size {} is not supported (a positive size)", file.string(), s.group_size);
  s.sym = !qs_get<bool>(q, "zero_point", true);
  c.format = qs_get<std::string>(q, "version", "gemm");
  for (auto& ch : c.format) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (c.format != "gemm")
    fail(Errc::invalid_model, "{}: AWQ version '{}' is not supported (supported: gemm)", file.string(), c.format);
  if (q.contains("modules_to_not_convert") && q["modules_to_not_convert"].is_array())
    for (const auto& m : q["modules_to_not_convert"])
      if (m.is_string()) {  // AutoAWQ skips every module whose name contains the entry
        std::string esc;
        for (char ch : m.get<std::string>()) {
          if (std::string_view("\\^$.|?*+()[]{}").find(ch) != std::string_view::npos) esc += '\\';
          esc += ch;
        }
        c.ignore.push_back("re:.*" + esc);
      }
  c.groups.push_back({"awq", {"Linear"}, s});
  return c;
}

WeightScheme qs_read_ct_weights(const json& a, const std::string& format, const std::string& where, const fs::path& file) {
  auto bad = [&](const std::string& what) {
    fail(Errc::invalid_model, "{}: {} {} is not supported", file.string(), where, what);
  };
  WeightScheme s;
  const std::string type = qs_get<std::string>(a, "type", "int");
  s.bits = qs_get<int>(a, "num_bits", 8);
  s.sym = qs_get<bool>(a, "symmetric", true);
  s.strategy = qs_get<std::string>(a, "strategy", "tensor");
  s.group_size = qs_get<int64_t>(a, "group_size", -1);
  if (qs_get<bool>(a, "dynamic", false)) bad("with dynamic weights");
  const json ao = a.contains("actorder") ? a["actorder"] : json();
  s.actorder = ao.is_string() ? ao.get<std::string>() != "" : (ao.is_boolean() && ao.get<bool>());
  if (format == "float-quantized") {
    if (type != "float" || s.bits != 8) bad(fmt::format("with {} {}-bit weights (FP8 E4M3 expected)", type, s.bits));
    s.packing = Packing::ct_fp8;
    if (!s.sym) bad("with asymmetric FP8 weights");
  } else {
    if (type != "int") bad(fmt::format("with weights of type '{}' in format '{}'", type, format));
    if (format == "pack-quantized") {
      s.packing = Packing::ct_packed;
      if (s.bits < 2 || s.bits > 8) bad(fmt::format("with {} bits packed", s.bits));
    } else {
      s.packing = Packing::ct_int;
      if (s.bits < 2 || s.bits > 8) bad(fmt::format("with {} bits", s.bits));
    }
  }
  if (s.strategy == "group") {
    if (s.group_size <= 0) bad("with strategy group and no positive group_size");
  } else if (s.strategy == "block") {
    if (s.packing != Packing::ct_fp8) bad("with strategy block on int weights");
    const json& bs = a.contains("block_structure") ? a["block_structure"] : json();
    if (!bs.is_array() || bs.size() != 2 || !bs[0].is_number_integer() || !bs[1].is_number_integer() ||
        bs[0].get<int64_t>() <= 0 || bs[1].get<int64_t>() <= 0)
      bad("with strategy block and no [rows, cols] block_structure");
    // Blocks of at most 2^31 (as every dimension): the scale grid's size cannot overflow.
    if (bs[0].get<int64_t>() > (int64_t{1} << 31) || bs[1].get<int64_t>() > (int64_t{1} << 31))
      bad(fmt::format("with block_structure {}: blocks of more than 2^31 rows or columns", bs.dump()));
    s.block_rows = bs[0].get<int64_t>();
    s.block_cols = bs[1].get<int64_t>();
  } else if (s.strategy == "channel" || s.strategy == "tensor") {
    s.group_size = -1;
  } else {
    bad(fmt::format("with strategy '{}'", s.strategy));
  }
  if (s.packing == Packing::ct_fp8 && s.strategy == "group") bad("with FP8 group scales");
  return s;
}

QuantCheckpoint qs_read_ct(const json& q, const fs::path& file) {
  QuantCheckpoint c;
  c.method = "compressed-tensors";
  c.format = qs_get<std::string>(q, "format", "");
  if (c.format != "int-quantized" && c.format != "naive-quantized" && c.format != "pack-quantized" &&
      c.format != "float-quantized")
    fail(Errc::invalid_model, "{}: compressed-tensors format '{}' is not supported (supported: int-quantized, "
         "naive-quantized, pack-quantized, float-quantized)", file.string(), c.format);
  if (const std::string st = qs_get<std::string>(q, "quantization_status", "compressed"); st != "compressed")
    fail(Errc::invalid_model, "{}: quantization_status '{}' is not supported (compressed only)", file.string(), st);
  if (q.contains("sparsity_config") && !q["sparsity_config"].is_null() && !q["sparsity_config"].empty())
    fail(Errc::invalid_model, "{}: a sparsity_config is not supported", file.string());
  if (q.contains("kv_cache_scheme") && !q["kv_cache_scheme"].is_null())
    fail(Errc::invalid_model, "{}: a kv_cache_scheme is not supported", file.string());
  if (!q.contains("config_groups") || !q["config_groups"].is_object() || q["config_groups"].empty())
    fail(Errc::invalid_model, "{}: quantization_config has no config_groups", file.string());
  for (auto it = q["config_groups"].begin(); it != q["config_groups"].end(); ++it) {
    const json& g = it.value();
    const std::string where = fmt::format("config group '{}'", it.key());
    if (!g.is_object() || !g.contains("weights") || !g["weights"].is_object())
      fail(Errc::invalid_model, "{}: {} has no weights", file.string(), where);
    QuantCheckpoint::Group grp;
    grp.name = it.key();
    grp.scheme = qs_read_ct_weights(g["weights"], c.format, where + " weights", file);
    if (g.contains("targets") && g["targets"].is_array())
      for (const auto& t : g["targets"])
        if (t.is_string()) grp.targets.push_back(t.get<std::string>());
    if (grp.targets.empty()) fail(Errc::invalid_model, "{}: {} has no targets", file.string(), where);
    if (g.contains("input_activations") && g["input_activations"].is_object()) {
      const json& ia = g["input_activations"];
      grp.scheme.activations = fmt::format("{} {}-bit {} per {}", qs_get<std::string>(ia, "type", "int"),
                                           qs_get<int>(ia, "num_bits", 8),
                                           qs_get<bool>(ia, "dynamic", false) ? "dynamic" : "static",
                                           qs_get<std::string>(ia, "strategy", "tensor"));
    }
    if (g.contains("output_activations") && !g["output_activations"].is_null())
      fail(Errc::invalid_model, "{}: {} output_activations are not supported", file.string(), where);
    c.groups.push_back(std::move(grp));
  }
  if (q.contains("ignore") && q["ignore"].is_array())
    for (const auto& n : q["ignore"])
      if (n.is_string()) c.ignore.push_back(n.get<std::string>());
  return c;
}

}  // namespace

std::string WeightScheme::describe() const {
  std::string s;
  switch (packing) {
    case Packing::gptq: s = "GPTQ"; break;
    case Packing::awq_gemm: s = "AWQ GEMM"; break;
    case Packing::ct_packed: s = "packed int"; break;
    case Packing::ct_int: s = "int"; break;
    case Packing::ct_fp8: s = "FP8 E4M3"; break;
  }
  if (packing != Packing::ct_fp8) s += fmt::format(" {}-bit", bits);
  if (!strategy.empty() && strategy != "group") s += " per " + strategy;
  if (strategy == "block") s += fmt::format(" [{}, {}]", block_rows, block_cols);
  if (group_size > 0) s += fmt::format(" g{}", group_size);
  else if (strategy.empty()) s += " per channel";
  if (packing != Packing::ct_fp8) s += sym ? " sym" : " asym";
  if (actorder) s += " act-order";
  if (packing == Packing::gptq) s += v1_zeros ? " (v1 zeros)" : " (v2 zeros)";
  if (!activations.empty()) s += "; activations " + activations + " (run in float)";
  return s;
}

std::optional<WeightScheme> QuantCheckpoint::scheme_for(const std::string& mod) const {
  for (const auto& pat : ignore)
    if (qs_matches(pat, mod) && pat != "Linear") return std::nullopt;
  if ((method == "gptq" || method == "awq") && mod == "lm_head" && !lm_head) return std::nullopt;
  for (const auto& g : groups)
    for (const auto& t : g.targets)
      if (qs_matches(t, mod)) {
        WeightScheme s = g.scheme;
        for (const auto& [pat, ov] : dynamic) {
          if (pat.rfind("-:", 0) == 0) {
            if (qs_re_match(pat.substr(2), mod)) return std::nullopt;
            continue;
          }
          const std::string p = pat.rfind("+:", 0) == 0 ? pat.substr(2) : pat;
          if (!qs_re_match(p, mod) || !ov.is_object()) continue;
          s.bits = qs_get<int>(ov, "bits", s.bits);
          s.group_size = qs_get<int64_t>(ov, "group_size", s.group_size);
          s.sym = qs_get<bool>(ov, "sym", s.sym);
          s.actorder = qs_get<bool>(ov, "desc_act", s.actorder);
          if (s.bits != 2 && s.bits != 3 && s.bits != 4 && s.bits != 8)
            fail(Errc::invalid_model, "quantization_config: dynamic rule '{}' sets {} bits (supported: 2, 3, 4, 8)", pat,
                 s.bits);
          break;
        }
        return s;
      }
  return std::nullopt;
}

std::string QuantCheckpoint::describe() const {
  std::string s;
  for (const auto& g : groups) {
    if (!s.empty()) s += "; ";
    if (groups.size() > 1) s += g.name + ": ";
    s += g.scheme.describe();
  }
  if (method == "compressed-tensors") s = "compressed-tensors " + format + ", " + s;
  return s;
}

bool is_ct_int8_w8a8(const json& q) {
  if (!q.is_object() || q.value("quant_method", std::string()) != "compressed-tensors") return false;
  const std::string f = q.contains("format") && q["format"].is_string() ? q["format"].get<std::string>() : "";
  if (f != "int-quantized" && f != "naive-quantized") return false;
  if (!q.contains("config_groups") || !q["config_groups"].is_object() || q["config_groups"].empty()) return true;
  for (const auto& g : q["config_groups"])
    if (!g.is_object() || !g.contains("input_activations") || g["input_activations"].is_null()) return false;
  return true;
}

std::optional<QuantCheckpoint> read_quant_checkpoint(const json& q, const fs::path& file) {
  if (!q.is_object()) fail(Errc::invalid_model, "{}: quantization_config is not an object", file.string());
  std::string method;
  try {
    method = qs_get<std::string>(q, "quant_method", "");
    if (method == "compressed-tensors") {
      if (is_ct_int8_w8a8(q)) return std::nullopt;
      return qs_read_ct(q, file);
    }
    if (method == "gptq") return qs_read_gptq(q, file);
    if (method == "awq") return qs_read_awq(q, file);
  } catch (const json::exception& e) {
    fail(Errc::invalid_model, "{}: malformed quantization_config: {}", file.string(), e.what());
  }
  fail(Errc::invalid_model, "{}: quantization method '{}' is not supported (supported: gptq, awq, compressed-tensors)",
       file.string(), method.empty() ? "(none)" : method);
}

}  // namespace lq
