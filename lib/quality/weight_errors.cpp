// Sizes of model sources and per-tensor weight errors of a quantized model against its original
// (read through the sources, dequantized), grouped by Hugging Face layer group
// (model/tensor_names is the one naming place).
#include "quality/internal.hpp"

#include "model/tensor_names.hpp"

#include <lq/threads.hpp>

#include <algorithm>
#include <cmath>
#include <map>

namespace lq {

SizeInfo size_info(const ModelSource& source) {
  SizeInfo s;
  s.file_bytes = source.source_bytes();
  for (const auto& t : source.tensors()) {
    s.tensor_bytes += t.row_bytes() * static_cast<uint64_t>(t.n_rows());
    s.n_weights += t.n_elements();
  }
  // A GPTQ / AWQ / compressed-tensors checkpoint presents its linears dequantized (F32): its
  // tensors then take fewer bytes in its files than as presented, and the files' bytes are the size.
  const uint64_t stored = std::min(s.tensor_bytes, s.file_bytes > 0 ? s.file_bytes : s.tensor_bytes);
  s.bpw = s.n_weights ? 8.0 * static_cast<double>(stored) / static_cast<double>(s.n_weights) : 0;
  return s;
}

std::vector<TensorError> weight_errors(const ModelSource& original, const ModelSource& quantized, const Context& ctx) {
  const int threads = ctx.thread_count();
  Progress& progress = ctx.progress_sink();
  std::vector<const ModelTensor*> todo;
  for (const auto& t : quantized.tensors()) {
    if (t.ne.size() < 2 || t.n_rows() < 2) continue;
    if (t.name.size() < 7 || t.name.compare(t.name.size() - 7, 7, ".weight") != 0) continue;
    const ModelTensor* o = original.find(t.name);
    if (!o || o->ne != t.ne) continue;
    todo.push_back(&t);
  }
  std::vector<TensorError> out;
  out.reserve(todo.size());
  std::vector<float> a, b;
  for (size_t k = 0; k < todo.size(); ++k) {
    ctx.check_cancelled();
    const ModelTensor& tq = *todo[k];
    const ModelTensor& to = original.at(tq.name);
    const int64_t n_rows = tq.n_rows(), row = tq.row_length();
    // Rows in slices of about 4M values so memory stays bounded on large tensors.
    const int64_t step = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(1, row));
    double se = 0, sx = 0, mx = 0;
    for (int64_t r0 = 0; r0 < n_rows; r0 += step) {
      const int64_t nr = std::min(step, n_rows - r0);
      a.resize(static_cast<size_t>(nr * row));
      b.resize(a.size());
      original.read_rows_f32(to, r0, nr, a.data());
      quantized.read_rows_f32(tq, r0, nr, b.data());
      struct Part {
        double se = 0, sx = 0, mx = 0;
      };
      std::vector<Part> parts(static_cast<size_t>(nr));
      parallel_for(nr, threads, 16, [&](int64_t rb, int64_t re) {
        for (int64_t r = rb; r < re; ++r) {
          Part p;
          const float* x = a.data() + r * row;
          const float* q = b.data() + r * row;
          for (int64_t j = 0; j < row; ++j) {
            const double d = static_cast<double>(q[j]) - static_cast<double>(x[j]);
            p.se += d * d;
            p.sx += static_cast<double>(x[j]) * x[j];
            p.mx = std::max(p.mx, std::fabs(d));
          }
          parts[static_cast<size_t>(r)] = p;
        }
      });
      for (const Part& p : parts) {
        se += p.se;
        sx += p.sx;
        mx = std::max(mx, p.mx);
      }
    }
    original.release(to);
    quantized.release(tq);
    TensorError e;
    e.tensor = tq.name;
    e.group = names::hf_group(tq.name);
    e.type = type_name(tq.type);
    e.n_elements = tq.n_elements();
    e.mse = se / static_cast<double>(e.n_elements);
    e.max_error = mx;
    e.rel_mse = sx > 0 ? se / sx : 0;
    e.bit_width = 8.0 * static_cast<double>(tq.row_bytes() * static_cast<uint64_t>(n_rows)) / static_cast<double>(e.n_elements);
    out.push_back(std::move(e));
    progress.update("Layer errors", static_cast<int64_t>(k + 1), static_cast<int64_t>(todo.size()), "tensors");
  }
  progress.finish("Layer errors");
  return out;
}

std::vector<LayerError> group_layer_errors(const std::vector<TensorError>& errors) {
  std::vector<LayerError> out;
  std::map<std::string, size_t> index;
  std::vector<double> sq, bits;
  for (const auto& e : errors) {
    auto [it, added] = index.emplace(e.group, out.size());
    if (added) {
      out.push_back(LayerError{e.group, 0, 0, 0, 0});
      sq.push_back(0);
      bits.push_back(0);
    }
    const size_t i = it->second;
    const double n = static_cast<double>(e.n_elements);
    sq[i] += e.mse * n;
    bits[i] += e.bit_width * n;
    out[i].n_elements += e.n_elements;
    out[i].max_error = std::max(out[i].max_error, e.max_error);
  }
  for (size_t i = 0; i < out.size(); ++i) {
    const double n = static_cast<double>(out[i].n_elements);
    out[i].mse = n > 0 ? sq[i] / n : 0;
    out[i].bit_width = n > 0 ? bits[i] / n : 0;
  }
  return out;
}

}  // namespace lq
