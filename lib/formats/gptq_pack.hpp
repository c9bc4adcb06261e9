// Internal: the packing of integer weight codes into int32 words for the two W4A16-style layouts
// liblq writes (docs: the output-formats note, §1 and §2), and their config blocks:
//  - compressed-tensors "pack-quantized" (as compressed-tensors 0.19 packs): weight_packed
//    [out, ceil(in * bits / 32)], each row a little-endian bit stream of its codes (32 values fill
//    exactly `bits` words; 3-bit values straddle words; 2/4/8-bit ones never do), weight_zero_point
//    (asymmetric only) the same along the output axis, [ceil(out * bits / 32), groups]. Codes are
//    the unsigned values (signed + 2^(bits-1)).
//  - AutoGPTQ / GPTQModel: qweight [in * bits / 32, out], a continuous little-endian bit stream
//    along the input axis (3-bit values straddle words); qzeros [groups, out * bits / 32] the same
//    along the output axis, each zero minus one (v1, masked to `bits`) or the true zero (v2).
// Pure data: no file I/O, no quantization.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace lq::gptq_pack {

/// compressed-tensors: `codes` rows x cols (unsigned), packed per row; rows x ceil(cols * bits / 32).
std::vector<int32_t> ct_pack_rows(const uint8_t* codes, int64_t rows, int64_t cols, int bits);
/// compressed-tensors: `zeros` rows x groups packed along the rows: ceil(rows * bits / 32) x groups.
std::vector<int32_t> ct_pack_columns(const int32_t* zeros, int64_t rows, int64_t groups, int bits);
/// The inverse of ct_pack_rows (tests and round trips): rows x cols codes.
std::vector<uint8_t> ct_unpack_rows(const int32_t* packed, int64_t rows, int64_t cols, int bits);

/// GPTQ layout: `codes` out x in (Hugging Face order) -> qweight [in * bits / 32, out]. in * bits
/// must be a multiple of 32.
std::vector<int32_t> gptq_pack_qweight(const uint8_t* codes, int64_t out, int64_t in, int bits);
/// GPTQ layout: `zeros` out x groups -> qzeros [groups, out * bits / 32]; v1 stores zero - 1.
std::vector<int32_t> gptq_pack_qzeros(const int32_t* zeros, int64_t out, int64_t groups, int bits, bool v1);
/// Inverses (tests): qweight -> out x in codes; qzeros -> out x groups zeros (v1: + 1, masked).
std::vector<uint8_t> gptq_unpack_qweight(const int32_t* qweight, int64_t out, int64_t in, int bits);
std::vector<int32_t> gptq_unpack_qzeros(const int32_t* qzeros, int64_t out, int64_t groups, int bits, bool v1);

/// AutoAWQ GEMM layout (4-bit): `codes` out x in -> qweight [in, out / 8], each word holding the
/// codes of outputs c*8 + {0, 2, 4, 6, 1, 3, 5, 7} in nibbles 0..7; out must be a multiple of 8.
std::vector<int32_t> awq_pack_qweight(const uint8_t* codes, int64_t out, int64_t in);
/// AutoAWQ GEMM layout: `zeros` out x groups (true zeros) -> qzeros [groups, out / 8], same order.
std::vector<int32_t> awq_pack_qzeros(const int32_t* zeros, int64_t out, int64_t groups);
/// AutoAWQ's config.json "quantization_config" (quant_method awq, version gemm, zero_point true).
nlohmann::ordered_json awq_quantization_config(int64_t group_size);

/// config.json "quantization_config" of a compressed-tensors pack-quantized checkpoint as
/// llm-compressor writes it (one group targeting Linear, ignore lm_head). `actorder`: "" (null),
/// "static" or "group"; group_size -1 = strategy "channel".
nlohmann::ordered_json ct_pack_quantization_config(int bits, int64_t group_size, bool sym, const std::string& actorder);
/// AutoGPTQ / GPTQModel quantize_config.json (also config.json's quantization_config).
nlohmann::ordered_json gptq_quantize_config(int bits, int64_t group_size, bool sym, bool desc_act, bool static_groups,
                                            double damp, bool v2);

}  // namespace lq::gptq_pack
