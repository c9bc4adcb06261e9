// Writes a synthetic Llama checkpoint in Hugging Face layout (config.json, sharded bf16
// safetensors with an index, a byte-level BPE tokenizer.json) with random weights of realistic
// shapes. Default: ~1.2 B parameters shaped like Llama-3.2-1B (hidden 2048, 16 layers, 32/8
// heads, ffn 8192), vocab 32000, untied lm_head.
//
//   make_synthetic_llama OUT_DIR [--hidden N] [--layers N] [--heads N] [--kv-heads N] [--ff N]
//                        [--vocab N] [--shards N] [--seed N] [--tied] [--qwen2] [--llama3-rope]
//                        [--qwen3] [--head-dim N] [--phi3] [--longrope]
//                        [--gemma2 | --gemma3] [--sliding-window N] [--tokenizer-model FILE]
//                        [--mixtral | --qwen2-moe | --qwen3-moe] [--experts N] [--top-k N]
//                        [--ff-exp N] [--ff-shexp N]
//
// --qwen2: a Qwen2 checkpoint instead (q/k/v biases, NEOX RoPE, rope_theta 1e6);
// --llama3-rope: Llama 3.1/3.2's rope_scaling (llama3, factor 32, original context 8192).
// --qwen3: a Qwen3 checkpoint (per-head q/k RMSNorm weights, no biases, NEOX RoPE, rope_theta 1e6);
// --phi3: a Phi-3 checkpoint (fused qkv_proj and gate_up_proj, NEOX RoPE, sliding_window 2047 in the
// config, original context 4096, a GPT-2 style tokenizer as Phi-4 has);
// --longrope (with --phi3): Phi-3-mini-128k's LongRoPE (context 131072 over an original 4096, long
// and short factors per rotated pair, the long ones growing to 8 over the pairs);
// --head-dim N: attention head size when it is not hidden / heads (Qwen3-0.6B: hidden 1024, 16 x 128).
// --gemma2 / --gemma3: a Gemma 2 (Gemma2ForCausalLM) or Gemma 3 text (Gemma3ForCausalLM) checkpoint:
// pre/post norms stored as HF keeps them (w, used as 1 + w), q/k norms (gemma3), tied embeddings,
// GELU-tanh MLP, query_pre_attn_scalar = head_dim; gemma2 soft-caps (50, 30) and a sliding
// window on every other layer, gemma3 five local layers in six (base 10000) and global ones with
// rope_theta 1e6 and linear scaling 8. --sliding-window sets the window (default 4096 / 1024).
// --tokenizer-model: copy this SentencePiece tokenizer.model (and write a tokenizer_config.json)
// instead of generating a BPE tokenizer.json (its tokenizer_config.json and special_tokens_map.json
// too when they are beside it; BOS 1, EOS 2 as SentencePiece numbers them); Gemma 2's converter needs one.
// Mixture-of-Experts checkpoints (each layer's MLP replaced by a router and --experts experts of
// --ff-exp rows, --top-k of them used per token):
// --mixtral: Mixtral (block_sparse_moe.experts.N.w1/w2/w3, llama attention);
// --qwen2-moe: Qwen2-MoE (q/k/v biases, a shared expert of --ff-shexp rows and its sigmoid gate,
//   norm_topk_prob false); --qwen3-moe: Qwen3-MoE (q/k RMS norms, no biases, norm_topk_prob true).
#include "core/half.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Spec {
  int64_t hidden = 2048, layers = 16, heads = 32, kv_heads = 8, ff = 8192, vocab = 32000;
  int shards = 2;
  uint64_t seed = 1;
  bool tied = false;
  bool qwen2 = false;
  bool llama3_rope = false;
  bool qwen3 = false;
  bool phi3 = false;
  bool longrope = false;
  int64_t head_dim = 0;  // 0: hidden / heads
  int gemma = 0;  // 2 or 3
  int64_t sliding_window = 0;
  std::string tokenizer_model;
  // Mixture of experts (0 experts: a dense MLP)
  enum class Moe { none, mixtral, qwen2_moe, qwen3_moe } moe = Moe::none;
  int64_t experts = 8, top_k = 2, ff_exp = 0, ff_shexp = 0;
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  float std;  // 0: a norm weight (values around 1)
};

// xoshiro-style fast generator; approximately normal values from the sum of four uniforms
// (variance matched), which is plenty for benchmarking shapes and value ranges.
struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  float normal() {
    const uint64_t r = next();
    float acc = 0;
    for (int i = 0; i < 4; ++i) acc += static_cast<float>((r >> (16 * i)) & 0xffff) / 65535.0f;
    return (acc - 2.0f) * 1.7320508f;  // sum of 4 U(0,1) has variance 1/3
  }
};

