// liblq: reading models (Hugging Face directories, safetensors files, GGUF files) tensor by tensor.
#pragma once

#include <lq/api.hpp>
#include <lq/gguf.hpp>
#include <lq/quant_type.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lq {

/// RoPE frequency scaling (Llama-3 style "llama3", or "linear").
struct RopeScaling {
  std::string type;             ///< "llama3", "linear" or "yarn"
  float factor = 1.0f;
  float low_freq_factor = 1.0f;   ///< llama3 only
  float high_freq_factor = 4.0f;  ///< llama3 only
  int64_t original_context = 0;
};

/// Hyper-parameters of a Llama-family decoder (llama, mistral, qwen2).
struct ModelConfig {
  std::string architecture;  ///< GGUF architecture: "llama" (also for mistral) or "qwen2"
  std::string model_type;    ///< Hugging Face model_type ("llama", "mistral", "qwen2"), or the GGUF arch
  std::string name;          ///< general.name
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t n_ff = 0;
  int64_t head_dim = 0;
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  std::optional<RopeScaling> rope_scaling;
  bool tie_embeddings = false;  ///< no output.weight: the token embedding is reused
  /// The token table is used as it is, without the architecture's embedding scale (internal: the
  /// one-block models of the streamed quantizers hold hidden states there).
  bool unscaled_embeddings = false;
  bool qkv_bias = false;        ///< q/k/v projections have biases (qwen2)
  int64_t sliding_window = 0;   ///< 0 = none
  // Gemma 2 / 3 (zero where the architecture has none):
  float attn_softcap = 0;       ///< attention scores capped as cap * tanh(s / cap)
  float final_softcap = 0;      ///< logits capped the same way
  float attn_scale = 0;         ///< attention score scale; 0 = 1 / sqrt(head_dim)
  float rope_theta_swa = 0;     ///< RoPE base of the sliding-window layers (unscaled); 0 = rope_theta
  int64_t swa_period = 0;       ///< layer l slides when l % swa_period < swa_period - 1 (needs sliding_window)
  // Mixture of experts (n_expert 0: a dense MLP in every block)
  int64_t n_expert = 0;       ///< routed experts per block ({arch}.expert_count)
  int64_t n_expert_used = 0;  ///< experts each token goes through ({arch}.expert_used_count)
  int64_t n_ff_exp = 0;       ///< rows of one expert's gate/up projection
  int64_t n_ff_shexp = 0;     ///< rows of the shared expert's gate/up projection (0: none)
  bool expert_weights_norm = false;  ///< the top-k routing weights are renormalised to sum to 1
  bool qk_norm = false;       ///< q and k heads are RMS-normalised before RoPE (attn_q_norm / attn_k_norm)
};

/// A tensor of the model in GGUF naming and ggml dimension order (ne[0] = row length).
struct LQ_API ModelTensor {
  std::string name;         ///< GGUF name, e.g. "blk.0.attn_q.weight"
  std::string source_name;  ///< name in the source files, e.g. "model.layers.0.self_attn.q_proj.weight"
  QuantType type = QuantType::F32;  ///< element type as stored in the source
  std::vector<int64_t> ne;
  int split = 0;            ///< index of the source file holding it (shard or GGUF split)
  /// A (1 + w) norm (Gemma's): read as float(w) + 1, `type` F32; w is stored as plus_one_type.
  bool plus_one = false;
  QuantType plus_one_type = QuantType::F32;
  /// The element type of the values in the checkpoint's file (w's for a plus_one norm).
  QuantType checkpoint_type() const { return plus_one ? plus_one_type : type; }
  int64_t n_elements() const;
  int64_t n_rows() const;
  int64_t row_length() const { return ne.empty() ? 0 : ne[0]; }
  /// Bytes of one row in `type`.
  size_t row_bytes() const;
};

/// A model opened for reading. Tensors are read on demand, in row ranges, so memory stays
/// bounded by what the caller asks for. Sources validate their files when opened; any problem
/// throws lq::Error (Errc::not_found for a missing path, Errc::invalid_model otherwise).
class LQ_API ModelSource {
 public:
  /// Opens a Hugging Face directory, a single .safetensors file (with config.json beside it),
  /// a GGUF file, or a Hub ID (org/name) found in the local Hugging Face cache.
  static std::unique_ptr<ModelSource> open(const std::filesystem::path& path);
  virtual ~ModelSource() = default;

  virtual const ModelConfig& config() const = 0;
  /// All tensors, in GGUF order (non-block tensors first, then block by block).
  virtual const std::vector<ModelTensor>& tensors() const = 0;
  const ModelTensor* find(const std::string& gguf_name) const;
  /// The same, but throws Errc::invalid_model naming the tensor when absent.
  const ModelTensor& at(const std::string& gguf_name) const;

  /// Rows [row0, row0 + nrows) decoded to float (HF q/k weights already in GGUF row order).
  virtual void read_rows_f32(const ModelTensor& t, int64_t row0, int64_t nrows, float* dst) const = 0;
  /// Rows [row0, row0 + nrows) as stored (type t.type), in GGUF row order.
  virtual void read_rows_raw(const ModelTensor& t, int64_t row0, int64_t nrows, void* dst) const = 0;
  /// Hints that the caller is done with `t` (drops its pages from the resident set).
  virtual void release(const ModelTensor& t) const { (void)t; }
  /// All of `t`'s stored bytes (what read_rows_raw gives for every row), shared without a copy
  /// and kept alive by the pointer beyond the source's lifetime; null where the source cannot
  /// (the rows are converted, permuted or not mapped).
  virtual std::shared_ptr<const uint8_t> share_raw(const ModelTensor& t) const {
    (void)t;
    return nullptr;
  }

  /// Metadata a GGUF made from this model carries: general.*, architecture hyper-parameters and
  /// the tokenizer (for a GGUF source: its own metadata).
  virtual gguf::Metadata gguf_metadata() const = 0;
  /// True when the source is a GGUF file (its tensors may already be quantized).
  virtual bool is_gguf() const = 0;
  /// The path that was opened.
  virtual const std::filesystem::path& path() const = 0;
  /// Sum of the sizes of the source files (bytes).
  virtual uint64_t source_bytes() const = 0;
  /// Number of source files the tensors are spread over (safetensors shards, GGUF splits).
  virtual int n_splits() const { return 1; }
};

/// Architectures liblq converts (HF model_type values).
LQ_API bool is_supported_model_type(const std::string& model_type);

}  // namespace lq
