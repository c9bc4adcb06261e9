// SentencePiece `tokenizer.model` reading: a minimal protobuf wire-format reader and the fields
// of ModelProto the tokenizer uses (see sentencepiece_model.hpp). File parsing only.
#include "tokenizer/sentencepiece_model.hpp"
#include "core/fail.hpp"

#include "tokenizer/files.hpp"

#include <cstring>

namespace lq::detail {
namespace {

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

  std::string string() {
    const auto [s, n] = bytes();
    return {reinterpret_cast<const char*>(s), n};
  }

  // Reads an embedded message: f(field, wire, reader) for each of its fields, which f reads or skips.
  template <class F>
  void message(F&& f) {
    const auto [p, n] = bytes();
    ProtoReader r(p, n, file_);
    while (!r.done()) {
      int wire = 0;
      const uint32_t field = r.tag(wire);
      f(field, wire, r);
    }
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

}  // namespace

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
      SpModel::Piece piece;
      top.message([&](uint32_t f, int w, ProtoReader& r) {
        if (f == 1 && w == 2) {
          piece.text = r.string();
        } else if (f == 2 && w == 5) {
          piece.score = r.fixed32_float();
        } else if (f == 3 && w == 0) {
          piece.type = static_cast<int>(r.varint());
        } else {
          r.skip(w);
        }
      });
      if (piece.text.empty()) top.bad("empty piece");
      if (piece.type < 1 || piece.type > 6) top.bad("unknown piece type");
      m.pieces.push_back(std::move(piece));
    } else if (field == 2 && wire == 2) {
      top.message([&](uint32_t f, int w, ProtoReader& r) {
        if (w != 0) {
          r.skip(w);
          return;
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
      });
    } else if (field == 3 && wire == 2) {
      top.message([&](uint32_t f, int w, ProtoReader& r) {
        if (f == 1 && w == 2) {
          m.normalizer_name = r.string();
        } else if (f == 2 && w == 2) {
          m.charsmap = r.string();
        } else if (w == 0 && (f == 3 || f == 4 || f == 5)) {
          const bool v = r.varint() != 0;
          if (f == 3) m.add_dummy_prefix = v;
          if (f == 4) m.remove_extra_whitespaces = v;
          if (f == 5) m.escape_whitespaces = v;
        } else {
          r.skip(w);
        }
      });
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

}  // namespace lq::detail
