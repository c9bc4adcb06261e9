// Internal: the engine's weight store and its matrix product.
#pragma once

#include <lq/context.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"

#include "backend/ops.hpp"

#include <cstdlib>
#include <initializer_list>
#include <utility>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace lq::unpack {
struct IntWeight;
}

namespace lq::engine {

/// A tensor's bytes: its own (64-byte aligned, writable) or shared read-only from a mapped file.
/// Its own bytes of 1 MiB or more are a mapping of their own, returned to the system when freed:
/// long-lived tensors then never pin freed memory of the allocator's heap (the streamed GPTQ and
/// AWQ runs replace a block's tensors one by one, between large short-lived buffers).
struct BufferFree {
  size_t mapped = 0;  // the mapping's length; 0: from the allocator
  void operator()(uint8_t* p) const;
};

class Buffer {
 public:
  Buffer() = default;
  /// n writable bytes of its own, 64-byte aligned.
  explicit Buffer(size_t n);
  /// n read-only bytes held elsewhere (a mapped file), kept alive by `shared`.
  Buffer(std::shared_ptr<const uint8_t> shared, size_t n) : shared_(std::move(shared)), n_(n) {}
  /// Writable bytes: only a buffer of its own has them.
  uint8_t* data() {
    LQ_ASSERT(!shared_);
    return p_.get();
  }
  const uint8_t* data() const { return shared_ ? shared_.get() : p_.get(); }
  size_t size() const { return n_; }
  bool is_shared() const { return shared_ != nullptr; }

 private:
  std::unique_ptr<uint8_t[], BufferFree> p_;
  std::shared_ptr<const uint8_t> shared_;
  size_t n_ = 0;
};

/// One tensor in memory, rows packed as in GGUF.
struct Tensor {
  std::string name;
  QuantType type = QuantType::F32;
  std::vector<int64_t> ne;
  Buffer data;
  float input_scale = 0;  // W8 linears: static activation scale (0: per token)
  // W4G of a group act-order checkpoint: stored column c is the tensor's column col_order[c] (the
  // columns sorted by group so that every 32 lie in one); null: the columns in order.
  std::shared_ptr<const std::vector<int32_t>> col_order;
  int64_t row_length() const { return ne.empty() ? 0 : ne[0]; }
  int64_t n_rows() const;
  size_t row_bytes() const { return type_info(type).row_bytes(row_length()); }
  const uint8_t* row(int64_t r) const { return data.data() + static_cast<size_t>(r) * row_bytes(); }
  const float* f32() const { return reinterpret_cast<const float*>(data.data()); }
};

/// An integer weight held as its own codes, scales and zero points: W4G blocks for codes of at
/// most 4 bits, W8G for at most 8, where every 32 columns lie in one group: in their order, or,
/// where a group act-order g_idx mixes groups within 32 columns, with the columns sorted by group
/// (stably) when every 32 of that order lie in one (`order`: stored column c is column order[c];
/// empty when the columns stay in order). `bytes` empty where it has no such form (groups not in
/// whole blocks of 32, a row length not a multiple of 32). Model::load holds a third-party
/// checkpoint's linears so; the streamed GPTQ and AWQ runs hold each quantized linear so for the
/// pass that feeds the next block. threads: 0 for all the hardware's.
struct IntBlocks {
  QuantType type = QuantType::W4G;
  std::vector<uint8_t> bytes;
  std::vector<int32_t> order;
};
IntBlocks int_blocks(const unpack::IntWeight& w, int threads = 0);

struct Block {
  Tensor* attn_norm = nullptr;
  Tensor* ffn_norm = nullptr;
  Tensor* bq = nullptr;  // optional biases
  Tensor* bk = nullptr;
  Tensor* bv = nullptr;
  Tensor* q_norm = nullptr;  // per-head RMSNorm of q / k before RoPE (architectures with qk_norm)
  Tensor* k_norm = nullptr;
  int wq = -1, wk = -1, wv = -1, wo = -1, wgate = -1, wup = -1, wdown = -1;  // into linears
  // Fused architectures (phi3): wqkv gives q, k, v in one product (wq, wk, wv stay -1); with
  // fused_gate_up, wup's 2 x n_ff outputs are gate then up (wgate stays -1).
  int wqkv = -1;
  bool fused_gate_up = false;
  // Gemma 2/3: norms of the attention and MLP outputs, RMSNorm of each q/k head (gemma3).
  Tensor* attn_post_norm = nullptr;
  Tensor* ffn_post_norm = nullptr;
  bool swa = false;  // attends to the last sliding_window positions, RoPE from rope_inv_freq_swa
  // Architecture extras: q/k head norms; a mixture of experts (router, merged 3-D experts, and an
  // optional shared expert with its sigmoid gate), all into linears.
  int wrouter = -1, wgate_exps = -1, wup_exps = -1, wdown_exps = -1;
  int wshexp_gate = -1, wgate_shexp = -1, wup_shexp = -1, wdown_shexp = -1;
};

}  // namespace lq::engine

