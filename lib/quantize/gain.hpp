// Internal: the quantizer's gain correction. A least-squares scale leaves a block's decoded values
// x̂ shorter than its weights x (sum w x x̂ = sum w x̂² = (1 - e) sum w x², e the block's relative
// weighted error), so every quantized product comes out smaller by about its error, layer after
// layer. This raises each block's fp16 scale fields by f = sum w x² / sum w x x̂, so that the block
// keeps its weights' importance-weighted projection (gain 1). Applied by Quantizer to the tensors
// of runs with an importance matrix; measured on the model zoo (docs/quality-zoo.md).
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq {

/// Corrects the gain of `nrows` quantized rows `q` (type t) of the float rows `x` (`ncols` each),
/// block by block, weighted by `w` (one weight per column; nullptr: uniform). A block whose
/// projection is not positive, or whose factor falls outside [0.5, 2], is left as it is. Types
/// without fp16 scale fields (ref::block_scalable) are left as they are.
void correct_gain(QuantType t, const float* x, uint8_t* q, int64_t nrows, int64_t ncols, const float* w);

}  // namespace lq
