// The options of the measured-sensitivity objective (`--objective kld`, the sensitivity text,
// chunks, types and cache) for `quantize -q dynamic` and `profile create`, and the table they
// ask for: read from the cache when it matches, else measured with the engine and cached.
#include "cli.hpp"

#include <lq/calibration.hpp>
#include <lq/tokenizer.hpp>

#include <chrono>
#include <sstream>

#include <unistd.h>

namespace fs = std::filesystem;

namespace lq::cli {

void add_sensitivity_options(cxxopts::Options& opts) {
  opts.add_options()
      ("objective", "Size solver's objective: kld (the KL divergence each tensor causes alone, measured with the "
                    "engine and cached; its mix and the error objective's are then measured whole and the lower "
                    "kept) or error (the imatrix-weighted squared error: no measurement) [default: kld when the "
                    "solver runs]",
       cxxopts::value<std::string>())
      ("sensitivity-text", "--objective kld: text to measure on (.txt, .json, .jsonl) [default: built-in WikiText-2]",
       cxxopts::value<std::string>())
      ("sensitivity-chunks", "--objective kld: chunks per measurement [default: 4]", cxxopts::value<int64_t>())
      ("sensitivity-ctx", "--objective kld: chunk length in tokens [default: 256]", cxxopts::value<int64_t>())
      ("sensitivity-types", "--objective kld: types to measure, comma-separated, or `all` (every candidate); the "
                            "others are estimated from the imatrix-weighted error [default: Q3_K]",
       cxxopts::value<std::string>())
      ("sensitivity-cache", "--objective kld: table file, reused when it matches [default: IMATRIX.sensitivity.json; "
                            "`none`: no cache]",
       cxxopts::value<std::string>());
}

const std::vector<std::string>& sensitivity_option_names() {
  static const std::vector<std::string> kNames = {"objective", "sensitivity-text", "sensitivity-chunks",
                                                  "sensitivity-ctx", "sensitivity-types", "sensitivity-cache"};
  return kNames;
}

std::optional<KldObjective> sensitivity_from_options(const cxxopts::ParseResult& r, const ModelSource& src,
                                                     const Imatrix* imatrix, const std::string& imatrix_path,
                                                     bool solves, const lq::Context& run_ctx, Progress& progress) {
  const bool asked = r.count("objective") > 0;
  // kld by default wherever the solver runs (a size target and an imatrix): it gave a lower KLD
  // than the error objective and than the uniform level at every size on every model measured
  // (docs/performance.md); elsewhere there is nothing to solve and nothing is measured.
  const std::string objective = asked ? r["objective"].as<std::string>() : solves ? "kld" : "error";
  if (objective != "error" && objective != "kld")
    fail(Errc::invalid_argument, "--objective: expected error or kld, got '{}'", objective);
  if (objective == "error") {
    for (const auto& o : sensitivity_option_names())
      if (o != "objective" && r.count(o)) fail(Errc::invalid_argument, "--{} applies to --objective kld only", o);
    return std::nullopt;
  }
  if (!imatrix)
    throw Error(Errc::invalid_argument, "--objective kld needs --imatrix (the quantizer's importance weights)",
                "Compute an importance matrix with `lq analyze MODEL`");
  SensitivityOptions so;
  so.imatrix = imatrix;
  if (r.count("sensitivity-chunks")) so.chunks = r["sensitivity-chunks"].as<int64_t>();
  if (r.count("sensitivity-ctx")) so.ctx = r["sensitivity-ctx"].as<int64_t>();
  if (so.chunks < 1) fail(Errc::invalid_argument, "--sensitivity-chunks must be positive, got {}", so.chunks);
  if (so.ctx < 4) fail(Errc::invalid_argument, "--sensitivity-ctx must be at least 4, got {}", so.ctx);
  // One probe type by default (the others scaled from the imatrix-weighted error: rank
  // correlation 0.99 with the measured KLD on the tiny model, at 1/14 of the cost); `all`
  // measures every candidate.
  so.types = {QuantType::Q3_K};
  if (r.count("sensitivity-types") && r["sensitivity-types"].as<std::string>() == "all") {
    so.types.clear();
  } else if (r.count("sensitivity-types")) {
    so.types.clear();
    std::stringstream ss(r["sensitivity-types"].as<std::string>());
    std::string item;
    while (std::getline(ss, item, ',')) {
      const auto t = parse_quant_type(item);
      if (!t || !type_info(*t).storable) fail(Errc::invalid_argument, "--sensitivity-types: unknown type '{}'", item);
      so.types.push_back(*t);
    }
    if (so.types.empty()) fail(Errc::invalid_argument, "--sensitivity-types: no type given");
  }
  const CalibrationData text =
      r.count("sensitivity-text") ? load_text(r["sensitivity-text"].as<std::string>()) : default_calibration();
  const Tokenizer tok = Tokenizer::from_gguf(src.gguf_metadata(), src.path().string());
  std::vector<int32_t> tokens;
  for (const auto& t : text.texts) {
    const auto ids = tok.encode(t, /*add_special=*/false);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
  }
  fs::path cache;
  const std::string c = r.count("sensitivity-cache") ? r["sensitivity-cache"].as<std::string>() : std::string();
  if (c == "none") {
    cache.clear();
  } else if (!c.empty()) {
    cache = c;
    check_output_dir(cache, /*writable=*/true);
  } else {
    // Beside the imatrix, where the next solve finds it; a directory that cannot take it (a
    // read-only data set) only costs the reuse.
    cache = fs::path(imatrix_path + ".sensitivity.json");
    std::error_code ec;
    const fs::path dir = cache.parent_path().empty() ? fs::path(".") : cache.parent_path();
    if (!fs::exists(cache, ec) && ::access(dir.c_str(), W_OK) != 0) {
      progress.message(fmt::format("Sensitivity: {} is not writable: the table is measured without a cache "
                                   "(--sensitivity-cache FILE keeps it elsewhere)",
                                   dir.string()));
      cache.clear();
    }
  }
  progress.message(fmt::format("Sensitivity ({}): {} chunks of {} tokens of {}{}",
                               asked ? "--objective kld" : "objective kld, the default; --objective error skips it",
                               so.chunks, so.ctx, text.source, cache.empty() ? std::string() : ", table " + cache.string()));
  bool reused = false;
  SensitivityTable t = cached_sensitivity(src, tokens, so, cache, &reused, run_ctx);
  progress.message(reused ? fmt::format("Sensitivity: reused {} ({} evaluations measured in {:.1f} s)", cache.string(),
                                        t.evaluations, t.seconds)
                          : fmt::format("Sensitivity: {} evaluations in {:.1f} s (restored model's KLD {:.2g})",
                                        t.evaluations, t.seconds, t.reference_kld_floor));
  KldObjective k{std::move(t), {}};
  k.measure_mixes = [&src, &run_ctx, &progress, tokens = std::move(tokens), so](
                        const std::vector<TypeAssignment>& mixes) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto kld = measure_mix_kld(src, tokens, so, mixes, run_ctx);
    progress.message(fmt::format("Sensitivity: the kld objective's mix measures KLD {:.4g}, the error objective's "
                                 "{:.4g}: keeping the {} one ({:.1f} s)",
                                 kld.at(0), kld.at(1), kld.at(1) < kld.at(0) ? "error objective's" : "kld objective's",
                                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
    return kld;
  };
  return k;
}

}  // namespace lq::cli
