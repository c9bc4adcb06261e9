#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/super_weights.hpp>
#include <lq/threads.hpp>

#include "quantize/mixture.hpp"

#include <algorithm>
#include <cmath>
#include <map>

using nlohmann::json;

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
    auto w = im.column_weights(t.name, t.row_length());
    if (!w) continue;
    const int64_t ncols = t.row_length(), nrows = t.n_rows();
    const int64_t chunk = std::max<int64_t>(1, (1 << 20) / ncols);
    std::vector<float> x(static_cast<size_t>(chunk * ncols));
    for (int64_t r0 = 0; r0 < nrows; r0 += chunk) {
      const int64_t n = std::min(chunk, nrows - r0);
      model.read_rows_f32(t, r0, n, x.data());
      fn(t, *w, r0, n, x.data());
    }
    model.release(t);
  }
}

}  // namespace

std::vector<ProtectedWeight> select_by_coverage(const ModelSource& model, const Imatrix& im, double coverage, int) {
  if (!(coverage > 0 && coverage < 1))
    fail(Errc::invalid_argument, "coverage must be in (0, 1), got {}", coverage);
  // Pass 1: histogram of scores to find the threshold of the top fraction.
  std::vector<uint64_t> hist(kBins, 0);
  uint64_t total = 0;
  for_each_scored_row(model, im, [&](const ModelTensor& t, const std::vector<float>& w, int64_t, int64_t n, const float* x) {
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

json super_weight_statistics(const std::vector<ProtectedWeight>& w) {
  std::map<std::string, int64_t> per_layer;
  double sum = 0, mx = -INFINITY, mn = INFINITY;
  for (const auto& p : w) {
    std::string layer = "other";
    if (p.tensor.rfind("blk.", 0) == 0) layer = p.tensor.substr(0, p.tensor.find('.', 4));
    else layer = p.tensor;
    ++per_layer[layer];
    sum += p.value;
    mx = std::max(mx, static_cast<double>(p.value));
    mn = std::min(mn, static_cast<double>(p.value));
  }
  json dist = json::object();
  for (const auto& [l, n] : per_layer) dist[l] = n;
  return {{"count", w.size()},
          {"per_layer", dist},
          {"value_mean", w.empty() ? 0.0 : sum / static_cast<double>(w.size())},
          {"value_max", w.empty() ? 0.0 : mx},
          {"value_min", w.empty() ? 0.0 : mn}};
}

void save_super_weights(const std::filesystem::path& path, const std::vector<ProtectedWeight>& w, const json& info) {
  json arr = json::array();
  for (const auto& p : w) arr.push_back({{"tensor", p.tensor}, {"row", p.row}, {"col", p.col}, {"value", p.value}});
  json j = {{"format", "lq.super_weights"}, {"version", 1}, {"info", info}, {"weights", arr}};
  write_file_atomic(path, j.dump(1) + "\n");
}

std::vector<ProtectedWeight> load_super_weights(const std::filesystem::path& path) {
  try {
    const json j = json::parse(read_file(path));
    std::vector<ProtectedWeight> out;
    for (const auto& x : j.at("weights"))
      out.push_back({x.at("tensor").get<std::string>(), x.at("row").get<int64_t>(), x.at("col").get<int64_t>(),
                     x.at("value").get<float>()});
    return out;
  } catch (const json::exception& e) {
    fail(Errc::invalid_argument, "{}: malformed super-weight file: {}", path.string(), e.what());
  }
}

}  // namespace lq
