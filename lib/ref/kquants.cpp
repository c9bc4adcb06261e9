// K-quants: decoders and Q8_K dot products. Decoders evaluate exactly the expressions of
// llama.cpp's format definition (same operation order), so they are bit-identical to it.
#include "ref/kquants.hpp"

#include "half.hpp"
#include "ref/blocks.hpp"
#include "ref/kquant_search.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace lq::ref {
namespace {

// Q4_K/Q5_K: 6-bit scale and min of sub-block j from the 12 packed bytes.
inline void unpack_scale_min(const uint8_t* s, int j, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q3_K: the 16 signed 6-bit scales (stored value - 32).
inline void unpack_q3_scales(const uint8_t* s, int* out) {
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? (s[j] & 15) : (s[j - 8] >> 4);
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = (lo | (hi << 4)) - 32;
  }
}

}  // namespace

// ---- decoders --------------------------------------------------------------------------------

void dequantize_q2_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q2_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_f32(x[i].d), dmin = fp16_to_f32(x[i].dmin);
    for (int e = 0; e < QK_K; ++e) {
      const int q = (x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
      const int sc = x[i].scales[e / 16];
      const float dl = d * (sc & 15), ml = dmin * (sc >> 4);
      dst[e] = dl * q - ml;
    }
  }
}

void dequantize_q3_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q3_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_f32(x[i].d);
    int sc[16];
    unpack_q3_scales(x[i].scales, sc);
    for (int e = 0; e < QK_K; ++e) {
      const int h = e / 128, j = (e % 128) / 32, l = e % 32;
      const int lo = (x[i].qs[32 * h + l] >> (2 * j)) & 3;
      const int hi = (x[i].hmask[l] >> (4 * h + j)) & 1;
      const float dl = d * sc[e / 16];
      dst[e] = dl * (lo - (hi ? 0 : 4));
    }
  }
}

void dequantize_q4_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q4_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_f32(x[i].d), dmin = fp16_to_f32(x[i].dmin);
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      unpack_scale_min(x[i].scales, j, sc, m);
      const float dl = d * sc, ml = dmin * m;
      const uint8_t* q = x[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) dst[32 * j + l] = dl * ((q[l] >> shift) & 15) - ml;
    }
  }
}

void dequantize_q5_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q5_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_f32(x[i].d), dmin = fp16_to_f32(x[i].dmin);
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      unpack_scale_min(x[i].scales, j, sc, m);
      const float dl = d * sc, ml = dmin * m;
      const uint8_t* q = x[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 15) | (((x[i].qh[l] >> j) & 1) << 4);
        dst[32 * j + l] = dl * v - ml;
      }
    }
  }
}

void dequantize_q6_k(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_q6_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_f32(x[i].d);
    for (int e = 0; e < QK_K; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const uint8_t ql = x[i].ql[64 * h + l + 32 * (k % 2)];
      const int lo = (ql >> (4 * (k / 2))) & 15;
      const int hi = (x[i].qh[32 * h + l] >> (2 * k)) & 3;
      dst[e] = d * x[i].scales[e / 16] * ((lo | (hi << 4)) - 32);
    }
  }
}

// ---- dot products against Q8_K ----------------------------------------------------------------
// Integer sums per super-block, then one float multiply-add with the two scales. The min term of
// the affine types uses the Q8_K group sums (bsums), as the kernels do.

float dot_q2_k(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q2_K*>(xv);
  const auto* y = static_cast<const block_q8_K*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sumq = 0, summ = 0;
    for (int g = 0; g < 16; ++g) {
      int acc = 0;
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * g + l;
        acc += ((x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) * y[i].qs[e];
      }
      sumq += (x[i].scales[g] & 15) * acc;
      summ += (x[i].scales[g] >> 4) * y[i].bsums[g];
    }
    s += y[i].d * fp16_to_f32(x[i].d) * sumq - y[i].d * fp16_to_f32(x[i].dmin) * summ;
  }
  return s;
}

