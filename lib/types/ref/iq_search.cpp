#include "types/ref/iq_search.hpp"

#include "core/float_cast.hpp"

#include "types/ref/importance.hpp"

#include "core/half.hpp"
#include "types/ref/iq_tables.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>

namespace lq::ref {
namespace {

constexpr int kPow3[8] = {1, 3, 9, 27, 81, 243, 729, 2187};

// Level index of one codebook byte: IQ2 grids hold magnitudes 8/25/43, the IQ1 grid -1/0/+1.
int level_of(uint8_t byte, bool ternary) {
  if (ternary) return static_cast<int8_t>(byte) + 1;
  return byte == 8 ? 0 : byte == 25 ? 1 : 2;
}

// Neighbour lists: for a key off the codebook, the entries at the `nwant` smallest distinct
// squared distances (in level steps) from it. Rounding lands off the codebook in most groups,
// and the exact weighted cost then picks among these.
IqGrid build_grid(const uint64_t* table, int n, bool ternary, int nwant) {
  IqGrid g;
  g.size = n;
  g.levels.resize(static_cast<size_t>(n) * 8);
  g.map.assign(kIqKeys, -1);
  for (int e = 0; e < n; ++e) {
    int key = 0;
    for (int k = 0; k < 8; ++k) {
      const int l = level_of(static_cast<uint8_t>(table[e] >> (8 * k)), ternary);
      g.levels[static_cast<size_t>(e) * 8 + k] = static_cast<uint8_t>(l);
      key += l * kPow3[k];
    }
    g.map[key] = e;
  }
  std::vector<uint8_t> dist(n);
  for (int key = 0; key < kIqKeys; ++key) {
    if (g.map[key] >= 0) continue;
    int p[8];
    for (int k = 0, r = key; k < 8; ++k, r /= 3) p[k] = r % 3;
    int count[33] = {};
    for (int e = 0; e < n; ++e) {
      const uint8_t* q = &g.levels[static_cast<size_t>(e) * 8];
      int d2 = 0;
      for (int k = 0; k < 8; ++k) d2 += (p[k] - q[k]) * (p[k] - q[k]);
      dist[e] = static_cast<uint8_t>(d2);
      ++count[d2];
    }
    int limit = 0, have = 0;
    for (int d2 = 0; d2 <= 32 && have < nwant; ++d2) {
      if (count[d2]) { limit = d2; ++have; }
    }
    g.map[key] = -1 - static_cast<int32_t>(g.neighbours.size());
    const size_t at = g.neighbours.size();
    g.neighbours.push_back(0);
    for (int e = 0; e < n; ++e) {
      if (dist[e] > limit) continue;
      const uint8_t* q = &g.levels[static_cast<size_t>(e) * 8];
      uint32_t packed = static_cast<uint32_t>(e) << 16;
      for (int k = 0; k < 4; ++k) packed |= static_cast<uint32_t>(q[2 * k] + 3 * q[2 * k + 1]) << (4 * k);
      g.neighbours.push_back(packed);
    }
    g.neighbours[at] = static_cast<uint32_t>(g.neighbours.size() - at - 1);
  }
  return g;
}

// Chosen entry of one group of 8 and its sums A = sum w a v, B = sum w v^2; the weighted error
// at scale s is sum w a^2 + s^2 B - 2 s A.
struct Pick {
  int index;
  float A, B;
};

// Best entry for scale s: per-element rounding is optimal when it lands on the codebook;
// otherwise the neighbours of the rounded point are costed exactly.
inline float pick(const IqGrid& g, const float* a, const float* w, const float* v, float s, Pick& p) {
  const float t1 = 0.5f * s * (v[0] + v[1]);
  const float t2 = 0.5f * s * (v[1] + v[2]);
  int l[8];
  for (int k = 0; k < 8; ++k) l[k] = (a[k] > t1) + (a[k] > t2);
  const int key = (l[0] + 3 * l[1] + 9 * (l[2] + 3 * l[3])) + 81 * (l[4] + 3 * l[5] + 9 * (l[6] + 3 * l[7]));
  int e = g.map[key];
  if (e < 0) {
    // Costs of each level pair of coordinates (2p, 2p+1); a candidate costs four lookups.
    float c[8][3], P[4][9];
    for (int k = 0; k < 8; ++k)
      for (int j = 0; j < 3; ++j) {
        const float diff = a[k] - s * v[j];
        c[k][j] = w[k] * diff * diff;
      }
    for (int q = 0; q < 4; ++q)
      for (int j1 = 0; j1 < 3; ++j1)
        for (int j0 = 0; j0 < 3; ++j0) P[q][3 * j1 + j0] = c[2 * q][j0] + c[2 * q + 1][j1];
    const uint32_t* nb = &g.neighbours[static_cast<size_t>(-e - 1)];
    const uint32_t count = nb[0];
    ++nb;
    auto cost_of = [&P](uint32_t n) {
      return (P[0][n & 15] + P[1][(n >> 4) & 15]) + (P[2][(n >> 8) & 15] + P[3][(n >> 12) & 15]);
    };
    // Two independent running minima: the compare chain, not the lookups, bounds this loop.
    float best0 = std::numeric_limits<float>::max(), best1 = best0;
    uint32_t chosen0 = nb[0], chosen1 = nb[0];
    uint32_t j = 0;
    for (; j + 1 < count; j += 2) {
      const float c0 = cost_of(nb[j]), c1 = cost_of(nb[j + 1]);
      if (c0 < best0) { best0 = c0; chosen0 = nb[j]; }
      if (c1 < best1) { best1 = c1; chosen1 = nb[j + 1]; }
    }
    if (j < count) {
      const float c0 = cost_of(nb[j]);
      if (c0 < best0) { best0 = c0; chosen0 = nb[j]; }
    }
    e = static_cast<int>((best1 < best0 ? chosen1 : chosen0) >> 16);
  }
  const uint8_t* q = &g.levels[static_cast<size_t>(e) * 8];
  float A = 0, B = 0;
  for (int k = 0; k < 8; ++k) {
    const float vk = v[q[k]];
    A += w[k] * a[k] * vk;
    B += w[k] * vk * vk;
  }
  p = {e, A, B};
  return s * s * B - 2 * s * A;
}

// Entries (and level sets) of one unit at scale s.
struct UnitFit {
  float cost = 0, A = 0, B = 0;
  uint16_t index[4] = {};
  uint8_t variant[4] = {};
};

class Solver {
 public:
  Solver(const IqFormat& f, const float* a, const float* w)
      : f_(f), g_(iq_grid(f.codebook)), a_(a), w_(w), groups_(f.unit / 8), units_(256 / f.unit) {}

