// lq::Tokenizer at work: building the lookup tables from what a loader filled in (Impl::build),
// encoding text (special tokens, SentencePiece normalization, pre-tokenization, merges, byte
// fallback), decoding ids, and the public accessors. Must not read files: loaders.cpp does.
#include "tokenizer/impl.hpp"
#include "tokenizer/unicode.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

namespace lq {
namespace {

using detail::kMetaSpace;
using detail::replace_all;

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Value of a "<0xHH>" byte token, or -1.
int byte_token_value(std::string_view t) {
  if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>') return -1;
  const int hi = hex_value(t[3]), lo = hex_value(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace

void detail::replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size() + s.size() / 2);
  size_t i = 0;
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, i)) {
    out.append(s, i, at - i);
    out.append(to);
    i = at + from.size();
  }
  out.append(s, i, std::string::npos);
  s = std::move(out);
}

void Tokenizer::Impl::PairMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n + n / 2) cap *= 2;  // load factor at most 2/3
  slots.assign(cap, Slot{kEmpty, -1, 0.0f});
  mask = cap - 1;
}

void Tokenizer::Impl::PairMap::insert(uint64_t key, int32_t id, float prio) {
  for (uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 20;; ++h) {
    Slot& s = slots[h & mask];
    if (s.key == key) return;
    if (s.key == kEmpty) {
      s = Slot{key, id, prio};
      return;
    }
  }
}

