// The k-quant scale search, shared by the reference quantizers (4 floats per vector) and the
// CPU kernels (8 or 16 per vector): every result is defined per lane, so every vector width
// writes the same bytes.
//
// Layout: a 256-value super-block is held lane-major in a Tile. Lane j is sub-block j and
// x[i] holds the i-th value of every sub-block, so each search step is the same arithmetic on
// all lanes, and every per-lane sum runs in element order whatever the vector width.
//
// Objective: sum_i w_i (x_i - xhat_i)^2, w = importance weights (1 without an imatrix).
// Search per super-block:
//  1. per sub-block, a few candidate steps (and offsets) around the full-range one; for each,
//     round the levels and solve the weighted least squares for them; keep the best;
//  2. fp16 super-scale(s) from the largest sub-block scale(s);
//  3. per sub-block, the integer sub-scales around the best scale on that grid (the 2 or 2x2
//     neighbours), each with its levels re-rounded; keep the one with the smallest exact error;
//  4. a joint least-squares refit of the super-scale(s) for those integers and step 3 again on
//     the new grid, kept when it lowers the super-block's error.
// Errors are computed from the sums (sum w x^2 left out, a per-lane constant).
//
// Vectors are GCC/Clang vector extensions. Byte-identical results across vector widths need
// (a) no contraction of a * b + c into fused multiply-adds, switched off below for this file,
// and (b) no call to an inline function compiled with another TU's ISA flags: everything here
// is a template on Tag (the ISA), including the scalar helpers and the fp16 rounding.
#pragma once

#include "types/ref/blocks.hpp"
#include "types/ref/importance.hpp"

#include <cstdint>
#include <cstring>

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

namespace lq::ref::kq {

template <int W>
struct VecT;
template <>
struct VecT<4> {
  typedef float F __attribute__((vector_size(16)));
  typedef int32_t I __attribute__((vector_size(16)));
};
template <>
struct VecT<8> {
  typedef float F __attribute__((vector_size(32)));
  typedef int32_t I __attribute__((vector_size(32)));
};
template <>
struct VecT<16> {
  typedef float F __attribute__((vector_size(64)));
  typedef int32_t I __attribute__((vector_size(64)));
};

inline constexpr float kRoundMagic = 12582912.f;  // 1.5 * 2^23: (v + M) - M rounds |v| < 2^22 to nearest-even
inline constexpr float kMaxHalf = 65504.f;
inline constexpr float kInf = __builtin_inff();

// A candidate step. Affine: the sub-block range spans nmax + delta steps and the offset moves
// by `phase` steps. Symmetric: the largest-magnitude value maps to level -(nlo + delta) (the
// wide side), or with `narrow` to nhi + delta.
struct Candidate {
  float delta;
  float phase = 0;
  bool narrow = false;
};

// How hard to search: the candidate steps, the integer sub-scale neighbours tried ({scale, min}
// offsets from the lower neighbour; symmetric types use the first), super-scale refits.
struct Plan {
  const Candidate* cands;
  int ncands;
  const int (*box)[2];
  int nbox;
  int refits;
};

// Scalar helpers (no library calls, see above).
template <class Tag>
struct Scalar {
  static float min(float a, float b) { return b < a ? b : a; }
  static float max(float a, float b) { return a < b ? b : a; }
  static float clamp(float v, float lo, float hi) { return min(max(v, lo), hi); }
  static float abs(float v) { return v < 0 ? -v : v; }
  static uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  }
  static float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  // f rounded to the nearest fp16 value (ties to even), for |f| <= 65504: adding and removing
  // C = 2^(e + 13) (e = exponent of |f|, at least -14) leaves exactly the fp16 precision.
  static float fp16_round(float f) {
    const float a = abs(f);
    uint32_t e = bits(a) & 0x7f800000u;
    if (e < (127u - 14u) << 23) e = (127u - 14u) << 23;
    const float c = from_bits(e + (13u << 23));
    const float r = (a + c) - c;
    return f < 0 ? -r : r;
  }
  // fp16 bits of a value that is exactly an fp16 number (as fp16_round returns).
  static uint16_t fp16_bits(float f) {
    const uint32_t u = bits(f);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7fffffffu;
    if (a < (127u - 14u) << 23)  // fp16 subnormal (or zero): multiple of 2^-24
      return static_cast<uint16_t>(sign | static_cast<uint16_t>(from_bits(a) * 16777216.f));
    return static_cast<uint16_t>(sign | (((a >> 23) - 112u) << 10) | ((a >> 13) & 0x3ffu));
  }
};

