// The pre-tokenizer regex engine (see regex.hpp): parsing a pattern into a small program over
// code points and matching it by backtracking, with a step budget and a depth bound. Knows no
// tokenizer or file format.
#include "tokenizer/regex.hpp"

#include "tokenizer/unicode.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace lq::detail {
namespace {

constexpr uint32_t kInf = std::numeric_limits<uint32_t>::max();

struct CharSet {
  std::vector<std::pair<char32_t, char32_t>> ranges;  // sorted and disjoint after finish()
  uint32_t cats = 0;               // member if the category is in this mask
  std::vector<uint32_t> not_cats;  // member if the category is outside one of these masks
  bool space = false;
  bool not_space = false;
  bool negate = false;
  std::array<uint64_t, 2> ascii{};  // final answer for code points below 128

  bool raw(char32_t c) const {
    auto it = std::upper_bound(ranges.begin(), ranges.end(), c,
                               [](char32_t v, const auto& r) { return v < r.first; });
    if (it != ranges.begin() && c <= std::prev(it)->second) return true;
    if (cats != 0 || !not_cats.empty()) {
      const UCat k = category(c);
      if ((cats >> k) & 1u) return true;
      for (uint32_t m : not_cats)
        if (!((m >> k) & 1u)) return true;
    }
    if (space && is_whitespace(c)) return true;
    if (not_space && !is_whitespace(c)) return true;
    return false;
  }

  void finish() {
    std::sort(ranges.begin(), ranges.end());
    std::vector<std::pair<char32_t, char32_t>> merged;
    for (const auto& r : ranges) {
      if (!merged.empty() && r.first <= merged.back().second + 1)
        merged.back().second = std::max(merged.back().second, r.second);
      else
        merged.push_back(r);
    }
    ranges = std::move(merged);
    ascii = {};
    for (char32_t c = 0; c < 128; ++c)
      if (raw(c) != negate) ascii[c >> 6] |= uint64_t{1} << (c & 63);
  }

  bool test(char32_t c) const {
    if (c < 128) return (ascii[c >> 6] >> (c & 63)) & 1u;
    return raw(c) != negate;
  }
};

struct Node;
using Seq = std::vector<Node>;

struct Node {
  enum Kind : uint8_t { kSet, kGroup, kLook, kAssert } kind = kSet;
  uint32_t min = 1;
  uint32_t max = 1;
  bool greedy = true;
  bool possessive = false;
  bool negate = false;   // negative look-ahead
  char32_t anchor = 0;   // '^', '$', 'A', 'z', 'Z', 'b', 'B'
  uint32_t set = 0;
  std::vector<Seq> alts;
};

bool is_word_char(char32_t c) {
  if (c < 128) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return in_cats(c, kCatL | kCatM | cat_bit(Nd) | cat_bit(Nl) | cat_bit(Pc));
}

constexpr uint32_t kWordCats = kCatL | kCatM | cat_bit(Nd) | cat_bit(Nl) | cat_bit(Pc);

class Parser {
 public:
  Parser(std::string_view src, std::vector<CharSet>& sets)
      : src_(src), p_(utf8_decode(src)), sets_(sets) {}

  std::vector<Seq> parse() {
    bool icase = false;
    auto alts = parse_alts(icase);
    if (pos_ != p_.size()) fail("unbalanced ')'");
    return alts;
  }

 private:
  [[noreturn]] void fail(std::string_view what) const {
    lq::fail(Errc::invalid_model, "tokenizer: unsupported or malformed regex '{}' at offset {}: {}",
             src_, pos_, what);
  }

  static constexpr int kMaxGroupDepth = 64;
  int depth_ = 0;

  bool more() const { return pos_ < p_.size(); }
  char32_t peek(size_t ahead = 0) const { return pos_ + ahead < p_.size() ? p_[pos_ + ahead] : 0; }

  std::vector<Seq> parse_alts(bool icase) {
    std::vector<Seq> alts(1);
    while (more()) {
      const char32_t c = peek();
      if (c == '|') {
        ++pos_;
        alts.emplace_back();
        continue;
      }
      if (c == ')') break;
      parse_item(alts.back(), icase);
    }
    return alts;
  }

