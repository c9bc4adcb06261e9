// Scalar reference kernels: W4G and W8G, the engine's exact in-memory forms of third-party integer
// weights (GPTQ, AWQ and compressed-tensors groups) of at most 4 and at most 8 bits. A W4G block of
// 32 values is its float scale d, its zero point z (a float holding an integer in [0, 15]) and 16
// bytes of codes (value j < 16 in the low nibble of byte j, value 16 + j in its high nibble); a W8G
// block is d, z (in [0, 255]) and 32 code bytes. value = d * (q - z), one float product of the
// integer q - z: what the checkpoint's group gives, bit for bit, wherever each block lies in one
// group. Never written to GGUF.
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>

namespace lq::ref {

/// The W4G block layout (24 bytes).
struct BlockW4G {
  float d;
  float z;
  uint8_t qs[16];
};
static_assert(sizeof(BlockW4G) == 24);

/// A min-max asymmetric grid per block (d = (max - min) / 15, z = round(-min / d)): a reference
/// for the round-trip tests. liblq fills W4G blocks from a checkpoint's own codes (w4g_block),
/// never from floats.
QuantizeKernel quantize_w4g;
/// d * (q - z) for every value.
DequantizeKernel dequantize_w4g;

/// One block from a checkpoint's 32 codes (each < 16), its scale and its zero point.
void w4g_block(const uint8_t* codes, float d, int32_t zero, BlockW4G& out);

/// The W8G block layout (40 bytes).
struct BlockW8G {
  float d;
  float z;
  uint8_t q[32];
};
static_assert(sizeof(BlockW8G) == 40);

/// A min-max asymmetric 8-bit grid per block (the round-trip tests' reference; liblq fills W8G
/// blocks from a checkpoint's codes).
QuantizeKernel quantize_w8g;
/// d * (q - z) for every value.
DequantizeKernel dequantize_w8g;

}  // namespace lq::ref
