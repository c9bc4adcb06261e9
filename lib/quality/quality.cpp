// Quality reports: perplexity and KL divergence of a quantized model against its original on
// calibration text, sizes, per-layer weight errors, grades, warnings and recommendations.
#include <lq/error.hpp>
#include <lq/file_type.hpp>
#include <lq/io.hpp>
#include <lq/quality.hpp>
#include <lq/threads.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <map>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq {

// ---------------------------------------------------------------------------------------------
// Grades

const char* grade_name(QualityGrade g) noexcept {
  switch (g) {
    case QualityGrade::excellent: return "EXCELLENT";
    case QualityGrade::good: return "GOOD";
    case QualityGrade::acceptable: return "ACCEPTABLE";
    case QualityGrade::degraded: return "DEGRADED";
    case QualityGrade::failed: return "FAILED";
  }
  return "FAILED";
}

QualityGrade grade_for_perplexity(double d) noexcept {
  if (std::isnan(d)) return QualityGrade::failed;
  if (d < 5) return QualityGrade::excellent;
  if (d < 15) return QualityGrade::good;
  if (d < 30) return QualityGrade::acceptable;
  if (d <= 50) return QualityGrade::degraded;
  return QualityGrade::failed;
}

QualityGrade grade_for_coherence(double c) noexcept {
  if (std::isnan(c)) return QualityGrade::failed;
  if (c > 0.95) return QualityGrade::excellent;
  if (c > 0.85) return QualityGrade::good;
  if (c > 0.70) return QualityGrade::acceptable;
  if (c >= 0.50) return QualityGrade::degraded;
  return QualityGrade::failed;
}

QualityGrade quality_grade(double ppl_delta_pct, std::optional<double> coherence) noexcept {
  QualityGrade g = grade_for_perplexity(ppl_delta_pct);
  if (coherence) g = std::max(g, grade_for_coherence(*coherence));
  return g;
}

// ---------------------------------------------------------------------------------------------
// Text and vocabularies

std::string vocabulary_mismatch(const Tokenizer& a, const Tokenizer& b) {
  if (a.vocab_size() != b.vocab_size())
    return fmt::format("vocabulary sizes differ ({} vs {} tokens)", a.vocab_size(), b.vocab_size());
  if (a.bos_id() != b.bos_id() || a.eos_id() != b.eos_id())
    return fmt::format("special tokens differ (BOS {} / EOS {} vs BOS {} / EOS {})", a.bos_id(), a.eos_id(),
                       b.bos_id(), b.eos_id());
  if (a.add_bos() != b.add_bos()) return "one tokenizer adds BOS and the other does not";
  for (size_t i = 0; i < a.vocab_size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    if (a.token_text(id) != b.token_text(id) || a.token_type(id) != b.token_type(id))
      return fmt::format("token {} differs ('{}' vs '{}')", id, a.token_text(id), b.token_text(id));
  }
  return {};
}

Tokenizer tokenizer_for(const ModelSource& source) {
  return Tokenizer::from_gguf(source.gguf_metadata(), source.path().string());
}

std::vector<int32_t> calibration_tokens(const Tokenizer& tok, const CalibrationData& data) {
  std::vector<int32_t> out;
  for (const auto& t : data.texts) {
    const auto ids = tok.encode(t, /*add_special=*/false);
    out.insert(out.end(), ids.begin(), ids.end());
  }
  return out;
}

std::string read_text_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(Errc::calibration_error, "text file not found: {}", path.string());
  if (fs::is_directory(path, ec)) fail(Errc::calibration_error, "{}: is a directory, not a text file", path.string());
  std::string data;
  try {
    data = read_file(path);
  } catch (const Error& e) {
    fail(Errc::calibration_error, "{}", e.what());
  }
  if (data.find('\0') != std::string::npos) fail(Errc::calibration_error, "{}: not a text file (contains NUL bytes)", path.string());
  if (data.find_first_not_of(" \t\r\n") == std::string::npos) fail(Errc::calibration_error, "{}: the text file is empty", path.string());
  return data;
}

