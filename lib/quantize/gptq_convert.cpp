// GGUF -> GPTQ / compressed-tensors W4A16-style directories (gptq.hpp, convert_gguf_to_gptq):
// the exact mapping of Q4_0 / Q8_0 / Q4_1 blocks onto GPTQ codes, scales and zeros, round to
// nearest from the dequantized weights where it does not map, and the streamed directory (q/k
// rows back in Hugging Face order, a config.json made from the GGUF's hyper-parameters).
#include <lq/gptq.hpp>

#include <lq/io.hpp>

#include "core/fail.hpp"
#include "core/half.hpp"
#include "formats/gptq_pack.hpp"
#include "formats/safetensors_writer.hpp"
#include "model/architecture.hpp"
#include "model/tensor_names.hpp"
#include "tokenizer/hf_files_writer.hpp"
#include "quantize/gptq_write.hpp"
#include "types/ref/blocks.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <random>

namespace fs = std::filesystem;

namespace lq {


bool gptq_from_gguf_rows(QuantType type, const void* data, int64_t rows, int64_t cols, GptqMatrix& m) {
  if (cols % 32 != 0) return false;
  const int64_t nb = cols / 32;
  m.rows = rows, m.cols = cols, m.groups = nb;
  m.perm.clear();
  m.damp = 0, m.damp_raises = 0, m.dead_columns = 0, m.loss = 0;
  m.codes.assign(static_cast<size_t>(rows * cols), 0);
  m.scales.assign(static_cast<size_t>(rows * nb), 0.0f);
  m.zeros.assign(static_cast<size_t>(rows * nb), 0);
  m.g_idx.resize(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) m.g_idx[static_cast<size_t>(c)] = static_cast<int32_t>(c / 32);
  const auto* p = static_cast<const uint8_t*>(data);
  if (type == QuantType::Q4_0 || type == QuantType::Q4_1) {
    const bool q41 = type == QuantType::Q4_1;
    m.bits = 4;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        const size_t gi = static_cast<size_t>(r * nb + b);
        uint8_t* codes = &m.codes[static_cast<size_t>(r * cols + b * 32)];
        if (!q41) {
          ref::block_q4_0 blk;
          std::memcpy(&blk, p + static_cast<size_t>(r * nb + b) * sizeof(ref::block_q4_0), sizeof blk);
          m.scales[gi] = fp16_to_f32(blk.d);
          m.zeros[gi] = 8;
          for (int j = 0; j < 16; ++j) codes[j] = blk.qs[j] & 15, codes[j + 16] = blk.qs[j] >> 4;
        } else {
          ref::block_q4_1 blk;
          std::memcpy(&blk, p + static_cast<size_t>(r * nb + b) * sizeof(ref::block_q4_1), sizeof blk);
          const float d = fp16_to_f32(blk.d), mn = fp16_to_f32(blk.m);
          if (!(d != 0) || !std::isfinite(d)) return false;
          const float z = std::nearbyint(-mn / d);
          if (!(z >= 0 && z <= 15) || -(z * d) != mn) return false;
          m.scales[gi] = d;
          m.zeros[gi] = static_cast<int32_t>(z);
          for (int j = 0; j < 16; ++j) codes[j] = blk.qs[j] & 15, codes[j + 16] = blk.qs[j] >> 4;
        }
      }
    return true;
  }
  if (type == QuantType::Q8_0) {
    m.bits = 8;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        ref::block_q8_0 blk;
        std::memcpy(&blk, p + static_cast<size_t>(r * nb + b) * sizeof(ref::block_q8_0), sizeof blk);
        const size_t gi = static_cast<size_t>(r * nb + b);
        m.scales[gi] = fp16_to_f32(blk.d);
        m.zeros[gi] = 128;
        for (int j = 0; j < 32; ++j) m.codes[static_cast<size_t>(r * cols + b * 32 + j)] = static_cast<uint8_t>(blk.qs[j] + 128);
      }
    return true;
  }
  return false;
}

