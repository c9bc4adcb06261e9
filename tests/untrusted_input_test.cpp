// Untrusted input: files that declare absurd sizes (2^60 elements, 10^9 tensors, a 4 GB string,
// a header length past the file, a billion layers) are refused with a clean error before
// anything is sized from them; `lq` reading them under `ulimit -v` at twice what it needs for a
// valid file of the same size exits with the contract's code, not out of memory. (The inputs the
// fuzz targets once crashed on are replayed by ctest's fuzz_replay_* tests and checked below.)
#include "support/support.hpp"

#include "fuzz/fuzz_support.hpp"

#include <lq/error.hpp>
#include <lq/gguf.hpp>
#include <lq/imatrix.hpp>
#include <lq/model.hpp>
#include <lq/super_weights.hpp>
#include <lq/tokenizer.hpp>

#include "formats/safetensors.hpp"
#include "model/config.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using lq::test::TempDir;

namespace {

// ---- hand-made hostile files ------------------------------------------------------------------

struct Bytes {
  std::string b;
  template <typename T>
  Bytes& put(T v) {
    b.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b += s;
    return *this;
  }
  Bytes& raw(const std::string& s) {
    b += s;
    return *this;
  }
};

// A GGUF v3 header: counts as given; the caller appends keys and tensor infos.
Bytes gguf_head(int64_t n_tensors, int64_t n_kv) {
  Bytes g;
  g.put<uint32_t>(0x46554747).put<uint32_t>(3).put<int64_t>(n_tensors).put<int64_t>(n_kv);
  return g;
}

// One tensor info: name, dims, type id, offset.
Bytes& tensor_info(Bytes& g, const std::string& name, const std::vector<int64_t>& ne, int32_t type, uint64_t offset) {
  g.str(name).put<uint32_t>(static_cast<uint32_t>(ne.size()));
  for (int64_t d : ne) g.put<int64_t>(d);
  return g.put<int32_t>(type).put<uint64_t>(offset);
}

fs::path write(const fs::path& p, const std::string& bytes) {
  lq::fuzz::write_bytes(p, bytes);
  return p;
}

std::string with_padding(Bytes g, size_t data_bytes) {
  while (g.b.size() % 32) g.b += '\0';
  g.b.append(data_bytes, '\0');
  return g.b;
}

std::string safetensors(const std::string& header, size_t data_bytes) {
  Bytes s;
  s.put<uint64_t>(header.size()).raw(header);
  s.b.append(data_bytes, '\0');
  return s.b;
}

// The hostile files, each with the exit code `lq` must give and a text its error line holds.
struct Hostile {
  std::string what;
  std::string file;      // relative to the test directory
  std::string command;   // `lq` arguments; {} stands for the file's path
  int code;
  std::string needle;
};

// Writes every hostile input into `dir` (a tiny valid model beside them in dir/model, and model
// directories with a hostile config.json / tokenizer.json / index) and lists them.
std::vector<Hostile> write_hostile(const fs::path& dir) {
  std::vector<Hostile> h;
  auto gguf = [&](const std::string& what, const std::string& name, const std::string& bytes, const std::string& needle) {
    write(dir / name, bytes);
    h.push_back({what, name, "info {}", 6, needle});
  };
  {  // 10^9 tensors declared in a file of a few bytes
    Bytes g = gguf_head(1000000000, 0);
    gguf("a billion tensors", "billion-tensors.gguf", g.b + std::string(64, '\0'), "declares 1000000000 tensors");
  }
  {  // a metadata key of 4 GB
    Bytes g = gguf_head(0, 1);
    g.put<uint64_t>(uint64_t{4} << 30).raw("general.name");
    gguf("a 4 GB key", "huge-key.gguf", g.b, "truncated GGUF header");
  }
  {  // a string value of 4 GB
    Bytes g = gguf_head(0, 1);
    g.str("general.name").put<int32_t>(8).put<uint64_t>(uint64_t{4} << 30).raw("abc");
    gguf("a 4 GB string", "huge-string.gguf", g.b, "truncated GGUF header");
  }
  {  // an array of 2^60 strings
    Bytes g = gguf_head(0, 1);
    g.str("tokenizer.ggml.tokens").put<int32_t>(9).put<int32_t>(8).put<uint64_t>(uint64_t{1} << 60);
    g.str("a").str("b");
    gguf("2^60 strings", "huge-array.gguf", g.b, "truncated GGUF header");
  }
  {  // a tensor of 2^60 F32 elements
    Bytes g = gguf_head(1, 1);
    g.str("general.architecture").put<int32_t>(8).str("llama");
    tensor_info(g, "token_embd.weight", {int64_t{1} << 30, int64_t{1} << 30}, 0, 0);
    gguf("a tensor of 2^60 elements", "huge-tensor.gguf", with_padding(g, 64), "larger than the file");
  }
  {  // dimensions whose product overflows int64 before a 0 makes the tensor empty
    Bytes g = gguf_head(1, 1);
    g.str("general.architecture").put<int32_t>(8).str("llama");
    tensor_info(g, "token_embd.weight", {int64_t{1} << 40, int64_t{1} << 40, 0}, 0, 0);
    gguf("dimensions overflowing int64", "overflow-shape.gguf", with_padding(g, 0), "more than 2^63 elements");
  }
  {  // a GGUF model declaring 2^40 blocks
    Bytes g = gguf_head(0, 3);
    g.str("general.architecture").put<int32_t>(8).str("llama");
    g.str("llama.embedding_length").put<int32_t>(4).put<uint32_t>(32);
    g.str("llama.block_count").put<int32_t>(10).put<uint64_t>(uint64_t{1} << 40);
    gguf("2^40 blocks", "huge-block-count.gguf", with_padding(g, 0), "implausible hyper-parameters");
  }
  {  // tensor data past the end of the file
    Bytes g = gguf_head(1, 0);
    tensor_info(g, "output_norm.weight", {64}, 0, 0);
    gguf("data past the end", "short-data.gguf", with_padding(g, 200), "runs past the end of the file");
  }

  // safetensors beside the tiny model's config.json
  auto model_dir = [&](const std::string& name) {
    const fs::path d = dir / name;
    fs::create_directories(d);
    lq::fuzz::write_tiny_model(d, true, false);
    fs::remove(d / "model-00001-of-00002.safetensors");
    fs::remove(d / "model-00002-of-00002.safetensors");
    return d;
  };
  {
    const fs::path d = model_dir("st-header-past-end");
    Bytes s;
    s.put<uint64_t>(uint64_t{1} << 40).raw("{}");
    write(d / "model.safetensors", s.b);
    h.push_back({"a safetensors header length past the file", "st-header-past-end", "info {}", 6,
                 "runs past the end of the file"});
  }
  {
    const fs::path d = model_dir("st-wrapping-shape");
    // 2^62 * 2^62 * 16 = 2^128: wraps to 0 in 128-bit arithmetic, so 0 bytes would "match".
    write(d / "model.safetensors",
          safetensors(R"({"model.norm.weight":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904,16],)"
                      R"("data_offsets":[0,0]}})", 0));
    h.push_back({"a safetensors shape of 2^128 elements", "st-wrapping-shape", "info {}", 6, "more than 2^63 elements"});
  }
  {
    const fs::path d = model_dir("st-huge-tensor");
    write(d / "model.safetensors",
          safetensors(R"({"model.norm.weight":{"dtype":"F32","shape":[1152921504606846976],"data_offsets":[0,4611686018427387904]}})",
                      16));
    h.push_back({"a safetensors tensor of 2^60 elements", "st-huge-tensor", "info {}", 6, "runs past the end of the file"});
  }
  // config.json declaring absurd sizes, beside the tiny model's shards
  auto config_dir = [&](const std::string& name, const std::string& key, const std::string& value) {
    const fs::path d = dir / name;
    fs::create_directories(d);
    lq::fuzz::write_tiny_model(d, true, true);
    std::ifstream in(d / "config.json");
    std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t k = cfg.find("\"" + key + "\":");
    REQUIRE(k != std::string::npos);
    const size_t v = k + key.size() + 3, e = cfg.find_first_of(",}", v);
    cfg = cfg.substr(0, v) + value + cfg.substr(e);
    write(d / "config.json", cfg);
  };
  config_dir("cfg-layers", "num_hidden_layers", "1000000000000");
  h.push_back({"10^12 layers", "cfg-layers", "info {}", 6, "implausible hyper-parameters"});
  config_dir("cfg-rope", "rope_theta",
             R"(10000.0,"head_dim":1099511627776,"rope_scaling":{"rope_type":"llama3","factor":8.0})");
  h.push_back({"a head dimension of 2^40 with llama3 rope scaling", "cfg-rope", "info {}", 6,
               "implausible hyper-parameters"});
  config_dir("cfg-vocab", "vocab_size", "4611686018427387904");
  h.push_back({"a vocabulary of 2^62", "cfg-vocab", "info {}", 6, "implausible hyper-parameters"});
  {  // a shard index naming a file outside the model directory
    const fs::path d = dir / "index-escape";
    fs::create_directories(d);
    lq::fuzz::write_tiny_model(d, true, false);
    write(d / "model.safetensors.index.json", R"({"weight_map":{"model.norm.weight":"../../../../../../dev/zero"}})");
    h.push_back({"a shard outside the directory", "index-escape", "info {}", 6, "not a file name in the model directory"});
  }
  {  // a tokenizer.json with a token id of 2^31 - 1
    const fs::path d = dir / "tok-huge-id";
    fs::create_directories(d);
    lq::fuzz::write_tiny_model(d, true, true);
    write(d / "tokenizer.json",
          R"({"model":{"type":"BPE","vocab":{"a":0,"b":2147483647},"merges":[]},"pre_tokenizer":{"type":"ByteLevel"}})");
    h.push_back({"a token id of 2^31 - 1", "tok-huge-id", "tokenize {} -p hello", 6, "far beyond"});
  }
  {  // a legacy imatrix declaring 2^31 - 1 values for an entry
    Bytes m;
    m.put<int32_t>(1).put<int32_t>(1).raw("a").put<int32_t>(1).put<int32_t>(INT32_MAX).put<float>(1.0f);
    write(dir / "huge-values.dat", m.b);
    h.push_back({"an imatrix entry of 2^31 values", "huge-values.dat",
                 "quantize " + (dir / "model").string() + " gguf -q Q4_K_M --imatrix {} -o " + (dir / "out.gguf").string(),
                 10, "truncated or malformed values"});
  }
  {  // a GGUF imatrix whose sums tensor is 3-D
    Bytes g = gguf_head(2, 2);
    g.str("imatrix.chunk_count").put<int32_t>(4).put<uint32_t>(1);
    g.str("imatrix.chunk_size").put<int32_t>(4).put<uint32_t>(512);
    tensor_info(g, "a.in_sum2", {4, 1, 4}, 0, 0);
    tensor_info(g, "a.counts", {1}, 0, 64);
    write(dir / "three-d.imatrix.gguf", with_padding(g, 96));
    h.push_back({"a 3-D imatrix entry", "three-d.imatrix.gguf",
                 "quantize " + (dir / "model").string() + " gguf -q Q4_K_M --imatrix {} -o " + (dir / "out.gguf").string(),
                 10, "expected [columns] or [columns, matrices]"});
  }
  fs::create_directories(dir / "model");
  lq::fuzz::write_tiny_model(dir / "model", true, true);
  return h;
}

std::string command_for(const Hostile& h, const fs::path& dir) {
  std::string c = h.command;
  const size_t at = c.find("{}");
  return c.substr(0, at) + (dir / h.file).string() + c.substr(at + 2);
}

// ---- ulimit -v --------------------------------------------------------------------------------

bool sanitized_build() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

lq::test::RunResult run_limited(uint64_t kib, const std::string& lq_args) {
  // One thread: the address space a run needs then does not grow with the machine's cores.
  return lq::test::run("ulimit -v " + std::to_string(kib) + " && exec " + lq::test::cli_path() + " --threads 1 " + lq_args);
}

// The smallest `ulimit -v` (KiB, to 1 MiB) under which `lq ARGS` succeeds; 0 when it fails even
// with 16 GiB.
uint64_t smallest_limit(const std::string& lq_args) {
  uint64_t lo = 1024, hi = uint64_t{16} << 20;
  if (run_limited(hi, lq_args).status != 0) return 0;
  while (hi - lo > 1024) {
    const uint64_t mid = lo + (hi - lo) / 2;
    (run_limited(mid, lq_args).status == 0 ? hi : lo) = mid;
  }
  return hi;
}

}  // namespace

