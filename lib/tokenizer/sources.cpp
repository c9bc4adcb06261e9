// Tokenizer sources: SentencePiece model protos, Hugging Face tokenizer.json, GGUF metadata, and
// the tokenizer.ggml.* metadata llama.cpp's converter derives from a Hugging Face directory.
#include "tokenizer/impl.hpp"
#include "tokenizer/unicode.hpp"

#include <lq/error.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

namespace lq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using detail::kMetaSpace;

// Vocabularies beyond this are taken as corrupt input rather than allocated.
constexpr int64_t kMaxVocab = int64_t{1} << 24;

// ---- files -----------------------------------------------------------------------------------

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

// Runs `f`, turning JSON access errors (wrong types, missing keys) into one invalid_model error.
template <typename F>
auto with_json_errors(const fs::path& file, F&& f) {
  try {
    return f();
  } catch (const json::exception& e) {
    fail(Errc::invalid_model, "{}: unexpected content: {}", file.string(), e.what());
  }
}

// Python truthiness of a JSON value (None, "", {}, [], 0 and false are false).
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

// ---- SentencePiece model proto ---------------------------------------------------------------

struct SpModel {
  struct Piece {
    std::string text;
    float score = 0.0f;
    int type = 1;
  };
  std::vector<Piece> pieces;
  int model_type = 1;  // UNIGRAM unless the trainer spec says otherwise
  bool byte_fallback = false;
  bool treat_whitespace_as_suffix = false;
  int64_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  std::string normalizer_name;
  std::string charsmap;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

class ProtoReader {
 public:
  ProtoReader(const uint8_t* p, size_t n, const std::string& file) : p_(p), end_(p + n), file_(file) {}
  bool done() const { return p_ >= end_; }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) bad("truncated varint");
      const uint8_t b = *p_++;
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    bad("varint too long");
  }

  // Reads a field header; returns the field number and sets the wire type.
  uint32_t tag(int& wire) {
    const uint64_t t = varint();
    wire = static_cast<int>(t & 7);
    if ((t >> 3) == 0 || (t >> 3) > 0x1FFFFFFF) bad("bad field number");
    return static_cast<uint32_t>(t >> 3);
  }

  std::pair<const uint8_t*, size_t> bytes() {
    const uint64_t n = varint();
    if (n > static_cast<uint64_t>(end_ - p_)) bad("truncated field");
    const uint8_t* s = p_;
    p_ += n;
    return {s, static_cast<size_t>(n)};
  }

  float fixed32_float() {
    if (end_ - p_ < 4) bad("truncated float");
    uint32_t u = static_cast<uint32_t>(p_[0]) | (static_cast<uint32_t>(p_[1]) << 8) |
                 (static_cast<uint32_t>(p_[2]) << 16) | (static_cast<uint32_t>(p_[3]) << 24);
    p_ += 4;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }

  void skip(int wire) {
    switch (wire) {
      case 0: varint(); return;
      case 1: advance(8); return;
      case 2: bytes(); return;
      case 5: advance(4); return;
      default: bad("unsupported wire type");
    }
  }

  [[noreturn]] void bad(const char* what) const {
    fail(Errc::invalid_model, "{}: malformed SentencePiece model ({})", file_, what);
  }

 private:
  void advance(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) bad("truncated field");
    p_ += n;
  }
  const uint8_t* p_;
  const uint8_t* end_;
  const std::string& file_;
};

