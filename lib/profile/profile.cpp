// Dynamic quantization profiles: rules, presets, .dqprofile files, and the size solver.
#include <lq/backend.hpp>
#include <lq/error.hpp>
#include <lq/settings.hpp>
#include <lq/file_type.hpp>
#include <lq/gguf.hpp>
#include <lq/io.hpp>
#include <lq/profile.hpp>
#include <lq/quantizer.hpp>
#include <lq/threads.hpp>

#include "quantize/mixture.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <regex>
#include <set>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq {
namespace {

// ---- pattern matching ------------------------------------------------------------------------

int layer_of(const std::string& gguf_name) {
  if (gguf_name.rfind("blk.", 0) != 0) return -1;
  const size_t dot = gguf_name.find('.', 4);
  try {
    return std::stoi(gguf_name.substr(4, dot - 4));
  } catch (const std::exception&) {
    return -1;
  }
}

struct Range {
  bool any = true;
  int lo = 0, hi = 0;
};

// "A-B" (absolute) or "A%-B%" (relative depth) -> inclusive layer range for n_layer layers.
std::optional<Range> parse_range(const std::string& s, int n_layer) {
  static const std::regex abs_re(R"(^(\d+)-(\d+)$)"), one_re(R"(^(\d+)$)"), rel_re(R"(^(\d+(?:\.\d+)?)%-(\d+(?:\.\d+)?)%$)");
  std::smatch m;
  Range r;
  r.any = false;
  if (std::regex_match(s, m, abs_re)) {
    r.lo = std::stoi(m[1]);
    r.hi = std::stoi(m[2]);
    return r;
  }
  if (std::regex_match(s, m, one_re)) {
    r.lo = r.hi = std::stoi(m[1]);
    return r;
  }
  if (std::regex_match(s, m, rel_re)) {
    // Layer i sits at relative depth i / (n_layer - 1); [a%, b%) selects the layers whose index
    // falls in [a * n / 100, b * n / 100), with 100% inclusive of the last layer.
    const double a = std::stod(m[1]), b = std::stod(m[2]);
    r.lo = static_cast<int>(std::floor(a * n_layer / 100.0 + 1e-9));
    r.hi = b >= 100.0 ? n_layer - 1 : static_cast<int>(std::ceil(b * n_layer / 100.0 - 1e-9)) - 1;
    return r;
  }
  return std::nullopt;
}

class Matcher {
 public:
  Matcher(const ProfileRule& rule, int n_layer, const std::string& source) {
    // Segment-wise translation of the glob into a regex; a numeric-range segment becomes a
    // capture checked against the range.
    std::string re = "^";
    size_t start = 0;
    const std::string& p = rule.pattern;
    if (p.empty()) fail(Errc::profile_error, "{}: a rule has an empty pattern", source);
    while (start <= p.size()) {
      size_t dot = p.find('.', start);
      if (dot == std::string::npos) dot = p.size();
      const std::string seg = p.substr(start, dot - start);
      if (auto r = parse_range(seg, n_layer); r && seg.find_first_not_of("0123456789") != std::string::npos) {
        re += "(\\d+)";
        ranges_.push_back(*r);
      } else {
        for (char c : seg) {
          if (c == '*') re += ".*";
          else if (c == '?') re += ".";
          else if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') re += c;
          else {
            re += '\\';
            re += c;
          }
        }
      }
      if (dot < p.size()) re += "\\.";
      start = dot + 1;
    }
    re += "$";
    try {
      re_ = std::regex(re);
    } catch (const std::regex_error& e) {
      fail(Errc::profile_error, "{}: pattern '{}' is invalid: {}", source, p, e.what());
    }
    if (!rule.layers.empty()) {
      auto r = parse_range(rule.layers, n_layer);
      if (!r) fail(Errc::profile_error, "{}: rule '{}': layers '{}' is not a range like 0-3 or 0%-10%", source, p, rule.layers);
      layers_ = *r;
    }
  }

