// Scale searches shared by the block quantizers: for a block x[0..n) with weights w, find the
// scale (and offset) and integer levels that minimise sum w_i (x_i - xhat_i)^2.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace lq::ref {

inline int nearest_int(float v) { return static_cast<int>(std::lrintf(v)); }

/// Symmetric levels l in [-nmax, nmax-1], xhat = d * l. Tries `ntry` inverse scales on each side
/// of nmax / max (step `step` levels) and keeps the best least-squares scale. Writes l + nmax to L.
/// Returns d (0 for an all-zero block). w may be nullptr (unweighted).
inline float search_symmetric(int n, int nmax, const float* x, const float* w, uint8_t* L,
                              int ntry, float step) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) { amax = ax; max = x[i]; }
  }
  if (amax < 1e-15f) {
    std::fill(L, L + n, static_cast<uint8_t>(nmax));
    return 0.f;
  }
  float best = -1, best_scale = 0;
  for (int is = -ntry; is <= ntry; ++is) {
    const float iscale = -(nmax + step * is) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float wi = w ? w[i] : 1.f;
      sumlx += wi * x[i] * l;
      suml2 += wi * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      best = sumlx * sumlx / suml2;
      best_scale = sumlx / suml2;
    }
  }
  if (best_scale == 0) best_scale = -max / nmax;
  for (int i = 0; i < n; ++i)
    L[i] = static_cast<uint8_t>(std::clamp(nearest_int(x[i] / best_scale), -nmax, nmax - 1) + nmax);
  return best_scale;
}

/// Re-rounds levels for a fixed (already stored) symmetric scale d: the per-element optimum.
inline void round_symmetric(int n, int nmax, const float* x, float d, uint8_t* L) {
  const float id = d != 0 ? 1.f / d : 0.f;
  for (int i = 0; i < n; ++i)
    L[i] = static_cast<uint8_t>(std::clamp(nearest_int(x[i] * id), -nmax, nmax - 1) + nmax);
}

/// Asymmetric levels l in [0, nmax], xhat = d * l + m with m <= 0. Tries nstep+1 inverse scales
/// (nmax + rmin + rdelta * k) / (max - min) and solves the weighted 2x2 least squares for each.
/// Returns d, writes m to *m_out. w may be nullptr (unweighted).
inline float search_affine(int n, int nmax, const float* x, const float* w, uint8_t* L, float* m_out,
                           float rmin, float rdelta, int nstep) {
  float mn = x[0], mx = x[0], sum_w = 0, sum_x = 0;
  for (int i = 0; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
    const float wi = w ? w[i] : 1.f;
    sum_w += wi;
    sum_x += wi * x[i];
  }
  if (mn > 0) mn = 0;
  if (mx <= mn) {
    std::fill(L, L + n, 0);
    *m_out = mn;
    return 0.f;
  }
  float best_d = (mx - mn) / nmax, best_m = mn, best_err = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int((x[i] - mn) / best_d), 0, nmax);
    L[i] = static_cast<uint8_t>(l);
    const float diff = best_d * l + mn - x[i];
    best_err += (w ? w[i] : 1.f) * diff * diff;
  }
  uint8_t Laux[256];
  // Levels level(x_i) (clamped to 0..nmax) into Laux, then the weighted least-squares (d, m) for
  // them (m <= 0) and its error; false where the system is singular.
  auto fit = [&](auto&& level, float& d, float& m, float& err) {
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(level(x[i]), 0, nmax);
      Laux[i] = static_cast<uint8_t>(l);
      const float wi = w ? w[i] : 1.f;
      sum_l += wi * l;
      sum_l2 += wi * l * l;
      sum_xl += wi * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D <= 0) return false;
    d = (sum_w * sum_xl - sum_x * sum_l) / D;
    m = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (m > 0) {
      m = 0;
      d = sum_xl / sum_l2;
    }
    err = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = d * Laux[i] + m - x[i];
      err += (w ? w[i] : 1.f) * diff * diff;
    }
    return true;
  };
  auto keep = [&](float d, float m, float err) {
    best_err = err;
    best_d = d;
    best_m = m;
    std::copy(Laux, Laux + n, L);
  };
  for (int is = 0; is <= nstep; ++is) {
    const float iscale = (rmin + rdelta * is + nmax) / (mx - mn);
    float d, m, err;
    if (!fit([&](float v) { return nearest_int(iscale * (v - mn)); }, d, m, err)) continue;
    if (err < best_err) keep(d, m, err);
  }
  // Refine: alternate re-rounding the levels and re-solving (d, m) while the error drops.
  for (int it = 0; it < 4 && best_d > 0; ++it) {
    float d, m, err;
    if (!fit([&](float v) { return nearest_int((v - best_m) / best_d); }, d, m, err)) break;
    if (!(err < best_err)) break;
    keep(d, m, err);
  }
  *m_out = best_m;
  return best_d;
}

/// Re-rounds affine levels for a fixed (stored) d and m.
inline void round_affine(int n, int nmax, const float* x, float d, float m, uint8_t* L) {
  const float id = d != 0 ? 1.f / d : 0.f;
  for (int i = 0; i < n; ++i)
    L[i] = static_cast<uint8_t>(std::clamp(nearest_int((x[i] - m) * id), 0, nmax));
}

}  // namespace lq::ref