namespace {

// Code point of `t` when it is exactly one UTF-8 character, else -1.
int64_t single_char(std::string_view t) {
  if (t.empty()) return -1;
  size_t i = 0;
  const char32_t c = detail::utf8_next(t, i);
  if (i != t.size() || (c == detail::kReplacementChar && t != "\xEF\xBF\xBD")) return -1;
  return c;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Copies `text` with every malformed UTF-8 byte replaced by U+FFFD; false when it was valid.
bool sanitize_utf8(std::string_view text, std::string& out) {
  size_t i = 0;
  bool bad = false;
  while (i < text.size()) {
    const size_t start = i;
    const char32_t c = detail::utf8_next(text, i);
    if (c == detail::kReplacementChar && text.compare(start, 3, "\xEF\xBF\xBD") != 0) {
      bad = true;
      break;
    }
  }
  if (!bad) return false;
  out.clear();
  out.reserve(text.size() + 8);
  for (i = 0; i < text.size();) detail::utf8_append(out, detail::utf8_next(text, i));
  return true;
}

}  // namespace

int32_t Tokenizer::Impl::char_symbol(std::string_view ch) const {
  const auto b0 = static_cast<unsigned char>(ch[0]);
  if (b0 < 0x80) return low_chars[b0];
  if (ch.size() == 2 && b0 < 0xC6) {
    const char32_t c = ((b0 & 0x1Fu) << 6) | (static_cast<unsigned char>(ch[1]) & 0x3Fu);
    if (c < kLowChars) return low_chars[c];
  }
  auto it = char_ids.find(ch);
  return it == char_ids.end() ? -1 : it->second;
}

void Tokenizer::Impl::build() {
  const size_t n = tokens.size();
  if (n == 0) fail(Errc::invalid_model, "{}: the vocabulary is empty", source);
  if (n > static_cast<size_t>(INT32_MAX / 2)) fail(Errc::invalid_model, "{}: vocabulary too large", source);
  if (scores.empty()) scores.assign(n, 0.0f);
  if (types.empty()) types.assign(n, TokenType::normal);
  if (scores.size() != n || types.size() != n)
    fail(Errc::invalid_model, "{}: {} tokens but {} scores and {} token types", source, n, scores.size(),
         types.size());
  if (!strip.empty() && strip.size() != n) strip.clear();
  for (int32_t* id : {&bos, &eos, &unk, &pad})
    if (*id < 0 || static_cast<size_t>(*id) >= n) *id = -1;

  token_ids.clear();
  token_ids.reserve(n);
  for (size_t i = 0; i < n; ++i) token_ids.insert_or_assign(tokens[i], static_cast<int32_t>(i));
  has_duplicates = token_ids.size() != n;

  byte_tokens.fill(-1);
  for (size_t i = 0; i < n; ++i) {
    const int b = byte_token_value(tokens[i]);
    if (b >= 0 && (byte_tokens[b] < 0 || types[i] == TokenType::byte)) byte_tokens[b] = static_cast<int32_t>(i);
  }

  // Single characters: symbol ids the merge tables are keyed by.
  n_symbols = static_cast<int32_t>(n);
  low_chars.assign(kLowChars, -1);
  char_ids.clear();
  auto set_char = [&](std::string_view t, int32_t id) {
    const int64_t c = single_char(t);
    if (c < 0) return;
    if (c < kLowChars) low_chars[c] = id;
    else char_ids.insert_or_assign(std::string(t), id);
  };
  auto is_mergeable = [&](size_t i) {
    const TokenType t = types[i];
    return t == TokenType::normal || t == TokenType::user_defined || t == TokenType::unused ||
           t == TokenType::undefined;
  };
  pairs = PairMap{};
  has_unused = false;
  if (kind == TokenizerKind::sentencepiece) {
    // SentencePiece joins two adjacent symbols when the joined text is a normal, user-defined or
    // unused piece; a single character keeps the id of the first such piece of its text.
    for (size_t i = 0; i < n; ++i)
      if (!is_mergeable(i)) set_char(tokens[i], static_cast<int32_t>(i));
    for (size_t i = n; i-- > 0;)
      if (is_mergeable(i)) set_char(tokens[i], static_cast<int32_t>(i));
    detail::StringIdMap mergeable;
    for (size_t i = 0; i < n; ++i) {
      if (!is_mergeable(i)) continue;
      mergeable.emplace(tokens[i], static_cast<int32_t>(i));
      has_unused = has_unused || types[i] == TokenType::unused;
    }
    auto symbol_of = [&](std::string_view t) -> int32_t {
      if (single_char(t) >= 0) {
        int32_t id = char_symbol(t);
        if (id < 0) {
          id = n_symbols++;
          set_char(t, id);
        }
        return id;
      }
      auto it = mergeable.find(t);
      return it == mergeable.end() ? -1 : it->second;
    };
    size_t n_pairs = 0;
    for (const auto& [text, id] : mergeable)
      for (size_t k = 1; k < text.size(); ++k) n_pairs += (static_cast<unsigned char>(text[k]) & 0xC0) != 0x80;
    pairs.reserve(n_pairs);
    for (const auto& [text, id] : mergeable) {
      const std::string_view t(text);
      for (size_t k = detail::utf8_len(static_cast<unsigned char>(t[0])); k < t.size();
           k += detail::utf8_len(static_cast<unsigned char>(t[k]))) {
        const int32_t a = symbol_of(t.substr(0, k));
        if (a < 0) continue;
        const int32_t b = symbol_of(t.substr(k));
        if (b < 0) continue;
        pairs.insert(pair_key(a, b), id, -scores[id]);
      }
    }
  } else {
    for (size_t i = 0; i < n; ++i) set_char(tokens[i], static_cast<int32_t>(i));
    pairs.reserve(merges.size());
    std::string joined;
    for (size_t r = 0; r < merges.size(); ++r) {
      const std::string& m = merges[r];
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos) continue;
      const std::string_view left(m.data(), sp), right(m.data() + sp + 1, m.size() - sp - 1);
      joined.assign(left).append(right);
      const int32_t a = lookup(left), b = lookup(right), id = lookup(joined);
      if (a < 0 || b < 0 || id < 0) continue;
      pairs.insert(pair_key(a, b), id, static_cast<float>(r));
    }
  }
  pairable.assign(static_cast<size_t>(n_symbols), 0);
  for (const auto& s : pairs.slots) {
    if (s.key == PairMap::kEmpty) continue;
    pairable[s.key >> 32] = 1;
    pairable[s.key & 0xFFFFFFFFu] = 1;
  }

  // Adjacent characters inside tokens that merges can build: a text can be cut between any
  // other two characters without changing the result.
  low_bigrams.assign((static_cast<size_t>(kLowChars) * kLowChars + 63) / 64, 0);
  bigrams.clear();
  for (size_t i = 0; i < n; ++i) {
    if (kind == TokenizerKind::sentencepiece && !is_mergeable(i)) continue;
    const std::string_view t(tokens[i]);
    size_t k = 0;
    char32_t prev = detail::utf8_next(t, k);
    while (k < t.size()) {
      const char32_t c = detail::utf8_next(t, k);
      if (prev < kLowChars && c < kLowChars) {
        const size_t bit = prev * kLowChars + c;
        low_bigrams[bit >> 6] |= uint64_t{1} << (bit & 63);
      } else {
        bigrams.insert((static_cast<uint64_t>(prev) << 32) | c);
      }
      prev = c;
    }
  }