template <class Tag, int W, int L, int N>
struct Search {
  using Sc = Scalar<Tag>;
  using V = typename VecT<W>::F;
  static constexpr int K = L / W;  // vectors per row of lanes
  static_assert(L % W == 0);

  struct Tile {
    V x[N][K];
    V w[N][K];
    V sw[K], swx[K];  // sum w, sum w x per lane
  };

  struct Lanes {
    V v[K];
    float operator[](int j) const { return v[j / W][j % W]; }
  };

  static V splat(float f) { return V{} + f; }
  static V rnd(V v) { return (v + kRoundMagic) - kRoundMagic; }
  // NaN goes to hi, so a level never leaves [lo, hi].
  static V clamp(V v, V lo, V hi) {
    v = v < hi ? v : hi;
    return v > lo ? v : lo;
  }
  static V vmax(V a, V b) { return a > b ? a : b; }
  static V vmin(V a, V b) { return a < b ? a : b; }
  static float fp16_round(float f) { return Sc::fp16_round(f); }

  template <bool kW>
  static void load(const float* x, const float* w, Tile& t) {
    for (int i = 0; i < N; ++i)
      for (int j = 0; j < L; ++j) t.x[i][j / W][j % W] = x[N * j + i];
    if (kW) {
      // A sub-block whose weights are all 0 (columns the calibration never activated) would
      // let any scale win, zeroing its values; a floor of 1e-6 of the mean weight makes the
      // plain error decide there and changes nothing measurable elsewhere.
      float total = 0;
      for (int e = 0; e < N * L; ++e) total += w[e];
      const float floor = total * (1e-6f / (N * L));
      for (int i = 0; i < N; ++i)
        for (int j = 0; j < L; ++j) t.w[i][j / W][j % W] = w[N * j + i] + floor;
    }
    for (int k = 0; k < K; ++k) t.sw[k] = t.swx[k] = V{};
    for (int i = 0; i < N; ++i)
      for (int k = 0; k < K; ++k) {
        t.sw[k] += kW ? t.w[i][k] : splat(1.f);
        t.swx[k] += kW ? t.w[i][k] * t.x[i][k] : t.x[i][k];
      }
  }

  // ---- affine: xhat = s l + b, l in [0, nmax], b <= 0 ---------------------------------------

  struct AffineSums {
    V l1[K], l2[K], lx[K];  // sum w l, sum w l^2, sum w l x
  };

  // Levels l = round((x - b) * inv) in [0, nmax] and their sums.
  template <bool kW>
  static void affine_sums(const Tile& t, const V* inv, const V* b, float nmax, AffineSums& u) {
    const V zero{}, hi = splat(nmax);
    for (int k = 0; k < K; ++k) {
      V l1{}, l2{}, lx{};
      for (int i = 0; i < N; ++i) {
        const V l = rnd(clamp((t.x[i][k] - b[k]) * inv[k], zero, hi));
        const V wl = kW ? t.w[i][k] * l : l;
        l1 += wl;
        l2 += wl * l;
        lx += wl * t.x[i][k];
      }
      u.l1[k] = l1;
      u.l2[k] = l2;
      u.lx[k] = lx;
    }
  }

  static V affine_err(V s, V b, V sw, V swx, V l1, V l2, V lx) {
    return s * (s * l2 - lx - lx) + b * (b * sw - swx - swx) + (s + s) * b * l1;
  }

  // Least-squares (s, b) for fixed levels with b <= 0; lanes whose levels are all equal keep
  // the (s, b) given. With unequal weights the determinant of equal levels is rounding noise,
  // not 0, hence the relative threshold.
  static void affine_solve(V sw, V swx, V l1, V l2, V lx, V& s, V& b) {
    const V zero{};
    const V D = sw * l2 - l1 * l1;
    const auto ok = D > sw * l2 * 1e-5f;
    V ns = (sw * lx - swx * l1) / D;
    V nb = (l2 * swx - l1 * lx) / D;
    const V s0 = l2 > zero ? lx / l2 : zero;
    ns = nb > zero ? s0 : ns;
    nb = nb > zero ? zero : nb;
    ns = vmax(ns, zero);
    s = ok ? ns : s;
    b = ok ? nb : b;
  }

  struct AffineResult {
    float d, dmin;
    Lanes sc, m;    // integer sub-scale and sub-min per lane, in [0, qs]
    AffineSums u;   // level sums for those
    float err;      // summed lane errors (sum w x^2 left out)
  };

