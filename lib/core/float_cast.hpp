// Float to integer truncation with x86's result where C++ leaves the conversion undefined (a value
// out of the target's range, or NaN): cvttss2si gives INT32_MIN, and a narrower target keeps the
// low bits of that 32-bit result, as compilers for x86 convert. The quantizers' references
// reproduce llama.cpp's files, made on x86, so the hostile rows that reach such values (a block
// whose inverse scale overflows to infinity) give the same bytes on every processor, without
// undefined behaviour. Also round half to even for clamped codes (the GPTQ and AWQ grids).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace lq {

inline int32_t trunc_i32(float v) {
  // -2^31 - 256 is the largest float below -2^31; 2^31 is the smallest above INT32_MAX.
  return v > -2147483904.0f && v < 2147483648.0f ? static_cast<int32_t>(v) : std::numeric_limits<int32_t>::min();
}

/// Round half to even (std::nearbyint in the default mode) of a value whose result is then clamped
/// to a range inside ±2^21 (a quantizer's codes), without nearbyint's library call in a
/// baseline-ISA build and branch-free, so loops vectorise: adding and subtracting 1.5 x 2^23 rounds
/// any |v| < 2^22 exactly so; beyond that the result is off by at most 2 but stays beyond the
/// range on the same side, so the clamped value is exact (infinities pass through). Needs strict
/// float semantics (no -ffast-math), as the whole library has.
inline float round_half_even_clamped(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;
}

inline int8_t trunc_i8(float v) { return static_cast<int8_t>(trunc_i32(v)); }  // modulo 2^8 (C++20)

}  // namespace lq
