// Running pre-tokenizer pipelines (Hugging Face semantics): splitting a text fragment into the
// pieces the model encodes, and the step builders. Must not read tokenizer.json (pretok_json.cpp)
// or name pipelines (pretok_names.cpp).
#include "tokenizer/pretok.hpp"

#include "tokenizer/unicode.hpp"

#include <lq/error.hpp>

#include <algorithm>

namespace lq::detail {
namespace {

constexpr const char* kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

const Regex& gpt2_regex() {
  static const Regex re(kGpt2Regex);
  return re;
}

struct Event {
  size_t begin;
  size_t end;
  bool match;
};

struct Buffer {
  std::u32string s;
  std::vector<size_t> ends;
  void emit(const char32_t* p, size_t n) {
    if (n == 0) return;
    s.append(p, n);
    ends.push_back(s.size());
  }
};

void regex_events(const Regex& re, const char32_t* s, size_t n, std::vector<Event>& ev) {
  size_t prev = 0, pos = 0, b = 0, e = 0;
  while (pos <= n && re.find(s, n, pos, b, e)) {
    if (b > prev) ev.push_back({prev, b, false});
    ev.push_back({b, e, true});
    prev = e;
    pos = e > b ? e : e + 1;
  }
  if (prev < n) ev.push_back({prev, n, false});
}

void string_events(const std::u32string& pat, const char32_t* s, size_t n, std::vector<Event>& ev) {
  size_t prev = 0;
  if (!pat.empty()) {
    const std::u32string_view hay(s, n);
    for (size_t at = hay.find(pat); at != std::u32string_view::npos; at = hay.find(pat, at + pat.size())) {
      if (at > prev) ev.push_back({prev, at, false});
      ev.push_back({at, at + pat.size(), true});
      prev = at + pat.size();
    }
  }
  if (prev < n) ev.push_back({prev, n, false});
}

template <typename Pred>
void char_events(Pred pred, const char32_t* s, size_t n, std::vector<Event>& ev) {
  size_t prev = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!pred(s[i])) continue;
    if (i > prev) ev.push_back({prev, i, false});
    ev.push_back({i, i + 1, true});
    prev = i + 1;
  }
  if (prev < n) ev.push_back({prev, n, false});
}

// Applies a delimiter behaviour to match events and emits the resulting pieces.
void emit_split(std::vector<Event>& ev, SplitBehavior behavior, bool invert, const char32_t* s,
                Buffer& out) {
  if (invert)
    for (auto& e : ev) e.match = !e.match;
  std::vector<Event> acc;
  acc.reserve(ev.size());
  switch (behavior) {
    case SplitBehavior::removed:
      for (const auto& e : ev)
        if (!e.match) acc.push_back(e);
      break;
    case SplitBehavior::isolated:
      acc = ev;
      break;
    case SplitBehavior::merged_with_previous: {
      bool prev = false;
      for (const auto& e : ev) {
        if (e.match && !prev && !acc.empty()) acc.back().end = e.end;
        else acc.push_back(e);
        prev = e.match;
      }
      break;
    }
    case SplitBehavior::merged_with_next: {
      bool prev = false;
      for (auto it = ev.rbegin(); it != ev.rend(); ++it) {
        if (it->match && !prev && !acc.empty()) acc.back().begin = it->begin;
        else acc.push_back(*it);
        prev = it->match;
      }
      std::reverse(acc.begin(), acc.end());
      break;
    }
    case SplitBehavior::contiguous: {
      bool prev = false;
      for (const auto& e : ev) {
        if (e.match == prev && !acc.empty()) acc.back().end = e.end;
        else acc.push_back(e);
        prev = e.match;
      }
      break;
    }
  }
  for (const auto& e : acc) out.emit(s + e.begin, e.end - e.begin);
}

void emit_byte_level(const char32_t* s, size_t n, Buffer& out) {
  std::string utf8;
  for (size_t i = 0; i < n; ++i) {
    utf8.clear();
    utf8_append(utf8, s[i]);
    for (unsigned char b : utf8) out.s.push_back(byte_to_char(b));
  }
  if (n > 0) out.ends.push_back(out.s.size());
}

std::string canonical_pattern(const std::string& p) {
  std::string out;
  for (char c : p) {
    if (c == '\r') out += "\\r";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out;
}

}  // namespace

PreStep split_step(std::string pattern, SplitBehavior b) {
  PreStep s;
  s.kind = PreStep::Kind::split;
  s.pattern = std::move(pattern);
  s.behavior = b;
  return s;
}

PreStep byte_level_step(bool add_prefix_space, bool use_regex) {
  PreStep s;
  s.kind = PreStep::Kind::byte_level;
  s.add_prefix_space = add_prefix_space;
  s.use_regex = use_regex;
  return s;
}

PreStep digits_step(bool individual) {
  PreStep s;
  s.kind = PreStep::Kind::digits;
  s.individual_digits = individual;
  return s;
}