  template <bool kW>
  static AffineResult affine(const Tile& t, float nmax, float qs, const Plan& plan) {
    const V zero{};
    V bs[K], bb[K], be[K], mn[K], range[K];
    for (int k = 0; k < K; ++k) {
      V lo = t.x[0][k], hi = t.x[0][k];
      for (int i = 1; i < N; ++i) {
        lo = vmin(lo, t.x[i][k]);
        hi = vmax(hi, t.x[i][k]);
      }
      mn[k] = vmin(lo, zero);
      range[k] = hi - mn[k];
      bs[k] = range[k] / nmax;
      bb[k] = mn[k];
      be[k] = splat(kInf);
    }
    AffineSums u;
    for (int ci = 0; ci < plan.ncands; ++ci) {
      const Candidate& c = plan.cands[ci];
      V inv[K], off[K];
      for (int k = 0; k < K; ++k) {
        inv[k] = range[k] > zero ? (nmax + c.delta) / range[k] : zero;
        off[k] = range[k] > zero ? mn[k] - c.phase / inv[k] : mn[k];
      }
      affine_sums<kW>(t, inv, off, nmax, u);
      for (int k = 0; k < K; ++k) {
        V s = bs[k], b = bb[k];
        affine_solve(t.sw[k], t.swx[k], u.l1[k], u.l2[k], u.lx[k], s, b);
        const V e = affine_err(s, b, t.sw[k], t.swx[k], u.l1[k], u.l2[k], u.lx[k]);
        const auto better = e < be[k];
        be[k] = better ? e : be[k];
        bs[k] = better ? s : bs[k];
        bb[k] = better ? b : bb[k];
      }
    }

    float smax = 0, mmax = 0;
    for (int j = 0; j < L; ++j) {
      smax = Sc::max(smax, bs[j / W][j % W]);
      mmax = Sc::max(mmax, -bb[j / W][j % W]);
    }
    AffineResult r = affine_lattice<kW>(t, bs, bb, nmax, qs, fp16_round(Sc::min(smax / qs, kMaxHalf)),
                                        fp16_round(Sc::min(mmax / qs, kMaxHalf)), plan);
    for (int it = 0; it < plan.refits; ++it) {
      // Joint least squares for (d, dmin) given the integers: xhat = d (sc l) + dmin (-m).
      float a11 = 0, a12 = 0, a22 = 0, r1 = 0, r2 = 0;
      for (int j = 0; j < L; ++j) {
        const int k = j / W, q = j % W;
        const float sc = r.sc[j], m = r.m[j];
        a11 += sc * sc * r.u.l2[k][q];
        a12 -= sc * m * r.u.l1[k][q];
        a22 += m * m * t.sw[k][q];
        r1 += sc * r.u.lx[k][q];
        r2 -= m * t.swx[k][q];
      }
      const float det = a11 * a22 - a12 * a12;
      if (!(det > 0)) break;
      const float nd = fp16_round(Sc::clamp((r1 * a22 - r2 * a12) / det, 0.f, kMaxHalf));
      const float ndm = fp16_round(Sc::clamp((a11 * r2 - a12 * r1) / det, 0.f, kMaxHalf));
      if (nd == r.d && ndm == r.dmin) break;
      const AffineResult next = affine_lattice<kW>(t, bs, bb, nmax, qs, nd, ndm, plan);
      if (!(next.err < r.err)) break;
      r = next;
    }
    return r;
  }

