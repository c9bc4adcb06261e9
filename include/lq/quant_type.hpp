// liblq: tensor element types (ggml type ids) and the one trait table that describes them.
#pragma once

#include <lq/api.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace lq {

/// Tensor element type. Values below kLqTypeBase are the GGUF/ggml type ids: pinned, never
/// reused. Ids 4, 5, 31-33 and 36-38 were removed by ggml and must stay unused. Ids from
/// kLqTypeBase on are liblq's own formats (never written to GGUF).
enum class QuantType : int32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  /// int8 per-output-channel weights (compressed-tensors W8A8): each row is its float scale
  /// followed by its int8 values, value = q * scale.
  W8 = 1024,
  /// int8 per-token activations, W8's dot_type: the same row layout, scale = max|x| / 127.
  A8 = 1025,
  /// Third-party integer weights of at most 4 bits held exactly (GPTQ, AWQ, compressed-tensors
  /// groups): blocks of 32 values, each a float scale, a float zero point and 16 bytes of codes,
  /// value = scale * (q - zero). The engine's in-memory form of such linears (0.75 bytes a weight
  /// instead of F32's 4).
  W4G = 1026,
  /// The same for integer codes of 5 to 8 bits: blocks of 32 values, each a float scale, a float
  /// zero point and 32 code bytes (1.25 bytes a weight).
  W8G = 1027,
};

/// Number of ggml slots in the type table (one past the largest ggml id liblq knows).
inline constexpr int kQuantTypeSlots = 36;
/// First id of liblq's own types, far beyond ggml's ids; kLqTypeCount of them follow.
inline constexpr int kLqTypeBase = 1024;
inline constexpr int kLqTypeCount = 4;
/// Dense index of a known type id: ggml ids as they are, liblq's after them (tables indexed by
/// type use it); -1 for an id outside both ranges.
constexpr int type_slot(QuantType t) noexcept {
  const auto id = static_cast<int>(t);
  if (id >= 0 && id < kQuantTypeSlots) return id;
  if (id >= kLqTypeBase && id < kLqTypeBase + kLqTypeCount) return kQuantTypeSlots + id - kLqTypeBase;
  return -1;
}
/// Number of dense type indices (type_slot() is below it).
inline constexpr int kTypeSlotCount = kQuantTypeSlots + kLqTypeCount;

/// Quantizes `nrows` rows of `n_per_row` floats; row r goes to dst + r * row_bytes(n_per_row).
/// `imatrix` holds one importance weight per column (n_per_row values) or is nullptr.
using QuantizeKernel = void(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);
using QuantizeFn = QuantizeKernel*;
/// Decodes `n` values (a multiple of the block size) from packed blocks into floats. For a type
/// with a row header (W8, A8) a call decodes one row: n is the row length.
using DequantizeKernel = void(const void* src, float* dst, int64_t n);
using DequantizeFn = DequantizeKernel*;
/// Dot product of `n` values: x is packed in this type, y in the row's `dot_type`.
using DotKernel = float(int64_t n, const void* x, const void* y);
using DotFn = DotKernel*;

/// One back-end's kernels for a type. An empty slot means "not here" (the registry fills it
/// from the CPU back-end, whose empty slots are the scalar reference).
struct KernelSet {
  QuantizeFn quantize = nullptr;
  DequantizeFn dequantize = nullptr;
  DotFn dot = nullptr;
};

/// One row of the type table: the format's facts, the same on every back-end. Read it through
/// type_info(). Each back-end's kernels for a type are that back-end's own (private) row; reach
/// them through Registry::kernels().
struct LQ_API TypeInfo {
  QuantType type;
  const char* name;          ///< ggml name, e.g. "Q4_K"
  int block_size;            ///< values per block (0 for an unused slot)
  int block_bytes;           ///< bytes per block
  bool floating;             ///< a plain float type (F32, F16, BF16, F64): no blocks, no search
  bool storable;             ///< may appear as a weight tensor type in files we write
  /// The quantizer cannot run without importance data (ggml asserts on it: IQ2_XXS, IQ2_XS, IQ1_S).
  bool needs_imatrix;
  /// llama-quantize refuses to make tensors of this type without an importance matrix (except
  /// token_embd and output); the level table adds level-wide refusals (Q2_K_S).
  bool refused_without_imatrix;
  /// Type used where a row's length is not a multiple of block_size (llama.cpp's fallback);
  /// equal to `type` when there is none. A fallback that does not fit either gives F16.
  QuantType fallback;
  QuantType dot_type;        ///< type the activations are packed in for dot()
  double tolerance;          ///< max relative RMSE of a quantize/dequantize round trip on N(0,1) rows
  QuantizeFn quantize_ref;   ///< scalar oracle (imatrix optional); nullptr: not quantizable
  DequantizeFn dequantize_ref;  ///< scalar oracle; nullptr: cannot be decoded
  DotFn dot_ref;             ///< scalar oracle (optional)
  /// Bytes at the start of every row before its blocks (W8's per-row scale); 0 for ggml types.
  int row_header = 0;

  /// Bits per weight.
  double bpw() const { return 8.0 * block_bytes / block_size; }
  /// Bytes of a row of `n` values (n must be a multiple of block_size), its header included.
  size_t row_bytes(int64_t n) const {
    return static_cast<size_t>(row_header) + static_cast<size_t>(n / block_size) * block_bytes;
  }
  /// True for the slots that describe a real type.
  bool valid() const { return block_size > 0; }
  /// True for F32/F16/BF16/F64 (the `floating` column).
  bool is_float() const { return floating; }
  /// Whether the row has a fallback type (see `fallback`).
  bool has_fallback() const { return fallback != type; }
};

/// Row of the table for `t`. Throws Errc::invalid_model for an id liblq does not know.
LQ_API const TypeInfo& type_info(QuantType t);
/// True when `id` names a type of the table.
LQ_API bool is_known_type_id(int32_t id) noexcept;
/// Looks up a type by its ggml name (case-insensitive), e.g. "q4_k".
LQ_API std::optional<QuantType> parse_quant_type(std::string_view name) noexcept;
/// Every valid row of the table, in id order.
LQ_API std::span<const TypeInfo> all_types() noexcept;
/// The ggml name of `t` ("?" for an unknown id).
LQ_API const char* type_name(QuantType t) noexcept;

}  // namespace lq
