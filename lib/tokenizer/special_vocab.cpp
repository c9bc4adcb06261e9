// gguf-py's SpecialVocab (see special_vocab.hpp): reading special ids, flags, merges and chat
// templates from a Hugging Face directory and writing them as GGUF keys in the converter's order.
#include "tokenizer/special_vocab.hpp"
#include "core/fail.hpp"

#include "tokenizer/hf_json.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <sstream>

namespace lq::detail {

void SpecialVocab::set_add(const std::string& typ, bool v) {
  for (auto& [k, x] : add)
    if (k == typ) {
      x = v;
      return;
    }
  add.emplace_back(typ, v);
}

void SpecialVocab::set_id(const std::string& typ, const json& tid, const fs::path& file) {
  if (!tid.is_number_integer() && !tid.is_number_unsigned()) return;
  const int64_t v = tid.get<int64_t>();
  if (v < 0) fail(Errc::invalid_model, "{}: invalid value for special token type {}: {}", file.string(), typ, v);
  if (n_vocab && static_cast<uint64_t>(v) >= *n_vocab) return;
  for (const auto& [k, x] : ids)
    if (k == typ) return;
  ids.emplace_back(typ, v);
}

void SpecialVocab::parse_normalizer(const json& n) {
  const json& type = member(n, "type");
  if (!type.is_string()) return;
  const std::string t = type.get<std::string>();
  if (t == "Lowercase") {
    lowercase = true;
  } else if (t == "StripAccents") {
    strip_accents = true;
  } else if (t == "BertNormalizer") {
    if (member(n, "lowercase").is_boolean()) lowercase = member(n, "lowercase").get<bool>();
    if (member(n, "strip_accents").is_boolean()) strip_accents = member(n, "strip_accents").get<bool>();
  } else if (t == "Sequence") {
    for (const auto& sub : member(n, "normalizers")) parse_normalizer(sub);
  }
}

void SpecialVocab::load(const fs::path& dir, bool load_merges) {
  const fs::path tok_file = dir / "tokenizer.json";
  const fs::path cfg_file = dir / "tokenizer_config.json";
  std::optional<json> tokenizer = read_json_if_present(tok_file);
  json added_tokens = json::array();
  if (tokenizer) {
    with_json_errors(tok_file, [&] {
      if (load_merges) {
        const json& ms = member(member(*tokenizer, "model"), "merges");
        if (ms.is_array() && !ms.empty()) {
          if (!ms[0].is_string() && !(ms[0].is_array() && ms[0].size() == 2 && ms[0][0].is_string()))
            fail(Errc::invalid_model, "{}: unknown tokenizer merges format", tok_file.string());
          merges.reserve(ms.size());
          for (const auto& m : ms) merges.push_back(merge_string(m));
        }
      }
      if (truthy(member(*tokenizer, "normalizer"))) parse_normalizer(member(*tokenizer, "normalizer"));
      if (tokenizer->contains("added_tokens")) added_tokens = (*tokenizer)["added_tokens"];
      return 0;
    });
  }
  std::optional<json> config = read_json_if_present(cfg_file);
  with_json_errors(cfg_file, [&] {
    if (tokenizer && truthy(*tokenizer)) template_processing(*tokenizer, config);
    return 0;
  });
  if (!config || !truthy(*config)) {
    load_config_json(dir);
    if (load_merges && merges.empty()) load_merges_txt(dir);
    return;
  }
  with_json_errors(cfg_file, [&] {
    json alt;
    const fs::path jinja = dir / "chat_template.jinja";
    const fs::path ct_json = dir / "chat_template.json";
    std::error_code ec;
    if (fs::is_regular_file(jinja, ec)) {
      alt = read_bytes(jinja);
      std::vector<fs::path> extra;
      if (fs::is_directory(dir / "additional_chat_templates", ec))
        for (const auto& e : fs::directory_iterator(dir / "additional_chat_templates"))
          if (e.path().extension() == ".jinja") extra.push_back(e.path());
      std::sort(extra.begin(), extra.end());
      if (!extra.empty()) {
        json list = json::array({json{{"name", "default"}, {"template", alt}}});
        for (const auto& p : extra) list.push_back(json{{"name", p.stem().string()}, {"template", read_bytes(p)}});
        alt = list;
      }
    } else if (fs::is_regular_file(ct_json, ec)) {
      alt = member(read_json(ct_json), "chat_template");
    }
    const json ct = config->contains("chat_template") ? (*config)["chat_template"] : alt;
    if (ct.is_null() || ct.is_string() || ct.is_array()) chat_template = ct;
    for (const auto& typ : types) {
      const json& add_entry = member(*config, ("add_" + typ + "_token").c_str());
      if (add_entry.is_boolean()) set_add(typ, add_entry.get<bool>());
      const json& entry = member(*config, (typ + "_token").c_str());
      std::string content;
      if (entry.is_string()) {
        content = entry.get<std::string>();
      } else if (entry.is_object()) {
        const json& c = member(entry, "content");
        if (!c.is_string()) continue;
        content = c.get<std::string>();
      } else {
        continue;
      }
      json found;
      for (const auto& atok : added_tokens)
        if (member(atok, "content") == json(content)) {
          found = member(atok, "id");
          break;
        }
      set_id(typ, found, cfg_file);
    }
    return 0;
  });
  load_config_json(dir);
  if (load_merges && merges.empty()) load_merges_txt(dir);
}

void SpecialVocab::template_processing(const json& tokenizer, std::optional<json>& config) {
  json cfg_view = config ? *config : json::object();
  json special_bos = member(cfg_view, "bos_token");
  json special_cls = member(cfg_view, "cls_token");
  json special_eos = member(cfg_view, "eos_token");
  json special_sep = member(cfg_view, "sep_token");
  const bool have_cfg = config && truthy(*config);
  auto cfg_set = [&](const char* key, const json& v) {
    if (have_cfg) (*config)[key] = v;
  };
  if (!truthy(special_bos) && truthy(special_cls) && have_cfg) {
    special_bos = special_cls;
    cfg_set("bos_token", special_bos);
  }
  if (!truthy(special_eos) && truthy(special_sep) && have_cfg) {
    special_eos = special_sep;
    cfg_set("eos_token", special_eos);
  }
  const json& post = member(tokenizer, "post_processor");
  if (!truthy(post)) return;
  const json processors = post.contains("processors") ? post["processors"] : json::array({post});
  auto in2 = [](const json& x, const json& a, const json& b) { return x == a || x == b; };
  for (const auto& proc : processors) {
    const json& type = member(proc, "type");
    if (type == "RobertaProcessing") {
      set_add("bos", true);
      set_add("eos", true);
      set_add("sep", true);
      if (!truthy(special_cls) && have_cfg) {
        special_cls = proc.contains("cls") ? proc["cls"][0] : special_bos;
        cfg_set("cls_token", special_cls);
      }
      if (!truthy(special_sep) && have_cfg) {
        special_sep = proc.contains("sep") ? proc["sep"][0] : special_eos;
        cfg_set("sep_token", special_sep);
      }
      continue;
    }
    if (type != "TemplateProcessing") continue;
    const json single = proc.contains("single") ? proc["single"] : json::array();
    json pair = proc.contains("pair") ? proc["pair"] : json::array();
    json special_first, special_last;
    auto special_id = [](const json& item) { return member(member(item, "SpecialToken"), "id"); };
    if (single.size() > 1) {
      special_first = special_id(single.front());
      if (truthy(special_first)) {
        if (!have_cfg) {
          special_bos = special_first;
        } else if (!in2(special_first, special_bos, special_cls)) {
          if (!truthy(special_bos)) {
            special_bos = special_first;
            cfg_set("bos_token", special_bos);
          }
          if (!truthy(special_cls)) {
            special_cls = special_first;
            cfg_set("cls_token", special_cls);
          }
        }
        set_add("bos", in2(special_first, special_bos, special_cls));
      }
      special_last = special_id(single.back());
      if (truthy(special_last)) {
        if (!have_cfg) {
          special_eos = special_last;
        } else if (special_last != special_eos) {
          if (std::find(types.begin(), types.end(), "eot") == types.end()) {
            types.push_back("eot");
            cfg_set("eot_token", special_eos);
          } else if (std::find(types.begin(), types.end(), "eom") == types.end()) {
            types.push_back("eom");
            cfg_set("eom_token", special_eos);
          }
          special_eos = special_last;
          cfg_set("eos_token", special_eos);
        }
        set_add("eos", special_last == special_eos);
      }
    }
    if (!pair.empty()) {
      const size_t start = truthy(special_first) && special_id(pair.front()) == special_first ? 1 : 0;
      const size_t stop_cut = truthy(special_last) && special_id(pair.back()) == special_last ? 1 : 0;
      json mid = json::array();
      for (size_t k = start; k + stop_cut < pair.size(); ++k) mid.push_back(pair[k]);
      if (!mid.empty()) {
        const json a = member(member(mid.front(), "Sequence"), "id");
        const json b = member(member(mid.back(), "Sequence"), "id");
        json inner = json::array();
        for (size_t k = 1; k + 1 < mid.size(); ++k) inner.push_back(mid[k]);
        if (a == "A" && b == "B" && !inner.empty()) {
          bool add_sep = false;
          const json e0 = special_id(inner[0]);
          if (truthy(e0) && in2(e0, special_sep, special_eos) && !truthy(special_last)) add_sep = true;
          if (inner.size() == 2) {
            const json e1 = special_id(inner[1]);
            if (truthy(e1) && in2(e1, special_sep, special_eos)) add_sep = true;
          }
          set_add("sep", add_sep);
          if (add_sep && !truthy(special_sep) && have_cfg) cfg_set("sep_token", special_eos);
        }
      }
    }
  }
}

void SpecialVocab::load_config_json(const fs::path& dir) {
  const fs::path file = dir / "config.json";
  std::optional<json> config = read_json_if_present(file);
  if (!config) return;
  with_json_errors(file, [&] {
    for (const auto& typ : types) {
      json id = member(*config, (typ + "_token_id").c_str());
      if (id.is_null() && config->contains("text_config"))
        id = member((*config)["text_config"], (typ + "_token_id").c_str());
      set_id(typ, id, file);
    }
    return 0;
  });
}

void SpecialVocab::load_merges_txt(const fs::path& dir) {
  const fs::path file = dir / "merges.txt";
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return;
  std::istringstream in(read_bytes(file));
  std::string line;
  bool first = true;
  while (std::getline(in, line)) {
    auto trim = [](std::string& s) {
      const auto b = s.find_first_not_of(" \t\r\n\v\f");
      const auto e = s.find_last_not_of(" \t\r\n\v\f");
      s = b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    trim(line);
    if (first) {
      first = false;
      if (!line.empty() && line[0] == '#') continue;
    }
    if (line.empty()) continue;
    std::istringstream parts(line);
    std::vector<std::string> p;
    for (std::string w; parts >> w;) p.push_back(w);
    if (p.size() != 2) continue;
    merges.push_back(p[0] + " " + p[1]);
  }
}

// Writes the keys in add_to_gguf's order.
void SpecialVocab::write(gguf::Metadata& out) const {
  if (!merges.empty()) out.set("tokenizer.ggml.merges", gguf::Value::strings(merges));
  static const std::map<std::string, std::string> kIdKeys = {
      {"bos", "tokenizer.ggml.bos_token_id"},       {"eos", "tokenizer.ggml.eos_token_id"},
      {"unk", "tokenizer.ggml.unknown_token_id"},   {"sep", "tokenizer.ggml.seperator_token_id"},
      {"pad", "tokenizer.ggml.padding_token_id"},   {"mask", "tokenizer.ggml.mask_token_id"},
      {"eot", "tokenizer.ggml.eot_token_id"},       {"eom", "tokenizer.ggml.eom_token_id"},
  };
  for (const auto& [typ, id] : ids) {
    auto it = kIdKeys.find(typ);
    if (it != kIdKeys.end()) out.set(it->second, gguf::Value::u32(static_cast<uint32_t>(id)));
  }
  for (const auto& [typ, v] : add) {
    if (typ == "bos" || typ == "eos" || typ == "sep")
      out.set("tokenizer.ggml.add_" + typ + "_token", gguf::Value::boolean(v));
  }
  if (chat_template.is_string()) {
    if (!chat_template.get_ref<const std::string&>().empty())
      out.set("tokenizer.chat_template", gguf::Value::string(chat_template.get<std::string>()));
  } else if (chat_template.is_array()) {
    std::optional<std::string> def;
    std::vector<std::string> names;
    for (const auto& choice : chat_template) {
      std::string name;
      for (char c : member(choice, "name").is_string() ? member(choice, "name").get<std::string>() : std::string())
        name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      const json& tmpl = member(choice, "template");
      if (name.empty() || !tmpl.is_string()) continue;
      if (name == "default") {
        def = tmpl.get<std::string>();
      } else {
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
        out.set("tokenizer.chat_template." + name, gguf::Value::string(tmpl.get<std::string>()));
      }
    }
    if (!names.empty()) out.set("tokenizer.chat_templates", gguf::Value::strings(names));
    if (def && !def->empty()) out.set("tokenizer.chat_template", gguf::Value::string(*def));
  }
  if (lowercase) out.set("tokenizer.ggml.normalizer.lowercase", gguf::Value::boolean(*lowercase));
  if (strip_accents) out.set("tokenizer.ggml.normalizer.strip_accents", gguf::Value::boolean(*strip_accents));
}

std::optional<int64_t> SpecialVocab::id_of(const std::string& typ) const {
  for (const auto& [k, v] : ids)
    if (k == typ) return v;
  return std::nullopt;
}

std::optional<bool> SpecialVocab::add_of(const std::string& typ) const {
  for (const auto& [k, v] : add)
    if (k == typ) return v;
  return std::nullopt;
}

bool looks_special(std::string_view t) {
  auto starts = [&](std::string_view p) { return t.size() >= p.size() && t.substr(0, p.size()) == p; };
  auto ends = [&](std::string_view p) { return t.size() >= p.size() && t.substr(t.size() - p.size()) == p; };
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (starts("<|") && ends("|>")) return true;
  if (starts("<\xEF\xBD\x9C") && ends("\xEF\xBD\x9C>")) return true;  // fullwidth bars (DeepSeek)
  return starts("<unused") && ends(">");
}

}  // namespace lq::detail