  // Integer sub-scales on the (d, dmin) grid: the box neighbours of the best continuous scale
  // and min, each with re-rounded levels; per lane the one with the smallest error.
  template <bool kW>
  static AffineResult affine_lattice(const Tile& t, const V* bs, const V* bb, float nmax, float qs, float d, float dmin,
                                     const Plan& plan) {
    const V zero{}, vqs = splat(qs), one = splat(1.f), half = splat(0.5f);
    const V id = splat(d > 0 ? 1.f / d : 0.f), idm = splat(dmin > 0 ? 1.f / dmin : 0.f);
    AffineResult r;
    r.d = d;
    r.dmin = dmin;
    V sc0[K], m0[K], be[K];
    for (int k = 0; k < K; ++k) {
      sc0[k] = rnd(clamp(bs[k] * id, zero, vqs) - half);
      m0[k] = rnd(clamp(-bb[k] * idm, zero, vqs) - half);
      be[k] = splat(kInf);
      r.sc.v[k] = sc0[k];
      r.m.v[k] = m0[k];
      r.u.l1[k] = r.u.l2[k] = r.u.lx[k] = zero;
    }
    AffineSums u;
    for (int bi = 0; bi < plan.nbox; ++bi) {
      const int* o = plan.box[bi];
      V S[K], B[K], inv[K], sc[K], m[K];
      for (int k = 0; k < K; ++k) {
        sc[k] = clamp(sc0[k] + static_cast<float>(o[0]), zero, vqs);
        m[k] = clamp(m0[k] + static_cast<float>(o[1]), zero, vqs);
        S[k] = d * sc[k];
        B[k] = -(dmin * m[k]);
        inv[k] = S[k] > zero ? one / S[k] : zero;
      }
      affine_sums<kW>(t, inv, B, nmax, u);
      for (int k = 0; k < K; ++k) {
        const V e = affine_err(S[k], B[k], t.sw[k], t.swx[k], u.l1[k], u.l2[k], u.lx[k]);
        const auto better = e < be[k];
        be[k] = better ? e : be[k];
        r.sc.v[k] = better ? sc[k] : r.sc.v[k];
        r.m.v[k] = better ? m[k] : r.m.v[k];
        r.u.l1[k] = better ? u.l1[k] : r.u.l1[k];
        r.u.l2[k] = better ? u.l2[k] : r.u.l2[k];
        r.u.lx[k] = better ? u.lx[k] : r.u.lx[k];
      }
    }
    r.err = 0;
    for (int j = 0; j < L; ++j) r.err += be[j / W][j % W];
    return r;
  }

  // Final affine levels (0..nmax) of the source values x (natural order), the same arithmetic
  // per value as in the search.
  static void affine_levels(const float* x, const AffineResult& r, float nmax, int32_t* q) {
    const V zero{}, hi = splat(nmax);
    for (int j = 0; j < L; ++j) {
      const float S = r.d * r.sc[j];
      const V inv = splat(S > 0 ? 1.f / S : 0.f), B = splat(-(r.dmin * r.m[j]));
      for (int i = 0; i < N; i += W) store_levels(rnd(clamp((load_vec(x + N * j + i) - B) * inv, zero, hi)), q + N * j + i);
    }
  }

