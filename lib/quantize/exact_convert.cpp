// The exact mapping of third-party quantized checkpoints to GGUF (include/lq/convert.hpp): per
// linear, the integer codes and scales written as Q4_0 / Q4_1 / Q8_0 blocks where the grid is the
// block type's own form (every 32-block inside one group), else Q8_0 requantized from the exact
// dequantization; float tensors copied as stored. Every tensor's worst error is measured by
// decoding the written blocks against the source's F32 rows.
#include <lq/convert.hpp>

#include <lq/error.hpp>
#include <lq/file_type.hpp>
#include <lq/gguf.hpp>
#include <lq/quant_type.hpp>
#include "core/fail.hpp"
#include "core/half.hpp"
#include "model/sources.hpp"
#include "types/ref/blocks.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>

namespace lq {
namespace {

// Whether every 32-column block lies in one group (act-order g_idx may put neighbours apart).
bool ec_blocks_in_groups(const unpack::IntWeight& w) {
  if (w.cols % 32 != 0) return false;
  for (int64_t b = 0; b < w.cols; b += 32)
    for (int64_t c = b + 1; c < b + 32; ++c)
      if (w.g_idx[static_cast<size_t>(c)] != w.g_idx[static_cast<size_t>(b)]) return false;
  return true;
}

bool ec_all_zero(const unpack::IntWeight& w, int32_t z) {
  return std::all_of(w.zero.begin(), w.zero.end(), [z](int32_t x) { return x == z; });
}

// The codes of `w` as blocks of `type` (Q4_0, Q4_1 or Q8_0), row by row.
std::vector<uint8_t> ec_write_blocks(const unpack::IntWeight& w, QuantType type) {
  const TypeInfo& ti = type_info(type);
  const size_t rb = ti.row_bytes(w.cols);
  std::vector<uint8_t> out(rb * static_cast<size_t>(w.rows));
  for (int64_t r = 0; r < w.rows; ++r) {
    uint8_t* row = out.data() + static_cast<size_t>(r) * rb;
    const uint8_t* q = w.q.data() + r * w.cols;
    for (int64_t b = 0; b < w.cols / 32; ++b) {
      const int64_t g = r * w.n_groups + w.g_idx[static_cast<size_t>(b * 32)];
      const float s = w.scale[static_cast<size_t>(g)];
      const int32_t z = w.zero[static_cast<size_t>(g)];
      const uint8_t* qb = q + b * 32;
      if (type == QuantType::Q4_0) {
        ref::block_q4_0 blk;
        blk.d = f32_to_fp16(s);
        for (int j = 0; j < 16; ++j) blk.qs[j] = static_cast<uint8_t>(qb[j] | (qb[j + 16] << 4));
        std::memcpy(row + b * sizeof blk, &blk, sizeof blk);
      } else if (type == QuantType::Q4_1) {
        ref::block_q4_1 blk;
        blk.d = f32_to_fp16(s);
        blk.m = f32_to_fp16(-static_cast<float>(z) * s);
        for (int j = 0; j < 16; ++j) blk.qs[j] = static_cast<uint8_t>(qb[j] | (qb[j + 16] << 4));
        std::memcpy(row + b * sizeof blk, &blk, sizeof blk);
      } else {
        ref::block_q8_0 blk;
        blk.d = f32_to_fp16(s);
        for (int j = 0; j < 32; ++j) blk.qs[j] = static_cast<int8_t>(static_cast<int32_t>(qb[j]) - z);
        std::memcpy(row + b * sizeof blk, &blk, sizeof blk);
      }
    }
  }
  return out;
}

// Worst |decode(bytes) - ref| over a tensor of `rows` rows of `cols` values.
double ec_max_error(QuantType type, const std::vector<uint8_t>& bytes, const std::vector<float>& ref, int64_t rows,
                    int64_t cols) {
  const TypeInfo& ti = type_info(type);
  const size_t rb = ti.row_bytes(cols);
  std::vector<float> dec(static_cast<size_t>(cols));
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r) {
    ti.dequantize_ref(bytes.data() + static_cast<size_t>(r) * rb, dec.data(), cols);
    for (int64_t c = 0; c < cols; ++c)
      worst = std::max(worst, std::fabs(static_cast<double>(dec[static_cast<size_t>(c)]) -
                                        static_cast<double>(ref[static_cast<size_t>(r * cols + c)])));
  }
  return worst;
}

// W8 rows (a float scale, then the int8 values) as Q8_0: every 32-block gets the row's scale.
std::vector<uint8_t> ec_w8_rows_as_q8_0(const ModelSource& src, const ModelTensor& t) {
  const int64_t rows = t.n_rows(), cols = t.row_length();
  std::vector<uint8_t> raw(t.row_bytes() * static_cast<size_t>(rows));
  src.read_rows_raw(t, 0, rows, raw.data());
  const size_t rb = type_info(QuantType::Q8_0).row_bytes(cols);
  std::vector<uint8_t> bytes(rb * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* in = raw.data() + static_cast<size_t>(r) * t.row_bytes();
    float scale;
    std::memcpy(&scale, in, 4);
    for (int64_t b = 0; b < cols / 32; ++b) {
      ref::block_q8_0 blk;
      blk.d = f32_to_fp16(scale);
      std::memcpy(blk.qs, in + 4 + b * 32, 32);
      std::memcpy(bytes.data() + static_cast<size_t>(r) * rb + static_cast<size_t>(b) * sizeof blk, &blk, sizeof blk);
    }
  }
  return bytes;
}

}  // namespace