  bool matches(const ModelTensor& t) const {
    const int layer = layer_of(t.name);
    if (!layers_.any && (layer < layers_.lo || layer > layers_.hi)) return false;
    for (const std::string* name : {&t.name, &t.source_name}) {
      for (int strip = 0; strip < 2; ++strip) {
        std::string n = *name;
        if (strip) {
          if (n.size() < 7 || n.compare(n.size() - 7, 7, ".weight") != 0) continue;
          n.resize(n.size() - 7);
        }
        std::smatch m;
        if (!std::regex_match(n, m, re_)) continue;
        bool ok = true;
        for (size_t i = 0; i < ranges_.size() && ok; ++i) {
          const int v = std::stoi(m[i + 1].str());
          ok = v >= ranges_[i].lo && v <= ranges_[i].hi;
        }
        if (ok) return true;
      }
    }
    return false;
  }

 private:
  std::regex re_;
  std::vector<Range> ranges_;
  Range layers_;
};

// ---- methods ---------------------------------------------------------------------------------

struct Method {
  std::optional<QuantType> type;
  std::optional<FileType> level;
};

Method parse_method(const std::string& m, const std::string& source) {
  if (auto t = parse_quant_type(m); t && type_info(*t).storable) return {t, std::nullopt};
  if (auto f = parse_file_type(m)) return {std::nullopt, f};
  fail(Errc::profile_error, "{}: unknown quantization method '{}' (a tensor type such as Q4_K or a level such as Q4_K_M)",
       source, m);
}

const std::vector<QuantType>& default_ladder() {
  static const std::vector<QuantType> kLadder = {
      QuantType::IQ1_S, QuantType::IQ1_M, QuantType::IQ2_XXS, QuantType::IQ2_XS, QuantType::IQ2_S,
      QuantType::IQ3_XXS, QuantType::Q2_K, QuantType::IQ3_S, QuantType::Q3_K, QuantType::IQ4_XS,
      QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K, QuantType::Q8_0};
  return kLadder;
}

// Types raised to, in order, when a tensor's protected weights do not survive its type.
const std::vector<QuantType>& protection_ladder() {
  static const std::vector<QuantType> kLadder = {QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K, QuantType::Q8_0,
                                                 QuantType::F16, QuantType::F32};
  return kLadder;
}

// ---- presets ---------------------------------------------------------------------------------

ProfileRule rule(std::string pattern, std::string layers, std::string method, std::string why) {
  return {std::move(pattern), std::move(layers), std::move(method), std::move(why)};
}

std::vector<Profile> make_presets() {
  std::vector<Profile> v;
  {
    Profile p;
    p.name = "attention-high";
    p.description = "Attention layers at 4-bit, MLP at 2-bit";
    p.rules = {rule("output.weight", "", "Q6_K", "LM head - very high importance"),
               rule("token_embd.weight", "", "Q4_K", "Embeddings"),
               rule("blk.*.attn_v.weight", "", "Q5_K", "Value projections are the most sensitive attention weights"),
               rule("blk.*.attn_*", "", "Q4_K", "Attention at 4-bit"),
               rule("blk.*.ffn_down.weight", "0%-10%", "Q3_K", "First MLP output projections are sensitive"),
               rule("blk.*.ffn_*", "", "Q2_K", "MLP at 2-bit")};
    p.default_method = "Q4_K";
    v.push_back(p);
  }
  {
    Profile p;
    p.name = "balanced";
    p.description = "Even distribution based on importance (solver to 3.5 bpw with an imatrix)";
    p.rules = {rule("output.weight", "", "Q6_K", "LM head - very high importance"),
               rule("token_embd.weight", "", "Q4_K", "Embeddings")};
    p.target_bpw = 3.5;
    p.candidates = {"Q2_K", "IQ3_XXS", "IQ3_S", "Q3_K", "IQ4_XS", "Q4_K", "Q5_K", "Q6_K"};
    // Without importance data the same budget is approximated by role and depth.
    p.provenance["fallback_rules"] = json::array(
        {{{"layer_pattern", "blk.*.attn_v.weight"}, {"quantization_method", "Q5_K"}},
         {{"layer_pattern", "blk.*.ffn_down.weight"}, {"quantization_method", "Q4_K"}},
         {{"layer_pattern", "blk.*"}, {"layers", "0%-10%"}, {"quantization_method", "Q4_K"}},
         {{"layer_pattern", "blk.*"}, {"layers", "90%-100%"}, {"quantization_method", "Q4_K"}}});
    p.default_method = "Q3_K";
    v.push_back(p);
  }
  {
    Profile p;
    p.name = "compression-max";
    p.description = "Minimize size while maintaining coherence (solver to 2.5 bpw with an imatrix)";
    p.rules = {rule("output.weight", "", "Q5_K", "LM head kept usable"),
               rule("token_embd.weight", "", "Q2_K", "Embeddings (lookup only: tolerant)")};
    p.target_bpw = 2.5;
    p.candidates = {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "Q2_K", "IQ3_S", "Q3_K", "IQ4_XS", "Q4_K"};
    p.provenance["fallback_rules"] = json::array(
        {{{"layer_pattern", "blk.*.attn_v.weight"}, {"quantization_method", "Q3_K"}},
         {{"layer_pattern", "blk.*.ffn_down.weight"}, {"layers", "0%-10%"}, {"quantization_method", "Q3_K"}}});
    p.default_method = "Q2_K";
    v.push_back(p);
  }
  {
    Profile p;
    p.name = "quality";
    p.description = "Higher bits for the important layers (embeddings, first and last 10%)";
    p.rules = {rule("token_embd.weight", "", "Q8_0", "Embedding layer - high importance"),
               rule("output.weight", "", "Q8_0", "LM head - very high importance"),
               rule("blk.*", "0%-10%", "Q6_K", "Early layers - higher importance"),
               rule("blk.*", "90%-100%", "Q5_K_M", "Final layers - higher importance"),
               rule("blk.*", "", "Q4_K_M", "Middle layers - standard quantization")};
    p.default_method = "Q4_K";
    v.push_back(p);
  }
  {
    Profile p;
    p.name = "speed";
    p.description = "Lower bits overall with fast kernels";
    p.rules = {rule("output.weight", "", "Q6_K", "LM head"), rule("token_embd.weight", "", "Q4_K", "Embeddings"),
               rule("blk.*", "", "Q4_K_S", "All layers at 4-bit")};
    p.default_method = "Q4_K";
    v.push_back(p);
  }
  return v;
}

}  // namespace

