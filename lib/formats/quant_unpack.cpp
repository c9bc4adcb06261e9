// Unpacking of third-party quantized linears (see quant_unpack.hpp): GPTQ's bit streams along the
// input axis (3-bit values crossing words), its zeros (v1: stored minus one), AWQ GEMM's nibble
// interleave, compressed-tensors' int32 packing with its signed offset, and FP8 E4M3 decoding
// with tensor, channel or block scales.
#include "formats/quant_unpack.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"

#include <cmath>
#include <cstring>

namespace lq::unpack {
namespace {

// One scale per (row, group): `s` holds one value (tensor), `rows` (channel) or rows * groups.
void unpack_fill_scales(IntWeight& w, std::span<const float> s) {
  const auto n = static_cast<size_t>(w.rows * w.n_groups);
  w.scale.resize(n);
  if (s.size() == 1) {
    for (auto& x : w.scale) x = s[0];
  } else if (s.size() == static_cast<size_t>(w.rows) && w.n_groups == 1) {
    for (size_t i = 0; i < n; ++i) w.scale[i] = s[i];
  } else if (s.size() == n) {
    for (size_t i = 0; i < n; ++i) w.scale[i] = s[i];
  } else {
    fail(Errc::invalid_model, "{} scales for {} rows and {} groups", s.size(), w.rows, w.n_groups);
  }
}

// g_idx given (act-order) or i / group_size; every index checked against the group count.
void unpack_fill_groups(IntWeight& w, std::span<const int32_t> g_idx, int64_t group_size) {
  w.g_idx.resize(static_cast<size_t>(w.cols));
  if (!g_idx.empty()) {
    if (static_cast<int64_t>(g_idx.size()) != w.cols)
      fail(Errc::invalid_model, "g_idx holds {} entries for {} input columns", g_idx.size(), w.cols);
    for (int64_t i = 0; i < w.cols; ++i) {
      const int32_t g = g_idx[static_cast<size_t>(i)];
      if (g < 0 || g >= w.n_groups)
        fail(Errc::invalid_model, "g_idx[{}] is {}, outside the {} groups", i, g, w.n_groups);
      w.g_idx[static_cast<size_t>(i)] = g;
    }
    return;
  }
  for (int64_t i = 0; i < w.cols; ++i) {
    const int64_t g = group_size > 0 ? i / group_size : 0;
    if (g >= w.n_groups)
      fail(Errc::invalid_model, "input column {} falls in group {} but there are {} groups (group_size {})", i, g,
           w.n_groups, group_size);
    w.g_idx[static_cast<size_t>(i)] = static_cast<int32_t>(g);
  }
}

int64_t unpack_groups_of(size_t n_scales, int64_t rows) {
  if (rows <= 0 || n_scales == 0 || n_scales % static_cast<size_t>(rows) != 0) {
    if (n_scales == 1) return 1;
    fail(Errc::invalid_model, "{} scales do not divide into {} rows", n_scales, rows);
  }
  return static_cast<int64_t>(n_scales / static_cast<size_t>(rows));
}

void unpack_check_bits(int bits) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) fail(Errc::invalid_model, "{}-bit codes are not supported", bits);
}

// An [out, in] weight of `bits`-bit codes whose groups follow from the count of its scales.
IntWeight unpack_weight_of(int64_t out, int64_t in, int bits, size_t n_scales, int64_t scale_rows) {
  IntWeight w;
  w.rows = out;
  w.cols = in;
  w.bits = bits;
  w.n_groups = unpack_groups_of(n_scales, scale_rows);
  return w;
}

// Scales stored [G, out] as the [out, G] of IntWeight.
std::vector<float> unpack_transposed_scales(std::span<const float> scales, int64_t groups, int64_t out) {
  if (static_cast<int64_t>(scales.size()) != groups * out) return {scales.begin(), scales.end()};  // one for all
  std::vector<float> st(static_cast<size_t>(out * groups));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t o = 0; o < out; ++o) st[static_cast<size_t>(o * groups + g)] = scales[static_cast<size_t>(g * out + o)];
  return st;
}

