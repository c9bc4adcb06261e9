// Quality grades: each measurement's grade (perplexity increase, KL divergence, coherence), the
// overall one, and the warning for a text far from the model's domain. Thresholds only; nothing
// here measures.
#include "quality/internal.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace lq {

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

namespace {

// The grade of a measurement where lower is better: excellent below bound[0], good below
// bound[1], acceptable below bound[2], degraded up to bound[3] inclusive; failed above or NaN.
QualityGrade grade_by_bounds(double v, const std::array<double, 4>& bound) noexcept {
  if (std::isnan(v) || v > bound[3]) return QualityGrade::failed;
  int g = 0;
  while (g < 3 && v >= bound[static_cast<size_t>(g)]) ++g;
  return static_cast<QualityGrade>(g);
}

}  // namespace

QualityGrade grade_for_perplexity(double d) noexcept { return grade_by_bounds(d, {5, 15, 30, 50}); }

// Higher coherence is better: the bounds apply to its negation (above 0.95 excellent, ...,
// 0.50 inclusive degraded).
QualityGrade grade_for_coherence(double c) noexcept { return grade_by_bounds(-c, {-0.95, -0.85, -0.70, -0.50}); }

// The bounds are ln(1.05), ln(1.15), ln(1.30), ln(1.50) rounded: the perplexity grade's bounds
// on the log-ratio scale that the mean KLD tracks on llama.cpp's tables (Llama 3 8B: Q4_K_M
// 0.031 vs ln 1.028, Q3_K_M 0.102 vs ln 1.105, Q2_K 0.445 vs ln 1.565). 0.405 rather than 0.41:
// Q2_K_S at KLD 0.408 has +50.2% perplexity (FAILED) on that table.
QualityGrade grade_for_kld(double k) noexcept { return grade_by_bounds(k, {0.05, 0.14, 0.26, 0.405}); }

QualityGrade quality_grade(double ppl_delta_pct, std::optional<double> kld_mean,
                           std::optional<double> coherence) noexcept {
  QualityGrade g = grade_for_perplexity(ppl_delta_pct);
  if (kld_mean) g = std::max(g, grade_for_kld(*kld_mean));
  if (coherence) g = std::max(g, grade_for_coherence(*coherence));
  return g;
}

QualityGrade quality_grade(double ppl_delta_pct, std::optional<double> coherence) noexcept {
  return quality_grade(ppl_delta_pct, std::nullopt, coherence);
}

std::string domain_warning(double ppl, int64_t vocab_size) {
  if (vocab_size < 2 || !(ppl > std::sqrt(static_cast<double>(vocab_size)))) return {};
  return fmt::format(
      "The original model's own perplexity on this text is {:.1f} (a uniform guess over its {}-token vocabulary "
      "scores {}): the text is far from the model's domain, so perplexity changes say little here; judge by the "
      "KL divergence and same-top figures, or evaluate on text like the model's (--calibration-data)",
      ppl, vocab_size, vocab_size);
}

}  // namespace lq
