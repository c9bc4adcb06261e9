// Writes a synthetic Llama checkpoint in Hugging Face layout (config.json, sharded bf16
// safetensors with an index, a byte-level BPE tokenizer.json) with random weights of realistic
// shapes. Default: ~1.2 B parameters shaped like Llama-3.2-1B (hidden 2048, 16 layers, 32/8
// heads, ffn 8192), vocab 32000, untied lm_head.
//
//   make_synthetic_llama OUT_DIR [--hidden N] [--layers N] [--heads N] [--kv-heads N] [--ff N]
//                        [--vocab N] [--shards N] [--seed N] [--tied] [--qwen2] [--llama3-rope]
//                        [--mixtral | --qwen2-moe | --qwen3-moe] [--experts N] [--top-k N]
//                        [--ff-exp N] [--ff-shexp N]
//
// --qwen2: a Qwen2 checkpoint instead (q/k/v biases, NEOX RoPE, rope_theta 1e6);
// --llama3-rope: Llama 3.1/3.2's rope_scaling (llama3, factor 32, original context 8192).
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
        const float v = t->std > 0 ? t->std * rng.normal() : 1.0f + 0.1f * rng.normal();
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
void write_tokenizer(const fs::path& dir, int64_t vocab, Rng& rng) {
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
  const int64_t n_special = 2;
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
  const int64_t bos = static_cast<int64_t>(syms.size()), eos = bos + 1;
  json added = json::array({{{"id", bos}, {"content", "<|begin_of_text|>"}, {"single_word", false}, {"lstrip", false},
                             {"rstrip", false}, {"normalized", false}, {"special", true}},
                            {{"id", eos}, {"content", "<|end_of_text|>"}, {"single_word", false}, {"lstrip", false},
                             {"rstrip", false}, {"normalized", false}, {"special", true}}});
  json tok = {{"version", "1.0"},
              {"added_tokens", added},
              {"normalizer", nullptr},
              {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
              {"post_processor", nullptr},
              {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
              {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"fuse_unk", false},
                         {"byte_fallback", false}, {"vocab", v}, {"merges", merges}}}};
  std::ofstream(dir / "tokenizer.json") << tok.dump();
  std::ofstream(dir / "tokenizer_config.json")
      << json({{"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|end_of_text|>"}, {"add_bos_token", true},
               {"tokenizer_class", "PreTrainedTokenizerFast"}}).dump(2);
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
                         "[--vocab N] [--shards N] [--seed N] [--tied] [--qwen2] [--llama3-rope] [--mixtral | --qwen2-moe | "
                         "--qwen3-moe] [--experts N] [--top-k N] [--ff-exp N] [--ff-shexp N]\n", argv[0]);
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
    else if (a == "--mixtral") s.moe = Spec::Moe::mixtral;
    else if (a == "--qwen2-moe") s.moe = Spec::Moe::qwen2_moe;
    else if (a == "--qwen3-moe") s.moe = Spec::Moe::qwen3_moe;
    else if (a == "--experts") s.experts = next();
    else if (a == "--top-k") s.top_k = next();
    else if (a == "--ff-exp") s.ff_exp = next();
    else if (a == "--ff-shexp") s.ff_shexp = next();
    else { std::fprintf(stderr, "error: unknown option %s\n", a.c_str()); return 2; }
  }
  if (s.moe != Spec::Moe::none) {
    if (s.ff_exp <= 0) s.ff_exp = s.ff;
    if (s.ff_shexp <= 0) s.ff_shexp = s.ff;
    if (s.experts < 1 || s.top_k < 1 || s.top_k > s.experts) {
      std::fprintf(stderr, "error: --top-k must be between 1 and --experts\n");
      return 2;
    }
  }
  fs::create_directories(dir);
  const int64_t hd = s.hidden / s.heads;
  std::vector<TensorSpec> ts;
  const float std = 0.02f;
  ts.push_back({"model.embed_tokens.weight", {s.vocab, s.hidden}, std});
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    ts.push_back({p + "input_layernorm.weight", {s.hidden}, 0});
    if (s.moe == Spec::Moe::none) {
      ts.push_back({p + "mlp.down_proj.weight", {s.hidden, s.ff}, std / std::sqrt(2.0f * s.layers)});
      ts.push_back({p + "mlp.gate_proj.weight", {s.ff, s.hidden}, std});
      ts.push_back({p + "mlp.up_proj.weight", {s.ff, s.hidden}, std});
    } else {
      add_moe_tensors(s, p, ts);
    }
    ts.push_back({p + "post_attention_layernorm.weight", {s.hidden}, 0});
    ts.push_back({p + "self_attn.k_proj.weight", {s.kv_heads * hd, s.hidden}, std});
    ts.push_back({p + "self_attn.o_proj.weight", {s.hidden, s.heads * hd}, std / std::sqrt(2.0f * s.layers)});
    ts.push_back({p + "self_attn.q_proj.weight", {s.heads * hd, s.hidden}, std});
    ts.push_back({p + "self_attn.v_proj.weight", {s.kv_heads * hd, s.hidden}, std});
    if (s.moe == Spec::Moe::qwen3_moe) {
      ts.push_back({p + "self_attn.k_norm.weight", {hd}, 0});
      ts.push_back({p + "self_attn.q_norm.weight", {hd}, 0});
    }
    if (s.qwen2 || s.moe == Spec::Moe::qwen2_moe) {
      ts.push_back({p + "self_attn.k_proj.bias", {s.kv_heads * hd}, std});
      ts.push_back({p + "self_attn.q_proj.bias", {s.heads * hd}, std});
      ts.push_back({p + "self_attn.v_proj.bias", {s.kv_heads * hd}, std});
    }
  }
  ts.push_back({"model.norm.weight", {s.hidden}, 0});
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
  json cfg = {{"architectures", {s.qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
              {"model_type", s.qwen2 ? "qwen2" : "llama"}, {"hidden_size", s.hidden},
              {"intermediate_size", s.ff}, {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads},
              {"num_key_value_heads", s.kv_heads}, {"head_dim", hd}, {"vocab_size", s.vocab},
              {"max_position_embeddings", 4096}, {"rms_norm_eps", s.qwen2 ? 1e-6 : 1e-5},
              {"rope_theta", s.qwen2 ? 1000000.0 : 500000.0},
              {"tie_word_embeddings", s.tied}, {"torch_dtype", "bfloat16"}, {"bos_token_id", s.vocab - 2},
              {"eos_token_id", s.vocab - 1}, {"hidden_act", "silu"}};
  if (s.moe != Spec::Moe::none) moe_config(s, cfg);
  if (s.llama3_rope)
    cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  std::ofstream(dir / "config.json") << cfg.dump(2);
  write_tokenizer(dir, s.vocab, rng);
  std::printf("%s: %llu parameters (%.2f B), %.2f GB of bf16\n", dir.c_str(), static_cast<unsigned long long>(total),
              total / 1e9, total * 2 / 1e9);
  return 0;
}
