// The engine's Model: tensors read from a ModelSource into memory, shape checks, replacement.
// A third-party checkpoint's integer linears are held as W4G / W8G blocks (their own codes, scales
// and zero points: the values the source reads as F32, at 0.75 / 1.25 bytes a weight).
#include "engine/impl.hpp"
#include "model/architecture.hpp"
#include "model/sources.hpp"
#include "types/ref/int4_groups.hpp"

#include <lq/backend.hpp>
#include <lq/error.hpp>
#include <lq/threads.hpp>
#include "core/fail.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <numeric>

namespace lq {

using engine::IntBlocks;
using engine::Tensor;

// The W4G / W8G form of an unpacked integer weight (impl.hpp).
IntBlocks engine::int_blocks(const unpack::IntWeight& w, int threads) {
  IntBlocks ib;
  std::vector<int32_t>& order = ib.order;
  if (w.bits > 8 || w.cols % 32 != 0 || static_cast<int64_t>(w.g_idx.size()) != w.cols) return ib;
  ib.type = w.bits <= 4 ? QuantType::W4G : QuantType::W8G;
  const int32_t zmax = ib.type == QuantType::W4G ? 15 : 255;
  for (const int32_t z : w.zero)
    if (z < 0 || z > zmax) return ib;
  const int64_t nb = w.cols / 32;
  auto group_of = [&](int64_t c) { return w.g_idx[static_cast<size_t>(order.empty() ? c : order[static_cast<size_t>(c)])]; };
  auto in_blocks = [&] {
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t j = 1; j < 32; ++j)
        if (group_of(32 * b + j) != group_of(32 * b)) return false;
    return true;
  };
  if (!in_blocks()) {
    order.resize(static_cast<size_t>(w.cols));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return w.g_idx[static_cast<size_t>(a)] < w.g_idx[static_cast<size_t>(b)]; });
    if (!in_blocks()) {
      order.clear();
      return ib;
    }
  }
  const size_t block_bytes = static_cast<size_t>(type_info(ib.type).block_bytes);
  ib.bytes.resize(static_cast<size_t>(w.rows * nb) * block_bytes);
  parallel_for(w.rows, threads > 0 ? threads : hardware_threads(), 64, [&](int64_t r0, int64_t r1) {
    uint8_t codes[32];
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* q = &w.q[static_cast<size_t>(r * w.cols)];
        for (int64_t j = 0; j < 32; ++j)
          codes[j] = q[order.empty() ? 32 * b + j : order[static_cast<size_t>(32 * b + j)]];
        const size_t g = static_cast<size_t>(r * w.n_groups + group_of(32 * b));
        uint8_t* dst = ib.bytes.data() + static_cast<size_t>(r * nb + b) * block_bytes;
        if (ib.type == QuantType::W4G) {
          ref::w4g_block(codes, w.scale[g], w.zero[g], *reinterpret_cast<ref::BlockW4G*>(dst));
        } else {
          ref::BlockW8G blk{w.scale[g], static_cast<float>(w.zero[g]), {}};
          std::memcpy(blk.q, codes, 32);
          std::memcpy(dst, &blk, sizeof blk);
        }
      }
  });
  return ib;
}

