// Reading tokenizer files and JSON (see files.hpp): whole files, parse errors naming the file,
// Python truthiness, member access. Must not interpret what the files say.
#include "tokenizer/files.hpp"
#include "core/fail.hpp"

#include <fstream>
#include <sstream>

namespace lq::detail {

std::string read_bytes(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) fail(Errc::invalid_model, "{}: tokenizer file not found", p.string());
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(Errc::invalid_model, "{}: cannot open tokenizer file", p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(Errc::invalid_model, "{}: read error", p.string());
  return std::move(ss).str();
}

json read_json(const fs::path& p) {
  const std::string text = read_bytes(p);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(Errc::invalid_model, "{}: malformed JSON: {}", p.string(), e.what());
  }
}

std::optional<json> read_json_if_present(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return std::nullopt;
  return read_json(p);
}

bool truthy(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return false;
    case json::value_t::boolean: return j.get<bool>();
    case json::value_t::string: return !j.get_ref<const std::string&>().empty();
    case json::value_t::object:
    case json::value_t::array: return !j.empty();
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return j.get<int64_t>() != 0;
    case json::value_t::number_float: return j.get<double>() != 0.0;
    default: return true;
  }
}

const json& member(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

int64_t parse_id(const std::string& key, const fs::path& file) {
  int64_t v = 0;
  if (key.empty() || key.size() > 10) fail(Errc::invalid_model, "{}: bad token id '{}'", file.string(), key);
  for (char c : key) {
    if (c < '0' || c > '9') fail(Errc::invalid_model, "{}: bad token id '{}'", file.string(), key);
    v = v * 10 + (c - '0');
  }
  return v;
}

}  // namespace lq::detail
