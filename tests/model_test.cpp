// Reading Hugging Face checkpoints: names, shapes, q/k permutation and values against llama.cpp's
// own conversion of the same model, plus strict validation of malformed inputs.
#include <lq/decode.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/gguf.hpp>
#include <lq/model.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <set>

using namespace lq;
namespace fs = std::filesystem;

TEST_CASE("model: HF tiny-llama matches llama.cpp's BF16 conversion value for value", "[model]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto golden = test::shared_file("golden/tiny-llama-BF16.gguf");
  if (!dir || !golden) return;
  auto src = ModelSource::open(*dir);
  gguf::Reader ref(*golden);
  CHECK_FALSE(src->is_gguf());
  CHECK(src->config().architecture == "llama");
  CHECK(src->config().n_layer == 6);
  CHECK(src->config().head_dim == 64);
  REQUIRE(src->tensors().size() == ref.tensors().size());
  for (const auto& rt : ref.tensors()) {
    INFO(rt.name);
    const ModelTensor* t = src->find(rt.name);
    REQUIRE(t != nullptr);
    CHECK(t->ne == rt.ne);
    std::vector<float> a(static_cast<size_t>(t->n_elements())), b(a.size());
    src->read_rows_f32(*t, 0, t->n_rows(), a.data());
    read_rows_f32(ref, rt, 0, rt.n_rows(), b.data());
    CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
    // reading in row ranges gives the same values
    if (t->n_rows() > 7) {
      std::vector<float> c(static_cast<size_t>(5 * t->row_length()));
      src->read_rows_f32(*t, 3, 5, c.data());
      CHECK(std::memcmp(c.data(), a.data() + 3 * t->row_length(), c.size() * 4) == 0);
    }
  }
  // architecture metadata equals llama.cpp's conversion (tokenizer keys are checked elsewhere)
  const auto meta = src->gguf_metadata();
  for (const auto& [k, v] : ref.metadata().entries()) {
    if (k.rfind("tokenizer.", 0) == 0 || k == "general.file_type" || k == "general.quantization_version") continue;
    INFO(k);
    const gguf::Value* ours = meta.find(k);
    REQUIRE(ours != nullptr);
    CHECK(*ours == v);
  }
}