const std::vector<Profile>& preset_profiles() {
  static const std::vector<Profile> kPresets = [] {
    auto v = make_presets();
    for (auto& p : v) p.provenance["source"] = "preset";
    return v;
  }();
  return kPresets;
}

// ---- JSON ------------------------------------------------------------------------------------

json Profile::to_json() const {
  json j = {{"format", "lq.dqprofile"}, {"version", 1}, {"name", name}, {"description", description}};
  json rs = json::array();
  for (const auto& r : rules) {
    json x = {{"layer_pattern", r.pattern}, {"quantization_method", r.method}, {"rationale", r.rationale}};
    if (!r.layers.empty()) x["layers"] = r.layers;
    rs.push_back(x);
  }
  j["layer_configs"] = rs;
  j["default_method"] = default_method;
  if (target_bpw) j["target_bpw"] = *target_bpw;
  if (target_bytes) j["target_size_bytes"] = *target_bytes;
  if (!candidates.empty()) j["candidates"] = candidates;
  if (!tensor_types.empty()) j["tensor_types"] = tensor_types;
  j["provenance"] = provenance;
  return j;
}

Profile Profile::from_json(const json& j, const std::string& source) {
  try {
    if (!j.is_object()) fail(Errc::profile_error, "{}: a profile must be a JSON object", source);
    Profile p;
    p.name = j.value("name", j.value("preset", std::string()));
    if (p.name.empty()) fail(Errc::profile_error, "{}: the profile has no name", source);
    p.description = j.value("description", std::string());
    if (!j.contains("layer_configs") || !j["layer_configs"].is_array())
      fail(Errc::profile_error, "{}: layer_configs must be an array", source);
    for (const auto& x : j["layer_configs"]) {
      if (!x.is_object() || !x.contains("layer_pattern") || !x.contains("quantization_method"))
        fail(Errc::profile_error, "{}: every layer_configs entry needs layer_pattern and quantization_method", source);
      ProfileRule r{x.at("layer_pattern").get<std::string>(), x.value("layers", std::string()),
                    x.at("quantization_method").get<std::string>(), x.value("rationale", std::string())};
      (void)parse_method(r.method, source);
      p.rules.push_back(std::move(r));
    }
    p.default_method = j.value("default_method", std::string("Q4_K"));
    (void)parse_method(p.default_method, source);
    if (j.contains("target_bpw")) {
      p.target_bpw = j.at("target_bpw").get<double>();
      if (!(*p.target_bpw > 0)) fail(Errc::profile_error, "{}: target_bpw must be positive", source);
    }
    if (j.contains("target_size_bytes")) p.target_bytes = j.at("target_size_bytes").get<uint64_t>();
    if (j.contains("candidates"))
      for (const auto& c : j.at("candidates")) {
        const std::string s = c.get<std::string>();
        auto m = parse_method(s, source);
        if (!m.type) fail(Errc::profile_error, "{}: candidate '{}' must be a tensor type", source, s);
        p.candidates.push_back(s);
      }
    if (j.contains("tensor_types"))
      for (auto it = j.at("tensor_types").begin(); it != j.at("tensor_types").end(); ++it) {
        const std::string s = it->get<std::string>();
        auto m = parse_method(s, source);
        if (!m.type) fail(Errc::profile_error, "{}: tensor_types['{}'] must be a tensor type", source, it.key());
        p.tensor_types[it.key()] = s;
      }
    if (j.contains("provenance") && j["provenance"].is_object()) p.provenance = j["provenance"];
    return p;
  } catch (const json::exception& e) {
    fail(Errc::profile_error, "{}: malformed profile: {}", source, e.what());
  }
}

