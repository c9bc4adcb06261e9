// SVG pictures written by hand (include/lq/plot.hpp): the comparison plot (file size against
// perplexity and against KLD, Pareto front) and the importance heat map (layer x tensor kind).
// Plain text output: no plotting library, fixed fonts and sizes, text escaped for XML.
#include <lq/error.hpp>
#include <lq/plot.hpp>
#include "core/fail.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

namespace lq {

namespace {

// Text from files or paths, safe inside an SVG element or attribute.
std::string svg_text(const std::string& s) {
  const std::string e = escape_text(s);
  std::string out;
  out.reserve(e.size());
  for (char c : e) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string svg_number(double v) { return fmt::format("{:.4g}", v); }

// About `n` round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi].
std::vector<double> svg_ticks(double lo, double hi, int n) {
  const double span = hi - lo;
  const double raw = span / std::max(1, n);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  double step = p;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= raw) {
      step = m * p;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::fabs(v) < step * 1e-9 ? 0 : v);
  return t;
}

struct PlotPointSvg {
  std::string label;
  double x = 0, y = 0;
};

// Padded data range; a single value gets a range around it.
std::pair<double, double> svg_range(double lo, double hi, bool from_zero) {
  if (from_zero) lo = std::min(lo, 0.0);
  double pad = (hi - lo) * 0.08;
  if (!(pad > 0)) pad = std::max(std::fabs(hi) * 0.1, 1e-3);
  return {from_zero && lo >= 0 ? lo : lo - pad, hi + pad};
}

// A label's box in pixels (11 px text: about 6.3 px a character, 12 px high).
struct LabelBox {
  double x0, y0, x1, y1;
  bool hits(const LabelBox& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
};

struct PlacedLabel {
  double x, y;        // text anchor point (baseline)
  bool end_anchor;    // text-anchor end (label left of the point)
  bool leader;        // drawn away from its point: a thin line joins them
};

// Places each point's label beside it where it overlaps no other label, no point and stays in
// the panel: first the four corners next to the point, then further up or down on either side
// (with a leader line); when nothing is free, the place with the least overlap.
std::vector<PlacedLabel> place_labels(const std::vector<std::pair<double, double>>& at,
                                      const std::vector<std::string>& labels, double ox, double oy, double w, double h) {
  std::vector<LabelBox> taken;
  for (const auto& [X, Y] : at) taken.push_back({X - 8, Y - 8, X + 8, Y + 8});
  std::vector<size_t> order(at.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  // Left to right, so that clusters fan out in a stable order.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return at[a].first < at[b].first; });
  std::vector<PlacedLabel> out(at.size());
  for (size_t i : order) {
    const auto [X, Y] = at[i];
    const double tw = 6.3 * static_cast<double>(labels[i].size()), th = 12;
    const bool prefer_left = X > ox + w * 0.7;
    double best_cost = std::numeric_limits<double>::infinity();
    PlacedLabel best{};
    LabelBox best_box{};
    for (int k = 0; k < 24 && best_cost > 0; ++k) {
      // k = 0..3: the corners; then steps of 13 px up and down, alternating.
      const int step = k < 4 ? 0 : (k - 4) / 2 + 1;
      const bool up = k < 4 ? (k % 2 == 0) : ((k - 4) % 2 == 0);
      for (int side = 0; side < 2; ++side) {
        const bool left = (side == 0) == prefer_left;
        if (k < 4 && (k / 2 == 1) != (side == 1)) continue;  // corners: nearer side first
        const double by = up ? Y - 8 - 13.0 * step : Y + 16 + 13.0 * step;  // baseline
        const double bx = left ? X - 8 : X + 8;
        const LabelBox box{left ? bx - tw : bx, by - th + 2, left ? bx : bx + tw, by + 3};
        double cost = 0;
        for (const auto& t : taken)
          if (box.hits(t)) cost += (std::min(box.x1, t.x1) - std::max(box.x0, t.x0)) * (std::min(box.y1, t.y1) - std::max(box.y0, t.y0));
        const double outside = std::max(0.0, ox - box.x0) + std::max(0.0, box.x1 - (ox + w)) +
                               std::max(0.0, oy - box.y0) + std::max(0.0, box.y1 - (oy + h));
        cost += outside * 40;
        // A label nearer to another point than to its own reads as that point's.
        const double own = std::hypot(bx - X, by - 4 - Y);
        for (size_t j = 0; j < at.size(); ++j)
          if (j != i && std::hypot(bx - at[j].first, by - 4 - at[j].second) < own) cost += 60;
        if (cost < best_cost) {
          best_cost = cost;
          best = {bx, by, left, step > 0};
          best_box = box;
        }
      }
    }
    out[i] = best;
    taken.push_back(best_box);
  }
  return out;
}

// One scatter panel with its axes, grid, Pareto staircase (smaller x and smaller y are better)
// and labelled points. With `log_y` the y axis is logarithmic and values at or below 0 sit on
// its floor (half a decade under the smallest positive value).
void svg_scatter_panel(std::string& s, double ox, double oy, double w, double h, const std::string& title,
                       const std::string& xlabel, const std::string& ylabel, const std::vector<PlotPointSvg>& pts,
                       bool y_from_zero, bool log_y = false) {
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  double pos_min = std::numeric_limits<double>::infinity();
  for (const auto& p : pts) {
    xmin = std::min(xmin, p.x), xmax = std::max(xmax, p.x);
    ymin = std::min(ymin, p.y), ymax = std::max(ymax, p.y);
    if (p.y > 0) pos_min = std::min(pos_min, p.y);
  }
  log_y = log_y && std::isfinite(pos_min) && ymax > pos_min;
  const double floor_log = log_y ? std::log10(pos_min) - 0.5 : 0;
  // The plotted coordinate: log10 of the value on a log axis (the floor for values <= 0).
  auto ty = [&](double y) { return !log_y ? y : y > 0 ? std::log10(y) : floor_log; };
  // Plain variables, not structured bindings: lambdas below capture them (clang before 16 refuses
  // to capture a structured binding).
  const auto xr = svg_range(xmin, xmax, false);
  const auto yr = log_y ? std::pair<double, double>{floor_log - 0.15, std::log10(ymax) + 0.25}
                        : svg_range(ymin, ymax, y_from_zero);
  const double x0 = xr.first, x1 = xr.second, y0 = yr.first, y1 = yr.second;
  auto px = [&](double x) { return ox + (x - x0) / (x1 - x0) * w; };
  auto py = [&](double y) { return oy + h - (ty(y) - y0) / (y1 - y0) * h; };

  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"panel\">{}</text>\n", ox + w / 2, oy - 12, svg_text(title));
  s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"#ffffff\" stroke=\"#444444\"/>\n",
                   ox, oy, w, h);
  for (double t : svg_ticks(x0, x1, 5)) {
    const double X = px(t);
    s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" class=\"grid\"/>\n", X, oy, oy + h);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"tick\" text-anchor=\"middle\">{}</text>\n", X, oy + h + 16,
                     svg_number(t));
  }
  std::vector<double> yticks;  // values, not plotted coordinates
  if (log_y) {
    const double decades = y1 - y0;
    for (int e = static_cast<int>(std::floor(y0)); e <= static_cast<int>(std::ceil(y1)); ++e)
      for (double m : {1.0, 2.0, 5.0}) {
        if (m != 1.0 && decades > 3) continue;
        const double v = m * std::pow(10.0, e);
        if (std::log10(v) >= y0 && std::log10(v) <= y1) yticks.push_back(v);
      }
  } else {
    yticks = svg_ticks(y0, y1, 5);
  }
  for (double t : yticks) {
    const double Y = py(t);
    s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{2:.1f}\" x2=\"{1:.1f}\" y2=\"{2:.1f}\" class=\"grid\"/>\n", ox, ox + w, Y);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"tick\" text-anchor=\"end\">{}</text>\n", ox - 6, Y + 4,
                     svg_number(t));
  }
  if (log_y && ymin <= 0) {
    const double Y = oy + h - (floor_log - y0) / (y1 - y0) * h;
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"tick\" text-anchor=\"end\">0</text>\n", ox - 6, Y + 4);
  }
  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"axis\" text-anchor=\"middle\">{}</text>\n", ox + w / 2,
                   oy + h + 36, svg_text(xlabel));
  s += fmt::format("<text transform=\"translate({:.1f},{:.1f}) rotate(-90)\" class=\"axis\" text-anchor=\"middle\">{}</text>\n",
                   ox - 48, oy + h / 2, svg_text(ylabel + (log_y ? " (log scale)" : "")));

  // The Pareto front: by size, each point better than every smaller one.
  std::vector<size_t> order(pts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return pts[a].x != pts[b].x ? pts[a].x < pts[b].x : pts[a].y < pts[b].y;
  });
  std::vector<bool> on_front(pts.size(), false);
  std::vector<size_t> front;
  double best = std::numeric_limits<double>::infinity();
  for (size_t i : order)
    if (pts[i].y < best) {
      best = pts[i].y;
      on_front[i] = true;
      front.push_back(i);
    }
  std::string path;
  for (size_t k = 0; k < front.size(); ++k) {
    const auto& p = pts[front[k]];
    if (k == 0) path += fmt::format("M{:.1f},{:.1f}", px(p.x), py(p.y));
    else path += fmt::format(" H{:.1f} V{:.1f}", px(p.x), py(p.y));
  }
  if (!path.empty()) s += fmt::format("<path d=\"{}\" class=\"front\"/>\n", path);
  std::vector<std::pair<double, double>> at;
  std::vector<std::string> labels;
  for (const auto& p : pts) {
    at.emplace_back(px(p.x), py(p.y));
    labels.push_back(p.label);
  }
  const std::vector<PlacedLabel> placed = place_labels(at, labels, ox, oy, w, h);
  for (size_t i = 0; i < pts.size(); ++i) {
    const auto [X, Y] = at[i];
    s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"5\" class=\"{}\"><title>{}: {}, {}</title></circle>\n", X, Y,
                     on_front[i] ? "pt-front" : "pt", svg_text(pts[i].label), svg_number(pts[i].x), svg_number(pts[i].y));
    const PlacedLabel& l = placed[i];
    if (l.leader)
      s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" class=\"leader\"/>\n", X, Y, l.x,
                       l.y - 4);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"label\" text-anchor=\"{}\">{}</text>\n", l.x, l.y,
                     l.end_anchor ? "end" : "start", svg_text(pts[i].label));
  }
}