namespace {

// Frequencies of the rotary embedding, one per rotated pair, with the configured scaling.
// llama3 scaling keeps high frequencies, divides low ones by `factor` and blends in between
// (wavelength thresholds original_context / high_freq_factor and / low_freq_factor).
std::vector<float> rope_frequencies(const ModelConfig& c, const std::vector<float>* freq_factors) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> f(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    f[i] = static_cast<float>(std::pow(static_cast<double>(c.rope_theta), -2.0 * i / static_cast<double>(c.head_dim)));
  if (freq_factors) {
    for (int64_t i = 0; i < half; ++i) f[i] /= (*freq_factors)[i];
    return f;
  }
  if (!c.rope_scaling) return f;
  const RopeScaling& s = *c.rope_scaling;
  if (s.type == "linear") {
    for (auto& v : f) v /= s.factor;
  } else if (s.type == "llama3") {
    const double old_ctx = static_cast<double>(s.original_context > 0 ? s.original_context : 8192);
    const double low_wl = old_ctx / s.low_freq_factor, high_wl = old_ctx / s.high_freq_factor;
    for (auto& v : f) {
      const double wl = 2 * std::numbers::pi / v;
      if (wl < high_wl) continue;
      if (wl > low_wl) {
        v = static_cast<float>(v / s.factor);
      } else {
        const double smooth = (old_ctx / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        v = static_cast<float>((1 - smooth) * v / s.factor + smooth * v);
      }
    }
  } else if (s.type != "none" && !s.type.empty()) {
    fail(Errc::invalid_model, "engine: RoPE scaling '{}' is not supported (llama3, linear)", s.type);
  }
  return f;
}

void check_shape(const ModelTensor& t, std::initializer_list<int64_t> want) {
  const std::vector<int64_t> w(want);
  if (t.ne != w) {
    std::string got, exp;
    for (auto d : t.ne) got += (got.empty() ? "" : " x ") + std::to_string(d);
    for (auto d : w) exp += (exp.empty() ? "" : " x ") + std::to_string(d);
    fail(Errc::invalid_model, "engine: tensor '{}' has shape [{}], expected [{}]", t.name, got, exp);
  }
}

}  // namespace

engine::Tensor* Model::Impl::find(std::string_view name) const {
  auto it = by_name.find(std::string(name));
  return it == by_name.end() ? nullptr : it->second;
}

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::filesystem::path& path) {
  auto src = ModelSource::open(path);
  return load(*src);
}