  uint32_t add_set(CharSet cs) {
    cs.finish();
    sets_.push_back(std::move(cs));
    return static_cast<uint32_t>(sets_.size() - 1);
  }

  static void add_folded(CharSet& cs, char32_t lo, char32_t hi) {
    cs.ranges.emplace_back(lo, hi);
    auto add_one = [&](char32_t c) { cs.ranges.emplace_back(c, c); };
    for (char32_t c = std::max<char32_t>(lo, 'A'); c <= std::min<char32_t>(hi, 'Z'); ++c) add_one(c + 32);
    for (char32_t c = std::max<char32_t>(lo, 'a'); c <= std::min<char32_t>(hi, 'z'); ++c) add_one(c - 32);
    auto covers = [&](char32_t c) { return c >= lo && c <= hi; };
    if (covers('s') || covers('S')) add_one(0x17F);
    if (covers('k') || covers('K')) add_one(0x212A);
    if (covers(0x17F)) { add_one('s'); add_one('S'); }
    if (covers(0x212A)) { add_one('k'); add_one('K'); }
  }

  uint32_t parse_hex(size_t digits_min, size_t digits_max) {
    uint32_t v = 0;
    size_t k = 0;
    while (k < digits_max && more()) {
      const char32_t c = peek();
      int d = -1;
      if (c >= '0' && c <= '9') d = static_cast<int>(c - '0');
      else if (c >= 'a' && c <= 'f') d = static_cast<int>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = static_cast<int>(c - 'A' + 10);
      if (d < 0) break;
      v = v * 16 + static_cast<uint32_t>(d);
      ++pos_;
      ++k;
    }
    if (k < digits_min || v > 0x10FFFF) fail("bad hexadecimal escape");
    return v;
  }

  // Category-class escapes (\s \d \w \p{..} and their negations) applied to `cs`; returns false
  // (consuming nothing) when the escape after the backslash is not one of them.
  bool parse_class_escape(CharSet& cs) {
    const char32_t e = peek();
    switch (e) {
      case 's': ++pos_; cs.space = true; return true;
      case 'S': ++pos_; cs.not_space = true; return true;
      case 'd': ++pos_; cs.cats |= cat_bit(Nd); return true;
      case 'D': ++pos_; cs.not_cats.push_back(cat_bit(Nd)); return true;
      case 'w': ++pos_; cs.cats |= kWordCats; return true;
      case 'W': ++pos_; cs.not_cats.push_back(kWordCats); return true;
      case 'p':
      case 'P': {
        ++pos_;
        bool neg = e == 'P';
        std::string name;
        if (peek() == '{') {
          ++pos_;
          if (peek() == '^') {
            neg = !neg;
            ++pos_;
          }
          while (more() && peek() != '}') utf8_append(name, p_[pos_++]);
          if (!more()) fail("unterminated \\p{");
          ++pos_;
        } else if (more()) {
          utf8_append(name, p_[pos_++]);
        }
        const uint32_t mask = category_mask(name);
        if (neg) cs.not_cats.push_back(mask);
        else cs.cats |= mask;
        return true;
      }
      default:
        return false;
    }
  }