namespace lq {

struct Model::Impl {
  ModelConfig config;
  int64_t n_vocab = 0;
  int32_t bos = -1, eos = -1;
  bool add_bos = true;
  bool neox_rope = false;         // rotate (i, i + d/2) pairs instead of (2i, 2i + 1)
  std::vector<float> rope_inv_freq;  // head_dim / 2 angular frequencies (scaling applied)
  // LongRoPE (phi3): frequencies with the long factors, for sessions longer than the original
  // context (rope_inv_freq then holds the short ones), and the factor on cos and sin.
  std::vector<float> rope_inv_freq_long;
  int64_t rope_original_ctx = 0;
  float rope_mscale = 1.0f;
  std::vector<std::unique_ptr<engine::Tensor>> tensors;
  std::unordered_map<std::string, engine::Tensor*> by_name;
  std::vector<LinearInfo> linears;
  std::vector<engine::Tensor*> linear_tensors;  // parallel to linears
  std::vector<engine::Block> blocks;
  engine::Tensor* tok_embd = nullptr;
  engine::Tensor* output_norm = nullptr;
  int output = -1;  // into linears
  float attn_scale = 0;  // attention score scale (1 / sqrt(head_dim) unless the config says otherwise)
  // Gemma 2/3 (architecture row and config): see Session::Impl::sandwich_block.
  bool sandwich_norms = false;
  bool gelu_tanh_ffn = false;
  float embd_scale = 1.0f;               // token embeddings multiplied by it (sqrt(n_embd))
  std::vector<float> rope_inv_freq_swa;  // the sliding-window layers' frequencies (unscaled)