  for (auto& b : specials) b.clear();
  for (size_t i = 0; i < n; ++i) {
    const TokenType t = types[i];
    if ((t == TokenType::control || t == TokenType::user_defined || t == TokenType::unknown) &&
        !tokens[i].empty())
      specials[static_cast<unsigned char>(tokens[i][0])].push_back(static_cast<int32_t>(i));
  }
  for (auto& b : specials)
    std::stable_sort(b.begin(), b.end(), [&](int32_t x, int32_t y) {
      return tokens[x].size() > tokens[y].size();
    });
}

void Tokenizer::Impl::push_unknown(std::string_view piece, bool& prev_unk, std::vector<int32_t>& out) const {
  if (byte_fallback) {
    bool all = true;
    for (unsigned char b : piece) all = all && byte_tokens[b] >= 0;
    if (all) {
      for (unsigned char b : piece) out.push_back(byte_tokens[b]);
      prev_unk = false;
      return;
    }
  }
  if (unk < 0) return;
  if (fuse_unk && prev_unk) return;
  out.push_back(unk);
  prev_unk = true;
}

void Tokenizer::Impl::merge_symbols(
    std::string_view text, Scratch& sc,
    std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>>* rev) const {
  auto& syms = sc.syms;
  auto& heap = sc.heap;
  syms.clear();
  for (size_t i = 0; i < text.size();) {
    const size_t len = std::min(detail::utf8_len(static_cast<unsigned char>(text[i])), text.size() - i);
    syms.push_back({char_symbol(text.substr(i, len)), -1, -1, static_cast<uint32_t>(i), static_cast<uint32_t>(len)});
    i += len;
  }
  const auto count = static_cast<int32_t>(syms.size());
  for (int32_t k = 0; k < count; ++k) {
    syms[k].prev = k - 1;
    syms[k].next = k + 1 < count ? k + 1 : -1;
  }
  // Lowest priority value first; among equals the leftmost pair.
  auto worse = [](const Candidate& x, const Candidate& y) {
    return x.prio > y.prio || (x.prio == y.prio && x.left > y.left);
  };
  heap.clear();
  auto try_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const int32_t a = syms[l].id, b = syms[r].id;
    if (a < 0 || b < 0) return;
    const PairMap::Slot* slot = pairs.find(pair_key(a, b));
    if (!slot) return;
    heap.push_back({slot->prio, l, a, b, slot->id});
    std::push_heap(heap.begin(), heap.end(), worse);
    if (rev && types[slot->id] == TokenType::unused)
      (*rev)[text.substr(syms[l].start, syms[l].len + syms[r].len)] = {text.substr(syms[l].start, syms[l].len),
                                                                         text.substr(syms[r].start, syms[r].len)};
  };
  for (int32_t k = 1; k < count; ++k) try_pair(k - 1, k);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const Candidate c = heap.back();
    heap.pop_back();
    Sym& l = syms[c.left];
    if (l.id != c.left_id || l.next < 0) continue;
    Sym& r = syms[l.next];
    if (r.id != c.right_id) continue;
    l.id = c.merged;
    l.len += r.len;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    r.id = -2;
    try_pair(l.prev, c.left);
    try_pair(c.left, l.next);
  }
}

void Tokenizer::Impl::emit_symbol(
    std::string_view text, const Sym& s, bool& prev_unk, std::vector<int32_t>& out,
    const std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>>* rev) const {
  const std::string_view piece = text.substr(s.start, s.len);
  const auto n = static_cast<int32_t>(tokens.size());
  if (s.id < 0 || s.id >= n) {
    push_unknown(piece, prev_unk, out);
    return;
  }
  int32_t id = s.id;
  if (kind == TokenizerKind::sentencepiece) {
    if (has_duplicates) id = lookup(piece);
    if (rev && types[id] == TokenType::unused) {
      auto it = rev->find(piece);
      if (it != rev->end()) {
        for (std::string_view part : {it->second.first, it->second.second}) {
          Sym sub{lookup(part), -1, -1, static_cast<uint32_t>(part.data() - text.data()),
                  static_cast<uint32_t>(part.size())};
          emit_symbol(text, sub, prev_unk, out, rev);
        }
        return;
      }
    }
    if (id == unk) {
      push_unknown(piece, prev_unk, out);
      return;
    }
  }
  out.push_back(id);
  prev_unk = false;
}

