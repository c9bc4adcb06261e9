// The size solver of dynamic profiles: measuring each tensor's imatrix-weighted error under each
// candidate type (on sampled rows, protected rows included), and choosing one type per tensor
// under a byte budget. Must not read rules or presets.
#include "profile/solver.hpp"

#include <lq/backend.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/gguf.hpp>
#include <lq/quantizer.hpp>

#include "quantize/mixture.hpp"
#include "quantize/protect.hpp"

#include <algorithm>
#include <cmath>

namespace lq::profile {

std::vector<TensorErrors> measure_errors(const ModelSource& model, const std::vector<std::string>& tensors,
                                         const std::vector<QuantType>& types, const ResolveOptions& opts,
                                         const Context& ctx) {
  std::vector<TensorErrors> out;
  Progress& progress = ctx.progress_sink();
  int64_t done = 0;
  for (const auto& name : tensors) {
    ctx.check_cancelled();
    const ModelTensor& t = model.at(name);
    const int64_t ncols = t.row_length(), nrows = t.n_rows();
    // Rows to measure on: evenly spaced, plus every row that holds a protected weight.
    std::vector<int64_t> rows;
    const int64_t want = std::min(nrows, std::max<int64_t>(1, opts.max_rows_per_tensor));
    for (int64_t i = 0; i < want; ++i) rows.push_back(i * nrows / want);
    std::vector<const ProtectedWeight*> prot;
    for (const auto& pw : opts.protect)
      if (pw.tensor == name) {
        prot.push_back(&pw);
        rows.push_back(pw.row);
      }
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    std::vector<float> x(static_cast<size_t>(rows.size()) * ncols);
    for (size_t i = 0; i < rows.size(); ++i) model.read_rows_f32(t, rows[i], 1, x.data() + i * ncols);
    std::vector<float> w(static_cast<size_t>(ncols), 1.0f);
    bool has_imatrix = false;
    // A 3-D expert tensor: each sampled row is weighted by its expert's importance.
    const int64_t n_mat = t.ne.size() == 3 && t.ne[2] > 0 ? t.ne[2] : 1;
    std::vector<float> w_all;
    if (opts.imatrix)
      if (auto cw = opts.imatrix->column_weights(name, ncols, n_mat)) {
        w_all = std::move(*cw);
        w.assign(w_all.begin(), w_all.begin() + ncols);
        has_imatrix = true;
      }
    // The importance row of sampled row i: its expert's (expert 0's is w).
    auto weights_of = [&](size_t i) {
      return n_mat == 1 || !has_imatrix ? w.data() : w_all.data() + (rows[i] / (nrows / n_mat)) * ncols;
    };
    const double scale = static_cast<double>(nrows) / static_cast<double>(rows.size());
    TensorErrors te;
    te.tensor = name;
    te.n_elements = t.n_elements();
    for (QuantType qt : types) {
      const TypeInfo& ti = type_info(qt);
      if (ncols % ti.block_size != 0 || !ti.quantize_ref) continue;
      if (!has_imatrix && (ti.needs_imatrix || tensor_requires_imatrix(name, qt, FileType::Q8_0))) continue;
      std::vector<uint8_t> q(ti.row_bytes(ncols) * rows.size());
      if (n_mat == 1 || !has_imatrix)
        Quantizer::quantize_rows(qt, x.data(), q.data(), static_cast<int64_t>(rows.size()), ncols,
                                 has_imatrix ? w.data() : nullptr, ctx, opts.imatrix != nullptr);
      else
        for (size_t i = 0; i < rows.size(); ++i)
          Quantizer::quantize_rows(qt, x.data() + i * ncols, q.data() + i * ti.row_bytes(ncols), 1, ncols, weights_of(i),
                                   ctx);
      // Rows holding protected weights are quantized as Quantizer::quantize will write them.
      for (size_t i = 0; i < rows.size() && !ti.is_float(); ++i) {
        std::vector<int64_t> cols;
        for (const auto* pw : prot)
          if (pw->row == rows[i]) cols.push_back(pw->col);
        if (!cols.empty())
          quantize_protected_row(qt, x.data() + i * ncols, q.data() + i * ti.row_bytes(ncols), ncols,
                                 has_imatrix ? weights_of(i) : nullptr, cols, ctx);
      }
      std::vector<float> y(x.size());
      const DequantizeFn deq = ctx.kernels(qt).dequantize;
      for (size_t i = 0; i < rows.size(); ++i) deq(q.data() + i * ti.row_bytes(ncols), y.data() + i * ncols, ncols);
      double err = 0;
      for (size_t i = 0; i < rows.size(); ++i) {
        const float* wi = weights_of(i);
        for (int64_t j = 0; j < ncols; ++j) {
          const double d = static_cast<double>(x[i * ncols + j]) - y[i * ncols + j];
          err += wi[j] * d * d;
        }
      }
      double pmax = 0;
      for (const auto* pw : prot) {
        const size_t i = static_cast<size_t>(std::lower_bound(rows.begin(), rows.end(), pw->row) - rows.begin());
        const float v = x[i * ncols + pw->col];
        const float qv = y[i * ncols + pw->col];
        pmax = std::max(pmax, v != 0 ? std::fabs(static_cast<double>(qv) - v) / std::fabs(v) : std::fabs(qv));
      }
      te.types.push_back(qt);
      te.error.push_back(err * scale);
      te.bytes.push_back(gguf::tensor_nbytes(qt, t.ne));
      te.protected_max_rel.push_back(pmax);
    }
    if (te.types.empty()) fail(Errc::profile_error, "tensor '{}': no candidate type fits its row length {}", name, ncols);
    out.push_back(std::move(te));
    progress.update("Measuring", ++done, static_cast<int64_t>(tensors.size()), "tensors");
  }
  progress.finish("Measuring");
  return out;
}

void apply_sensitivity(std::vector<TensorErrors>& errs, const SensitivityTable& table) {
  for (auto& e : errs) {
    const SensitivityRow* row = table.find(e.tensor);
    if (!row || row->types.empty())
      fail(Errc::profile_error, "the sensitivity table has no measurement of tensor '{}' (measure it again)", e.tensor);
    std::vector<double> cost(e.types.size());
    for (size_t k = 0; k < e.types.size(); ++k) {
      const auto it = std::find(row->types.begin(), row->types.end(), e.types[k]);
      if (it != row->types.end()) {
        cost[k] = row->kld[static_cast<size_t>(it - row->types.begin())];
        continue;
      }
      // Not measured: the error scaled by the tensor's KLD per unit of error at the nearest
      // measured type (by bits per weight) whose error is known and positive.
      double best_d = 1e300, ratio = -1;
      for (size_t m = 0; m < row->types.size(); ++m) {
        const auto jt = std::find(e.types.begin(), e.types.end(), row->types[m]);
        if (jt == e.types.end()) continue;
        const double em = e.error[static_cast<size_t>(jt - e.types.begin())];
        if (!(em > 0)) continue;
        const double d = std::fabs(type_info(row->types[m]).bpw() - type_info(e.types[k]).bpw());
        if (d < best_d) {
          best_d = d;
          ratio = row->kld[m] / em;
        }
      }
      if (ratio < 0)
        fail(Errc::profile_error, "tensor '{}': no measured type to scale the error of {} by (measure it)", e.tensor,
             type_name(e.types[k]));
      cost[k] = e.error[k] * ratio;
    }
    e.error = std::move(cost);
  }
}

std::vector<size_t> solve_allocation(const std::vector<TensorErrors>& errs, uint64_t budget) {
  const size_t n = errs.size();
  std::vector<size_t> pick(n, 0);
  uint64_t min_bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    size_t best = 0;
    for (size_t k = 1; k < errs[i].types.size(); ++k)
      if (errs[i].bytes[k] < errs[i].bytes[best]) best = k;
    min_bytes += errs[i].bytes[best];
  }
  if (min_bytes > budget)
    fail(Errc::profile_error, "the size target ({} bytes for these tensors) is below what the smallest types allow ({} bytes)",
         budget, min_bytes);
  // Lagrangian relaxation: each tensor minimises error + lambda * bytes independently; the
  // lambda whose choice just fits the budget is found by bisection on a log scale.
  auto choose = [&](double lambda, std::vector<size_t>& p) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; ++i) {
      size_t best = 0;
      double bv = errs[i].error[0] + lambda * static_cast<double>(errs[i].bytes[0]);
      for (size_t k = 1; k < errs[i].types.size(); ++k) {
        const double v = errs[i].error[k] + lambda * static_cast<double>(errs[i].bytes[k]);
        if (v < bv || (v == bv && errs[i].bytes[k] < errs[i].bytes[best])) {
          bv = v;
          best = k;
        }
      }
      p[i] = best;
      total += errs[i].bytes[best];
    }
    return total;
  };
  double lo = 1e-30, hi = 1e30;
  std::vector<size_t> tmp(n);
  for (int it = 0; it < 200; ++it) {
    const double mid = std::sqrt(lo * hi);
    if (choose(mid, tmp) <= budget) hi = mid;
    else lo = mid;
  }
  uint64_t total = choose(hi, pick);
  if (total > budget) {  // degenerate ties: fall back to the smallest types
    for (size_t i = 0; i < n; ++i) {
      size_t best = 0;
      for (size_t k = 1; k < errs[i].types.size(); ++k)
        if (errs[i].bytes[k] < errs[i].bytes[best]) best = k;
      pick[i] = best;
    }
    total = min_bytes;
  }
  // Greedy fill: spend what is left on the upgrades with the best error reduction per byte.
  for (;;) {
    double best_gain = 0;
    size_t bi = n, bk = 0;
    for (size_t i = 0; i < n; ++i) {
      const auto& e = errs[i];
      for (size_t k = 0; k < e.types.size(); ++k) {
        if (e.bytes[k] <= e.bytes[pick[i]] || e.error[k] >= e.error[pick[i]]) continue;
        const uint64_t extra = e.bytes[k] - e.bytes[pick[i]];
        if (total + extra > budget) continue;
        const double gain = (e.error[pick[i]] - e.error[k]) / static_cast<double>(extra);
        if (gain > best_gain) {
          best_gain = gain;
          bi = i;
          bk = k;
        }
      }
    }
    if (bi == n) break;
    total += errs[bi].bytes[bk] - errs[bi].bytes[pick[bi]];
    pick[bi] = bk;
  }
  return pick;
}

}  // namespace lq::profile
