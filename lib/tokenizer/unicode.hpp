// Unicode helpers for the tokenizers: UTF-8 coding, general categories, GPT-2 byte-level map.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lq::detail {

/// Unicode general categories (Cn = unassigned). Order fixed by scripts/gen_unicode_data.py.
enum UCat : uint8_t {
  Cn, Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No, Pc, Pd, Ps, Pe, Pi, Pf, Po,
  Sm, Sc, Sk, So, Zs, Zl, Zp, Cc, Cf, Cs, Co, kUCatCount
};

/// Category bit sets for the one-letter classes (\p{L}, \p{N}, ...).
constexpr uint32_t cat_bit(UCat c) { return 1u << c; }
constexpr uint32_t kCatL = cat_bit(Lu) | cat_bit(Ll) | cat_bit(Lt) | cat_bit(Lm) | cat_bit(Lo);
constexpr uint32_t kCatM = cat_bit(Mn) | cat_bit(Mc) | cat_bit(Me);
constexpr uint32_t kCatN = cat_bit(Nd) | cat_bit(Nl) | cat_bit(No);
constexpr uint32_t kCatP = cat_bit(Pc) | cat_bit(Pd) | cat_bit(Ps) | cat_bit(Pe) | cat_bit(Pi) |
                           cat_bit(Pf) | cat_bit(Po);
constexpr uint32_t kCatS = cat_bit(Sm) | cat_bit(Sc) | cat_bit(Sk) | cat_bit(So);
constexpr uint32_t kCatZ = cat_bit(Zs) | cat_bit(Zl) | cat_bit(Zp);
constexpr uint32_t kCatC = cat_bit(Cn) | cat_bit(Cc) | cat_bit(Cf) | cat_bit(Cs) | cat_bit(Co);

struct UnicodeRun {
  uint32_t first;
  uint8_t cat;
};
extern const UnicodeRun kUnicodeRuns[];
extern const size_t kUnicodeRunCount;
extern const char kUnicodeVersion[];

/// General category of a code point (Cn above U+10FFFF).
UCat category(char32_t c) noexcept;
inline bool in_cats(char32_t c, uint32_t mask) noexcept { return (mask >> category(c)) & 1u; }
inline bool is_letter(char32_t c) noexcept { return in_cats(c, kCatL); }
/// Rust's char::is_numeric: Nd, Nl or No.
inline bool is_numeric(char32_t c) noexcept { return in_cats(c, kCatN); }
/// The White_Space property (what \s matches in Unicode regex engines).
bool is_whitespace(char32_t c) noexcept;
/// Hugging Face's punctuation test: ASCII punctuation or any P* category.
bool is_punctuation(char32_t c) noexcept;

constexpr char32_t kReplacementChar = 0xFFFD;

/// Decodes one code point at s[i], advancing i. Malformed or truncated sequences, overlong
/// forms and surrogates decode as U+FFFD consuming one byte.
char32_t utf8_next(std::string_view s, size_t& i) noexcept;
/// Decodes a whole string (malformed bytes become U+FFFD).
std::u32string utf8_decode(std::string_view s);
/// Appends the UTF-8 form of c.
void utf8_append(std::string& out, char32_t c);
std::string utf8_encode(std::u32string_view s);
/// Byte length of the UTF-8 sequence that starts with byte b (1 for stray continuation bytes).
inline size_t utf8_len(unsigned char b) noexcept {
  return b < 0x80 ? 1 : b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : b < 0xF8 ? 4 : 1;
}

/// GPT-2's reversible byte-to-character map: printable Latin-1 bytes map to themselves, the other
/// 68 bytes to U+0100.. in byte order.
char32_t byte_to_char(uint8_t b) noexcept;
/// Inverse of byte_to_char; returns -1 for a character outside the map.
int char_to_byte(char32_t c) noexcept;

}  // namespace lq::detail