SpModel parse_sentencepiece(const fs::path& path) {
  const std::string data = read_bytes(path);
  const std::string file = path.string();
  SpModel m;
  ProtoReader top(reinterpret_cast<const uint8_t*>(data.data()), data.size(), file);
  auto expect = [&](ProtoReader& r, int wire, int want) {
    if (wire != want) r.bad("unexpected wire type");
  };
  while (!top.done()) {
    int wire = 0;
    const uint32_t field = top.tag(wire);
    if (field == 1) {
      expect(top, wire, 2);
      auto [p, n] = top.bytes();
      ProtoReader r(p, n, file);
      SpModel::Piece piece;
      while (!r.done()) {
        int w = 0;
        const uint32_t f = r.tag(w);
        if (f == 1 && w == 2) {
          auto [s, len] = r.bytes();
          piece.text.assign(reinterpret_cast<const char*>(s), len);
        } else if (f == 2 && w == 5) {
          piece.score = r.fixed32_float();
        } else if (f == 3 && w == 0) {
          piece.type = static_cast<int>(r.varint());
        } else {
          r.skip(w);
        }
      }
      if (piece.text.empty()) top.bad("empty piece");
      if (piece.type < 1 || piece.type > 6) top.bad("unknown piece type");
      m.pieces.push_back(std::move(piece));
    } else if (field == 2 && wire == 2) {
      auto [p, n] = top.bytes();
      ProtoReader r(p, n, file);
      while (!r.done()) {
        int w = 0;
        const uint32_t f = r.tag(w);
        if (w != 0) {
          r.skip(w);
          continue;
        }
        const auto v = r.varint();
        const auto as_int = static_cast<int64_t>(static_cast<int32_t>(static_cast<uint32_t>(v)));
        switch (f) {
          case 3: m.model_type = static_cast<int>(v); break;
          case 24: m.treat_whitespace_as_suffix = v != 0; break;
          case 35: m.byte_fallback = v != 0; break;
          case 40: m.unk_id = as_int; break;
          case 41: m.bos_id = as_int; break;
          case 42: m.eos_id = as_int; break;
          case 43: m.pad_id = as_int; break;
          default: break;
        }
      }
    } else if (field == 3 && wire == 2) {
      auto [p, n] = top.bytes();
      ProtoReader r(p, n, file);
      while (!r.done()) {
        int w = 0;
        const uint32_t f = r.tag(w);
        if (f == 1 && w == 2) {
          auto [s, len] = r.bytes();
          m.normalizer_name.assign(reinterpret_cast<const char*>(s), len);
        } else if (f == 2 && w == 2) {
          auto [s, len] = r.bytes();
          m.charsmap.assign(reinterpret_cast<const char*>(s), len);
        } else if (w == 0 && (f == 3 || f == 4 || f == 5)) {
          const bool v = r.varint() != 0;
          if (f == 3) m.add_dummy_prefix = v;
          if (f == 4) m.remove_extra_whitespaces = v;
          if (f == 5) m.escape_whitespaces = v;
        } else {
          r.skip(w);
        }
      }
    } else {
      top.skip(wire);
    }
  }
  if (m.pieces.empty()) fail(Errc::invalid_model, "{}: SentencePiece model without pieces", file);
  if (!m.charsmap.empty()) {
    uint32_t trie_bytes = 0;
    if (m.charsmap.size() >= 4) std::memcpy(&trie_bytes, m.charsmap.data(), 4);
    if (m.charsmap.size() < 4 || trie_bytes % 4 != 0 || trie_bytes > m.charsmap.size() - 4)
      fail(Errc::invalid_model, "{}: malformed SentencePiece model (precompiled normalization map)", file);
  }
  return m;
}

// ---- gguf-py's SpecialVocab, transcribed ------------------------------------------------------

struct SpecialVocab {
  std::vector<std::string> merges;
  std::vector<std::pair<std::string, int64_t>> ids;   // insertion order
  std::vector<std::pair<std::string, bool>> add;      // insertion order
  json chat_template;                                 // null, string or list
  std::optional<bool> lowercase, strip_accents;
  std::vector<std::string> types = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
  std::optional<size_t> n_vocab;

  void set_add(const std::string& typ, bool v) {
    for (auto& [k, x] : add)
      if (k == typ) {
        x = v;
        return;
      }
    add.emplace_back(typ, v);
  }

  void set_id(const std::string& typ, const json& tid, const fs::path& file) {
    if (!tid.is_number_integer() && !tid.is_number_unsigned()) return;
    const int64_t v = tid.get<int64_t>();
    if (v < 0) fail(Errc::invalid_model, "{}: invalid value for special token type {}: {}", file.string(), typ, v);
    if (n_vocab && static_cast<uint64_t>(v) >= *n_vocab) return;
    for (const auto& [k, x] : ids)
      if (k == typ) return;
    ids.emplace_back(typ, v);
  }