std::unique_ptr<Model> Model::load(const ModelSource& src) {
  std::unique_ptr<Model> model(new Model());
  Impl& m = *model->impl_;
  m.config = src.config();
  ModelConfig& c = m.config;
  const Architecture& arch = architecture_of(c, "engine");
  m.neox_rope = arch.neox_rope();

  const ModelTensor& embd = src.at("token_embd.weight");
  if (embd.ne.size() != 2) fail(Errc::invalid_model, "engine: token_embd.weight must be 2-D");
  m.n_vocab = embd.ne[1];
  if (c.n_embd <= 0) c.n_embd = embd.ne[0];
  if (c.n_head <= 0 || c.n_layer <= 0) fail(Errc::invalid_model, "engine: head count or block count missing");
  if (c.n_head_kv <= 0) c.n_head_kv = c.n_head;
  if (c.head_dim <= 0) c.head_dim = c.n_embd / c.n_head;
  if (c.n_ff <= 0) {
    const ModelTensor& g = src.at("blk.0.ffn_gate.weight");
    c.n_ff = g.ne.size() == 2 ? g.ne[1] : 0;
  }
  if (c.n_head % c.n_head_kv != 0 || c.head_dim % 2 != 0)
    fail(Errc::invalid_model, "engine: {} heads over {} KV heads with head size {} is not a valid layout", c.n_head,
         c.n_head_kv, c.head_dim);
  if (c.n_vocab != 0 && c.n_vocab != m.n_vocab) c.n_vocab = m.n_vocab;
  c.n_vocab = m.n_vocab;

  const gguf::Metadata meta = src.gguf_metadata();
  m.bos = static_cast<int32_t>(meta.get_int("tokenizer.ggml.bos_token_id").value_or(-1));
  m.eos = static_cast<int32_t>(meta.get_int("tokenizer.ggml.eos_token_id").value_or(-1));
  if (const auto* v = meta.find("tokenizer.ggml.add_bos_token"); v && !v->is_array()) m.add_bos = v->as_bool();
  if (m.bos >= m.n_vocab) m.bos = -1;
  if (m.eos >= m.n_vocab) m.eos = -1;

  auto add = [&](const ModelTensor& t, bool as_f32) -> Tensor* {
    auto owned = std::make_unique<Tensor>();
    Tensor& e = *owned;
    e.name = t.name;
    e.ne = t.ne;
    const int64_t rows = t.n_rows();
    if (as_f32) {
      e.type = QuantType::F32;
      e.data = engine::Buffer(static_cast<size_t>(t.n_elements()) * sizeof(float));
      src.read_rows_f32(t, 0, rows, reinterpret_cast<float*>(e.data.data()));
    } else {
      if (!engine::supports_weight_type(engine::Exec::with_threads(1), t.type))
        fail(Errc::invalid_model, "engine: tensor '{}' has type {}, which has no CPU kernel yet", t.name,
             type_name(t.type));
      e.type = t.type;
      const size_t bytes = t.row_bytes() * static_cast<size_t>(rows);
      // A mapped file's bytes are used where they are (no copy, no second resident copy): the
      // kernels load weights unaligned, but want float and 16-bit values on their own boundary
      // (GGUF aligns every tensor to 32 bytes; safetensors only to its element size).
      const uintptr_t align = t.type == QuantType::F32 ? 4 : (t.type == QuantType::F16 || t.type == QuantType::BF16) ? 2 : 32;
      if (auto shared = src.share_raw(t); shared && reinterpret_cast<uintptr_t>(shared.get()) % align == 0) {
        e.data = engine::Buffer(std::move(shared), bytes);
      } else {
        e.data = engine::Buffer(bytes);
        src.read_rows_raw(t, 0, rows, e.data.data());
      }
    }
    if (!e.data.is_shared()) src.release(t);
    Tensor* p = owned.get();
    m.by_name[e.name] = p;
    m.tensors.push_back(std::move(owned));
    return p;
  };
  // A third-party integer linear as W4G or W8G blocks, where it has that form (null otherwise).
  auto add_int_blocks = [&](const ModelTensor& t) -> Tensor* {
    if (t.type != QuantType::F32) return nullptr;
    const std::optional<QuantizedLinear> ql = hf_quantized_linear(src, t);
    if (!ql) return nullptr;
    IntBlocks ib = engine::int_blocks(*ql->weight);
    if (ib.bytes.empty() || ib.bytes.size() != type_info(ib.type).row_bytes(t.row_length()) * static_cast<size_t>(t.n_rows()))
      return nullptr;
    auto owned = std::make_unique<Tensor>();
    Tensor& e = *owned;
    e.name = t.name;
    e.ne = t.ne;
    e.type = ib.type;
    if (!ib.order.empty()) e.col_order = std::make_shared<const std::vector<int32_t>>(std::move(ib.order));
    e.data = engine::Buffer(ib.bytes.size());
    std::memcpy(e.data.data(), ib.bytes.data(), ib.bytes.size());
    src.release(t);
    Tensor* p = owned.get();
    m.by_name[e.name] = p;
    m.tensors.push_back(std::move(owned));
    return p;
  };
  auto add_linear = [&](const ModelTensor& t, std::string role, int layer) {
    Tensor* p = add_int_blocks(t);
    if (!p) p = add(t, false);
    // A static W8A8 checkpoint's per-tensor activation scale, beside its weight.
    const ModelTensor* s =
        t.name.ends_with(".weight") ? src.find(t.name.substr(0, t.name.size() - 7) + ".input_scale") : nullptr;
    if (s) {
      if (s->n_elements() != 1) fail(Errc::invalid_model, "engine: '{}' must hold one value", s->name);
      src.read_rows_f32(*s, 0, 1, &p->input_scale);
    }
    LinearInfo li{t.name, std::move(role), layer, p->type, t.ne[0], t.ne[1]};
    if (t.ne.size() == 3) li.n_expert = t.ne[2];
    m.linears.push_back(li);
    m.linear_tensors.push_back(p);
    return static_cast<int>(m.linears.size() - 1);
  };

  const int64_t d = c.n_embd, hd = c.head_dim, nq = c.n_head * hd, nkv = c.n_head_kv * hd, ff = c.n_ff;
  check_shape(embd, {d, m.n_vocab});
  if (!Registry::instance().cpu().kernels(embd.type).dequantize)
    fail(Errc::invalid_model, "engine: token_embd.weight has type {}, which cannot be decoded", type_name(embd.type));
  m.tok_embd = add(embd, false);
  m.blocks.resize(static_cast<size_t>(c.n_layer));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    engine::Block& b = m.blocks[static_cast<size_t>(l)];
    const int li = static_cast<int>(l);
    // A block weight by its role, its shape checked; the linear ones are registered as such.
    auto weight = [&](const char* role, std::initializer_list<int64_t> shape) -> const ModelTensor& {
      const ModelTensor& t = src.at(p + role + ".weight");
      check_shape(t, shape);
      return t;
    };
    auto linear = [&](const char* role, std::initializer_list<int64_t> shape) {
      return add_linear(weight(role, shape), role, li);
    };
    b.attn_norm = add(weight("attn_norm", {d}), true);
    if (arch.fused_qkv) {
      b.wqkv = linear("attn_qkv", {d, nq + 2 * nkv});
    } else {
      b.wq = linear("attn_q", {d, nq});
      b.wk = linear("attn_k", {d, nkv});
      b.wv = linear("attn_v", {d, nkv});
    }
    if (const ModelTensor* t = src.find(p + "attn_q.bias")) { check_shape(*t, {nq}); b.bq = add(*t, true); }
    if (const ModelTensor* t = src.find(p + "attn_k.bias")) { check_shape(*t, {nkv}); b.bk = add(*t, true); }
    if (const ModelTensor* t = src.find(p + "attn_v.bias")) { check_shape(*t, {nkv}); b.bv = add(*t, true); }
    if (arch.qk_norm) {
      b.q_norm = add(weight("attn_q_norm", {hd}), true);
      b.k_norm = add(weight("attn_k_norm", {hd}), true);
    }
    b.wo = linear("attn_output", {nq, d});
    b.ffn_norm = add(weight("ffn_norm", {d}), true);
    if (arch.fused_gate_up) {
      b.fused_gate_up = true;
      b.wup = linear("ffn_up", {d, 2 * ff});
      b.wdown = linear("ffn_down", {ff, d});
    } else if (c.n_expert > 0) {  // router, merged experts, shared expert with its gate
      const int64_t E = c.n_expert, fe = c.n_ff_exp > 0 ? c.n_ff_exp : ff, fs = c.n_ff_shexp;
      b.wrouter = linear("ffn_gate_inp", {d, E});
      b.wgate_exps = linear("ffn_gate_exps", {d, fe, E});
      b.wup_exps = linear("ffn_up_exps", {d, fe, E});
      b.wdown_exps = linear("ffn_down_exps", {fe, d, E});
      if (fs > 0) {
        b.wshexp_gate = linear("ffn_gate_inp_shexp", {d, 1});
        b.wgate_shexp = linear("ffn_gate_shexp", {d, fs});
        b.wup_shexp = linear("ffn_up_shexp", {d, fs});
        b.wdown_shexp = linear("ffn_down_shexp", {fs, d});
      }
    } else {
      b.wgate = linear("ffn_gate", {d, ff});
      b.wup = linear("ffn_up", {d, ff});
      b.wdown = linear("ffn_down", {ff, d});
    }
    if (arch.sandwich_norms) {
      b.attn_post_norm = add(weight("post_attention_norm", {d}), true);
      b.ffn_post_norm = add(weight("post_ffw_norm", {d}), true);
      if (src.find(p + "attn_q_norm.weight")) b.q_norm = add(weight("attn_q_norm", {hd}), true);
      if (src.find(p + "attn_k_norm.weight")) b.k_norm = add(weight("attn_k_norm", {hd}), true);
      b.swa = c.swa_period > 0 && c.sliding_window > 0 && l % c.swa_period < c.swa_period - 1;
    }
  }
  const ModelTensor& on = src.at("output_norm.weight");
  check_shape(on, {d});
  m.output_norm = add(on, true);
  if (const ModelTensor* out = src.find("output.weight")) {
    check_shape(*out, {d, m.n_vocab});
    m.output = add_linear(*out, "output", -1);
  } else {
    m.linears.push_back(LinearInfo{"token_embd.weight", "output", -1, m.tok_embd->type, d, m.n_vocab});
    m.linear_tensors.push_back(m.tok_embd);
    m.output = static_cast<int>(m.linears.size() - 1);
  }

  std::vector<float> factors;
  if (const ModelTensor* rf = src.find("rope_freqs.weight")) {
    check_shape(*rf, {hd / 2});
    factors.resize(static_cast<size_t>(hd / 2));
    src.read_rows_f32(*rf, 0, 1, factors.data());
  }
  // LongRoPE (phi3): short and long factor tensors, the original context and the cos/sin factor
  // from the metadata, as llama.cpp reads them.
  if (const ModelTensor* sf = src.find("rope_factors_short.weight"); !sf) {
    m.rope_inv_freq = rope_frequencies(c, factors.empty() ? nullptr : &factors);
  } else {
    const ModelTensor& lf = src.at("rope_factors_long.weight");
    check_shape(*sf, {hd / 2});
    check_shape(lf, {hd / 2});
    std::vector<float> s(static_cast<size_t>(hd / 2)), l(static_cast<size_t>(hd / 2));
    src.read_rows_f32(*sf, 0, 1, s.data());
    src.read_rows_f32(lf, 0, 1, l.data());
    m.rope_inv_freq = rope_frequencies(c, &s);
    m.rope_inv_freq_long = rope_frequencies(c, &l);
    const std::string a = c.architecture + ".";
    m.rope_original_ctx = meta.get_int(a + "rope.scaling.original_context_length").value_or(c.n_ctx_train);
    m.rope_mscale = static_cast<float>(meta.get_float(a + "rope.scaling.attn_factor").value_or(1.0));
  }
  m.attn_scale = c.attn_scale > 0 ? c.attn_scale : 1.0f / std::sqrt(static_cast<float>(hd));
  if (arch.sandwich_norms) {
    m.sandwich_norms = true;
    m.gelu_tanh_ffn = arch.gelu_tanh_ffn;
    if (arch.scale_embedding && !c.unscaled_embeddings) m.embd_scale = std::sqrt(static_cast<float>(d));
    ModelConfig local = c;  // sliding-window layers: their own base, no scaling
    local.rope_theta = c.rope_theta_swa > 0 ? c.rope_theta_swa : c.rope_theta;
    local.rope_scaling.reset();
    m.rope_inv_freq_swa = rope_frequencies(local, nullptr);
  }
  return model;
}