const char* kSvgStyle =
    "<style>\n"
    "text { font-family: DejaVu Sans, Arial, Helvetica, sans-serif; fill: #222222; }\n"
    ".title { font-size: 17px; font-weight: bold; }\n"
    ".sub { font-size: 12px; fill: #555555; }\n"
    ".panel { font-size: 14px; font-weight: bold; text-anchor: middle; }\n"
    ".axis { font-size: 12px; }\n"
    ".tick { font-size: 11px; fill: #444444; }\n"
    ".label { font-size: 11px; }\n"
    ".cell { font-size: 10px; text-anchor: middle; }\n"
    ".grid { stroke: #e3e3e3; stroke-width: 1; }\n"
    ".front { fill: none; stroke: #d62728; stroke-width: 2; stroke-dasharray: 6 3; }\n"
    ".pt { fill: #8c8c8c; stroke: #333333; }\n"
    ".pt-front { fill: #d62728; stroke: #333333; }\n"
    ".leader { stroke: #777777; stroke-width: 1; }\n"
    "</style>\n";

std::string model_label(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// Viridis at t in [0, 1], five stops interpolated.
std::string viridis(double t) {
  static constexpr std::array<std::array<double, 3>, 5> stops = {
      {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}}};
  t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * 4;
  const size_t i = std::min<size_t>(3, static_cast<size_t>(t));
  const double f = t - static_cast<double>(i);
  auto c = [&](int k) { return static_cast<int>(std::lround(stops[i][k] + f * (stops[i + 1][k] - stops[i][k]))); };
  return fmt::format("#{:02x}{:02x}{:02x}", c(0), c(1), c(2));
}

}  // namespace

