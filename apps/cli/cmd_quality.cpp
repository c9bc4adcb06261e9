// lq quality report ORIGINAL QUANTIZED [options] | compare ORIGINAL QUANTIZED... [options]
#include "quality_cli.hpp"

#include <lq/lq.hpp>
#include <lq/quality.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>

namespace fs = std::filesystem;

namespace lq::cli {
namespace {

void add_calibration_options(cxxopts::Options& opts) {
  opts.add_options()
      ("calibration-data", "Calibration text for perplexity: plain text, JSON list or JSONL [default: built-in WikiText-2 test]",
       cxxopts::value<std::string>())
      ("calibration-samples", "Number of chunks of --ctx tokens [default: 256]", cxxopts::value<int64_t>())
      ("ctx", "Chunk length in tokens [default: min(512, the model's training context)]", cxxopts::value<int64_t>());
}

void apply_calibration_options(const cxxopts::ParseResult& r, QualityOptions& qo) {
  if (r.count("calibration-data")) qo.calibration = load_calibration(r["calibration-data"].as<std::string>());
  apply_samples_and_ctx(r, qo);
}

int cmd_report(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts = positional_command_options(ctx, "quality report", "ORIGINAL QUANTIZED",
      {{"original", "Original model (Hugging Face directory, GGUF, Hub ID)"},
       {"quantized", "Quantized model (GGUF or any model path)"}},
      "Quality of QUANTIZED against ORIGINAL: perplexity, KL divergence, size, per-layer errors, coherence.");
  opts.add_options()
      ("include-layers", "Include the per-layer weight error breakdown")
      ("coherence-check", "Generate from prompts and score repetition and fluency")
      ("prompts", "Coherence prompts: JSON list of strings or of objects with \"prompt\" [default: built-in]",
       cxxopts::value<std::string>())
      ("o,output", "Also write the JSON report to this file", cxxopts::value<std::string>());
  add_calibration_options(opts);
  auto parsed = parse(ctx, opts, args);
  if (!parsed) return 0;
  no_csv(ctx, "quality report");
  const auto& r = *parsed;
  if (!r.count("original") || !r.count("quantized"))
    fail(Errc::invalid_argument, "usage: {} quality report ORIGINAL QUANTIZED", ctx.program);
  if (r.count("output")) check_output_dir(r["output"].as<std::string>(), /*writable=*/false);
  QualityOptions qo;
  apply_calibration_options(r, qo);
  qo.include_layers = r.count("include-layers") > 0;
  qo.coherence = r.count("coherence-check") > 0 || r.count("prompts") > 0;
  if (r.count("prompts")) qo.coherence_options.prompts = load_prompts(r["prompts"].as<std::string>());
  apply_env_thresholds(qo);
  TermProgress progress(ctx);
  const QualityReport rep =
      quality_report(r["original"].as<std::string>(), r["quantized"].as<std::string>(), qo, library_context(ctx, progress));
  return emit_quality_report(ctx, r, rep, rep.to_json_string(), progress);
}

// --metrics perplexity,kld,size,bpw
struct Metrics {
  bool perplexity = false, kld = false, size = false, bpw = false;
};

Metrics parse_metrics(const std::string& s) {
  Metrics m;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (item == "perplexity" || item == "ppl") m.perplexity = true;
    else if (item == "kld") m.kld = true;
    else if (item == "size") m.size = true;
    else if (item == "bpw") m.bpw = true;
    else if (item == "all") m.perplexity = m.kld = m.size = m.bpw = true;
    else fail(Errc::invalid_argument, "--metrics: unknown metric '{}' (perplexity, kld, size, bpw, all)", item);
  }
  if (!m.perplexity && !m.kld && !m.size && !m.bpw)
    fail(Errc::invalid_argument, "--metrics: no metric given (perplexity, kld, size, bpw)");
  return m;
}

std::string display_name(const std::string& path) {
  fs::path p = path;
  while (!p.empty() && !p.has_filename()) p = p.parent_path();
  const std::string n = p.filename().string();
  return n.empty() ? path : n;
}

std::string compact_bytes(uint64_t n) {
  std::string s = human_bytes(n);
  s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
  return s;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

struct Row {
  std::string path, name, level;
  SizeInfo size;
  std::optional<PerplexityResult> ppl;
  std::optional<KldResult> kld;
  std::optional<QualityGrade> grade;
};

int cmd_compare(Context& ctx, std::vector<std::string> args) {
  cxxopts::Options opts = command_options(ctx, "quality compare", "ORIGINAL QUANTIZED...", {"models"},
      "Compare quantized models with their original: perplexity, KL divergence and same top token against the "
      "original, grade, size, bits per weight.");
  opts.add_options()
      ("models", "Original model, then one or more quantized models", cxxopts::value<std::vector<std::string>>())
      ("metrics", "Metrics to compare: perplexity, kld, size, bpw (comma-separated) [default: all]",
       cxxopts::value<std::string>())
      ("plot", "Also draw size against perplexity and against KLD, with the Pareto front, as an SVG file",
       cxxopts::value<std::string>());
  add_calibration_options(opts);
  auto parsed = parse(ctx, opts, args, /*allow_csv=*/true);
  if (!parsed) return 0;
  const auto& r = *parsed;
  const auto models = r.count("models") ? r["models"].as<std::vector<std::string>>() : std::vector<std::string>{};
  if (models.size() < 2)
    fail(Errc::invalid_argument, "usage: {} quality compare ORIGINAL QUANTIZED... (at least one quantized model)", ctx.program);
  Metrics metrics = r.count("metrics") ? parse_metrics(r["metrics"].as<std::string>()) : Metrics{true, true, true, true};
  if (metrics.kld) metrics.perplexity = true;  // the KLD is judged against the perplexity change
  const std::string plot = r.count("plot") ? r["plot"].as<std::string>() : std::string();
  if (!plot.empty()) {
    if (!metrics.kld) fail(Errc::invalid_argument, "--plot needs the kld metric (size against perplexity and KLD)");
    check_output_dir(plot, /*writable=*/false);
  }
  QualityOptions qo;
  apply_calibration_options(r, qo);
  TermProgress progress(ctx);
  const std::vector<fs::path> paths(models.begin(), models.end());
  const ModelComparison cmp =
      compare_models(paths, CompareMetrics{metrics.perplexity, metrics.kld}, qo, library_context(ctx, progress));
  std::vector<Row> rows;
  for (const ComparedModel& m : cmp.models)
    rows.push_back({m.path, display_name(m.path), m.quantization_level, m.size, m.perplexity, m.kld, m.grade});
  if (!plot.empty()) {
    write_file_atomic(plot, comparison_plot_svg(cmp));
    progress.message(fmt::format("Plot written: {}", plot));
  }
  const std::string& calib_source = cmp.calibration_source;
  const int64_t ppl_ctx = cmp.ctx, ppl_chunks = cmp.chunks;
  const Row& base = rows[0];
  auto delta = [&](const Row& q) { return 100.0 * (q.ppl->ppl / base.ppl->ppl - 1.0); };

  if (ctx.format == Format::json) {
    auto entry = [&](const Row& q, bool original) {
      nlohmann::json e = {{"model", q.name}, {"path", q.path}, {"role", original ? "original" : "quantized"}};
      e["quantization_level"] = q.level.empty() ? nlohmann::json(nullptr) : nlohmann::json(q.level);
      if (metrics.perplexity) {
        e["perplexity"] = q.ppl->ppl;
        e["perplexity_error"] = q.ppl->ppl_error;
        e["perplexity_delta_pct"] = original ? 0.0 : delta(q);
      }
      if (metrics.size) {
        e["file_size"] = q.size.file_bytes;
        e["compression_ratio"] = base.size.file_bytes ? static_cast<double>(q.size.file_bytes) / static_cast<double>(base.size.file_bytes) : 0;
      }
      if (metrics.kld && !original) {
        e["kld_mean"] = q.kld->kld_mean;
        e["kld_p99"] = q.kld->kld_p99;
        e["same_top_pct"] = q.kld->same_top_pct;
        e["quality_grade"] = grade_name(*q.grade);
      }
      if (metrics.bpw) e["effective_bpw"] = q.size.bpw;
      return e;
    };
    nlohmann::json list = nlohmann::json::array();
    for (size_t i = 1; i < rows.size(); ++i) list.push_back(entry(rows[i], false));
    nlohmann::json j = {{"status", "success"}, {"original_model", models[0]}, {"original", entry(base, true)}, {"models", list}};
    if (metrics.perplexity)
      j["evaluation"] = {{"calibration_data", calib_source}, {"ctx", ppl_ctx}, {"chunks", ppl_chunks}};
    j["warnings"] = cmp.warnings;
    print_json(j);
    return 0;
  }
  if (ctx.format == Format::csv) {
    std::vector<std::string> head = {"model", "role", "path"};
    if (metrics.perplexity) head.insert(head.end(), {"perplexity", "perplexity_delta_pct"});
    if (metrics.kld) head.insert(head.end(), {"kld_mean", "kld_p99", "same_top_pct", "quality_grade"});
    if (metrics.size) head.emplace_back("file_size");
    if (metrics.bpw) head.emplace_back("effective_bpw");
    std::string line;
    for (size_t i = 0; i < head.size(); ++i) line += (i ? "," : "") + head[i];
    std::cout << line << "\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& q = rows[i];
      line = csv_field(q.name) + "," + (i == 0 ? "original" : "quantized") + "," + csv_field(q.path);
      if (metrics.perplexity) line += fmt::format(",{:.6f},{:.4f}", q.ppl->ppl, i == 0 ? 0.0 : delta(q));
      if (metrics.kld)
        line += i == 0 ? std::string(",,,,")
                       : fmt::format(",{:.6f},{:.6f},{:.4f},{}", q.kld->kld_mean, q.kld->kld_p99, q.kld->same_top_pct,
                                     grade_name(*q.grade));
      if (metrics.size) line += fmt::format(",{}", q.size.file_bytes);
      if (metrics.bpw) line += fmt::format(",{:.4f}", q.size.bpw);
      std::cout << line << "\n";
    }
    std::cout << std::flush;
    return 0;
  }
  // The quickstart's table (Model | Perplexity | Delta | Size | BPW) with the KLD columns.
  std::vector<std::string> head = {"Model"};
  if (metrics.perplexity) head.insert(head.end(), {"Perplexity", "Delta"});
  if (metrics.kld) head.insert(head.end(), {"KLD mean", "KLD p99", "Same top", "Grade"});
  if (metrics.size) head.emplace_back("Size");
  if (metrics.bpw) head.emplace_back("BPW");
  std::vector<std::vector<std::string>> cells;
  for (size_t i = 1; i < rows.size(); ++i) {
    const Row& q = rows[i];
    std::vector<std::string> c = {q.name};
    if (metrics.perplexity) {
      c.push_back(fmt::format("{:.2f}", q.ppl->ppl));
      c.push_back(fmt::format("{:+.1f}%", delta(q)));
    }
    if (metrics.kld) {
      c.push_back(fmt::format("{:.4f}", q.kld->kld_mean));
      c.push_back(fmt::format("{:.4f}", q.kld->kld_p99));
      c.push_back(fmt::format("{:.1f}%", q.kld->same_top_pct));
      c.push_back(grade_name(*q.grade));
    }
    if (metrics.size) c.push_back(compact_bytes(q.size.file_bytes));
    if (metrics.bpw) c.push_back(fmt::format("{:.2f}", q.size.bpw));
    cells.push_back(std::move(c));
  }
  std::vector<size_t> w(head.size());
  for (size_t k = 0; k < head.size(); ++k) {
    w[k] = head[k].size();
    for (const auto& c : cells) w[k] = std::max(w[k], c[k].size());
  }
  for (size_t k = 0; k < head.size(); ++k) {  // the quickstart's column widths as minimums
    const size_t min = head[k] == "Model" ? 22 : head[k] == "Delta" ? 6 : head[k] == "Size" ? 5 : 0;
    w[k] = std::max(w[k], min);
  }
  auto print_row = [&](const std::vector<std::string>& c) {
    std::string line;
    for (size_t k = 0; k < c.size(); ++k) {
      if (k) line += " | ";
      line += k + 1 == c.size() ? c[k] : fmt::format("{:<{}}", c[k], w[k]);
    }
    std::cout << line << "\n";
  };
  std::string base_line = fmt::format("Original: {}", base.name);
  if (metrics.perplexity) base_line += fmt::format(", perplexity {:.2f}", base.ppl->ppl);
  if (metrics.size) base_line += fmt::format(", {}", compact_bytes(base.size.file_bytes));
  if (metrics.bpw) base_line += fmt::format(", {:.2f} bpw", base.size.bpw);
  if (metrics.perplexity) base_line += fmt::format(" ({} chunks of {} tokens of {})", ppl_chunks, ppl_ctx, calib_source);
  std::cout << base_line << "\n\n";
  print_row(head);
  std::string sep;
  for (size_t k = 0; k < w.size(); ++k) {
    if (k) sep += "|";
    sep += std::string(w[k] + (k == 0 ? 1 : 2), '-');
  }
  std::cout << sep << "\n";
  for (const auto& c : cells) print_row(c);
  if (metrics.kld)
    std::cout << "\nKLD: KL(original || model) per token, nats; Same top: tokens whose most likely next token is the "
                 "original's;\nGrade: the worse of the perplexity and KLD grades (see README, \"Quality grades\").\n";
  for (const auto& w : cmp.warnings) std::cout << "Warning: " << w << "\n";
  std::cout << std::flush;
  return 0;
}

}  // namespace