// ---------------------------------------------------------------------------------------------
// Sizes and weight errors

SizeInfo size_info(const ModelSource& source) {
  SizeInfo s;
  s.file_bytes = source.source_bytes();
  for (const auto& t : source.tensors()) {
    s.tensor_bytes += t.row_bytes() * static_cast<uint64_t>(t.n_rows());
    s.n_weights += t.n_elements();
  }
  s.bpw = s.n_weights ? 8.0 * static_cast<double>(s.tensor_bytes) / static_cast<double>(s.n_weights) : 0;
  return s;
}

std::string layer_group(const std::string& name) {
  if (name == "token_embd.weight") return "model.embed_tokens";
  if (name == "output.weight") return "lm_head";
  if (name.rfind("blk.", 0) != 0) return {};
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos) return {};
  const std::string base = "model.layers." + name.substr(4, dot - 4);
  const std::string rest = name.substr(dot + 1);
  if (rest.rfind("attn_", 0) == 0) return base + ".self_attn";
  if (rest.rfind("ffn_", 0) == 0) return base + ".mlp";
  return base;
}

std::vector<TensorError> weight_errors(const ModelSource& original, const ModelSource& quantized, int threads,
                                       Progress* progress) {
  std::vector<const ModelTensor*> todo;
  for (const auto& t : quantized.tensors()) {
    if (t.ne.size() < 2 || t.n_rows() < 2) continue;
    if (t.name.size() < 7 || t.name.compare(t.name.size() - 7, 7, ".weight") != 0) continue;
    const ModelTensor* o = original.find(t.name);
    if (!o || o->ne != t.ne) continue;
    todo.push_back(&t);
  }
  std::vector<TensorError> out;
  out.reserve(todo.size());
  std::vector<float> a, b;
  for (size_t k = 0; k < todo.size(); ++k) {
    check_interrupted();
    const ModelTensor& tq = *todo[k];
    const ModelTensor& to = original.at(tq.name);
    const int64_t n_rows = tq.n_rows(), row = tq.row_length();
    // Rows in slices of about 4M values so memory stays bounded on large tensors.
    const int64_t step = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(1, row));
    double se = 0, sx = 0, mx = 0;
    for (int64_t r0 = 0; r0 < n_rows; r0 += step) {
      const int64_t nr = std::min(step, n_rows - r0);
      a.resize(static_cast<size_t>(nr * row));
      b.resize(a.size());
      original.read_rows_f32(to, r0, nr, a.data());
      quantized.read_rows_f32(tq, r0, nr, b.data());
      struct Part {
        double se = 0, sx = 0, mx = 0;
      };
      std::vector<Part> parts(static_cast<size_t>(nr));
      parallel_for(nr, threads, 16, [&](int64_t rb, int64_t re) {
        for (int64_t r = rb; r < re; ++r) {
          Part p;
          const float* x = a.data() + r * row;
          const float* q = b.data() + r * row;
          for (int64_t j = 0; j < row; ++j) {
            const double d = static_cast<double>(q[j]) - static_cast<double>(x[j]);
            p.se += d * d;
            p.sx += static_cast<double>(x[j]) * x[j];
            p.mx = std::max(p.mx, std::fabs(d));
          }
          parts[static_cast<size_t>(r)] = p;
        }
      });
      for (const Part& p : parts) {
        se += p.se;
        sx += p.sx;
        mx = std::max(mx, p.mx);
      }
    }
    original.release(to);
    quantized.release(tq);
    TensorError e;
    e.tensor = tq.name;
    e.group = layer_group(tq.name);
    e.type = type_name(tq.type);
    e.n_elements = tq.n_elements();
    e.mse = se / static_cast<double>(e.n_elements);
    e.max_error = mx;
    e.rel_mse = sx > 0 ? se / sx : 0;
    e.bit_width = 8.0 * static_cast<double>(tq.row_bytes() * static_cast<uint64_t>(n_rows)) / static_cast<double>(e.n_elements);
    out.push_back(std::move(e));
    if (progress) progress->update("Layer errors", static_cast<int64_t>(k + 1), static_cast<int64_t>(todo.size()), "tensors");
  }
  if (progress) progress->finish("Layer errors");
  return out;
}

