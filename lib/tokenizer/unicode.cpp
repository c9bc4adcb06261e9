// Unicode helpers for the tokenizers (see unicode.hpp): UTF-8 coding, category lookups over the
// generated table in unicode_data.cpp, GPT-2's byte-level map. No tokenizer logic here.
#include "tokenizer/unicode.hpp"

#include <algorithm>
#include <array>
#include <string>
#include <unordered_map>
#include <vector>

namespace lq::detail {
namespace {

// Two-stage table built once from the runs: stage1 maps a 256-code-point block to a
// deduplicated block of categories (about 60 KiB instead of 1.1 MiB for a flat table).
struct CategoryTable {
  std::vector<uint16_t> stage1;
  std::vector<uint8_t> blocks;

  CategoryTable() {
    constexpr uint32_t kBlocks = 0x110000 >> 8;
    stage1.resize(kBlocks);
    std::string block(256, '\0');
    std::unordered_map<std::string, uint16_t> seen;
    size_t run = 0;
    for (uint32_t b = 0; b < kBlocks; ++b) {
      for (uint32_t j = 0; j < 256; ++j) {
        const uint32_t cp = (b << 8) | j;
        while (run + 1 < kUnicodeRunCount && kUnicodeRuns[run + 1].first <= cp) ++run;
        block[j] = static_cast<char>(kUnicodeRuns[run].cat);
      }
      auto [it, fresh] = seen.emplace(block, static_cast<uint16_t>(seen.size()));
      if (fresh) blocks.insert(blocks.end(), block.begin(), block.end());
      const uint16_t found = it->second;
      stage1[b] = static_cast<uint16_t>(found);
    }
  }
};

const CategoryTable& table() {
  static const CategoryTable t;
  return t;
}

struct ByteMap {
  std::array<char32_t, 256> to_char{};
  std::array<int16_t, 324> to_byte{};  // characters used are < U+0144

  ByteMap() {
    to_byte.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const char32_t c = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
      to_char[b] = c;
      to_byte[c] = static_cast<int16_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

}  // namespace

UCat category(char32_t c) noexcept {
  if (c >= 0x110000) return Cn;
  const auto& t = table();
  return static_cast<UCat>(t.blocks[static_cast<size_t>(t.stage1[c >> 8]) * 256 + (c & 0xFF)]);
}

bool is_whitespace(char32_t c) noexcept {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool is_punctuation(char32_t c) noexcept {
  if (c < 0x80) return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
                       (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
  return in_cats(c, kCatP);
}

char32_t utf8_next(std::string_view s, size_t& i) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  const size_t len = utf8_len(b0);
  if (len == 1 || i + len > s.size()) {
    ++i;
    return kReplacementChar;
  }
  char32_t c = b0 & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return kReplacementChar;
    }
    c = (c << 6) | (b & 0x3F);
  }
  static constexpr char32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < kMin[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
    ++i;
    return kReplacementChar;
  }
  i += len;
  return c;
}

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out.push_back(utf8_next(s, i));
  return out;
}

void utf8_append(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) utf8_append(out, c);
  return out;
}

char32_t byte_to_char(uint8_t b) noexcept { return byte_map().to_char[b]; }

int char_to_byte(char32_t c) noexcept {
  const auto& m = byte_map();
  return c < m.to_byte.size() ? m.to_byte[c] : -1;
}

}  // namespace lq::detail