namespace {

bool gc_linear_rest(std::string_view rest) {
  for (const char* n : {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_qkv.weight", "attn_output.weight", "ffn_gate.weight",
                        "ffn_up.weight", "ffn_down.weight", "ffn_gate_shexp.weight", "ffn_up_shexp.weight",
                        "ffn_down_shexp.weight", "ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"})
    if (rest == n) return true;
  return false;
}

bool gc_experts_rest(std::string_view rest) { return rest.ends_with("_exps.weight"); }

// The architecture row of a GGUF: a llama GGUF with experts is Mixtral's.
const Architecture& gc_architecture(const ModelConfig& mc) {
  const Architecture& a = architecture_of(mc, "convert");
  if (mc.n_expert == 0 || a.moe != Architecture::MoeStyle::none) return a;
  for (const Architecture& r : architectures())
    if (r.gguf == a.gguf && r.moe != Architecture::MoeStyle::none) return r;
  fail(Errc::invalid_model, "convert: a {} model with {} experts is not an architecture liblq writes", a.gguf, mc.n_expert);
}

inline int64_t gc_hf_row(int64_t r, int64_t hd) {
  const int64_t h = r / hd, w = r % hd;
  return h * hd + (w % 2) * (hd / 2) + w / 2;
}

}  // namespace

