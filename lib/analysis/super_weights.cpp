// Choosing the weights to protect: the coverage rule (top fraction by importance x weight^2, two
// passes over the weights with a log histogram), their statistics, and the merge with the
// confirmed activation spikes. The mask file format is in formats/super_weight_file.cpp.
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/super_weights.hpp>

#include "model/tensor_names.hpp"
#include "quantize/mixture.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>

namespace lq {
namespace {

// Scores are importance * w^2 >= 0; the histogram runs over log2(score) in 1/16-octave bins.
constexpr int kBins = 16 * 256;
int bin_of(double s) {
  if (!(s > 0)) return 0;
  const int b = static_cast<int>(std::floor((std::log2(s) + 128.0) * 16.0));
  return std::clamp(b, 1, kBins - 1);
}

struct Scored {
  double score;
  size_t tensor;
  int64_t row, col;
  float value;
};

template <typename Fn>
void for_each_scored_row(const ModelSource& model, const Imatrix& im, Fn&& fn) {
  for (const auto& t : model.tensors()) {
    if (!tensor_allows_quantization(t.name, static_cast<int>(t.ne.size()), true)) continue;
    // A 3-D expert tensor: each expert's rows weighted by its own row of the importance matrix.
    const int64_t n_mat = t.ne.size() == 3 && t.ne[2] > 0 ? t.ne[2] : 1;
    auto all = im.column_weights(t.name, t.row_length(), n_mat);
    if (!all) continue;
    const int64_t ncols = t.row_length(), nrows = t.n_rows(), per = nrows / n_mat;
    const int64_t chunk = std::max<int64_t>(1, (1 << 20) / ncols);
    std::vector<float> x(static_cast<size_t>(chunk * ncols)), w;
    for (int64_t r0 = 0; r0 < nrows;) {
      const int64_t n = std::min({chunk, nrows - r0, per - r0 % per});
      w.assign(all->begin() + (r0 / per) * ncols, all->begin() + (r0 / per + 1) * ncols);
      model.read_rows_f32(t, r0, n, x.data());
      fn(t, w, r0, n, x.data());
      r0 += n;
    }
    model.release(t);
  }
}

}  // namespace

std::vector<ProtectedWeight> select_by_coverage(const ModelSource& model, const Imatrix& im, double coverage,
                                                const Context& ctx) {
  if (!(coverage > 0 && coverage < 1))
    fail(Errc::invalid_argument, "coverage must be in (0, 1), got {}", coverage);
  // Pass 1: histogram of scores to find the threshold of the top fraction.
  std::vector<uint64_t> hist(kBins, 0);
  uint64_t total = 0;
  for_each_scored_row(model, im, [&](const ModelTensor& t, const std::vector<float>& w, int64_t, int64_t n, const float* x) {
    ctx.check_cancelled();
    const int64_t nc = t.row_length();
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < nc; ++j) {
        const double v = x[r * nc + j];
        ++hist[static_cast<size_t>(bin_of(static_cast<double>(w[static_cast<size_t>(j)]) * v * v))];
      }
    total += static_cast<uint64_t>(n * nc);
  });
  if (total == 0) fail(Errc::imatrix_error, "the importance matrix covers none of the model's weights");
  const uint64_t k = std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(coverage * static_cast<double>(total))));
  uint64_t acc = 0;
  int threshold_bin = kBins - 1;
  for (int b = kBins - 1; b >= 0; --b) {
    acc += hist[static_cast<size_t>(b)];
    threshold_bin = b;
    if (acc >= k) break;
  }
  // Pass 2: collect the candidates at or above the threshold bin, keep the top k.
  std::vector<Scored> cand;
  std::vector<const ModelTensor*> tensors;
  for_each_scored_row(model, im, [&](const ModelTensor& t, const std::vector<float>& w, int64_t r0, int64_t n, const float* x) {
    if (tensors.empty() || tensors.back() != &t) tensors.push_back(&t);
    const int64_t nc = t.row_length();
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < nc; ++j) {
        const double v = x[r * nc + j];
        const double s = static_cast<double>(w[static_cast<size_t>(j)]) * v * v;
        if (bin_of(s) >= threshold_bin) cand.push_back({s, tensors.size() - 1, r0 + r, j, static_cast<float>(v)});
      }
  });
  const size_t keep = std::min<size_t>(cand.size(), static_cast<size_t>(k));
  std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(keep), cand.end(), [](const Scored& a, const Scored& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.tensor != b.tensor) return a.tensor < b.tensor;
    if (a.row != b.row) return a.row < b.row;
    return a.col < b.col;
  });
  std::vector<ProtectedWeight> out;
  out.reserve(keep);
  for (size_t i = 0; i < keep; ++i)
    out.push_back({tensors[cand[i].tensor]->name, cand[i].row, cand[i].col, cand[i].value});
  std::sort(out.begin(), out.end(), [](const ProtectedWeight& a, const ProtectedWeight& b) {
    return std::tie(a.tensor, a.row, a.col) < std::tie(b.tensor, b.row, b.col);
  });
  return out;
}

