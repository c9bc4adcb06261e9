// What the compressed-tensors checkpoint targets (fp8_checkpoint, w8a8_checkpoint) do with a
// model directory once their input is in it: open it, describe its quantization, read every
// tensor as float and as stored rows, fetch the codes of each integer-quantized linear, then load
// it into the engine and evaluate four tokens on one thread, so that scales, input scales and
// the W8A8 products all see the mutated bytes.
#pragma once

#include "fuzz_support.hpp"

#include "model/sources.hpp"

#include <lq/context.hpp>
#include <lq/convert.hpp>
#include <lq/engine.hpp>
#include <lq/model.hpp>

#include <array>
#include <vector>

namespace lq::fuzz {

inline void read_quantized_model(const fs::path& dir) {
  const auto src = ModelSource::open(dir);
  (void)third_party_quantization(*src);
  std::vector<float> rows;
  std::vector<uint8_t> raw;
  for (const auto& t : src->tensors()) {
    rows.resize(static_cast<size_t>(t.n_elements()));
    src->read_rows_f32(t, 0, t.n_rows(), rows.data());
    raw.resize(t.row_bytes() * static_cast<size_t>(t.n_rows()));
    src->read_rows_raw(t, 0, t.n_rows(), raw.data());
    if (const auto q = hf_quantized_linear(*src, t)) (void)q->weight->rows;
    (void)hf_is_fp8_linear(*src, t);
  }
  (void)src->gguf_metadata();
  const auto model = Model::load(*src);
  Context ctx;
  ctx.threads = 1;
  SessionOptions opts;
  opts.n_ctx = 8;
  Session session(*model, opts, ctx);
  const std::array<int32_t, 4> tokens = {1, 3, 4, 5};
  session.eval(tokens, 0);
  for (int64_t i = 0; i < session.n_outputs(); ++i) (void)session.logits(i);
}

}  // namespace lq::fuzz