  engine::Tensor* find(std::string_view name) const;
};

namespace detail {
struct ModelAccess {
  static const Model::Impl& impl(const Model& m) { return m.impl(); }
  /// Frees the bytes of weight `name` (the streamed AWQ step reads them from the checkpoint and
  /// replaces them with their quantized values before the model runs again): a product that reads
  /// it fails, and so does tensor_f32, until replace_tensor gives it bytes.
  static void release_weight(Model& m, std::string_view name);
  /// Whether `name`'s bytes were freed by release_weight.
  static bool released(const Model& m, std::string_view name);
};
}  // namespace detail

namespace engine {

/// What an engine call runs with: the back-end's operations (from the registry, CPU slots where
/// the back-end has none), that back-end's type kernels, and the threads.
struct Exec {
  detail::EngineOps ops;
  const Backend* backend = nullptr;
  bool named = false;  ///< the back-end was chosen by name (Context::backend or --backend)
  int threads = 1;
  /// The type kernels for t as Context::kernels() gives them.
  KernelSet kernels(QuantType t) const;
  /// The registry's operations for ctx's back-end, on ctx.thread_count() threads.
  static Exec from(const Context& ctx);
  /// The same with `threads` threads (0 = all).
  static Exec with_threads(int threads);
};

/// Whether the engine can multiply by a weight of type t (float path, dot, or dequantize).
bool supports_weight_type(const Exec& ex, QuantType t);

/// One product y[m x n_out] = x[m x n_in] * W^T for weight W (n_out rows of n_in values).
struct LinearOp {
  const Tensor* w;
  const float* x;
  int64_t m;
  float* y;
  bool float_act = false;  ///< BF16 weights: float activations even in batches (slower)
  /// F16 weights: activations rounded to binary16 first, as llama.cpp multiplies them.
  bool f16_act = false;
};

/// Rotary embedding in place: n tokens of `heads` vectors of head_dim values; cs holds per
/// token head_dim/2 (cos, sin) pairs. inverse rotates by -theta (the backward pass: the
/// transpose of the rotation).
inline void apply_rope(float* data, int64_t n, int64_t heads, int64_t head_dim, bool neox, const float* cs_all,
                       bool inverse = false) {
  const int64_t half = head_dim / 2;
  for (int64_t t = 0; t < n; ++t) {
    const float* cs = cs_all + t * half * 2;
    for (int64_t hh = 0; hh < heads; ++hh) {
      float* v = data + (t * heads + hh) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float c = cs[2 * i], s = inverse ? -cs[2 * i + 1] : cs[2 * i + 1];
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
      }
    }
  }
}

/// The forward and backward passes' row operations over n tokens, split across `threads` when
/// the work is large enough; each token's values are computed by the same operations whatever
/// the split.
/// RMSNorm of n rows of d values with weight w (F32); scales (may be null) gets each row's
/// 1 / sqrt(mean(x^2) + eps).
void rms_norm(const Exec& ex, const float* in, const Tensor& w, float eps, int64_t d, int64_t n, float* out,
              float* scales);
/// Splits n rows of a fused product's output (each row the parts' columns side by side) into one
/// n x cols array per part.
struct ColumnPart {
  float* dst;
  int64_t cols;
};
void split_columns(const float* src, int64_t n, std::initializer_list<ColumnPart> parts);
/// The way back: n rows of the parts side by side in dst.
void join_columns(float* dst, int64_t n, std::initializer_list<std::pair<const float*, int64_t>> parts);
/// dst[i] += src[i] for i < count.
void add_into(float* dst, const float* src, int64_t count, int threads);
/// dst[i] = src[i] rounded to the nearest binary16 (ties to even; beyond its range: infinity),
/// i < count: what a value stored in an F16 tensor reads back as. dst may be src.
void round_to_half(const Exec& ex, const float* src, float* dst, int64_t count);
/// apply_rope over n tokens, in parallel.
void rope(float* data, int64_t n, int64_t heads, int64_t head_dim, bool neox, const float* cs_all, bool inverse,
          int threads);

/// Runs several products in one parallel region through the back-end's EngineOps::products (on
/// the CPU: kernels/cpu/products.cpp, which picks GEMM, panel, dot or dequantize paths from its
/// row of each weight's type).
void matmul_many(const Exec& ex, std::span<const LinearOp> ops);
void matmul(const Exec& ex, const Tensor& w, const float* x, int64_t m, float* y);

/// Expert e's rows of a merged 3-D expert tensor (ne = {n_in, n_out, n_expert}) as a 2-D weight
/// sharing t's bytes (no copy; t must outlive it).
Tensor expert_view(const Tensor& t, int64_t e);

/// Mixture-of-experts routing of n tokens from router logits (n x n_expert): softmax over all
/// experts into probs (n x n_expert), the top k by probability (ties: the lower index) into
/// experts (n x k), their probabilities into weights (n x k), divided by their sum when
/// `normalise` (the forward and backward passes route with this one function).
void route_experts(const float* logits, int64_t n, int64_t n_expert, int64_t k, bool normalise, float* probs,
                   int32_t* experts, float* weights);

/// Decodes row r of t into dst (row_length floats) with ex's back-end's kernel.
void dequantize_row(const Exec& ex, const Tensor& t, int64_t r, float* dst);

}  // namespace engine
}  // namespace lq