void Tokenizer::Impl::encode_segment(std::string_view seg, bool cached, bool& prev_unk,
                                     std::vector<int32_t>& out, Scratch& sc) const {
  const std::vector<int32_t>* ids = nullptr;
  std::vector<int32_t> fresh;
  if (cached) {
    if (auto it = sc.cache.find(seg); it != sc.cache.end()) ids = &it->second;
  }
  if (!ids) {
    auto& syms = sc.syms;
    merge_symbols(seg, sc, nullptr);
    bool local_unk = false;
    for (int32_t k = 0; !syms.empty() && k != -1; k = syms[k].next) emit_symbol(seg, syms[k], local_unk, fresh, nullptr);
    if (!cached) {
      ids = &fresh;
    } else {
      if (sc.cache.size() >= (1u << 18)) sc.cache.clear();  // bounds memory on huge, varied inputs
      ids = &sc.cache.emplace(std::string(seg), std::move(fresh)).first->second;
    }
  }
  if (ids->empty()) return;
  // Unknown pieces were merged inside the part; the part's first may join the previous one.
  const size_t skip = fuse_unk && prev_unk && unk >= 0 && ids->front() == unk ? 1 : 0;
  out.insert(out.end(), ids->begin() + static_cast<long>(skip), ids->end());
  prev_unk = unk >= 0 && ids->back() == unk;
}

void Tokenizer::Impl::encode_merges(std::string_view text, bool segment, bool& prev_unk,
                                    std::vector<int32_t>& out, Scratch& sc) const {
  if (kind == TokenizerKind::sentencepiece && has_unused) {
    // SentencePiece keeps one split per unused piece text over the whole input, so the input
    // is not cut into parts.
    std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> rev;
    auto& syms = sc.syms;
    merge_symbols(text, sc, &rev);
    for (int32_t k = 0; !syms.empty() && k != -1; k = syms[k].next) emit_symbol(text, syms[k], prev_unk, out, &rev);
    return;
  }
  if (!segment) {
    encode_segment(text, false, prev_unk, out, sc);
    return;
  }
  size_t seg_begin = 0;
  bool prev_joinable = false;
  char32_t prev_cp = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t at = i;
    const char32_t cp = detail::utf8_next(text, i);
    const int32_t id = char_symbol(text.substr(at, i - at));
    const bool joinable = id >= 0 && pairable[id];
    if (at > seg_begin && !(prev_joinable && joinable && may_join(prev_cp, cp))) {
      const std::string_view seg = text.substr(seg_begin, at - seg_begin);
      encode_segment(seg, seg.size() <= 64, prev_unk, out, sc);
      seg_begin = at;
    }
    prev_joinable = joinable;
    prev_cp = cp;
  }
  if (seg_begin < text.size()) {
    const std::string_view seg = text.substr(seg_begin);
    encode_segment(seg, seg.size() <= 64, prev_unk, out, sc);
  }
}

