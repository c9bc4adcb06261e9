// GPTQ on GGUF block types (gptq_gguf.hpp): the lazy-batch column walk of gptq.cpp with the grid
// of a GGUF type. At a block's first column the type's quantizer (registry kernel, one block,
// importance weights of its columns) fixes the block's scales and mins from the current weights;
// the walk keeps those header bytes, rounds each column to the nearest level of that grid,
// propagates the error, and writes the codes into the block's nibbles / bytes. Also the
// whole-model pass that feeds Quantizer::quantize (QuantizeOptions::tensor_bytes).
#include <lq/gptq_gguf.hpp>

#include <lq/backend.hpp>
#include <lq/error.hpp>
#include <lq/threads.hpp>

#include "core/fail.hpp"
#include "engine/impl.hpp"
#include "core/half.hpp"
#include "quantize/gptq_stream.hpp"
#include "quantize/gptq_walk.hpp"
#include "types/ref/blocks.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <optional>
#include <cmath>
#include <cstring>

namespace lq {

bool gptq_gguf_supported(QuantType t) {
  return t == QuantType::Q4_0 || t == QuantType::Q4_1 || t == QuantType::Q8_0 || t == QuantType::Q4_K;
}

namespace gguf_gptq_impl {

// The grid of one 32-value group: value(q) = (q - off) * d (Q4_0, Q8_0), q * d + m (Q4_1) or
// dl * q - ml (Q4_K), q in [qmin, qmax]; the expressions are the dequantizers' own.
struct GgGrid {
  int kind = 0;  // 0: (q - off) * d, 1: q * d + m, 2: d * q - m
  float d = 0, m = 0;
  int off = 0, qmin = 0, qmax = 15;
  float value(int q) const {
    if (kind == 0) return static_cast<float>(q - off) * d;
    if (kind == 1) return static_cast<float>(q) * d + m;
    return d * static_cast<float>(q) - m;
  }
  int nearest(float w) const {
    if (d == 0) return kind == 0 ? std::clamp(off, qmin, qmax) : qmin;
    float t = kind == 0 ? w / d + static_cast<float>(off) : kind == 1 ? (w - m) / d : (w + m) / d;
    if (!std::isfinite(t)) t = 0;
    int q = static_cast<int>(std::clamp(std::nearbyint(t), static_cast<float>(qmin), static_cast<float>(qmax)));
    // Rounding of the division can miss the nearest level by one: look at the neighbours.
    float best = std::fabs(w - value(q));
    for (int c : {q - 1, q + 1})
      if (c >= qmin && c <= qmax && std::fabs(w - value(c)) < best) best = std::fabs(w - value(c)), q = c;
    return q;
  }
};

// The grids of the 32-value groups of one block (block_values / 32 of them).
void gg_grids(QuantType t, const uint8_t* blk, GgGrid* g) {
  if (t == QuantType::Q4_0) {
    const auto* b = reinterpret_cast<const ref::block_q4_0*>(blk);
    g[0] = {0, fp16_to_f32(b->d), 0, 8, 0, 15};
  } else if (t == QuantType::Q8_0) {
    const auto* b = reinterpret_cast<const ref::block_q8_0*>(blk);
    g[0] = {0, fp16_to_f32(b->d), 0, 0, -128, 127};
  } else if (t == QuantType::Q4_1) {
    const auto* b = reinterpret_cast<const ref::block_q4_1*>(blk);
    g[0] = {1, fp16_to_f32(b->d), fp16_to_f32(b->m), 0, 0, 15};
  } else {
    const auto* b = reinterpret_cast<const ref::block_q4_K*>(blk);
    const float d = fp16_to_f32(b->d), dmin = fp16_to_f32(b->dmin);
    for (int j = 0; j < 8; ++j) {
      int sc = 0, mn = 0;
      ref::q4k_scale_min(b->scales, j, sc, mn);
      g[j] = {2, d * static_cast<float>(sc), dmin * static_cast<float>(mn), 0, 0, 15};
    }
  }
}

// Stores code q of value e (0-based in the block).
void gg_store(QuantType t, uint8_t* blk, int e, int q) {
  if (t == QuantType::Q8_0) {
    reinterpret_cast<ref::block_q8_0*>(blk)->qs[e] = static_cast<int8_t>(q);
    return;
  }
  uint8_t* qs = t == QuantType::Q4_0   ? reinterpret_cast<ref::block_q4_0*>(blk)->qs
                : t == QuantType::Q4_1 ? reinterpret_cast<ref::block_q4_1*>(blk)->qs
                                       : reinterpret_cast<ref::block_q4_K*>(blk)->qs;
  int byte = 0;
  bool high = false;
  if (t == QuantType::Q4_K) {
    const int c = e / 64, l = e % 64;
    byte = 32 * c + (l % 32);
    high = l >= 32;
  } else {
    byte = e % 16;
    high = e >= 16;
  }
  qs[byte] = high ? static_cast<uint8_t>((qs[byte] & 0x0F) | (q << 4)) : static_cast<uint8_t>((qs[byte] & 0xF0) | q);
}

}  // namespace gguf_gptq_impl

using namespace gguf_gptq_impl;

GptqGgufMatrix gptq_gguf_quantize_matrix(QuantType type, const float* w, int64_t rows, int64_t cols, const float* h,
                                         const float* imatrix, const GptqParams& p, const Context& ctx) {
  if (!gptq_gguf_supported(type))
    fail(Errc::invalid_argument, "gptq: no GPTQ walk for GGUF type {} (Q4_0, Q4_1, Q8_0 and Q4_K have one)",
         type_info(type).name);
  const TypeInfo& ti = type_info(type);
  const int64_t QK = ti.block_size;
  if (rows < 1 || cols < 1 || cols % QK != 0)
    fail(Errc::invalid_argument, "gptq: {} x {} matrix: the row length is not a multiple of {}'s block size {}", rows,
         cols, ti.name, QK);
  if (!h) fail(Errc::invalid_argument, "gptq: no Hessian given");
  if (!(p.damp > 0 && p.damp < 100)) fail(Errc::invalid_argument, "gptq: damp must be in (0, 100), got {}", p.damp);
  const QuantizeFn qfn = ctx.kernels(type).quantize;
  if (!qfn) fail(Errc::invalid_argument, "gptq: type {} cannot be quantized to", ti.name);
  const size_t rb = ti.row_bytes(cols), bb = ti.block_bytes;
  GptqGgufMatrix m;
  m.bytes.assign(static_cast<size_t>(rows) * rb, 0);
  m.values.assign(static_cast<size_t>(rows * cols), 0.0f);

  gptq_impl::RowMat W = Eigen::Map<const gptq_impl::RowMat>(w, rows, cols);
  gptq_impl::gp_dead_columns(h, cols, W, m.dead_columns);
  gptq_impl::RowMat U;
  gptq_impl::gp_live_hessian(h, cols, {}, U);
  if (!gptq_impl::gp_inverse_factor(U, p.damp, p.max_damp_raises, m.damp, m.damp_raises, ctx.thread_count(),
                                    engine::Exec::from(ctx).ops.gemm))
    fail(Errc::smoothquant_failed,
         "gptq: the Hessian is not positive definite even with dampening {} x mean(diag H); use more calibration "
         "samples or a larger --damp",
         p.damp * std::pow(10.0, p.max_damp_raises));

  // Lazy batches of whole blocks, so a block's scales see every earlier column's feedback.
  const int64_t B = std::max<int64_t>(QK, (128 / QK) * QK);
  const int64_t n_grid = QK / 32;
  // B is whole blocks, so every row's batch starts a block (e == 0) before it rounds in it.
  m.loss += gptq_impl::gp_feedback_walk(W, U, B, ctx.thread_count(), engine::Exec::from(ctx).ops.gemm, [&] {
    return [&, grid = std::vector<GgGrid>(static_cast<size_t>(n_grid)), blk = static_cast<uint8_t*>(nullptr)](
               int64_t r, int64_t i, float* wr) mutable {
      const int64_t e = i % QK;
      if (e == 0) {
        blk = m.bytes.data() + static_cast<size_t>(r) * rb + static_cast<size_t>(i / QK) * bb;
        qfn(wr + i, blk, 1, QK, imatrix ? imatrix + i : nullptr);
        gg_grids(type, blk, grid.data());
      }
      const GgGrid& g = grid[static_cast<size_t>(e / 32)];
      const int q = g.nearest(wr[i]);
      gg_store(type, blk, static_cast<int>(e), q);
      const float dq = g.value(q);
      m.values[static_cast<size_t>(r * cols + i)] = dq;
      return dq;
    };
  });
  return m;
}

GptqGgufResult gptq_gguf_tensors(const ModelSource& src, const QuantizeOptions& options, const GptqGgufConfig& config,
                                 const Context& ctx) {
  if (src.is_gguf())
    fail(Errc::invalid_argument, "--gptq: {} is a GGUF file; GPTQ needs the Hugging Face checkpoint's weights",
         src.path().string());
  const std::vector<TensorPlan> plans = Quantizer(options).plan(src);
  std::map<std::string, const TensorPlan*> by_name;
  for (const auto& p : plans) by_name[p.name] = &p;

  GptqGgufResult res;
  GptqConfig gc;
  gc.params.group_size = 32;  // every GGUF block type's rows are multiples of 32
  gc.params.damp = config.damp;
  gc.calibration_samples = config.calibration_samples;
  gc.ctx = config.ctx;
  gc.calibration_data = config.calibration_data;
  gc.matrix_hook = [&](const std::string& name, const std::vector<float>& w, int64_t rows, int64_t cols, const float* h,
                       const Context& c) -> std::vector<float> {
    auto it = by_name.find(name);
    if (it == by_name.end()) fail(Errc::invalid_model, "--gptq: {} is not in the plan", name);
    const TensorPlan& p = *it->second;
    std::optional<std::vector<float>> iw;
    if (p.uses_imatrix) iw = options.imatrix->column_weights(p.name, cols);
    const float* im = iw ? iw->data() : nullptr;
    const TypeInfo& ti = type_info(p.type);
    std::vector<float> out;
    if (p.quantize && gptq_gguf_supported(p.type) && p.ne[0] == cols) {
      GptqParams gp;
      gp.damp = config.damp;
      GptqGgufMatrix q = gptq_gguf_quantize_matrix(p.type, w.data(), rows, cols, h, im, gp, c);
      if (q.damp_raises > 0)
        c.progress_sink().message(fmt::format("warning: {}: Cholesky failed, dampening raised {} time(s) to {}", name,
                                              q.damp_raises, q.damp));
      res.tensor_bytes[name] = std::move(q.bytes);
      res.gptq_tensors.push_back(fmt::format("{} ({})", name, ti.name));
      out = std::move(q.values);
    } else {
      // As the plain run quantizes it: its values feed the next blocks' calibration.
      out = w;
      if (p.quantize && !ti.is_float()) {
        std::vector<uint8_t> b(ti.row_bytes(cols) * static_cast<size_t>(rows));
        Quantizer::quantize_rows(p.type, w.data(), b.data(), rows, cols, im, c, options.imatrix != nullptr);
        c.kernels(p.type).dequantize(b.data(), out.data(), rows * cols);
      }
      res.plain_tensors.push_back(fmt::format("{} ({})", name, ti.name));
    }
    return out;
  };
  GptqResult s;
  if (!config.work_dir.empty() && gptq_streams(src)) {
    s = gptq_stream_hook(src.path(), config.work_dir, gc, ctx);
  } else {
    GptqQuantizer gq(src, gc);
    gq.run(ctx);
    s = gq.summary();
  }
  res.calibration_source = s.calibration_source;
  res.chunks = s.chunks;
  res.ctx = s.ctx;
  res.tokens = s.tokens;
  res.calibration_seconds = s.calibration_seconds;
  res.quantize_seconds = s.quantize_seconds;
  if (!res.plain_tensors.empty())
    ctx.progress_sink().message(fmt::format("--gptq: {} linears by GPTQ, {} quantized as without --gptq (their type "
                                            "has no GPTQ walk)",
                                            res.gptq_tensors.size(), res.plain_tensors.size()));
  return res;
}

}  // namespace lq
