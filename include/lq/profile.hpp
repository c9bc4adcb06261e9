// liblq: dynamic layer-wise quantization: profiles (.dqprofile), presets and the size solver.
#pragma once

#include <lq/api.hpp>
#include <lq/context.hpp>
#include <lq/imatrix.hpp>
#include <lq/model.hpp>
#include <lq/quantizer.hpp>
#include <lq/quant_type.hpp>

// nlohmann/json stays here for Profile::provenance: a free-form JSON object that whoever writes a
// .dqprofile records (creator, model, solver figures, a preset's importance-free rules) and that
// is written back as it was read. to_json_string() / from_json_string() need no nlohmann.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lq {

struct SensitivityTable;  // lq/sensitivity.hpp

/// One rule of a profile: tensors matching `pattern` (and `layers`, when given) get `method`.
///
/// `pattern` is a glob (`*`, `?`) matched against a tensor's GGUF name ("blk.3.attn_q.weight")
/// and its Hugging Face name ("model.layers.3.self_attn.q_proj.weight"), also with the final
/// ".weight" removed. A dot-separated segment of the form `A-B` matches layer numbers A..B, and
/// `A%-B%` matches layers by relative depth (0% = first layer, 100% = last), so presets adapt to
/// any depth. `method` is a tensor type ("Q4_K", "IQ2_XS", "F16") or a level ("Q4_K_M": that
/// level's llama.cpp mixture decides the type of each matching tensor).
struct ProfileRule {
  std::string pattern;
  std::string layers;     ///< optional extra layer range ("0-3", "0%-10%"); "" = any
  std::string method;
  std::string rationale;
};

/// A dynamic quantization profile. Rules apply in order, first match wins. Tensors no rule
/// matches get `default_method`, or, when `target_bpw`/`target_bytes` is set and an importance
/// matrix is available, the type the solver picks for them.
struct LQ_API Profile {
  std::string name;
  std::string description;
  std::vector<ProfileRule> rules;
  std::string default_method = "Q4_K";
  std::optional<double> target_bpw;      ///< bits per weight over all tensors
  std::optional<uint64_t> target_bytes;  ///< total tensor bytes
  std::vector<std::string> candidates;   ///< types the solver may use ("" = default ladder)
  std::map<std::string, std::string> tensor_types;  ///< explicit per-tensor types (solver output)
  nlohmann::json provenance = nlohmann::json::object();

  /// The .dqprofile JSON document.
  nlohmann::json to_json() const;
  /// The .dqprofile JSON document as text (`indent` spaces per level; -1: one line).
  std::string to_json_string(int indent = 2) const;
  /// Parses a .dqprofile document; malformed content throws Errc::profile_error.
  static Profile from_json(const nlohmann::json& j, const std::string& source = "profile");
  /// Parses a .dqprofile document from text; malformed content throws Errc::profile_error.
  static Profile from_json_string(const std::string& text, const std::string& source = "profile");
  /// Loads a profile by preset name, by path, or by name from $LLM_QUANTIZE_PROFILE_DIR
  /// (default ~/.config/llm-quantize/profiles). Throws Errc::profile_error when not found.
  static Profile load(const std::string& name_or_path);
  /// Writes the profile as JSON (temp + rename).
  void save(const std::filesystem::path& path) const;
};

/// The built-in presets: attention-high, balanced, compression-max, quality, speed.
LQ_API const std::vector<Profile>& preset_profiles();

/// A per-tensor outcome of applying a profile to a model.
struct ProfileAssignment {
  std::string tensor;
  QuantType type;
  std::string rule;  ///< the rule (pattern) that decided it, "solver" or "default"
  int64_t n_elements = 0;
  uint64_t bytes = 0;
  bool protected_weights = false;  ///< raised to keep protected (super) weights exact
};

/// Result of resolving or validating a profile against a model.
struct ProfileResolution {
  std::vector<ProfileAssignment> tensors;  ///< quantizable weights only
  std::vector<std::string> unmatched_rules;   ///< patterns that matched no tensor
  std::vector<std::string> problems;          ///< e.g. a type that does not fit a row length
  bool needs_imatrix = false;                 ///< some chosen type needs importance data to quantize
  /// The solver's objective whose mix was kept: "kld" or "error" ("" where no solver ran, or
  /// "error" alone without a sensitivity table); with ResolveOptions::measure_mixes and two
  /// different mixes, their measured KLDs (kld's first).
  std::string objective;
  std::vector<double> mix_kld;
  uint64_t total_bytes = 0;                   ///< bytes of all tensors (quantized + others)
  int64_t total_elements = 0;
  double effective_bpw() const { return total_elements ? 8.0 * total_bytes / total_elements : 0; }
};

/// A type per tensor (GGUF names): a candidate mix.
using TypeAssignment = std::vector<std::pair<std::string, QuantType>>;

/// Measures candidate mixes whole: one mean KLD per mix (measure_mix_kld() in lq/sensitivity.hpp,
/// on the sensitivity table's text).
using MixMeasure = std::function<std::vector<double>(const std::vector<TypeAssignment>&)>;

/// Options of profile resolution.
struct ResolveOptions {
  const Imatrix* imatrix = nullptr;             ///< needed by solver targets and i-quant types
  std::vector<ProtectedWeight> protect;         ///< weights to keep within `protect_tolerance`
  double protect_tolerance = 0.01;              ///< relative error allowed on protected weights
  int64_t max_rows_per_tensor = 512;            ///< rows sampled per tensor to measure errors
  /// (optional) Objective kld: the solver minimises the summed measured KLD of this table
  /// (measure_sensitivity()) instead of the imatrix-weighted squared error. Must cover every
  /// tensor left to the solver.
  const SensitivityTable* sensitivity = nullptr;
  /// (optional, with `sensitivity`) The solver also solves with the imatrix-weighted error, and
  /// when the two mixes differ keeps the one whose KLD measured whole is lower: the table's
  /// per-tensor KLDs add up only approximately, and on some models (one large tied embedding)
  /// the error objective's mix measures lower.
  MixMeasure measure_mixes;
};

/// Decides every quantizable tensor's type: profile rules, explicit tensor_types, the solver for
/// targets (Lagrangian relaxation of the size-constrained choice, then greedy upgrades to fill
/// the budget), then protection. Throws Errc::profile_error for invalid rules, an unreachable
/// target or a target without an importance matrix, Errc::imatrix_error for i-quant types
/// without importance data. Error measurement runs on ctx's threads with its back-end's kernels,
/// reports to its progress sink and stops (Errc::interrupted) when its token is cancelled.
LQ_API ProfileResolution resolve_profile(const Profile& p, const ModelSource& model, const ResolveOptions& opts,
                                         const Context& ctx = {});

/// Checks a profile against a model without quantizing: every rule matches some tensor, every
/// type fits its rows, and the effective bpw/size (solver targets are not solved here).
LQ_API ProfileResolution validate_profile(const Profile& p, const ModelSource& model, const Context& ctx = {});

}  // namespace lq
