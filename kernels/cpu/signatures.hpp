// The function types of the CPU kernels' entry points and the list of those entry points: each
// kernel is one line here, `template <class Arch> struct DotQ4K { static DotSig run; };`, and its
// family header defines run out of class (not inline: the extern template declarations in
// dispatch.cpp then keep the bodies from being instantiated without their ISA flags). Types and
// declarations only; no kernel lives here.
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

// Every kernel's entry point, by family header (which defines run). Tile kernels:
// y[t * ldy + r] = dot(row r of w, row t of x) for r, t < 4, x rows in Q8_0.

// float.hpp
template <class Arch> struct DequantBf16 { static DequantSig run; };
template <class Arch> struct DotF32 { static DotSig run; };

// legacy.hpp
template <class Arch> struct QuantizeQ8_0 { static QuantizeSig run; };
template <class Arch> struct QuantizeQ4_0 { static QuantizeSig run; };
template <class Arch> struct QuantizeQ4_1 { static QuantizeSig run; };
template <class Arch> struct QuantizeQ5_0 { static QuantizeSig run; };
template <class Arch> struct QuantizeQ5_1 { static QuantizeSig run; };
template <class Arch> struct DequantW4G { static DequantSig run; };
template <class Arch> struct DequantW8G { static DequantSig run; };

// legacy_dot.hpp
template <class Arch> struct DotQ8_0 { static DotSig run; };
template <class Arch> struct DotQ4_0 { static DotSig run; };
template <class Arch> struct DotQ4_1 { static DotSig run; };
template <class Arch> struct DotQ5_0 { static DotSig run; };
template <class Arch> struct DotQ5_1 { static DotSig run; };
template <class Arch> struct TileQ8_0 { static TileSig run; };
template <class Arch> struct TileQ4_0 { static TileSig run; };
template <class Arch> struct TileQ5_0 { static TileSig run; };

// kquants.hpp
template <class Arch> struct QuantizeQ2K { static QuantizeSig run; };
template <class Arch> struct DequantQ2K { static DequantSig run; };
template <class Arch> struct DotQ2K { static DotSig run; };
template <class Arch> struct QuantizeQ3K { static QuantizeSig run; };
template <class Arch> struct DequantQ3K { static DequantSig run; };
template <class Arch> struct DotQ3K { static DotSig run; };
template <class Arch> struct QuantizeQ4K { static QuantizeSig run; };
template <class Arch> struct DequantQ4K { static DequantSig run; };
template <class Arch> struct DotQ4K { static DotSig run; };
template <class Arch> struct QuantizeQ5K { static QuantizeSig run; };
template <class Arch> struct DequantQ5K { static DequantSig run; };
template <class Arch> struct DotQ5K { static DotSig run; };
template <class Arch> struct QuantizeQ6K { static QuantizeSig run; };
template <class Arch> struct DequantQ6K { static DequantSig run; };
template <class Arch> struct DotQ6K { static DotSig run; };

// iq1.hpp
template <class Arch> struct DequantIq1S { static DequantSig run; };
template <class Arch> struct DequantIq1M { static DequantSig run; };
template <class Arch> struct DotIq1SQ8K { static DotSig run; };
template <class Arch> struct DotIq1MQ8K { static DotSig run; };

// iq2.hpp
template <class Arch> struct DequantIq2Xxs { static DequantSig run; };
template <class Arch> struct DequantIq2Xs { static DequantSig run; };
template <class Arch> struct DequantIq2S { static DequantSig run; };
template <class Arch> struct DotIq2XxsQ8K { static DotSig run; };
template <class Arch> struct DotIq2XsQ8K { static DotSig run; };
template <class Arch> struct DotIq2SQ8K { static DotSig run; };

// iq3.hpp
template <class Arch> struct DequantIq3Xxs { static DequantSig run; };
template <class Arch> struct DequantIq3S { static DequantSig run; };
template <class Arch> struct DotIq3Xxs { static DotSig run; };
template <class Arch> struct DotIq3S { static DotSig run; };

// iq4.hpp
template <class Arch> struct QuantizeIq4Nl { static QuantizeSig run; };
template <class Arch> struct QuantizeIq4Xs { static QuantizeSig run; };
template <class Arch> struct DequantIq4Nl { static DequantSig run; };
template <class Arch> struct DequantIq4Xs { static DequantSig run; };
template <class Arch> struct DotIq4Nl { static DotSig run; };
template <class Arch> struct DotIq4Xs { static DotSig run; };

// ternary.hpp
template <class Arch> struct QuantizeTq1_0 { static QuantizeSig run; };
template <class Arch> struct QuantizeTq2_0 { static QuantizeSig run; };
template <class Arch> struct DequantTq1_0 { static DequantSig run; };
template <class Arch> struct DequantTq2_0 { static DequantSig run; };
template <class Arch> struct DotTq1_0 { static DotSig run; };
template <class Arch> struct DotTq2_0 { static DotSig run; };

}  // namespace lq::cpu