  static V load_vec(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store_levels(V l, int32_t* dst) {
    const typename VecT<W>::I v = __builtin_convertvector(l, typename VecT<W>::I);
    std::memcpy(dst, &v, sizeof v);
  }

  // ---- symmetric: xhat = s l, l in [-nlo, nhi] ----------------------------------------------

  struct SymSums {
    V l2[K], lx[K];  // sum w l^2, sum w l x
  };

  template <bool kW>
  static void sym_sums(const Tile& t, const V* inv, float nlo, float nhi, SymSums& u) {
    const V lo = splat(-nlo), hi = splat(nhi);
    for (int k = 0; k < K; ++k) {
      V l2{}, lx{};
      for (int i = 0; i < N; ++i) {
        const V l = rnd(clamp(t.x[i][k] * inv[k], lo, hi));
        const V wl = kW ? t.w[i][k] * l : l;
        l2 += wl * l;
        lx += wl * t.x[i][k];
      }
      u.l2[k] = l2;
      u.lx[k] = lx;
    }
  }

  struct SymResult {
    float d;
    Lanes sc;      // integer sub-scale per lane, in [-qlo, qhi]
    Lanes l2, lx;  // level sums for those
    float err;     // summed lane errors (sum w x^2 left out)
  };

  // Candidates: see Candidate.
  template <bool kW>
  static SymResult symmetric(const Tile& t, float nlo, float nhi, float qlo, float qhi, const Plan& plan) {
    const V zero{};
    V amax[K], vmx[K], bs[K], be[K];
    for (int k = 0; k < K; ++k) {
      V a = zero, m = zero;
      for (int i = 0; i < N; ++i) {
        const V ax = vmax(t.x[i][k], -t.x[i][k]);
        m = ax > a ? t.x[i][k] : m;
        a = ax > a ? ax : a;
      }
      amax[k] = a;
      vmx[k] = m;
      bs[k] = zero;
      be[k] = zero;  // s = 0 has error 0 relative to sum w x^2
    }
    SymSums u;
    for (int ci = 0; ci < plan.ncands; ++ci) {
      const Candidate& c = plan.cands[ci];
      const float target = c.narrow ? nhi + c.delta : -(nlo + c.delta);
      V inv[K];
      for (int k = 0; k < K; ++k) inv[k] = amax[k] > zero ? target / vmx[k] : zero;
      sym_sums<kW>(t, inv, nlo, nhi, u);
      for (int k = 0; k < K; ++k) {
        const V s = u.l2[k] > zero ? u.lx[k] / u.l2[k] : zero;
        const V e = s * (s * u.l2[k] - u.lx[k] - u.lx[k]);
        const auto better = e < be[k];
        be[k] = better ? e : be[k];
        bs[k] = better ? s : bs[k];
      }
    }

    float smax = 0, sabs = 0;
    for (int j = 0; j < L; ++j) {
      const float s = bs[j / W][j % W];
      if (Sc::abs(s) > sabs) {
        sabs = Sc::abs(s);
        smax = s;
      }
    }
    SymResult r = sym_lattice<kW>(t, bs, nlo, nhi, qlo, qhi, fp16_round(Sc::clamp(smax / -qlo, -kMaxHalf, kMaxHalf)), plan);
    for (int it = 0; it < plan.refits; ++it) {
      float num = 0, den = 0;
      for (int j = 0; j < L; ++j) {
        const float sc = r.sc[j];
        num += sc * r.lx[j];
        den += sc * sc * r.l2[j];
      }
      if (!(den > 0)) break;
      const float nd = fp16_round(Sc::clamp(num / den, -kMaxHalf, kMaxHalf));
      if (nd == r.d) break;
      const SymResult next = sym_lattice<kW>(t, bs, nlo, nhi, qlo, qhi, nd, plan);
      if (!(next.err < r.err)) break;
      r = next;
    }
    return r;
  }

  template <bool kW>
  static SymResult sym_lattice(const Tile& t, const V* bs, float nlo, float nhi, float qlo, float qhi, float d,
                               const Plan& plan) {
    const V zero{}, vlo = splat(-qlo), vhi = splat(qhi), one = splat(1.f), half = splat(0.5f);
    const V id = splat(d != 0 ? 1.f / d : 0.f);
    SymResult r;
    r.d = d;
    V sc0[K], be[K];
    for (int k = 0; k < K; ++k) {
      sc0[k] = rnd(clamp(bs[k] * id, vlo, vhi) - half);
      be[k] = splat(kInf);
      r.sc.v[k] = sc0[k];
      r.l2.v[k] = r.lx.v[k] = zero;
    }
    SymSums u;
    for (int bi = 0; bi < plan.nbox; ++bi) {
      V S[K], inv[K], sc[K];
      for (int k = 0; k < K; ++k) {
        sc[k] = clamp(sc0[k] + static_cast<float>(plan.box[bi][0]), vlo, vhi);
        S[k] = d * sc[k];
        inv[k] = S[k] != zero ? one / S[k] : zero;
      }
      sym_sums<kW>(t, inv, nlo, nhi, u);
      for (int k = 0; k < K; ++k) {
        const V e = S[k] * (S[k] * u.l2[k] - u.lx[k] - u.lx[k]);
        const auto better = e < be[k];
        be[k] = better ? e : be[k];
        r.sc.v[k] = better ? sc[k] : r.sc.v[k];
        r.l2.v[k] = better ? u.l2[k] : r.l2.v[k];
        r.lx.v[k] = better ? u.lx[k] : r.lx.v[k];
      }
    }
    r.err = 0;
    for (int j = 0; j < L; ++j) r.err += be[j / W][j % W];
    return r;
  }

  // Final symmetric levels stored as l + nlo (0..nlo+nhi), natural order.
  static void sym_levels(const float* x, const SymResult& r, float nlo, float nhi, int32_t* q) {
    const V lo = splat(-nlo), hi = splat(nhi);
    for (int j = 0; j < L; ++j) {
      const float S = r.d * r.sc[j];
      const V inv = splat(S != 0 ? 1.f / S : 0.f);
      for (int i = 0; i < N; i += W) store_levels(rnd(clamp(load_vec(x + N * j + i) * inv, lo, hi)) + nlo, q + N * j + i);
    }
  }
};

// ---- the five types: search plans and packing ------------------------------------------------

// Search plans per type, [0] without importance weights and [1] with, chosen on real weights as
// the cheapest that stay clearly below llama.cpp's error (see benchmarks/quant_error_bench).
inline constexpr Candidate kCandQ2[] = {{-0.75f, -0.25f}, {-0.75f, 0.25f}, {0, -0.25f}, {0, 0.25f}, {0.75f, -0.25f}, {0.75f, 0.25f}};
inline constexpr Candidate kCandQ4[] = {{-1, -0.25f},   {-1, 0.25f},   {-0.5f, -0.25f}, {-0.5f, 0.25f},
                                        {0, -0.25f},    {0, 0.25f},    {0.5f, -0.25f},  {0.5f, 0.25f},
                                        {1, -0.25f},    {1, 0.25f},    {1.5f, -0.25f},  {1.5f, 0.25f}};
inline constexpr Candidate kCandQ5[] = {{-1, -0.25f},    {-1, 0.25f},    {-0.33f, -0.25f}, {-0.33f, 0.25f},
                                        {0.33f, -0.25f}, {0.33f, 0.25f}, {1, -0.25f},      {1, 0.25f}};
inline constexpr Candidate kCandQ3[] = {{0}, {0, 0, true}};
inline constexpr Candidate kCandQ3w[] = {{-1},          {-0.6f},        {-0.2f},       {0.2f},        {0.6f},       {1},
                                         {-1, 0, true}, {-0.6f, 0, true}, {-0.2f, 0, true}, {0.2f, 0, true}, {0.6f, 0, true}, {1, 0, true}};
inline constexpr Candidate kCandQ6[] = {{-2},           {-1.5f},         {-1},            {-0.5f},        {0},
                                        {0.5f},         {1},             {1.5f},          {2},            {-2, 0, true},
                                        {-1.5f, 0, true}, {-1, 0, true}, {-0.5f, 0, true}, {0, 0, true},  {0.5f, 0, true},
                                        {1, 0, true},   {1.5f, 0, true}, {2, 0, true}};
inline constexpr int kBox4[][2] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}};
inline constexpr int kBox2[][2] = {{0, 0}, {1, 0}};
inline constexpr int kBox3[][2] = {{0, 0}, {1, 0}, {-1, 0}};

