// Internal: quantizing a row that holds protected (super) weights, shared by the writer loop
// (quantizer.cpp) and the solver's error measurement (profile/solver.cpp), so both quantize
// such rows the same way; and the check that a list of protected weights fits the model, made
// where such a list enters (Quantizer::quantize, resolve_profile).
#pragma once

#include <lq/context.hpp>
#include <lq/model.hpp>
#include <lq/quant_type.hpp>
#include <lq/quantizer.hpp>

#include <cstdint>
#include <vector>

namespace lq {

/// Quantizes one row whose columns `cols` hold protected weights: their importance is raised
/// (x 1e4 of the row's largest) on top of `imatrix` (or uniform weights when nullptr), with
/// ctx's back-end's kernel.
void quantize_protected_row(QuantType t, const float* row, void* dst, int64_t n_per_row, const float* imatrix,
                            const std::vector<int64_t>& cols, const Context& ctx = {});

/// Errc::invalid_argument naming the first weight whose tensor `model` lacks or whose row or
/// column lies outside that tensor (a mask file made for another model, or a hostile one: the
/// coordinates index rows and columns directly).
void check_protected_weights(const std::vector<ProtectedWeight>& protect, const ModelSource& model);

}  // namespace lq
