#include <lq/calibration.hpp>
#include <lq/error.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <fstream>

using namespace lq;

namespace {
std::filesystem::path write(const test::TempDir& d, const std::string& name, const std::string& content) {
  const auto p = d / name;
  std::ofstream(p, std::ios::binary) << content;
  return p;
}
}  // namespace

TEST_CASE("calibration: text, JSON and JSONL", "[calibration]") {
  test::TempDir d;
  CHECK(load_calibration(write(d, "a.txt", "hello world\n")).texts == std::vector<std::string>{"hello world\n"});
  CHECK(load_calibration(write(d, "b.json", R"(["one", "two"])")).texts == std::vector<std::string>{"one", "two"});
  CHECK(load_calibration(write(d, "c.json", R"([{"text": "x"}, {"text": "y", "id": 3}])")).texts ==
        std::vector<std::string>{"x", "y"});
  CHECK(load_calibration(write(d, "d.jsonl", "{\"text\": \"p\"}\n\n\"q\"\n")).texts == std::vector<std::string>{"p", "q"});
  const auto def = default_calibration();
  CHECK(def.texts.size() == 1);
  CHECK(def.texts[0].size() == 1287656);
  CHECK(def.source.find("WikiText-2") != std::string::npos);
}

TEST_CASE("calibration: bad data is exit 15", "[calibration][bad-input]") {
  test::TempDir d;
  auto bad = [&](const std::string& name, const std::string& content) {
    try {
      load_calibration(write(d, name, content));
      FAIL("accepted " << name);
    } catch (const Error& e) {
      CHECK(e.code() == Errc::calibration_error);
      CHECK(exit_code(e.code()) == 15);
    }
  };
  bad("empty.txt", "");
  bad("blank.txt", "  \n\n ");
  bad("m.json", "[\"a\", ");
  bad("n.json", "{\"a\": 1}");
  bad("o.json", "[1, 2]");
  bad("p.jsonl", "{\"text\": \"a\"}\n{oops\n");
  bad("q.json", "[]");
  try {
    load_calibration(d / "missing.txt");
    FAIL("accepted a missing file");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::calibration_error);
  }
}

TEST_CASE("calibration: chunks as llama-imatrix cuts them", "[calibration]") {
  std::vector<int32_t> t = {1, 10, 11, 12, 13, 14, 15, 16, 17};
  auto c = make_chunks(t, 4, -1, 1);
  REQUIRE(c.size() == 2);
  CHECK(c[0] == std::vector<int32_t>{1, 10, 11, 12});
  CHECK(c[1] == std::vector<int32_t>{1, 14, 15, 16});
  CHECK(make_chunks(t, 4, 1, 1).size() == 1);
}
