// Quality grades: each measurement's grade (perplexity increase, KL divergence, coherence), the
// overall one, and the warning for a text far from the model's domain. Thresholds only; nothing
// here measures.
#include "quality/internal.hpp"

#include <fmt/format.h>

#include <algorithm>
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

// The bounds are ln(1.05), ln(1.15), ln(1.30), ln(1.50) rounded: the perplexity grade's bounds
// on the log-ratio scale that the mean KLD tracks on llama.cpp's tables (Llama 3 8B: Q4_K_M
// 0.031 vs ln 1.028, Q3_K_M 0.102 vs ln 1.105, Q2_K 0.445 vs ln 1.565). 0.405 rather than 0.41:
// Q2_K_S at KLD 0.408 has +50.2% perplexity (FAILED) on that table.
QualityGrade grade_for_kld(double k) noexcept {
  if (std::isnan(k)) return QualityGrade::failed;
  if (k < 0.05) return QualityGrade::excellent;
  if (k < 0.14) return QualityGrade::good;
  if (k < 0.26) return QualityGrade::acceptable;
  if (k <= 0.405) return QualityGrade::degraded;
  return QualityGrade::failed;
}

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
