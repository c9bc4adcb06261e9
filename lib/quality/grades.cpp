// Quality grades: each measurement's grade (perplexity increase, coherence) and the overall one.
// Thresholds only; nothing here measures.
#include "quality/internal.hpp"

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

QualityGrade quality_grade(double ppl_delta_pct, std::optional<double> coherence) noexcept {
  QualityGrade g = grade_for_perplexity(ppl_delta_pct);
  if (coherence) g = std::max(g, grade_for_coherence(*coherence));
  return g;
}

}  // namespace lq
