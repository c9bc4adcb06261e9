// liblq: decoding stored tensor rows (any type with a decoder) to float, with the dequantize
// kernels of a context's back-end. The file readers (gguf.hpp) only hand out bytes; this is the
// step from bytes to compute.
#pragma once

#include <lq/api.hpp>
#include <lq/context.hpp>
#include <lq/gguf.hpp>
#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq {

/// Decodes `nrows` rows of `row_length` elements of `type`, stored back to back at `src`, to
/// float (`dst` holds nrows * row_length floats), with the dequantize kernel of ctx's back-end
/// (the CPU's where that back-end has none). Throws Errc::invalid_model for a type without one.
LQ_API void decode_rows_f32(QuantType type, const uint8_t* src, int64_t row_length, int64_t nrows, float* dst,
                            const Context& ctx = {});
/// Rows [row0, row0 + nrows) of tensor `t` of the GGUF file `reader` decoded to float (`dst`
/// holds nrows * ne[0] floats); gguf::Reader itself only hands out bytes.
LQ_API void read_rows_f32(const gguf::Reader& reader, const gguf::TensorInfo& t, int64_t row0, int64_t nrows,
                          float* dst, const Context& ctx = {});

}  // namespace lq
