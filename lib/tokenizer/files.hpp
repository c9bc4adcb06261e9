// Internal: reading the files a tokenizer is loaded from (whole files, JSON) with every failure
// as Errc::invalid_model naming the file, plus the JSON reading rules the loaders share (Python
// truthiness, lenient member access). No tokenizer semantics here.
#pragma once

#include <lq/error.hpp>
#include "core/fail.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace lq::detail {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// Vocabularies beyond this are taken as corrupt input rather than allocated.
inline constexpr int64_t kMaxVocab = int64_t{1} << 24;

/// The whole file; throws Errc::invalid_model when it is missing or unreadable.
std::string read_bytes(const fs::path& p);
/// The file parsed as JSON; malformed JSON throws Errc::invalid_model naming the file.
json read_json(const fs::path& p);
/// read_json() for a file that may be absent (nullopt then).
std::optional<json> read_json_if_present(const fs::path& p);

/// Runs `f`, turning JSON access errors (wrong types, missing keys) into one invalid_model error.
template <typename F>
auto with_json_errors(const fs::path& file, F&& f) {
  try {
    return f();
  } catch (const json::exception& e) {
    fail(Errc::invalid_model, "{}: unexpected content: {}", file.string(), e.what());
  }
}

/// Python truthiness of a JSON value (None, "", {}, [], 0 and false are false).
bool truthy(const json& j);
/// j[key], or null when `j` is not an object or has no such key.
const json& member(const json& j, const char* key);
/// A token id written as a JSON object key ("32000"); throws Errc::invalid_model naming `file`.
int64_t parse_id(const std::string& key, const fs::path& file);

}  // namespace lq::detail
