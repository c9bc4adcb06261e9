// lq profile list | show PROFILE | create --imatrix PATH --name NAME [--target-bpw X | --target-size S]
//            | validate PROFILE MODEL
#include "cli.hpp"

#include <lq/lq.hpp>
#include <lq/profile.hpp>

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

namespace fs = std::filesystem;

namespace lq::cli {
namespace {

// --target-size: a size with a unit ("3GB", "2.5 MB", "750000B"), a plain number of GB (> 1),
// or a fraction of the F16 size (<= 1, the contract's "compression ratio").
uint64_t parse_target_size(const std::string& s, int64_t n_params) {
  const ByteSize b = parse_byte_size(s, "target-size", "3GB, 750MB, 0.25");
  if (b.has_unit) return b.bytes;
  if (b.value <= 1.0) return static_cast<uint64_t>(b.value * static_cast<double>(n_params) * 2.0);
  return static_cast<uint64_t>(b.value * 1e9);
}

void print_profile(const Context& ctx, const Profile& p) {
  if (ctx.format == Format::json) {
    print_json(p.to_json());
    return;
  }
  std::cout << fmt::format("Profile: {}\n", p.name);
  if (!p.description.empty()) std::cout << fmt::format("  {}\n", p.description);
  if (p.target_bpw) std::cout << fmt::format("Target: {:g} bits per weight (solver, with an importance matrix)\n", *p.target_bpw);
  if (p.target_bytes) std::cout << fmt::format("Target: {} of tensors (solver)\n", human_bytes(*p.target_bytes));
  std::cout << "Rules (first match wins):\n";
  for (const auto& r : p.rules)
    std::cout << fmt::format("  {:<28} {:<9} {:<8} {}\n", r.pattern, r.layers.empty() ? "" : r.layers, r.method, r.rationale);
  std::cout << fmt::format("  {:<28} {:<9} {:<8} {}\n", "(others)", "", p.target_bpw || p.target_bytes ? "solver" : p.default_method,
                           p.target_bpw || p.target_bytes ? "chosen by importance-weighted error" : "default");
  if (!p.tensor_types.empty()) std::cout << fmt::format("Explicit tensor types: {}\n", p.tensor_types.size());
}

int cmd_list(Context& ctx) {
  std::vector<Profile> all = preset_profiles();
  const fs::path dir = profile_dir().value_or(fs::path());
  std::error_code ec;
  std::vector<std::pair<std::string, std::string>> custom;
  if (!dir.empty() && fs::is_directory(dir, ec))
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".dqprofile") {
        try {
          Profile p = Profile::load(e.path().string());
          custom.emplace_back(p.name, e.path().string());
          all.push_back(p);
        } catch (const Error& err) {
          std::cerr << ctx.program << ": warning: " << err.what() << "\n";
        }
      }
  if (ctx.format == Format::json) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& p : all)
      a.push_back({{"name", p.name}, {"description", p.description},
                   {"target_bpw", p.target_bpw ? nlohmann::json(*p.target_bpw) : nlohmann::json(nullptr)},
                   {"source", p.provenance.value("source", "file")}});
    print_json({{"profiles", a}});
    return 0;
  }
  for (const auto& p : all) std::cout << fmt::format("  {:<18}{}\n", p.name, p.description);
  return 0;
}

}  // namespace