Profile Profile::load(const std::string& name_or_path) {
  for (const auto& p : preset_profiles())
    if (p.name == name_or_path) return p;
  auto load_file = [](const fs::path& f) {
    json j;
    try {
      j = json::parse(read_file(f));
    } catch (const json::exception& e) {
      fail(Errc::profile_error, "{}: malformed JSON: {}", f.string(), e.what());
    } catch (const Error& e) {
      fail(Errc::profile_error, "{}", e.what());
    }
    return from_json(j, f.string());
  };
  std::error_code ec;
  if (fs::is_regular_file(name_or_path, ec)) return load_file(name_or_path);
  if (const auto dir = profile_dir()) {
    for (const std::string& cand : {name_or_path, name_or_path + ".dqprofile"})
      if (fs::is_regular_file(*dir / cand, ec)) return load_file(*dir / cand);
  }
  std::string names;
  for (const auto& p : preset_profiles()) names += (names.empty() ? "" : ", ") + p.name;
  throw Error(Errc::profile_error, fmt::format("profile not found: '{}' (presets: {})", name_or_path, names),
              "Give a preset name, a .dqprofile path, or a profile in $LLM_QUANTIZE_PROFILE_DIR");
}

void Profile::save(const fs::path& path) const { write_file_atomic(path, to_json().dump(2) + "\n"); }

// ---- error measurement and solver ------------------------------------------------------------