// The precompiled map is a little-endian uint32 trie size, a double-array trie over UTF-8 bytes
// (darts-clone layout, one uint32 unit per node) and a blob of NUL-terminated replacements that
// the trie's leaf values point into.
std::pair<std::string_view, size_t> Tokenizer::Impl::charsmap_match(std::string_view in) const {
  if (charsmap.size() < 4) return {{}, 0};
  uint32_t trie_bytes;
  std::memcpy(&trie_bytes, charsmap.data(), 4);
  const size_t n_units = trie_bytes / 4;
  const char* units = charsmap.data() + 4;
  const std::string_view blob(charsmap.data() + 4 + trie_bytes, charsmap.size() - 4 - trie_bytes);
  auto unit_at = [&](size_t k) {
    uint32_t u;
    std::memcpy(&u, units + 4 * k, 4);
    return u;
  };
  auto offset = [](uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); };
  size_t best_len = 0;
  uint32_t best_value = 0;
  if (n_units == 0) return {{}, 0};
  size_t node = offset(unit_at(0));
  for (size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    node ^= c;
    if (node >= n_units) break;
    const uint32_t u = unit_at(node);
    if ((u & ((1u << 31) | 0xFFu)) != c) break;  // label check
    node ^= offset(u);
    if (node >= n_units) break;
    if ((u >> 8) & 1u) {  // has a leaf: its value is the replacement's offset
      best_len = i + 1;
      best_value = unit_at(node) & ((1u << 31) - 1);
    }
  }
  if (best_len == 0 || best_value >= blob.size()) return {{}, 0};
  const size_t end = blob.find('\0', best_value);
  return {blob.substr(best_value, (end == std::string_view::npos ? blob.size() : end) - best_value), best_len};
}

int32_t Tokenizer::Impl::match_special(std::string_view text, size_t pos, bool parse_special) const {
  for (int32_t id : specials[static_cast<unsigned char>(text[pos])]) {
    const TokenType t = types[id];
    if (!parse_special && (t == TokenType::control || t == TokenType::unknown)) continue;
    const std::string& tok = tokens[id];
    if (text.compare(pos, tok.size(), tok) == 0) return id;
  }
  return -1;
}

std::string Tokenizer::Impl::normalize_sentencepiece(std::string_view text, bool parse_special) const {
  auto next = [&](size_t i) -> std::pair<std::string_view, size_t> {
    const std::string_view rest = text.substr(i);
    if (const int32_t id = match_special(text, i, parse_special); id >= 0)
      return {rest.substr(0, tokens[id].size()), tokens[id].size()};
    if (auto m = charsmap_match(rest); m.second > 0) return m;
    const size_t len = std::min(detail::utf8_len(static_cast<unsigned char>(rest[0])), rest.size());
    return {rest.substr(0, len), len};
  };
  const std::string_view space = escape_spaces ? kMetaSpace : std::string_view(" ");
  std::string out;
  size_t i = 0;
  if (remove_extra_spaces) {
    while (i < text.size()) {
      const auto p = next(i);
      if (p.first != " ") break;
      i += p.second;
    }
  }
  if (i >= text.size()) return out;
  out.reserve(text.size() + 16);
  if (prefix != Prefix::none) out += space;
  bool prev_space = remove_extra_spaces;
  while (i < text.size()) {
    const auto p = next(i);
    std::string_view sp = p.first;
    while (prev_space && !sp.empty() && sp[0] == ' ') sp.remove_prefix(1);
    if (!sp.empty()) {
      for (char c : sp) {
        if (c == ' ') out += space;
        else out += c;
      }
      prev_space = sp.back() == ' ';
    }
    i += p.second;
    if (!remove_extra_spaces) prev_space = false;
  }
  if (remove_extra_spaces)
    while (out.size() >= space.size() && out.compare(out.size() - space.size(), space.size(), space) == 0)
      out.resize(out.size() - space.size());
  return out;
}

void Tokenizer::Impl::encode_fragment(std::string_view text, bool at_start, std::vector<int32_t>& out,
                                      Scratch& sc) const {
  std::string s;
  if (sentencepiece_normalizer) {  // the whole input was normalized already
    bool prev_unk = false;
    encode_merges(text, true, prev_unk, out, sc);
    return;
  }
  if (remove_extra_spaces) {
    s.reserve(text.size());
    bool pending = false;
    for (char c : text) {
      if (c == ' ') {
        pending = !s.empty();
        continue;
      }
      if (pending) s.push_back(' ');
      pending = false;
      s.push_back(c);
    }
  } else {
    s.assign(text);
  }
  if (s.empty()) return;
  if (prefix == Prefix::every_fragment || (prefix == Prefix::first_fragment && at_start)) s.insert(0, 1, ' ');
  if (escape_spaces) replace_all(s, " ", kMetaSpace);

  bool prev_unk = false;
  if (kind == TokenizerKind::sentencepiece || pre.empty()) {
    encode_merges(s, true, prev_unk, out, sc);
    return;
  }
  std::string pieces;
  std::vector<size_t> ends;
  pre.run(s, at_start, pieces, ends);
  size_t begin = 0;
  for (size_t end : ends) {
    const std::string_view p = std::string_view(pieces).substr(begin, end - begin);
    begin = end;
    if (ignore_merges) {
      const int32_t id = lookup(p);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
    }
    prev_unk = false;  // unknown characters fuse within a piece only
    encode_segment(p, p.size() <= 64, prev_unk, out, sc);
  }
}