GgufConvertResult convert_gguf_to_gptq(const fs::path& gguf, fs::path out, GptqLayout layout, const Context& ctx) {
  using namespace gptq_impl;
  const auto t0 = std::chrono::steady_clock::now();
  auto src = ModelSource::open(gguf);
  if (!src->is_gguf())
    fail(Errc::invalid_argument, "convert: {} is not a GGUF file (quantize a Hugging Face checkpoint with `quantize MODEL gptq`)",
         gguf.string());
  const ModelConfig& mc = src->config();
  const Architecture& arch = gc_architecture(mc);
  Progress& progress = ctx.progress_sink();
  GgufConvertResult res;

  // The scheme: the linears' most common type.
  std::map<QuantType, int> counts;
  std::vector<const ModelTensor*> linears;
  for (const auto& t : src->tensors()) {
    const auto sp = names::split(t.name);
    if (sp.block >= 0 && gc_linear_rest(sp.rest)) {
      linears.push_back(&t);
      ++counts[t.type];
    }
  }
  if (linears.empty()) fail(Errc::invalid_model, "convert: {} has no decoder linears", gguf.string());
  QuantType major = counts.begin()->first;
  for (const auto& [t, n] : counts)
    if (n > counts[major]) major = t;
  GptqParams rp;
  rp.rtn = true;
  const bool awq = layout == GptqLayout::awq;  // 4-bit codes only, zero points stored
  if (major == QuantType::Q4_0) rp.bits = 4, rp.group_size = 32, rp.sym = true;
  else if (major == QuantType::Q8_0 && !awq) rp.bits = 8, rp.group_size = 32, rp.sym = true;
  else if (major == QuantType::Q4_1) rp.bits = 4, rp.group_size = 32, rp.sym = false;
  else {
    // AWQ's own grid (asymmetric min-max) where the GGUF has no 4-bit form it can keep.
    rp.bits = 4, rp.group_size = 128, rp.sym = !awq;
    res.lost.push_back(fmt::format("the linears are {} (no exact {} form): every one is rounded to nearest at {} "
                                   "4-bit g128 from its dequantized weights", type_info(major).name,
                                   awq ? "AWQ" : "GPTQ", awq ? "asymmetric" : "symmetric"));
  }
  rp.scale_storage = 16;
  res.bits = rp.bits, res.group_size = rp.group_size, res.sym = rp.sym;
  const bool ct = layout == GptqLayout::compressed_tensors;
  if (!ct)
    for (const ModelTensor* t : linears)  // (a merged expert tensor: each expert's rows)
      if ((t->row_length() * rp.bits) % 32 != 0 || ((t->ne.size() == 3 ? t->ne[1] : t->n_rows()) * rp.bits) % 32 != 0)
        fail(Errc::invalid_argument, "convert: {} does not fill whole int32 words in the GPTQ layout", t->name);
  for (const ModelTensor* t : linears)
    if (t->row_length() % rp.group_size != 0)
      fail(Errc::invalid_argument, "convert: the row length {} of {} is not a multiple of {}", t->row_length(), t->name,
           rp.group_size);

  if (out.empty()) {
    std::string stem = gguf.stem().string();
    out = fs::path(fmt::format("{}-{}", stem, ct ? "w4a16-ct" : awq ? "awq" : "gptq"));
  }
  // Output directory checks (the same rules as quantize MODEL gptq).
  const fs::path dir = out.has_filename() ? out : out.parent_path();
  const fs::path parent = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();
  std::error_code ec;
  if (!fs::is_directory(parent, ec))
    fail(Errc::output_error, "cannot write {}: directory {} does not exist", dir.string(), parent.string());
  if (fs::exists(dir, ec) && !(fs::is_directory(dir, ec) && fs::is_empty(dir, ec)))
    fail(Errc::output_error, "cannot write {}: it exists (remove it or choose another -o)", dir.string());

  // Plan: linears quantized (in memory, one at a time when written), other tensors as they are.
  GpWriteSpec ws;
  ws.layout = layout;
  ws.sym = rp.sym;
  ws.scale_dtype = StDtype::F16;  // GGUF's scales are binary16: kept exactly
  std::vector<StTensorSpec> specs;
  struct Item {
    const ModelTensor* t;
    std::string hf;
    bool linear = false;
    StDtype dtype = StDtype::F32;
  };
  std::vector<Item> items;
  std::vector<GptqMatrix> mats;  // per linear, filled while planning (exact or RTN)
  bool non_float_copy = false;
  int64_t n_params = 0;
  // One linear's matrix: the GGUF's codes where its grid maps exactly, else rounded to nearest from
  // the dequantized weights (rows [row0, row0 + rows) of t: one expert's of a merged tensor).
  auto plan_matrix = [&](const ModelTensor& t, int64_t row0, int64_t rows, const std::string& module) {
    const int64_t cols = t.row_length();
    GptqMatrix q;
    bool exact = false;
    if (t.type == major) {
      std::vector<uint8_t> raw(static_cast<size_t>(rows) * t.row_bytes());
      src->read_rows_raw(t, row0, rows, raw.data());
      exact = gptq_from_gguf_rows(t.type, raw.data(), rows, cols, q);
    }
    if (!exact) {
      std::vector<float> w(static_cast<size_t>(rows * cols));
      src->read_rows_f32(t, row0, rows, w.data());
      q = gptq_quantize_matrix(w.data(), rows, cols, nullptr, rp, ctx);
      const auto d = q.dequantize();
      double e = 0, s2 = 0;
      for (size_t k = 0; k < w.size(); ++k) e += double(w[k] - d[k]) * (w[k] - d[k]), s2 += double(w[k]) * w[k];
      const double rel = s2 > 0 ? std::sqrt(e / s2) : 0;
      if (rel >= res.worst_rel_rmse) res.worst_rel_rmse = rel, res.worst_module = module;
      res.requantized.push_back(module);
    } else {
      res.exact.push_back(module);
    }
    return q;
  };
  const bool mixtral = arch.moe == Architecture::MoeStyle::mixtral;
  for (const auto& t : src->tensors()) {
    const auto sp = names::split(t.name);
    if (sp.block >= 0 && gc_experts_rest(sp.rest)) {  // a merged expert tensor: one module per expert
      if (t.ne.size() != 3) fail(Errc::invalid_model, "convert: {} is not a 3-D expert tensor", t.name);
      n_params += t.n_elements();
      for (int64_t e = 0; e < t.ne[2]; ++e) {
        const std::string module = names::hf_expert_module(t.name, static_cast<int>(e), mixtral);
        GptqMatrix q = plan_matrix(t, e * t.ne[1], t.ne[1], module);
        gp_specs(module, q, ws, specs);
        mats.push_back(std::move(q));
        items.push_back(Item{&t, module + ".weight", true});
      }
      src->release(t);
      ctx.check_cancelled();
      continue;
    }
    auto hf = arch.sandwich_norms ? names::gguf_to_hf_sandwich(t.name) : names::gguf_to_hf(t.name);
    if (!hf) continue;  // rope frequencies and other GGUF-only tensors
    if (mixtral && sp.rest == "ffn_gate_inp.weight")  // Mixtral's router (the table's first spelling is Qwen's)
      hf = fmt::format("model.layers.{}.block_sparse_moe.gate.weight", sp.block);
    if (arch.fused_gate_up && sp.rest == "ffn_up.weight")  // Phi-3's gate and up in one projection
      hf = names::hf_module(t.name, true) + ".weight";
    Item it{&t, *hf};
    n_params += t.n_elements();
    it.linear = sp.block >= 0 && gc_linear_rest(sp.rest);
    if (!it.linear) {
      if (t.type == QuantType::F16) it.dtype = StDtype::F16;
      else if (t.type == QuantType::BF16) it.dtype = StDtype::BF16;
      else {
        it.dtype = StDtype::F32;
        if (t.type != QuantType::F32) non_float_copy = true;
      }
      std::vector<int64_t> shape(t.ne.rbegin(), t.ne.rend());
      specs.push_back({it.hf, it.dtype, shape});
    } else {
      const std::string module = it.hf.substr(0, it.hf.size() - 7);
      const int64_t rows = t.n_rows(), cols = t.row_length();
      GptqMatrix q = plan_matrix(t, 0, rows, module);
      // q/k rows back in Hugging Face order.
      if (arch.permute_qk && (sp.rest == "attn_q.weight" || sp.rest == "attn_k.weight")) {
        GptqMatrix o = q;
        const int64_t hd = mc.head_dim;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t h = gc_hf_row(r, hd);
          std::memcpy(&o.codes[static_cast<size_t>(h * cols)], &q.codes[static_cast<size_t>(r * cols)], static_cast<size_t>(cols));
          for (int64_t g = 0; g < q.groups; ++g) {
            o.scales[static_cast<size_t>(h * q.groups + g)] = q.scales[static_cast<size_t>(r * q.groups + g)];
            o.zeros[static_cast<size_t>(h * q.groups + g)] = q.zeros[static_cast<size_t>(r * q.groups + g)];
          }
        }
        q = std::move(o);
      }
      gp_specs(module, q, ws, specs);
      mats.push_back(std::move(q));
      src->release(t);
    }
    items.push_back(it);
    ctx.check_cancelled();
  }
  if (non_float_copy)
    res.lost.push_back("embeddings, norms or the output projection stored quantized in the GGUF are written as F32 "
                       "(their dequantized values, exact; larger than the GGUF)");
  const bool exact_scheme = major == QuantType::Q4_0 || major == QuantType::Q8_0 || major == QuantType::Q4_1;
  if (!res.requantized.empty() && exact_scheme)
    res.lost.push_back(fmt::format("{} linear(s) not on the {}-bit g{} grid were rounded to nearest from their dequantized "
                                   "weights (worst relative RMS error {:.4f}, {})",
                                   res.requantized.size(), rp.bits, rp.group_size, res.worst_rel_rmse, res.worst_module));
  // Tokenizer files from the GGUF's tokenizer.ggml.* keys (SentencePiece and byte-level BPE).
  const detail::HfTokenizerFiles tokfiles = detail::hf_tokenizer_files(src->gguf_metadata(), mc.n_ctx_train);
  if (!tokfiles.unsupported.empty())
    res.lost.push_back(fmt::format("no tokenizer files: {} (copy them from the original checkpoint)", tokfiles.unsupported));

  // config.json from the GGUF's hyper-parameters.
  nlohmann::ordered_json config;
  config["architectures"] = {std::string(arch.hf_class)};
  config["model_type"] = std::string(arch.model_type);
  config["hidden_size"] = mc.n_embd;
  config["intermediate_size"] = mc.n_ff;
  config["num_attention_heads"] = mc.n_head;
  config["num_key_value_heads"] = mc.n_head_kv;
  config["num_hidden_layers"] = mc.n_layer;
  config["head_dim"] = mc.head_dim;
  config["hidden_act"] = "silu";
  config["max_position_embeddings"] = mc.n_ctx_train;
  config["rms_norm_eps"] = mc.rms_eps;
  config["rope_theta"] = mc.rope_theta;
  config["vocab_size"] = mc.n_vocab;
  config["tie_word_embeddings"] = mc.tie_embeddings;
  if (!arch.qkv_bias) config["attention_bias"] = mc.qkv_bias;
  if (arch.hparam_keys != Architecture::HparamKeys::llama) {  // Gemma 2 / Gemma 3 text
    config.erase("hidden_act");
    config.erase("attention_bias");
    config["hidden_activation"] = "gelu_pytorch_tanh";
    config["attention_bias"] = false;
    // llama.cpp's 1 / sqrt(n_embd / n_head) for the 27B models is query_pre_attn_scalar n_embd / n_head
    config["query_pre_attn_scalar"] = mc.attn_scale > 0 && mc.n_head > 0 ? mc.n_embd / mc.n_head : mc.head_dim;
    config["attn_logit_softcapping"] = mc.attn_softcap > 0 ? nlohmann::ordered_json(mc.attn_softcap) : nlohmann::ordered_json();
    config["final_logit_softcapping"] = mc.final_softcap > 0 ? nlohmann::ordered_json(mc.final_softcap) : nlohmann::ordered_json();
    config["sliding_window"] = mc.sliding_window;
    auto layers = nlohmann::ordered_json::array();
    for (int64_t l = 0; l < mc.n_layer; ++l)
      layers.push_back(mc.swa_period > 0 && l % mc.swa_period < mc.swa_period - 1 ? "sliding_attention" : "full_attention");
    config["layer_types"] = layers;
    if (arch.hparam_keys == Architecture::HparamKeys::gemma3) {
      config["architectures"] = {"Gemma3ForCausalLM"};  // the text model (a multimodal GGUF holds it alone)
      config["model_type"] = "gemma3_text";
      config["rope_local_base_freq"] = mc.rope_theta_swa;
      if (mc.rope_scaling && mc.rope_scaling->type == "linear")
        config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", mc.rope_scaling->factor}};
    }
  }
  if (arch.keys == ConverterKeys::phi3) {  // Phi-3: the original context, the window, LongRoPE's factors
    const gguf::Metadata meta = src->gguf_metadata();
    const std::string a = mc.architecture + ".";
    config["original_max_position_embeddings"] =
        meta.get_int(a + "rope.scaling.original_context_length").value_or(mc.n_ctx_train);
    config["sliding_window"] = mc.sliding_window > 0 ? nlohmann::ordered_json(mc.sliding_window) : nlohmann::ordered_json();
    const ModelTensor* lf = src->find("rope_factors_long.weight");
    const ModelTensor* sf = src->find("rope_factors_short.weight");
    if (lf && sf) {
      std::vector<float> l(static_cast<size_t>(lf->n_elements())), sh(static_cast<size_t>(sf->n_elements()));
      src->read_rows_f32(*lf, 0, lf->n_rows(), l.data());
      src->read_rows_f32(*sf, 0, sf->n_rows(), sh.data());
      config["rope_scaling"] = {{"type", "longrope"}, {"short_factor", sh}, {"long_factor", l}};
    } else {
      config["rope_scaling"] = nullptr;
    }
    config.erase("head_dim");  // Phi3Config has none (hidden_size / heads)
  }
  if (arch.moe == Architecture::MoeStyle::mixtral) {  // Mixtral's intermediate_size is one expert's
    config["num_local_experts"] = mc.n_expert;
    config["num_experts_per_tok"] = mc.n_expert_used;
    if (mc.n_ff_exp > 0) config["intermediate_size"] = mc.n_ff_exp;
  } else if (arch.moe == Architecture::MoeStyle::qwen) {
    config["num_experts"] = mc.n_expert;
    config["num_experts_per_tok"] = mc.n_expert_used;
    config["moe_intermediate_size"] = mc.n_ff_exp > 0 ? mc.n_ff_exp : mc.n_ff;
    if (arch.shared_expert) config["shared_expert_intermediate_size"] = mc.n_ff_shexp;
    config["norm_topk_prob"] = mc.expert_weights_norm;
    config["decoder_sparse_step"] = 1;
    config["mlp_only_layers"] = nlohmann::ordered_json::array();
  }
  for (const auto& [key, id] : tokfiles.config_ids.items()) config[key] = id;
  config["torch_dtype"] = "float16";
  const std::string ao;
  if (ct) {
    config["quantization_config"] = gptq_pack::ct_pack_quantization_config(rp.bits, rp.group_size, rp.sym, ao);
    // the routers stay float (as `quantize MODEL gptq` leaves them)
    if (arch.moe == Architecture::MoeStyle::mixtral) config["quantization_config"]["ignore"].push_back("re:.*block_sparse_moe.gate$");
    if (arch.moe == Architecture::MoeStyle::qwen) config["quantization_config"]["ignore"].push_back("re:.*mlp.gate$");
    if (arch.shared_expert) config["quantization_config"]["ignore"].push_back("re:.*mlp.shared_expert_gate$");
  } else if (awq) {
    config["quantization_config"] = gptq_pack::awq_quantization_config(rp.group_size);
  } else {
    // No walk ran, but transformers' GPTQConfig refuses a damp_percent outside (0, 1): GPTQ's default.
    config["quantization_config"] = gptq_pack::gptq_quantize_config(rp.bits, rp.group_size, rp.sym, false, false, 0.01,
                                                                    layout == GptqLayout::gptq_v2);
  }

  std::random_device rd;
  fs::path tmp;
  for (int attempt = 0; attempt < 8 && tmp.empty(); ++attempt) {
    fs::path t = parent / fmt::format("{}.tmp-{:08x}", dir.filename().string(), rd());
    if (fs::create_directory(t, ec)) tmp = t;
  }
  if (tmp.empty()) fail(Errc::output_error, "cannot write {}: cannot create a temporary directory", dir.string());
  struct Guard {
    fs::path p;
    ~Guard() {
      std::error_code e;
      if (!p.empty()) fs::remove_all(p, e);
    }
  } guard{tmp};
  ShardedSafetensorsWriter w(tmp, specs);
  size_t li = 0;
  std::vector<float> v;
  progress.update("Writing", 0, static_cast<int64_t>(items.size()), "tensors");
  for (size_t i = 0; i < items.size(); ++i) {
    ctx.check_cancelled();
    const Item& it = items[i];
    if (it.linear) {
      gp_write(w, it.hf.substr(0, it.hf.size() - 7), mats[li], ws);
      mats[li] = GptqMatrix{};
      ++li;
    } else {
      const ModelTensor& t = *it.t;
      if (it.dtype == StDtype::F32) {
        v.resize(static_cast<size_t>(t.n_elements()));
        src->read_rows_f32(t, 0, t.n_rows(), v.data());
        if (arch.norm_plus_one && it.hf.ends_with("norm.weight"))  // Gemma's (1 + w) norms: the checkpoint stores w
          for (float& x : v) x -= 1.0f;
        w.write(it.hf, v.data(), v.size() * 4);
      } else {
        std::vector<uint8_t> raw(static_cast<size_t>(t.n_rows()) * t.row_bytes());
        src->read_rows_raw(t, 0, t.n_rows(), raw.data());
        w.write(it.hf, raw.data(), raw.size());
      }
    }
    progress.update("Writing", static_cast<int64_t>(i + 1), static_cast<int64_t>(items.size()), "tensors");
  }
  w.commit();
  progress.finish("Writing");
  res.files = w.file_names();
  write_file_atomic(tmp / "config.json", config.dump(2) + "\n");
  res.files.insert(res.files.begin(), "config.json");
  if (!ct && !awq) {  // AutoGPTQ's file; AutoAWQ reads config.json only
    write_file_atomic(tmp / "quantize_config.json", config["quantization_config"].dump(2) + "\n");
    res.files.insert(res.files.begin() + 1, "quantize_config.json");
  }
  for (const auto& [name, contents] : tokfiles.files) {
    write_file_atomic(tmp / name, contents);
    res.files.push_back(name);
  }
  ctx.check_cancelled();
  if (fs::exists(dir, ec)) fs::remove(dir, ec);  // an empty directory
  fs::rename(tmp, dir, ec);
  if (ec) fail(Errc::output_error, "cannot write {}: {}", dir.string(), ec.message());
  guard.p.clear();
  res.output = dir;
  for (const auto& f : res.files) res.output_bytes += fs::file_size(dir / f, ec);
  res.source_bytes = src->source_bytes();
  (void)n_params;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace lq
