// Super-weight detection by activation spikes (Yu et al. 2024): observe every block's ffn_down
// on a short prompt, find the block whose largest input and output both stand out from the
// other blocks by an order of magnitude, take W_down[j, k] (j = channel of the largest output,
// k = channel of the largest input), confirm by zeroing it, and repeat with it zeroed. In a
// mixture of experts every expert's slice of ffn_down_exps is observed on the rows routed to it:
// the spike names the expert, and the weight is that expert's W_down[j, k] (row e * n_embd + j
// of the merged tensor; zeroing it leaves the routing of its block unchanged).
// The JSON of a detection is in formats/super_weight_file.cpp.
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/importance.hpp>

#include "model/tensor_names.hpp"

#include <algorithm>
#include <cmath>
#include <map>

namespace lq {
namespace {

struct Pass {
  std::vector<DownProjMaxima> layers;
  std::vector<std::vector<float>> input_at_peak;  // per layer: the input row of the output maximum's token
  std::vector<int64_t> row_at_peak;               // per layer: that row's index in its product
};

// Every block's ffn_down output rows, per expert (-1: a dense MLP), for confirmation.
using DownOutputs = std::vector<std::map<int, std::vector<float>>>;

bool is_down_proj(const LinearInfo& li) { return li.role == "ffn_down" || li.role == "ffn_down_exps"; }

// Raises `max` to the largest |x| of a rows x channels block where that is larger, recording its
// channel (and row); the first position wins a tie. True when it was raised.
bool track_peak(const float* x, int64_t n_rows, int64_t n_channels, float& max, int64_t& channel, int64_t* row) {
  bool raised = false;
  for (int64_t t = 0; t < n_rows; ++t)
    for (int64_t c = 0; c < n_channels; ++c) {
      const float v = std::fabs(x[t * n_channels + c]);
      if (v > max) {
        max = v;
        channel = c;
        if (row) *row = t;
        raised = true;
      }
    }
  return raised;
}

// Element (token, channel) of every block's ffn_down output on the prompt, for confirmation.
Pass observe(Model& model, std::span<const int32_t> prompt, const Context& ctx, DownOutputs* outputs) {
  const int64_t n_layer = model.config().n_layer;
  Pass p;
  p.layers.resize(static_cast<size_t>(n_layer));
  p.input_at_peak.resize(static_cast<size_t>(n_layer));
  p.row_at_peak.assign(static_cast<size_t>(n_layer), 0);
  if (outputs) outputs->assign(static_cast<size_t>(n_layer), {});
  Session s(model, SessionOptions{static_cast<int64_t>(prompt.size()), false}, ctx);
  s.set_linear_hook([&](const LinearEvent& ev) {
    if (!is_down_proj(*ev.linear)) return;
    const int l = ev.linear->layer;
    const size_t ls = static_cast<size_t>(l);
    DownProjMaxima& m = p.layers[ls];
    m.layer = l;
    const int64_t ni = ev.linear->n_in, no = ev.linear->n_out;
    if (track_peak(ev.input, ev.n_tokens, ni, m.input_max, m.input_channel, nullptr)) m.input_expert = ev.expert;
    int64_t row = 0;
    if (track_peak(ev.output, ev.n_tokens, no, m.output_max, m.output_channel, &row)) {
      m.expert = ev.expert;
      m.token = ev.positions ? ev.positions[row] : row;
      p.row_at_peak[ls] = row;
      p.input_at_peak[ls].assign(ev.input + row * ni, ev.input + (row + 1) * ni);
    }
    if (outputs) (*outputs)[ls][ev.expert].assign(ev.output, ev.output + ev.n_tokens * no);
  });
  s.eval(prompt, static_cast<int64_t>(prompt.size()));
  return p;
}

double median_excluding(const std::vector<double>& v, size_t skip) {
  std::vector<double> o;
  for (size_t i = 0; i < v.size(); ++i)
    if (i != skip) o.push_back(v[i]);
  if (o.empty()) return 0;
  std::sort(o.begin(), o.end());
  const size_t h = o.size() / 2;
  return o.size() % 2 ? o[h] : 0.5 * (o[h - 1] + o[h]);
}

// Ratios of each block's maxima to the median of the other blocks'.
void ratios(const std::vector<DownProjMaxima>& L, std::vector<double>& rin, std::vector<double>& rout,
            std::vector<double>& med_out) {
  std::vector<double> in, out;
  for (const auto& m : L) {
    in.push_back(m.input_max);
    out.push_back(m.output_max);
  }
  rin.assign(L.size(), 0);
  rout.assign(L.size(), 0);
  med_out.assign(L.size(), 0);
  for (size_t l = 0; l < L.size(); ++l) {
    const double mi = median_excluding(in, l), mo = median_excluding(out, l);
    med_out[l] = mo;
    rin[l] = mi > 0 ? in[l] / mi : 0;
    rout[l] = mo > 0 ? out[l] / mo : 0;
  }
}

bool exact_type(QuantType t) { return t == QuantType::F32 || t == QuantType::F16 || t == QuantType::BF16; }

}  // namespace

SuperWeightDetection detect_super_weights(Model& model, std::span<const int32_t> prompt,
                                          const SuperWeightDetectOptions& o, const Context& ctx) {
  if (prompt.empty()) fail(Errc::invalid_argument, "super-weight detection: the prompt is empty");
  if (!(o.spike_ratio > 1)) fail(Errc::invalid_argument, "super-weight detection: spike ratio must exceed 1, got {}", o.spike_ratio);
  SuperWeightDetection det;
  // Originals of the tensors we modify, restored at the end (in their original type when it
  // round-trips floats exactly; a quantized tensor comes back as its decoded values in F32).
  std::map<std::string, std::pair<std::vector<float>, QuantType>> originals;
  // row: of the tensor's 2-D view (expert e's row j of a 3-D tensor is e * ne[1] + j).
  auto set_element = [&](const std::string& name, int64_t row, int64_t col, float value) {
    auto it = originals.find(name);
    if (it == originals.end())
      it = originals.emplace(name, std::make_pair(model.tensor_f32(name), model.tensor_type(name))).first;
    std::vector<float> v = model.tensor_f32(name);
    const int64_t n_in = model.tensor_shape(name)[0];
    v[static_cast<size_t>(row * n_in + col)] = value;
    model.replace_tensor(name, v, exact_type(it->second.second) ? it->second.second : QuantType::F32);
  };
  auto restore_all = [&] {
    for (const auto& [name, orig] : originals)
      model.replace_tensor(name, orig.first, exact_type(orig.second) ? orig.second : QuantType::F32);
    originals.clear();
  };
  if (model.config().n_layer < 2) return det;

  try {
    DownOutputs outputs;
    Pass pass = observe(model, prompt, ctx, nullptr);
    det.layers = pass.layers;
    for (int round = 0; round < o.max_rounds; ++round) {
      ctx.check_cancelled();
      det.rounds = round + 1;
      std::vector<double> rin, rout, med_out;
      ratios(pass.layers, rin, rout, med_out);
      int best = -1;
      for (size_t l = 0; l < pass.layers.size(); ++l)
        if (rin[l] >= o.spike_ratio && rout[l] >= o.spike_ratio && (best < 0 || rout[l] > rout[static_cast<size_t>(best)]))
          best = static_cast<int>(l);
      if (best < 0) break;
      const DownProjMaxima& m = pass.layers[static_cast<size_t>(best)];
      const bool expert = m.expert >= 0;
      const std::string name = names::block_tensor(best, expert ? "ffn_down_exps.weight" : "ffn_down.weight");
      const int64_t n_in = model.tensor_shape(name)[0], n_out = model.tensor_shape(name)[1];
      const int64_t wrow_index = (expert ? m.expert * n_out : 0) + m.output_channel;
      const std::vector<float> w = model.tensor_f32(name);
      const float* wrow = w.data() + wrow_index * n_in;
      const auto& x = pass.input_at_peak[static_cast<size_t>(best)];
      int64_t contrib = 0;
      double cmax = -1;
      for (int64_t k = 0; k < n_in; ++k) {
        const double c = std::fabs(static_cast<double>(x[static_cast<size_t>(k)]) * wrow[k]);
        if (c > cmax) {
          cmax = c;
          contrib = k;
        }
      }
      DetectedSuperWeight sw;
      sw.layer = best;
      sw.expert = m.expert;
      sw.input_max = m.input_max;
      sw.output_max = m.output_max;
      sw.input_ratio = rin[static_cast<size_t>(best)];
      sw.output_ratio = rout[static_cast<size_t>(best)];
      sw.largest_contributor = contrib;
      const double threshold = o.spike_ratio * med_out[static_cast<size_t>(best)];
      // Candidate columns: the paper's (largest input channel, when that input entered the same
      // expert), then the largest contributor.
      std::vector<int64_t> cols;
      if (m.input_expert == m.expert) cols.push_back(m.input_channel);
      if (cols.empty() || contrib != m.input_channel) cols.push_back(contrib);
      Pass after;
      bool confirmed = false;
      for (int64_t k : cols) {
        sw.weight = ProtectedWeight{name, wrow_index, k, wrow[k]};
        if (!o.confirm) break;
        set_element(name, wrow_index, k, 0.0f);
        after = observe(model, prompt, ctx, &outputs);
        // The same product's row: zeroing a down weight leaves the block's routing as it was.
        const auto& y = outputs[static_cast<size_t>(best)].at(m.expert);
        sw.output_after = std::fabs(y[static_cast<size_t>(pass.row_at_peak[static_cast<size_t>(best)] * n_out + m.output_channel)]);
        confirmed = sw.output_after < threshold;
        if (confirmed) break;
        set_element(name, wrow_index, k, wrow[k]);
      }
      sw.confirmed = confirmed;
      if (!o.confirm) {
        // Unconfirmed mode: zero it anyway to look for the next spike.
        set_element(name, wrow_index, sw.weight.col, 0.0f);
        after = observe(model, prompt, ctx, nullptr);
      }
      if (o.confirm && !confirmed) sw.weight.col = cols.front(), sw.weight.value = wrow[cols.front()];
      det.found.push_back(sw);
      if (o.confirm && !confirmed) break;  // the spike stays: rerunning would find it again
      pass = std::move(after);
    }
  } catch (...) {
    restore_all();
    throw;
  }
  restore_all();
  return det;
}

}  // namespace lq
