// Importance scores from an importance matrix: per weight (mean column importance over the
// experts that saw tokens, normalised to the model's largest), per block (parameter-weighted), and
// statistics over every column value.
// Names come from model/tensor_names (the one naming place); nothing here evaluates a model.
#include <lq/importance.hpp>

#include "model/tensor_names.hpp"

#include <algorithm>
#include <cmath>
#include <map>

namespace lq {

std::vector<LayerScore> layer_scores(const Imatrix& im, const Model& model) {
  std::vector<LayerScore> out;
  for (const auto& li : model.linears()) {
    const std::string name = li.role == "output" ? std::string("output.weight") : li.name;
    const ImatrixEntry* e = im.find(name);
    if (!e) continue;
    LayerScore s;
    s.tensor = name;
    s.layer_name = names::hf_module(name);
    s.layer_index = li.layer;
    s.parameter_count = li.n_in * li.n_out * li.n_expert;
    double sum = 0;
    int64_t n = 0;
    for (int64_t mat = 0; mat < e->n_mat; ++mat) {
      if (!(e->counts[static_cast<size_t>(mat)] > 0)) continue;  // an expert no token reached: no data
      for (float v : e->mean(mat)) {
        sum += v;
        ++n;
      }
    }
    s.score = n ? sum / static_cast<double>(n) : 0;
    out.push_back(std::move(s));
  }
  double mx = 0;
  for (const auto& s : out) mx = std::max(mx, s.score);
  for (auto& s : out) s.importance_score = mx > 0 ? s.score / mx : 0;
  return out;
}

std::vector<LayerScore> block_scores(const std::vector<LayerScore>& layers) {
  std::map<int, LayerScore> acc;
  for (const auto& l : layers) {
    LayerScore& b = acc[l.layer_index];
    b.layer_index = l.layer_index;
    b.score += l.score * static_cast<double>(l.parameter_count);
    b.parameter_count += l.parameter_count;
  }
  std::vector<LayerScore> out;
  double mx = 0;
  for (auto& [i, b] : acc) {
    b.score = b.parameter_count ? b.score / static_cast<double>(b.parameter_count) : 0;
    if (i < 0) {
      b.layer_name = names::hf_layer("output.weight");
      b.tensor = "output";
    } else {
      const std::string any = names::block_tensor(i, "");
      b.layer_name = names::hf_layer(any);
      b.tensor = any.substr(0, any.size() - 1);  // "blk.N"
    }
    mx = std::max(mx, b.score);
    out.push_back(b);
  }
  for (auto& b : out) b.importance_score = mx > 0 ? b.score / mx : 0;
  return out;
}

ImportanceStatistics importance_statistics(const Imatrix& im) {
  ImportanceStatistics st;
  double sum = 0, sum2 = 0;
  st.min = INFINITY;
  st.max = -INFINITY;
  for (const auto& [name, e] : im.entries)
    for (int64_t mat = 0; mat < e.n_mat; ++mat) {
      if (!(e.counts[static_cast<size_t>(mat)] > 0)) continue;
      for (float v : e.mean(mat)) {
        sum += v;
        sum2 += static_cast<double>(v) * v;
        st.min = std::min(st.min, static_cast<double>(v));
        st.max = std::max(st.max, static_cast<double>(v));
        ++st.count;
      }
    }
  if (st.count == 0) return ImportanceStatistics{};
  st.mean = sum / static_cast<double>(st.count);
  st.std = std::sqrt(std::max(0.0, sum2 / static_cast<double>(st.count) - st.mean * st.mean));
  return st;
}

}  // namespace lq
