// Text read from files in messages: escape_text() (invalid UTF-8 and control characters as \xNN),
// lq::Error's messages, and the CLI's stderr, stdout and JSON for a GGUF whose tensor name is not
// UTF-8; and the hint `profile create` gives when the base profile leaves no room for a target.
#include <lq/error.hpp>
#include <lq/gguf.hpp>
#include <lq/io.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>

using namespace lq;
namespace fs = std::filesystem;

namespace {

// Well-formed UTF-8 (RFC 3629), written independently of the library's decoder.
bool valid_utf8_text(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    size_t n;
    if (c < 0x80) { cp = c; n = 1; }
    else if ((c & 0xE0) == 0xC0) { cp = c & 0x1F; n = 2; }
    else if ((c & 0xF0) == 0xE0) { cp = c & 0x0F; n = 3; }
    else if ((c & 0xF8) == 0xF0) { cp = c & 0x07; n = 4; }
    else return false;
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

bool has_control(const std::string& s, bool allow_newline) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && !(allow_newline && c == '\n')) || c == 0x7F) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("safe text: escape_text keeps UTF-8 and escapes the rest", "[safe-text]") {
  CHECK(escape_text("blk.0.attn_q.weight") == "blk.0.attn_q.weight");
  CHECK(escape_text("\xE2\x96\x81the caf\xC3\xA9 \xF0\x9F\x98\x80") == "\xE2\x96\x81the caf\xC3\xA9 \xF0\x9F\x98\x80");
  CHECK(escape_text("a\xFF" "b") == "a\\xffb");
  CHECK(escape_text("a\nb\tc\rd") == "a\\nb\\tc\\rd");
  CHECK(escape_text(std::string("x\0y", 3)) == "x\\x00y");
  CHECK(escape_text("\x1b[31mred") == "\\x1b[31mred");  // a terminal escape sequence
  CHECK(escape_text("\x7f") == "\\x7f");
  CHECK(escape_text("\xC2\x85") == "\\xc2\\x85");          // C1 control NEL
  CHECK(escape_text("\xC2\xA0") == "\xC2\xA0");            // no-break space is text
  CHECK(escape_text("\xC0\xAF") == "\\xc0\\xaf");          // overlong '/'
  CHECK(escape_text("\xED\xA0\x80") == "\\xed\\xa0\\x80");  // a surrogate
  CHECK(escape_text("\xF4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  CHECK(escape_text("\xE2\x96") == "\\xe2\\x96");          // cut short
  CHECK(escape_text("C:\\models\\x") == "C:\\models\\x");  // backslashes are kept
  // Idempotent, and always valid UTF-8 without control characters.
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  const std::string e = escape_text(all);
  CHECK(valid_utf8_text(e));
  CHECK_FALSE(has_control(e, false));
  CHECK(escape_text(e) == e);
  // Every lq::Error message goes through it.
  const Error err(Errc::invalid_model, "tensor 'a\xFF\x01'", "hint \xFE");
  CHECK(std::string(err.what()) == "tensor 'a\\xff\\x01'");
  CHECK(err.suggestion() == "hint \\xfe");
}

TEST_CASE("safe text: a GGUF whose tensor name is not UTF-8 gives valid UTF-8 errors", "[safe-text][bad-input]") {
  test::TempDir d;
  const fs::path good = d / "named.gguf", bad = d / "bad-type.gguf";
  const std::string name = std::string("blk.0.\xFF\xFE\x1b[2J\x01x.weight");
  {
    gguf::Writer w(good);
    w.metadata().set("general.architecture", gguf::Value::string("llama"));
    w.metadata().set("general.name", gguf::Value::string("m\xC3\x28\x07"));
    const std::vector<int64_t> ne = {4};
    w.add_tensor(name, QuantType::F32, ne);
    const float v[4] = {1, 2, 3, 4};
    w.write(v, sizeof v);
    w.commit();
  }
  // Mutate the tensor's type id (after the name: u32 dims, i64 ne[0], then u32 type) to 999.
  std::string bytes = read_file(good);
  const size_t at = bytes.find(name);
  REQUIRE(at != std::string::npos);
  const size_t type_at = at + name.size() + 4 + 8;
  const uint32_t bad_type = 999;
  bytes.replace(type_at, 4, reinterpret_cast<const char*>(&bad_type), 4);
  std::ofstream(bad, std::ios::binary) << bytes;

  const std::string lq = test::cli_path();
  auto r = test::run(lq + " info " + bad.string());
  CHECK(r.status == 6);
  CHECK(test::error_lines(r.err) == 1);
  CHECK(valid_utf8_text(r.err));
  CHECK_FALSE(has_control(r.err, true));
  CHECK(r.err.find("blk.0.\\xff\\xfe\\x1b[2J\\x01x.weight") != std::string::npos);
  CHECK(r.err.find("999") != std::string::npos);

  r = test::run(lq + " --format json info " + bad.string());
  CHECK(r.status == 6);
  CHECK(valid_utf8_text(r.out));
  const auto j = nlohmann::json::parse(r.out);  // throws on invalid UTF-8
  CHECK(j["message"].get<std::string>().find("\\xff\\xfe") != std::string::npos);

  // The well-formed file: names and metadata strings are escaped in the human listing.
  r = test::run(lq + " info --tensors " + good.string());
  CHECK(valid_utf8_text(r.out));
  CHECK(valid_utf8_text(r.err));
  CHECK_FALSE(has_control(r.out, true));
  CHECK_FALSE(has_control(r.err, true));
}

TEST_CASE("safe text: profile create suggests --base none for a target the base cannot meet", "[safe-text][bad-input]") {
  const auto hf = test::shared_file("models/tiny-llama");
  const auto im = test::shared_file("golden/imatrix.gguf");
  if (!hf || !im) return;
  test::TempDir d;
  const std::string args = "profile create --imatrix " + im->string() + " --model " + hf->string() +
                           " --name tight --target-bpw 1.0 --objective error -o " + (d / "tight.dqprofile").string();
  // The balanced base keeps the embeddings and output at their types: 1 bpw leaves nothing.
  test::check_cli_failure({args, 13, "try --base none"});
  CHECK_FALSE(fs::exists(d / "tight.dqprofile"));
}
