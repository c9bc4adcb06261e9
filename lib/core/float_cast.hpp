// Float to integer truncation with x86's result where C++ leaves the conversion undefined (a value
// out of the target's range, or NaN): cvttss2si gives INT32_MIN, and a narrower target keeps the
// low bits of that 32-bit result, as compilers for x86 convert. The quantizers' references
// reproduce llama.cpp's files, made on x86, so the hostile rows that reach such values (a block
// whose inverse scale overflows to infinity) give the same bytes on every processor, without
// undefined behaviour.
#pragma once

#include <cstdint>
#include <limits>

namespace lq {

inline int32_t trunc_i32(float v) {
  // -2^31 - 256 is the largest float below -2^31; 2^31 is the smallest above INT32_MAX.
  return v > -2147483904.0f && v < 2147483648.0f ? static_cast<int32_t>(v) : std::numeric_limits<int32_t>::min();
}

inline int8_t trunc_i8(float v) { return static_cast<int8_t>(trunc_i32(v)); }  // modulo 2^8 (C++20)

}  // namespace lq
