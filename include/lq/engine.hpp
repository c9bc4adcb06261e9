// liblq: the inference engine. A Llama-family decoder (llama, mistral, qwen2) on weights of any
// type in the type table, with a KV cache, observation hooks on every linear layer, in-memory
// weight replacement, perplexity and KL divergence as llama-perplexity measures them, and
// generation.
#pragma once

#include <lq/api.hpp>
#include <lq/context.hpp>
#include <lq/model.hpp>
#include <lq/quant_type.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lq {

namespace detail {
struct ModelAccess;  // library-internal access to a Model's weights (lib/engine/impl.hpp)
}

/// A matrix-product weight of the model (what calibration and quantization act on).
struct LinearInfo {
  std::string name;   ///< GGUF tensor name, e.g. "blk.3.ffn_up.weight"; the tied output is "token_embd.weight"
  std::string role;   ///< "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "output"
  int layer = -1;     ///< block index; -1 for the output projection
  QuantType type = QuantType::F32;  ///< current storage type
  int64_t n_in = 0;   ///< row length (columns of the input activations)
  int64_t n_out = 0;  ///< number of rows (output features)
  /// Matrices of a 3-D MoE expert tensor ("blk.N.ffn_up_exps.weight"), each n_out x n_in; 1 else.
  int64_t n_expert = 1;
};

/// A model's weights held in memory for inference, each in its stored type (quantized weights
/// stay packed). Immutable while sessions run; weight replacement needs exclusive access.
class LQ_API Model {
 public:
  /// Reads every tensor the forward pass needs from `source`. Throws Errc::invalid_model for an
  /// unsupported architecture, a missing or mis-shaped tensor, or a type with no CPU kernel.
  static std::unique_ptr<Model> load(const ModelSource& source);
  /// Opens `path` with ModelSource::open and loads it.
  static std::unique_ptr<Model> load(const std::filesystem::path& path);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const;
  /// Vocabulary size (rows of the token embedding).
  int64_t n_vocab() const;
  /// Begin/end-of-sequence token ids from the tokenizer metadata (-1 when absent).
  int32_t bos_token() const;
  int32_t eos_token() const;
  /// Whether the tokenizer prepends BOS to a text (tokenizer.ggml.add_bos_token; default true).
  bool add_bos() const;

  /// Every linear layer in forward order: per block q, k, v, output, gate, up, down; then output.
  const std::vector<LinearInfo>& linears() const;
  /// The linear layer whose weight is `name`, or nullptr.
  const LinearInfo* find_linear(std::string_view name) const;
  /// Shape (ggml order) and type of any tensor the engine holds (linears, norms, biases,
  /// token_embd); throws Errc::invalid_argument for an unknown name.
  QuantType tensor_type(std::string_view name) const;
  std::vector<int64_t> tensor_shape(std::string_view name) const;

  /// Replaces tensor `name` with `bytes` of `type` (same shape; rows packed as in GGUF). Norms
  /// and biases must be F32. Throws Errc::invalid_argument on a size, type or name mismatch.
  void replace_tensor(std::string_view name, QuantType type, std::span<const uint8_t> bytes);
  /// Replaces tensor `name` with float values (row-major, n_rows x row_length), stored as `type`
  /// (F32 keeps them exactly; another type is quantized with that type's quantizer).
  void replace_tensor(std::string_view name, std::span<const float> values, QuantType type = QuantType::F32);
  /// Static W8A8 for the W8 linear `name`: its activations are quantized with the fixed scale
  /// `scale` (x / scale rounded to int8, as compressed-tensors' input_scale) instead of one
  /// scale per token; 0 returns to per-token scales. Throws for a non-linear or a negative scale.
  void set_input_scale(std::string_view name, float scale);
  /// The static activation scale of linear `name` (0: per token).
  float input_scale(std::string_view name) const;
  /// Tensor `name` decoded to float (row-major, n_rows x row_length).
  std::vector<float> tensor_f32(std::string_view name) const;
  /// Bytes of all tensors held.
  size_t memory_bytes() const;

  struct Impl;

 private:
  friend class Session;
  friend struct detail::ModelAccess;
  Model();
  const Impl& impl() const { return *impl_; }
  std::unique_ptr<Impl> impl_;
};

/// What a linear-layer hook is shown after each matrix product.
struct LinearEvent {
  const LinearInfo* linear;  ///< the layer (name, shape, type)
  int64_t n_tokens;          ///< rows of input and output
  const float* input;        ///< n_tokens x n_in, row-major: the float activations entering the product
  const float* output;       ///< n_tokens x n_out, row-major (bias included); null where the product
                             ///< was skipped (SessionOptions::hook_inputs_only)
  /// For an expert tensor: the expert whose product this is (its input holds only the tokens routed
  /// to it, in token order); -1 for every other linear.
  int expert = -1;
  /// For an expert tensor: each row's position in the evaluated tokens (n_tokens values); else null.
  const int32_t* positions = nullptr;
};
/// Called on the evaluating thread, once per linear layer per eval(), in forward order. For the
/// output projection only the rows whose logits were requested are shown.
using LinearHook = std::function<void(const LinearEvent&)>;

