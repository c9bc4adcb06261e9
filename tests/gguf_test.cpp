#include <lq/error.hpp>
#include <lq/gguf.hpp>
#include <lq/decode.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>

using namespace lq;
namespace fs = std::filesystem;

TEST_CASE("gguf: write and read back every value type", "[gguf]") {
  test::TempDir tmp;
  const fs::path p = tmp / "a.gguf";
  {
    gguf::Writer w(p);
    auto& m = w.metadata();
    m.set("general.architecture", gguf::Value::string("llama"));
    m.set("k.u8", gguf::Value::u8(200));
    m.set("k.i8", gguf::Value::i8(-5));
    m.set("k.u16", gguf::Value::u16(60000));
    m.set("k.i16", gguf::Value::i16(-30000));
    m.set("k.u32", gguf::Value::u32(4000000000u));
    m.set("k.i32", gguf::Value::i32(-7));
    m.set("k.u64", gguf::Value::u64(1ull << 60));
    m.set("k.i64", gguf::Value::i64(-(1ll << 50)));
    m.set("k.f32", gguf::Value::f32(1.5f));
    m.set("k.f64", gguf::Value::f64(2.25));
    m.set("k.bool", gguf::Value::boolean(true));
    m.set("k.strs", gguf::Value::strings({"a", "", "ccc"}));
    const std::vector<int32_t> ints = {1, -2, 3};
    m.set("k.ints", gguf::Value::array<int32_t>(gguf::ValueType::INT32, ints));
    const std::vector<int64_t> ne = {32, 3};
    w.add_tensor("t0", QuantType::F32, ne);
    const std::vector<int64_t> ne1 = {5};
    w.add_tensor("t1", QuantType::F16, ne1);
    std::vector<float> data(96);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i);
    w.write(data.data(), 40);  // in pieces
    w.write(reinterpret_cast<const uint8_t*>(data.data()) + 40, data.size() * 4 - 40);
    const uint16_t h[5] = {0x3c00, 0x4000, 0, 0x8000, 0x7c00};
    w.write(h, sizeof h);
    const uint64_t expect = w.expected_size();
    w.commit();
    CHECK(fs::file_size(p) == expect);
  }
  gguf::Reader r(p);
  CHECK(r.version() == 3);
  CHECK(r.metadata().at("general.architecture").as_string() == "llama");
  CHECK(r.metadata().at("k.u8").as_uint() == 200);
  CHECK(r.metadata().at("k.i8").as_int() == -5);
  CHECK(r.metadata().at("k.u16").as_uint() == 60000);
  CHECK(r.metadata().at("k.i16").as_int() == -30000);
  CHECK(r.metadata().at("k.u32").as_uint() == 4000000000u);
  CHECK(r.metadata().at("k.i32").as_int() == -7);
  CHECK(r.metadata().at("k.u64").as_uint() == (1ull << 60));
  CHECK(r.metadata().at("k.i64").as_int() == -(1ll << 50));
  CHECK(r.metadata().at("k.f32").as_float() == 1.5);
  CHECK(r.metadata().at("k.f64").as_float() == 2.25);
  CHECK(r.metadata().at("k.bool").as_bool());
  CHECK(r.metadata().at("k.strs").as_strings() == std::vector<std::string>{"a", "", "ccc"});
  CHECK(r.metadata().at("k.ints").int_at(1) == -2);
  REQUIRE(r.tensors().size() == 2);
  CHECK(r.tensors()[1].offset % 32 == 0);
  std::vector<float> back(96);
  read_rows_f32(r, r.tensors()[0], 0, 3, back.data());
  CHECK(back[95] == 95.f);
  std::vector<float> hb(5);
  read_rows_f32(r, r.tensors()[1], 0, 1, hb.data());
  CHECK(hb[0] == 1.f);
  CHECK(hb[1] == 2.f);
  CHECK(std::isinf(hb[4]));

  // A shared tensor's bytes outlive the Reader (the engine holds weights this way).
  std::shared_ptr<const uint8_t> shared;
  {
    gguf::Reader r2(p);
    shared = r2.share(r2.tensors()[0]);
  }
  float f[96];
  std::memcpy(f, shared.get(), sizeof f);
  CHECK(f[0] == 0.f);
  CHECK(f[95] == 95.f);
}

TEST_CASE("gguf: an uncommitted writer leaves no file", "[gguf]") {
  test::TempDir tmp;
  {
    gguf::Writer w(tmp / "b.gguf");
    const std::vector<int64_t> ne = {4};
    w.add_tensor("t", QuantType::F32, ne);
    float x[2] = {1, 2};
    w.write(x, sizeof x);
  }
  CHECK(fs::is_empty(tmp.path()));
}

TEST_CASE("gguf: malformed files are rejected with exit-6 errors", "[gguf][bad-input]") {
  test::TempDir tmp;
  auto golden = test::shared_file("golden/pure/Q4_0.gguf");
  if (!golden) return;
  std::string bytes;
  {
    std::ifstream in(*golden, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto expect_invalid = [&](const std::string& content, const std::string& needle) {
    const fs::path p = tmp / "bad.gguf";
    std::ofstream(p, std::ios::binary).write(content.data(), static_cast<std::streamsize>(content.size()));
    try {
      gguf::Reader r(p);
      FAIL("accepted a malformed file: " << needle);
    } catch (const Error& e) {
      CHECK(e.code() == Errc::invalid_model);
      INFO(e.what());
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
  };
  expect_invalid(bytes.substr(0, 3), "bad magic");
  expect_invalid(bytes.substr(0, 200), "truncated");
  expect_invalid(bytes.substr(0, bytes.size() - 100), "runs past the end");
  std::string badver = bytes;
  badver[4] = 9;
  expect_invalid(badver, "version");
}

TEST_CASE("gguf: metadata keeps order, replaces in place, erases and finds among many keys", "[gguf]") {
  // 400 000 keys: a lookup that scans the list would take minutes here (the ctest timeout fails it).
  constexpr int kKeys = 400000;
  test::TempDir tmp;
  const fs::path p = tmp / "many.gguf";
  {
    gguf::Writer w(p);
    auto& m = w.metadata();
    m.set("general.architecture", gguf::Value::string("llama"));
    for (int i = 0; i < kKeys; ++i) m.set("k." + std::to_string(i), gguf::Value::u32(static_cast<uint32_t>(i)));
    m.set("k.7", gguf::Value::u32(77));  // replaced in place: order and size unchanged
    CHECK(m.size() == kKeys + 1);
    CHECK(m.entries()[8].first == "k.7");
    CHECK(m.erase("k.5"));
    CHECK_FALSE(m.erase("k.5"));
    CHECK(m.find("k.5") == nullptr);
    CHECK(m.get_int("k.6") == 6);  // positions after the erased key still resolve
    CHECK(m.entries()[6].first == "k.6");
    m.set("k.5", gguf::Value::u32(5));  // re-added at the end
    CHECK(m.entries().back().first == "k.5");
    w.commit();
  }
  gguf::Reader r(p);
  const auto& m = r.metadata();
  REQUIRE(m.size() == kKeys + 1);
  CHECK(m.get_int("k.7") == 77);
  CHECK(m.get_int("k.5") == 5);
  CHECK(m.get_int("k." + std::to_string(kKeys - 1)) == kKeys - 1);
  CHECK(m.find("k.missing") == nullptr);
}
