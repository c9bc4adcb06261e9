// Tokenizer files written from GGUF metadata (tokenizer/hf_files_writer): the tiny model's
// SentencePiece vocabulary through `lq convert X.gguf gptq` and back to GGUF (tensor data and
// tokenizer metadata unchanged, same token ids), and a hand-made byte-level BPE vocabulary
// whose tokenizer.json reads back as the same metadata and tokenizes the same.
#include <lq/gguf.hpp>
#include <lq/model.hpp>
#include <lq/tokenizer.hpp>

#include "tokenizer/hf_files_writer.hpp"

#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;
using namespace lq;

namespace {

std::string tkf_read_text(const fs::path& p, size_t max) {
  std::ifstream in(p, std::ios::binary);
  std::string s(max, '\0');
  in.read(s.data(), static_cast<std::streamsize>(max));
  s.resize(static_cast<size_t>(in.gcount()));
  // Whole UTF-8 characters only.
  while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();
  if (!s.empty() && (static_cast<unsigned char>(s.back()) & 0x80)) s.pop_back();
  return s;
}

std::string tkf_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool tkf_is_linear(const std::string& name) {
  for (const char* n : {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "ffn_gate.weight",
                        "ffn_up.weight", "ffn_down.weight"})
    if (name.size() > std::strlen(n) && name.compare(name.size() - std::strlen(n), std::string::npos, n) == 0 &&
        name.rfind("blk.", 0) == 0)
      return true;
  return false;
}

/// Checks that every linear weight of `a` stands in `b` with the same type, shape and bytes;
/// returns how many there are.
int tkf_same_linears(const gguf::Reader& a, const gguf::Reader& b) {
  int linears = 0;
  for (const auto& t : a.tensors()) {
    if (!tkf_is_linear(t.name)) continue;
    INFO(t.name);
    const gguf::TensorInfo* u = b.find_tensor(t.name);
    REQUIRE(u != nullptr);
    CHECK(u->type == t.type);
    CHECK(u->ne == t.ne);
    const auto da = a.data(t), db = b.data(*u);
    REQUIRE(da.size() == db.size());
    CHECK(std::memcmp(da.data(), db.data(), da.size()) == 0);
    ++linears;
  }
  return linears;
}

// Every tokenizer.* key of `a` is in `b` with the same value, and the other way round.
void tkf_same_tokenizer_keys(const gguf::Metadata& a, const gguf::Metadata& b) {
  int n = 0;
  for (const auto& [key, value] : a.entries()) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    ++n;
    INFO(key);
    const gguf::Value* other = b.find(key);
    REQUIRE(other != nullptr);
    CHECK(*other == value);
  }
  for (const auto& [key, value] : b.entries())
    if (key.rfind("tokenizer.", 0) == 0) {
      INFO(key);
      CHECK(a.contains(key));
    }
  CHECK(n >= 5);
}

}  // namespace