float dot_q3_k(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q3_K*>(xv);
  const auto* y = static_cast<const block_q8_K*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sc[16];
    unpack_q3_scales(x[i].scales, sc);
    int sumq = 0;
    for (int g = 0; g < 16; ++g) {
      int acc = 0;
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * g + l, h = e / 128, j = (e % 128) / 32, p = e % 32;
        const int lo = (x[i].qs[32 * h + p] >> (2 * j)) & 3;
        const int hi = (x[i].hmask[p] >> (4 * h + j)) & 1;
        acc += (lo - (hi ? 0 : 4)) * y[i].qs[e];
      }
      sumq += sc[g] * acc;
    }
    s += y[i].d * fp16_to_f32(x[i].d) * sumq;
  }
  return s;
}

float dot_q4_k(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q4_K*>(xv);
  const auto* y = static_cast<const block_q8_K*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sumq = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      unpack_scale_min(x[i].scales, j, sc, m);
      const uint8_t* q = x[i].qs + 32 * (j / 2);
      int acc = 0;
      for (int l = 0; l < 32; ++l) acc += ((q[l] >> (4 * (j % 2))) & 15) * y[i].qs[32 * j + l];
      sumq += sc * acc;
      summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    s += y[i].d * fp16_to_f32(x[i].d) * sumq - y[i].d * fp16_to_f32(x[i].dmin) * summ;
  }
  return s;
}

float dot_q5_k(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q5_K*>(xv);
  const auto* y = static_cast<const block_q8_K*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sumq = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      unpack_scale_min(x[i].scales, j, sc, m);
      const uint8_t* q = x[i].qs + 32 * (j / 2);
      int acc = 0;
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> (4 * (j % 2))) & 15) | (((x[i].qh[l] >> j) & 1) << 4);
        acc += v * y[i].qs[32 * j + l];
      }
      sumq += sc * acc;
      summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    s += y[i].d * fp16_to_f32(x[i].d) * sumq - y[i].d * fp16_to_f32(x[i].dmin) * summ;
  }
  return s;
}

float dot_q6_k(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const block_q6_K*>(xv);
  const auto* y = static_cast<const block_q8_K*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sumq = 0;
    for (int g = 0; g < 16; ++g) {
      int acc = 0;
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * g + l, h = e / 128, k = (e % 128) / 32, p = e % 32;
        const uint8_t ql = x[i].ql[64 * h + p + 32 * (k % 2)];
        const int lo = (ql >> (4 * (k / 2))) & 15;
        const int hi = (x[i].qh[32 * h + p] >> (2 * k)) & 3;
        acc += ((lo | (hi << 4)) - 32) * y[i].qs[e];
      }
      sumq += x[i].scales[g] * acc;
    }
    s += y[i].d * fp16_to_f32(x[i].d) * sumq;
  }
  return s;
}

// ---- quantizers --------------------------------------------------------------------------------
// The search itself is in kquant_search.hpp; here: the per-type parameters and the packing.
namespace {

struct RefTag {};
template <int L, int N>
using RefSearch = kq::Search<RefTag, 4, L, N>;

// Search plans per type and mode (see kquant_search.hpp), chosen on real weights as the cheapest
// that stay clearly below llama.cpp's error.
constexpr kq::Candidate kCandQ2[] = {{-0.75f, -0.25f}, {-0.75f, 0.25f}, {0, -0.25f}, {0, 0.25f}, {0.75f, -0.25f}, {0.75f, 0.25f}};
constexpr kq::Candidate kCandQ4[] = {{-1, -0.25f},   {-1, 0.25f},   {-0.5f, -0.25f}, {-0.5f, 0.25f},
                                     {0, -0.25f},    {0, 0.25f},    {0.5f, -0.25f},  {0.5f, 0.25f},
                                     {1, -0.25f},    {1, 0.25f},    {1.5f, -0.25f},  {1.5f, 0.25f}};
constexpr kq::Candidate kCandQ5[] = {{-1, -0.25f},    {-1, 0.25f},    {-0.33f, -0.25f}, {-0.33f, 0.25f},
                                     {0.33f, -0.25f}, {0.33f, 0.25f}, {1, -0.25f},      {1, 0.25f}};
constexpr kq::Candidate kCandQ3[] = {{0, 0}, {-200, 0}};
constexpr kq::Candidate kCandQ3w[] = {{-1, 0},    {-0.6f, 0},    {-0.2f, 0},    {0.2f, 0},     {0.6f, 0},     {1, 0},
                                      {-201, 0},  {-200.6f, 0},  {-200.2f, 0},  {-199.8f, 0},  {-199.4f, 0},  {-199, 0}};
constexpr kq::Candidate kCandQ6[] = {{-2, 0},     {-1.5f, 0},    {-1, 0},    {-0.5f, 0},    {0, 0},     {0.5f, 0},
                                     {1, 0},      {1.5f, 0},     {2, 0},     {-202, 0},     {-201.5f, 0}, {-201, 0},
                                     {-200.5f, 0}, {-200, 0},    {-199.5f, 0}, {-199, 0},   {-198.5f, 0}, {-198, 0}};
constexpr int kBox4[][2] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}};
constexpr int kBox2[][2] = {{0, 0}, {1, 0}};
constexpr int kBox3[][2] = {{0, 0}, {1, 0}, {-1, 0}};

