// Scaling a block through its fp16 scale fields (block_gain.hpp): the field offsets come from the
// block structs of blocks.hpp (the file contract).
#include "types/ref/block_gain.hpp"

#include "core/half.hpp"
#include "types/ref/blocks.hpp"

#include <cmath>
#include <cstddef>
#include <cstring>
#include <initializer_list>

namespace lq::ref {

namespace {

// The fp16 fields of a type's block that every decoded value is proportional to.
struct Fields {
  int n = 0;
  size_t off[2] = {0, 0};
};

Fields fields_of(QuantType t) {
  switch (t) {
    case QuantType::Q4_0: return {1, {offsetof(block_q4_0, d)}};
    case QuantType::Q4_1: return {2, {offsetof(block_q4_1, d), offsetof(block_q4_1, m)}};
    case QuantType::Q5_0: return {1, {offsetof(block_q5_0, d)}};
    case QuantType::Q5_1: return {2, {offsetof(block_q5_1, d), offsetof(block_q5_1, m)}};
    case QuantType::Q8_0: return {1, {offsetof(block_q8_0, d)}};
    case QuantType::Q2_K: return {2, {offsetof(block_q2_K, d), offsetof(block_q2_K, dmin)}};
    case QuantType::Q3_K: return {1, {offsetof(block_q3_K, d)}};
    case QuantType::Q4_K: return {2, {offsetof(block_q4_K, d), offsetof(block_q4_K, dmin)}};
    case QuantType::Q5_K: return {2, {offsetof(block_q5_K, d), offsetof(block_q5_K, dmin)}};
    case QuantType::Q6_K: return {1, {offsetof(block_q6_K, d)}};
    case QuantType::IQ2_XXS: return {1, {offsetof(block_iq2_xxs, d)}};
    case QuantType::IQ2_XS: return {1, {offsetof(block_iq2_xs, d)}};
    case QuantType::IQ2_S: return {1, {offsetof(block_iq2_s, d)}};
    case QuantType::IQ3_XXS: return {1, {offsetof(block_iq3_xxs, d)}};
    case QuantType::IQ3_S: return {1, {offsetof(block_iq3_s, d)}};
    case QuantType::IQ1_S: return {1, {offsetof(block_iq1_s, d)}};
    case QuantType::IQ4_NL: return {1, {offsetof(block_iq4_nl, d)}};
    case QuantType::IQ4_XS: return {1, {offsetof(block_iq4_xs, d)}};
    case QuantType::TQ1_0: return {1, {offsetof(block_tq1_0, d)}};
    case QuantType::TQ2_0: return {1, {offsetof(block_tq2_0, d)}};
    default: return {};
  }
}

// f * the fp16 value h, as fp16; false when not finite there.
bool scaled(uint16_t h, float f, uint16_t& out) {
  const float v = fp16_to_f32(h) * f;
  out = f32_to_fp16(v);
  return std::isfinite(fp16_to_f32(out));
}

}  // namespace

bool block_scalable(QuantType t) { return t == QuantType::IQ1_M || fields_of(t).n > 0; }

bool scale_block(QuantType t, uint8_t* block, float f) {
  if (t == QuantType::IQ1_M) {
    uint16_t sc[4];
    std::memcpy(sc, block + offsetof(block_iq1_m, scales), sizeof sc);
    const uint16_t bits = static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) |
                                                (sc[3] & 0xf000));
    uint16_t nb;
    if (!scaled(bits, f, nb)) return false;
    sc[0] = static_cast<uint16_t>((sc[0] & 0x0fff) | ((nb & 0x000f) << 12));
    sc[1] = static_cast<uint16_t>((sc[1] & 0x0fff) | ((nb & 0x00f0) << 8));
    sc[2] = static_cast<uint16_t>((sc[2] & 0x0fff) | ((nb & 0x0f00) << 4));
    sc[3] = static_cast<uint16_t>((sc[3] & 0x0fff) | (nb & 0xf000));
    std::memcpy(block + offsetof(block_iq1_m, scales), sc, sizeof sc);
    return true;
  }
  const Fields fl = fields_of(t);
  if (fl.n == 0) return false;
  uint16_t now[2], next[2];
  for (int i = 0; i < fl.n; ++i) {
    std::memcpy(&now[i], block + fl.off[i], 2);
    if (!scaled(now[i], f, next[i])) return false;
  }
  for (int i = 0; i < fl.n; ++i) std::memcpy(block + fl.off[i], &next[i], 2);
  return true;
}

}  // namespace lq::ref