std::vector<TensorErrors> measure_errors(const ModelSource& model, const std::vector<std::string>& tensors,
                                         const std::vector<QuantType>& types, const ResolveOptions& opts) {
  std::vector<TensorErrors> out;
  Progress& progress = opts.progress ? *opts.progress : null_progress();
  int64_t done = 0;
  for (const auto& name : tensors) {
    check_interrupted();
    const ModelTensor& t = model.at(name);
    const int64_t ncols = t.row_length(), nrows = t.n_rows();
    // Rows to measure on: evenly spaced, plus every row that holds a protected weight.
    std::vector<int64_t> rows;
    const int64_t want = std::min(nrows, std::max<int64_t>(1, opts.max_rows_per_tensor));
    for (int64_t i = 0; i < want; ++i) rows.push_back(i * nrows / want);
    std::vector<const ProtectedWeight*> prot;
    for (const auto& pw : opts.protect)
      if (pw.tensor == name) {
        prot.push_back(&pw);
        rows.push_back(pw.row);
      }
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    std::vector<float> x(static_cast<size_t>(rows.size()) * ncols);
    for (size_t i = 0; i < rows.size(); ++i) model.read_rows_f32(t, rows[i], 1, x.data() + i * ncols);
    std::vector<float> w(static_cast<size_t>(ncols), 1.0f);
    bool has_imatrix = false;
    if (opts.imatrix)
      if (auto cw = opts.imatrix->column_weights(name, ncols)) {
        w = *cw;
        has_imatrix = true;
      }
    const double scale = static_cast<double>(nrows) / static_cast<double>(rows.size());
    TensorErrors te;
    te.tensor = name;
    te.n_elements = t.n_elements();
    for (QuantType qt : types) {
      const TypeInfo& ti = type_info(qt);
      if (ncols % ti.block_size != 0 || !ti.quantize_ref) continue;
      if (!has_imatrix && (ti.needs_imatrix || tensor_requires_imatrix(name, qt, FileType::Q8_0))) continue;
      std::vector<uint8_t> q(ti.row_bytes(ncols) * rows.size());
      Quantizer::quantize_rows(qt, x.data(), q.data(), static_cast<int64_t>(rows.size()), ncols,
                               has_imatrix ? w.data() : nullptr, opts.threads);
      // Rows holding protected weights are quantized as Quantizer::quantize will write them.
      for (size_t i = 0; i < rows.size() && !ti.is_float(); ++i) {
        std::vector<int64_t> cols;
        for (const auto* pw : prot)
          if (pw->row == rows[i]) cols.push_back(pw->col);
        if (!cols.empty())
          Quantizer::quantize_protected_row(qt, x.data() + i * ncols, q.data() + i * ti.row_bytes(ncols), ncols,
                                            has_imatrix ? w.data() : nullptr, cols);
      }
      std::vector<float> y(x.size());
      const DequantizeFn deq = Registry::instance().dequantize(qt);
      for (size_t i = 0; i < rows.size(); ++i) deq(q.data() + i * ti.row_bytes(ncols), y.data() + i * ncols, ncols);
      double err = 0;
      for (size_t i = 0; i < rows.size(); ++i)
        for (int64_t j = 0; j < ncols; ++j) {
          const double d = static_cast<double>(x[i * ncols + j]) - y[i * ncols + j];
          err += w[static_cast<size_t>(j)] * d * d;
        }
      double pmax = 0;
      for (const auto* pw : prot) {
        const size_t i = static_cast<size_t>(std::lower_bound(rows.begin(), rows.end(), pw->row) - rows.begin());
        const float v = x[i * ncols + pw->col];
        const float qv = y[i * ncols + pw->col];
        pmax = std::max(pmax, v != 0 ? std::fabs(static_cast<double>(qv) - v) / std::fabs(v) : std::fabs(qv));
      }
      te.types.push_back(qt);
      te.error.push_back(err * scale);
      te.bytes.push_back(gguf::tensor_nbytes(qt, t.ne));
      te.protected_max_rel.push_back(pmax);
    }
    if (te.types.empty()) fail(Errc::profile_error, "tensor '{}': no candidate type fits its row length {}", name, ncols);
    out.push_back(std::move(te));
    progress.update("Measuring", ++done, static_cast<int64_t>(tensors.size()), "tensors");
  }
  progress.finish("Measuring");
  return out;
}