void write_shard(const fs::path& path, const std::vector<const TensorSpec*>& ts, Rng& rng) {
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t off = 0;
  for (const auto* t : ts) {
    uint64_t n = 1;
    for (auto d : t->shape) n *= static_cast<uint64_t>(d);
    header[t->name] = {{"dtype", "BF16"}, {"shape", t->shape}, {"data_offsets", {off, off + 2 * n}}};
    off += 2 * n;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h += ' ';
  std::ofstream out(path, std::ios::binary);
  const uint64_t hl = h.size();
  out.write(reinterpret_cast<const char*>(&hl), 8);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  std::vector<uint16_t> buf(1 << 20);
  for (const auto* t : ts) {
    uint64_t n = 1;
    for (auto d : t->shape) n *= static_cast<uint64_t>(d);
    for (uint64_t i = 0; i < n;) {
      const size_t k = static_cast<size_t>(std::min<uint64_t>(buf.size(), n - i));
      for (size_t j = 0; j < k; ++j) {
        const float v = t->std > 0 ? t->std * rng.normal() : t->std < 0 ? -t->std * rng.normal() : 1.0f + 0.1f * rng.normal();
        buf[j] = lq::f32_to_bf16(v);
      }
      out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(k * 2));
      i += k;
    }
  }
  if (!out) {
    std::fprintf(stderr, "error: cannot write %s\n", path.c_str());
    std::exit(7);
  }
}

// A byte-level BPE vocabulary: the 256 byte symbols, then tokens made by merging pairs.
void write_tokenizer(const fs::path& dir, int64_t vocab, Rng& rng, const char* tokenizer_class) {
  std::vector<std::string> syms;
  // GPT-2's byte-to-unicode mapping: printable bytes map to themselves, others to U+0100+.
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  std::vector<int> cs = bs;
  int extra = 0;
  for (int b = 0; b < 256; ++b)
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
      bs.push_back(b);
      cs.push_back(256 + extra++);
    }
  auto utf8 = [](int cp) {
    std::string s;
    if (cp < 0x80) s += static_cast<char>(cp);
    else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  };
  std::vector<std::pair<int, std::string>> order;
  for (size_t i = 0; i < bs.size(); ++i) order.emplace_back(bs[i], utf8(cs[i]));
  std::sort(order.begin(), order.end());
  for (const auto& [b, s] : order) syms.push_back(s);
  std::set<std::string> seen(syms.begin(), syms.end());
  json merges = json::array();
  // Phi-3's vocabulary also has these (llama.cpp sets their attributes by name for a model named phi3)
  const bool gpt2_class = std::string(tokenizer_class) == "GPT2Tokenizer";
  const std::vector<std::string> named_specials =
      gpt2_class ? std::vector<std::string>{"<unk>", "<s>", "</s>", "<|endoftext|>"} : std::vector<std::string>{};
  const int64_t n_special = 2 + static_cast<int64_t>(named_specials.size());
  while (static_cast<int64_t>(syms.size()) < vocab - n_special) {
    const auto& a = syms[rng.next() % syms.size()];
    const auto& b = syms[rng.next() % std::min<size_t>(syms.size(), 512)];
    std::string m = a + b;
    if (m.size() > 24 || seen.count(m)) continue;
    merges.push_back(a + " " + b);
    seen.insert(m);
    syms.push_back(m);
  }
  json v = json::object();
  for (size_t i = 0; i < syms.size(); ++i) v[syms[i]] = i;
  json extra_added = json::array();
  for (const auto& e : named_specials) {
    const int64_t id = static_cast<int64_t>(syms.size());
    v[e] = id;
    syms.push_back(e);
    extra_added.push_back({{"id", id}, {"content", e}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                           {"normalized", false}, {"special", true}});
  }
  const int64_t bos = static_cast<int64_t>(syms.size()), eos = bos + 1;
  json added = json::array({{{"id", bos}, {"content", "<|begin_of_text|>"}, {"single_word", false}, {"lstrip", false},
                             {"rstrip", false}, {"normalized", false}, {"special", true}},
                            {{"id", eos}, {"content", "<|end_of_text|>"}, {"single_word", false}, {"lstrip", false},
                             {"rstrip", false}, {"normalized", false}, {"special", true}}});
  for (auto& e : extra_added) added.push_back(e);
  json tok = {{"version", "1.0"},
              {"added_tokens", added},
              {"normalizer", nullptr},
              {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
              {"post_processor", nullptr},
              {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
              {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"fuse_unk", false},
                         {"byte_fallback", false}, {"vocab", v}, {"merges", merges}}}};
  std::ofstream(dir / "tokenizer.json") << tok.dump();
  json tc = {{"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|end_of_text|>"}, {"add_bos_token", true},
             {"tokenizer_class", tokenizer_class}};
  // GPT2Tokenizer adds "<|endoftext|>" as its unknown token unless one is named: name one it has
  if (gpt2_class) tc["unk_token"] = "<unk>";
  std::ofstream(dir / "tokenizer_config.json") << tc.dump(2);
}

}  // namespace