  void parse_normalizer(const json& n) {
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

  static std::string merge_string(const json& m) {
    if (m.is_string()) return m.get<std::string>();
    // Pairs (transformers >= 4.45) allow spaces inside parts; they are written as U+0120.
    std::string out;
    for (size_t k = 0; k < 2; ++k) {
      if (k) out += ' ';
      for (char c : m.at(k).get<std::string>()) {
        if (c == ' ') out += "\xC4\xA0";
        else out += c;
      }
    }
    return out;
  }

  void load(const fs::path& dir, bool load_merges) {
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

  void template_processing(const json& tokenizer, std::optional<json>& config) {
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

  void load_config_json(const fs::path& dir) {
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

  void load_merges_txt(const fs::path& dir) {
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
  void write(gguf::Metadata& out) const {
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

  std::optional<int64_t> id_of(const std::string& typ) const {
    for (const auto& [k, v] : ids)
      if (k == typ) return v;
    return std::nullopt;
  }
  std::optional<bool> add_of(const std::string& typ) const {
    for (const auto& [k, v] : add)
      if (k == typ) return v;
    return std::nullopt;
  }
};

int64_t parse_id(const std::string& key, const fs::path& file) {
  int64_t v = 0;
  if (key.empty() || key.size() > 10) fail(Errc::invalid_model, "{}: bad token id '{}'", file.string(), key);
  for (char c : key) {
    if (c < '0' || c > '9') fail(Errc::invalid_model, "{}: bad token id '{}'", file.string(), key);
    v = v * 10 + (c - '0');
  }
  return v;
}

// convert_hf_to_gguf.py's does_token_look_special.
bool looks_special(std::string_view t) {
  auto starts = [&](std::string_view p) { return t.size() >= p.size() && t.substr(0, p.size()) == p; };
  auto ends = [&](std::string_view p) { return t.size() >= p.size() && t.substr(t.size() - p.size()) == p; };
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (starts("<|") && ends("|>")) return true;
  if (starts("<\xEF\xBD\x9C") && ends("\xEF\xBD\x9C>")) return true;  // fullwidth bars (DeepSeek)
  return starts("<unused") && ends(">");
}

std::string replace_all_copy(std::string s, std::string_view from, std::string_view to) {
  std::string out;
  size_t i = 0;
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, i)) {
    out.append(s, i, at - i);
    out.append(to);
    i = at + from.size();
  }
  out.append(s, i, std::string::npos);
  return out;
}

std::optional<int64_t> config_vocab_size(const fs::path& dir, bool per_layer_first) {
  const fs::path file = dir / "config.json";
  std::optional<json> config = read_json_if_present(file);
  if (!config) return std::nullopt;
  return with_json_errors(file, [&]() -> std::optional<int64_t> {
    for (const char* key : {"vocab_size_per_layer_input", "vocab_size"}) {
      if (!per_layer_first && std::string_view(key) == "vocab_size_per_layer_input") continue;
      json v = member(*config, key);
      if (v.is_null() && config->contains("text_config")) v = member((*config)["text_config"], key);
      if (v.is_number_integer() || v.is_number_unsigned()) {
        const int64_t x = v.get<int64_t>();
        if (x <= 0 || x > kMaxVocab)
          fail(Errc::invalid_model, "{}: {} = {} is out of range (1..{})", file.string(), key, x, kMaxVocab);
        return x;
      }
    }
    return std::nullopt;
  });
}

// ---- tokenizer.json ----------------------------------------------------------------------------

struct AddedToken {
  int64_t id = 0;
  std::string content;
  bool special = false;
  bool normalized = true;
  bool lstrip = false;
  bool rstrip = false;
};

// The parts of a tokenizer.json that both the tokenizer and the converter need.
struct HfJson {
  std::string file;
  std::string model_type;
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<std::string> merges;
  std::vector<AddedToken> added;
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;
  std::optional<std::string> unk_token;
  detail::PreTokenizer pre;
  bool prepend_metaspace = false;  // normalizer Prepend("▁")
  bool replace_space = false;      // normalizer Replace(" " -> "▁")
  bool decoder_byte_level = false;
};

void parse_normalizer(const json& n, HfJson& h) {
  if (n.is_null()) return;
  const std::string type = n.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const auto& sub : n.at("normalizers")) parse_normalizer(sub, h);
  } else if (type == "NFC") {
    // Accepted as the identity, as llama.cpp does: text is expected in NFC already.
  } else if (type == "Prepend" && n.at("prepend").get<std::string>() == kMetaSpace) {
    h.prepend_metaspace = true;
  } else if (type == "Replace" && member(n.at("pattern"), "String") == " " &&
             n.at("content").get<std::string>() == kMetaSpace) {
    h.replace_space = true;
  } else {
    fail(Errc::invalid_model, "{}: unsupported normalizer '{}'", h.file, n.dump());
  }
}

HfJson parse_hf_json(const fs::path& path) {
  const json j = read_json(path);
  HfJson h;
  h.file = path.string();
  with_json_errors(path, [&] {
    const json& model = j.at("model");
    h.model_type = model.value("type", std::string("BPE"));
    if (h.model_type != "BPE")
      fail(Errc::invalid_model, "{}: tokenizer model type '{}' is not supported (BPE only)", h.file,
           h.model_type);
    if (!model.at("vocab").is_object()) fail(Errc::invalid_model, "{}: model.vocab must be an object", h.file);
    if (model.contains("merges") && !model["merges"].is_array())
      fail(Errc::invalid_model, "{}: model.merges must be an array", h.file);
    for (const auto& el : model.at("vocab").items()) h.vocab.emplace_back(el.key(), el.value().get<int64_t>());
    if (model.contains("merges") && model["merges"].is_array())
      for (const auto& m : model["merges"]) h.merges.push_back(SpecialVocab::merge_string(m));
    h.byte_fallback = model.value("byte_fallback", false);
    h.fuse_unk = model.value("fuse_unk", false);
    h.ignore_merges = model.value("ignore_merges", false);
    if (model.contains("unk_token") && model["unk_token"].is_string()) h.unk_token = model["unk_token"].get<std::string>();
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (truthy(member(model, key)))
        fail(Errc::invalid_model, "{}: BPE option {} is not supported", h.file, key);
    if (j.contains("added_tokens"))
      for (const auto& a : j.at("added_tokens")) {
        AddedToken t;
        t.id = a.at("id").get<int64_t>();
        t.content = a.at("content").get<std::string>();
        t.special = a.value("special", false);
        t.normalized = a.value("normalized", true);
        t.lstrip = a.value("lstrip", false);
        t.rstrip = a.value("rstrip", false);
        h.added.push_back(std::move(t));
      }
    parse_normalizer(member(j, "normalizer"), h);
    h.pre = detail::pretokenizer_from_json(member(j, "pre_tokenizer"), h.file);
    const json& dec = member(j, "decoder");
    h.decoder_byte_level = member(dec, "type") == "ByteLevel";
    return 0;
  });
  if (h.prepend_metaspace && !h.replace_space)
    fail(Errc::invalid_model, "{}: normalizer Prepend without Replace(' ') is not supported", h.file);
  for (const auto& [tok, id] : h.vocab)
    if (id < 0 || id > INT32_MAX) fail(Errc::invalid_model, "{}: token id {} out of range", h.file, id);
  for (const auto& a : h.added)
    if (a.id < 0 || a.id > INT32_MAX) fail(Errc::invalid_model, "{}: token id {} out of range", h.file, a.id);
  int64_t max_id = -1;
  for (const auto& [tok, id] : h.vocab) max_id = std::max(max_id, id);
  for (const auto& a : h.added) max_id = std::max(max_id, a.id);
  if (max_id >= kMaxVocab || max_id >= 2 * static_cast<int64_t>(h.vocab.size() + h.added.size()) + 65536)
    fail(Errc::invalid_model, "{}: token id {} is far beyond the {} tokens listed", h.file, max_id,
         h.vocab.size() + h.added.size());
  return h;
}

// Ids -> texts of the whole vocabulary (base vocab, then added tokens; holes are absent).
std::map<int64_t, std::string> reverse_vocab(const HfJson& h) {
  std::map<int64_t, std::string> rev;
  for (const auto& [tok, id] : h.vocab) rev[id] = tok;
  for (const auto& a : h.added) rev[a.id] = a.content;
  return rev;
}

// ---- metadata builders -------------------------------------------------------------------------

void sentencepiece_metadata(const fs::path& dir, gguf::Metadata& out) {
  const fs::path model_file = dir / "tokenizer.model";
  const SpModel sp = parse_sentencepiece(model_file);
  const fs::path cfg_file = dir / "tokenizer_config.json";
  const std::optional<json> cfg = read_json_if_present(cfg_file);

  if (cfg)
    with_json_errors(cfg_file, [&] {
      const json& aps = member(*cfg, "add_prefix_space");
      if (aps.is_boolean()) out.set("tokenizer.ggml.add_space_prefix", gguf::Value::boolean(aps.get<bool>()));
      return 0;
    });

  const size_t vocab_size =
      static_cast<size_t>(config_vocab_size(dir, true).value_or(static_cast<int64_t>(sp.pieces.size())));
  std::vector<std::string> tokens(vocab_size);
  std::vector<float> scores(vocab_size, -10000.0f);
  std::vector<int32_t> types(vocab_size, static_cast<int32_t>(TokenType::unused));
  for (size_t i = 0; i < vocab_size; ++i) tokens[i] = "[PAD" + std::to_string(i) + "]";
  for (size_t i = 0; i < sp.pieces.size() && i < vocab_size; ++i) {
    const auto& p = sp.pieces[i];
    TokenType t = TokenType::normal;
    if (p.type == 2) t = TokenType::unknown;
    else if (p.type == 3) t = TokenType::control;
    else if (p.type == 5) t = TokenType::unused;
    else if (p.type == 6) t = TokenType::byte;
    tokens[i] = p.text;
    scores[i] = p.score;
    types[i] = static_cast<int32_t>(t);
  }

  const fs::path added_file = dir / "added_tokens.json";
  if (const auto added = read_json_if_present(added_file))
    with_json_errors(added_file, [&] {
      for (const auto& el : added->items()) {
        const std::string& key = el.key();
        const int64_t id = el.value().get<int64_t>();
        if (id < 0 || static_cast<size_t>(id) >= vocab_size) continue;
        tokens[id] = key;
        scores[id] = -1000.0f;
        types[id] = static_cast<int32_t>(TokenType::user_defined);
      }
      return 0;
    });
  if (cfg)
    with_json_errors(cfg_file, [&] {
      const json& dec = member(*cfg, "added_tokens_decoder");
      if (!dec.is_object()) return 0;
      for (const auto& el : dec.items()) {
        const json& data = el.value();
        const int64_t id = parse_id(el.key(), cfg_file);
        std::string content = data.at("content").get<std::string>();
        if (id < 0 || static_cast<size_t>(id) >= vocab_size) continue;
        if (truthy(member(data, "special")) || looks_special(content)) {
          types[id] = static_cast<int32_t>(TokenType::control);
        } else {
          content = replace_all_copy(content, kMetaSpace, " ");
          types[id] = static_cast<int32_t>(TokenType::user_defined);
        }
        scores[id] = -1000.0f;
        tokens[id] = std::move(content);
      }
      return 0;
    });

  out.set("tokenizer.ggml.model", gguf::Value::string("llama"));
  out.set("tokenizer.ggml.pre", gguf::Value::string("default"));
  out.set("tokenizer.ggml.tokens", gguf::Value::strings(std::move(tokens)));
  out.set("tokenizer.ggml.scores", gguf::Value::array<float>(gguf::ValueType::FLOAT32, scores));
  out.set("tokenizer.ggml.token_type", gguf::Value::array<int32_t>(gguf::ValueType::INT32, types));
  SpecialVocab sv;
  sv.n_vocab = vocab_size;
  sv.load(dir, false);
  sv.write(out);
}

void bpe_metadata(const fs::path& dir, gguf::Metadata& out) {
  const fs::path tok_file = dir / "tokenizer.json";
  const HfJson h = parse_hf_json(tok_file);
  if (h.byte_fallback || !h.pre.byte_level())
    fail(Errc::invalid_model,
         "{}: a SentencePiece-style BPE tokenizer.json needs its tokenizer.model beside it for GGUF "
         "conversion",
         h.file);
  const auto pre = detail::detect_pretokenizer(h.pre);
  if (!pre)
    fail(Errc::invalid_model,
         "{}: BPE pre-tokenizer not recognized (supported: gpt-2, llama-bpe, qwen2, deepseek-coder, "
         "falcon, starcoder)",
         h.file);

  const auto rev = reverse_vocab(h);
  std::map<std::string, const AddedToken*> added_by_content;
  for (const auto& a : h.added) added_by_content.emplace(a.content, &a);
  std::map<int64_t, const AddedToken*> added_by_id;
  for (const auto& a : h.added) added_by_id[a.id] = &a;
  // transformers' added_tokens_decoder: tokenizer_config.json's entries override tokenizer.json's.
  std::map<int64_t, bool> special_override;
  const fs::path cfg_file = dir / "tokenizer_config.json";
  if (const auto cfg = read_json_if_present(cfg_file))
    with_json_errors(cfg_file, [&] {
      const json& dec = member(*cfg, "added_tokens_decoder");
      if (dec.is_object())
        for (const auto& el : dec.items())
          if (member(el.value(), "special").is_boolean())
            special_override[parse_id(el.key(), cfg_file)] = el.value()["special"].get<bool>();
      return 0;
    });

  const int64_t max_id = rev.empty() ? -1 : rev.rbegin()->first;
  const int64_t n_entries = static_cast<int64_t>(rev.size());
  const int64_t vocab_size = config_vocab_size(dir, false).value_or(n_entries);
  if (max_id >= vocab_size)
    fail(Errc::invalid_model, "{}: token id {} is not below the vocabulary size {}", h.file, max_id, vocab_size);

  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  tokens.reserve(static_cast<size_t>(vocab_size));
  types.reserve(static_cast<size_t>(vocab_size));
  for (int64_t i = 0; i < vocab_size; ++i) {
    auto it = rev.find(i);
    if (it == rev.end()) {
      tokens.push_back("[PAD" + std::to_string(i) + "]");
      types.push_back(static_cast<int32_t>(TokenType::unused));
      continue;
    }
    std::string token = it->second;
    TokenType t = TokenType::normal;
    if (added_by_content.count(token)) {
      bool special = false;
      if (auto a = added_by_id.find(i); a != added_by_id.end()) special = a->second->special;
      if (auto o = special_override.find(i); o != special_override.end()) special = o->second;
      if (special || looks_special(token)) {
        t = TokenType::control;
      } else {
        token = replace_all_copy(token, kMetaSpace, " ");
        t = TokenType::user_defined;
      }
    }
    tokens.push_back(std::move(token));
    types.push_back(static_cast<int32_t>(t));
  }

  out.set("tokenizer.ggml.model", gguf::Value::string("gpt2"));
  out.set("tokenizer.ggml.pre", gguf::Value::string(*pre));
  out.set("tokenizer.ggml.tokens", gguf::Value::strings(std::move(tokens)));
  out.set("tokenizer.ggml.token_type", gguf::Value::array<int32_t>(gguf::ValueType::INT32, types));
  SpecialVocab sv;
  sv.load(dir, true);
  sv.write(out);
}

// ---- Impl builders -----------------------------------------------------------------------------

std::shared_ptr<Tokenizer::Impl> impl_from_sentencepiece(const fs::path& path) {
  const SpModel sp = parse_sentencepiece(path);
  const std::string file = path.string();
  if (sp.model_type != 2)
    fail(Errc::invalid_model, "{}: SentencePiece model type {} is not supported (BPE models only)", file,
         sp.model_type == 1 ? "unigram" : std::to_string(sp.model_type));
  if (sp.treat_whitespace_as_suffix)
    fail(Errc::invalid_model, "{}: treat_whitespace_as_suffix is not supported", file);
  auto d = std::make_shared<Tokenizer::Impl>();
  d->source = file;
  d->kind = TokenizerKind::sentencepiece;
  d->model_name = "llama";
  d->pre_name = "default";
  for (const auto& p : sp.pieces) {
    d->tokens.push_back(p.text);
    d->scores.push_back(p.score);
    d->types.push_back(static_cast<TokenType>(p.type));
  }
  d->prefix = sp.add_dummy_prefix ? Tokenizer::Impl::Prefix::first_fragment : Tokenizer::Impl::Prefix::none;
  d->escape_spaces = sp.escape_whitespaces;
  d->remove_extra_spaces = sp.remove_extra_whitespaces;
  d->sentencepiece_normalizer = true;
  if (sp.escape_whitespaces) d->decode_space = kMetaSpace;
  d->decode_strip = sp.add_dummy_prefix;
  d->charsmap = sp.charsmap;
  d->byte_fallback = sp.byte_fallback;
  d->fuse_unk = true;
  d->bos = static_cast<int32_t>(sp.bos_id);
  d->eos = static_cast<int32_t>(sp.eos_id);
  d->unk = static_cast<int32_t>(sp.unk_id);
  d->pad = static_cast<int32_t>(sp.pad_id);
  d->add_bos = true;
  d->add_eos = false;
  d->build();
  return d;
}

std::shared_ptr<Tokenizer::Impl> impl_from_hf_json(const fs::path& path) {
  const HfJson h = parse_hf_json(path);
  auto d = std::make_shared<Tokenizer::Impl>();
  d->source = h.file;
  d->kind = TokenizerKind::bpe;
  const auto rev = reverse_vocab(h);
  const int64_t n = rev.empty() ? 0 : rev.rbegin()->first + 1;
  d->tokens.resize(static_cast<size_t>(n));
  d->types.assign(static_cast<size_t>(n), TokenType::unused);
  for (int64_t i = 0; i < n; ++i) d->tokens[i] = "[PAD" + std::to_string(i) + "]";
  for (const auto& [id, tok] : rev) {
    d->tokens[id] = tok;
    d->types[id] = TokenType::normal;
  }
  d->strip.assign(static_cast<size_t>(n), 0);
  for (const auto& a : h.added) {
    d->types[a.id] = a.special || looks_special(a.content) ? TokenType::control : TokenType::user_defined;
    d->strip[a.id] = static_cast<uint8_t>((a.lstrip ? 1 : 0) | (a.rstrip ? 2 : 0));
  }
  if (h.byte_fallback)
    for (int64_t i = 0; i < n; ++i)
      if (d->types[i] == TokenType::normal && d->tokens[i].size() == 6 && d->tokens[i].rfind("<0x", 0) == 0 &&
          d->tokens[i][5] == '>')
        d->types[i] = TokenType::byte;
  d->merges = h.merges;
  d->pre = h.pre;
  d->byte_fallback = h.byte_fallback;
  d->fuse_unk = h.fuse_unk;
  d->ignore_merges = h.ignore_merges;
  d->escape_spaces = h.replace_space;
  d->prefix = h.prepend_metaspace ? Tokenizer::Impl::Prefix::every_fragment : Tokenizer::Impl::Prefix::none;
  d->byte_level_decode = h.pre.byte_level() || h.decoder_byte_level;
  if (h.replace_space) {
    d->decode_space = kMetaSpace;
    d->decode_strip = h.prepend_metaspace;
  }
  for (const auto& step : h.pre.steps())
    if (step.kind == detail::PreStep::Kind::metaspace) {
      d->decode_space = step.replacement;
      d->decode_strip = step.prepend != detail::PreStep::Prepend::never;
    }
  d->model_name = d->byte_level_decode ? "gpt2" : "llama";
  d->pre_name = detail::detect_pretokenizer(h.pre).value_or(h.pre.empty() ? "default" : "");
  if (h.unk_token) {
    for (const auto& [tok, id] : h.vocab)
      if (tok == *h.unk_token) d->unk = static_cast<int32_t>(id);
  }
  // Special ids and flags as the converter reads them from the files beside tokenizer.json.
  SpecialVocab sv;
  sv.load(path.parent_path().empty() ? fs::path(".") : path.parent_path(), false);
  if (auto v = sv.id_of("bos")) d->bos = static_cast<int32_t>(*v);
  if (auto v = sv.id_of("eos")) d->eos = static_cast<int32_t>(*v);
  if (auto v = sv.id_of("unk")) d->unk = static_cast<int32_t>(*v);
  if (auto v = sv.id_of("pad")) d->pad = static_cast<int32_t>(*v);
  d->add_bos = sv.add_of("bos").value_or(false);
  d->add_eos = sv.add_of("eos").value_or(false);
  d->build();
  return d;
}

std::shared_ptr<Tokenizer::Impl> impl_from_gguf(const gguf::Metadata& meta, const std::string& what) {
  auto d = std::make_shared<Tokenizer::Impl>();
  d->source = what;
  const auto model = meta.get_string("tokenizer.ggml.model");
  if (!model) fail(Errc::invalid_model, "{}: no tokenizer.ggml.model key (no vocabulary)", what);
  const gguf::Value* toks = meta.find("tokenizer.ggml.tokens");
  if (!toks || !toks->is_array() || toks->elem_type() != gguf::ValueType::STRING)
    fail(Errc::invalid_model, "{}: tokenizer.ggml.tokens is missing or not a string array", what);
  d->tokens = toks->as_strings();
  const size_t n = d->tokens.size();
  for (size_t i = 0; i < n; ++i)
    if (d->tokens[i].empty()) d->tokens[i] = "[EMPTY_" + std::to_string(i) + "]";
  if (const gguf::Value* s = meta.find("tokenizer.ggml.scores")) {
    if (!s->is_array() || s->elem_type() == gguf::ValueType::STRING || s->size() < n)
      fail(Errc::invalid_model, "{}: tokenizer.ggml.scores must hold {} numbers", what, n);
    d->scores.resize(n);
    for (size_t i = 0; i < n; ++i) d->scores[i] = static_cast<float>(s->float_at(i));
  }
  if (const gguf::Value* t = meta.find("tokenizer.ggml.token_type")) {
    if (!t->is_array() || t->elem_type() == gguf::ValueType::STRING || t->size() < n)
      fail(Errc::invalid_model, "{}: tokenizer.ggml.token_type must hold {} integers", what, n);
    d->types.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t v = t->int_at(i);
      d->types[i] = v >= 0 && v <= 6 ? static_cast<TokenType>(v) : TokenType::undefined;
    }
  }
  auto get_bool = [&](const char* key, bool def) {
    const gguf::Value* v = meta.find(key);
    if (!v) return def;
    try {
      return v->as_bool();
    } catch (const Error&) {
      fail(Errc::invalid_model, "{}: {} is not a boolean", what, key);
    }
  };
  if (*model == "llama") {
    d->kind = TokenizerKind::sentencepiece;
    d->model_name = "llama";
    d->pre_name = "default";
    d->prefix = get_bool("tokenizer.ggml.add_space_prefix", true) ? Tokenizer::Impl::Prefix::every_fragment
                                                                  : Tokenizer::Impl::Prefix::none;
    d->escape_spaces = true;
    d->decode_space = kMetaSpace;
    d->decode_strip = d->prefix != Tokenizer::Impl::Prefix::none;
    d->byte_fallback = true;
    d->bos = 1;
    d->eos = 2;
    d->unk = 0;
    d->add_bos = true;
  } else if (*model == "gpt2") {
    d->kind = TokenizerKind::bpe;
    d->model_name = "gpt2";
    const gguf::Value* m = meta.find("tokenizer.ggml.merges");
    if (!m || !m->is_array() || m->elem_type() != gguf::ValueType::STRING)
      fail(Errc::invalid_model, "{}: tokenizer.ggml.merges is missing or not a string array", what);
    d->merges = m->as_strings();
    d->pre_name = meta.get_string("tokenizer.ggml.pre").value_or("default");
    const detail::NamedPreTokenizer* pre = detail::find_pretokenizer(d->pre_name);
    if (!pre) fail(Errc::invalid_model, "{}: unsupported pre-tokenizer '{}'", what, d->pre_name);
    d->pre = pre->pipeline;
    d->ignore_merges = pre->ignore_merges;
    d->byte_level_decode = true;
    d->bos = 11;
    d->eos = 11;
    d->add_bos = pre->ignore_merges;  // llama.cpp turns BOS on for the Llama 3 family
  } else {
    fail(Errc::invalid_model, "{}: unsupported tokenizer model '{}' (supported: llama, gpt2)", what, *model);
  }
  auto get_id = [&](const char* key, int32_t& id) {
    const gguf::Value* v = meta.find(key);
    if (!v) return;
    int64_t x = 0;
    try {
      x = v->as_int();
    } catch (const Error&) {
      fail(Errc::invalid_model, "{}: {} is not an integer", what, key);
    }
    if (x >= 0 && static_cast<size_t>(x) < n) id = static_cast<int32_t>(x);
  };
  get_id("tokenizer.ggml.bos_token_id", d->bos);
  get_id("tokenizer.ggml.eos_token_id", d->eos);
  get_id("tokenizer.ggml.unknown_token_id", d->unk);
  get_id("tokenizer.ggml.padding_token_id", d->pad);
  d->add_bos = get_bool("tokenizer.ggml.add_bos_token", d->add_bos);
  d->add_eos = get_bool("tokenizer.ggml.add_eos_token", d->add_eos);
  d->build();
  return d;
}

}  // namespace