int run_quality(Context& ctx, std::vector<std::string> args) {
  // The subcommand is the first word that is not a global option (main puts those first) or
  // one's value.
  size_t at = 0;
  while (at < args.size() && !args[at].empty() && args[at][0] == '-' && args[at] != "--help" && args[at] != "-h")
    at += (args[at] == "--format" || args[at] == "--threads" || args[at] == "--backend") ? 2 : 1;
  if (at >= args.size()) args.clear();
  else std::rotate(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(at), args.begin() + static_cast<std::ptrdiff_t>(at + 1));
  const std::optional<std::string> sub = take_subcommand(
      args, fmt::format(
                "Usage: {0} quality COMMAND\n\nCommands:\n"
                "  report ORIGINAL QUANTIZED [--calibration-data PATH] [--calibration-samples N] [--ctx N]\n"
                "         [--include-layers] [--coherence-check] [--prompts FILE] [-o PATH] [--format human|json]\n"
                "                              Quality report of a quantized model against its original\n"
                "  compare ORIGINAL QUANTIZED... [--metrics perplexity,kld,size,bpw] [--plot FILE.svg] [--format human|json|csv]\n"
                "                              Table of perplexity, KLD, same top token, grade, size and bits per weight\n\n"
                "Run `{0} quality COMMAND --help` for a command's options.\n",
                ctx.program));
  if (!sub) return args.empty() ? exit_code(Errc::invalid_argument) : 0;
  if (*sub == "report") return cmd_report(ctx, std::move(args));
  if (*sub == "compare") return cmd_compare(ctx, std::move(args));
  fail(Errc::invalid_argument, "unknown quality command '{}' (report, compare)", *sub);
}

}  // namespace lq::cli