  uint32_t category_mask(const std::string& name) const {
    struct Entry {
      const char* a;
      const char* b;
      uint32_t mask;
    };
    static const Entry kTable[] = {
        {"L", "Letter", kCatL}, {"LC", "L&", cat_bit(Lu) | cat_bit(Ll) | cat_bit(Lt)},
        {"Lu", "Uppercase_Letter", cat_bit(Lu)}, {"Ll", "Lowercase_Letter", cat_bit(Ll)},
        {"Lt", "Titlecase_Letter", cat_bit(Lt)}, {"Lm", "Modifier_Letter", cat_bit(Lm)},
        {"Lo", "Other_Letter", cat_bit(Lo)}, {"M", "Mark", kCatM},
        {"Mn", "Nonspacing_Mark", cat_bit(Mn)}, {"Mc", "Spacing_Mark", cat_bit(Mc)},
        {"Me", "Enclosing_Mark", cat_bit(Me)}, {"N", "Number", kCatN},
        {"Nd", "Decimal_Number", cat_bit(Nd)}, {"Nl", "Letter_Number", cat_bit(Nl)},
        {"No", "Other_Number", cat_bit(No)}, {"P", "Punctuation", kCatP},
        {"Pc", "Connector_Punctuation", cat_bit(Pc)}, {"Pd", "Dash_Punctuation", cat_bit(Pd)},
        {"Ps", "Open_Punctuation", cat_bit(Ps)}, {"Pe", "Close_Punctuation", cat_bit(Pe)},
        {"Pi", "Initial_Punctuation", cat_bit(Pi)}, {"Pf", "Final_Punctuation", cat_bit(Pf)},
        {"Po", "Other_Punctuation", cat_bit(Po)}, {"S", "Symbol", kCatS},
        {"Sm", "Math_Symbol", cat_bit(Sm)}, {"Sc", "Currency_Symbol", cat_bit(Sc)},
        {"Sk", "Modifier_Symbol", cat_bit(Sk)}, {"So", "Other_Symbol", cat_bit(So)},
        {"Z", "Separator", kCatZ}, {"Zs", "Space_Separator", cat_bit(Zs)},
        {"Zl", "Line_Separator", cat_bit(Zl)}, {"Zp", "Paragraph_Separator", cat_bit(Zp)},
        {"C", "Other", kCatC}, {"Cc", "Control", cat_bit(Cc)}, {"Cf", "Format", cat_bit(Cf)},
        {"Cs", "Surrogate", cat_bit(Cs)}, {"Co", "Private_Use", cat_bit(Co)},
        {"Cn", "Unassigned", cat_bit(Cn)},
    };
    for (const auto& e : kTable)
      if (name == e.a || name == e.b) return e.mask;
    fail("unsupported property \\p{" + name + "}");
  }