namespace {

// Copies the tiny model into a temp dir so a test can break one file.
fs::path copy_tiny(const test::TempDir& tmp) {
  auto dir = test::shared_file("models/tiny-llama");
  const fs::path out = tmp / "tiny-llama";
  fs::copy(*dir, out, fs::copy_options::recursive);
  for (const auto& e : fs::recursive_directory_iterator(out))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return out;
}

void expect_error(const fs::path& p, Errc code, const std::string& needle) {
  try {
    auto src = ModelSource::open(p);
    FAIL("accepted: " << needle);
  } catch (const Error& e) {
    INFO(e.what());
    CHECK(e.code() == code);
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// Overwrites the first `from` in file p with `to`, of the same length, so that a safetensors
// header keeps its recorded size.
void overwrite_first(const fs::path& p, const std::string& from, const std::string& to) {
  std::string s = slurp(p);
  const size_t pos = s.find(from);
  REQUIRE(pos != std::string::npos);
  s.replace(pos, from.size(), to);
  spit(p, s);
}

}  // namespace

TEST_CASE("model: malformed checkpoints give one clear error (exit 6 / 3)", "[model][bad-input]") {
  if (!test::shared_file("models/tiny-llama")) return;
  test::TempDir tmp;
  const std::string shard1 = "model-00001-of-00002.safetensors";

  SECTION("missing path") { expect_error(tmp / "nope", Errc::not_found, "not found"); }
  SECTION("unknown architecture") {
    auto d = copy_tiny(tmp);
    auto j = nlohmann::json::parse(slurp(d / "config.json"));
    j["model_type"] = "gpt_bigcode";
    spit(d / "config.json", j.dump());
    expect_error(d, Errc::invalid_model, "gpt_bigcode");
  }
  SECTION("malformed config") {
    auto d = copy_tiny(tmp);
    spit(d / "config.json", "{ not json");
    expect_error(d, Errc::invalid_model, "config.json");
  }
  SECTION("header length past the end of file") {
    auto d = copy_tiny(tmp);
    std::string s = slurp(d / shard1);
    uint64_t big = s.size() + 100;
    std::memcpy(s.data(), &big, 8);
    spit(d / shard1, s);
    expect_error(d, Errc::invalid_model, "runs past the end");
  }
  SECTION("truncated shard") {
    auto d = copy_tiny(tmp);
    std::string s = slurp(d / shard1);
    spit(d / shard1, s.substr(0, s.size() - 1000));
    expect_error(d, Errc::invalid_model, "past the end");
  }
  SECTION("malformed header JSON") {
    auto d = copy_tiny(tmp);
    std::string s = slurp(d / shard1);
    s[9] = '#';
    spit(d / shard1, s);
    expect_error(d, Errc::invalid_model, "malformed safetensors header");
  }
  SECTION("dtype / shape / byte count mismatch") {
    auto d = copy_tiny(tmp);
    overwrite_first(d / shard1, "\"dtype\":\"BF16\"", "\"dtype\":\"F32\" ");
    expect_error(d, Errc::invalid_model, "need");
  }
  SECTION("overlapping offsets") {
    auto d = copy_tiny(tmp);
    overwrite_first(d / shard1, "\"data_offsets\":[1048576,1049088]", "\"data_offsets\":[1048064,1048576]");
    expect_error(d, Errc::invalid_model, "overlap");
  }
  SECTION("shard named in the index is missing") {
    auto d = copy_tiny(tmp);
    fs::remove(d / "model-00002-of-00002.safetensors");
    expect_error(d, Errc::invalid_model, "model-00002-of-00002.safetensors");
  }
  SECTION("a tensor the architecture needs is absent") {
    auto d = copy_tiny(tmp);
    auto j = nlohmann::json::parse(slurp(d / "config.json"));
    j["num_hidden_layers"] = 7;
    spit(d / "config.json", j.dump());
    expect_error(d, Errc::invalid_model, "blk.6.attn_norm.weight");
  }
}

TEST_CASE("model: a model in the Hugging Face cache is named after its Hub ID, not the snapshot", "[model]") {
  auto dir = test::shared_file("models/tiny-llama");
  if (!dir) return;
  // A cache as huggingface_hub lays it out: models--ORG--NAME/{refs/main, snapshots/REVISION/}.
  test::TempDir home;
  const fs::path repo = home / "hub" / "models--acme--tiny-story-v2";
  const std::string rev = "0123456789abcdef0123456789abcdef01234567";
  const fs::path snap = repo / "snapshots" / rev;
  fs::create_directories(snap);
  fs::create_directories(repo / "refs");
  std::ofstream(repo / "refs" / "main") << rev;
  for (const auto& e : fs::directory_iterator(*dir)) fs::create_symlink(fs::absolute(e.path()), snap / e.path().filename());

  // Opened by its path: the Hub ID's name, titled as llama.cpp's converter does.
  CHECK(ModelSource::open(snap)->config().name == "Tiny Story v2");
  CHECK(ModelSource::open(snap.string() + "/")->config().name == "Tiny Story v2");
  // A directory that is not a snapshot keeps its own name.
  CHECK(ModelSource::open(*dir)->config().name == "Tiny Llama");

  // Opened by Hub ID through HF_HOME and HF_HUB_CACHE: the name, in lq info and in the GGUF written.
  const std::string lq = test::cli_path();
  auto r = test::run("env -u HF_HUB_CACHE HF_HOME=" + home.path().string() + " " + lq + " info acme/tiny-story-v2");
  REQUIRE(r.status == 0);
  CHECK(r.out.find("name \"Tiny Story v2\"") != std::string::npos);
  const fs::path out = home / "q.gguf";
  r = test::run("HF_HUB_CACHE=" + (home / "hub").string() + " " + lq + " quantize acme/tiny-story-v2 gguf -q Q8_0 -o " +
                out.string());
  REQUIRE(r.status == 0);
  gguf::Reader q(out);
  CHECK(q.metadata().get_string("general.name") == std::optional<std::string>("Tiny Story v2"));
}

TEST_CASE("model: transformers 5's rope_parameters read as rope_theta, rope_scaling and the sliding base",
          "[model]") {
  if (!test::shared_file("models/tiny-llama")) return;
  test::TempDir tmp;
  // The same RoPE in the two spellings: the same configuration, GGUF keys and logits.
  auto legacy = copy_tiny(tmp);
  auto j = nlohmann::json::parse(slurp(legacy / "config.json"));
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 128}};
  spit(legacy / "config.json", j.dump());
  test::TempDir tmp5;
  auto v5 = copy_tiny(tmp5);
  j.erase("rope_theta");
  nlohmann::json rp = j["rope_scaling"];
  rp["rope_theta"] = 500000.0;
  j.erase("rope_scaling");
  j["rope_parameters"] = rp;
  spit(v5 / "config.json", j.dump());

  const auto a = ModelSource::open(legacy), b = ModelSource::open(v5);
  CHECK(b->config().rope_theta == 500000.0f);
  REQUIRE(b->config().rope_scaling);
  CHECK(b->config().rope_scaling->type == "llama3");
  CHECK(b->config().rope_scaling->factor == 8.0f);
  CHECK(b->config().rope_scaling->original_context == 128);
  CHECK(a->gguf_metadata().get_float("llama.rope.freq_base") == b->gguf_metadata().get_float("llama.rope.freq_base"));
  CHECK(b->gguf_metadata().get_float("llama.rope.freq_base") == Approx(500000.0));
  const std::vector<int32_t> toks = {1, 450, 1996, 1354, 1701, 432, 1, 7, 99, 1000, 300, 2, 5, 6, 7, 8};
  auto la = Model::load(*a), lb = Model::load(*b);
  Session sa(*la), sb(*lb);
  sa.eval(toks, 0);
  sb.eval(toks, 0);
  for (int64_t i : {int64_t{0}, int64_t{15}}) {
    const auto x = sa.logits(i), y = sb.logits(i);
    CHECK(std::vector<float>(x.begin(), x.end()) == std::vector<float>(y.begin(), y.end()));
  }

}