template <size_t NC, size_t NB>
constexpr kq::Plan plan(const kq::Candidate (&c)[NC], int refine, const int (&box)[NB][2], int refits) {
  return {c, static_cast<int>(NC), refine, box, static_cast<int>(NB), refits};
}
// [0]: without importance weights, [1]: with.
constexpr kq::Plan kPlanQ2[2] = {plan(kCandQ2, 0, kBox4, 0), plan(kCandQ2, 0, kBox4, 0)};
constexpr kq::Plan kPlanQ3[2] = {plan(kCandQ3, 0, kBox2, 0), plan(kCandQ3w, 0, kBox3, 1)};
constexpr kq::Plan kPlanQ4[2] = {plan(kCandQ4, 0, kBox4, 1), plan(kCandQ4, 0, kBox4, 1)};
constexpr kq::Plan kPlanQ5[2] = {plan(kCandQ5, 0, kBox4, 1), plan(kCandQ5, 0, kBox4, 1)};
constexpr kq::Plan kPlanQ6[2] = {plan(kCandQ6, 0, kBox2, 0), plan(kCandQ6, 0, kBox2, 0)};

void pack_scale_min_k4(const RefSearch<8, 32>::AffineResult& r, uint8_t* out) {
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

// 2-bit fields: value e = 128 h + 32 k + l sits in bits 2k of byte 32 h + l.
void pack_2bit(const uint8_t* q, uint8_t* out) {
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l)
      out[32 * h + l] = static_cast<uint8_t>((q[128 * h + l] & 3) | ((q[128 * h + 32 + l] & 3) << 2) |
                                             ((q[128 * h + 64 + l] & 3) << 4) | ((q[128 * h + 96 + l] & 3) << 6));
}

template <bool kW>
void q2k_block(const float* x, const float* w, block_q2_K& y, const kq::Plan& plan) {
  using S = RefSearch<16, 16>;
  S::Tile t;
  S::load<kW>(x, w, t);
  const auto r = S::affine<kW>(t, 3.f, 15.f, plan);
  uint8_t q[QK_K];
  S::affine_levels(x, r, 3.f, q);
  for (int j = 0; j < 16; ++j)
    y.scales[j] = static_cast<uint8_t>(static_cast<int>(r.sc[j]) | (static_cast<int>(r.m[j]) << 4));
  pack_2bit(q, y.qs);
  y.d = f32_to_fp16(r.d);
  y.dmin = f32_to_fp16(r.dmin);
}

template <bool kW>
void q3k_block(const float* x, const float* w, block_q3_K& y, const kq::Plan& plan) {
  using S = RefSearch<16, 16>;
  S::Tile t;
  S::load<kW>(x, w, t);
  const auto r = S::symmetric<kW>(t, 4.f, 3.f, 32.f, 31.f, plan);
  uint8_t q[QK_K];
  S::sym_levels(x, r, 4.f, 3.f, q);
  std::memset(y.scales, 0, sizeof y.scales);
  for (int j = 0; j < 16; ++j) {
    const int v = static_cast<int>(r.sc[j]) + 32;
    y.scales[j % 8] |= static_cast<uint8_t>((v & 15) << (j < 8 ? 0 : 4));
    y.scales[8 + j % 4] |= static_cast<uint8_t>((v >> 4) << (2 * (j / 4)));
  }
  std::memset(y.hmask, 0, sizeof y.hmask);
  for (int b = 0; b < 8; ++b)
    for (int l = 0; l < 32; ++l) y.hmask[l] |= static_cast<uint8_t>(((q[32 * b + l] >> 2) & 1) << b);
  pack_2bit(q, y.qs);
  y.d = f32_to_fp16(r.d);
}