// Codes of each row o from a bit stream along the input axis: word(o, k) is its word k (< words).
template <class WordOf>
void unpack_stream_codes(IntWeight& w, int64_t words, const WordOf& word) {
  w.q.resize(static_cast<size_t>(w.rows * w.cols));
  for (int64_t o = 0; o < w.rows; ++o) {
    auto at = [&](int64_t k) { return k < words ? word(o, k) : 0; };
    for (int64_t i = 0; i < w.cols; ++i)
      w.q[static_cast<size_t>(o * w.cols + i)] = static_cast<uint8_t>(stream_value(at, i, w.bits));
  }
}

// Zero points of each group g from a bit stream along the output axis: word(g, k) is its word k
// (< words); `plus_one` for GPTQ v1's zeros, stored minus one.
template <class WordOf>
void unpack_stream_zeros(IntWeight& w, int64_t words, const WordOf& word, bool plus_one) {
  const uint32_t mask = (1u << w.bits) - 1u;
  for (int64_t g = 0; g < w.n_groups; ++g) {
    auto at = [&](int64_t k) { return k < words ? word(g, k) : 0; };
    for (int64_t o = 0; o < w.rows; ++o) {
      uint32_t z = stream_value(at, o, w.bits);
      if (plus_one) z = (z + 1u) & mask;
      w.zero[static_cast<size_t>(o * w.n_groups + g)] = static_cast<int32_t>(z);
    }
  }
}

// compressed-tensors' signed zero points (one for all, or one per row and group) plus the offset.
void unpack_signed_zeros(IntWeight& w, std::span<const int8_t> zero_signed, int32_t offset) {
  if (zero_signed.size() != w.zero.size() && zero_signed.size() != 1)
    fail(Errc::invalid_model, "weight_zero_point holds {} values, expected {}", zero_signed.size(), w.zero.size());
  for (size_t k = 0; k < w.zero.size(); ++k) w.zero[k] = zero_signed[zero_signed.size() == 1 ? 0 : k] + offset;
}

}  // namespace

void IntWeight::dequantize_rows(int64_t r0, int64_t n, float* dst) const {
  for (int64_t r = r0; r < r0 + n; ++r) {
    float* o = dst + (r - r0) * cols;
    const float* s = scale.data() + r * n_groups;
    const int32_t* z = zero.data() + r * n_groups;
    const uint8_t* qr = q.data() + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const int32_t g = g_idx[static_cast<size_t>(c)];
      o[c] = s[g] * static_cast<float>(static_cast<int32_t>(qr[c]) - z[g]);
    }
  }
}

bool IntWeight::contiguous_groups(int64_t group) const {
  for (int64_t c = 0; c < cols; ++c)
    if (g_idx[static_cast<size_t>(c)] != (group > 0 ? c / group : 0)) return false;
  return true;
}

std::string gptq_shape_error(int64_t out, int64_t in, int bits, int64_t n_groups, const std::vector<int64_t>& qweight,
                             const std::vector<int64_t>& qzeros, const std::vector<int64_t>& scales) {
  auto words = [bits](int64_t n) { return (n * bits + 31) / 32; };
  const std::vector<int64_t> want_w = {words(in), out}, want_z = {n_groups, words(out)}, want_s = {n_groups, out};
  auto show = [](const std::vector<int64_t>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  };
  if (qweight != want_w) return "qweight has shape " + show(qweight) + ", expected " + show(want_w);
  if (!qzeros.empty() && qzeros != want_z) return "qzeros has shape " + show(qzeros) + ", expected " + show(want_z);
  if (scales != want_s) return "scales has shape " + show(scales) + ", expected " + show(want_s);
  return {};
}