SuperWeightStatistics super_weight_statistics(const std::vector<ProtectedWeight>& w) {
  SuperWeightStatistics st;
  double sum = 0, mx = -INFINITY, mn = INFINITY;
  for (const auto& p : w) {
    const int block = names::block_of(p.tensor);
    std::string layer = p.tensor;
    if (block >= 0) {
      layer = names::block_tensor(block, "");  // "blk.N."
      layer.pop_back();
    }
    ++st.per_layer[layer];
    sum += p.value;
    mx = std::max(mx, static_cast<double>(p.value));
    mn = std::min(mn, static_cast<double>(p.value));
  }
  st.count = static_cast<int64_t>(w.size());
  st.value_mean = w.empty() ? 0.0 : sum / static_cast<double>(w.size());
  st.value_max = w.empty() ? 0.0 : mx;
  st.value_min = w.empty() ? 0.0 : mn;
  return st;
}

std::vector<ProtectedWeight> merge_super_weights(const SuperWeightDetection& detection,
                                                 const std::vector<ProtectedWeight>& by_coverage) {
  std::vector<ProtectedWeight> out;
  std::set<std::tuple<std::string, int64_t, int64_t>> seen;
  for (const auto& f : detection.found)
    if (f.confirmed && seen.emplace(f.weight.tensor, f.weight.row, f.weight.col).second) out.push_back(f.weight);
  for (const auto& w : by_coverage)
    if (seen.emplace(w.tensor, w.row, w.col).second) out.push_back(w);
  std::sort(out.begin(), out.end(), [](const ProtectedWeight& a, const ProtectedWeight& b) {
    return std::tie(a.tensor, a.row, a.col) < std::tie(b.tensor, b.row, b.col);
  });
  return out;
}

int64_t SuperWeightSelection::spikes_confirmed() const {
  return std::ranges::count_if(detection.found, [](const DetectedSuperWeight& f) { return f.confirmed; });
}

double SuperWeightSelection::protected_pct() const {
  return covered_weights ? 100.0 * static_cast<double>(weights.size()) / static_cast<double>(covered_weights) : 0.0;
}

SuperWeightSelection identify_super_weights(Model& model, const ModelSource& source, const Imatrix& imatrix,
                                            std::span<const int32_t> prompt, double coverage,
                                            const SuperWeightDetectOptions& detect, const Context& ctx) {
  SuperWeightSelection s;
  s.coverage = coverage;
  s.detection = detect_super_weights(model, prompt, detect, ctx);
  const std::vector<ProtectedWeight> by_cov = select_by_coverage(source, imatrix, coverage, ctx);
  s.coverage_selected = static_cast<int64_t>(by_cov.size());
  s.weights = merge_super_weights(s.detection, by_cov);
  for (const auto& [name, e] : imatrix.entries)
    if (const ModelTensor* t = source.find(name)) s.covered_weights += t->n_elements();
  s.statistics = super_weight_statistics(s.weights);
  return s;
}

}  // namespace lq
