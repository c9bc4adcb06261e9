// Internal: the operations the engine asks of a back-end, type-independent (products of any
// weight type, float GEMM, the row operations of the forward and backward passes). A back-end
// fills the slots it has (Backend::engine_ops()); Registry::engine_ops() fills the rest from the
// CPU back-end, explicitly, slot by slot. Operands are host memory.
// Must not hold kernels of its own or know a back-end's internals (record layouts, tiles).
#pragma once

#include <lq/quant_type.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace lq::detail {

/// The weight operand of a product: `rows` rows of `cols` values, packed as in GGUF.
struct WeightView {
  QuantType type = QuantType::F32;
  const uint8_t* data = nullptr;
  int64_t rows = 0, cols = 0;
  size_t row_bytes = 0;
  const char* name = "";  ///< for error messages
  /// W8 weights: a fixed activation scale (static W8A8: every token as x / input_scale, rounded);
  /// 0: a scale per token.
  float input_scale = 0;
  /// Stored column c is the matrix's column col_order[c] (null: in order); only on the dequantizing
  /// path (a type with a dequantize kernel and no dot or panel).
  const int32_t* col_order = nullptr;
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
};

/// One product y[m x w.rows] = x[m x w.cols] * W^T (row-major, y rows w.rows apart).
struct Product {
  WeightView w;
  const float* x = nullptr;
  int64_t m = 0;
  float* y = nullptr;
  bool float_act = false;  ///< BF16 weights: float activations even in batches (slower)
  bool f16_act = false;    ///< F16 weights: activations rounded to binary16 first (llama.cpp's arithmetic)
};

/// C[m x n] (+)= A[m x k] * B[n x k]^T with B rows in F32, F16 or BF16.
struct GemmArgs {
  int64_t m, n, k;
  const float* a;
  int64_t lda;
  const void* b;
  QuantType btype;  // F32, F16 or BF16
  int64_t ldb;
  float* c;
  int64_t ldc;
  bool accumulate;  // C += A B^T instead of C = A B^T
  // Causal attention (both -1 when unused; the m <= 3 path ignores them):
  //   c_causal >= 0: only C[i][j] with j <= i + c_causal are needed; others may be left unwritten.
  //   a_causal >= 0: A[i][p] is zero for p > i + a_causal, so those terms are skipped (adding
  //   an exact zero changes no sum).
  int64_t c_causal = -1;
  int64_t a_causal = -1;
};

/// A back-end's engine operations; a null slot is taken from the CPU back-end.
struct EngineOps {
  /// Whether products() can multiply by weights of type t.
  bool (*supports_weight)(QuantType t) = nullptr;
  /// Runs several products in one parallel region on `threads` threads; results do not depend
  /// on the thread count.
  void (*products)(std::span<const Product> ops, int threads) = nullptr;
  /// One float GEMM on the calling thread (attention, backward pass).
  void (*gemm)(const GemmArgs& g) = nullptr;
  /// In place: x = softmax(scale * x) over n values.
  void (*softmax_row)(int64_t n, float* x, float scale) = nullptr;
  /// out = silu(gate) * up over n values.
  void (*silu_mul)(int64_t n, const float* gate, const float* up, float* out) = nullptr;
  /// y = x / sqrt(mean(x^2) + eps) * g over d values; returns 1 / sqrt(mean(x^2) + eps).
  float (*rms_norm_row)(int64_t d, const float* x, const float* g, float eps, float* y) = nullptr;
  /// y[i] = x[i] rounded to the nearest binary16 (ties to even), i < n; y may be x.
  void (*round_half)(int64_t n, const float* x, float* y) = nullptr;
  /// acc[i] += x[r * ldx + i]^2 (in double), i < n, over rows r = 0 .. rows - 1 in order.
  void (*add_squares)(int64_t n, const float* x, int64_t ldx, int64_t rows, double* acc) = nullptr;
  /// Number of NaN or infinite values in x[0..n).
  int64_t (*count_non_finite)(const float* x, int64_t n) = nullptr;
  /// d[i] = s (q - z) - x[i], q = clamp(round_half_even(clamp(x[i], lo, hi) / s) + z, 0, maxq),
  /// i < n, lo <= hi: one group's error on an asymmetric integer grid (AWQ's clipping search;
  /// GPTQ's scale search with lo, hi = ∓inf), exactly the scalar values.
  void (*grid_error)(int64_t n, const float* x, float lo, float hi, float s, float z, float maxq, float* d) = nullptr;
  /// out = gelu_tanh(gate) * up over n values (GELU's tanh approximation; out may be gate).
  void (*gelu_tanh_mul)(int64_t n, const float* gate, const float* up, float* out) = nullptr;
  /// In place: x = cap * tanh(scale * x / cap) over n values (a soft-cap).
  void (*soft_cap)(int64_t n, float* x, float scale, float cap) = nullptr;
  /// A row of n >= 1 logits: *max its largest value, *argmax the first index holding it; returns
  /// sum exp(x[i] - max), the exponentials in float, summed in double (llama-perplexity's
  /// arithmetic; log of it and the max give the row's log-softmax).
  double (*sum_exp_row)(int64_t n, const float* x, float* max, int64_t* argmax) = nullptr;
  /// sum_i p_i ((r[i] - m[i]) - k) in double, p_i = exp((r[i] - rmax) - rls) in float: the KL
  /// divergence of the distribution of logits m (log-softmax m[i] - mmax - mls) from that of r
  /// (log-softmax r[i] - rmax - rls) when k = (rmax + rls) - (mmax + mls).
  double (*kld_row)(int64_t n, const float* r, const float* m, float rmax, float rls, double k) = nullptr;
  /// Frees what products() keeps on the calling thread between calls (the activations' records,
  /// by input address); the next call makes them again. For callers whose inputs move.
  void (*release_buffers)() = nullptr;
};

}  // namespace lq::detail