  // With `only`, each group keeps the level set given there (one per group of the unit).
  void eval_unit(int u, float s, UnitFit& fit, const uint8_t* only = nullptr) const {
    const float* a = a_ + u * f_.unit;
    const float* w = w_ + u * f_.unit;
    Pick p;
    if (only || f_.variants == 1 || f_.variant_per_group) {
      fit = UnitFit{};
      for (int k = 0; k < groups_; ++k) {
        const int v0 = only ? only[k] : 0, v1 = only ? only[k] + 1 : f_.variants;
        float best = std::numeric_limits<float>::max();
        Pick bp{};
        int bv = v0;
        for (int v = v0; v < v1; ++v) {
          const float c = pick(g_, a + 8 * k, w + 8 * k, f_.levels[v], s, p);
          if (c < best) { best = c; bp = p; bv = v; }
        }
        fit.cost += best;
        fit.A += bp.A;
        fit.B += bp.B;
        fit.index[k] = static_cast<uint16_t>(bp.index);
        fit.variant[k] = static_cast<uint8_t>(bv);
      }
      return;
    }
    for (int v = 0; v < f_.variants; ++v) {
      UnitFit t;
      for (int k = 0; k < groups_; ++k) {
        t.cost += pick(g_, a + 8 * k, w + 8 * k, f_.levels[v], s, p);
        t.A += p.A;
        t.B += p.B;
        t.index[k] = static_cast<uint16_t>(p.index);
        t.variant[k] = static_cast<uint8_t>(v);
      }
      if (v == 0 || t.cost < fit.cost) fit = t;
    }
  }