template <int NC, int NB>
constexpr Plan make_plan(const Candidate (&c)[NC], const int (&box)[NB][2], int refits) {
  return {c, NC, box, NB, refits};
}
inline constexpr Plan kPlanQ2[2] = {make_plan(kCandQ2, kBox4, 0), make_plan(kCandQ2, kBox4, 0)};
inline constexpr Plan kPlanQ3[2] = {make_plan(kCandQ3, kBox2, 0), make_plan(kCandQ3w, kBox3, 1)};
inline constexpr Plan kPlanQ4[2] = {make_plan(kCandQ4, kBox4, 1), make_plan(kCandQ4, kBox4, 1)};
inline constexpr Plan kPlanQ5[2] = {make_plan(kCandQ5, kBox4, 1), make_plan(kCandQ5, kBox4, 1)};
inline constexpr Plan kPlanQ6[2] = {make_plan(kCandQ6, kBox2, 0), make_plan(kCandQ6, kBox2, 0)};

template <class Tag, int W>
struct Pack {
  using Sc = Scalar<Tag>;
  // 2-bit fields: value e = 128 h + 32 k + l sits in bits 2k of byte 32 h + l.
  static void two_bit(const int32_t* q, uint8_t* out) {
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l)
        out[32 * h + l] = static_cast<uint8_t>((q[128 * h + l] & 3) | ((q[128 * h + 32 + l] & 3) << 2) |
                                               ((q[128 * h + 64 + l] & 3) << 4) | ((q[128 * h + 96 + l] & 3) << 6));
  }
  // Bit `bit` of value 32 b + l goes to bit b of out[l] (Q3_K hmask, Q5_K qh).
  static void bit_planes(const int32_t* q, int bit, uint8_t* out) {
    int32_t acc[32] = {};
    for (int b = 0; b < 8; ++b)
      for (int l = 0; l < 32; ++l) acc[l] |= ((q[32 * b + l] >> bit) & 1) << b;
    for (int l = 0; l < 32; ++l) out[l] = static_cast<uint8_t>(acc[l]);
  }
  // Q4_K/Q5_K: 6-bit scales and mins of the 8 sub-blocks in 12 bytes.
  template <class R>
  static void scale_min_k4(const R& r, uint8_t* out) {
    for (int j = 0; j < 8; ++j) {
      const int s = static_cast<int>(r.sc[j]), m = static_cast<int>(r.m[j]);
      if (j < 4) {
        out[j] = static_cast<uint8_t>(s);
        out[j + 4] = static_cast<uint8_t>(m);
      } else {
        out[j + 4] = static_cast<uint8_t>((s & 15) | ((m & 15) << 4));
        out[j - 4] |= static_cast<uint8_t>((s >> 4) << 6);
        out[j] |= static_cast<uint8_t>((m >> 4) << 6);
      }
    }
  }
};