std::string comparison_plot_svg(const ModelComparison& c) {
  if (c.models.size() < 2) fail(Errc::invalid_argument, "plot: a comparison of at least two models is needed");
  std::vector<PlotPointSvg> ppl, kld;
  for (size_t i = 0; i < c.models.size(); ++i) {
    const ComparedModel& m = c.models[i];
    if (!m.perplexity || (i > 0 && !m.kld))
      fail(Errc::invalid_argument, "plot: the perplexity and KL divergence of every model are needed ({} has none)", m.path);
    const std::string label = model_label(m.path) + (i == 0 ? " (original)" : "");
    const double mb = static_cast<double>(m.size.file_bytes) / 1e6;
    ppl.push_back({label, mb, m.perplexity->ppl});
    kld.push_back({label, mb, i == 0 ? 0.0 : m.kld->kld_mean});
  }
  const double W = 1000, H = 480;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\">\n", W, H);
  s += kSvgStyle;
  s += fmt::format("<rect width=\"{}\" height=\"{}\" fill=\"#fafafa\"/>\n", W, H);
  s += fmt::format("<text x=\"24\" y=\"30\" class=\"title\">Size against quality: {} models against {}</text>\n",
                   c.models.size() - 1, svg_text(model_label(c.models[0].path)));
  s += fmt::format("<text x=\"24\" y=\"50\" class=\"sub\">{} chunks of {} tokens of {}; lower and to the left is better</text>\n",
                   c.chunks, c.ctx, svg_text(c.calibration_source));
  svg_scatter_panel(s, 90, 90, 380, 300, "Perplexity", "file size (MB)", "perplexity", ppl, false);
  // KLDs of one comparison often span decades (Q8_0 against IQ2): then a log axis, the original
  // (KLD 0) on its floor.
  double kmin = std::numeric_limits<double>::infinity(), kmax = 0;
  for (size_t i = 1; i < kld.size(); ++i) kmin = std::min(kmin, kld[i].y), kmax = std::max(kmax, kld[i].y);
  const bool kld_log = kmin > 0 && kmax >= 10 * kmin;
  svg_scatter_panel(s, 590, 90, 380, 300, "KL divergence from the original", "file size (MB)", "mean KLD (nats per token)",
                    kld, true, kld_log);
  s += fmt::format(
      "<circle cx=\"100\" cy=\"{0}\" r=\"5\" class=\"pt-front\"/><text x=\"112\" y=\"{1}\" class=\"label\">on the Pareto "
      "front (no other model both smaller and better); dashed line: the front</text>\n"
      "<circle cx=\"600\" cy=\"{0}\" r=\"5\" class=\"pt\"/><text x=\"612\" y=\"{1}\" class=\"label\">dominated</text>\n",
      H - 22, H - 18);
  return s + "</svg>\n";
}