// A Mixture-of-Experts layer's tensors in the checkpoint's own naming, sorted as the others are.
void add_moe_tensors(const Spec& s, const std::string& p, std::vector<TensorSpec>& ts) {
  const float std = 0.02f, down_std = std / std::sqrt(2.0f * s.layers);
  const int64_t ff = s.ff_exp;
  const bool mixtral = s.moe == Spec::Moe::mixtral;
  const std::string mlp = p + (mixtral ? "block_sparse_moe." : "mlp.");
  // The router gets larger weights than the projections, so that tokens prefer distinct experts.
  ts.push_back({mlp + "gate.weight", {s.experts, s.hidden}, 0.1f});
  for (int64_t e = 0; e < s.experts; ++e) {
    const std::string x = mlp + "experts." + std::to_string(e) + ".";
    if (mixtral) {
      ts.push_back({x + "w1.weight", {ff, s.hidden}, std});
      ts.push_back({x + "w2.weight", {s.hidden, ff}, down_std});
      ts.push_back({x + "w3.weight", {ff, s.hidden}, std});
    } else {
      ts.push_back({x + "down_proj.weight", {s.hidden, ff}, down_std});
      ts.push_back({x + "gate_proj.weight", {ff, s.hidden}, std});
      ts.push_back({x + "up_proj.weight", {ff, s.hidden}, std});
    }
  }
  if (s.moe == Spec::Moe::qwen2_moe) {
    ts.push_back({mlp + "shared_expert.down_proj.weight", {s.hidden, s.ff_shexp}, down_std});
    ts.push_back({mlp + "shared_expert.gate_proj.weight", {s.ff_shexp, s.hidden}, std});
    ts.push_back({mlp + "shared_expert.up_proj.weight", {s.ff_shexp, s.hidden}, std});
    ts.push_back({mlp + "shared_expert_gate.weight", {1, s.hidden}, 0.1f});
  }
}

