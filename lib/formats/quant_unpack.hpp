// Internal: the packings of third-party quantized checkpoints (GPTQ, AWQ GEMM, compressed-tensors
// pack-quantized / int-quantized, FP8 E4M3) unpacked into one form: unsigned integer codes per
// weight in Hugging Face layout [out, in], a float scale and an unsigned zero per (row, group) and
// the group of each input column, so W[o, i] = scale[o, g] * (q[o, i] - zero[o, g]) with
// g = g_idx[i]. FP8 weights decode to float directly. Pure functions on arrays: no files.
// Format facts: docs/output-formats.md §1-3 of the shared data.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace lq::unpack {

/// An integer-quantized linear weight, unpacked. Every value holds scale * (q - zero) exactly in
/// float for the packings here (an fp16/bf16 scale times a code difference below 2^9).
struct IntWeight {
  int64_t rows = 0;     ///< out_features
  int64_t cols = 0;     ///< in_features
  int bits = 4;
  int64_t n_groups = 1;
  std::vector<uint8_t> q;      ///< rows * cols codes in [0, 2^bits)
  std::vector<float> scale;    ///< rows * n_groups
  std::vector<int32_t> zero;   ///< rows * n_groups, unsigned (symmetric: 2^(bits-1))
  std::vector<int32_t> g_idx;  ///< cols: group of each input column

  float value(int64_t r, int64_t c) const {
    const size_t g = static_cast<size_t>(r * n_groups + g_idx[static_cast<size_t>(c)]);
    return scale[g] * static_cast<float>(static_cast<int32_t>(q[static_cast<size_t>(r * cols + c)]) - zero[g]);
  }
  /// Rows [r0, r0 + n) as float, [n, cols].
  void dequantize_rows(int64_t r0, int64_t n, float* dst) const;
  /// True when g_idx[i] == i / group for every column (groups are contiguous runs of `group`).
  bool contiguous_groups(int64_t group) const;
};

/// Value number k of a little-endian stream of 32-bit words holding `bits`-bit values lowest bits
/// first, values crossing word boundaries (3-bit: value 10 takes bits 30-31 of word 0 and bit 0
/// of word 1). `at(k)` gives word k of the stream.
template <typename WordAt>
uint32_t stream_value(const WordAt& at, int64_t k, int bits) {
  const int64_t bit = k * bits;
  const int64_t w = bit / 32;
  const int off = static_cast<int>(bit % 32);
  uint64_t v = static_cast<uint32_t>(at(w)) >> off;
  if (off + bits > 32) v |= static_cast<uint64_t>(static_cast<uint32_t>(at(w + 1))) << (32 - off);
  return static_cast<uint32_t>(v) & ((1u << bits) - 1u);
}

/// GPTQ (AutoGPTQ / GPTQModel): qweight int32 [in*bits/32, out] (inputs packed along the input
/// axis), qzeros int32 [G, out*bits/32] (packed along the output axis), scales [G, out] as float,
/// g_idx [in] (empty: i / group_size; group_size -1: one group). `v1_zeros`: checkpoint_format
/// "gptq", zeros stored minus one (read back as (stored + 1) mod 2^bits). `qzeros` empty:
/// symmetric with zero 2^(bits-1). Shapes are the caller's to check (see gptq_shapes()).
IntWeight gptq(std::span<const int32_t> qweight, std::span<const int32_t> qzeros, std::span<const float> scales,
               std::span<const int32_t> g_idx, int64_t out, int64_t in, int bits, int64_t group_size, bool v1_zeros);

/// Expected [rows, cols] of GPTQ's qweight, qzeros and scales; an empty string when the stored
/// ones match, else what differs.
std::string gptq_shape_error(int64_t out, int64_t in, int bits, int64_t n_groups, const std::vector<int64_t>& qweight,
                             const std::vector<int64_t>& qzeros, const std::vector<int64_t>& scales);

/// AWQ GEMM (AutoAWQ): qweight int32 [in, out/8], qzeros int32 [G, out/8], 4-bit, nibble k of word
/// column c holds output c*8 + {0,2,4,6,1,3,5,7}[k]; scales [G, out]; groups i / group_size.
/// `qzeros` empty: zero_point false, symmetric codes with zero 8.
IntWeight awq_gemm(std::span<const int32_t> qweight, std::span<const int32_t> qzeros, std::span<const float> scales,
                   int64_t out, int64_t in, int64_t group_size);

/// compressed-tensors pack-quantized: weight_packed int32 [out, ceil(in*bits/32)] (values along
/// the input axis, lowest bits first, stored as signed + 2^(bits-1)); scales [out, G] (G = 1 for
/// channel, or one scale for the whole tensor when `scales` has one value); `zero_packed`
/// (weight_zero_point packed along the output axis, [ceil(out*bits/32), G]) or `zero_signed`
/// (int8 [out, G], unpacked) or neither (symmetric); g_idx as GPTQ's.
IntWeight ct_packed(std::span<const int32_t> packed, std::span<const float> scales, std::span<const int32_t> zero_packed,
                    std::span<const int8_t> zero_signed, std::span<const int32_t> g_idx, int64_t out, int64_t in, int bits,
                    int64_t group_size);

/// compressed-tensors int-quantized / naive-quantized weights (int8 [out, in] holding signed
/// `bits`-bit values): scales [out, G], [out, 1] or [1]; zero_signed [out, G] or empty.
IntWeight ct_int8(std::span<const int8_t> w, std::span<const float> scales, std::span<const int8_t> zero_signed,
                  std::span<const int32_t> g_idx, int64_t out, int64_t in, int bits, int64_t group_size);

/// float8_e4m3fn (bias 7, no infinities; S.1111.111 is NaN): the value of one byte.
float fp8_e4m3(uint8_t b);
inline bool fp8_e4m3_is_nan(uint8_t b) { return (b & 0x7f) == 0x7f; }

/// FP8 E4M3 weights [out, in] (`w` from row 0) times their scales: one value (tensor), or one per
/// block of [block_rows, block_cols] (channel: [1, in]; block: e.g. [128, 128]; the scales are
/// [ceil(out/block_rows), ceil(in/block_cols)]). Rows [r0, r0 + n) into dst. Returns the index of
/// the first NaN byte in those rows, or -1. The caller checks the scale count.
int64_t fp8_dequantize_rows(std::span<const uint8_t> w, std::span<const float> scales, int64_t in,
                            int64_t block_rows, int64_t block_cols, int64_t r0, int64_t n, float* dst);

}  // namespace lq::unpack