std::vector<size_t> solve_allocation(const std::vector<TensorErrors>& errs, uint64_t budget) {
  const size_t n = errs.size();
  std::vector<size_t> pick(n, 0);
  uint64_t min_bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    size_t best = 0;
    for (size_t k = 1; k < errs[i].types.size(); ++k)
      if (errs[i].bytes[k] < errs[i].bytes[best]) best = k;
    min_bytes += errs[i].bytes[best];
  }
  if (min_bytes > budget)
    fail(Errc::profile_error, "the size target ({} bytes for these tensors) is below what the smallest types allow ({} bytes)",
         budget, min_bytes);
  // Lagrangian relaxation: each tensor minimises error + lambda * bytes independently; the
  // lambda whose choice just fits the budget is found by bisection on a log scale.
  auto choose = [&](double lambda, std::vector<size_t>& p) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; ++i) {
      size_t best = 0;
      double bv = errs[i].error[0] + lambda * static_cast<double>(errs[i].bytes[0]);
      for (size_t k = 1; k < errs[i].types.size(); ++k) {
        const double v = errs[i].error[k] + lambda * static_cast<double>(errs[i].bytes[k]);
        if (v < bv || (v == bv && errs[i].bytes[k] < errs[i].bytes[best])) {
          bv = v;
          best = k;
        }
      }
      p[i] = best;
      total += errs[i].bytes[best];
    }
    return total;
  };
  double lo = 1e-30, hi = 1e30;
  std::vector<size_t> tmp(n);
  for (int it = 0; it < 200; ++it) {
    const double mid = std::sqrt(lo * hi);
    if (choose(mid, tmp) <= budget) hi = mid;
    else lo = mid;
  }
  uint64_t total = choose(hi, pick);
  if (total > budget) {  // degenerate ties: fall back to the smallest types
    for (size_t i = 0; i < n; ++i) {
      size_t best = 0;
      for (size_t k = 1; k < errs[i].types.size(); ++k)
        if (errs[i].bytes[k] < errs[i].bytes[best]) best = k;
      pick[i] = best;
    }
    total = min_bytes;
  }
  // Greedy fill: spend what is left on the upgrades with the best error reduction per byte.
  for (;;) {
    double best_gain = 0;
    size_t bi = n, bk = 0;
    for (size_t i = 0; i < n; ++i) {
      const auto& e = errs[i];
      for (size_t k = 0; k < e.types.size(); ++k) {
        if (e.bytes[k] <= e.bytes[pick[i]] || e.error[k] >= e.error[pick[i]]) continue;
        const uint64_t extra = e.bytes[k] - e.bytes[pick[i]];
        if (total + extra > budget) continue;
        const double gain = (e.error[pick[i]] - e.error[k]) / static_cast<double>(extra);
        if (gain > best_gain) {
          best_gain = gain;
          bi = i;
          bk = k;
        }
      }
    }
    if (bi == n) break;
    total += errs[bi].bytes[bk] - errs[bi].bytes[pick[bi]];
    pick[bi] = bk;
  }
  return pick;
}

// ---- resolution ------------------------------------------------------------------------------

namespace {

struct Resolver {
  const Profile& p;
  const ModelSource& model;
  const ResolveOptions& opts;
  int n_layer;
  std::map<FileType, std::map<std::string, QuantType>> level_plans;

  QuantType level_type(FileType f, const std::string& tensor) {
    auto it = level_plans.find(f);
    if (it == level_plans.end()) {
      QuantizeOptions qo;
      qo.ftype = f;
      qo.imatrix = opts.imatrix;
      std::map<std::string, QuantType> m;
      for (const auto& tp : Quantizer(qo).plan(model)) m[tp.name] = tp.type;
      it = level_plans.emplace(f, std::move(m)).first;
    }
    return it->second.at(tensor);
  }

  std::vector<std::string> fallbacks;

  QuantType method_type(const std::string& method, const ModelTensor& t) {
    const Method m = parse_method(method, p.name);
    QuantType qt = m.type ? *m.type : level_type(*m.level, t.name);
    if (auto fb = fallback_type(qt, t.row_length())) {
      fallbacks.push_back(fmt::format("{}: type {} does not fit row length {} (falls back to {})", t.name, type_name(qt),
                                      t.row_length(), type_name(*fb)));
      qt = *fb;
    }
    return qt;
  }
};

}  // namespace