  // Best continuous scale of unit u: from several starting scales, choose the entries, refit the
  // scale to them by least squares (score A^2 / B) and repeat `steps` times. Also records each
  // group's level set at the best scale.
  float unit_scale(int u) {
    const float* a = a_ + u * f_.unit;
    float amax = 0;
    for (int i = 0; i < f_.unit; ++i) amax = std::max(amax, std::fabs(a[i]));
    if (!(amax > 0)) return 0;
    float top = 0;
    for (int v = 0; v < f_.variants; ++v) top = std::max({top, std::fabs(f_.levels[v][0]), std::fabs(f_.levels[v][2])});
    float best_score = 0, best_s = 0;
    UnitFit fit;
    for (int t = 0; t < f_.trials; ++t) {
      const float r = f_.trial_lo + (f_.trial_hi - f_.trial_lo) * t / std::max(1, f_.trials - 1);
      float s = amax / (top * r);
      for (int it = 0; it < f_.steps; ++it) {
        eval_unit(u, s, fit);
        if (!(fit.A > 0 && fit.B > 0)) break;
        const float score = fit.A * fit.A / fit.B;
        if (score > best_score) {
          best_score = score;
          best_s = fit.A / fit.B;
          std::copy(fit.variant, fit.variant + groups_, fixed_ + u * groups_);
        }
        s = fit.A / fit.B;
      }
    }
    return best_s;
  }

  // Total cost with super-block scale D: per unit, the better of the two codes around its
  // continuous scale, each group keeping the level set it had there.
  float eval_d(float D, const float* sstar, uint8_t* l, UnitFit* fits) const {
    float total = 0;
    UnitFit fit;
    for (int u = 0; u < units_; ++u) {
      int l0 = 0, l1 = 0;
      if (sstar[u] > 0) {
        const float c = 0.5f * (sstar[u] / (D * f_.mult) - 1);
        l0 = std::clamp(trunc_i32(std::floor(c)), 0, f_.lmax);
        l1 = std::clamp(l0 + 1, 0, f_.lmax);
      }
      float best = std::numeric_limits<float>::max();
      for (int c = l0; c <= l1; ++c) {
        eval_unit(u, D * f_.mult * (2 * c + 1), fit, fixed_ + u * groups_);
        if (fit.cost < best) { best = fit.cost; l[u] = static_cast<uint8_t>(c); fits[u] = fit; }
      }
      total += best;
    }
    return total;
  }

  int units() const { return units_; }
  int groups() const { return groups_; }

