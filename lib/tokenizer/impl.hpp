// Internal: the state of lq::Tokenizer, filled by the loaders (loaders.cpp) and read by the
// encoder and decoder (tokenizer.cpp). Holds no file reading.
#pragma once

#include "tokenizer/pretok.hpp"

#include <lq/tokenizer.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace lq::detail {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

/// "▁" (U+2581), SentencePiece's visible space.
inline constexpr std::string_view kMetaSpace = "\xE2\x96\x81";

/// Replaces every occurrence of `from` (not empty) in s by `to`, left to right.
void replace_all(std::string& s, std::string_view from, std::string_view to);

}  // namespace lq::detail

namespace lq {

struct Tokenizer::Impl {
  // ---- what the loaders fill in --------------------------------------------------------------
  enum class Prefix { none, every_fragment, first_fragment };

  std::string source;  // file or description, for messages
  TokenizerKind kind = TokenizerKind::bpe;
  std::string model_name;
  std::string pre_name;
  std::vector<std::string> tokens;
  std::vector<float> scores;      // sentencepiece: merge priority (higher first)
  std::vector<TokenType> types;
  std::vector<std::string> merges;  // bpe: "left right", rank = index
  detail::PreTokenizer pre;         // bpe: empty = one piece per text fragment
  Prefix prefix = Prefix::none;     // space added in front of text fragments
  bool escape_spaces = false;       // ' ' -> "▁" before the model runs
  bool remove_extra_spaces = false; // SentencePiece: trim and squeeze runs of ' '
  bool sentencepiece_normalizer = false;  // normalize as SentencePiece does (charsmap, spaces)
  std::string charsmap;             // SentencePiece precompiled normalization rules (may be empty)
  bool byte_fallback = false;       // unknown characters -> <0xXX> tokens
  bool fuse_unk = true;             // consecutive unknown characters -> one unk token
  bool ignore_merges = false;       // bpe: a piece that is a token is not merged (Llama 3)
  bool byte_level_decode = false;   // decode maps GPT-2 byte characters back to bytes
  std::string decode_space;         // decode turns this visible space ("▁") back into ' '
  bool decode_strip = false;        // decode drops the space the encoder put in front
  int32_t bos = -1, eos = -1, unk = -1, pad = -1;
  bool add_bos = false, add_eos = false;
  std::vector<uint8_t> strip;  // per token (optional): bit 0 = lstrip, bit 1 = rstrip

  /// Validates the fields and builds the lookup tables; throws Errc::invalid_model.
  void build();

  // ---- built tables ----------------------------------------------------------------------------
  /// Open-addressing map from a symbol pair (left id << 32 | right id) to the merged symbol.
  struct PairMap {
    struct Slot {
      uint64_t key;
      int32_t id;     // merged symbol
      float prio;     // lower merges first: BPE rank, or minus the SentencePiece score
    };
    std::vector<Slot> slots;
    uint64_t mask = 0;
    static constexpr uint64_t kEmpty = ~uint64_t{0};
    void reserve(size_t n);
    void insert(uint64_t key, int32_t id, float prio);  // keeps an existing entry
    const Slot* find(uint64_t key) const {
      if (slots.empty()) return nullptr;
      for (uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 20;; ++h) {
        const Slot& s = slots[h & mask];
        if (s.key == key) return &s;
        if (s.key == kEmpty) return nullptr;
      }
    }
  };
  struct Sym {
    int32_t id;  // symbol id: token id, or >= n_tokens for a character without a token, -1 unknown
    int32_t prev, next;
    uint32_t start, len;
  };
  struct Candidate {
    float prio;
    int32_t left;
    int32_t left_id, right_id, merged;
  };
  struct Scratch {
    std::vector<Sym> syms;
    std::vector<Candidate> heap;
    std::unordered_map<std::string, std::vector<int32_t>, detail::StringHash, std::equal_to<>> cache;
  };

  detail::StringIdMap token_ids;   // every token (later duplicates win, as in llama.cpp)
  PairMap pairs;                   // every merge the model can make
  std::vector<int32_t> low_chars;  // symbol id of code points below kLowChars
  detail::StringIdMap char_ids;    // symbol id of other single characters
  std::vector<uint8_t> pairable;   // per symbol id: appears in some pair
  std::vector<uint64_t> low_bigrams;  // bit set over (a, b) < kLowChars: "ab" occurs in a token
  std::unordered_set<uint64_t> bigrams;  // the same for other code points
  int32_t n_symbols = 0;
  bool has_unused = false;         // sentencepiece: unused pieces are split back after merging
  bool has_duplicates = false;     // some text names several tokens
  std::array<int32_t, 256> byte_tokens{};           // <0xXX> ids, -1 when absent
  std::array<std::vector<int32_t>, 256> specials;  // candidates by first byte, longest first
  static constexpr char32_t kLowChars = 0x180;     // covers ASCII, Latin-1 and GPT-2's byte map

  // ---- encoding --------------------------------------------------------------------------------
  void encode(std::string_view text, bool add_special, bool parse_special,
              std::vector<int32_t>& out) const;
  void encode_fragment(std::string_view text, bool at_start, std::vector<int32_t>& out, Scratch& sc) const;
  /// SentencePiece's normalizer over a whole text: precompiled character map, extra-space
  /// removal, dummy prefix, escaped spaces; special tokens pass through unchanged.
  std::string normalize_sentencepiece(std::string_view text, bool parse_special) const;
  /// Id of the longest special token at text[pos] (user-defined ones always, control and unknown
  /// ones when `parse_special`), or -1.
  int32_t match_special(std::string_view text, size_t pos, bool parse_special) const;
  /// Longest charsmap rule matching the start of `in`: the replacement and the bytes it covers
  /// (0 when none matches).
  std::pair<std::string_view, size_t> charsmap_match(std::string_view in) const;
  /// Splits `text` into characters, merges them and appends the ids. With `segment`, the text is
  /// first cut where no token can span two adjacent characters; the parts merge independently,
  /// so this is exact, and repeated parts come from a cache.
  void encode_merges(std::string_view text, bool segment, bool& prev_unk, std::vector<int32_t>& out,
                     Scratch& sc) const;
  void encode_segment(std::string_view seg, bool cached, bool& prev_unk, std::vector<int32_t>& out,
                      Scratch& sc) const;
  bool may_join(char32_t a, char32_t b) const {
    if (a < kLowChars && b < kLowChars) {
      const size_t bit = a * kLowChars + b;
      return (low_bigrams[bit >> 6] >> (bit & 63)) & 1u;
    }
    return bigrams.count((static_cast<uint64_t>(a) << 32) | b) != 0;
  }
  /// Splits text into one symbol per UTF-8 character (sc.syms) and applies the merges to them.
  void merge_symbols(std::string_view text, Scratch& sc,
                     std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>>* rev) const;
  void emit_symbol(std::string_view text, const Sym& s, bool& prev_unk, std::vector<int32_t>& out,
                   const std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>>* rev) const;
  void push_unknown(std::string_view piece, bool& prev_unk, std::vector<int32_t>& out) const;
  int32_t char_symbol(std::string_view ch) const;
  int32_t lookup(std::string_view text) const {
    auto it = token_ids.find(text);
    return it == token_ids.end() ? -1 : it->second;
  }
};

}  // namespace lq