PreStep punctuation_step(SplitBehavior b) {
  PreStep s;
  s.kind = PreStep::Kind::punctuation;
  s.behavior = b;
  return s;
}

bool PreStep::same_as(const PreStep& o) const {
  if (kind != o.kind) return false;
  switch (kind) {
    case Kind::split:
      return canonical_pattern(pattern) == canonical_pattern(o.pattern) &&
             pattern_is_regex == o.pattern_is_regex && behavior == o.behavior && invert == o.invert;
    case Kind::byte_level:
      return add_prefix_space == o.add_prefix_space && use_regex == o.use_regex;
    case Kind::digits:
      return individual_digits == o.individual_digits;
    case Kind::punctuation:
      return behavior == o.behavior;
    case Kind::metaspace:
      return replacement == o.replacement && prepend == o.prepend && metaspace_split == o.metaspace_split;
  }
  return false;
}

PreTokenizer::PreTokenizer(std::vector<PreStep> steps) : steps_(std::move(steps)) {
  for (auto& s : steps_)
    if (s.kind == PreStep::Kind::split && s.pattern_is_regex && !s.regex)
      s.regex = std::make_shared<const Regex>(s.pattern);
}

bool PreTokenizer::byte_level() const {
  return std::any_of(steps_.begin(), steps_.end(),
                     [](const PreStep& s) { return s.kind == PreStep::Kind::byte_level; });
}

bool PreTokenizer::same_as(const PreTokenizer& o) const {
  if (steps_.size() != o.steps_.size()) return false;
  for (size_t i = 0; i < steps_.size(); ++i)
    if (!steps_[i].same_as(o.steps_[i])) return false;
  return true;
}

void PreTokenizer::run(std::string_view text, bool first, std::string& out, std::vector<size_t>& ends) const {
  Buffer cur, next;
  cur.s = utf8_decode(text);
  if (cur.s.empty()) return;
  cur.ends.push_back(cur.s.size());
  std::vector<Event> ev;
  std::u32string tmp;
  for (const auto& step : steps_) {
    next.s.clear();
    next.ends.clear();
    next.s.reserve(cur.s.size() + cur.s.size() / 4);
    size_t begin = 0;
    for (size_t end : cur.ends) {
      const char32_t* p = cur.s.data() + begin;
      const size_t n = end - begin;
      const bool at_start = first && begin == 0;
      begin = end;
      ev.clear();
      switch (step.kind) {
        case PreStep::Kind::split:
          if (step.pattern_is_regex) regex_events(*step.regex, p, n, ev);
          else string_events(utf8_decode(step.pattern), p, n, ev);
          emit_split(ev, step.behavior, step.invert, p, next);
          break;
        case PreStep::Kind::digits:
          char_events([](char32_t c) { return is_numeric(c); }, p, n, ev);
          emit_split(ev, step.individual_digits ? SplitBehavior::isolated : SplitBehavior::contiguous,
                     false, p, next);
          break;
        case PreStep::Kind::punctuation:
          char_events([](char32_t c) { return is_punctuation(c); }, p, n, ev);
          emit_split(ev, step.behavior, false, p, next);
          break;
        case PreStep::Kind::byte_level: {
          tmp.clear();
          if (step.add_prefix_space && p[0] != U' ') tmp.push_back(U' ');
          tmp.append(p, n);
          if (step.use_regex) {
            regex_events(gpt2_regex(), tmp.data(), tmp.size(), ev);
            for (const auto& e : ev) emit_byte_level(tmp.data() + e.begin, e.end - e.begin, next);
          } else {
            emit_byte_level(tmp.data(), tmp.size(), next);
          }
          break;
        }
        case PreStep::Kind::metaspace: {
          const char32_t rep = utf8_decode(step.replacement)[0];
          tmp.clear();
          const bool prepend = step.prepend == PreStep::Prepend::always ||
                               (step.prepend == PreStep::Prepend::first && at_start);
          if (prepend && p[0] != rep && p[0] != U' ') tmp.push_back(rep);
          for (size_t i = 0; i < n; ++i) tmp.push_back(p[i] == U' ' ? rep : p[i]);
          if (step.metaspace_split) {
            char_events([rep](char32_t c) { return c == rep; }, tmp.data(), tmp.size(), ev);
            emit_split(ev, SplitBehavior::merged_with_next, false, tmp.data(), next);
          } else {
            next.emit(tmp.data(), tmp.size());
          }
          break;
        }
      }
    }
    std::swap(cur, next);
    if (cur.s.empty()) return;
  }
  out.reserve(out.size() + cur.s.size() + cur.s.size() / 2);
  size_t begin = 0;
  for (size_t end : cur.ends) {
    for (size_t k = begin; k < end; ++k) utf8_append(out, cur.s[k]);
    ends.push_back(out.size());
    begin = end;
  }
}

}  // namespace lq::detail