 private:
  const IqFormat& f_;
  const IqGrid& g_;
  const float* a_;
  const float* w_;
  int groups_, units_;
  uint8_t fixed_[32] = {};  // level set per group at the unit's best continuous scale
};

}  // namespace

const IqGrid& iq_grid(IqCodebook cb) {
  static std::once_flag once[4];
  static IqGrid grids[4];
  const int i = static_cast<int>(cb);
  std::call_once(once[i], [i] {
    switch (static_cast<IqCodebook>(i)) {
      case IqCodebook::iq2xxs: grids[i] = build_grid(iq2xxs_grid, 256, false, 2); break;
      case IqCodebook::iq2xs: grids[i] = build_grid(iq2xs_grid, 512, false, 2); break;
      case IqCodebook::iq2s: grids[i] = build_grid(iq2s_grid, 1024, false, 1); break;
      case IqCodebook::iq1s: grids[i] = build_grid(iq1s_grid, 2048, true, 2); break;
    }
  });
  return grids[i];
}

float iq_importance_floor(const float* imatrix, int64_t n) {
  if (!imatrix || n <= 0) return 0;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += imatrix[i];
  return static_cast<float>(0.1 * sum / n);
}

void iq_weights(const float* x, const float* imatrix, float floor, float sigma_mult, float* w) {
  magnitude_weights(x, imatrix, floor, sigma_mult, w);
}

void iq_solve(const IqFormat& f, const float* a_in, const float* w_in, IqSolution& out) {
  out = IqSolution{};
  // Work in units of the block's largest magnitude and weight: the search is scale-invariant,
  // and this keeps sums of squares far from float overflow/underflow for extreme inputs.
  float amax = 0, wmax = 0;
  for (int i = 0; i < 256; ++i) {
    amax = std::max(amax, std::fabs(a_in[i]));
    wmax = std::max(wmax, w_in[i]);
  }
  if (!(amax > 0) || !std::isfinite(amax)) return;
  const bool uniform = !(wmax > 0) || !std::isfinite(wmax);
  float a[256], w[256];
  for (int i = 0; i < 256; ++i) {  // divisions: a reciprocal of a subnormal maximum overflows
    a[i] = a_in[i] / amax;
    w[i] = uniform ? 1.f : w_in[i] / wmax;
  }
  // Stored scales are fp16 in the original units.
  auto round_d = [amax](float d) {
    return fp16_to_f32(f32_to_fp16(std::min(d * amax, 65504.f))) / amax;
  };

  Solver S(f, a, w);
  const int nu = S.units();
  float sstar[16];
  float smax = 0;
  for (int u = 0; u < nu; ++u) {
    sstar[u] = S.unit_scale(u);
    smax = std::max(smax, sstar[u]);
  }
  if (!(smax > 0)) return;
  const float dref = smax / (f.mult * (2 * f.lmax + 1));

  uint8_t l[16], best_l[16];
  UnitFit fits[16], best_fits[16];
  float best = std::numeric_limits<float>::max(), best_d = 0;
  auto consider = [&](float d) {
    d = round_d(d);
    if (!(d > 0)) return;
    const float c = S.eval_d(d, sstar, l, fits);
    if (c < best) {
      best = c;
      best_d = d;
      std::memcpy(best_l, l, sizeof(l));
      std::copy(fits, fits + nu, best_fits);
    }
  };
  // Start where the largest unit scale gets the largest code; refitting D to the chosen codes
  // (which re-chooses codes and entries) does the rest.
  consider(dref);
  for (int it = 0; it < f.refits && best_d > 0; ++it) {
    // Least-squares D for the chosen codes and entries, then re-choose them for it.
    float num = 0, den = 0;
    for (int u = 0; u < nu; ++u) {
      const float m = f.mult * (2 * best_l[u] + 1);
      num += m * best_fits[u].A;
      den += m * m * best_fits[u].B;
    }
    if (!(num > 0 && den > 0)) break;
    const float prev = best_d;
    consider(num / den);
    if (best_d == prev) break;
  }
  if (!(best_d > 0)) return;
  {
    // Final scale against least-squares shrinkage. For fixed codes the weighted least-squares
    // scale A / B (A = sum w x q, B = sum w q^2) leaves an error orthogonal to the
    // reconstruction, so every block comes out smaller than the original by its relative error
    // (large at 1-2 bits); the shrink of all the blocks of a row adds up coherently in the
    // layer's output and compounds through the layers, which the diagonal objective does not see.
    // The scale minimising sum w e^2 + lambda (sum w e x)^2 / sum w x^2 is
    // (1 + lambda) A / (B + lambda A^2 / X), X = sum w x^2. lambda = 1 measured on the tiny model
    // (KL divergence, level_quality_bench): IQ1_S 0.240 -> 0.188, IQ1_M 0.189 -> 0.156, IQ2_XXS
    // 0.097 -> 0.090; every tensor's imatrix-weighted error stays below llama.cpp's (lambda = 4
    // lowers the KL divergence a little more but not that error).
    constexpr float lambda = 1.f;
    float A = 0, B = 0, X = 0;
    for (int u = 0; u < nu; ++u) {
      const float m = f.mult * (2 * best_l[u] + 1);
      A += m * best_fits[u].A;
      B += m * m * best_fits[u].B;
    }
    for (int i = 0; i < 256; ++i) X += w[i] * a[i] * a[i];
    if (A > 0 && B > 0 && X > 0) {
      const float d = round_d((1 + lambda) * A / (B + lambda * A * (A / X)));
      if (d > 0) best_d = d;
    }
  }

  out.d = fp16_to_f32(f32_to_fp16(best_d * amax));
  for (int u = 0; u < nu; ++u) {
    out.l[u] = best_l[u];
    for (int k = 0; k < S.groups(); ++k) {
      out.index[u * S.groups() + k] = best_fits[u].index[k];
      out.variant[u * S.groups() + k] = best_fits[u].variant[k];
    }
  }
}

}  // namespace lq::ref
