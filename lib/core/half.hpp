// IEEE binary16 and bfloat16 conversions (round to nearest even), bit-exact with ggml's.
// Internal linkage on purpose: the per-ISA kernel TUs include this header, and an inline function
// with external linkage could be merged across them and run AVX code on the SSE2 path.
#pragma once

#include <bit>
#include <cstdint>
#include <cmath>
#include <cstring>

namespace lq {

static inline float fp16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { ++e; man <<= 1; } while ((man & 0x400u) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | man << 13;
  } else {
    bits = sign | (exp + (127 - 15)) << 23 | man << 13;
  }
  return std::bit_cast<float>(bits);
}

static inline uint16_t f32_to_fp16(float f) {
  const uint32_t w = std::bit_cast<uint32_t>(f);
  const uint32_t sign = w & 0x80000000u;
  const uint32_t shl1 = w + w;
  if (shl1 > 0xff000000u) return static_cast<uint16_t>((sign >> 16) | 0x7e00u);  // NaN
  // Scale trick: rounds to nearest even through the FPU, handles overflow and subnormals.
  float base = (std::fabs(f) * 0x1.0p+112f) * 0x1.0p-110f;
  uint32_t bias = shl1 & 0xff000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = std::bit_cast<float>((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = std::bit_cast<uint32_t>(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007c00u;
  const uint32_t man_bits = bits & 0x00000fffu;
  return static_cast<uint16_t>((sign >> 16) | (exp_bits + man_bits));
}

static inline float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

static inline uint16_t f32_to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64);  // quiet NaN
  return static_cast<uint16_t>((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

}  // namespace lq
