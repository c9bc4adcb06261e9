// Golden decode: every llama.cpp-made file in ../shared/golden dequantizes bit-identically to
// the float32 values llama.cpp recorded (sha256 of the little-endian floats, per tensor).
#include <lq/gguf.hpp>
#include <lq/decode.hpp>
#include <lq/quant_type.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace lq;

namespace {

void check_file(const std::filesystem::path& path, const nlohmann::json& entry) {
  gguf::Reader r(path);
  const auto& tensors = entry.at("tensors");
  REQUIRE(r.tensors().size() == tensors.size());
  for (const auto& t : r.tensors()) {
    INFO(path.filename().string() << " " << t.name << " " << type_name(t.type));
    REQUIRE(tensors.contains(t.name));
    const auto& rec = tensors.at(t.name);
    CHECK(static_cast<int>(t.type) == rec.at("type").get<int>());
    std::vector<float> values(static_cast<size_t>(t.n_elements()));
    read_rows_f32(r, t, 0, t.n_rows(), values.data());
    const std::string sha = test::sha256_hex(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(values.data()), values.size() * sizeof(float)));
    CHECK(sha == rec.at("sha256").get<std::string>());
  }
}

}  // namespace

TEST_CASE("golden decode: llama.cpp files dequantize bit-identically", "[golden][decode]") {
  const auto m = test::golden_manifest();
  if (m.is_null()) return;
  auto dir = test::shared_dir();
  int checked = 0;
  for (const auto& [name, entry] : m.at("files").items()) {
    if (entry.contains("error") || entry.value("in_shared", true) == false) continue;
    const auto path = *dir / "golden" / name;
    if (!std::filesystem::exists(path)) continue;
    SECTION(name) {
      check_file(path, entry);
    }
    ++checked;
  }
  CHECK(checked >= 23);
}