std::string importance_heatmap_svg(std::span<const LayerScore> scores, const std::string& title) {
  static const std::vector<std::string> kOrder = {"attn_q", "attn_k", "attn_v", "attn_output", "attn_qkv",
                                                  "ffn_gate", "ffn_up", "ffn_down"};
  std::map<int, std::map<std::string, const LayerScore*>> grid;
  std::vector<std::string> kinds;
  double lo = std::numeric_limits<double>::infinity(), hi = 0;
  for (const LayerScore& l : scores) {
    if (l.layer_index < 0) continue;
    const std::string prefix = fmt::format("blk.{}.", l.layer_index);
    if (l.tensor.rfind(prefix, 0) != 0) continue;
    std::string kind = l.tensor.substr(prefix.size());
    if (kind.size() > 7 && kind.compare(kind.size() - 7, 7, ".weight") == 0) kind.resize(kind.size() - 7);
    grid[l.layer_index][kind] = &l;
    if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) kinds.push_back(kind);
    if (l.score > 0) lo = std::min(lo, l.score), hi = std::max(hi, l.score);
  }
  if (grid.empty()) fail(Errc::invalid_argument, "plot: no importance score belongs to a block (blk.N.*)");
  std::sort(kinds.begin(), kinds.end(), [](const std::string& a, const std::string& b) {
    const auto ia = std::find(kOrder.begin(), kOrder.end(), a) - kOrder.begin();
    const auto ib = std::find(kOrder.begin(), kOrder.end(), b) - kOrder.begin();
    return ia != ib ? ia < ib : a < b;
  });
  if (!(hi > 0)) lo = hi = 1;
  const double llo = std::log10(lo), lhi = std::log10(hi);
  auto level = [&](double v) { return v > 0 && lhi > llo ? (std::log10(v) - llo) / (lhi - llo) : v > 0 ? 1.0 : 0.0; };

  const double cw = 84, ch = grid.size() > 40 ? 14 : 22, left = 90, top = 110;
  const double W = left + cw * static_cast<double>(kinds.size()) + 150;
  const double H = top + ch * static_cast<double>(grid.size()) + 40;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\">\n", W, H);
  s += kSvgStyle;
  s += fmt::format("<rect width=\"{}\" height=\"{}\" fill=\"#fafafa\"/>\n", W, H);
  s += fmt::format("<text x=\"20\" y=\"30\" class=\"title\">{}</text>\n", svg_text(title));
  s += "<text x=\"20\" y=\"50\" class=\"sub\">Importance per layer and tensor: colour = mean input-column importance "
       "(log scale), number = relative to the largest</text>\n";
  for (size_t k = 0; k < kinds.size(); ++k)
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"axis\" text-anchor=\"middle\">{}</text>\n",
                     left + cw * (static_cast<double>(k) + 0.5), top - 10, svg_text(kinds[k]));
  size_t r = 0;
  for (const auto& [layer, row] : grid) {
    const double y = top + ch * static_cast<double>(r++);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"axis\" text-anchor=\"end\">layer {}</text>\n", left - 8,
                     y + ch / 2 + 4, layer);
    for (size_t k = 0; k < kinds.size(); ++k) {
      const double x = left + cw * static_cast<double>(k);
      const auto it = row.find(kinds[k]);
      if (it == row.end()) {
        s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" fill=\"#ffffff\" stroke=\"#dddddd\"/>\n",
                         x, y, cw, ch);
        continue;
      }
      const double t = level(it->second->score);
      s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#fafafa\">"
                       "<title>{}: {}</title></rect>\n",
                       x, y, cw, ch, viridis(t), svg_text(it->second->tensor), svg_number(it->second->score));
      s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"cell\" style=\"fill:{}\">{:.3f}</text>\n", x + cw / 2,
                       y + ch / 2 + 3.5, t > 0.6 ? "#111111" : "#ffffff", it->second->importance_score);
    }
  }
  // The colour scale.
  const double lx = left + cw * static_cast<double>(kinds.size()) + 40, ly = top, lh = std::max(120.0, ch * 6);
  s += "<defs><linearGradient id=\"scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">";
  for (int i = 0; i <= 4; ++i) s += fmt::format("<stop offset=\"{}\" stop-color=\"{}\"/>", i / 4.0, viridis(i / 4.0));
  s += "</linearGradient></defs>\n";
  s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"18\" height=\"{:.1f}\" fill=\"url(#scale)\" stroke=\"#444444\"/>\n",
                   lx, ly, lh);
  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"tick\">{}</text>\n", lx + 24, ly + 10, svg_number(hi));
  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"tick\">{}</text>\n", lx + 24, ly + lh, svg_number(lo));
  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"tick\">(log)</text>\n", lx + 24, ly + lh / 2 + 4);
  return s + "</svg>\n";
}

}  // namespace lq