TEST_CASE("tokfiles: GGUF Q4_0 -> GPTQ -> GGUF keeps the linears' bytes and the tokenizer", "[tokfiles]") {
  auto model = test::shared_file("models/tiny-llama");
  auto eval = test::shared_file("corpus/eval.txt");
  if (!model || !eval) return;
  test::TempDir tmp;
  const std::string cli = test::cli_path();
  const fs::path q4 = tmp / "q4.gguf", dir = tmp / "gptq", back = tmp / "back.gguf";
  auto r = test::run(cli + " --quiet quantize " + model->string() + " gguf -q Q4_0 --pure -o " + q4.string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  r = test::run(cli + " --quiet --format json convert " + q4.string() + " gptq -o " + dir.string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  for (const char* f : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
    CHECK(fs::is_regular_file(dir / f));
  {
    INFO(r.out);
    const auto j = nlohmann::json::parse(r.out);
    for (const auto& lost : j.at("lost")) CHECK(lost.get<std::string>().find("tokenizer") == std::string::npos);
    const auto cfg = nlohmann::json::parse(tkf_file(dir / "config.json"));
    CHECK(cfg["bos_token_id"] == 1);
    CHECK(cfg["eos_token_id"] == 2);
  }

  // The directory opens as a model and tokenizes like the original checkpoint and the GGUF.
  auto src = ModelSource::open(dir);
  CHECK(src->config().n_vocab == 2048);
  const Tokenizer mine = Tokenizer::from_hf_dir(dir);
  const Tokenizer orig = Tokenizer::from_hf_dir(*model);
  const Tokenizer from_q4 = Tokenizer::from_gguf(q4);
  const std::string text = tkf_read_text(*eval, 4096);
  REQUIRE(text.size() > 3000);
  const auto ids = mine.encode(text);
  CHECK(ids.size() > 500);
  CHECK(ids == orig.encode(text));
  CHECK(ids == from_q4.encode(text));
  CHECK(mine.encode("<s>Hello</s> world", true, true) == orig.encode("<s>Hello</s> world", true, true));
  CHECK(mine.decode(mine.encode(text, false)) == orig.decode(orig.encode(text, false)));

  // The compressed-tensors target gets the same files.
  const fs::path ct = tmp / "ct";
  r = test::run(cli + " --quiet convert " + q4.string() + " compressed-tensors -o " + ct.string());
  REQUIRE(r.status == 0);
  for (const char* f : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"}) {
    INFO(f);
    CHECK(tkf_file(ct / f) == tkf_file(dir / f));
  }

  r = test::run(cli + " --quiet convert " + dir.string() + " gguf -q exact -o " + back.string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const gguf::Reader a(q4), b(back);
  CHECK(tkf_same_linears(a, b) == 42);
  tkf_same_tokenizer_keys(a.metadata(), b.metadata());

  // The same through AutoAWQ's GEMM layout: Q4_0's codes with zero 8, read back to Q4_0 exactly.
  const fs::path awq = tmp / "awq", back_awq = tmp / "back-awq.gguf";
  r = test::run(cli + " --quiet convert " + q4.string() + " awq -o " + awq.string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK_FALSE(fs::exists(awq / "quantize_config.json"));
  CHECK(nlohmann::json::parse(tkf_file(awq / "config.json"))["quantization_config"]["quant_method"] == "awq");
  r = test::run(cli + " --quiet convert " + awq.string() + " gguf -q exact -o " + back_awq.string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const gguf::Reader c(back_awq);
  CHECK(tkf_same_linears(a, c) == 42);
}

TEST_CASE("tokfiles: a byte-level BPE vocabulary becomes a tokenizer.json that reads back the same", "[tokfiles]") {
  // GPT-2's byte-to-character map for the 256 base tokens, some merges, added tokens and a filler.
  auto byte_char = [](int b) {
    int cp = b;
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    if (!printable) {
      int n = 0;
      for (int k = 0; k < b; ++k)
        if (!((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255))) ++n;
      cp = 256 + n;
    }
    std::string s;
    if (cp < 0x80) s.push_back(static_cast<char>(cp));
    else s.push_back(static_cast<char>(0xC0 | (cp >> 6))), s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    return s;
  };
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(byte_char(b));
  const std::string sp = byte_char(' ');
  std::vector<std::string> merges = {"t h", "th e", sp + " th", sp + "th e", "i n", sp + " a", "a n", "an d", sp + " and",
                                     "e r", "o n", sp + " on", "1 2"};
  for (const auto& m : merges) {
    const auto k = m.find(' ');
    tokens.push_back(m.substr(0, k) + m.substr(k + 1));
  }
  std::vector<int32_t> types(tokens.size(), 1);
  tokens.push_back("[PAD" + std::to_string(tokens.size()) + "]");
  types.push_back(5);
  tokens.push_back("<|begin_of_text|>");
  types.push_back(3);
  tokens.push_back("<|end_of_text|>");
  types.push_back(3);
  tokens.push_back("<tool>");
  types.push_back(4);
  const uint32_t bos = static_cast<uint32_t>(tokens.size() - 3), eos = bos + 1;

  for (const char* pre : {"llama-bpe", "qwen2", "gpt-2"}) {
    INFO(pre);
    gguf::Metadata meta;
    meta.set("tokenizer.ggml.model", gguf::Value::string("gpt2"));
    meta.set("tokenizer.ggml.pre", gguf::Value::string(pre));
    meta.set("tokenizer.ggml.tokens", gguf::Value::strings(tokens));
    meta.set("tokenizer.ggml.token_type", gguf::Value::array<int32_t>(gguf::ValueType::INT32, types));
    meta.set("tokenizer.ggml.merges", gguf::Value::strings(merges));
    meta.set("tokenizer.ggml.bos_token_id", gguf::Value::u32(bos));
    meta.set("tokenizer.ggml.eos_token_id", gguf::Value::u32(eos));
    meta.set("tokenizer.ggml.add_bos_token", gguf::Value::boolean(true));
    if (std::string_view(pre) == "qwen2") meta.set("tokenizer.ggml.add_sep_token", gguf::Value::boolean(false));
    meta.set("tokenizer.chat_template", gguf::Value::string("{{ messages }}"));

    const auto files = detail::hf_tokenizer_files(meta, 4096);
    REQUIRE(files.unsupported.empty());
    test::TempDir tmp;
    for (const auto& [name, text] : files.files) {
      std::ofstream o(tmp / name, std::ios::binary);
      o << text;
    }
    nlohmann::ordered_json config = files.config_ids;
    config["vocab_size"] = tokens.size();
    std::ofstream(tmp / "config.json") << config.dump(2);
    REQUIRE(fs::is_regular_file(tmp / "tokenizer.json"));

    gguf::Metadata back;
    tokenizer_gguf_metadata(tmp.path(), back);
    tkf_same_tokenizer_keys(meta, back);

    const Tokenizer want = Tokenizer::from_gguf(meta), got = Tokenizer::from_hf_dir(tmp.path());
    const Tokenizer json_only = Tokenizer::from_hf_json(tmp / "tokenizer.json");
    for (const std::string text : {"the and then on 12345 in<tool>x", " and the\n\n  other <|end_of_text|>", "ünï"}) {
      INFO(text);
      CHECK(got.encode(text, true, true) == want.encode(text, true, true));
      CHECK(json_only.encode(text, false, false) == want.encode(text, false, false));
    }
    CHECK(got.encode("the").front() == static_cast<int32_t>(bos));
  }

  // A pre-tokenizer without a tokenizer.json form and other models stay unsupported.
  gguf::Metadata meta;
  meta.set("tokenizer.ggml.model", gguf::Value::string("gpt2"));
  meta.set("tokenizer.ggml.tokens", gguf::Value::strings(tokens));
  meta.set("tokenizer.ggml.merges", gguf::Value::strings(merges));
  CHECK_FALSE(detail::hf_tokenizer_files(meta, 0).unsupported.empty());  // no pre: llama.cpp's "default"
  meta.set("tokenizer.ggml.model", gguf::Value::string("bert"));
  CHECK_FALSE(detail::hf_tokenizer_files(meta, 0).unsupported.empty());
}
