// Scaling every value a block decodes to by one factor, through the block's fp16 scale fields
// alone (the codes, sub-block scales and signs stay): d (and dmin or m where the type has one)
// multiplied and rounded to fp16 again; IQ1_M's d, split over the top nibbles of its four scale
// words, decoded, multiplied and put back. Used by the quantizer's gain correction
// (lib/quantize/gain.cpp).
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::ref {

/// Whether scale_block() can scale blocks of type t (every quantized storage type but Q8_1/Q8_K).
bool block_scalable(QuantType t);

/// Multiplies the fp16 scale fields of the block at `block` (of type t) by f; what it decodes to is
/// then f times what it decoded to, up to the fp16 rounding of the new scales. False (the block
/// untouched) for a type without such fields, or when a scaled field would not be finite in fp16.
bool scale_block(QuantType t, uint8_t* block, float f);

}  // namespace lq::ref