  char32_t parse_char_escape() {
    if (!more()) fail("trailing backslash");
    const char32_t e = p_[pos_++];
    switch (e) {
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case 'f': return '\f';
      case 'v': return 0x0B;
      case 'a': return 0x07;
      case 'e': return 0x1B;
      case '0': return 0;
      case 'x':
        if (peek() == '{') {
          ++pos_;
          const uint32_t v = parse_hex(1, 8);
          if (peek() != '}') fail("unterminated \\x{");
          ++pos_;
          return v;
        }
        return parse_hex(2, 2);
      case 'u': return parse_hex(4, 4);
      case 'U': return parse_hex(8, 8);
      default:
        if ((e >= '0' && e <= '9') || (e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z'))
          fail("unsupported escape");
        return e;
    }
  }

  CharSet parse_class(bool icase) {
    ++pos_;  // '['
    CharSet cs;
    if (peek() == '^') {
      cs.negate = true;
      ++pos_;
    }
    bool first = true;
    for (;;) {
      if (!more()) fail("unterminated character class");
      const char32_t c = peek();
      if (c == ']' && !first) {
        ++pos_;
        break;
      }
      if (c == '[') fail("nested or POSIX classes are not supported");
      if (c == '&' && peek(1) == '&') fail("class intersection is not supported");
      first = false;
      char32_t lo;
      if (c == '\\') {
        ++pos_;
        if (parse_class_escape(cs)) continue;
        lo = parse_char_escape();
      } else {
        lo = c;
        ++pos_;
      }
      char32_t hi = lo;
      if (peek() == '-' && more() && peek(1) != ']' && pos_ + 1 < p_.size()) {
        ++pos_;
        if (peek() == '\\') {
          ++pos_;
          hi = parse_char_escape();
        } else {
          hi = p_[pos_++];
        }
        if (hi < lo) fail("class range out of order");
      }
      if (icase) add_folded(cs, lo, hi);
      else cs.ranges.emplace_back(lo, hi);
    }
    return cs;
  }

  Node literal(char32_t c, bool icase) {
    CharSet cs;
    if (icase) add_folded(cs, c, c);
    else cs.ranges.emplace_back(c, c);
    Node n;
    n.set = add_set(std::move(cs));
    return n;
  }

  bool parse_quantifier(uint32_t& lo, uint32_t& hi) {
    const char32_t c = peek();
    if (c == '*') { ++pos_; lo = 0; hi = kInf; return true; }
    if (c == '+') { ++pos_; lo = 1; hi = kInf; return true; }
    if (c == '?') { ++pos_; lo = 0; hi = 1; return true; }
    if (c != '{') return false;
    size_t q = pos_ + 1;
    auto number = [&](uint32_t& v) {
      const size_t s = q;
      uint64_t x = 0;
      while (q < p_.size() && p_[q] >= '0' && p_[q] <= '9') {
        x = x * 10 + (p_[q] - '0');
        if (x > 100000) fail("repetition count too large");
        ++q;
      }
      v = static_cast<uint32_t>(x);
      return q > s;
    };
    uint32_t a = 0, b = 0;
    if (!number(a)) return false;
    if (q < p_.size() && p_[q] == '}') {
      b = a;
    } else if (q < p_.size() && p_[q] == ',') {
      ++q;
      if (!number(b)) b = kInf;
      if (q >= p_.size() || p_[q] != '}') return false;
    } else {
      return false;
    }
    if (b < a) fail("repetition range out of order");
    pos_ = q + 1;
    lo = a;
    hi = b;
    return true;
  }

  void parse_item(Seq& seq, bool& icase) {
    const char32_t c = peek();
    Node atom;
    switch (c) {
      case '(': {
        ++pos_;
        bool sub_icase = icase;
        if (peek() == '?') {
          ++pos_;
          const char32_t k = peek();
          if (k == ':') {
            ++pos_;
          } else if (k == '=' || k == '!') {
            ++pos_;
            atom.kind = Node::kLook;
            atom.negate = k == '!';
          } else if (k == '<' && (peek(1) == '=' || peek(1) == '!')) {
            fail("look-behind is not supported");
          } else if (k == '<' || (k == 'P' && peek(1) == '<')) {
            while (more() && peek() != '>') ++pos_;
            if (!more()) fail("unterminated group name");
            ++pos_;
          } else {
            bool on = true;
            bool flag_i = icase;
            while (more() && peek() != ':' && peek() != ')') {
              const char32_t f = p_[pos_++];
              if (f == '-') on = false;
              else if (f == 'i') flag_i = on;
              else if (f == 'm' || f == 's' || f == 'x') fail("only the i flag is supported");
              else fail("unknown group syntax");
            }
            if (!more()) fail("unterminated group");
            if (peek() == ')') {
              ++pos_;
              icase = flag_i;
              return;
            }
            ++pos_;
            sub_icase = flag_i;
          }
        }
        if (atom.kind != Node::kLook) atom.kind = Node::kGroup;
        // The parser and the matcher recurse per group level: a bound keeps the stack bounded.
        if (++depth_ > kMaxGroupDepth) fail("groups nested too deeply");
        atom.alts = parse_alts(sub_icase);
        --depth_;
        if (peek() != ')') fail("missing ')'");
        ++pos_;
        break;
      }
      case '[':
        atom.set = add_set(parse_class(icase));
        break;
      case '.': {
        ++pos_;
        CharSet cs;
        cs.negate = true;
        cs.ranges.emplace_back('\n', '\n');
        atom.set = add_set(std::move(cs));
        break;
      }
      case '^':
      case '$':
        ++pos_;
        atom.kind = Node::kAssert;
        atom.anchor = c;
        break;
      case '\\': {
        ++pos_;
        const char32_t e = peek();
        if (e == 'b' || e == 'B' || e == 'A' || e == 'z' || e == 'Z') {
          ++pos_;
          atom.kind = Node::kAssert;
          atom.anchor = e;
          break;
        }
        CharSet cs;
        if (parse_class_escape(cs)) {
          atom.set = add_set(std::move(cs));
        } else {
          atom = literal(parse_char_escape(), icase);
        }
        break;
      }
      case '*':
      case '+':
      case '?':
        fail("nothing to repeat");
      default:
        ++pos_;
        atom = literal(c, icase);
        break;
    }

    uint32_t lo = 1, hi = 1;
    if (parse_quantifier(lo, hi)) {
      if (atom.kind == Node::kAssert || atom.kind == Node::kLook) fail("quantified assertion");
      bool greedy = true, possessive = false;
      if (peek() == '?') {
        greedy = false;
        ++pos_;
      } else if (peek() == '+') {
        possessive = true;
        ++pos_;
      }
      if (possessive && atom.kind != Node::kSet) fail("possessive groups are not supported");
      atom.min = lo;
      atom.max = hi;
      atom.greedy = greedy;
      atom.possessive = possessive;
      if (peek() == '*' || peek() == '+' || peek() == '?' ||
          (peek() == '{' && pos_ + 1 < p_.size() && p_[pos_ + 1] >= '0' && p_[pos_ + 1] <= '9'))
        fail("nested quantifier");
    }
    // A plain group with a single alternative is spliced into the sequence.
    if (atom.kind == Node::kGroup && atom.min == 1 && atom.max == 1 && atom.alts.size() == 1) {
      for (auto& n : atom.alts[0]) seq.push_back(std::move(n));
      return;
    }
    seq.push_back(std::move(atom));
  }

  std::string src_;
  std::u32string p_;
  size_t pos_ = 0;
  std::vector<CharSet>& sets_;
};

struct Frame {
  enum Kind : uint8_t { kSeq, kLoop, kLook } kind = kSeq;
  const Seq* seq = nullptr;
  size_t idx = 0;
  const Node* node = nullptr;
  uint32_t count = 0;
  size_t start = 0;
  const Frame* next = nullptr;
};

}  // namespace

struct Regex::Impl {
  std::string src;
  std::vector<CharSet> sets;
  std::vector<Seq> alts;
};

namespace {

// Backtracking can take exponential time on a hostile pattern ("(a+)+b" on a run of a's) and deep
// recursion on a repeated group over long text. A tokenizer.json is untrusted input, so each search
// has a budget of steps proportional to the text it covers and a bound on the recursion depth; past
// either the text is refused (Errc::invalid_model) naming the pattern. Real pre-tokenizer patterns
// take a few dozen steps a character and recurse only a few levels.
constexpr uint64_t kRegexStepsBase = 1u << 20, kRegexStepsPerChar = 4096;
constexpr int kRegexMaxDepth = 10000;
// The depth bound alone does not bound the stack: a level's frames are several times larger under
// the sanitizers (10000 levels overflowed the 8 MiB main stack under ASan) and a caller's thread
// may have a small stack. So the stack a search takes is bounded too, measured from the frame
// that started it.
constexpr uintptr_t kRegexMaxStackBytes = 256 * 1024;

uintptr_t regex_frame_address() { return reinterpret_cast<uintptr_t>(__builtin_frame_address(0)); }

class Matcher {
 public:
  Matcher(const std::vector<CharSet>& sets, const char32_t* s, size_t n, const std::string& pattern, size_t from)
      : sets_(sets), s_(s), n_(n), pattern_(pattern),
        budget_(kRegexStepsBase + kRegexStepsPerChar * static_cast<uint64_t>(n - std::min(from, n))),
        stack_top_(regex_frame_address()) {}

