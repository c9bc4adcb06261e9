// The per-tensor type rules of llama.cpp's quantization levels (see docs/ggml-formats.md §5), so
// the same model gets the same types as with llama-quantize.
#include "quantize/mixture.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"
#include "model/tensor_names.hpp"

#include <algorithm>

namespace lq {
namespace {

using F = FileType;
using QT = QuantType;

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

bool is_any(F f, std::initializer_list<F> set) { return std::find(set.begin(), set.end(), f) != set.end(); }

bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// A Llama 70B-class model: 80 layers with grouped-query attention.
bool is_70b(const ModelConfig& c) { return c.architecture == "llama" && c.n_layer == 80 && c.n_head != c.n_head_kv; }

// The layer index the ffn rules use: with experts, the block of the tensor's name (llama.cpp:
// expert tensors are not visited one per layer); otherwise the running counter.
int moe_layer(const ModelConfig& c, const std::string& name, int counter) {
  if (c.n_expert <= 1) return counter;
  const int b = names::block_of(name);
  if (b < 0 || b >= c.n_layer)
    fail(Errc::invalid_argument, "tensor '{}': no valid block index for the expert rules ({} blocks)", name, c.n_layer);
  return b;
}

}  // namespace

TensorRole tensor_role(const std::string& name) {
  if (name == "output.weight") return TensorRole::output;
  if (name == "token_embd.weight") return TensorRole::token_embd;
  if (contains(name, "attn_qkv.weight")) return TensorRole::attn_qkv;
  if (contains(name, "attn_kv_b.weight")) return TensorRole::attn_kv_b;
  if (contains(name, "attn_v.weight")) return TensorRole::attn_v;
  if (contains(name, "attn_k.weight")) return TensorRole::attn_k;
  if (contains(name, "attn_q.weight")) return TensorRole::attn_q;
  if (contains(name, "attn_output.weight")) return TensorRole::attn_output;
  if (contains(name, "ffn_up")) return TensorRole::ffn_up;
  if (contains(name, "ffn_gate")) return TensorRole::ffn_gate;
  if (contains(name, "ffn_down")) return TensorRole::ffn_down;
  return TensorRole::other;
}

bool role_is_attn_v(TensorRole r) {
  return r == TensorRole::attn_v || r == TensorRole::attn_qkv || r == TensorRole::attn_kv_b;
}

bool tensor_allows_quantization(const std::string& name, int n_dims, bool quantize_output) {
  if (n_dims < 2) return false;
  if (name.size() < 6 || name.compare(name.size() - 6, 6, "weight") != 0) return false;
  if (contains(name, "_norm.weight")) return false;
  if (!quantize_output && name == "output.weight") return false;
  if (contains(name, "ffn_gate_inp.weight")) return false;
  if (name == "position_embd.weight" || name == "token_types.weight") return false;
  if (contains(name, "ssm_conv1d")) return false;
  return true;
}

bool converter_keeps_f32(const std::string& name) {
  return contains(name, "ffn_gate_inp.weight") || contains(name, "ffn_gate_inp_shexp.weight");
}

bool tensor_requires_imatrix(const std::string& name, QuantType t, FileType ftype) {
  if (name == "token_embd.weight" || name == "output.weight") return false;
  if (type_info(t).refused_without_imatrix) return true;
  // Level-wide refusals (Q2_K_S): the level's own base type.
  const FileTypeInfo& level = file_type_info(ftype);
  return level.requires_imatrix && level.default_type == t;
}

std::optional<QuantType> fallback_type(QuantType t, int64_t ne0) {
  const TypeInfo& ti = type_info(t);
  if (ne0 % ti.block_size == 0) return std::nullopt;
  if (!ti.has_fallback())
    fail(Errc::invalid_argument, "no fallback for type {} with row length {} (not a multiple of {})", ti.name, ne0,
         ti.block_size);
  if (ne0 % type_info(ti.fallback).block_size != 0) return QT::F16;
  return ti.fallback;
}

QuantType mixture_type(MixtureState& st, const std::string& name, int64_t ne0, QuantType base) {
  const F f = st.ftype;
  const ModelConfig& c = st.config;
  const int64_t n_gqa = c.n_head_kv > 0 ? c.n_head / c.n_head_kv : 1;
  const TensorRole role = tensor_role(name);
  QT t = base;

  if (role == TensorRole::output || (st.tied_embeddings && role == TensorRole::token_embd)) {
    if (st.output_tensor_type) return *st.output_tensor_type;
    if (ne0 % type_info(base).block_size != 0) return QT::Q8_0;
    if (is_any(f, {F::IQ2_XXS, F::IQ2_XS, F::IQ3_XXS, F::IQ1_S, F::IQ2_S, F::IQ2_M, F::IQ1_M})) return QT::Q5_K;
    if (base != QT::Q8_0) return QT::Q6_K;
    return t;
  }
  if (role == TensorRole::token_embd) {
    if (st.token_embedding_type) return *st.token_embedding_type;
    if (is_any(f, {F::IQ2_XXS, F::IQ2_XS, F::IQ1_S, F::IQ1_M})) return QT::Q2_K;
    if (is_any(f, {F::IQ2_S, F::IQ2_M, F::IQ3_XXS})) return QT::IQ3_S;
    if (is_any(f, {F::TQ1_0, F::TQ2_0})) return QT::Q4_K;
    return t;
  }
  if (is_any(f, {F::IQ2_XXS, F::IQ2_XS, F::IQ1_S, F::IQ2_S, F::IQ2_M, F::IQ1_M})) {
    const bool iq2sm = is_any(f, {F::IQ2_S, F::IQ2_M});
    if (role_is_attn_v(role)) {
      t = n_gqa >= 4 || c.n_expert >= 4 ? QT::Q4_K : (iq2sm ? QT::IQ3_S : QT::Q2_K);
      ++st.i_attn_v;
    } else if (c.n_expert == 8 && role == TensorRole::attn_k) {
      t = QT::Q4_K;
    } else if (role == TensorRole::ffn_down) {
      if (st.i_ffn_down < st.n_ffn_down / 8) t = iq2sm ? QT::IQ3_S : QT::Q2_K;
      ++st.i_ffn_down;
    } else if (role == TensorRole::attn_output) {
      if (c.n_expert == 8) t = QT::Q5_K;
      else if (is_any(f, {F::IQ1_S, F::IQ1_M})) t = QT::IQ2_XXS;
      else if (iq2sm) t = QT::IQ3_S;
    }
    return t;
  }
  if (role_is_attn_v(role)) {
    if (f == F::Q2_K) t = n_gqa >= 4 ? QT::Q4_K : QT::Q3_K;
    else if (f == F::Q2_K_S && n_gqa >= 4) t = QT::Q4_K;
    else if (f == F::IQ3_XXS) t = n_gqa >= 4 ? QT::Q4_K : (!st.has_imatrix ? QT::IQ3_S : QT::IQ3_XXS);
    else if ((f == F::IQ3_XS || f == F::IQ3_S) && n_gqa >= 4) t = QT::Q4_K;
    else if (f == F::IQ3_M) t = QT::Q4_K;
    else if (f == F::Q3_K_M) t = st.i_attn_v < 2 ? QT::Q5_K : QT::Q4_K;
    else if (f == F::Q3_K_L) t = QT::Q5_K;
    else if ((f == F::IQ4_NL || f == F::IQ4_XS) && n_gqa >= 4) t = QT::Q5_K;
    else if ((f == F::Q4_K_M || f == F::Q5_K_M) && use_more_bits(st.i_attn_v, st.n_attn_v)) t = QT::Q6_K;
    else if (f == F::Q4_K_S && st.i_attn_v < 4) t = QT::Q5_K;
    if (is_70b(c) && (t == QT::Q3_K || t == QT::Q4_K)) t = QT::Q5_K;
    if (c.n_expert == 8) t = QT::Q8_0;  // llama.cpp: "trades just ~128MB" for the 8-expert model
    ++st.i_attn_v;
    return t;
  }
  if (role == TensorRole::attn_k || role == TensorRole::attn_q) {
    if (role == TensorRole::attn_k && c.n_expert == 8) t = QT::Q8_0;
    else if (f == F::IQ3_XS) t = QT::IQ3_XXS;
    else if (f == F::IQ3_XXS) t = QT::IQ2_S;
    return t;
  }
  if (role == TensorRole::ffn_down) {
    const int i = moe_layer(c, name, st.i_ffn_down), n = st.n_ffn_down;
    if (f == F::Q2_K) t = QT::Q3_K;
    else if (f == F::Q2_K_S) { if (i < n / 8) t = QT::Q4_K; }
    else if (f == F::IQ3_XXS && !st.has_imatrix) t = i < n / 8 ? QT::Q4_K : QT::Q3_K;
    else if (f == F::Q3_K_M) t = i < n / 16 ? QT::Q5_K : QT::Q4_K;
    else if (f == F::IQ3_M && (i < n / 8 || (c.n_expert == 8 && use_more_bits(i, n)))) t = QT::Q4_K;
    else if (f == F::Q3_K_L) t = QT::Q5_K;
    else if (f == F::Q4_K_M) { if (use_more_bits(i, n)) t = QT::Q6_K; }
    else if (i < n / 8 && (f == F::IQ4_NL || f == F::IQ4_XS) && !st.has_imatrix) t = QT::Q5_K;
    else if (f == F::Q5_K_M && use_more_bits(i, n)) t = QT::Q6_K;
    else if (f == F::Q4_K_S && i < n / 8) t = QT::Q5_K;
    else if ((f == F::Q4_0 || f == F::Q5_0) && st.has_imatrix && i < n / 8) t = f == F::Q4_0 ? QT::Q4_1 : QT::Q5_1;
    ++st.i_ffn_down;
    return t;
  }
  if (role == TensorRole::attn_output && c.n_expert == 8) {
    if (is_any(f, {F::Q2_K, F::IQ3_XS, F::IQ3_XXS, F::Q3_K_S, F::Q3_K_M, F::IQ4_NL, F::Q4_K_S, F::Q4_K_M, F::IQ3_S,
                   F::IQ3_M, F::IQ4_XS}))
      t = QT::Q5_K;
    return t;
  }
  if (role == TensorRole::attn_output) {
    if (f == F::Q2_K) t = QT::Q3_K;
    else if (f == F::IQ3_XXS) t = QT::IQ3_S;
    else if (f == F::Q3_K_M) t = QT::Q4_K;
    else if (f == F::Q3_K_L) t = QT::Q5_K;
    else if (f == F::IQ3_M) t = QT::Q4_K;
    return t;
  }
  if (role == TensorRole::attn_qkv) {
    if (f == F::Q3_K_M || f == F::Q3_K_L || f == F::IQ3_M) t = QT::Q4_K;
    else if (f == F::Q4_K_M) t = QT::Q5_K;
    else if (f == F::Q5_K_M) t = QT::Q6_K;
    return t;
  }
  if (role == TensorRole::ffn_gate || role == TensorRole::ffn_up) {
    int& idx = role == TensorRole::ffn_gate ? st.i_ffn_gate : st.i_ffn_up;
    const int n = role == TensorRole::ffn_gate ? st.n_ffn_gate : st.n_ffn_up;
    const int i = moe_layer(c, name, idx);
    if (f == F::IQ3_XS && i >= n / 8 && i < 7 * n / 8) t = QT::IQ3_XXS;
    ++idx;
    return t;
  }
  return t;
}

}  // namespace lq