int run_profile(Context& ctx, std::vector<std::string> args) {
  const std::optional<std::string> sub_name = take_subcommand(
      args, fmt::format(
                "Usage: {0} profile COMMAND\n\nCommands:\n"
                "  list                                  List presets and profiles in $LLM_QUANTIZE_PROFILE_DIR\n"
                "  show PROFILE [--format human|json]    Show a profile's rules\n"
                "  create --imatrix PATH --name NAME --model MODEL [--target-bpw X | --target-size S] [-o PATH]\n"
                "                                        Solve per-tensor types for a size target\n"
                "  validate PROFILE MODEL                Check a profile against a model (exit 13 when invalid)\n",
                ctx.program));
  if (!sub_name) return args.empty() ? exit_code(Errc::invalid_argument) : 0;
  const std::string& sub = *sub_name;
  cxxopts::Options opts(ctx.program + " profile " + sub, "Manage dynamic quantization profiles.");
  if (sub == "list") {
    if (!parse(ctx, opts, args)) return 0;
    return cmd_list(ctx);
  }
  if (sub == "show") {
    opts.positional_help("PROFILE");
    opts.add_options()("profile", "Preset name or .dqprofile path", cxxopts::value<std::string>());
    opts.parse_positional({"profile"});
    auto r = parse(ctx, opts, args);
    if (!r) return 0;
    if (!r->count("profile")) fail(Errc::invalid_argument, "missing PROFILE");
    print_profile(ctx, Profile::load((*r)["profile"].as<std::string>()));
    return 0;
  }
  if (sub == "validate") {
    opts.positional_help("PROFILE MODEL");
    opts.add_options()("profile", "Preset name or .dqprofile path", cxxopts::value<std::string>())(
        "model", "Model to validate against", cxxopts::value<std::string>());
    opts.parse_positional({"profile", "model"});
    auto r = parse(ctx, opts, args);
    if (!r) return 0;
    if (!r->count("profile") || !r->count("model")) fail(Errc::invalid_argument, "usage: profile validate PROFILE MODEL");
    const Profile p = Profile::load((*r)["profile"].as<std::string>());
    auto model = ModelSource::open((*r)["model"].as<std::string>());
    const ProfileResolution res = validate_profile(p, *model);
    const bool ok = res.unmatched_rules.empty() && res.problems.empty();
    if (ctx.format == Format::json) {
      nlohmann::json tensors = nlohmann::json::array();
      for (const auto& a : res.tensors)
        tensors.push_back({{"tensor", a.tensor}, {"type", type_name(a.type)}, {"rule", a.rule}, {"bytes", a.bytes}});
      print_json({{"status", ok ? "valid" : "invalid"}, {"profile", p.name}, {"model", (*r)["model"].as<std::string>()},
                  {"effective_bpw", res.effective_bpw()}, {"size_bytes", res.total_bytes},
                  {"unmatched_rules", res.unmatched_rules}, {"problems", res.problems},
                  {"requires_imatrix", res.needs_imatrix}, {"tensors", tensors}});
    } else {
      std::cout << fmt::format("Profile {} on {}: {}\n", p.name, (*r)["model"].as<std::string>(), ok ? "valid" : "INVALID");
      std::cout << fmt::format("Effective: {:.4f} bits per weight, {} of tensors\n", res.effective_bpw(),
                               human_bytes(res.total_bytes));
      for (const auto& u : res.unmatched_rules) std::cout << fmt::format("  rule matches no tensor: {}\n", u);
      for (const auto& pr : res.problems) std::cout << fmt::format("  problem: {}\n", pr);
      if (res.needs_imatrix) std::cout << "  note: some types need an importance matrix: quantize with --imatrix\n";
    }
    if (!ok)
      fail(Errc::profile_error, "profile '{}' is not valid for this model ({} unmatched rule(s), {} problem(s))", p.name,
           res.unmatched_rules.size(), res.problems.size());
    return 0;
  }
  if (sub == "create") {
    opts.add_options()("imatrix", "Importance matrix [required]", cxxopts::value<std::string>())(
        "name", "Profile name [required]", cxxopts::value<std::string>())(
        "model", "The model the importance matrix was computed on [required: errors are measured on its weights]",
        cxxopts::value<std::string>())("target-bpw", "Target bits per weight", cxxopts::value<double>())(
        "target-size", "Target size: 3GB, 750MB, or a fraction (<= 1) of the F16 size", cxxopts::value<std::string>())(
        "base", "Preset whose fixed rules (output, embeddings) to keep, or `none` to let the solver choose every "
                "tensor [default: balanced]", cxxopts::value<std::string>())(
        "o,output", "Output profile path [default: ./NAME.dqprofile]", cxxopts::value<std::string>());
    add_sensitivity_options(opts);
    auto r = parse(ctx, opts, args);
    if (!r) return 0;
    if (!r->count("imatrix")) fail(Errc::invalid_argument, "profile create needs --imatrix");
    if (!r->count("name")) fail(Errc::invalid_argument, "profile create needs --name");
    if (!r->count("model")) fail(Errc::invalid_argument, "profile create needs --model (errors are measured on the weights)");
    if (r->count("target-bpw") && r->count("target-size"))
      fail(Errc::invalid_argument, "give --target-bpw or --target-size, not both");
    const std::string name = (*r)["name"].as<std::string>();
    const fs::path out = r->count("output") ? fs::path((*r)["output"].as<std::string>()) : fs::path(name + ".dqprofile");
    TermProgress progress(ctx);
    progress.message(fmt::format("Loading importance matrix: {}", (*r)["imatrix"].as<std::string>()));
    const Imatrix im = Imatrix::load((*r)["imatrix"].as<std::string>());
    progress.message(fmt::format("Loading model: {}", (*r)["model"].as<std::string>()));
    auto model = ModelSource::open((*r)["model"].as<std::string>());
    int64_t n_params = 0;
    for (const auto& t : model->tensors()) n_params += t.n_elements();
    const std::string base_name = r->count("base") ? (*r)["base"].as<std::string>() : "balanced";
    Profile base;
    if (base_name != "none") base = Profile::load(base_name);
    Profile p;
    p.name = name;
    p.description = fmt::format("Solved from {} for {}", (*r)["imatrix"].as<std::string>(), (*r)["model"].as<std::string>());
    p.rules = base.rules;
    p.candidates = base.candidates;
    p.default_method = base.default_method;
    if (r->count("target-bpw")) {
      const double t = (*r)["target-bpw"].as<double>();
      if (!(t > 0)) fail(Errc::invalid_argument, "--target-bpw must be positive, got {}", t);
      p.target_bpw = t;
    } else if (r->count("target-size")) {
      p.target_bytes = parse_target_size((*r)["target-size"].as<std::string>(), n_params);
    } else {
      p.target_bpw = base.target_bpw ? *base.target_bpw : 3.5;
    }
    ResolveOptions ro;
    ro.imatrix = &im;
    lq::Context run_ctx = library_context(ctx, progress);
    const std::optional<KldObjective> sensitivity =
        sensitivity_from_options(*r, *model, &im, (*r)["imatrix"].as<std::string>(), /*solves=*/true, run_ctx, progress);
    if (sensitivity) {
      ro.sensitivity = &sensitivity->table;
      ro.measure_mixes = sensitivity->measure_mixes;
    }
    const ProfileResolution res = [&] {
      try {
        return resolve_profile(p, *model, ro, run_ctx);
      } catch (const Error& e) {
        // A size target the base's fixed rules leave no room for: the solver could meet it if it
        // chose every tensor. (Both of the solver's size refusals name the target.)
        const std::string what = e.what();
        if (e.code() != Errc::profile_error || base_name == "none" || what.find("target") == std::string::npos) throw;
        throw Error(e.code(),
                    fmt::format("{}; the base profile '{}' keeps its fixed rules (output, embeddings): try --base none "
                                "to let the solver choose every tensor, or a larger target",
                                what, base_name),
                    e.suggestion());
      }
    }();
    for (const auto& a : res.tensors) p.tensor_types[a.tensor] = type_name(a.type);
    p.provenance = {{"created_by", fmt::format("lq {}", lq::version())},
                    {"created", utc_timestamp()},
                    {"imatrix", (*r)["imatrix"].as<std::string>()},
                    {"model", (*r)["model"].as<std::string>()},
                    {"solver", !sensitivity ? "lagrangian relaxation + greedy fill, imatrix-weighted squared error"
                               : res.objective == "error"
                                   ? "lagrangian relaxation + greedy fill, imatrix-weighted squared error (its mix "
                                     "measured a lower KLD than the kld objective's)"
                                   : "lagrangian relaxation + greedy fill, measured KLD per tensor (objective kld)"},
                    {"effective_bpw", res.effective_bpw()},
                    {"size_bytes", res.total_bytes}};
    p.save(out);
    progress.message(fmt::format("Profile written: {} ({:.4f} bpw, {})", out.string(), res.effective_bpw(),
                                 human_bytes(res.total_bytes)));
    if (ctx.format == Format::json)
      print_json({{"status", "success"}, {"output_path", fs::absolute(out).string()}, {"name", name},
                  {"effective_bpw", res.effective_bpw()}, {"size_bytes", res.total_bytes},
                  {"target_bpw", p.target_bpw ? nlohmann::json(*p.target_bpw) : nlohmann::json(nullptr)},
                  {"target_size_bytes", p.target_bytes ? nlohmann::json(*p.target_bytes) : nlohmann::json(nullptr)}});
    else
      std::cout << fmt::format("{}: {:.4f} bits per weight, {} of tensors\n", out.string(), res.effective_bpw(),
                               human_bytes(res.total_bytes));
    return 0;
  }
  fail(Errc::invalid_argument, "unknown profile command '{}' (list, show, create, validate)", sub);
}

}  // namespace lq::cli