template <class Tag, int W>
struct Blocks {
  using P = Pack<Tag, W>;
  using Sc = Scalar<Tag>;
  static constexpr int W8 = W < 8 ? W : 8;  // Q4_K/Q5_K have 8 lanes

  // Searcher S loads the super-block, searches its scales and mins (S::affine with nmax, qs and
  // the plan) and writes its levels to q.
  template <class S, bool kW>
  static auto affine_search(const float* x, const float* w, float nmax, float qs, const Plan& plan, int32_t* q) {
    typename S::Tile t;
    S::template load<kW>(x, w, t);
    const auto r = S::template affine<kW>(t, nmax, qs, plan);
    S::affine_levels(x, r, nmax, q);
    return r;
  }

  // Searcher S loads the super-block, searches its symmetric scales (S::symmetric with nlo, nhi,
  // qlo, qhi and the plan) and writes its levels to q.
  template <class S, bool kW>
  static auto symmetric_search(const float* x, const float* w, float nlo, float nhi, float qlo, float qhi,
                               const Plan& plan, int32_t* q) {
    typename S::Tile t;
    S::template load<kW>(x, w, t);
    const auto r = S::template symmetric<kW>(t, nlo, nhi, qlo, qhi, plan);
    S::sym_levels(x, r, nlo, nhi, q);
    return r;
  }

  // Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins, packed into y; levels in q.
  template <bool kW, class Block>
  static void q45_scales(const float* x, const float* w, float nmax, const Plan& plan, Block& y, int32_t* q) {
    const auto r = affine_search<Search<Tag, W8, 8, 32>, kW>(x, w, nmax, 63.f, plan, q);
    y.d = Sc::fp16_bits(r.d);
    y.dmin = Sc::fp16_bits(r.dmin);
    P::scale_min_k4(r, y.scales);
  }

  template <bool kW>
  static void q2k(const float* x, const float* w, block_q2_K& y) {
    alignas(64) int32_t q[QK_K];
    const auto r = affine_search<Search<Tag, W, 16, 16>, kW>(x, w, 3.f, 15.f, kPlanQ2[kW], q);
    for (int j = 0; j < 16; ++j)
      y.scales[j] = static_cast<uint8_t>(static_cast<int>(r.sc[j]) | (static_cast<int>(r.m[j]) << 4));
    P::two_bit(q, y.qs);
    y.d = Sc::fp16_bits(r.d);
    y.dmin = Sc::fp16_bits(r.dmin);
  }

  template <bool kW>
  static void q3k(const float* x, const float* w, block_q3_K& y) {
    alignas(64) int32_t q[QK_K];
    const auto r = symmetric_search<Search<Tag, W, 16, 16>, kW>(x, w, 4.f, 3.f, 32.f, 31.f, kPlanQ3[kW], q);
    std::memset(y.scales, 0, sizeof y.scales);
    for (int j = 0; j < 16; ++j) {
      const int v = static_cast<int>(r.sc[j]) + 32;
      y.scales[j % 8] |= static_cast<uint8_t>((v & 15) << (j < 8 ? 0 : 4));
      y.scales[8 + j % 4] |= static_cast<uint8_t>((v >> 4) << (2 * (j / 4)));
    }
    P::bit_planes(q, 2, y.hmask);
    P::two_bit(q, y.qs);
    y.d = Sc::fp16_bits(r.d);
  }

