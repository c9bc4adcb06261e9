// How each integer weight block decodes: unsigned levels in value order plus the block's scales
// as the reference dot uses them. Shared by the k-quant dequantizers (kquants.hpp) and the panel
// GEMM (qgemm.hpp), so each layout is unpacked by one function. Decoding only: no arithmetic on
// the values, no kernel entry points. (The k-quant dots keep their own in-register decoding:
// written over this table they ran 2-15% slower.)
//
// Per format Fmt<Arch>:
//   kBlock values per block, kG values per sub-block (kG == kBlock: one scale, legacy types),
//   kOff the offset the levels carry (value = level - kOff), kMaxU the largest level, kMin
//   whether the block has mins (value = d * sc * level - dmin * m);
//   scales(b, s)  per sub-block the integer scale sc (and min m); read_scales adds d (and dmin);
//   levels(b, q)  the kBlock levels, unsigned, in value order.
#pragma once

#include "core/half.hpp"
#include "types/ref/blocks.hpp"

#include <cstdint>
#include <cstring>

namespace lq::cpu::qg {

// Left uninitialised by default (the decoders fill what their format has); `BlockScales s{}` is
// all zeros.
struct BlockScales {
  float d, dmin;
  int32_t sc[16];
  int32_t m[16];
};

// The constants of a format (see above).
template <class Block, int Block_, int G, int Off, int MaxU, bool Min>
struct FmtTraits {
  using block = Block;
  static constexpr int kBlock = Block_, kG = G, kOff = Off, kMaxU = MaxU;
  static constexpr bool kMin = Min;
  static void scales(const Block&, BlockScales&) {}  // one scale per block: d alone
};

// All of a block's scales: d (and dmin) and Fmt's sub-block scales.
template <class Fmt>
void read_scales(const typename Fmt::block& b, BlockScales& s) {
  s.d = fp16_to_f32(b.d);
  if constexpr (Fmt::kMin) s.dmin = fp16_to_f32(b.dmin);
  Fmt::scales(b, s);
}

template <class Arch>
struct FmtQ4_0 : FmtTraits<ref::block_q4_0, 32, 32, 8, 15, false> {
  static void levels(const block& b, uint8_t* q) {
    for (int j = 0; j < 16; ++j) {
      q[j] = b.qs[j] & 15;
      q[j + 16] = b.qs[j] >> 4;
    }
  }
};

template <class Arch>
struct FmtQ5_0 : FmtTraits<ref::block_q5_0, 32, 32, 16, 31, false> {
  static void levels(const block& b, uint8_t* q) {
    uint32_t qh;
    std::memcpy(&qh, b.qh, 4);
    for (int j = 0; j < 16; ++j) {
      q[j] = static_cast<uint8_t>((b.qs[j] & 15) | (((qh >> j) & 1) << 4));
      q[j + 16] = static_cast<uint8_t>((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
    }
  }
};

template <class Arch>
struct FmtQ8_0 : FmtTraits<ref::block_q8_0, 32, 32, 128, 255, false> {
  static void levels(const block& b, uint8_t* q) {
    for (int j = 0; j < 32; ++j) q[j] = static_cast<uint8_t>(static_cast<uint8_t>(b.qs[j]) ^ 0x80u);
  }
};

// The k-quants: 2 bits (Q2_K, Q3_K's low bits) or 4 bits (Q4_K, Q5_K, Q6_K's low bits) per level.
// In the 2-bit layouts value 128 h + 32 j + l is bits 2j of byte 32 h + l; in the 4-bit ones
// value 64 c + 32 half + l is nibble `half` of byte 32 c + l.

template <class Arch>
struct FmtQ2K : FmtTraits<ref::block_q2_K, 256, 16, 0, 3, true> {
  static void scales(const block& b, BlockScales& s) {
    for (int g = 0; g < 16; ++g) {
      s.sc[g] = b.scales[g] & 15;
      s.m[g] = b.scales[g] >> 4;
    }
  }
  static void levels(const block& b, uint8_t* q) {
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 32; ++l) q[128 * h + 32 * j + l] = (b.qs[32 * h + l] >> (2 * j)) & 3;
  }
};

template <class Arch>
struct FmtQ3K : FmtTraits<ref::block_q3_K, 256, 16, 4, 7, false> {
  static void scales(const block& b, BlockScales& s) {
    for (int j = 0; j < 16; ++j) {
      const int lo = j < 8 ? (b.scales[j] & 15) : (b.scales[j - 8] >> 4);
      const int hi = (b.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
      s.sc[j] = (lo | (hi << 4)) - 32;
    }
  }
  static void levels(const block& b, uint8_t* q) {
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 32; ++l)
          q[128 * h + 32 * j + l] =
              static_cast<uint8_t>(((b.qs[32 * h + l] >> (2 * j)) & 3) | (((b.hmask[l] >> (4 * h + j)) & 1) << 2));
  }
};

template <class Arch>
struct FmtQ4K : FmtTraits<ref::block_q4_K, 256, 32, 0, 15, true> {
  template <class Block>  // Q4_K and Q5_K share the scales' layout
  static void scales(const Block& b, BlockScales& s) {
    for (int j = 0; j < 8; ++j) ref::q4k_scale_min(b.scales, j, s.sc[j], s.m[j]);
  }
  static void levels(const block& b, uint8_t* q) {
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        q[64 * c + l] = b.qs[32 * c + l] & 15;
        q[64 * c + 32 + l] = b.qs[32 * c + l] >> 4;
      }
  }
};

template <class Arch>
struct FmtQ5K : FmtTraits<ref::block_q5_K, 256, 32, 0, 31, true> {
  static void scales(const block& b, BlockScales& s) { FmtQ4K<Arch>::scales(b, s); }
  static void levels(const block& b, uint8_t* q) {
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        const int v = b.qs[32 * c + l], h = b.qh[l];
        q[64 * c + l] = static_cast<uint8_t>((v & 15) | (((h >> (2 * c)) & 1) << 4));
        q[64 * c + 32 + l] = static_cast<uint8_t>((v >> 4) | (((h >> (2 * c + 1)) & 1) << 4));
      }
  }
};

template <class Arch>
struct FmtQ6K : FmtTraits<ref::block_q6_K, 256, 16, 32, 63, false> {
  static void scales(const block& b, BlockScales& s) {
    for (int j = 0; j < 16; ++j) s.sc[j] = b.scales[j];
  }
  static void levels(const block& b, uint8_t* q) {
    for (int h = 0; h < 2; ++h)
      for (int k = 0; k < 4; ++k)
        for (int l = 0; l < 32; ++l) {
          const int lo = (b.ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 15;
          const int hi = (b.qh[32 * h + l] >> (2 * k)) & 3;
          q[128 * h + 32 * k + l] = static_cast<uint8_t>(lo | (hi << 4));
        }
  }
};

}  // namespace lq::cpu::qg