  bool at(const std::vector<Seq>& alts, size_t pos, size_t& end) {
    for (const auto& alt : alts) {
      if (seq(alt, 0, pos, nullptr)) {
        end = end_;
        return true;
      }
    }
    return false;
  }

 private:
  bool anchor_ok(char32_t a, size_t pos) const {
    switch (a) {
      case '^': return pos == 0 || s_[pos - 1] == '\n';
      case '$': return pos == n_ || s_[pos] == '\n';
      case 'A': return pos == 0;
      case 'z': return pos == n_;
      case 'Z': return pos == n_ || (pos + 1 == n_ && s_[pos] == '\n');
      case 'b':
      case 'B': {
        const bool before = pos > 0 && is_word_char(s_[pos - 1]);
        const bool after = pos < n_ && is_word_char(s_[pos]);
        return (before != after) == (a == 'b');
      }
      default: return false;
    }
  }

  bool resume(size_t pos, const Frame* k) {
    if (k == nullptr) {
      end_ = pos;
      return true;
    }
    switch (k->kind) {
      case Frame::kSeq: return seq(*k->seq, k->idx, pos, k->next);
      case Frame::kLoop:
        if (pos == k->start) return false;  // an empty iteration cannot make progress
        return loop(*k->node, k->count, pos, k->next);
      case Frame::kLook: return true;
    }
    return false;
  }

