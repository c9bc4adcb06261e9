// Profile rule matching: a rule's glob and layer ranges against a tensor's GGUF and Hugging Face
// names. Must not decide types or read tensor data.
#include "profile/matcher.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"

#include "model/tensor_names.hpp"

#include <cctype>
#include <cmath>

namespace lq::profile {

std::optional<Range> parse_range(const std::string& s, int n_layer) {
  static const std::regex abs_re(R"(^(\d+)-(\d+)$)"), one_re(R"(^(\d+)$)"), rel_re(R"(^(\d+(?:\.\d+)?)%-(\d+(?:\.\d+)?)%$)");
  std::smatch m;
  Range r;
  r.any = false;
  if (std::regex_match(s, m, abs_re)) {
    r.lo = std::stoi(m[1]);
    r.hi = std::stoi(m[2]);
    return r;
  }
  if (std::regex_match(s, m, one_re)) {
    r.lo = r.hi = std::stoi(m[1]);
    return r;
  }
  if (std::regex_match(s, m, rel_re)) {
    // Layer i sits at relative depth i / (n_layer - 1); [a%, b%) selects the layers whose index
    // falls in [a * n / 100, b * n / 100), with 100% inclusive of the last layer.
    const double a = std::stod(m[1]), b = std::stod(m[2]);
    r.lo = static_cast<int>(std::floor(a * n_layer / 100.0 + 1e-9));
    r.hi = b >= 100.0 ? n_layer - 1 : static_cast<int>(std::ceil(b * n_layer / 100.0 - 1e-9)) - 1;
    return r;
  }
  return std::nullopt;
}

Matcher::Matcher(const ProfileRule& rule, int n_layer, const std::string& source) {
  // Segment-wise translation of the glob into a regex; a numeric-range segment becomes a
  // capture checked against the range.
  std::string re = "^";
  size_t start = 0;
  const std::string& p = rule.pattern;
  if (p.empty()) fail(Errc::profile_error, "{}: a rule has an empty pattern", source);
  while (start <= p.size()) {
    size_t dot = p.find('.', start);
    if (dot == std::string::npos) dot = p.size();
    const std::string seg = p.substr(start, dot - start);
    if (auto r = parse_range(seg, n_layer); r && seg.find_first_not_of("0123456789") != std::string::npos) {
      re += "(\\d+)";
      ranges_.push_back(*r);
    } else {
      for (char c : seg) {
        if (c == '*') re += ".*";
        else if (c == '?') re += ".";
        else if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') re += c;
        else {
          re += '\\';
          re += c;
        }
      }
    }
    if (dot < p.size()) re += "\\.";
    start = dot + 1;
  }
  re += "$";
  try {
    re_ = std::regex(re);
  } catch (const std::regex_error& e) {
    fail(Errc::profile_error, "{}: pattern '{}' is invalid: {}", source, p, e.what());
  }
  if (!rule.layers.empty()) {
    auto r = parse_range(rule.layers, n_layer);
    if (!r) fail(Errc::profile_error, "{}: rule '{}': layers '{}' is not a range like 0-3 or 0%-10%", source, p, rule.layers);
    layers_ = *r;
  }
}

bool Matcher::matches(const ModelTensor& t) const {
  const int layer = names::block_of(t.name);
  if (!layers_.any && (layer < layers_.lo || layer > layers_.hi)) return false;
  for (const std::string* name : {&t.name, &t.source_name}) {
    for (int strip = 0; strip < 2; ++strip) {
      std::string n = *name;
      if (strip) {
        if (n.size() < 7 || n.compare(n.size() - 7, 7, ".weight") != 0) continue;
        n.resize(n.size() - 7);
      }
      std::smatch m;
      if (!std::regex_match(n, m, re_)) continue;
      bool ok = true;
      for (size_t i = 0; i < ranges_.size() && ok; ++i) {
        const int v = std::stoi(m[i + 1].str());
        ok = v >= ranges_[i].lo && v <= ranges_[i].hi;
      }
      if (ok) return true;
    }
  }
  return false;
}

}  // namespace lq::profile