IntWeight gptq(std::span<const int32_t> qweight, std::span<const int32_t> qzeros, std::span<const float> scales,
               std::span<const int32_t> g_idx, int64_t out, int64_t in, int bits, int64_t group_size, bool v1_zeros) {
  unpack_check_bits(bits);
  IntWeight w = unpack_weight_of(out, in, bits, scales.size(), out);
  const int64_t in_words = (in * bits + 31) / 32;
  if (static_cast<int64_t>(qweight.size()) != in_words * out)
    fail(Errc::invalid_model, "qweight holds {} words, expected {} for [{}, {}] at {} bits", qweight.size(),
         in_words * out, out, in, bits);
  unpack_fill_scales(w, unpack_transposed_scales(scales, w.n_groups, out));
  unpack_fill_groups(w, g_idx, group_size);
  unpack_stream_codes(w, in_words, [&](int64_t o, int64_t k) { return qweight[static_cast<size_t>(k * out + o)]; });
  w.zero.assign(static_cast<size_t>(out * w.n_groups), static_cast<int32_t>(1u << (bits - 1)));
  if (!qzeros.empty()) {
    const int64_t zw = (out * bits + 31) / 32;
    if (static_cast<int64_t>(qzeros.size()) != zw * w.n_groups)
      fail(Errc::invalid_model, "qzeros holds {} words, expected {} ({} groups of {} outputs at {} bits)", qzeros.size(),
           zw * w.n_groups, w.n_groups, out, bits);
    unpack_stream_zeros(w, zw, [&](int64_t g, int64_t k) { return qzeros[static_cast<size_t>(g * zw + k)]; }, v1_zeros);
  }
  return w;
}

