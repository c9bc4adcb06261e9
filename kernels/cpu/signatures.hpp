// The function types of the CPU kernels' entry points, so that a family header declares each
// kernel in one line: `template <class Arch> struct DotQ4K { static DotSig run; };`, then defines
// run out of class (not inline: the extern template declarations in dispatch.cpp then keep the
// bodies from being instantiated without their ISA flags). Types only; no kernel lives here.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lq::cpu {

/// nrows x n_per_row floats -> blocks of the type; imatrix (optional) weights the error.
using QuantizeSig = void(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
/// n values of the type -> floats.
using DequantSig = void(const void* src, float* dst, int64_t n);
/// The dot product of n values of the type against n values of its activation type.
using DotSig = float(int64_t n, const void* x, const void* y);
/// y[t * ldy + r] = dot(weight row r, activation row t) over a small fixed tile; k values per row.
using TileSig = void(int64_t k, const void* w, size_t ws, const void* x, size_t xs, float* y, int64_t ldy);

}  // namespace lq::cpu