TEST_CASE("absurd sizes are refused before anything is sized from them", "[untrusted]") {
  TempDir tmp;
  const auto hostile = write_hostile(tmp.path());
  for (const auto& h : hostile) {
    INFO(h.what << ": lq " << command_for(h, tmp.path()));
    lq::test::check_cli_failure({command_for(h, tmp.path()), h.code, h.needle});
  }
}

TEST_CASE("hostile files stay within twice a valid file's address space (ulimit -v)", "[untrusted][limits]") {
  if (sanitized_build()) {
    lq::test::skip("ulimit -v cannot constrain a sanitizer build (its shadow memory is reserved up front)");
    return;
  }
  TempDir tmp;
  const auto hostile = write_hostile(tmp.path());
  // What valid files of the same sizes (a few KB) need: the tiny model as a directory, as GGUF
  // (written by lq under no limit) and with a legacy importance matrix.
  const fs::path gguf = tmp / "model.gguf";
  REQUIRE(lq::test::run(lq::test::cli_path() + " --quiet quantize " + (tmp / "model").string() + " gguf -q F16 -o " +
                        gguf.string())
              .status == 0);
  {
    Bytes m;
    m.put<int32_t>(1).put<int32_t>(4).raw("name").put<int32_t>(1).put<int32_t>(2).put<float>(1.0f).put<float>(2.0f);
    write(tmp / "valid.dat", m.b);
  }
  const uint64_t need = std::max({smallest_limit("info " + gguf.string()), smallest_limit("info " + (tmp / "model").string()),
                                  smallest_limit("tokenize " + (tmp / "model").string() + " -p hello")});
  REQUIRE(need > 0);
  const uint64_t limit = 2 * need;
  INFO("a valid file needs " << need / 1024 << " MiB of address space; limit " << limit / 1024 << " MiB");
  for (const auto& h : hostile) {
    INFO(h.what);
    const auto r = run_limited(limit, command_for(h, tmp.path()));
    CHECK(r.status == h.code);
    CHECK(lq::test::error_lines(r.err) == 1);
    CHECK(r.err.find(h.needle) != std::string::npos);
    CHECK(r.err.find("out of memory") == std::string::npos);
  }
}

