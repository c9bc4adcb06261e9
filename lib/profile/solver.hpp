// Internal: the size solver of dynamic profiles: per-tensor error measurement and the
// size-constrained choice of one type per tensor. Knows nothing of rules or presets.
#pragma once

#include <lq/context.hpp>
#include <lq/model.hpp>
#include <lq/profile.hpp>
#include <lq/quant_type.hpp>
#include <lq/sensitivity.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace lq::profile {

/// The per-tensor errors the solver works from: imatrix-weighted squared error (sum over the
/// tensor, estimated from sampled rows) of quantizing `tensor` to each candidate type.
struct TensorErrors {
  std::string tensor;
  int64_t n_elements = 0;
  std::vector<QuantType> types;
  std::vector<double> error;              ///< sum_rows sum_j w_j (x - q)^2
  std::vector<uint64_t> bytes;
  std::vector<double> protected_max_rel;  ///< max relative error over protected weights (0 if none)
};

/// Measures TensorErrors for every tensor in `tensors` and every type in `types` that fits,
/// with the kernels of ctx's back-end on ctx's threads; checks ctx's cancel token per tensor.
std::vector<TensorErrors> measure_errors(const ModelSource& model, const std::vector<std::string>& tensors,
                                         const std::vector<QuantType>& types, const ResolveOptions& opts,
                                         const Context& ctx = {});

/// Replaces each tensor's errors by the measured KLD of `table` (objective kld): a measured type
/// takes its KLD; another type its error times the tensor's KLD / error at the measured type
/// nearest in bits per weight (which must be among `errs`' types). Throws Errc::profile_error for
/// a tensor the table does not cover.
void apply_sensitivity(std::vector<TensorErrors>& errs, const SensitivityTable& table);

/// Chooses one type per tensor minimising the total error with total bytes <= budget
/// (Lagrangian relaxation + greedy fill). Throws Errc::profile_error if even the smallest
/// types exceed the budget.
std::vector<size_t> solve_allocation(const std::vector<TensorErrors>& errs, uint64_t budget_bytes);

}  // namespace lq::profile
