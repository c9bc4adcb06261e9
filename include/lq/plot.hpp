// liblq: pictures as SVG documents written by the library itself (no plotting stack): size
// against perplexity and KL divergence of compared models, and the layer x tensor heat map of an
// importance analysis.
#pragma once

#include <lq/api.hpp>
#include <lq/importance.hpp>
#include <lq/quality.hpp>

#include <span>
#include <string>

namespace lq {

/// Two panels of a comparison: file size (MB) against perplexity, and against mean KLD (the
/// original at 0; a log axis with the original on its floor when the KLDs span a factor of 10 or
/// more), one labelled point per model placed where it overlaps no other label or point (away
/// from its point with a leader line when the points crowd), the Pareto front (no other model
/// both smaller and better) drawn as a line. Needs perplexity and KLD measured (CompareMetrics{true, true}):
/// else Errc::invalid_argument.
LQ_API std::string comparison_plot_svg(const ModelComparison& comparison);

/// A heat map of importance: one row per block (layer), one column per tensor kind (attn_q, ...,
/// ffn_down, then any other in name order), each cell coloured by the tensor's score on a log
/// scale and labelled with its importance_score. Tensors outside the blocks are left out. `title`
/// heads the picture. Errc::invalid_argument when no score belongs to a block.
LQ_API std::string importance_heatmap_svg(std::span<const LayerScore> scores, const std::string& title);

}  // namespace lq
