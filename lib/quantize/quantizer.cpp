// Whole-model quantization: the per-tensor plan (mixture, overrides, fallbacks, checks) and the
// streaming writer loop, plus row quantization with protected weights. Orchestration above it
// (profiles, protection, gates) lives in quantize/job.cpp; the type rules in quantize/mixture.cpp.
#include <lq/backend.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"
#include "core/shape.hpp"
#include <lq/gguf.hpp>
#include <lq/io.hpp>
#include <lq/quantizer.hpp>
#include <lq/threads.hpp>

#include "backend/ops.hpp"
#include "model/tensor_names.hpp"
#include "quantize/checkpoint.hpp"
#include "quantize/gain.hpp"
#include "quantize/mixture.hpp"
#include "quantize/protect.hpp"
#include "types/ref/kquants.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <regex>
#include <string_view>
#include <tuple>

namespace lq {

int64_t TensorPlan::n_elements() const { return element_count(ne); }

namespace {

// Name of split `i` (0-based) of `n` for "dir/name.gguf": "dir/name-0000{i+1}-of-0000{n}.gguf".
std::filesystem::path split_path(const std::filesystem::path& out, int i, int n) {
  std::string stem = out.filename().string();
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".gguf") == 0) stem.resize(stem.size() - 5);
  return out.parent_path() / fmt::format("{}-{:05}-of-{:05}.gguf", stem, i + 1, n);
}

// The GGUF tensor order of llama-quantize: non-block tensors by name, then by layer, then name.
bool gguf_tensor_order_less(const std::string& a, const std::string& b) {
  auto key = [](const std::string& n) {
    const names::SplitName s = names::split(n);
    return s.block < 0 ? std::tuple<int, int, std::string_view>{0, 0, n} : std::tuple<int, int, std::string_view>{1, s.block, s.rest};
  };
  return key(a) < key(b);
}

}  // namespace

QuantizeFn Quantizer::uncovered_kernel(QuantType t) { return t == QuantType::Q6_K ? ref::quantize_q6_k_by_square : nullptr; }

void Quantizer::quantize_rows(QuantType t, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                              const float* imatrix, const Context& ctx, bool uncovered, bool gain_correction) {
  const TypeInfo& ti = type_info(t);
  const QuantizeFn fallback = uncovered && !imatrix ? uncovered_kernel(t) : nullptr;
  const QuantizeFn q = fallback ? fallback : ctx.kernels(t).quantize;
  if (!q) fail(Errc::invalid_argument, "type {} cannot be quantized to", ti.name);
  const size_t rb = ti.row_bytes(n_per_row);
  // Rows are independent; each chunk goes to the kernel in one call so it can amortise setup.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(n_per_row, 1));
  parallel_for(nrows, ctx.threads, grain, [&](int64_t r0, int64_t r1) {
    q(src + r0 * n_per_row, static_cast<uint8_t*>(dst) + static_cast<size_t>(r0) * rb, r1 - r0, n_per_row, imatrix);
    if (gain_correction && (imatrix || uncovered))
      correct_gain(t, src + r0 * n_per_row, static_cast<uint8_t*>(dst) + static_cast<size_t>(r0) * rb, r1 - r0, n_per_row,
                   imatrix);
  });
}

// The matrices of a tensor: a 3-D MoE expert tensor (ne = [cols, rows, experts]) has one per
// expert; every other tensor one.
static int64_t expert_count(const std::vector<int64_t>& ne) { return ne.size() == 3 && ne[2] > 0 ? ne[2] : 1; }

void quantize_protected_row(QuantType t, const float* row, void* dst, int64_t n_per_row, const float* imatrix,
                            const std::vector<int64_t>& cols, const Context& ctx) {
  std::vector<float> w(static_cast<size_t>(n_per_row), 1.0f);
  if (imatrix) std::copy(imatrix, imatrix + n_per_row, w.begin());
  const float top = *std::max_element(w.begin(), w.end());
  for (int64_t c : cols) w[static_cast<size_t>(c)] = std::max(top, 1e-30f) * 1e4f;
  ctx.kernels(t).quantize(row, dst, 1, n_per_row, w.data());
}

