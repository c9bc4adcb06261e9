// Internal: counts over a tensor shape given as dimensions, fastest-varying first (GGUF's `ne`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace lq {

/// The number of elements: the product of all dimensions (1 for no dimensions).
inline int64_t element_count(std::span<const int64_t> ne) {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

/// The number of rows: the product of the dimensions after the first (the row length).
inline int64_t row_count(std::span<const int64_t> ne) {
  return ne.empty() ? 1 : element_count(ne.subspan(1));
}

}  // namespace lq