/// Intermediate values of one block, kept when SessionOptions::save_activations is set (for
/// analysis and a later backward pass). Each is n_tokens x width, row-major, of the last eval().
struct LayerActivations {
  std::vector<float> input;      ///< residual stream entering the block (n_embd)
  std::vector<float> attn_norm;  ///< RMSNorm output feeding q/k/v (n_embd)
  std::vector<float> q;          ///< queries after RoPE (n_head * head_dim)
  std::vector<float> attn;       ///< attention result feeding attn_output (n_head * head_dim)
  std::vector<float> ffn_input;  ///< residual stream after attention (n_embd)
  std::vector<float> ffn_norm;   ///< RMSNorm output feeding gate/up (n_embd)
  std::vector<float> gate;       ///< gate projection before SiLU (n_ff)
  std::vector<float> up;         ///< up projection (n_ff)
  std::vector<float> act;        ///< silu(gate) * up, feeding ffn_down (n_ff)
};

/// Session settings.
struct SessionOptions {
  int64_t n_ctx = 0;              ///< KV cache positions; 0 = min(n_ctx_train, 4096)
  bool save_activations = false;  ///< keep LayerActivations of the last eval()
  /// 16-bit weights multiply activations rounded to their type, as llama.cpp does: bf16 for
  /// BF16 weights in batches of 4+ tokens (twice the float rate on CPUs with AVX-512 BF16),
  /// binary16 for F16 weights. Off by default: float activations keep a 16-bit model's outputs
  /// equal to its F32 conversion's (the reference for quality figures).
  bool bf16_activations = false;
  /// Hooks read only the inputs of the products (LinearEvent::input). An eval() that requests no
  /// logits then skips the last block's ffn_down product, whose result feeds only the logits, and
  /// shows it to the hook with a null output (the activation importance matrix needs its input).
  bool hook_inputs_only = false;
  /// The KV cache holds K and V rounded to binary16, as llama.cpp's default F16 cache does
  /// (llama-imatrix, llama-perplexity); off: float, the arithmetic of the reference figures.
  bool kv_f16 = false;
};