void check_protected_weights(const std::vector<ProtectedWeight>& protect, const ModelSource& model) {
  for (const auto& pw : protect) {
    const ModelTensor* t = model.find(pw.tensor);
    if (!t)
      fail(Errc::invalid_argument, "protected weight in tensor '{}': the model has no such tensor (a mask for another model?)",
           pw.tensor);
    if (pw.row < 0 || pw.row >= t->n_rows() || pw.col < 0 || pw.col >= t->row_length())
      fail(Errc::invalid_argument, "protected weight ({}, {}) of '{}' lies outside the tensor ({} rows of {})", pw.row, pw.col,
           pw.tensor, t->n_rows(), t->row_length());
  }
}

std::vector<TensorPlan> Quantizer::plan(const ModelSource& src) const {
  const QuantizeOptions& o = opts_;
  const FileTypeInfo& level = file_type_info(o.ftype);
  const QuantType base = level.default_type;
  const bool base_quantized = !type_info(base).is_float();

  // Visit order (it drives the mixture's counters): llama-quantize's sorted order, or with
  // keep_split the source files in turn, each in its own order.
  std::vector<const ModelTensor*> order;
  for (const auto& t : src.tensors()) order.push_back(&t);
  if (o.keep_split)
    std::stable_sort(order.begin(), order.end(), [](const ModelTensor* a, const ModelTensor* b) { return a->split < b->split; });
  else
    std::stable_sort(order.begin(), order.end(),
                     [](const ModelTensor* a, const ModelTensor* b) { return gguf_tensor_order_less(a->name, b->name); });

  MixtureState st{o.ftype, src.config()};
  st.has_imatrix = o.imatrix != nullptr;
  st.output_tensor_type = o.output_tensor_type;
  st.token_embedding_type = o.token_embedding_type;
  for (const ModelTensor* t : order) {
    const TensorRole r = tensor_role(t->name);
    if (role_is_attn_v(r)) ++st.n_attn_v;
    if (r == TensorRole::output) st.tied_embeddings = false;
  }
  st.n_ffn_down = st.n_ffn_gate = st.n_ffn_up = static_cast<int>(src.config().n_layer);

  std::vector<std::pair<std::regex, QuantType>> patterns;
  for (const auto& [re, qt] : o.tensor_types) {
    try {
      patterns.emplace_back(std::regex(re), qt);
    } catch (const std::regex_error& e) {
      fail(Errc::invalid_argument, "--tensor-type: invalid regular expression '{}': {}", re, e.what());
    }
  }

  std::vector<TensorPlan> plans;
  for (const ModelTensor* t : order) {
    TensorPlan p;
    p.name = t->name;
    p.split = o.keep_split ? t->split : 0;
    p.ne = t->ne;
    p.source_type = t->type;
    // Dimensions as ggml counts them (trailing 1s dropped: Qwen2-MoE's [n_embd, 1] shared-expert
    // gate is 1-D to llama-quantize).
    int n_dims = static_cast<int>(t->ne.size());
    while (n_dims > 1 && t->ne[static_cast<size_t>(n_dims - 1)] == 1) --n_dims;
    // What an unquantized tensor becomes: 1-D tensors are F32, others keep the stored type
    // (GGUF), or take the level's float type when the level itself is a float level.
    QuantType keep = t->type;
    if (!src.is_gguf() && n_dims < 2) keep = QuantType::F32;
    if (!src.is_gguf() && converter_keeps_f32(t->name)) keep = QuantType::F32;
    QuantType type = keep;
    if (tensor_allows_quantization(t->name, n_dims, !o.leave_output_tensor)) {
      const TensorRole role = tensor_role(t->name);
      if (o.token_embedding_type && role == TensorRole::token_embd) {
        type = *o.token_embedding_type;
      } else if (o.output_tensor_type && role == TensorRole::output) {
        type = *o.output_tensor_type;
      } else {
        type = base;
        if (base_quantized) {
          bool manual = false;
          if (auto it = o.tensor_type_map.find(t->name); it != o.tensor_type_map.end()) {
            type = it->second;
            manual = true;
          }
          for (const auto& [re, qt] : patterns) {
            if (manual) break;
            if (std::regex_search(t->name, re)) {
              type = qt;
              manual = true;
            }
          }
          if (!manual && !o.pure) type = mixture_type(st, t->name, t->ne[0], base);
          if (auto fb = fallback_type(type, t->ne[0])) {
            type = *fb;
            p.fallback = true;
          }
        }
      }
    }
    if (!src.is_gguf() && !base_quantized && converter_keeps_f32(t->name)) type = QuantType::F32;
    const TypeInfo& ti = type_info(type);
    if (!ti.storable) fail(Errc::invalid_argument, "tensor '{}': type {} cannot be stored in a GGUF file", t->name, ti.name);
    if (t->ne[0] % ti.block_size != 0)
      fail(Errc::invalid_argument, "tensor '{}': row length {} is not a multiple of {}'s block size {}", t->name,
           t->ne[0], ti.name, ti.block_size);
    p.type = type;
    p.quantize = type != t->type;
    if (p.quantize && !type_info(t->type).is_float() && !o.allow_requantize)
      fail(Errc::invalid_argument,
           "tensor '{}' is already quantized ({}); requantizing to {} loses quality: pass --allow-requantize to do it anyway",
           t->name, type_name(t->type), ti.name);
    if (p.quantize && !ti.is_float() && o.imatrix) {
      p.uses_imatrix = o.imatrix->find(t->name) != nullptr;
      if (p.uses_imatrix) (void)o.imatrix->column_weights(t->name, t->ne[0], expert_count(t->ne));  // validates it
    }
    if (p.quantize && tensor_requires_imatrix(t->name, type, o.ftype) && !p.uses_imatrix) {
      if (!o.imatrix)
        throw Error(Errc::imatrix_error,
                    fmt::format("level {} needs an importance matrix (tensor '{}' becomes {})", level.name, t->name, ti.name),
                    "Compute one with `lq analyze MODEL` and pass it with --imatrix");
      fail(Errc::imatrix_error, "the importance matrix has no entry for tensor '{}', which {} needs for type {}", t->name,
           level.name, ti.name);
    }
    if (p.quantize && !ti.quantize_ref)
      fail(Errc::invalid_argument, "tensor '{}': quantizing to {} is not supported", t->name, ti.name);
    p.bytes = gguf::tensor_nbytes(type, p.ne);
    plans.push_back(std::move(p));
  }
  return plans;
}