  template <bool kW>
  static void q4k(const float* x, const float* w, block_q4_K& y) {
    alignas(64) int32_t q[QK_K];
    q45_scales<kW>(x, w, 15.f, kPlanQ4[kW], y, q);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) y.qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
  }

  template <bool kW>
  static void q5k(const float* x, const float* w, block_q5_K& y) {
    alignas(64) int32_t q[QK_K];
    q45_scales<kW>(x, w, 31.f, kPlanQ5[kW], y, q);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        y.qs[32 * c + l] = static_cast<uint8_t>((q[64 * c + l] & 15) | ((q[64 * c + 32 + l] & 15) << 4));
    P::bit_planes(q, 4, y.qh);
  }

  template <bool kW>
  static void q6k(const float* x, const float* w, block_q6_K& y) {
    alignas(64) int32_t q[QK_K];
    const auto r = symmetric_search<Search<Tag, W, 16, 16>, kW>(x, w, 32.f, 31.f, 128.f, 127.f, kPlanQ6[kW], q);
    for (int j = 0; j < 16; ++j) y.scales[j] = static_cast<int8_t>(r.sc[j]);
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const int32_t* v = q + 128 * h + l;
        y.ql[64 * h + l] = static_cast<uint8_t>((v[0] & 15) | ((v[64] & 15) << 4));
        y.ql[64 * h + 32 + l] = static_cast<uint8_t>((v[32] & 15) | ((v[96] & 15) << 4));
        y.qh[32 * h + l] = static_cast<uint8_t>((v[0] >> 4) | ((v[32] >> 4) << 2) | ((v[64] >> 4) << 4) | ((v[96] >> 4) << 6));
      }
    y.d = Sc::fp16_bits(r.d);
  }

  // sigma_mult of the magnitude factor applied to the imatrix. Measured on the tiny model (KL
  // divergence of the Q2_K, Q3_K_M and Q4_K_M levels against llama.cpp's files, and the
  // imatrix-weighted error of every tensor): 0 (the imatrix alone) is worst in KL divergence
  // (Q2_K 8% above llama.cpp's); 1 and 2 are best there but leave some Q3_K tensors' weighted
  // error above llama.cpp's; 4 keeps every weighted error below it at nearly the same KL
  // divergence (Q2_K +3%, Q3_K_M -0.2%, Q4_K_M -3.5%).
  static constexpr float kMagnitudeSigma = 4.f;

  // False when a super-block's importance weights are all zero: it is quantized without them.
  static bool has_weight(const float* w) {
    for (int e = 0; e < QK_K; ++e)
      if (w[e] > 0) return true;
    return false;
  }

  // Rows of n_per_row values (a multiple of 256); imatrix: n_per_row column weights or null.
  template <class Block, void (*Plain)(const float*, const float*, Block&), void (*Weighted)(const float*, const float*, Block&)>
  static void rows(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
    auto* y = static_cast<Block*>(dst);
    const int64_t nb = n_per_row / QK_K;
    for (int64_t r = 0; r < nrows; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        const float* x = src + r * n_per_row + b * QK_K;
        if (imatrix && has_weight(imatrix + b * QK_K)) {
          float w[QK_K];  // importance times the magnitude factor (see magnitude_weights)
          magnitude_weights(x, imatrix + b * QK_K, 0.f, kMagnitudeSigma, w);
          Weighted(x, w, y[r * nb + b]);
        } else {
          Plain(x, nullptr, y[r * nb + b]);
        }
      }
  }

  static void quantize_q2_k(const float* s, void* d, int64_t nr, int64_t n, const float* im) { rows<block_q2_K, q2k<false>, q2k<true>>(s, d, nr, n, im); }
  static void quantize_q3_k(const float* s, void* d, int64_t nr, int64_t n, const float* im) { rows<block_q3_K, q3k<false>, q3k<true>>(s, d, nr, n, im); }
  static void quantize_q4_k(const float* s, void* d, int64_t nr, int64_t n, const float* im) { rows<block_q4_K, q4k<false>, q4k<true>>(s, d, nr, n, im); }
  static void quantize_q5_k(const float* s, void* d, int64_t nr, int64_t n, const float* im) { rows<block_q5_K, q5k<false>, q5k<true>>(s, d, nr, n, im); }
  static void quantize_q6_k(const float* s, void* d, int64_t nr, int64_t n, const float* im) { rows<block_q6_K, q6k<false>, q6k<true>>(s, d, nr, n, im); }

  // Q6_K weighted by each value's square (llama.cpp's own Q6_K objective without an imatrix), for
  // tensors that a run's importance matrix does not cover (see uncovered_quantize_kernel).
  static void quantize_q6_k_by_square(const float* src, void* dst, int64_t nrows, int64_t n_per_row) {
    auto* y = static_cast<block_q6_K*>(dst);
    const int64_t nb = n_per_row / QK_K;
    for (int64_t r = 0; r < nrows; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        const float* x = src + r * n_per_row + b * QK_K;
        float w[QK_K];
        for (int e = 0; e < QK_K; ++e) w[e] = x[e] * x[e] + 1e-20f;  // > 0: an all-zero block stays solvable
        q6k<true>(x, w, y[r * nb + b]);
      }
  }
};

}  // namespace lq::ref::kq

#if defined(__clang__)
#pragma clang fp contract(on)
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif
