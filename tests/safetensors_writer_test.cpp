// The streaming safetensors writers: files and sharded directories read back through our reader
// (names, dtypes, shapes, bytes, metadata, alignment), the index, and refusals (wrong order,
// wrong size, missing tensors) that leave nothing behind.
#include <lq/error.hpp>
#include <lq/model.hpp>

#include "formats/safetensors.hpp"
#include "formats/safetensors_writer.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <random>

using namespace lq;
namespace fs = std::filesystem;

namespace {

struct StWriterFixture {
  StTensorSpec spec;
  std::vector<uint8_t> bytes;
};

std::vector<StWriterFixture> st_writer_fixtures() {
  std::vector<StWriterFixture> v;
  std::mt19937 rng(7);
  auto add = [&](std::string name, StDtype dt, std::vector<int64_t> shape) {
    StWriterFixture f{{std::move(name), dt, std::move(shape)}, {}};
    f.bytes.resize(f.spec.nbytes());
    for (auto& b : f.bytes) b = static_cast<uint8_t>(rng());
    v.push_back(std::move(f));
  };
  add("model.layers.0.self_attn.q_proj.weight", StDtype::I8, {24, 40});
  add("model.layers.0.self_attn.q_proj.weight_scale", StDtype::BF16, {24, 1});
  add("model.layers.0.input_layernorm.weight", StDtype::F16, {40});
  add("model.norm.weight", StDtype::F32, {40});
  add("scalar", StDtype::F32, {});
  add("input_scale", StDtype::BF16, {1});
  add("empty", StDtype::F32, {0, 5});
  add("odd", StDtype::I8, {3, 3});  // 9 bytes: the next tensor starts unaligned, as the format allows
  add("lm_head.weight", StDtype::BF16, {11, 40});
  return v;
}

std::vector<StTensorSpec> st_writer_specs(const std::vector<StWriterFixture>& f) {
  std::vector<StTensorSpec> s;
  for (const auto& x : f) s.push_back(x.spec);
  return s;
}

void check_st_tensor(const SafetensorsFile& file, const StWriterFixture& f) {
  INFO(f.spec.name);
  const StTensor* t = file.find(f.spec.name);
  REQUIRE(t != nullptr);
  CHECK(t->dtype == f.spec.dtype);
  CHECK(t->shape == f.spec.shape);
  REQUIRE(t->nbytes == f.bytes.size());
  std::vector<uint8_t> got(f.bytes.size());
  if (!got.empty()) file.read(t->begin, got.size(), got.data());
  CHECK(got == f.bytes);
}

size_t dir_entries(const fs::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

}  // namespace

TEST_CASE("safetensors writer: one file round-trips through the reader", "[safetensors]") {
  test::TempDir tmp;
  const auto fx = st_writer_fixtures();
  const fs::path path = tmp / "one.safetensors";
  {
    SafetensorsWriter w(path, st_writer_specs(fx), {{"format", "pt"}, {"note", "x"}});
    for (const auto& f : fx) w.write(f.spec.name, f.bytes.data(), f.bytes.size());
    CHECK_FALSE(fs::exists(path));  // only the temporary exists until commit
    w.commit();
    CHECK(w.file_size() == fs::file_size(path));
  }
  SafetensorsFile file(path);
  REQUIRE(file.tensors().size() == fx.size());
  for (const auto& f : fx) check_st_tensor(file, f);
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.metadata().at("note") == "x");
  // Header length is a multiple of 8 and the data section is exactly the tensors' bytes.
  uint64_t hlen = 0;
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(&hlen), 8);
  CHECK(hlen % 8 == 0);
  uint64_t total = 0;
  for (const auto& f : fx) total += f.bytes.size();
  CHECK(fs::file_size(path) == 8 + hlen + total);
  CHECK(dir_entries(tmp.path()) == 1);
}

TEST_CASE("safetensors writer: tensors in parts, as streamed rows", "[safetensors]") {
  test::TempDir tmp;
  const auto fx = st_writer_fixtures();
  const fs::path path = tmp / "parts.safetensors";
  SafetensorsWriter w(path, st_writer_specs(fx));
  for (const auto& f : fx) {
    w.begin(f.spec.name);
    for (size_t o = 0; o < f.bytes.size(); o += 7) w.append(f.bytes.data() + o, std::min<size_t>(7, f.bytes.size() - o));
  }
  w.commit();
  SafetensorsFile file(path);
  for (const auto& f : fx) check_st_tensor(file, f);
}

TEST_CASE("safetensors writer: shards and the index", "[safetensors]") {
  test::TempDir tmp;
  const auto fx = st_writer_fixtures();
  // 1000 bytes a shard: q_proj (960) alone, then the small ones together, lm_head (880) alone.
  ShardedSafetensorsWriter w(tmp.path(), st_writer_specs(fx), 1000);
  const auto names = w.file_names();
  REQUIRE(names.size() == 4);
  CHECK(names[0] == "model-00001-of-00003.safetensors");
  CHECK(names[2] == "model-00003-of-00003.safetensors");
  CHECK(names[3] == "model.safetensors.index.json");
  for (const auto& f : fx) w.write(f.spec.name, f.bytes.data(), f.bytes.size());
  CHECK_FALSE(fs::exists(tmp / "model.safetensors.index.json"));
  w.commit();
  CHECK(dir_entries(tmp.path()) == 4);
  const auto idx = nlohmann::json::parse(read_file(tmp / "model.safetensors.index.json"));
  uint64_t total = 0, files = 0;
  for (const auto& f : fx) total += f.bytes.size();
  CHECK(idx["metadata"]["total_size"].get<uint64_t>() == total);
  CHECK(w.total_data_bytes() == total);
  REQUIRE(idx["weight_map"].size() == fx.size());
  for (const auto& f : fx) {
    const std::string shard = idx["weight_map"][f.spec.name].get<std::string>();
    SafetensorsFile file(tmp / shard);
    check_st_tensor(file, f);
  }
  CHECK(idx["weight_map"]["model.layers.0.self_attn.q_proj.weight"] == "model-00001-of-00003.safetensors");
  CHECK(idx["weight_map"]["lm_head.weight"] == "model-00003-of-00003.safetensors");
  for (int s = 0; s < 3; ++s) files += fs::file_size(tmp / names[static_cast<size_t>(s)]);
  files += fs::file_size(tmp / "model.safetensors.index.json");
  CHECK(w.bytes_written() == files);
}

TEST_CASE("safetensors writer: one shard is model.safetensors without an index", "[safetensors]") {
  test::TempDir tmp;
  const auto fx = st_writer_fixtures();
  ShardedSafetensorsWriter w(tmp.path(), st_writer_specs(fx));
  for (const auto& f : fx) w.write(f.spec.name, f.bytes.data(), f.bytes.size());
  w.commit();
  CHECK(w.file_names() == std::vector<std::string>{"model.safetensors"});
  CHECK(dir_entries(tmp.path()) == 1);
  SafetensorsFile file(tmp / "model.safetensors");
  for (const auto& f : fx) check_st_tensor(file, f);
}

TEST_CASE("safetensors writer: a written directory opens as a model source", "[safetensors]") {
  // A two-layer toy checkpoint in HF naming, written in shards, read by ModelSource (with the
  // tiny model's tokenizer, whose vocabulary size it takes).
  auto tokenizer = test::shared_file("models/tiny-llama/tokenizer.model");
  if (!tokenizer) return;
  test::TempDir tmp;
  fs::copy_file(*tokenizer, tmp / "tokenizer.model");
  const int64_t d = 32, ff = 48, vocab = 2048;
  std::vector<StWriterFixture> fx;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 0.1f);
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    StWriterFixture f{{std::move(name), StDtype::F32, std::move(shape)}, {}};
    std::vector<float> v(f.spec.nbytes() / 4);
    for (auto& x : v) x = nd(rng);
    f.bytes.resize(v.size() * 4);
    std::memcpy(f.bytes.data(), v.data(), f.bytes.size());
    fx.push_back(std::move(f));
  };
  add("model.embed_tokens.weight", {vocab, d});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {d});
    add(p + "self_attn.q_proj.weight", {d, d});
    add(p + "self_attn.k_proj.weight", {d, d});
    add(p + "self_attn.v_proj.weight", {d, d});
    add(p + "self_attn.o_proj.weight", {d, d});
    add(p + "post_attention_layernorm.weight", {d});
    add(p + "mlp.gate_proj.weight", {ff, d});
    add(p + "mlp.up_proj.weight", {ff, d});
    add(p + "mlp.down_proj.weight", {d, ff});
  }
  add("model.norm.weight", {d});
  add("lm_head.weight", {vocab, d});
  ShardedSafetensorsWriter w(tmp.path(), st_writer_specs(fx), 200000);
  for (const auto& f : fx) w.write(f.spec.name, f.bytes.data(), f.bytes.size());
  w.commit();
  REQUIRE(w.file_names().size() > 2);
  nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", d},
                        {"intermediate_size", ff}, {"num_attention_heads", 4}, {"num_key_value_heads", 4},
                        {"num_hidden_layers", 2}, {"vocab_size", vocab}, {"rms_norm_eps", 1e-5},
                        {"max_position_embeddings", 128}, {"torch_dtype", "float32"}};
  std::ofstream(tmp / "config.json") << cfg.dump();
  auto src = ModelSource::open(tmp.path());
  const ModelTensor* t = src->find("blk.1.ffn_down.weight");
  REQUIRE(t != nullptr);
  CHECK(t->ne == std::vector<int64_t>{ff, d});
  std::vector<float> got(static_cast<size_t>(t->n_elements()));
  src->read_rows_f32(*t, 0, t->n_rows(), got.data());
  const auto& want = fx[fx.size() - 3].bytes;  // blk.1 down_proj, before model.norm and lm_head
  CHECK(std::memcmp(got.data(), want.data(), want.size()) == 0);
}

TEST_CASE("safetensors writer: misuse is refused and leaves no file", "[safetensors]") {
  test::TempDir tmp;
  const auto fx = st_writer_fixtures();
  const fs::path path = tmp / "bad.safetensors";
  {
    SafetensorsWriter w(path, st_writer_specs(fx));
    CHECK_THROWS_AS(w.write(fx[1].spec.name, fx[1].bytes.data(), fx[1].bytes.size()), Error);  // out of order
    CHECK_THROWS_AS(w.write(fx[0].spec.name, fx[0].bytes.data(), fx[0].bytes.size() - 1), Error);  // short
  }
  {
    SafetensorsWriter w(path, st_writer_specs(fx));
    w.write(fx[0].spec.name, fx[0].bytes.data(), fx[0].bytes.size());
    CHECK_THROWS_AS(w.commit(), Error);  // tensors missing
  }
  {
    auto specs = st_writer_specs(fx);
    specs.push_back(specs[0]);
    CHECK_THROWS_AS(SafetensorsWriter(path, specs), Error);  // declared twice
  }
  {
    ShardedSafetensorsWriter w(tmp.path(), st_writer_specs(fx), 1000);
    w.write(fx[0].spec.name, fx[0].bytes.data(), fx[0].bytes.size());  // shard 1 complete
    CHECK_THROWS_AS(w.commit(), Error);
  }
  // Only the completed first shard of the abandoned sharded write remains; no temporaries.
  for (const auto& e : fs::directory_iterator(tmp.path()))
    CHECK(e.path().filename() == "model-00001-of-00003.safetensors");
  CHECK_THROWS_AS(SafetensorsWriter(tmp / "missing-dir" / "x.safetensors", st_writer_specs(fx)), Error);
}
