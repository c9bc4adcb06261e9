// Decoding stored tensor rows to float: the one bridge from file bytes to compute for model
// sources and for callers holding a gguf::Reader. The kernels come from the context's back-end
// through the registry (the CPU's row where that back-end has none). No file parsing or
// validation here: the readers in formats/ own that.
#include <lq/backend.hpp>
#include <lq/decode.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"

namespace lq {

void decode_rows_f32(QuantType type, const uint8_t* src, int64_t row_length, int64_t nrows, float* dst,
                     const Context& ctx) {
  const TypeInfo& ti = type_info(type);
  if (!ti.dequantize_ref) fail(Errc::invalid_model, "cannot decode type {} to float", ti.name);
  const DequantizeFn deq = ctx.kernels(type).dequantize;
  const size_t rb = ti.row_bytes(row_length);
  for (int64_t r = 0; r < nrows; ++r) deq(src + r * rb, dst + r * row_length, row_length);
}

void read_rows_f32(const gguf::Reader& reader, const gguf::TensorInfo& t, int64_t row0, int64_t nrows, float* dst,
                   const Context& ctx) {
  const TypeInfo& ti = type_info(t.type);
  if (!ti.dequantize_ref)
    fail(Errc::invalid_model, "{}: tensor '{}': cannot decode type {}", reader.path().string(), t.name, ti.name);
  const uint8_t* rows = reader.data(t).data() + static_cast<uint64_t>(row0) * ti.row_bytes(t.ne[0]);
  decode_rows_f32(t.type, rows, t.ne[0], nrows, dst, ctx);
}

}  // namespace lq
