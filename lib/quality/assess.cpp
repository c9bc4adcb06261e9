// The assessment of a quality report: its grade, warnings (text far from the model's domain, a
// KLD worse than the perplexity shows, thresholds, top-token agreement, incoherent prompts,
// outlier tensors) and recommendations (importance matrix, a higher level,
// dynamic profiles, super-weight protection).
#include "quality/internal.hpp"

#include <lq/file_type.hpp>

#include <fmt/format.h>

#include <optional>

#include <algorithm>

namespace lq {

namespace {

// A higher level to suggest: the level table's next level up ("Q2_K" -> "Q3_K_M"); none for the
// top of the ladder (the float levels, Q8_0) or a name that is not a level.
std::string next_level(const std::string& level) {
  const std::optional<FileType> f = parse_file_type(level);
  if (!f) return {};
  const FileTypeInfo& info = file_type_info(*f);
  return info.has_next_up() ? file_type_info(info.next_up).name : std::string();
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
  std::optional<double> coh, kld;
  if (r.coherence) coh = r.coherence->score;
  if (r.kld.n_scored > 0) kld = r.kld.kld_mean;
  r.grade = quality_grade(d, kld, coh);
  const QualityGrade ppl_grade = grade_for_perplexity(d);
  const QualityGrade kld_grade = kld ? grade_for_kld(*kld) : QualityGrade::excellent;
  const QualityGrade text_grade = std::max(ppl_grade, kld_grade);

  if (const std::string w = domain_warning(r.perplexity_original, r.vocab_size); !w.empty()) r.warnings.push_back(w);
  if (kld_grade > ppl_grade)
    r.warnings.push_back(fmt::format("KL divergence {:.4f} grades {}, worse than the perplexity change ({:+.1f}%, {}): "
                                     "the quantized model's predictions differ from the original's more than its "
                                     "perplexity shows",
                                     *kld, grade_name(kld_grade), d, grade_name(ppl_grade)));
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

  const bool ppl_bad = text_grade >= QualityGrade::good, coh_bad = coh && *coh < o.coherence_threshold;
  if ((ppl_bad || coh_bad) && !r.quantized_with_imatrix)
    r.recommendations.push_back(
        "Quantize with an importance matrix (--imatrix; compute one with `lq analyze MODEL`)");
  if (text_grade >= QualityGrade::acceptable || coh_bad) {
    const std::string up = next_level(r.quantization_level);
    if (!up.empty())
      r.recommendations.push_back(fmt::format("Use a higher level: -q {} instead of {}", up, r.quantization_level));
    else
      r.recommendations.push_back("Use a higher quantization level (more bits per weight)");
    r.recommendations.push_back(
        "Use a dynamic profile that keeps sensitive layers at higher precision (-q dynamic --profile attention-high)");
  }
  if (text_grade >= QualityGrade::degraded || coh_bad)
    r.recommendations.push_back(r.quantized_with_imatrix
                                    ? "Protect super weights (--protect-super-weights)"
                                    : "Protect super weights (--imatrix FILE --protect-super-weights)");
  if (coh_bad)
    r.recommendations.push_back("Ultra-low-bit quantization may be too aggressive: consider Q2_K or dynamic quantization");
}

}  // namespace lq
