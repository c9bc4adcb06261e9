// The .dqprofile file format: a Profile to and from its JSON document, and finding a profile by
// preset name, path or name in the profile directory (settings.hpp). Must not resolve or solve.
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/io.hpp>
#include <lq/profile.hpp>
#include <lq/settings.hpp>

#include "profile/methods.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq {

using profile::parse_method;

json Profile::to_json() const {
  json j = {{"format", "lq.dqprofile"}, {"version", 1}, {"name", name}, {"description", description}};
  json rs = json::array();
  for (const auto& r : rules) {
    json x = {{"layer_pattern", r.pattern}, {"quantization_method", r.method}, {"rationale", r.rationale}};
    if (!r.layers.empty()) x["layers"] = r.layers;
    rs.push_back(x);
  }
  j["layer_configs"] = rs;
  j["default_method"] = default_method;
  if (target_bpw) j["target_bpw"] = *target_bpw;
  if (target_bytes) j["target_size_bytes"] = *target_bytes;
  if (!candidates.empty()) j["candidates"] = candidates;
  if (!tensor_types.empty()) j["tensor_types"] = tensor_types;
  j["provenance"] = provenance;
  return j;
}

Profile Profile::from_json(const json& j, const std::string& source) {
  try {
    if (!j.is_object()) fail(Errc::profile_error, "{}: a profile must be a JSON object", source);
    Profile p;
    p.name = j.value("name", j.value("preset", std::string()));
    if (p.name.empty()) fail(Errc::profile_error, "{}: the profile has no name", source);
    p.description = j.value("description", std::string());
    if (!j.contains("layer_configs") || !j["layer_configs"].is_array())
      fail(Errc::profile_error, "{}: layer_configs must be an array", source);
    for (const auto& x : j["layer_configs"]) {
      if (!x.is_object() || !x.contains("layer_pattern") || !x.contains("quantization_method"))
        fail(Errc::profile_error, "{}: every layer_configs entry needs layer_pattern and quantization_method", source);
      ProfileRule r{x.at("layer_pattern").get<std::string>(), x.value("layers", std::string()),
                    x.at("quantization_method").get<std::string>(), x.value("rationale", std::string())};
      (void)parse_method(r.method, source);
      p.rules.push_back(std::move(r));
    }
    p.default_method = j.value("default_method", std::string("Q4_K"));
    (void)parse_method(p.default_method, source);
    if (j.contains("target_bpw")) {
      p.target_bpw = j.at("target_bpw").get<double>();
      if (!(*p.target_bpw > 0)) fail(Errc::profile_error, "{}: target_bpw must be positive", source);
    }
    if (j.contains("target_size_bytes")) p.target_bytes = j.at("target_size_bytes").get<uint64_t>();
    if (j.contains("candidates"))
      for (const auto& c : j.at("candidates")) {
        const std::string s = c.get<std::string>();
        auto m = parse_method(s, source);
        if (!m.type) fail(Errc::profile_error, "{}: candidate '{}' must be a tensor type", source, s);
        p.candidates.push_back(s);
      }
    if (j.contains("tensor_types"))
      for (auto it = j.at("tensor_types").begin(); it != j.at("tensor_types").end(); ++it) {
        const std::string s = it->get<std::string>();
        auto m = parse_method(s, source);
        if (!m.type) fail(Errc::profile_error, "{}: tensor_types['{}'] must be a tensor type", source, it.key());
        p.tensor_types[it.key()] = s;
      }
    if (j.contains("provenance") && j["provenance"].is_object()) p.provenance = j["provenance"];
    return p;
  } catch (const json::exception& e) {
    fail(Errc::profile_error, "{}: malformed profile: {}", source, e.what());
  }
}

Profile Profile::load(const std::string& name_or_path) {
  for (const auto& p : preset_profiles())
    if (p.name == name_or_path) return p;
  auto load_file = [](const fs::path& f) {
    json j;
    try {
      j = json::parse(read_file(f));
    } catch (const json::exception& e) {
      fail(Errc::profile_error, "{}: malformed JSON: {}", f.string(), e.what());
    } catch (const Error& e) {
      fail(Errc::profile_error, "{}", e.what());
    }
    return from_json(j, f.string());
  };
  std::error_code ec;
  if (fs::is_regular_file(name_or_path, ec)) return load_file(name_or_path);
  if (const auto dir = profile_dir()) {
    for (const std::string& cand : {name_or_path, name_or_path + ".dqprofile"})
      if (fs::is_regular_file(*dir / cand, ec)) return load_file(*dir / cand);
  }
  std::string names;
  for (const auto& p : preset_profiles()) names += (names.empty() ? "" : ", ") + p.name;
  throw Error(Errc::profile_error, fmt::format("profile not found: '{}' (presets: {})", name_or_path, names),
              "Give a preset name, a .dqprofile path, or a profile in $LLM_QUANTIZE_PROFILE_DIR");
}

void Profile::save(const fs::path& path) const { write_file_atomic(path, to_json().dump(2) + "\n"); }

std::string Profile::to_json_string(int indent) const { return to_json().dump(indent); }

Profile Profile::from_json_string(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail(Errc::profile_error, "{}: malformed JSON: {}", source, e.what());
  }
  return from_json(j, source);
}

}  // namespace lq