Tokenizer Tokenizer::from_sentencepiece(const fs::path& model_file) {
  return Tokenizer(impl_from_sentencepiece(model_file));
}

Tokenizer Tokenizer::from_hf_json(const fs::path& tokenizer_json) {
  return Tokenizer(impl_from_hf_json(tokenizer_json));
}

Tokenizer Tokenizer::from_gguf(const gguf::Metadata& meta, const std::string& what) {
  return Tokenizer(impl_from_gguf(meta, what));
}

Tokenizer Tokenizer::from_gguf(const fs::path& gguf_file) {
  gguf::Reader reader(gguf_file);
  return Tokenizer(impl_from_gguf(reader.metadata(), gguf_file.string()));
}

Tokenizer Tokenizer::from_hf_dir(const fs::path& dir) {
  gguf::Metadata meta;
  tokenizer_gguf_metadata(dir, meta);
  return Tokenizer(impl_from_gguf(meta, dir.string()));
}

void tokenizer_gguf_metadata(const fs::path& hf_dir, gguf::Metadata& out) {
  std::error_code ec;
  if (!fs::is_directory(hf_dir, ec))
    fail(Errc::invalid_model, "{}: not a model directory", hf_dir.string());
  gguf::Metadata meta;
  if (fs::is_regular_file(hf_dir / "tokenizer.model", ec)) {
    sentencepiece_metadata(hf_dir, meta);
  } else if (fs::is_regular_file(hf_dir / "tokenizer.json", ec)) {
    bpe_metadata(hf_dir, meta);
  } else {
    fail(Errc::invalid_model, "{}: no tokenizer.model or tokenizer.json", hf_dir.string());
  }
  for (const auto& [key, value] : meta.entries()) out.set(key, value);
}

}  // namespace lq