TEST_CASE("fuzz finds: a config.json whose model_type is not a string", "[untrusted]") {
  // tests/data/fuzz/config/model-type-number.json: "model_type": 1 escaped as nlohmann's type_error.
  TempDir tmp;
  lq::fuzz::write_tiny_model(tmp.path(), false, true);
  fs::copy_file(lq::test::data_file("fuzz/config/model-type-number.json"), tmp / "config.json");
  try {
    (void)lq::read_hf_config(tmp.path());
    FAIL("accepted");
  } catch (const lq::Error& e) {
    CHECK(e.code() == lq::Errc::invalid_model);
    CHECK(std::string(e.what()).find("model_type is not a string") != std::string::npos);
  }
}

TEST_CASE("quantization_config: numbers out of range and a method that is not a string are named errors",
          "[untrusted]") {
  // nlohmann's get<int>() casts a float without a range check (undefined behaviour for 1e300) and
  // truncates an integer (2^32 + 8 read as 8 bits); quant_method was read outside the guard that
  // turns JSON type errors into lq::Error.
  using lq::fuzz::llmc_args;
  using lq::fuzz::llmc_config;
  const std::string w = R"("memoryless_minmax")";
  auto with_bits = [&](const std::string& bits) {
    std::string a = llmc_args("int", "channel", false, w);
    a.replace(a.find(R"("num_bits":8)"), 12, R"("num_bits":)" + bits);
    return llmc_config("pack-quantized", a, "null");
  };
  const struct {
    const char* what;
    std::string config;
    const char* needle;
  } cases[] = {
      {"quant_method 1", R"({"quant_method":1})", "malformed quantization_config"},
      {"num_bits 1e300", with_bits("1e300"), "not an integer"},
      {"num_bits -1e300", with_bits("-1e300"), "not an integer"},
      {"num_bits 2^32 + 8", with_bits("4294967304"), "not an integer"},
      {"num_bits 8.5", with_bits("8.5"), "not an integer"},
      {"GPTQ group_size 1e19", R"({"quant_method":"gptq","bits":4,"group_size":1e19})", "not an integer"},
      {"FP8 block of 2^40 rows",
       llmc_config("float-quantized", llmc_args("float", "block", false, w, "[1099511627776,16]"), "null"), "2^31"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    const auto dir = lq::fuzz::quantized_model_dir("qconfig", c.config);
    try {
      (void)lq::read_hf_config(dir);
      FAIL("accepted");
    } catch (const lq::Error& e) {
      CHECK(e.code() == lq::Errc::invalid_model);
      CHECK_THAT(e.what(), Catch::Contains(c.needle));
    }
  }
  // An integral float is a number like any other.
  CHECK_NOTHROW(lq::read_hf_config(lq::fuzz::quantized_model_dir("qconfig", with_bits("8.0"))));
}

namespace {

int open_descriptors() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

}  // namespace

TEST_CASE("fuzz finds: a refused safetensors file leaves no descriptor open", "[untrusted]") {
  // The fuzz target ran out of descriptors after 20000 refused files: the reader opened the
  // file in its constructor and nothing closed it when the constructor threw.
  TempDir tmp;
  const fs::path bad = write(tmp / "bad.safetensors", safetensors("{\"a\":{\"dtype\":\"F32\"}}", 0));
  const fs::path short_file = write(tmp / "short.safetensors", std::string(4, '\0'));
  const int before = open_descriptors();
  for (int i = 0; i < 50; ++i) {
    CHECK_THROWS_AS(lq::SafetensorsFile(bad), lq::Error);
    CHECK_THROWS_AS(lq::SafetensorsFile(short_file), lq::Error);
  }
  CHECK(open_descriptors() == before);
}

TEST_CASE("fuzz finds: a super-weight mask's coordinates are checked, not used as indices", "[untrusted]") {
  // A column past the row made `quantize --super-weights` write past a buffer (SIGSEGV); a row past
  // the tensor read far past the file; 1e39 and 1e300 were converted with undefined behaviour.
  const auto tiny = lq::test::tiny_with_imatrix();
  if (!tiny) return;
  TempDir tmp;
  auto mask = [&](const std::string& name, const std::string& entry) {
    const fs::path p = tmp / (name + ".json");
    lq::fuzz::write_bytes(p, R"({"format": "lq.super_weights", "version": 1, "info": {}, "weights": [)" + entry + "]}");
    return p;
  };
  const std::string in = R"("tensor": "blk.0.ffn_down.weight")";
  // Read, then refused where the model is known: exit 2, the reason, no output.
  const struct {
    const char* what;
    std::string entry;
    const char* needle;
  } at_quantize[] = {
      {"column past the row", "{" + in + R"(, "row": 0, "col": 100000000, "value": 0.1})", "lies outside the tensor (256 rows of 768)"},
      {"row past the tensor", "{" + in + R"(, "row": 1000000000000, "col": 5, "value": 0.1})", "lies outside the tensor"},
      {"a tensor the model lacks", R"({"tensor": "blk.9.ffn_down.weight", "row": 0, "col": 5, "value": 0.1})",
       "the model has no such tensor"},
  };
  for (const auto& c : at_quantize) {
    INFO(c.what);
    const fs::path m = mask("q", c.entry);
    CHECK_NOTHROW(lq::load_super_weights(m));
    lq::test::check_cli_failure({"quantize " + tiny->model.string() + " gguf -q Q4_K_M --imatrix " + tiny->imatrix_path.string() +
                                 " --super-weights " + m.string() + " -o " + (tmp / "out.gguf").string(),
                             2, c.needle});
    CHECK_FALSE(fs::exists(tmp / "out.gguf"));
  }
  // Refused when read.
  const std::string refused_at_load[] = {
      "{" + in + R"(, "row": 0, "col": -5, "value": 0.1})",
      "{" + in + R"(, "row": 1e300, "col": 5, "value": 0.1})",
      "{" + in + R"(, "row": 0, "col": 5.5, "value": 0.1})",
      "{" + in + R"(, "row": 0, "col": 5, "value": 1e39})",
      "{" + in + R"(, "row": 0, "col": 5, "value": "x"})",
      R"({"tensor": "", "row": 0, "col": 5, "value": 0.1})",
  };
  for (const auto& e : refused_at_load) {
    INFO(e);
    try {
      (void)lq::load_super_weights(mask("l", e));
      FAIL("accepted");
    } catch (const lq::Error& err) {
      CHECK(err.code() == lq::Errc::invalid_argument);
      CHECK_THAT(err.what(), Catch::Contains("malformed super-weight"));
    }
  }
  lq::fuzz::write_bytes(tmp / "report.json", R"({"format": "lq.analysis", "weights": []})");
  CHECK_THROWS_AS(lq::load_super_weights(tmp / "report.json"), lq::Error);
  // A well-formed entry inside the tensor still protects.
  const fs::path ok = mask("ok", "{" + in + R"(, "row": 3, "col": 5, "value": 0.1})");
  REQUIRE(lq::load_super_weights(ok).size() == 1);
  const auto r = lq::test::run(lq::test::cli_path() + " --quiet quantize " + tiny->model.string() + " gguf -q Q4_K_M --imatrix " +
                           tiny->imatrix_path.string() + " --super-weights " + ok.string() + " -o " + (tmp / "ok.gguf").string());
  CHECK(r.status == 0);
  CHECK(fs::exists(tmp / "ok.gguf"));
}
