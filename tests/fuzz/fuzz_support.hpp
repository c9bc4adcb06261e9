// Shared pieces of the libFuzzer targets: a scratch directory per process where each input is
// written as the file a reader expects (the readers take paths), and the rule every target
// checks: any input either reads or throws lq::Error. Any other exception escapes the target
// and libFuzzer reports it as a crash, as it does a sanitizer report or a leak.
#pragma once

#include <lq/error.hpp>
#include <lq/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <unistd.h>

namespace lq::fuzz {

namespace fs = std::filesystem;

/// The process's scratch directory ($LQ_FUZZ_TMPDIR, else /dev/shm or /tmp), made on first use
/// and removed at exit.
inline const fs::path& scratch_dir() {
  static const fs::path dir = [] {
    fs::path base = "/tmp";
    std::error_code ec;
    if (const char* t = std::getenv("LQ_FUZZ_TMPDIR")) base = t;
    else if (fs::is_directory("/dev/shm", ec)) base = "/dev/shm";
    fs::path d = base / ("lq-fuzz-" + std::to_string(::getpid()));
    fs::create_directories(d);
    static const std::string keep = d.string();
    std::atexit([] {
      std::error_code e;
      fs::remove_all(keep, e);
    });
    return d;
  }();
  return dir;
}

/// A fresh subdirectory `name` of the scratch directory (emptied if it exists).
inline fs::path fresh_dir(const std::string& name) {
  const fs::path d = scratch_dir() / name;
  std::error_code ec;
  fs::remove_all(d, ec);
  fs::create_directories(d);
  return d;
}

/// Writes `size` bytes to `path` (replacing it).
inline void write_bytes(const fs::path& path, const void* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

inline void write_bytes(const fs::path& path, std::string_view s) { write_bytes(path, s.data(), s.size()); }

/// Writes the input to `name` in the scratch directory and returns its path.
inline fs::path input_file(const std::string& name, const uint8_t* data, size_t size) {
  const fs::path p = scratch_dir() / name;
  write_bytes(p, data, size);
  return p;
}

/// Runs f; an lq::Error (a clean refusal) is the expected outcome for a bad input. With
/// LQ_FUZZ_VERBOSE set, prints the refusals (to see which seeds a reader accepts).
template <class F>
void expect_clean(F&& f) {
  static const bool verbose = std::getenv("LQ_FUZZ_VERBOSE") != nullptr;
  try {
    f();
    if (verbose) std::fprintf(stderr, "accepted\n");
  } catch (const lq::Error& e) {
    if (verbose) std::fprintf(stderr, "refused: %s\n", e.what());
  }
}

/// Writes a .safetensors file of F32 tensors (name, shape), every value 0.25.
inline void write_safetensors(const fs::path& path,
                              const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors) {
  std::string header = "{";
  uint64_t off = 0;
  for (const auto& [name, shape] : tensors) {
    uint64_t n = 4;
    std::string dims;
    for (int64_t d : shape) {
      n *= static_cast<uint64_t>(d);
      dims += (dims.empty() ? "" : ",") + std::to_string(d);
    }
    if (header.size() > 1) header += ",";
    header += "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[" + dims + "],\"data_offsets\":[" +
              std::to_string(off) + "," + std::to_string(off + n) + "]}";
    off += n;
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::string file(8, '\0');
  const uint64_t hlen = header.size();
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((hlen >> (8 * i)) & 0xFF);
  file += header;
  const float quarter = 0.25f;
  for (uint64_t i = 0; i < off / 4; ++i) file.append(reinterpret_cast<const char*>(&quarter), 4);
  write_bytes(path, file);
}

/// The tiny Llama the model-directory targets read (hidden 32, one layer, vocabulary 64, two
/// shards; scripts/fuzz_seeds.py makes the same shapes): config.json unless `with_config` is
/// false, the shards, tokenizer.json and tokenizer_config.json; model.safetensors.index.json
/// when `with_index`.
inline void write_tiny_model(const fs::path& dir, bool with_config, bool with_index) {
  using Shape = std::vector<int64_t>;
  const std::string l = "model.layers.0.";
  const std::vector<std::pair<std::string, Shape>> first = {
      {"model.embed_tokens.weight", {64, 32}},
      {l + "input_layernorm.weight", {32}},
      {l + "post_attention_layernorm.weight", {32}},
      {l + "self_attn.q_proj.weight", {32, 32}},
      {l + "self_attn.k_proj.weight", {16, 32}},
      {l + "self_attn.v_proj.weight", {16, 32}}};
  const std::vector<std::pair<std::string, Shape>> second = {
      {l + "self_attn.o_proj.weight", {32, 32}}, {l + "mlp.gate_proj.weight", {64, 32}},
      {l + "mlp.up_proj.weight", {64, 32}},      {l + "mlp.down_proj.weight", {32, 64}},
      {"model.norm.weight", {32}},               {"lm_head.weight", {64, 32}}};
  write_safetensors(dir / "model-00001-of-00002.safetensors", first);
  write_safetensors(dir / "model-00002-of-00002.safetensors", second);
  if (with_index) {
    std::string index = "{\"metadata\":{\"total_size\":0},\"weight_map\":{";
    bool comma = false;
    for (const auto* part : {&first, &second})
      for (const auto& [name, shape] : *part) {
        index += std::string(comma ? "," : "") + "\"" + name + "\":\"model-0000" + (part == &first ? "1" : "2") +
                 "-of-00002.safetensors\"";
        comma = true;
      }
    write_bytes(dir / "model.safetensors.index.json", index + "}}");
  }
  if (with_config)
    write_bytes(dir / "config.json",
                R"({"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":32,)"
                R"("intermediate_size":64,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,)"
                R"("vocab_size":64,"rms_norm_eps":1e-05,"max_position_embeddings":128,"rope_theta":10000.0,)"
                R"("tie_word_embeddings":false,"torch_dtype":"float32","bos_token_id":1,"eos_token_id":2})");
  std::string vocab = R"("<unk>":0,"<s>":1,"</s>":2)";
  for (int i = 0; i < 26; ++i) vocab += ",\"" + std::string(1, static_cast<char>('a' + i)) + "\":" + std::to_string(3 + i);
  write_bytes(dir / "tokenizer.json",
              R"({"version":"1.0","added_tokens":[{"id":0,"content":"<unk>","special":true},)"
              R"({"id":1,"content":"<s>","special":true},{"id":2,"content":"</s>","special":true}],)"
              R"("normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true},)"
              R"("decoder":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":{)" +
                  vocab + R"(},"merges":["a b","c d"]}})");
  write_bytes(dir / "tokenizer_config.json", R"({"add_bos_token":true,"bos_token":"<s>","eos_token":"</s>"})");
}

/// A directory `name` of the scratch directory holding the tiny model's config (float16, with
/// `quant_config` as its quantization_config) and tokenizer but no weights: a quantized
/// checkpoint target writes its input there as model.safetensors.
inline fs::path quantized_model_dir(const std::string& name, const std::string& quant_config) {
  const fs::path d = fresh_dir(name);
  write_tiny_model(d, /*with_config=*/false, /*with_index=*/false);
  for (const char* shard : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
    fs::remove(d / shard);
  write_bytes(d / "config.json",
              std::string(R"({"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":32,)"
                          R"("intermediate_size":64,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,)"
                          R"("vocab_size":64,"rms_norm_eps":1e-05,"max_position_embeddings":128,"rope_theta":10000.0,)"
                          R"("tie_word_embeddings":false,"torch_dtype":"float16","bos_token_id":1,"eos_token_id":2,)"
                          R"("quantization_config":)") +
                  quant_config + "}");
  return d;
}

/// A compressed-tensors quantization_config of one group targeting Linear (lm_head ignored), in
/// the layout llm-compressor and `lq quantize ... smoothquant` write: `weights` and
/// `input_activations` are the groups' QuantizationArgs as JSON ("null" for none).
inline std::string ct_quant_config(const std::string& format, const std::string& weights,
                                   const std::string& input_activations) {
  return R"({"config_groups":{"group_0":{"targets":["Linear"],"weights":)" + weights +
         R"(,"input_activations":)" + input_activations + R"(,"output_activations":null}},"format":")" + format +
         R"(","ignore":["lm_head"],"kv_cache_scheme":null,"quant_method":"compressed-tensors",)"
         R"("quantization_status":"compressed","version":"0.10.2"})";
}

