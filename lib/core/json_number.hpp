// Internal: numbers read from untrusted JSON (config.json, quantization_config). nlohmann's
// get<int>() converts a float with static_cast, undefined behaviour when the value does not fit
// (1e300), and an integer by truncation (2^32 + 8 read as 8); json_number refuses both.
#pragma once

#include "core/fail.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>
#include <type_traits>

namespace lq {

/// `v` as T. For an integer T (not bool): an integer, or a float with an integral value, in T's
/// range, else Errc::invalid_model naming `what`. Other types (and non-numbers) as nlohmann's
/// get<T>() gives them (a json::type_error for a wrong type).
template <typename T>
T json_number(const nlohmann::json& v, std::string_view what) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (v.is_number()) {
      using L = std::numeric_limits<T>;
      bool ok;
      if (v.is_number_float()) {
        const double d = v.get<double>();
        const double hi = std::ldexp(1.0, L::digits);  // 2^63 for int64_t: the first value past the range
        ok = d >= (L::is_signed ? -hi : 0.0) && d < hi && d == std::trunc(d);
      } else if (v.is_number_unsigned()) {
        ok = v.get<uint64_t>() <= static_cast<uint64_t>(L::max());
      } else {
        const int64_t i = v.get<int64_t>();
        ok = i >= static_cast<int64_t>(L::min()) && (i < 0 || static_cast<uint64_t>(i) <= static_cast<uint64_t>(L::max()));
      }
      if (!ok) fail(Errc::invalid_model, "{} is {}: not an integer in [{}, {}]", what, v.dump(), L::min(), L::max());
      return v.is_number_float() ? static_cast<T>(v.get<double>()) : v.get<T>();
    }
  }
  return v.get<T>();
}

}  // namespace lq