IntWeight awq_gemm(std::span<const int32_t> qweight, std::span<const int32_t> qzeros, std::span<const float> scales,
                   int64_t out, int64_t in, int64_t group_size) {
  // Nibble holding output c*8 + j: the inverse of the packing order {0,2,4,6,1,3,5,7}.
  static constexpr int kAwqNibbleOf[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  if (out % 8 != 0) fail(Errc::invalid_model, "out_features {} is not a multiple of 8", out);
  IntWeight w = unpack_weight_of(out, in, 4, scales.size(), in > 0 ? out : 1);
  const int64_t oc = out / 8;
  if (static_cast<int64_t>(qweight.size()) != in * oc)
    fail(Errc::invalid_model, "qweight holds {} words, expected {} ([{}, {}])", qweight.size(), in * oc, in, oc);
  unpack_fill_scales(w, unpack_transposed_scales(scales, w.n_groups, out));
  unpack_fill_groups(w, {}, group_size);
  w.q.resize(static_cast<size_t>(out * in));
  for (int64_t i = 0; i < in; ++i)
    for (int64_t c = 0; c < oc; ++c) {
      const auto word = static_cast<uint32_t>(qweight[static_cast<size_t>(i * oc + c)]);
      for (int j = 0; j < 8; ++j)
        w.q[static_cast<size_t>((c * 8 + j) * in + i)] = static_cast<uint8_t>((word >> (4 * kAwqNibbleOf[j])) & 15u);
    }
  w.zero.assign(static_cast<size_t>(out * w.n_groups), 8);
  if (!qzeros.empty()) {
    if (static_cast<int64_t>(qzeros.size()) != w.n_groups * oc)
      fail(Errc::invalid_model, "qzeros holds {} words, expected {} ([{}, {}])", qzeros.size(), w.n_groups * oc,
           w.n_groups, oc);
    for (int64_t g = 0; g < w.n_groups; ++g)
      for (int64_t c = 0; c < oc; ++c) {
        const auto word = static_cast<uint32_t>(qzeros[static_cast<size_t>(g * oc + c)]);
        for (int j = 0; j < 8; ++j)
          w.zero[static_cast<size_t>((c * 8 + j) * w.n_groups + g)] = static_cast<int32_t>((word >> (4 * kAwqNibbleOf[j])) & 15u);
      }
  }
  return w;
}

IntWeight ct_packed(std::span<const int32_t> packed, std::span<const float> scales, std::span<const int32_t> zero_packed,
                    std::span<const int8_t> zero_signed, std::span<const int32_t> g_idx, int64_t out, int64_t in, int bits,
                    int64_t group_size) {
  if (bits < 1 || bits > 8) fail(Errc::invalid_model, "{}-bit packed codes are not supported", bits);
  IntWeight w = unpack_weight_of(out, in, bits, scales.size(), out);
  const int64_t pw = (in * bits + 31) / 32;
  if (static_cast<int64_t>(packed.size()) != pw * out)
    fail(Errc::invalid_model, "weight_packed holds {} words, expected {} ([{}, {}])", packed.size(), pw * out, out, pw);
  unpack_fill_scales(w, scales);
  unpack_fill_groups(w, g_idx, group_size);
  unpack_stream_codes(w, pw, [&](int64_t o, int64_t k) { return packed[static_cast<size_t>(o * pw + k)]; });
  const int32_t offset = 1 << (bits - 1);
  w.zero.assign(static_cast<size_t>(out * w.n_groups), offset);
  if (!zero_packed.empty()) {
    const int64_t zw = (out * bits + 31) / 32;
    if (static_cast<int64_t>(zero_packed.size()) != zw * w.n_groups)
      fail(Errc::invalid_model, "weight_zero_point holds {} words, expected {} ([{}, {}])", zero_packed.size(),
           zw * w.n_groups, zw, w.n_groups);
    const int64_t groups = w.n_groups;
    unpack_stream_zeros(w, zw, [&](int64_t g, int64_t k) { return zero_packed[static_cast<size_t>(k * groups + g)]; },
                        false);
  } else if (!zero_signed.empty()) {
    unpack_signed_zeros(w, zero_signed, offset);
  }
  return w;
}

IntWeight ct_int8(std::span<const int8_t> v, std::span<const float> scales, std::span<const int8_t> zero_signed,
                  std::span<const int32_t> g_idx, int64_t out, int64_t in, int bits, int64_t group_size) {
  if (bits < 2 || bits > 8) fail(Errc::invalid_model, "{}-bit int codes are not supported", bits);
  IntWeight w = unpack_weight_of(out, in, bits, scales.size(), out);
  if (static_cast<int64_t>(v.size()) != out * in)
    fail(Errc::invalid_model, "weight holds {} values, expected [{}, {}]", v.size(), out, in);
  unpack_fill_scales(w, scales);
  unpack_fill_groups(w, g_idx, group_size);
  const int32_t offset = 1 << (bits - 1);
  w.q.resize(v.size());
  for (size_t k = 0; k < v.size(); ++k) {
    const int32_t x = v[k];
    if (x < -offset || x >= offset)
      fail(Errc::invalid_model, "value {} at [{}, {}] is outside the {}-bit range", x, static_cast<int64_t>(k) / in,
           static_cast<int64_t>(k) % in, bits);
    w.q[k] = static_cast<uint8_t>(x + offset);
  }
  w.zero.assign(static_cast<size_t>(out * w.n_groups), offset);
  if (!zero_signed.empty()) unpack_signed_zeros(w, zero_signed, offset);
  return w;
}

float fp8_e4m3(uint8_t b) {
  const float sign = (b & 0x80) ? -1.0f : 1.0f;
  const int e = (b >> 3) & 15;
  const int m = b & 7;
  if (e == 15 && m == 7) return std::nanf("");
  if (e == 0) return sign * std::ldexp(static_cast<float>(m), -9);  // subnormal: m/8 * 2^-6
  return sign * std::ldexp(static_cast<float>(8 + m), e - 10);      // (1 + m/8) * 2^(e-7)
}

int64_t fp8_dequantize_rows(std::span<const uint8_t> w, std::span<const float> scales, int64_t in,
                            int64_t block_rows, int64_t block_cols, int64_t r0, int64_t n, float* dst) {
  const int64_t scale_cols = block_cols > 0 ? (in + block_cols - 1) / block_cols : 1;
  for (int64_t r = r0; r < r0 + n; ++r)
    for (int64_t c = 0; c < in; ++c) {
      const uint8_t b = w[static_cast<size_t>(r * in + c)];
      if (fp8_e4m3_is_nan(b)) return r * in + c;
      const float s = scales.size() == 1 ? scales[0]
                                         : scales[static_cast<size_t>((r / block_rows) * scale_cols + c / block_cols)];
      dst[(r - r0) * in + c] = fp8_e4m3(b) * s;
    }
  return -1;
}

}  // namespace lq::unpack