const ModelConfig& Model::config() const { return impl_->config; }
int64_t Model::n_vocab() const { return impl_->n_vocab; }
int32_t Model::bos_token() const { return impl_->bos; }
int32_t Model::eos_token() const { return impl_->eos; }
bool Model::add_bos() const { return impl_->add_bos; }
const std::vector<LinearInfo>& Model::linears() const { return impl_->linears; }

const LinearInfo* Model::find_linear(std::string_view name) const {
  for (const auto& l : impl_->linears)
    if (l.name == name) return &l;
  return nullptr;
}

namespace {
Tensor& need(const Model::Impl& m, std::string_view name) {
  Tensor* t = m.find(name);
  if (!t) fail(Errc::invalid_argument, "engine: the model has no tensor '{}'", name);
  return *t;
}
}  // namespace

QuantType Model::tensor_type(std::string_view name) const { return need(*impl_, name).type; }
std::vector<int64_t> Model::tensor_shape(std::string_view name) const { return need(*impl_, name).ne; }

void Model::replace_tensor(std::string_view name, QuantType type, std::span<const uint8_t> bytes) {
  Tensor& t = need(*impl_, name);
  const bool vector = t.ne.size() == 1;
  if (!is_known_type_id(static_cast<int32_t>(type)))
    fail(Errc::invalid_argument, "replace_tensor '{}': unknown type id {}", name, static_cast<int>(type));
  if (vector && type != QuantType::F32)
    fail(Errc::invalid_argument, "replace_tensor '{}': norms and biases must be F32, got {}", name, type_name(type));
  const TypeInfo& info = type_info(type);
  if (t.row_length() % info.block_size != 0)
    fail(Errc::invalid_argument, "replace_tensor '{}': row length {} is not a multiple of {}'s block size {}", name,
         t.row_length(), info.name, info.block_size);
  if (!vector && !engine::supports_weight_type(engine::Exec::with_threads(1), type))
    fail(Errc::invalid_argument, "replace_tensor '{}': type {} has no CPU kernel", name, info.name);
  if (&t == impl_->tok_embd && !Registry::instance().cpu().kernels(type).dequantize)
    fail(Errc::invalid_argument, "replace_tensor '{}': the token embedding needs a type that can be decoded, not {}",
         name, info.name);
  const size_t want = info.row_bytes(t.row_length()) * static_cast<size_t>(t.n_rows());
  if (bytes.size() != want)
    fail(Errc::invalid_argument, "replace_tensor '{}': {} bytes given, {} rows of {} in {} need {}", name, bytes.size(),
         t.n_rows(), t.row_length(), info.name, want);
  engine::Buffer buf(want);
  std::memcpy(buf.data(), bytes.data(), want);
  t.data = std::move(buf);
  t.type = type;
  t.col_order.reset();
  for (size_t i = 0; i < impl_->linears.size(); ++i)
    if (impl_->linear_tensors[i] == &t) impl_->linears[i].type = type;
}