// The config.json keys of the Mixture-of-Experts architectures.
void moe_config(const Spec& s, json& cfg) {
  switch (s.moe) {
    case Spec::Moe::mixtral:
      cfg["architectures"] = {"MixtralForCausalLM"};
      cfg["model_type"] = "mixtral";
      cfg["intermediate_size"] = s.ff_exp;
      cfg["num_local_experts"] = s.experts;
      cfg["num_experts_per_tok"] = s.top_k;
      cfg["router_aux_loss_coef"] = 0.02;
      cfg["sliding_window"] = nullptr;
      cfg["rope_theta"] = 1000000.0;
      break;
    case Spec::Moe::qwen2_moe:
    case Spec::Moe::qwen3_moe: {
      const bool q2 = s.moe == Spec::Moe::qwen2_moe;
      cfg["architectures"] = {q2 ? "Qwen2MoeForCausalLM" : "Qwen3MoeForCausalLM"};
      cfg["model_type"] = q2 ? "qwen2_moe" : "qwen3_moe";
      cfg["num_experts"] = s.experts;
      cfg["num_experts_per_tok"] = s.top_k;
      cfg["moe_intermediate_size"] = s.ff_exp;
      if (q2) cfg["shared_expert_intermediate_size"] = s.ff_shexp;
      cfg["norm_topk_prob"] = !q2;
      cfg["decoder_sparse_step"] = 1;
      cfg["mlp_only_layers"] = json::array();
      cfg["rms_norm_eps"] = 1e-6;
      cfg["rope_theta"] = 1000000.0;
      cfg["use_sliding_window"] = false;
      cfg["attention_bias"] = false;
      break;
    }
    case Spec::Moe::none: break;
  }
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR [--hidden N] [--layers N] [--heads N] [--kv-heads N] [--ff N] "
                         "[--vocab N] [--shards N] [--seed N] [--tied] [--qwen2] [--llama3-rope] [--qwen3] "
                         "[--head-dim N] [--phi3] [--longrope] "
                         "[--gemma2 | --gemma3] [--sliding-window N] [--tokenizer-model FILE] "
                         "[--mixtral | --qwen2-moe | --qwen3-moe] [--experts N] [--top-k N] [--ff-exp N] [--ff-shexp N]\n", argv[0]);
    return 2;
  }
  Spec s;
  const fs::path dir = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> int64_t {
      if (i + 1 >= argc) { std::fprintf(stderr, "error: %s needs a value\n", a.c_str()); std::exit(2); }
      return std::atoll(argv[++i]);
    };
    if (a == "--hidden") s.hidden = next();
    else if (a == "--layers") s.layers = next();
    else if (a == "--heads") s.heads = next();
    else if (a == "--kv-heads") s.kv_heads = next();
    else if (a == "--ff") s.ff = next();
    else if (a == "--vocab") s.vocab = next();
    else if (a == "--shards") s.shards = static_cast<int>(next());
    else if (a == "--seed") s.seed = static_cast<uint64_t>(next());
    else if (a == "--tied") s.tied = true;
    else if (a == "--qwen2") s.qwen2 = true;
    else if (a == "--llama3-rope") s.llama3_rope = true;
    else if (a == "--qwen3") s.qwen3 = true;
    else if (a == "--phi3") s.phi3 = true;
    else if (a == "--longrope") s.longrope = true;
    else if (a == "--head-dim") s.head_dim = next();
    else if (a == "--gemma2") s.gemma = 2;
    else if (a == "--gemma3") s.gemma = 3;
    else if (a == "--sliding-window") s.sliding_window = next();
    else if (a == "--tokenizer-model") {
      if (i + 1 >= argc) { std::fprintf(stderr, "error: %s needs a value\n", a.c_str()); return 2; }
      s.tokenizer_model = argv[++i];
    }
    else if (a == "--mixtral") s.moe = Spec::Moe::mixtral;
    else if (a == "--qwen2-moe") s.moe = Spec::Moe::qwen2_moe;
    else if (a == "--qwen3-moe") s.moe = Spec::Moe::qwen3_moe;
    else if (a == "--experts") s.experts = next();
    else if (a == "--top-k") s.top_k = next();
    else if (a == "--ff-exp") s.ff_exp = next();
    else if (a == "--ff-shexp") s.ff_shexp = next();
    else { std::fprintf(stderr, "error: unknown option %s\n", a.c_str()); return 2; }
  }
  if (s.gemma == 2 && s.tokenizer_model.empty()) {
    std::fprintf(stderr, "error: --gemma2 needs --tokenizer-model (llama.cpp's converter reads Gemma 2's "
                         "vocabulary from a SentencePiece tokenizer.model)\n");
    return 2;
  }
  if (s.gemma) s.tied = true;
  if (s.moe != Spec::Moe::none) {
    if (s.ff_exp <= 0) s.ff_exp = s.ff;
    if (s.ff_shexp <= 0) s.ff_shexp = s.ff;
    if (s.experts < 1 || s.top_k < 1 || s.top_k > s.experts) {
      std::fprintf(stderr, "error: --top-k must be between 1 and --experts\n");
      return 2;
    }
  }
  fs::create_directories(dir);
  const int64_t hd = s.head_dim > 0 ? s.head_dim : s.hidden / s.heads;
  std::vector<TensorSpec> ts;
  const float std = 0.02f;
  ts.push_back({"model.embed_tokens.weight", {s.vocab, s.hidden}, std});
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    ts.push_back({p + "input_layernorm.weight", {s.hidden}, 0});
    if (s.moe != Spec::Moe::none) {
      add_moe_tensors(s, p, ts);
    } else {
      ts.push_back({p + "mlp.down_proj.weight", {s.hidden, s.ff}, std / std::sqrt(2.0f * s.layers)});
      if (s.phi3) {  // rows: gate then up; q then k then v
        ts.push_back({p + "mlp.gate_up_proj.weight", {2 * s.ff, s.hidden}, std});
      } else {
        ts.push_back({p + "mlp.gate_proj.weight", {s.ff, s.hidden}, std});
        ts.push_back({p + "mlp.up_proj.weight", {s.ff, s.hidden}, std});
      }
    }
    ts.push_back({p + "post_attention_layernorm.weight", {s.hidden}, 0});
    if (s.gemma) {  // norms near 0 (HF's Gemma RMSNorm multiplies by 1 + w): std < 0 marks them
      ts.back().std = -0.1f;
      ts[ts.size() - 5].std = -0.1f;  // input_layernorm
      ts.push_back({p + "post_feedforward_layernorm.weight", {s.hidden}, -0.1f});
      ts.push_back({p + "pre_feedforward_layernorm.weight", {s.hidden}, -0.1f});
      if (s.gemma == 3) {
        ts.push_back({p + "self_attn.k_norm.weight", {hd}, -0.1f});
        ts.push_back({p + "self_attn.q_norm.weight", {hd}, -0.1f});
      }
    }
    if (!s.phi3) ts.push_back({p + "self_attn.k_proj.weight", {s.kv_heads * hd, s.hidden}, std});
    ts.push_back({p + "self_attn.o_proj.weight", {s.hidden, s.heads * hd}, std / std::sqrt(2.0f * s.layers)});
    if (s.phi3) {
      ts.push_back({p + "self_attn.qkv_proj.weight", {(s.heads + 2 * s.kv_heads) * hd, s.hidden}, std});
    } else {
      ts.push_back({p + "self_attn.q_proj.weight", {s.heads * hd, s.hidden}, std});
      ts.push_back({p + "self_attn.v_proj.weight", {s.kv_heads * hd, s.hidden}, std});
    }
    if (s.moe == Spec::Moe::qwen3_moe) {
      ts.push_back({p + "self_attn.k_norm.weight", {hd}, 0});
      ts.push_back({p + "self_attn.q_norm.weight", {hd}, 0});
    }
    if (s.qwen2 || s.moe == Spec::Moe::qwen2_moe) {
      ts.push_back({p + "self_attn.k_proj.bias", {s.kv_heads * hd}, std});
      ts.push_back({p + "self_attn.q_proj.bias", {s.heads * hd}, std});
      ts.push_back({p + "self_attn.v_proj.bias", {s.kv_heads * hd}, std});
    }
    if (s.qwen3) {
      ts.push_back({p + "self_attn.k_norm.weight", {hd}, 0});
      ts.push_back({p + "self_attn.q_norm.weight", {hd}, 0});
    }
  }
  ts.push_back({"model.norm.weight", {s.hidden}, s.gemma ? -0.1f : 0.0f});
  if (!s.tied) ts.push_back({"lm_head.weight", {s.vocab, s.hidden}, std});

  uint64_t total = 0;
  for (const auto& t : ts) {
    uint64_t n = 1;
    for (auto d : t.shape) n *= static_cast<uint64_t>(d);
    total += n;
  }
  Rng rng{s.seed * 0x9E3779B97F4A7C15ull + 1};
  json weight_map = json::object();
  const uint64_t per_shard = (total + s.shards - 1) / s.shards;
  size_t idx = 0;
  for (int sh = 0; sh < s.shards && idx < ts.size(); ++sh) {
    std::vector<const TensorSpec*> part;
    uint64_t acc = 0;
    while (idx < ts.size() && (acc < per_shard || sh == s.shards - 1)) {
      uint64_t n = 1;
      for (auto d : ts[idx].shape) n *= static_cast<uint64_t>(d);
      part.push_back(&ts[idx++]);
      acc += n;
    }
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", sh + 1, s.shards);
    write_shard(dir / name, part, rng);
    for (const auto* t : part) weight_map[t->name] = name;
    std::fprintf(stderr, "wrote %s (%zu tensors)\n", name, part.size());
  }
  std::ofstream(dir / "model.safetensors.index.json")
      << json({{"metadata", {{"total_size", total * 2}}}, {"weight_map", weight_map}}).dump(2);
  const bool qwen = s.qwen2 || s.qwen3;
  const char* hf_class = s.phi3 ? "Phi3ForCausalLM" : s.qwen3 ? "Qwen3ForCausalLM" : s.qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
  const char* model_type = s.phi3 ? "phi3" : s.qwen3 ? "qwen3" : s.qwen2 ? "qwen2" : "llama";
  json cfg = {{"architectures", {hf_class}},
              {"model_type", model_type}, {"hidden_size", s.hidden},
              {"intermediate_size", s.ff}, {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads},
              {"num_key_value_heads", s.kv_heads}, {"head_dim", hd}, {"vocab_size", s.vocab},
              {"max_position_embeddings", 4096}, {"rms_norm_eps", qwen ? 1e-6 : 1e-5},
              {"rope_theta", qwen ? 1000000.0 : 500000.0},
              {"tie_word_embeddings", s.tied}, {"torch_dtype", "bfloat16"}, {"bos_token_id", s.vocab - 2},
              {"eos_token_id", s.vocab - 1}, {"hidden_act", "silu"}};
  if (s.qwen3) cfg["attention_bias"] = false;
  if (s.phi3) {  // Phi-3-mini-4k's values
    cfg["rope_theta"] = 10000.0;
    cfg["original_max_position_embeddings"] = 4096;
    cfg["sliding_window"] = 2047;
    cfg["attention_bias"] = false;
    cfg["rope_scaling"] = nullptr;
    cfg.erase("head_dim");  // Phi-3's config has none: hidden / heads
    cfg["pad_token_id"] = s.vocab - 1;  // transformers' Phi3Config default (32000) is beyond a small vocabulary
    if (s.longrope) {
      std::vector<double> lf, sf;
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double x = static_cast<double>(i) / static_cast<double>(hd / 2);
        sf.push_back(1.0 + 0.05 * x);
        lf.push_back(1.0 + 7.0 * x * x);
      }
      cfg["max_position_embeddings"] = 131072;
      cfg["rope_scaling"] = {{"type", "longrope"}, {"long_factor", lf}, {"short_factor", sf}};
    }
  }
  if (s.moe != Spec::Moe::none) moe_config(s, cfg);
  if (s.llama3_rope)
    cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  if (s.gemma) {
    const int64_t window = s.sliding_window > 0 ? s.sliding_window : s.gemma == 2 ? 4096 : 1024;
    cfg["architectures"] = {s.gemma == 2 ? "Gemma2ForCausalLM" : "Gemma3ForCausalLM"};
    cfg["model_type"] = s.gemma == 2 ? "gemma2" : "gemma3_text";
    cfg.erase("hidden_act");
    cfg["hidden_activation"] = "gelu_pytorch_tanh";
    cfg["rms_norm_eps"] = 1e-6;
    cfg["query_pre_attn_scalar"] = hd;
    cfg["sliding_window"] = window;
    cfg["attention_bias"] = false;
    cfg["attn_logit_softcapping"] = s.gemma == 2 ? json(50.0) : json(nullptr);
    cfg["final_logit_softcapping"] = s.gemma == 2 ? json(30.0) : json(nullptr);
    json types = json::array();
    for (int64_t l = 0; l < s.layers; ++l)
      types.push_back(l % (s.gemma == 2 ? 2 : 6) < (s.gemma == 2 ? 1 : 5) ? "sliding_attention" : "full_attention");
    cfg["layer_types"] = types;
    if (s.gemma == 2) {
      cfg["rope_theta"] = 10000.0;
    } else {
      cfg["rope_theta"] = 1000000.0;
      cfg["rope_local_base_freq"] = 10000.0;
      cfg["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
    }
  }
  if (!s.tokenizer_model.empty()) {
    cfg["bos_token_id"] = 1;
    cfg["eos_token_id"] = 2;
  }
  std::ofstream(dir / "config.json") << cfg.dump(2);
  if (!s.tokenizer_model.empty()) {
    std::error_code ec;
    fs::copy_file(s.tokenizer_model, dir / "tokenizer.model", fs::copy_options::overwrite_existing, ec);
    if (ec) {
      std::fprintf(stderr, "error: cannot copy %s: %s\n", s.tokenizer_model.c_str(), ec.message().c_str());
      return 7;
    }
    const fs::path from = fs::path(s.tokenizer_model).parent_path();
    if (fs::exists(from / "tokenizer_config.json"))
      fs::copy_file(from / "tokenizer_config.json", dir / "tokenizer_config.json", fs::copy_options::overwrite_existing);
    else
      std::ofstream(dir / "tokenizer_config.json")
          << json({{"add_bos_token", true}, {"add_eos_token", false}, {"tokenizer_class", "LlamaTokenizer"}}).dump(2);
    if (fs::exists(from / "special_tokens_map.json"))
      fs::copy_file(from / "special_tokens_map.json", dir / "special_tokens_map.json", fs::copy_options::overwrite_existing);
  } else {
    write_tokenizer(dir, s.vocab, rng, s.phi3 ? "GPT2Tokenizer" : "PreTrainedTokenizerFast");
  }
  std::printf("%s: %llu parameters (%.2f B), %.2f GB of bf16\n", dir.c_str(), static_cast<unsigned long long>(total),
              total / 1e9, total * 2 / 1e9);
  return 0;
}
