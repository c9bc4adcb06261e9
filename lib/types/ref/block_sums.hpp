// The outer loop of the reference dot products: the sum over blocks of a per-block float term,
// added in block order (so every dot keeps the float steps of llama.cpp's reference). Loops only:
// what a block contributes is the caller's.
#pragma once

#include <cstdint>

namespace lq::ref {

/// The sum over the n / kN blocks x_i (Block) and y_i (Act) of term(x_i, y_i), in block order.
template <class Block, class Act, int kN, class Term>
float sum_blocks(int64_t n, const void* xv, const void* yv, Term&& term) {
  const auto* x = static_cast<const Block*>(xv);
  const auto* y = static_cast<const Act*>(yv);
  float s = 0;
  for (int64_t i = 0; i < n / kN; ++i) s += term(x[i], y[i]);
  return s;
}

}  // namespace lq::ref