std::vector<LayerError> group_layer_errors(const std::vector<TensorError>& errors) {
  std::vector<LayerError> out;
  std::map<std::string, size_t> index;
  std::vector<double> sq, bits;
  for (const auto& e : errors) {
    auto [it, added] = index.emplace(e.group, out.size());
    if (added) {
      out.push_back(LayerError{e.group, 0, 0, 0, 0});
      sq.push_back(0);
      bits.push_back(0);
    }
    const size_t i = it->second;
    const double n = static_cast<double>(e.n_elements);
    sq[i] += e.mse * n;
    bits[i] += e.bit_width * n;
    out[i].n_elements += e.n_elements;
    out[i].max_error = std::max(out[i].max_error, e.max_error);
  }
  for (size_t i = 0; i < out.size(); ++i) {
    const double n = static_cast<double>(out[i].n_elements);
    out[i].mse = n > 0 ? sq[i] / n : 0;
    out[i].bit_width = n > 0 ? bits[i] / n : 0;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The report

int64_t default_quality_ctx(const ModelConfig& config, int64_t requested) noexcept {
  if (requested > 0) return requested;
  return config.n_ctx_train > 0 ? std::min<int64_t>(512, config.n_ctx_train) : 512;
}

namespace {

std::string now_iso() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string level_of(const ModelSource& src) {
  if (!src.is_gguf()) return {};
  const gguf::Metadata m = src.gguf_metadata();
  const auto ft = m.get_int("general.file_type");
  if (!ft) return {};
  try {
    return file_type_info(static_cast<FileType>(*ft & ~int64_t{1024})).name;  // 1024: llama.cpp's "guessed" flag
  } catch (const Error&) {
    return {};
  }
}

bool uses_imatrix(const ModelSource& src) {
  if (!src.is_gguf()) return false;
  const gguf::Metadata m = src.gguf_metadata();
  return m.contains("quantize.imatrix.file") || m.contains("quantize.imatrix.entries_count");
}

// A higher level to suggest: the usual level of the next bit count ("Q2_K" -> "Q3_K_M").
std::string next_level(const std::string& level) {
  const size_t d = level.find_first_of("0123456789");
  if (d == std::string::npos) return {};
  switch (level[d]) {
    case '1': return "Q2_K";
    case '2': return "Q3_K_M";
    case '3': return "Q4_K_M";
    case '4': return "Q5_K_M";
    case '5': return "Q6_K";
    case '6': return "Q8_0";
    default: return {};
  }
}

std::string short_prompt(const std::string& p) {
  if (p.size() <= 40) return p;
  size_t n = 37;
  while (n > 0 && (static_cast<unsigned char>(p[n]) & 0xC0) == 0x80) --n;
  return p.substr(0, n) + "...";
}

}  // namespace

void assess(QualityReport& r, const QualityOptions& o) {
  const double d = r.perplexity_delta_pct;
  std::optional<double> coh;
  if (r.coherence) coh = r.coherence->score;
  r.grade = quality_grade(d, coh);

  if (d > o.quality_threshold_pct)
    r.warnings.push_back(fmt::format("Perplexity increase {:.1f}% exceeds the threshold ({:g}%)", d, o.quality_threshold_pct));
  if (r.kld.n_scored > 0 && r.kld.same_top_pct < 90)
    r.warnings.push_back(fmt::format("The most likely next token differs from the original's on {:.1f}% of the tokens",
                                     100 - r.kld.same_top_pct));
  if (r.coherence) {
    if (r.coherence->score < o.coherence_threshold)
      r.warnings.push_back(fmt::format("Coherence score {:.2f} is below the threshold ({:g})", r.coherence->score,
                                       o.coherence_threshold));
    for (const auto& s : r.coherence->samples)
      if (!s.is_coherent)
        r.warnings.push_back(fmt::format("Prompt \"{}\": incoherent continuation (repetition {:.2f}, fluency {:.2f})",
                                         short_prompt(s.prompt), s.repetition_score, s.grammar_score));
  }
  if (r.tensor_errors.size() >= 4) {
    std::vector<double> rel;
    for (const auto& e : r.tensor_errors) rel.push_back(e.rel_mse);
    std::nth_element(rel.begin(), rel.begin() + static_cast<std::ptrdiff_t>(rel.size() / 2), rel.end());
    const double median = rel[rel.size() / 2];
    const auto worst = std::max_element(r.tensor_errors.begin(), r.tensor_errors.end(),
                                        [](const auto& a, const auto& b) { return a.rel_mse < b.rel_mse; });
    if (median > 0 && worst->rel_mse > 4 * median)
      r.warnings.push_back(fmt::format("{} ({}) has a relative error {:.1f}x the median tensor's", worst->tensor,
                                       worst->type, worst->rel_mse / median));
  }

  const bool ppl_bad = d >= 5, coh_bad = coh && *coh < o.coherence_threshold;
  if ((ppl_bad || coh_bad) && !r.quantized_with_imatrix)
    r.recommendations.push_back(
        "Quantize with an importance matrix (--imatrix; compute one with `lq analyze MODEL`)");
  if (d >= 15 || coh_bad) {
    const std::string up = next_level(r.quantization_level);
    if (!up.empty())
      r.recommendations.push_back(fmt::format("Use a higher level: -q {} instead of {}", up, r.quantization_level));
    else
      r.recommendations.push_back("Use a higher quantization level (more bits per weight)");
    r.recommendations.push_back(
        "Use a dynamic profile that keeps sensitive layers at higher precision (-q dynamic --profile attention-high)");
  }
  if (d >= 30 || coh_bad)
    r.recommendations.push_back(r.quantized_with_imatrix
                                    ? "Protect super weights (--protect-super-weights)"
                                    : "Protect super weights (--imatrix FILE --protect-super-weights)");
  if (coh_bad)
    r.recommendations.push_back("Ultra-low-bit quantization may be too aggressive: consider Q2_K or dynamic quantization");
}

namespace {

void check_vocabularies(const std::string& a_name, const Tokenizer& a, const std::string& b_name, const Tokenizer& b) {
  const std::string why = vocabulary_mismatch(a, b);
  if (!why.empty())
    throw Error(Errc::invalid_argument, fmt::format("{} and {} do not share a vocabulary: {}", a_name, b_name, why),
                "Compare a quantized model with the model it was made from");
}

QualityReport report_impl(const ModelSource& original_src, const Model& original, const ModelSource& quantized_src,
                          const Model& quantized, const QualityOptions& o, const Tokenizer* checked) {
  const auto t0 = std::chrono::steady_clock::now();
  Progress& progress = o.progress ? *o.progress : null_progress();
  if (o.samples <= 0) fail(Errc::invalid_argument, "quality: the number of calibration samples must be positive, got {}", o.samples);
  QualityReport r;
  r.original_model = original_src.path().string();
  r.quantized_model = quantized_src.path().string();
  r.quantization_level = level_of(quantized_src);
  r.quantized_with_imatrix = uses_imatrix(quantized_src);

  const Tokenizer tok = checked ? *checked : tokenizer_for(original_src);
  if (!checked) check_vocabularies(r.original_model, tok, r.quantized_model, tokenizer_for(quantized_src));
  if (original.n_vocab() != quantized.n_vocab())
    fail(Errc::invalid_argument, "{} and {} do not share a vocabulary: {} vs {} embedding rows", r.original_model,
         r.quantized_model, original.n_vocab(), quantized.n_vocab());

  const CalibrationData calib = o.calibration ? *o.calibration : default_calibration();
  r.calibration_source = calib.source;
  const std::vector<int32_t> tokens = calibration_tokens(tok, calib);
  r.calibration_tokens = static_cast<int64_t>(tokens.size());
  r.ctx = default_quality_ctx(original.config(), o.ctx);
  if (r.ctx < 3) fail(Errc::invalid_argument, "quality: ctx must be at least 3, got {}", r.ctx);
  const int64_t stream = r.calibration_tokens + (original.add_bos() && original.bos_token() >= 0 ? 1 : 0);
  const int64_t available = stream / r.ctx;
  if (stream < 2 * r.ctx)
    throw Error(Errc::calibration_error,
                fmt::format("{}: {} tokens, too short for one evaluation chunk (at least 2 x ctx = {} tokens are needed)",
                            calib.source, stream, 2 * r.ctx),
                "Use a longer calibration text or a smaller --ctx");
  r.chunks = std::min(available, o.samples);
  if (available < o.samples)
    r.warnings.push_back(fmt::format("The calibration data holds {} chunks of {} tokens; evaluated {} instead of {}",
                                     available, r.ctx, r.chunks, o.samples));

  progress.message(fmt::format("Computing perplexity and KL divergence: {} chunks of {} tokens ({})", r.chunks, r.ctx,
                               calib.source));
  PerplexityOptions po;
  po.ctx = r.ctx;
  po.chunks = r.chunks;
  po.progress = [&](int64_t done, int64_t total, double) {
    check_interrupted();
    progress.update("Perplexity", done, total, "chunks");
  };
  r.kld = kl_divergence(quantized, original, tokens, po, Context{o.threads});
  progress.finish("Perplexity");
  r.perplexity_original = r.kld.ppl_reference;
  r.perplexity_quantized = r.kld.ppl;
  r.perplexity_delta_pct = 100.0 * (r.perplexity_quantized / r.perplexity_original - 1.0);

  r.original_size = size_info(original_src);
  r.quantized_size = size_info(quantized_src);
  r.effective_bpw = r.quantized_size.bpw;
  r.compression_ratio = r.original_size.file_bytes
                            ? static_cast<double>(r.quantized_size.file_bytes) / static_cast<double>(r.original_size.file_bytes)
                            : 0;

  if (o.include_layers) {
    progress.message("Computing per-layer weight errors");
    r.tensor_errors = weight_errors(original_src, quantized_src, o.threads, &progress);
    r.layer_errors = group_layer_errors(r.tensor_errors);
  }
  if (o.coherence) {
    CoherenceOptions co = o.coherence_options;
    if (co.threads == 0) co.threads = o.threads;
    if (!co.progress) co.progress = o.progress;
    progress.message(fmt::format("Coherence check: {} prompt(s), {} tokens each",
                                 co.prompts.empty() ? default_coherence_prompts().size() : co.prompts.size(),
                                 co.max_tokens));
    r.coherence = coherence_check(quantized, original, tok, co);
  }
  assess(r, o);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.timestamp = now_iso();
  return r;
}

}  // namespace

QualityReport quality_report(const ModelSource& original_src, const Model& original, const ModelSource& quantized_src,
                             const Model& quantized, const QualityOptions& o) {
  return report_impl(original_src, original, quantized_src, quantized, o, nullptr);
}

QualityReport quality_report(const fs::path& original, const fs::path& quantized, const QualityOptions& o) {
  Progress& progress = o.progress ? *o.progress : null_progress();
  progress.message(fmt::format("Loading original model: {}", original.string()));
  auto osrc = ModelSource::open(original);
  progress.message(fmt::format("Loading quantized model: {}", quantized.string()));
  auto qsrc = ModelSource::open(quantized);
  const Tokenizer tok = tokenizer_for(*osrc);
  check_vocabularies(original.string(), tok, quantized.string(), tokenizer_for(*qsrc));
  auto om = Model::load(*osrc);
  auto qm = Model::load(*qsrc);
  return report_impl(*osrc, *om, *qsrc, *qm, o, &tok);
}

// ---------------------------------------------------------------------------------------------
// JSON

namespace {

json coherence_json(const CoherenceResult& c) {
  json a = json::array();
  for (const auto& s : c.samples)
    a.push_back({{"prompt", s.prompt},
                 {"output", s.output},
                 {"is_coherent", s.is_coherent},
                 {"repetition_score", s.repetition_score},
                 {"grammar_score", s.grammar_score},
                 {"score", s.score},
                 {"mean_logprob", s.mean_logp},
                 {"reference_output", s.reference_output},
                 {"reference_mean_logprob", s.reference_mean_logp},
                 {"reference_repetition_score", s.reference_repetition_score}});
  return a;
}

json opt_number(const std::optional<CoherenceResult>& c) {
  return c ? json(c->score) : json(nullptr);
}

}  // namespace

json QualityReport::to_json() const {
  json layers = json::array();
  for (const auto& l : layer_errors)
    layers.push_back({{"layer_name", l.layer_name},
                      {"mse", l.mse},
                      {"max_error", l.max_error},
                      {"bit_width", l.bit_width},
                      {"parameter_count", l.n_elements}});
  json j = {
      {"status", "success"},
      {"original_model", original_model},
      {"quantized_model", quantized_model},
      {"quantization_level", quantization_level.empty() ? json(nullptr) : json(quantization_level)},
      {"metrics",
       {{"perplexity_original", perplexity_original},
        {"perplexity_quantized", perplexity_quantized},
        {"perplexity_delta_pct", perplexity_delta_pct},
        {"effective_bpw", effective_bpw},
        {"compression_ratio", compression_ratio},
        {"kld_mean", kld.kld_mean},
        {"kld_median", kld.kld_median},
        {"kld_p99", kld.kld_p99},
        {"kld_max", kld.kld_max},
        {"same_top_pct", kld.same_top_pct},
        {"delta_p_rms_pct", kld.delta_p_rms_pct},
        {"original_bpw", original_size.bpw},
        {"original_file_size", original_size.file_bytes},
        {"quantized_file_size", quantized_size.file_bytes},
        {"parameter_count", quantized_size.n_weights}}},
      {"evaluation",
       {{"calibration_data", calibration_source},
        {"calibration_tokens", calibration_tokens},
        {"ctx", ctx},
        {"chunks", chunks},
        {"tokens_scored", kld.n_scored}}},
      {"layer_errors", layers},
      {"coherence_score", opt_number(coherence)},
      {"quality_grade", grade_name(grade)},
      {"warnings", warnings},
      {"recommendations", recommendations},
      {"duration_seconds", seconds},
      {"timestamp", timestamp},
  };
  if (!tensor_errors.empty()) {
    json t = json::array();
    for (const auto& e : tensor_errors)
      t.push_back({{"tensor", e.tensor},
                   {"layer_name", e.group},
                   {"type", e.type},
                   {"mse", e.mse},
                   {"max_error", e.max_error},
                   {"rel_mse", e.rel_mse},
                   {"bit_width", e.bit_width},
                   {"parameter_count", e.n_elements}});
    j["tensor_errors"] = t;
  }
  if (coherence) j["coherence_results"] = coherence_json(*coherence);
  return j;
}

json QualityReport::to_analysis_json() const {
  fs::path q = quantized_model;
  std::string name = q.filename().string();
  if (q.extension() == ".gguf") name = q.stem().string();
  if (name.empty()) name = q.parent_path().filename().string();
  json j = {{"model_name", name},
            {"reference_model", original_model},
            {"quantization_format", q.extension() == ".gguf" ? "gguf" : "hf"},
            {"quantization_level", quantization_level.empty() ? json(nullptr) : json(quantization_level)},
            {"perplexity_original", perplexity_original},
            {"perplexity_quantized", perplexity_quantized},
            {"perplexity_increase_percent", perplexity_delta_pct},
            {"kld_mean", kld.kld_mean},
            {"same_top_pct", kld.same_top_pct},
            {"effective_bpw", effective_bpw},
            {"compression_ratio", compression_ratio},
            {"coherence_score", opt_number(coherence)},
            {"coherence_results", coherence ? coherence_json(*coherence) : json::array()},
            {"quality_grade", grade_name(grade)},
            {"warnings", warnings},
            {"recommendations", recommendations},
            {"test_data", calibration_source},
            {"ctx", ctx},
            {"chunks", chunks},
            {"timestamp", timestamp}};
  return j;
}

}  // namespace lq