std::string third_party_quantization(const ModelSource& src) {
  const QuantCheckpoint* q = hf_quant_checkpoint(src);
  return q ? q->describe() : std::string();
}

ExactConvertResult convert_exact_to_gguf(const ModelSource& src, const std::filesystem::path& out, const Context& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  const QuantCheckpoint* qc = hf_quant_checkpoint(src);
  const bool w8a8 = !src.is_gguf() && std::any_of(src.tensors().begin(), src.tensors().end(),
                                                  [](const ModelTensor& t) { return t.type == QuantType::W8; });
  if (!qc && !w8a8)
    fail(Errc::invalid_argument, "{}: the exact mapping needs a GPTQ, AWQ or compressed-tensors quantized checkpoint "
         "(this one is not; use -q LEVEL to quantize it)", src.path().string());
  ExactConvertResult res;
  res.output = out;
  res.source_quantization = qc ? qc->describe() : "compressed-tensors int8 W8A8 (int8 weights, one scale per row)";
  res.source_bytes = src.source_bytes();

  // Decide and encode each tensor first (the small model fits; a tensor at a time is held).
  struct Planned {
    const ModelTensor* t;
    QuantType type;
  };
  std::vector<Planned> plan;
  for (const ModelTensor& t : src.tensors()) {
    if (t.name.ends_with(".input_scale")) continue;  // static W8A8 activation scales: no GGUF form
    QuantType type = t.type;
    if (const auto ql = hf_quantized_linear(src, t)) {
      const auto& w = *ql->weight;
      const bool blocks = ec_blocks_in_groups(w);
      if (blocks && w.bits == 4 && ec_all_zero(w, 8)) type = QuantType::Q4_0;
      else if (blocks && w.bits == 4) type = QuantType::Q4_1;
      else if (blocks && w.bits == 8 && ec_all_zero(w, 128)) type = QuantType::Q8_0;
      else type = t.row_length() % 32 == 0 ? QuantType::Q8_0 : QuantType::F32;
    } else if (t.type == QuantType::W8) {
      type = t.row_length() % 32 == 0 ? QuantType::Q8_0 : QuantType::F32;  // int8 rows: Q8_0 keeps them
    } else if (hf_is_fp8_linear(src, t) && t.row_length() % 32 == 0) {
      type = QuantType::Q8_0;  // FP8 linears (read as F32)
    } else if (t.ne.size() == 1 && (t.type == QuantType::BF16 || t.type == QuantType::F16)) {
      type = QuantType::F32;  // norms and biases: F32, as llama.cpp's converter writes every 1-D tensor
    }
    if (type != QuantType::F32 && type != QuantType::F16 && type != QuantType::BF16 && type != QuantType::Q4_0 &&
        type != QuantType::Q4_1 && type != QuantType::Q8_0)
      fail(Errc::invalid_model, "{}: tensor '{}' has type {}, which the exact mapping cannot write", src.path().string(),
           t.name, type_name(type));
    plan.push_back({&t, type});
  }

  gguf::Writer writer(out);
  {
    gguf::Metadata meta = src.gguf_metadata();
    std::map<QuantType, uint64_t> weights;
    for (const auto& p : plan)
      if (p.type == QuantType::Q4_0 || p.type == QuantType::Q4_1 || p.type == QuantType::Q8_0)
        weights[p.type] += static_cast<uint64_t>(p.t->n_elements());
    FileType ft = FileType::Q8_0;
    uint64_t most = 0;
    for (const auto& [ty, n] : weights)
      if (n > most) {
        most = n;
        ft = ty == QuantType::Q4_0 ? FileType::Q4_0 : ty == QuantType::Q4_1 ? FileType::Q4_1 : FileType::Q8_0;
      }
    gguf::Metadata& m = writer.metadata();
    for (const auto& [k, v] : meta.entries())
      if (k.rfind("tokenizer.", 0) != 0 && k != "general.file_type" && k != "general.quantization_version") m.set(k, v);
    m.set("general.quantization_version", gguf::Value::u32(2));
    m.set("general.file_type", gguf::Value::u32(static_cast<uint32_t>(ft)));
    m.set("general.source.quantization", gguf::Value::string(res.source_quantization));
    for (const auto& [k, v] : meta.entries())
      if (k.rfind("tokenizer.", 0) == 0) m.set(k, v);
  }
  for (const auto& p : plan) writer.add_tensor(p.t->name, p.type, p.t->ne);

  Progress& progress = ctx.progress_sink();
  int64_t done = 0;
  for (const auto& p : plan) {
    ctx.check_cancelled();
    const ModelTensor& t = *p.t;
    const int64_t rows = t.n_rows(), cols = t.row_length();
    ExactTensor et;
    et.name = t.name;
    et.type = type_name(p.type);
    std::vector<float> ref(static_cast<size_t>(rows * cols));
    src.read_rows_f32(t, 0, rows, ref.data());
    std::vector<uint8_t> bytes;
    const auto ql = hf_quantized_linear(src, t);
    const bool w8_rows = t.type == QuantType::W8 && p.type == QuantType::Q8_0;
    if (w8_rows) et.source = "int8 per row (W8A8)";
    else if (ql) et.source = ql->scheme.describe();
    else if (hf_is_fp8_linear(src, t)) et.source = "FP8 E4M3";
    else et.source = type_name(t.type);
    if (w8_rows || (ql && p.type != QuantType::F32 && ec_blocks_in_groups(*ql->weight) &&
                    (p.type == QuantType::Q4_0 || p.type == QuantType::Q4_1 ||
                     (p.type == QuantType::Q8_0 && ql->weight->bits == 8 && ec_all_zero(*ql->weight, 128))))) {
      bytes = w8_rows ? ec_w8_rows_as_q8_0(src, t) : ec_write_blocks(*ql->weight, p.type);
      et.max_abs_error = ec_max_error(p.type, bytes, ref, rows, cols);
      et.mapping = et.max_abs_error == 0 ? "exact" : "codes_kept";
      if (et.max_abs_error != 0)
        et.note = p.type == QuantType::Q4_1 ? "codes and d kept; m = -z*s rounded to fp16"
                                            : "codes kept; scales rounded to fp16";
      ++res.n_exact;
    } else if (p.type == QuantType::Q8_0 || p.type == QuantType::Q4_0) {
      const TypeInfo& ti = type_info(p.type);
      bytes.resize(ti.row_bytes(cols) * static_cast<size_t>(rows));
      ti.quantize_ref(ref.data(), bytes.data(), rows, cols, nullptr);
      et.max_abs_error = ec_max_error(p.type, bytes, ref, rows, cols);
      et.mapping = "requantized";
      if (!ql) et.note = "FP8 values requantized from their exact dequantization";
      else if (!ec_blocks_in_groups(*ql->weight)) et.note = "act-order groups split 32-blocks: requantized from the exact dequantization";
      else et.note = fmt::format("{}-bit {} grid has no GGUF block form: requantized from the exact dequantization",
                                 ql->weight->bits, ec_all_zero(*ql->weight, 1 << (ql->weight->bits - 1)) ? "symmetric" : "asymmetric");
      ++res.n_requantized;
    } else {
      bytes.resize(type_info(p.type).row_bytes(cols) * static_cast<size_t>(rows));
      if (p.type == t.type) src.read_rows_raw(t, 0, rows, bytes.data());
      else std::memcpy(bytes.data(), ref.data(), bytes.size());
      et.mapping = "copied";
      if (ql) et.note = "row length not a multiple of 32: written dequantized as F32";
      ++res.n_copied;
    }
    res.worst_error = std::max(res.worst_error, et.max_abs_error);
    res.n_weights += static_cast<uint64_t>(t.n_elements());
    writer.write(bytes.data(), bytes.size());
    src.release(t);
    res.tensors.push_back(std::move(et));
    progress.update("Converting", ++done, static_cast<int64_t>(plan.size()), "tensors");
  }
  res.file_bytes = writer.expected_size();
  writer.commit();
  progress.finish("Converting");
  res.bpw = res.n_weights ? 8.0 * static_cast<double>(res.file_bytes) / static_cast<double>(res.n_weights) : 0;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace lq