  bool loop(const Node& g, uint32_t count, size_t pos, const Frame* after) {
    auto body = [&] {
      if (count >= g.max) return false;
      const Frame f{Frame::kLoop, nullptr, 0, &g, count + 1, pos, after};
      for (const auto& alt : g.alts)
        if (seq(alt, 0, pos, &f)) return true;
      return false;
    };
    auto leave = [&] { return count >= g.min && resume(pos, after); };
    return g.greedy ? (body() || leave()) : (leave() || body());
  }

  struct DepthGuard {
    int& d;
    explicit DepthGuard(int& depth) : d(depth) { ++d; }
    ~DepthGuard() { --d; }
  };

  [[noreturn]] void too_costly(const char* what) const {
    lq::fail(Errc::invalid_model, "tokenizer: pattern '{}' {} on a text of {} characters (catastrophic backtracking; "
             "not a usable pre-tokenizer)", pattern_.size() > 80 ? pattern_.substr(0, 80) + "..." : pattern_, what, n_);
  }

  bool seq(const Seq& v, size_t i, size_t pos, const Frame* k) {
    if (++steps_ > budget_) too_costly("needs too many steps");
    const DepthGuard guard(depth_);
    if (depth_ > kRegexMaxDepth) too_costly("recurses too deeply");
    if (const uintptr_t here = regex_frame_address(); here < stack_top_ && stack_top_ - here > kRegexMaxStackBytes)
      too_costly("recurses too deeply");
    if (i == v.size()) return resume(pos, k);
    const Node& nd = v[i];
    switch (nd.kind) {
      case Node::kSet: {
        const CharSet& cs = sets_[nd.set];
        const size_t room = n_ - pos;
        const size_t lim = nd.max < room ? nd.max : room;
        size_t cnt = 0;
        while (cnt < lim && cs.test(s_[pos + cnt])) ++cnt;
        if (cnt < nd.min) return false;
        if (nd.possessive) return seq(v, i + 1, pos + cnt, k);
        if (nd.greedy) {
          for (size_t c = cnt + 1; c-- > nd.min;)
            if (seq(v, i + 1, pos + c, k)) return true;
        } else {
          for (size_t c = nd.min; c <= cnt; ++c)
            if (seq(v, i + 1, pos + c, k)) return true;
        }
        return false;
      }
      case Node::kGroup: {
        const Frame after{Frame::kSeq, &v, i + 1, nullptr, 0, 0, k};
        if (nd.min == 1 && nd.max == 1) {
          for (const auto& alt : nd.alts)
            if (seq(alt, 0, pos, &after)) return true;
          return false;
        }
        return loop(nd, 0, pos, &after);
      }
      case Node::kLook: {
        const Frame accept{Frame::kLook, nullptr, 0, nullptr, 0, 0, nullptr};
        bool found = false;
        for (const auto& alt : nd.alts) {
          if (seq(alt, 0, pos, &accept)) {
            found = true;
            break;
          }
        }
        if (found == nd.negate) return false;
        return seq(v, i + 1, pos, k);
      }
      case Node::kAssert:
        return anchor_ok(nd.anchor, pos) && seq(v, i + 1, pos, k);
    }
    return false;
  }

  const std::vector<CharSet>& sets_;
  const char32_t* s_;
  size_t n_;
  const std::string& pattern_;
  uint64_t budget_;
  uint64_t steps_ = 0;
  int depth_ = 0;
  uintptr_t stack_top_;  // the frame address where the search started (stacks grow down)
  size_t end_ = 0;
};

}  // namespace

Regex::Regex(std::string_view pattern) : impl_(std::make_unique<Impl>()) {
  impl_->src = std::string(pattern);
  Parser parser(pattern, impl_->sets);
  impl_->alts = parser.parse();
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

const std::string& Regex::pattern() const { return impl_->src; }

bool Regex::find(const char32_t* s, size_t n, size_t from, size_t& begin, size_t& end) const {
  Matcher m(impl_->sets, s, n, impl_->src, from);
  for (size_t pos = from; pos <= n; ++pos) {
    if (m.at(impl_->alts, pos, end)) {
      begin = pos;
      return true;
    }
  }
  return false;
}

}  // namespace lq::detail
