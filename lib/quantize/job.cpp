// A whole quantization job (quantize_job.hpp): super-weight selection, the level's mixture or a
// dynamic profile resolved tensor by tensor with protection, the write, then the quality gates.
// What `lq quantize` does, as a library call. Must not print (progress goes to the context's
// sink) nor read the environment other than through settings.hpp.
#include <lq/quantize_job.hpp>

#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/super_weights.hpp>

#include "model/tensor_names.hpp"
#include "quality/gates.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

namespace lq {

namespace fs = std::filesystem;
namespace {

std::string bits_label(double bpw) { return fmt::format("{:.2g}-bit", bpw); }

// The progress lines of a dynamic resolution: bits per group of layers, protection, total.
void report_assignments(Progress& progress, const ProfileResolution& res, size_t n_protected) {
  struct Group {
    int64_t elements = 0;
    uint64_t bytes = 0;
    std::set<std::string> layers;
  };
  std::map<std::string, Group> groups;
  for (const auto& a : res.tensors) {
    std::string g = a.tensor.find("attn_") != std::string::npos ? "Attention"
                    : a.tensor.find("ffn_") != std::string::npos ? "MLP"
                    : a.tensor == "token_embd.weight"            ? "Embeddings"
                                                                 : "Output";
    auto& grp = groups[g];
    grp.elements += a.n_elements;
    grp.bytes += a.bytes;
    grp.layers.insert(names::hf_layer(a.tensor));
  }
  progress.message("Layer assignments:");
  for (const auto& [name, g] : groups)
    progress.message(fmt::format("  - {} layers ({}): {} ({:.2f} bpw)", name, g.layers.size(),
                                 bits_label(8.0 * static_cast<double>(g.bytes) / static_cast<double>(g.elements)),
                                 8.0 * static_cast<double>(g.bytes) / static_cast<double>(g.elements)));
  if (n_protected > 0) {
    int raised = 0;
    for (const auto& a : res.tensors) raised += a.protected_weights;
    progress.message(fmt::format("  - Protected weights: {} ({} tensor(s) raised to keep them within 1%)", n_protected, raised));
  }
  progress.message(fmt::format("  - Effective: {:.3f} bpw, {}", res.effective_bpw(), human_bytes(res.total_bytes)));
}

std::vector<LayerSummary> layer_summary(const ProfileResolution& res) {
  std::map<std::string, LayerSummary> layers;
  for (const auto& a : res.tensors) {
    LayerSummary& l = layers[names::hf_layer(a.tensor)];
    l.parameter_count += a.n_elements;
    l.bit_width += static_cast<double>(a.bytes);  // bytes until the division below
    l.is_protected = l.is_protected || a.protected_weights;
  }
  std::vector<LayerSummary> out;
  for (auto& [name, l] : layers) {
    l.layer = name;
    l.bit_width = l.parameter_count ? 8.0 * l.bit_width / static_cast<double>(l.parameter_count) : 0;
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace

QuantizeJobResult quantize_model(const ModelSource& src, const std::filesystem::path& out, const QuantizeJob& job,
                                 const Context& ctx) {
  Progress& progress = ctx.progress_sink();
  const GateSettings gate_settings =
      job.gates.settings ? *job.gates.settings : gate_settings_from_env(job.gates.perplexity, job.gates.coherence);
  QuantizeOptions qo = job.options;
  const FileTypeInfo& level = file_type_info(qo.ftype);
  // A checkpoint names the run as the user asked for it (the dynamic level changes below).
  if (qo.checkpoint.level.empty())
    qo.checkpoint.level = job.profile ? fmt::format("dynamic (profile {})", job.profile->name) : std::string(level.name);
  QuantizeJobResult res;
  res.dynamic = job.profile.has_value();
  if (job.profile) res.profile = job.profile->name;

  // Protection and dynamic profiles decide the types tensor by tensor.
  std::vector<ProtectedWeight> protect = job.protect;
  if (job.protect_coverage && protect.empty()) {
    if (!qo.imatrix)
      throw Error(Errc::invalid_argument, "super-weight protection requires an importance matrix",
                  "Compute an importance matrix with `lq analyze MODEL`");
    progress.message(fmt::format("Identifying super weights (coverage: {:g}%)", *job.protect_coverage * 100));
    protect = select_by_coverage(src, *qo.imatrix, *job.protect_coverage, ctx);
  }
  if (res.dynamic || !protect.empty()) {
    Profile pr = job.profile ? *job.profile : Profile{};
    if (!job.profile) {
      // The level's own mixture, tensor by tensor; protection then raises what it must.
      pr.name = level.name;
      for (const auto& tp : Quantizer(qo).plan(src))
        if (tp.quantize && !type_info(tp.type).is_float()) pr.tensor_types[tp.name] = type_name(tp.type);
    }
    if (res.dynamic) {
      std::string target;
      if (pr.target_bpw) target = fmt::format(" (target: {:g} bpw)", *pr.target_bpw);
      if (pr.target_bytes) target = fmt::format(" (target: {})", human_bytes(*pr.target_bytes));
      progress.message(fmt::format("Applying profile: {}{}", pr.name, target));
    }
    ResolveOptions ro;
    ro.imatrix = qo.imatrix;
    ro.protect = protect;
    ro.sensitivity = job.sensitivity;
    ro.measure_mixes = job.measure_mixes;
    const ProfileResolution& resolution = res.resolution.emplace(resolve_profile(pr, src, ro, ctx));
    for (const auto& w : resolution.problems) progress.message("warning: " + w);
    for (const auto& a : resolution.tensors) qo.tensor_type_map[a.tensor] = a.type;
    qo.protect = protect;
    for (const auto& a : resolution.tensors) res.raised_tensors += a.protected_weights;
    if (!protect.empty())
      progress.message(fmt::format("Protected parameters: {} ({:.4f}%); {} tensor(s) raised to keep them within 1%",
                                   protect.size(), 100.0 * static_cast<double>(protect.size()) /
                                                       static_cast<double>(resolution.total_elements),
                                   res.raised_tensors));
    if (res.dynamic) {
      // general.file_type: the level of the type that holds most weights.
      std::map<QuantType, int64_t> by_type;
      for (const auto& a : resolution.tensors) by_type[a.type] += a.n_elements;
      if (!by_type.empty()) {
        const QuantType dominant = std::max_element(by_type.begin(), by_type.end(), [](auto& a, auto& b) {
                                     return a.second < b.second;
                                   })->first;
        if (auto f = file_type_for(dominant)) qo.ftype = *f;
      }
      report_assignments(progress, resolution, protect.size());
    }
    res.layers = layer_summary(resolution);
  }
  if (job.gptq) {
    // The walk needs the final types (qo.tensor_type_map from the resolution above) and writes
    // whole tensors, so nothing may change them afterwards.
    if (!protect.empty())
      throw Error(Errc::invalid_argument, "GPTQ on GGUF types cannot be combined with super-weight protection");
    if (!qo.checkpoint.dir.empty())
      throw Error(Errc::invalid_argument,
                  "GPTQ on GGUF types checkpoints through its own state (GptqGgufConfig::checkpoint_dir), not the "
                  "write's (QuantizeOptions::checkpoint)");
    const GptqGgufResult& g = res.gptq.emplace(gptq_gguf_tensors(src, qo, *job.gptq, ctx));
    progress.message(fmt::format("GPTQ: {} linears on the GGUF grid, {} without ({} chunks of {} tokens, {:.1f} s "
                                 "calibration, {:.1f} s quantization)",
                                 g.gptq_tensors.size(), g.plain_tensors.size(), g.chunks, g.ctx, g.calibration_seconds,
                                 g.quantize_seconds));
    qo.tensor_bytes = &g.tensor_bytes;
    // The walk's files were measured without the gain correction (its rounding already answers to
    // each linear's output error); the tensors it does not walk stay as in those files too.
    qo.gain_correction = false;
  }
  if (!res.dynamic)
    progress.message(fmt::format("Quantizing to {} ({}){}", level.name, level.description, qo.pure ? ", pure" : ""));
  res.quantize = Quantizer(qo).quantize(src, out, ctx);
  if (job.gptq && !job.gptq->checkpoint_dir.empty()) {  // the file is complete: the GPTQ checkpoint goes
    std::error_code ec;
    fs::remove_all(job.gptq->checkpoint_dir, ec);
    const fs::path parent = job.gptq->checkpoint_dir.parent_path();
    if (!parent.empty() && fs::is_empty(parent, ec)) fs::remove(parent, ec);
  }
  res.protected_weights = std::move(protect);

  if (res.quantize.n_fallback > 0)
    progress.message(fmt::format("{} tensor(s) fell back to another type (row length not a multiple of the block)",
                                 res.quantize.n_fallback));
  if (res.quantize.outputs.size() > 1)
    for (const auto& o : res.quantize.outputs) progress.message(fmt::format("Wrote {}", o.string()));

  gates::run(src, res.quantize.output, job.gates, gate_settings, res, ctx);
  return res;
}

}  // namespace lq