template <bool kW>
void q4k_block(const float* x, const float* w, block_q4_K& y, const kq::Plan& plan) {
  using S = RefSearch<8, 32>;
  S::Tile t;
  S::load<kW>(x, w, t);
  const auto r = S::affine<kW>(t, 15.f, 63.f, plan);
  uint8_t q[QK_K];
  S::affine_levels(x, r, 15.f, q);
  y.d = f32_to_fp16(r.d);
  y.dmin = f32_to_fp16(r.dmin);
  pack_scale_min_k4(r, y.scales);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) y.qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
}

template <bool kW>
void q5k_block(const float* x, const float* w, block_q5_K& y, const kq::Plan& plan) {
  using S = RefSearch<8, 32>;
  S::Tile t;
  S::load<kW>(x, w, t);
  const auto r = S::affine<kW>(t, 31.f, 63.f, plan);
  uint8_t q[QK_K];
  S::affine_levels(x, r, 31.f, q);
  y.d = f32_to_fp16(r.d);
  y.dmin = f32_to_fp16(r.dmin);
  pack_scale_min_k4(r, y.scales);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l)
      y.qs[32 * c + l] = static_cast<uint8_t>((q[64 * c + l] & 15) | ((q[64 * c + 32 + l] & 15) << 4));
  for (int l = 0; l < 32; ++l) {
    int h = 0;
    for (int j = 0; j < 8; ++j) h |= (q[32 * j + l] >> 4) << j;
    y.qh[l] = static_cast<uint8_t>(h);
  }
}

template <bool kW>
void q6k_block(const float* x, const float* w, block_q6_K& y, const kq::Plan& plan) {
  using S = RefSearch<16, 16>;
  S::Tile t;
  S::load<kW>(x, w, t);
  const auto r = S::symmetric<kW>(t, 32.f, 31.f, 128.f, 127.f, plan);
  uint8_t q[QK_K];
  S::sym_levels(x, r, 32.f, 31.f, q);
  for (int j = 0; j < 16; ++j) y.scales[j] = static_cast<int8_t>(r.sc[j]);
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const uint8_t* v = q + 128 * h + l;
      y.ql[64 * h + l] = static_cast<uint8_t>((v[0] & 15) | ((v[64] & 15) << 4));
      y.ql[64 * h + 32 + l] = static_cast<uint8_t>((v[32] & 15) | ((v[96] & 15) << 4));
      y.qh[32 * h + l] = static_cast<uint8_t>((v[0] >> 4) | ((v[32] >> 4) << 2) | ((v[64] >> 4) << 4) | ((v[96] >> 4) << 6));
    }
  y.d = f32_to_fp16(r.d);
}

template <typename Block, void (*Plain)(const float*, const float*, Block&, const kq::Plan&),
          void (*Weighted)(const float*, const float*, Block&, const kq::Plan&), const kq::Plan* plans>
void quantize_rows(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  auto* y = static_cast<Block*>(dst);
  const int64_t nb = n_per_row / QK_K;
  for (int64_t r = 0; r < nrows; ++r)
    for (int64_t b = 0; b < nb; ++b) {
      const float* x = src + r * n_per_row + b * QK_K;
      if (imatrix) Weighted(x, imatrix + b * QK_K, y[r * nb + b], plans[1]);
      else Plain(x, nullptr, y[r * nb + b], plans[0]);
    }
}

}  // namespace

void quantize_q2_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  quantize_rows<block_q2_K, q2k_block<false>, q2k_block<true>, kPlanQ2>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q3_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  quantize_rows<block_q3_K, q3k_block<false>, q3k_block<true>, kPlanQ3>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q4_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  quantize_rows<block_q4_K, q4k_block<false>, q4k_block<true>, kPlanQ4>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q5_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  quantize_rows<block_q5_K, q5k_block<false>, q5k_block<true>, kPlanQ5>(src, dst, nrows, n_per_row, imatrix);
}
void quantize_q6_k(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  quantize_rows<block_q6_K, q6k_block<false>, q6k_block<true>, kPlanQ6>(src, dst, nrows, n_per_row, imatrix);
}

}  // namespace lq::ref
