// Internal: the engine's forward pass in float with every intermediate kept, and its backward
// pass for the mean next-token cross-entropy down to every linear weight.
#pragma once

#include "engine/impl.hpp"

#include <functional>
#include <memory>
#include <span>
#include <vector>

namespace lq::engine {

/// The loss gradient of one linear weight W (n_out x n_in) over one chunk: dL/dW = dy^T x, with
/// x (m x n_in) the weight's input rows and dy (m x n_out) the gradient of its output rows.
struct WeightGrad {
  int linear = -1;  ///< index into Model::linears()
  int64_t m = 0;
  int64_t n_in = 0, n_out = 0;
  const float* x = nullptr;
  const float* dy = nullptr;
  /// A merged expert tensor (n_expert > 1): the expert whose 2-D slice W is, x and dy holding the
  /// rows of the tokens routed to it (m of them); -1 for any other weight.
  int expert = -1;
};

/// Forward and backward passes over one token sequence at a time (positions 0.., empty cache).
/// Weights of any type the engine multiplies with; the activations and gradients are float.
/// Memory: the intermediates of every block for one sequence (n_layer x ctx x widths).
class Backprop {
 public:
  Backprop(const Model& model, const Context& ctx);
  /// The same on `threads` threads (0 = all) and the registry's back-end.
  Backprop(const Model& model, int threads);
  ~Backprop();
  Backprop(const Backprop&) = delete;
  Backprop& operator=(const Backprop&) = delete;

  /// Loss = mean over positions t < m-1 of -log p(tokens[t+1] | tokens[..t]). Calls `on_grad`
  /// for every linear with wanted[linear] != 0, from the output down to block 0. Returns the loss.
  double run(std::span<const int32_t> tokens, const std::vector<char>& wanted,
             const std::function<void(const WeightGrad&)>& on_grad);
  /// Forward only: the same loss (for checks).
  double loss(std::span<const int32_t> tokens);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Per input column j of dW = dy^T x: abs_sum[j] = sum_o |dW[o, j]| and sq_sum[j] = sum_o dW[o, j]^2
/// (each column summed in one fixed order: the same bits for any thread count).
void weight_grad_columns(const WeightGrad& g, double* abs_sum, double* sq_sum, int threads);
/// dW (n_out x n_in, row-major).
void weight_grad_full(const WeightGrad& g, float* dw, int threads);

}  // namespace lq::engine
