// The synthetic ~1B-parameter Llama of the engine and analysis benchmarks, written straight to
// GGUF: hidden 2048, 16 layers, ff 8192, 32 heads / 8 KV heads, the tiny model's tokenizer and
// vocabulary, weights uniform with std 0.02 (rounded to bf16 values, so a BF16 and an F32 file
// hold the same model exactly), norms 1. Every requested type is written in one pass over the
// values, so the files hold the same model.
#pragma once

#include <lq/backend.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/gguf.hpp>
#include <lq/quant_type.hpp>
#include <lq/threads.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace lq::bench {

inline void write_synthetic_1b(const std::filesystem::path& shared,
                               const std::vector<std::pair<QuantType, std::filesystem::path>>& files,
                               uint64_t seed = 0x9e3779b97f4a7c15ull) {
  const int64_t d = 2048, layers = 16, ff = 8192, heads = 32, kv_heads = 8, hd = d / heads;
  gguf::Reader tiny(shared / "golden/tiny-llama-F16.gguf");
  const int64_t vocab = static_cast<int64_t>(tiny.metadata().at("tokenizer.ggml.tokens").size());
  std::vector<std::unique_ptr<gguf::Writer>> writers;
  for (const auto& [type, path] : files) {
    if (!Registry::instance().quantize(type)) fail(Errc::invalid_argument, "no quantizer for {}", type_name(type));
    auto w = std::make_unique<gguf::Writer>(path);
    auto& m = w->metadata();
    m.set("general.architecture", gguf::Value::string("llama"));
    m.set("general.name", gguf::Value::string("lq synthetic 1B"));
    m.set("llama.block_count", gguf::Value::u32(layers));
    m.set("llama.context_length", gguf::Value::u32(2048));
    m.set("llama.embedding_length", gguf::Value::u32(d));
    m.set("llama.feed_forward_length", gguf::Value::u32(ff));
    m.set("llama.attention.head_count", gguf::Value::u32(heads));
    m.set("llama.attention.head_count_kv", gguf::Value::u32(kv_heads));
    m.set("llama.rope.freq_base", gguf::Value::f32(10000.f));
    m.set("llama.attention.layer_norm_rms_epsilon", gguf::Value::f32(1e-5f));
    m.set("llama.rope.dimension_count", gguf::Value::u32(hd));
    m.set("llama.vocab_size", gguf::Value::u32(static_cast<uint32_t>(vocab)));
    for (const auto& [k, v] : tiny.metadata().entries())
      if (k.rfind("tokenizer.", 0) == 0) m.set(k, v);
    writers.push_back(std::move(w));
  }
  struct Spec {
    std::string name;
    std::vector<int64_t> ne;
  };
  std::vector<Spec> specs = {{"token_embd.weight", {d, vocab}}};
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    specs.push_back({p + "attn_norm.weight", {d}});
    specs.push_back({p + "attn_q.weight", {d, d}});
    specs.push_back({p + "attn_k.weight", {d, kv_heads * hd}});
    specs.push_back({p + "attn_v.weight", {d, kv_heads * hd}});
    specs.push_back({p + "attn_output.weight", {d, d}});
    specs.push_back({p + "ffn_norm.weight", {d}});
    specs.push_back({p + "ffn_gate.weight", {d, ff}});
    specs.push_back({p + "ffn_up.weight", {d, ff}});
    specs.push_back({p + "ffn_down.weight", {ff, d}});
  }
  specs.push_back({"output_norm.weight", {d}});
  specs.push_back({"output.weight", {d, vocab}});
  for (size_t i = 0; i < files.size(); ++i)
    for (const auto& s : specs)
      writers[i]->add_tensor(s.name, s.ne.size() == 1 ? QuantType::F32 : files[i].first, s.ne);

  uint64_t state = seed;
  auto next = [&state] {  // splitmix64
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  const float amp = 0.02f * 1.7320508f;
  std::vector<float> values;
  std::vector<uint8_t> bytes;
  for (const auto& s : specs) {
    const int64_t rows = s.ne.size() == 1 ? 1 : s.ne[1], cols = s.ne[0];
    values.resize(static_cast<size_t>(rows * cols));
    if (s.ne.size() == 1) {
      std::fill(values.begin(), values.end(), 1.0f);
    } else {
      for (auto& v : values) {
        const float x = (static_cast<float>(next() >> 40) * 0x1p-24f * 2.f - 1.f) * amp;
        uint32_t bits;
        std::memcpy(&bits, &x, 4);
        bits &= 0xffff0000u;  // a bf16 value (truncated: any will do)
        std::memcpy(&v, &bits, 4);
      }
    }
    for (size_t i = 0; i < files.size(); ++i) {
      const QuantType t = s.ne.size() == 1 ? QuantType::F32 : files[i].first;
      const TypeInfo& info = type_info(t);
      const size_t row_bytes = info.row_bytes(cols);
      bytes.resize(row_bytes * static_cast<size_t>(rows));
      const QuantizeFn q = Registry::instance().quantize(t);
      parallel_for(rows, 0, 16, [&](int64_t b, int64_t e) {
        q(values.data() + b * cols, bytes.data() + static_cast<size_t>(b) * row_bytes, e - b, cols, nullptr);
      });
      writers[i]->write(bytes.data(), bytes.size());
    }
  }
  for (auto& w : writers) w->commit();
}

}  // namespace lq::bench