/// One sequence being evaluated: a KV cache over a Model (which must outlive it).
class LQ_API Session {
 public:
  /// A session on `model` running on ctx's threads and back-end (the context is read here, once).
  explicit Session(const Model& model, SessionOptions options = {}, const Context& ctx = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Runs `tokens` at positions n_past() .. n_past() + size - 1 (one batch: all tokens in
  /// parallel) and appends them to the cache. Logits are computed for tokens [first_output,
  /// size); first_output < 0 means only the last token. Throws Errc::invalid_argument for an
  /// empty list, a token id outside the vocabulary or a cache overflow.
  void eval(std::span<const int32_t> tokens, int64_t first_output = -1);
  /// Part of the forward pass, for measurements that change one block's weights at a time
  /// (measure_sensitivity): `tokens` at positions n_past() .. as eval() runs them, through blocks
  /// [first_block, stop_block) only (0 <= first_block <= stop_block <= n_layer). With first_block 0
  /// the tokens are embedded; otherwise `residual` (size x n_embd, row-major) is the residual
  /// stream entering first_block, as LayerActivations::input holds it. With stop_block < n_layer
  /// the residual stream entering stop_block is written to `residual` and there are no logits;
  /// with stop_block == n_layer the logits of rows [first_output, size) are produced as by eval(),
  /// and when that is none (first_output == size) the stream entering the output norm is written.
  /// The arithmetic is eval()'s: the blocks split over calls give eval()'s logits bit for bit. A
  /// call that skips blocks caches these positions for the blocks it ran only, so the next eval()
  /// or eval_blocks() needs clear() (or truncate() to before them) first; otherwise, and for a
  /// block range or residual size out of bounds, it throws Errc::invalid_argument.
  void eval_blocks(std::span<const int32_t> tokens, int first_block, int stop_block, std::vector<float>& residual,
                   int64_t first_output = -1);
  /// Logits of output row i of the last eval() (n_vocab floats).
  std::span<const float> logits(int64_t i) const;
  /// Number of output rows of the last eval().
  int64_t n_outputs() const;

  /// Positions held in the cache.
  int64_t n_past() const;
  int64_t n_ctx() const;
  /// Empties the cache.
  void clear();
  /// Keeps only the first n positions.
  void truncate(int64_t n);

  /// Installs (or, with an empty function, removes) the linear-layer hook.
  void set_linear_hook(LinearHook hook);
  /// Saved activations of block `layer` (requires SessionOptions::save_activations).
  const LayerActivations& activations(int layer) const;
  /// Final RMSNorm output of the output rows of the last eval() (save_activations only).
  const std::vector<float>& output_norm_activations() const;

  const Model& model() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Perplexity / KL divergence settings. The token stream is the text's token ids without BOS;
/// as llama-perplexity tokenizes, a BOS is prepended when the model adds one.
struct PerplexityOptions {
  int64_t ctx = 512;         ///< chunk length (llama-perplexity -c)
  int64_t chunks = -1;       ///< chunks to evaluate; -1 = all that fit
  /// false: llama-perplexity's method (chunks of ctx tokens, first token replaced by BOS, the
  /// second half scored). true: windows of ctx-1 tokens after a BOS, every token scored once,
  /// the last window partial (the protocol of the tiny-llama README).
  bool full_window = false;
  bool prepend_bos = true;   ///< prepend BOS to the stream when the model adds one (llama.cpp tokenization)
  bool bf16_activations = false;  ///< see SessionOptions::bf16_activations
  bool kv_f16 = false;            ///< see SessionOptions::kv_f16 (llama-perplexity's default cache)
  /// (optional) Called after each chunk with its result: (chunks done, chunk count, running
  /// perplexity), for progress and a live display such as llama-perplexity's.
  std::function<void(int64_t, int64_t, double)> progress;
};

/// Result of perplexity().
struct PerplexityResult {
  double ppl = 0;          ///< exp(mean NLL)
  double ppl_error = 0;    ///< llama-perplexity's +/- (standard error propagated to ppl)
  double mean_nll = 0;
  int64_t n_scored = 0;    ///< tokens scored
  int64_t n_chunks = 0;
  int64_t n_evaluated = 0; ///< tokens run through the model
  double seconds = 0;      ///< wall time of the evaluation
  double tokens_per_second() const { return seconds > 0 ? n_evaluated / seconds : 0; }
};

/// Perplexity of `model` on `tokens`, on ctx's threads and back-end; checks ctx's cancel token
/// after each chunk. Throws Errc::invalid_argument when the stream is empty or too short
/// (llama's method needs 2 * ctx tokens including the BOS).
LQ_API PerplexityResult perplexity(const Model& model, std::span<const int32_t> tokens,
                                   const PerplexityOptions& options = {}, const Context& ctx = {});

/// KL divergence of `model` from `reference` (KL(reference || model) per scored token) on the
/// chunks perplexity() scores, as llama-perplexity --kl-divergence reports it.
struct KldResult {
  double kld_mean = 0, kld_error = 0;
  double kld_median = 0, kld_p99 = 0, kld_max = 0;
  double same_top_pct = 0, same_top_error = 0;  ///< % of tokens where both argmax agree
  double ppl = 0, ppl_reference = 0;
  double ppl_error = 0, ppl_reference_error = 0;  ///< llama-perplexity's +/- of each perplexity
  double delta_p_rms_pct = 0;  ///< RMS of p(model) - p(reference) of the right token, in %
  /// Mean over the scored tokens of ln p(reference) - ln p(model) of the right token, which is
  /// ln(ppl / ppl_reference), and its +/- from the same tokens (llama-perplexity's "Mean
  /// ln(PPL(Q)/PPL(base))"): the paired uncertainty of the two perplexities' ratio.
  double ln_ppl_ratio = 0, ln_ppl_ratio_error = 0;
  int64_t n_scored = 0;
  double seconds = 0;
};

/// Throws Errc::invalid_argument when the vocabularies differ or the stream is too short.
LQ_API KldResult kl_divergence(const Model& model, const Model& reference, std::span<const int32_t> tokens,
                               const PerplexityOptions& options = {}, const Context& ctx = {});

/// Generation settings. temperature <= 0 is greedy (argmax). Sampling applies the temperature,
/// keeps the top_k most likely tokens, then the smallest set reaching probability top_p, and
/// draws from what remains with a generator seeded by `seed` (reproducible everywhere).
struct GenerateOptions {
  int64_t max_tokens = 128;
  float temperature = 0.8f;
  int top_k = 40;           ///< 0 = no limit
  float top_p = 0.95f;      ///< 1 = no limit
  uint64_t seed = 0;
  bool stop_at_eos = true;  ///< stop after the model emits EOS (the EOS is included)
};

/// Evaluates `prompt` (appended to the session's cache) and samples up to max_tokens new tokens;
/// returns them. Throws Errc::invalid_argument for an empty prompt (with an empty cache) or when
/// the cache cannot hold the prompt.
LQ_API std::vector<int32_t> generate(Session& session, std::span<const int32_t> prompt,
                                     const GenerateOptions& options = {});

}  // namespace lq