/// compressed-tensors QuantizationArgs: `type` int or float, 8 bits, symmetric, with `strategy`
/// (tensor, channel, token, block), `dynamic`, and block_structure `block` ("null" unless block).
inline std::string ct_args(const std::string& type, const std::string& strategy, bool dynamic,
                           const std::string& block = "null") {
  return R"({"num_bits":8,"type":")" + type + R"(","symmetric":true,"group_size":null,"strategy":")" + strategy +
         R"(","block_structure":)" + block + R"(,"dynamic":)" + (dynamic ? "true" : "false") +
         R"(,"actorder":null,"observer":)" + (dynamic ? "null" : "\"minmax\"") + R"(,"observer_kwargs":{}})";
}

/// llm-compressor's (0.19) QuantizationArgs, keys sorted as it saves them: 8 bits, symmetric,
/// `type` int or float, `strategy`, `dynamic`, `observer` (JSON: null, "minmax", ...), and
/// block_structure `block`.
inline std::string llmc_args(const std::string& type, const std::string& strategy, bool dynamic,
                             const std::string& observer, const std::string& block = "null") {
  return R"({"actorder":null,"block_structure":)" + block + R"(,"dynamic":)" + (dynamic ? "true" : "false") +
         R"(,"group_size":null,"num_bits":8,"observer":)" + observer +
         R"(,"observer_kwargs":{},"scale_dtype":null,"strategy":")" + strategy + R"(","symmetric":true,"type":")" + type +
         R"(","zp_dtype":null})";
}

