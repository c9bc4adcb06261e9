// Resolving a dynamic profile against a model: rules, explicit tensor types and level methods,
// then super-weight protection and the size solver for what is left; and validation without
// solving. Must not write files.
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/gguf.hpp>
#include <lq/profile.hpp>
#include <lq/quantizer.hpp>
#include <lq/sensitivity.hpp>

#include "profile/matcher.hpp"
#include "profile/methods.hpp"
#include "profile/solver.hpp"
#include "quantize/protect.hpp"
#include "quantize/mixture.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <map>

namespace lq {

using namespace profile;

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

ProfileResolution resolve_profile(const Profile& p, const ModelSource& model, const ResolveOptions& opts,
                                  const Context& ctx) {
  check_protected_weights(opts.protect, model);
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
    const auto errs = measure_errors(model, {a.tensor}, ladder, opts, ctx);
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
    // Objective kld: the table's measured types are measured too (to scale unmeasured ones by).
    std::vector<QuantType> measured = cands;
    if (opts.sensitivity)
      for (const auto& r : opts.sensitivity->rows)
        for (QuantType q : r.types)
          if (std::find(measured.begin(), measured.end(), q) == measured.end()) measured.push_back(q);
    auto errs = measure_errors(model, names, measured, opts, ctx);
    // Only the candidates (the measured list may hold more types, to scale the table by).
    auto keep_candidates = [&](std::vector<TensorErrors>& all) {
      for (auto& e : all) {
        TensorErrors c;
        c.tensor = e.tensor;
        c.n_elements = e.n_elements;
        for (size_t k = 0; k < e.types.size(); ++k)
          if (std::find(cands.begin(), cands.end(), e.types[k]) != cands.end()) {
            c.types.push_back(e.types[k]);
            c.error.push_back(e.error[k]);
            c.bytes.push_back(e.bytes[k]);
            c.protected_max_rel.push_back(e.protected_max_rel[k]);
          }
        if (c.types.empty())
          fail(Errc::profile_error, "tensor '{}': no candidate type fits its row length {}", e.tensor,
               model.at(e.tensor).row_length());
        e = std::move(c);
      }
    };
    // Protection as a constraint: drop candidates that do not keep the protected weights; the
    // tensors that lost some are flagged.
    auto constrain = [&](std::vector<TensorErrors>& all) {
      std::vector<bool> constrained(all.size(), false);
      for (size_t i = 0; i < all.size(); ++i) {
        TensorErrors& e = all[i];
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
      return constrained;
    };
    std::vector<TensorErrors> by_error;  // the error objective beside kld, to compare the two mixes
    if (opts.sensitivity) {
      if (opts.measure_mixes) by_error = errs;
      apply_sensitivity(errs, *opts.sensitivity);
      keep_candidates(errs);
    }
    std::vector<bool> constrained = constrain(errs);
    std::vector<size_t> pick = solve_allocation(errs, target - fixed_bytes);
    res.objective = opts.sensitivity ? "kld" : "error";
    if (!by_error.empty()) {
      keep_candidates(by_error);
      std::vector<bool> constrained_e = constrain(by_error);
      std::vector<size_t> pick_e = solve_allocation(by_error, target - fixed_bytes);
      // The two whole mixes: the fixed tensors, then the solver's.
      auto mix_of = [&](const std::vector<TensorErrors>& all, const std::vector<size_t>& chosen) {
        TypeAssignment mix;
        for (const auto& a : res.tensors)
          if (a.rule != "solver") mix.emplace_back(a.tensor, a.type);
        for (size_t i = 0; i < open.size(); ++i) mix.emplace_back(all[i].tensor, all[i].types[chosen[i]]);
        return mix;
      };
      const auto m_kld = mix_of(errs, pick), m_err = mix_of(by_error, pick_e);
      if (m_kld != m_err) {
        res.mix_kld = opts.measure_mixes({m_kld, m_err});
        if (res.mix_kld.size() != 2)
          fail(Errc::profile_error, "measure_mixes gave {} results for 2 mixes", res.mix_kld.size());
        if (res.mix_kld[1] < res.mix_kld[0]) {
          res.objective = "error";
          errs = std::move(by_error);
          pick = std::move(pick_e);
          constrained = std::move(constrained_e);
        }
      }
    }
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

ProfileResolution validate_profile(const Profile& p, const ModelSource& model, const Context& ctx) {
  // Validation does not solve: without the preset's importance-free rules, tensors left to the
  // solver are counted at the default method.
  Profile q = p;
  if (!q.provenance.contains("fallback_rules")) {
    q.target_bpw.reset();
    q.target_bytes.reset();
  }
  return resolve_profile(q, model, ResolveOptions{}, ctx);
}

}  // namespace lq