void Tokenizer::Impl::encode(std::string_view input, bool add_special, bool parse_special,
                             std::vector<int32_t>& out) const {
  std::string clean;
  std::string_view text = sanitize_utf8(input, clean) ? std::string_view(clean) : input;
  // SentencePiece normalizes the whole text first and then finds its special symbols in it.
  std::string normalized;
  if (sentencepiece_normalizer) {
    normalized = normalize_sentencepiece(text, parse_special);
    text = normalized;
  }
  if (add_special && add_bos && bos >= 0) out.push_back(bos);
  Scratch sc;
  size_t raw_begin = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const int32_t hit = match_special(text, pos, parse_special);
    if (hit < 0) {
      ++pos;
      continue;
    }
    const uint8_t flags = strip.empty() ? 0 : strip[hit];
    size_t raw_end = pos;
    if (flags & 1)
      while (raw_end > raw_begin && is_ascii_space(text[raw_end - 1])) --raw_end;
    if (raw_end > raw_begin) encode_fragment(text.substr(raw_begin, raw_end - raw_begin), raw_begin == 0, out, sc);
    out.push_back(hit);
    pos += tokens[hit].size();
    if (flags & 2)
      while (pos < text.size() && is_ascii_space(text[pos])) ++pos;
    raw_begin = pos;
  }
  if (raw_begin < text.size()) encode_fragment(text.substr(raw_begin), raw_begin == 0, out, sc);
  if (add_special && add_eos && eos >= 0) out.push_back(eos);
}

// ---- Tokenizer -------------------------------------------------------------------------------

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  impl_->encode(text, add_special, parse_special, out);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool special) const {
  const Impl& d = *impl_;
  std::string out;
  bool strip_next = d.decode_strip;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= d.tokens.size())
      fail(Errc::invalid_argument, "decode: token id {} is outside the vocabulary (size {})", id,
           d.tokens.size());
    const std::string& t = d.tokens[id];
    const TokenType type = d.types[id];
    const size_t before = out.size();
    if (type == TokenType::control || type == TokenType::unknown) {
      if (special) out += t;
      continue;
    }
    if (type == TokenType::user_defined) {
      out += t;
    } else if (d.byte_level_decode) {
      for (char32_t c : detail::utf8_decode(t)) {
        const int b = detail::char_to_byte(c);
        if (b >= 0) out.push_back(static_cast<char>(b));
        else detail::utf8_append(out, c);
      }
    } else if (const int b = byte_token_value(t); b >= 0 && (type == TokenType::byte || d.byte_fallback)) {
      out.push_back(static_cast<char>(b));
    } else {
      std::string piece = t;
      if (!d.decode_space.empty()) replace_all(piece, d.decode_space, " ");
      out += piece;
    }
    if (strip_next && before == 0 && out.size() > 0 && out[0] == ' ') out.erase(0, 1);
    strip_next = false;
  }
  return out;
}

TokenizerKind Tokenizer::kind() const { return impl_->kind; }
const std::string& Tokenizer::model_name() const { return impl_->model_name; }
const std::string& Tokenizer::pre_name() const { return impl_->pre_name; }
size_t Tokenizer::vocab_size() const { return impl_->tokens.size(); }

const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->tokens.size())
    fail(Errc::invalid_argument, "token id {} is outside the vocabulary (size {})", id, impl_->tokens.size());
  return impl_->tokens[id];
}

TokenType Tokenizer::token_type(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->types.size())
    fail(Errc::invalid_argument, "token id {} is outside the vocabulary (size {})", id, impl_->types.size());
  return impl_->types[id];
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  const int32_t id = impl_->lookup(text);
  if (id < 0) return std::nullopt;
  return id;
}

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::unk_id() const { return impl_->unk; }
int32_t Tokenizer::pad_id() const { return impl_->pad; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::add_eos() const { return impl_->add_eos; }

}  // namespace lq
