// Internal to the CPU back-end: its row per type (which kernel runs each op on this back-end) and
// its activation formats. One row per type that has CPU kernels; adding a kernel for a type is
// one entry in kRows (dispatch.cpp) plus its kernel file. The engine never reads these rows:
// it asks the registry for operations, and the CPU back-end's own drivers (products.cpp) read them.
#pragma once

#include <lq/quant_type.hpp>

#include "backend/ops.hpp"
#include "engine_kernels.hpp"

#include <cstdint>
#include <span>

namespace lq::cpu {

/// Formats of the activation records that panel GEMMs read (quantized once per input).
enum class ActFormat : uint8_t {
  none,
  q8_0,    ///< int8 values with a scale per 32 (and the panel kernels' partial sums)
  q8_k,    ///< int8 values with a scale per 256
  bf16,    ///< bf16 pairs (llama.cpp's BF16 arithmetic)
  bf16x3,  ///< each float as three bf16 parts summing to it exactly (AMX, exact)
  i8_token,  ///< int8 values with one scale per token (max|x| / 127) and their sum (W8A8)
};

/// Layout and quantizer of one activation format.
struct ActFormatRow {
  ActFormat format;
  QActLayout (*layout)(int64_t k);
  QuantizeActFn quantize;
};
const ActFormatRow& act_format(ActFormat f);

/// A panel GEMM and what it reads.
struct PanelKernel {
  QGemmFn fn = nullptr;
  ActFormat act = ActFormat::none;
  /// Weight rows it packs at once and runs every token against (0: 16-row panels, each on its
  /// own); the driver hands it that many rows per call where the threads stay busy.
  int64_t rows_per_call = 0;
  explicit operator bool() const { return fn != nullptr; }
};

/// The CPU back-end's row for one type. Empty slots: the scalar reference (quantize, dequantize,
/// dot) or no such path (tile, panels).
struct TypeRow {
  QuantType type;
  KernelSet k;                 ///< xsimd quantize / dequantize / dot (dot against the type's dot_type)
  TileFn tile = nullptr;       ///< 4 x 4 tiles of the dot, for batches of 4+ tokens
  PanelKernel panel;           ///< batched GEMM on activation records
  bool panel_needs_vnni = false;  ///< without AVX-512 VNNI/BF16 the panel is slower than the other paths
  PanelKernel panel_amx;       ///< replaces `panel` where AMX is usable
  PanelKernel exact_amx;       ///< float activations (exact) on AMX, for row lengths % 32 == 0
};

/// The table: one row per type with CPU kernels (dispatch.cpp).
std::span<const TypeRow> type_rows();
/// The row of `t` (an empty row for a type with no CPU kernels).
const TypeRow& row(QuantType t);
/// The panel GEMM for weights of type t on this CPU (none where t has none or another path is
/// faster here). float_act: the activations must stay float, so a panel that rounds them to
/// bf16 gives way to the exact kernel for row length k where there is one.
PanelKernel panel_kernel(QuantType t, bool float_act, int64_t k);

/// The CPU back-end's engine operations (products.cpp for the products).
void products(std::span<const lq::detail::Product> ops, int threads);
/// Frees the calling thread's activation buffers that products() keeps (EngineOps::release_buffers).
void release_product_buffers();
bool supports_weight(QuantType t);

}  // namespace lq::cpu