void Model::replace_tensor(std::string_view name, std::span<const float> values, QuantType type) {
  const Tensor& t = need(*impl_, name);
  const int64_t n = t.row_length() * t.n_rows();
  if (static_cast<int64_t>(values.size()) != n)
    fail(Errc::invalid_argument, "replace_tensor '{}': {} values given, the tensor has {}", name, values.size(), n);
  if (!is_known_type_id(static_cast<int32_t>(type)))
    fail(Errc::invalid_argument, "replace_tensor '{}': unknown type id {}", name, static_cast<int>(type));
  const TypeInfo& info = type_info(type);
  QuantizeFn q = Registry::instance().quantize(type);
  if (!q) fail(Errc::invalid_argument, "replace_tensor '{}': type {} cannot be quantized", name, info.name);
  if (t.row_length() % info.block_size != 0)
    fail(Errc::invalid_argument, "replace_tensor '{}': row length {} is not a multiple of {}'s block size {}", name,
         t.row_length(), info.name, info.block_size);
  std::vector<uint8_t> bytes(info.row_bytes(t.row_length()) * static_cast<size_t>(t.n_rows()));
  q(values.data(), bytes.data(), t.n_rows(), t.row_length(), nullptr);
  replace_tensor(name, type, bytes);
}

void Model::set_input_scale(std::string_view name, float scale) {
  Tensor& t = need(*impl_, name);
  if (!find_linear(name)) fail(Errc::invalid_argument, "set_input_scale '{}': not a linear layer", name);
  if (!(scale >= 0) || !std::isfinite(scale))
    fail(Errc::invalid_argument, "set_input_scale '{}': scale {} is not a finite non-negative number", name, scale);
  t.input_scale = scale;
}