/// llm-compressor's (0.19) quantization_config: one group targeting Linear in `format`, lm_head
/// ignored; `weights` and `input_activations` as llmc_args gives them ("null" for none).
inline std::string llmc_config(const std::string& format, const std::string& weights,
                               const std::string& input_activations) {
  return R"({"config_groups":{"group_0":{"format":")" + format + R"(","input_activations":)" + input_activations +
         R"(,"output_activations":null,"targets":["Linear"],"weights":)" + weights + R"(}},"format":")" + format +
         R"(","global_compression_ratio":null,"ignore":["lm_head"],"kv_cache_scheme":null,)"
         R"("quant_method":"compressed-tensors","quantization_status":"compressed","sparsity_config":{},)"
         R"("transform_config":{},"version":"0.19.0"})";
}

/// A tokenizer file (`file` in a fresh directory holding the input) read both ways liblq reads
/// it: by `read` from the file, and by the converter's path from its directory; each tokenizer
/// then encodes and decodes a fixed text.
template <class Read>
void tokenizer_file(const std::string& name, const char* file, const uint8_t* data, size_t size, Read read) {
  const auto exercise = [](const lq::Tokenizer& tok) {
    const auto ids = tok.encode("Hello world, 123  <s> </s> \xC3\xA9\xE2\x96\x81 \t\n", true, true);
    (void)tok.decode(ids, true);
    (void)tok.decode(ids, false);
  };
  const auto dir = fresh_dir(name);
  write_bytes(dir / file, data, size);
  expect_clean([&] { exercise(read(dir / file)); });
  expect_clean([&] { exercise(lq::Tokenizer::from_hf_dir(dir)); });
}

}  // namespace lq::fuzz