QuantizeResult Quantizer::quantize(const ModelSource& src, const std::filesystem::path& out, const Context& ctx) const {
  const auto t0 = std::chrono::steady_clock::now();
  const QuantizeOptions& o = opts_;
  Progress& progress = ctx.progress_sink();
  QuantizeResult res;
  res.output = out;
  res.ftype = o.ftype;
  check_protected_weights(o.protect, src);
  res.tensors = plan(src);
  res.source_bytes = src.source_bytes();
  for (const auto& p : res.tensors) res.n_fallback += p.fallback ? 1 : 0;

  int n_out = 1;
  for (const auto& p : res.tensors) n_out = std::max(n_out, p.split + 1);
  if (o.keep_split && src.n_splits() > 1) n_out = src.n_splits();
  gguf::Metadata meta = src.gguf_metadata();
  for (const char* k : {"general.file_type", "general.quantization_version", "quantize.imatrix.file",
                        "quantize.imatrix.dataset", "quantize.imatrix.entries_count", "quantize.imatrix.chunks_count",
                        "split.no", "split.count", "split.tensors.count"})
    meta.erase(k);
  std::vector<std::unique_ptr<gguf::Writer>> writers;
  for (int i = 0; i < n_out; ++i) {
    const std::filesystem::path path = n_out > 1 ? split_path(out, i, n_out) : out;
    res.outputs.push_back(path);
    writers.push_back(std::make_unique<gguf::Writer>(path));
    gguf::Metadata& m = writers.back()->metadata();
    if (i == 0) {
      // General keys first, tokenizer keys last, as llama.cpp lays them out.
      for (const auto& [k, v] : meta.entries())
        if (k.rfind("tokenizer.", 0) != 0) m.set(k, v);
      m.set("general.quantization_version", gguf::Value::u32(2));
      m.set("general.file_type", gguf::Value::u32(static_cast<uint32_t>(o.ftype)));
      if (o.imatrix) {
        if (!o.imatrix_path.empty()) m.set("quantize.imatrix.file", gguf::Value::string(o.imatrix_path));
        if (!o.imatrix->datasets.empty())
          m.set("quantize.imatrix.dataset", gguf::Value::string(o.imatrix->datasets.front()));
        m.set("quantize.imatrix.entries_count", gguf::Value::u32(static_cast<uint32_t>(o.imatrix->entries.size())));
        m.set("quantize.imatrix.chunks_count", gguf::Value::u32(static_cast<uint32_t>(o.imatrix->chunk_count)));
      }
      for (const auto& [k, v] : meta.entries())
        if (k.rfind("tokenizer.", 0) == 0) m.set(k, v);
    }
    if (n_out > 1) {
      m.set("split.no", gguf::Value::u16(static_cast<uint16_t>(i)));
      m.set("split.count", gguf::Value::u16(static_cast<uint16_t>(n_out)));
      m.set("split.tensors.count", gguf::Value::i32(static_cast<int32_t>(res.tensors.size())));
    }
  }
  for (const auto& p : res.tensors) writers[static_cast<size_t>(p.split)]->add_tensor(p.name, p.type, p.ne);
  // Splits are written one after the other (each opens its file at its first write), and each is
  // committed as soon as it is complete, so only one output's buffers exist at a time.

  // Stream each tensor in chunks of rows. Within a chunk the threads each read, decode, check
  // and quantize their own rows, so reading overlaps quantizing; the writer thread of the output
  // file overlaps with the next chunk.
  constexpr int64_t kChunkFloats = 1 << 22;  // 16 MiB of f32 per chunk
  std::vector<uint8_t> raw, q;
  const std::string file = src.path().string();
  int64_t done = 0;
  // With a checkpoint, each tensor's bytes also go to it; resumed tensors come from it.
  std::optional<quantize_ckpt::Checkpoint> ckpt;
  if (!o.checkpoint.dir.empty()) {
    std::error_code ec;
    if (!o.checkpoint.resume && std::filesystem::exists(o.checkpoint.dir / "state.json", ec))
      progress.message(fmt::format("Replacing the checkpoint in {} (an earlier run's; --resume continues one)",
                                   o.checkpoint.dir.string()));
    ckpt.emplace(src, o, res.tensors);
    res.checkpoint = ckpt->dir();
    res.resumed_tensors = ckpt->n_done();
    if (o.checkpoint.resume)
      progress.message(fmt::format("resumed: {}/{} tensors from {}", ckpt->n_done(), res.tensors.size(),
                                   ckpt->dir().string()));
  }
  // The writer of split `s`; the outputs before it are complete and committed. A checkpoint
  // records each output's temporary file once it exists.
  std::vector<bool> temp_noted(writers.size(), false);
  auto writer_for = [&](int s) -> gguf::Writer& {
    for (int k = 0; k < s; ++k)
      if (writers[static_cast<size_t>(k)]) {
        writers[static_cast<size_t>(k)]->commit();
        writers[static_cast<size_t>(k)].reset();
      }
    gguf::Writer& w = *writers[static_cast<size_t>(s)];
    if (ckpt && !temp_noted[static_cast<size_t>(s)]) {
      w.write_header();
      ckpt->note_temp_output(w.temp_path());
      temp_noted[static_cast<size_t>(s)] = true;
    }
    return w;
  };
  auto check_cancelled = [&] {
    if (!ctx.cancelled()) return;
    if (ckpt)
      throw Error(Errc::interrupted,
                  fmt::format("interrupted after {} of {} tensors; the checkpoint was kept in {}", ckpt->n_done(),
                              res.tensors.size(), ckpt->dir().string()),
                  fmt::format("Resume with --resume {}", ckpt->dir().string()));
    ctx.check_cancelled();
  };
  for (const auto& p : res.tensors) {
    check_cancelled();
    if (ckpt && static_cast<size_t>(done) < ckpt->n_done()) {
      gguf::Writer& w = writer_for(p.split);
      ckpt->replay(static_cast<size_t>(done), size_t{16} << 20, [&](const uint8_t* d, size_t n) { w.write(d, n); });
      progress.update("Quantizing", ++done, static_cast<int64_t>(res.tensors.size()), "tensors");
      continue;
    }
    const ModelTensor& t = src.at(p.name);
    if (o.tensor_bytes && p.quantize) {
      if (auto pre = o.tensor_bytes->find(p.name); pre != o.tensor_bytes->end()) {
        if (pre->second.size() != p.bytes)
          fail(Errc::invalid_argument, "tensor '{}': {} bytes given, {} needs {}", p.name, pre->second.size(),
               type_name(p.type), p.bytes);
        gguf::Writer& w = writer_for(p.split);
        w.write(pre->second.data(), pre->second.size());
        if (ckpt) {
          ckpt->append(pre->second.data(), pre->second.size());
          ckpt->finish_tensor();
        }
        src.release(t);
        progress.update("Quantizing", ++done, static_cast<int64_t>(res.tensors.size()), "tensors");
        continue;
      }
    }
    const int64_t ncols = p.ne[0];
    const int64_t nrows = t.n_rows();
    const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkFloats / std::max<int64_t>(ncols, 1));
    std::optional<std::vector<float>> weights;
    // A 3-D expert tensor: each expert's rows with its own importance (llama-quantize's slices).
    const int64_t n_mat = expert_count(p.ne), rows_per_mat = nrows / n_mat;
    if (p.uses_imatrix) weights = o.imatrix->column_weights(p.name, ncols, n_mat);
    const float* imatrix = weights ? weights->data() : nullptr;
    auto imatrix_of = [&](int64_t row) { return imatrix ? imatrix + (row / rows_per_mat) * ncols : nullptr; };
    const TypeInfo& out_ti = type_info(p.type);
    const QuantizeFn fallback = o.imatrix && !p.uses_imatrix ? uncovered_kernel(p.type) : nullptr;
    const QuantizeFn qfn = !p.quantize ? nullptr : fallback ? fallback : ctx.kernels(p.type).quantize;
    const bool gain = o.gain_correction && o.imatrix;
    const auto count_non_finite = Registry::instance().engine_ops(ctx.active_backend()).count_non_finite;
    const size_t out_rb = out_ti.row_bytes(ncols);
    std::map<int64_t, std::vector<int64_t>> protected_rows;  // row -> columns
    for (const auto& pw : o.protect)
      if (pw.tensor == p.name) protected_rows[pw.row].push_back(pw.col);
    for (int64_t r0 = 0; r0 < nrows; r0 += rows_per_chunk) {
      const int64_t n = std::min(rows_per_chunk, nrows - r0);
      if (r0 > 0) check_cancelled();
      gguf::Writer& w = writer_for(p.split);
      if (!p.quantize) {
        raw.resize(static_cast<size_t>(n) * t.row_bytes());
        src.read_rows_raw(t, r0, n, raw.data());
        w.write(raw.data(), raw.size());
        if (ckpt) ckpt->append(raw.data(), raw.size());
        continue;
      }
      q.resize(out_rb * static_cast<size_t>(n));
      const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(ncols, 1));
      parallel_for(n, ctx.threads, grain, [&](int64_t a0, int64_t a1) {
        thread_local std::vector<float> f32;
        f32.resize(static_cast<size_t>((a1 - a0) * ncols));
        src.read_rows_f32(t, r0 + a0, a1 - a0, f32.data());
        if (count_non_finite(f32.data(), (a1 - a0) * ncols) != 0)
          fail(Errc::invalid_model, "{}: tensor '{}' contains a non-finite value (NaN or Inf)", file, p.name);
        for (int64_t b0 = a0; b0 < a1;) {  // runs of rows within one expert
          const int64_t b1 = std::min(a1, ((r0 + b0) / rows_per_mat + 1) * rows_per_mat - r0);
          qfn(f32.data() + (b0 - a0) * ncols, q.data() + static_cast<size_t>(b0) * out_rb, b1 - b0, ncols,
              imatrix_of(r0 + b0));
          if (gain)
            correct_gain(p.type, f32.data() + (b0 - a0) * ncols, q.data() + static_cast<size_t>(b0) * out_rb, b1 - b0, ncols,
                         imatrix_of(r0 + b0));
          b0 = b1;
        }
        if (protected_rows.empty() || out_ti.is_float()) return;
        for (auto it = protected_rows.lower_bound(r0 + a0); it != protected_rows.end() && it->first < r0 + a1; ++it)
          quantize_protected_row(p.type, f32.data() + (it->first - r0 - a0) * ncols,
                                 q.data() + static_cast<size_t>(it->first - r0) * out_rb, ncols,
                                 imatrix_of(it->first), it->second, ctx);
      });
      w.write(q.data(), q.size());
      if (ckpt) ckpt->append(q.data(), q.size());
    }
    if (ckpt) ckpt->finish_tensor();
    src.release(t);
    progress.update("Quantizing", ++done, static_cast<int64_t>(res.tensors.size()), "tensors");
  }
  progress.finish("Quantizing");
  for (auto& w : writers)
    if (w) w->commit();
  if (ckpt) ckpt->remove();
  res.output = res.outputs.front();
  for (const auto& path : res.outputs) res.file_bytes += std::filesystem::file_size(path);
  for (const auto& p : res.tensors) res.n_weights += static_cast<uint64_t>(p.n_elements());
  res.bpw = res.n_weights ? 8.0 * static_cast<double>(res.file_bytes) / static_cast<double>(res.n_weights) : 0;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

Progress& null_progress() {
  static Progress p;
  return p;
}

}  // namespace lq