ProfileResolution resolve_profile(const Profile& p, const ModelSource& model, const ResolveOptions& opts) {
  const int n_layer = static_cast<int>(model.config().n_layer);
  Resolver rs{p, model, opts, n_layer, {}, {}};
  std::vector<ProfileRule> rules = p.rules;
  const bool solve = (p.target_bpw || p.target_bytes) && opts.imatrix;
  if ((p.target_bpw || p.target_bytes) && !opts.imatrix && p.provenance.contains("fallback_rules")) {
    // A preset's importance-free approximation of its budget.
    for (const auto& x : p.provenance["fallback_rules"])
      rules.push_back({x.at("layer_pattern").get<std::string>(), x.value("layers", std::string()),
                       x.at("quantization_method").get<std::string>(), "role and depth (no importance matrix)"});
  } else if ((p.target_bpw || p.target_bytes) && !opts.imatrix) {
    throw Error(Errc::profile_error,
                fmt::format("profile '{}' has a size target, which needs an importance matrix to solve", p.name),
                "Pass --imatrix (compute one with `lq analyze MODEL`)");
  }
  std::vector<Matcher> matchers;
  for (const auto& r : rules) matchers.emplace_back(r, n_layer, p.name);
  std::vector<bool> used(rules.size(), false);

  ProfileResolution res;
  std::vector<const ModelTensor*> open;  // left to the solver
  std::vector<size_t> open_index;
  for (const auto& t : model.tensors()) {
    res.total_elements += t.n_elements();
    if (!tensor_allows_quantization(t.name, static_cast<int>(t.ne.size()), true)) {
      res.total_bytes += gguf::tensor_nbytes(t.ne.size() < 2 ? QuantType::F32 : t.type, t.ne);
      continue;
    }
    ProfileAssignment a;
    a.tensor = t.name;
    a.n_elements = t.n_elements();
    bool decided = false;
    if (auto it = p.tensor_types.find(t.name); it != p.tensor_types.end()) {
      a.type = rs.method_type(it->second, t);
      a.rule = "tensor_types";
      decided = true;
    }
    for (size_t i = 0; i < matchers.size(); ++i) {
      if (!matchers[i].matches(t)) continue;
      used[i] = true;  // a rule that matches counts as used even where an earlier decision wins
      if (decided) continue;
      a.type = rs.method_type(rules[i].method, t);
      a.rule = rules[i].pattern + (rules[i].layers.empty() ? "" : " [" + rules[i].layers + "]");
      decided = true;
    }
    if (!decided && solve) {
      open.push_back(&t);
      open_index.push_back(res.tensors.size());
      a.type = QuantType::F32;
      a.rule = "solver";
    } else if (!decided) {
      a.type = rs.method_type(p.default_method, t);
      a.rule = "default";
    }
    res.tensors.push_back(a);
  }
  for (size_t i = 0; i < rules.size() && i < p.rules.size(); ++i)
    if (!used[i]) res.unmatched_rules.push_back(rules[i].pattern + (rules[i].layers.empty() ? "" : " [" + rules[i].layers + "]"));

  // Protection for rule-decided tensors: raise the type until the protected weights survive.
  auto protect = [&](ProfileAssignment& a) {
    bool has = false;
    for (const auto& pw : opts.protect) has |= pw.tensor == a.tensor;
    if (!has) return;
    std::vector<QuantType> ladder = {a.type};
    for (QuantType q : protection_ladder())
      if (type_info(q).bpw() > type_info(a.type).bpw()) ladder.push_back(q);
    const auto errs = measure_errors(model, {a.tensor}, ladder, opts);
    for (size_t k = 0; k < errs[0].types.size(); ++k) {
      if (errs[0].protected_max_rel[k] <= opts.protect_tolerance) {
        if (errs[0].types[k] != a.type) a.protected_weights = true;
        a.type = errs[0].types[k];
        return;
      }
    }
    a.type = QuantType::F32;
    a.protected_weights = true;
  };
  for (auto& a : res.tensors)
    if (a.rule != "solver") protect(a);

  uint64_t fixed_bytes = res.total_bytes;
  for (const auto& a : res.tensors)
    if (a.rule != "solver") fixed_bytes += gguf::tensor_nbytes(a.type, model.at(a.tensor).ne);

  if (!open.empty()) {
    uint64_t target = p.target_bytes ? *p.target_bytes
                                     : static_cast<uint64_t>(*p.target_bpw * static_cast<double>(res.total_elements) / 8.0);
    if (target <= fixed_bytes)
      fail(Errc::profile_error, "target of {} bytes leaves nothing for the {} solver-assigned tensors ({} bytes are fixed)",
           target, open.size(), fixed_bytes);
    std::vector<QuantType> cands;
    if (p.candidates.empty()) cands = default_ladder();
    for (const auto& c : p.candidates) cands.push_back(*parse_method(c, p.name).type);
    std::vector<std::string> names;
    for (const auto* t : open) names.push_back(t->name);
    // A profile's candidate list may not reach a low target: fall back to the whole ladder.
    if (!p.candidates.empty()) {
      uint64_t min_bytes = 0;
      for (const auto* t : open) {
        uint64_t best = UINT64_MAX;
        for (QuantType q : cands)
          if (t->row_length() % type_info(q).block_size == 0) best = std::min(best, gguf::tensor_nbytes(q, t->ne));
        min_bytes += best == UINT64_MAX ? gguf::tensor_nbytes(QuantType::F16, t->ne) : best;
      }
      if (min_bytes > target - fixed_bytes) cands = default_ladder();
    }
    auto errs = measure_errors(model, names, cands, opts);
    // Protection as a constraint: drop candidates that do not keep the protected weights.
    std::vector<bool> constrained(errs.size(), false);
    for (size_t i = 0; i < errs.size(); ++i) {
      TensorErrors& e = errs[i];
      TensorErrors kept;
      kept.tensor = e.tensor;
      kept.n_elements = e.n_elements;
      for (size_t k = 0; k < e.types.size(); ++k)
        if (e.protected_max_rel[k] <= opts.protect_tolerance) {
          kept.types.push_back(e.types[k]);
          kept.error.push_back(e.error[k]);
          kept.bytes.push_back(e.bytes[k]);
          kept.protected_max_rel.push_back(e.protected_max_rel[k]);
        }
      if (kept.types.empty()) {  // nothing on the ladder keeps them: F16
        kept.types = {QuantType::F16};
        kept.error = {0};
        kept.bytes = {gguf::tensor_nbytes(QuantType::F16, model.at(e.tensor).ne)};
        kept.protected_max_rel = {0};
      }
      constrained[i] = kept.types.size() != e.types.size();
      e = std::move(kept);
    }
    const auto pick = solve_allocation(errs, target - fixed_bytes);
    for (size_t i = 0; i < open.size(); ++i) {
      ProfileAssignment& a = res.tensors[open_index[i]];
      a.type = errs[i].types[pick[i]];
      a.protected_weights = constrained[i];
    }
  }
  res.problems = rs.fallbacks;
  for (auto& a : res.tensors) {
    const ModelTensor& t = model.at(a.tensor);
    if (t.row_length() % type_info(a.type).block_size != 0)
      res.problems.push_back(fmt::format("{}: type {} does not fit row length {}", a.tensor, type_name(a.type), t.row_length()));
    if (tensor_requires_imatrix(a.tensor, a.type, FileType::Q8_0)) res.needs_imatrix = true;
    a.bytes = gguf::tensor_nbytes(a.type, t.ne);
    res.total_bytes += a.bytes;
  }
  return res;
}

ProfileResolution validate_profile(const Profile& p, const ModelSource& model) {
  // Validation does not solve: without the preset's importance-free rules, tensors left to the
  // solver are counted at the default method.
  Profile q = p;
  if (!q.provenance.contains("fallback_rules")) {
    q.target_bpw.reset();
    q.target_bytes.reset();
  }
  return resolve_profile(q, model, ResolveOptions{});
}

}  // namespace lq