float Model::input_scale(std::string_view name) const { return need(*impl_, name).input_scale; }

void detail::ModelAccess::release_weight(Model& m, std::string_view name) {
  Tensor& t = need(*m.impl_, name);
  if (t.ne.size() < 2) fail(Errc::invalid_argument, "release_weight '{}': not a matrix", name);
  t.data = engine::Buffer();
}

bool detail::ModelAccess::released(const Model& m, std::string_view name) {
  const Tensor& t = need(*m.impl_, name);
  return t.data.data() == nullptr && t.row_length() * t.n_rows() > 0;
}

std::vector<float> Model::tensor_f32(std::string_view name) const {
  const Tensor& t = need(*impl_, name);
  std::vector<float> out(static_cast<size_t>(t.row_length() * t.n_rows()));
  if (!out.empty() && t.data.data() == nullptr) fail(Errc::general, "engine: the weights of '{}' were released", name);
  const engine::Exec ex = engine::Exec::with_threads(1);
  for (int64_t r = 0; r < t.n_rows(); ++r) engine::dequantize_row(ex, t, r, out.data() + r * t.row_length());
  return out;
}

size_t Model::memory_bytes() const {
  size_t s = 0;
  for (const auto& t : impl_->tensors) s += t->data.size();
  return s;
}

}  // namespace lq
