// liblq: AWQ (activation-aware weight quantization) of a Hugging Face Llama-family checkpoint to
// asymmetric 4-bit (or 3-bit) integer weights with per-group scales and zero points, written in
// AutoAWQ's GEMM layout (the default), compressed-tensors pack-quantized or the GPTQ layout. Per
// decoder block, with its inputs coming from the already-quantized blocks before it: a
// per-channel scale search for each of the four groups (input_layernorm -> q/k/v inspected at the
// attention output, v_proj -> o_proj when their shapes allow or, as an option, tied across GQA's
// heads, post_attention_layernorm -> gate/up inspected at the MLP output, up_proj -> down_proj;
// candidates screened on a token sample, the cheapest re-costed on every token), the scales
// folded into the previous op,
// then a per-group clipping search, then round to nearest on AutoAWQ's min-max grid, each clipped
// group's scale refitted and gain-corrected on its calibration inputs. A mixture of experts
// (Mixtral, Qwen2-MoE, Qwen3-MoE) searches its MLP norm on the mixture's
// output (the scales folded into the float routers too) and each expert's up -> down on its
// routed tokens.
#pragma once

#include <lq/api.hpp>
#include <lq/calibration.hpp>
#include <lq/context.hpp>
#include <lq/gptq.hpp>
#include <lq/model.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace lq {

/// The algorithm's knobs.
struct AwqParams {
  int bits = 4;                ///< 3 or 4
  int64_t group_size = 128;    ///< columns per scale and zero point (must divide every row)
  int n_grid = 20;             ///< (0: the identity only) scale exponents α = 0, 1/n_grid, ..., (n_grid - 1)/n_grid
  /// s = mean|x|^α / mean(|w| / group max)^(1-α) (AutoAWQ's default, "duo scaling"); false:
  /// s = mean|x|^α. Either way s is divided by sqrt(max s · min s).
  bool duo_scaling = true;
  /// With duo_scaling, the activation-only candidates s = mean|x|^α (α from 1/n_grid; α = 0 is the
  /// identity) are searched too and the calibration loss picks between the two forms. Off by
  /// default: it doubles the search, and on four models x two widths neither form nor the pick of
  /// the two had the lowest KLD everywhere (docs/performance.md, AWQ).
  bool plain_candidates = false;
  /// The identity (no scaling) is a candidate too: the search never ends worse than no scaling on
  /// the calibration loss (AutoAWQ only tries the α grid).
  bool identity_candidate = true;
  bool clip = true;            ///< the clipping search
  /// q and k are clipped too (AutoAWQ leaves them to min-max: their products feed a softmax), on
  /// AutoAWQ's symmetric clamp candidates only, then refitted and gain-corrected as the others: on
  /// five models x two widths this lowered KLD in all ten cells (geometric mean 0.79x), while the
  /// asymmetric candidates there raised it by 28% on one model (docs/performance.md, AWQ).
  bool clip_qk = true;
  int clip_grid = 20;          ///< clip candidates: group max x (1 - i / clip_grid), i < max_shrink x clip_grid
  double max_shrink = 0.5;
  /// Tokens of the clipping search: 0 = every calibration token (its error is dᵀ G d with the g x g
  /// blocks G of XᵀX, so only G's sums grow with the tokens); n = n sampled evenly (AutoAWQ: 512).
  int64_t clip_tokens = 0;
  /// Clip candidates also shrink each end of the group's [min, max] (1% steps, both ends together
  /// then each alone), besides AutoAWQ's symmetric clamps to [-m, m] (clip_grid steps): the
  /// asymmetric grid's zero point lets the ends move apart. false: AutoAWQ's candidates only.
  bool clip_asym = true;
  /// The clipping search takes a row's groups left to right and costs each candidate with its
  /// cross term against the groups already chosen (2 dᵀ G_kj d_j, from all of XᵀX), so it
  /// minimises the row's whole output error rather than each group's alone (AutoAWQ's). Lowered
  /// KLD in 9 of 10 model x width cells at g128 and 10 of 10 at g64 (docs/performance.md, AWQ);
  /// costs XᵀX of each input (in² floats) while its linears are clipped.
  bool clip_cross = true;
  /// After the clip, each group's scale is refitted to its codes by least squares on the same
  /// error (dᵀ G d, plus its cross term with clip_cross), with the zero point and its two neighbours, and the codes rounded again, twice;
  /// a refit is kept only where it lowers that error.
  bool refit_scale = true;
  /// After the clip (and refit), each clipped group's scale is multiplied by f = xᵀGx / x̂ᵀGx (x the
  /// group's weights, x̂ its dequantized values, G its block of XᵀX; skipped outside [0.5, 2]): the
  /// clamp and the least-squares refit leave x̂ shorter than x along the calibration inputs, and
  /// that shrinkage, unlike the rounding noise, adds up through the layers.
  bool gain_correction = true;
  /// After the scale search and folds, each linear is rounded by GPTQ's error feedback
  /// (gptq_quantize_matrix: the asymmetric min-max grid with its scale search, damp 0.01 raised
  /// on a failed Cholesky) on the scaled weights, H = XᵀX of the scaled calibration inputs,
  /// instead of the clipping search and round to nearest. The output's layout and grid are
  /// AWQ's. On nine models x two widths (with gptq_act_order) its KLD was below AWQ's in all 18
  /// cells (0.41x, geometric mean), and level with GPTQ's on the same asymmetric grid with static
  /// act-order (0.98x; lower in 9 cells, higher in 9): docs/performance.md, AWQ.
  bool gptq_rounding = false;
  /// With gptq_rounding: GPTQ's static act-order (columns walked by descending diag(H), each
  /// group's grid fixed first; no g_idx, so every layout takes it).
  bool gptq_act_order = false;
  double gptq_damp = 0.01;       ///< with gptq_rounding: GptqParams::damp
  int gptq_scale_search = 20;    ///< with gptq_rounding: GptqParams::scale_search
  bool scale_v_o = true;       ///< the v_proj -> o_proj group
  /// Under GQA (fewer kv heads than query heads), v_proj -> o_proj with one scale per v row, shared
  /// by the o_proj columns of every query head that reads that kv head. Off by default, as
  /// AutoAWQ and llm-compressor skip the pair there: on six GQA models (17 model x scheme cells) it
  /// lowered the KLD in 6 cells and raised it in 10 (docs/performance.md, AWQ).
  bool scale_v_o_gqa = false;
  /// The scale search in two stages: every candidate is first costed on an even sample of about
  /// search_tokens calibration tokens (whole chunks for the attention group), then the
  /// search_keep cheapest, and the identity, again on every token; the lowest of those wins. 0,
  /// or a sample of more than half the tokens: every candidate on every token (AutoAWQ's).
  int64_t search_tokens = 512;
  int search_keep = 4;         ///< candidates re-costed on every token after the sample (at least 1)
  /// The scale search's products (every candidate's, and the originals' they are compared with)
  /// in bf16, as llm-compressor runs them on a bf16 model: weights and activations rounded to
  /// bf16, sums in float, through the back-end's BF16 product (AVX-512 BF16 or AMX where the CPU
  /// has them, else the float GEMM on the rounded values, so the result does not depend on the
  /// ISA). The attention check, the clipping search, the refit and the error report stay float.
  /// Unset: bf16 when the checkpoint's linear weights are bf16 (as SmoothQuant's calibration). On
  /// nine models x two widths 16 of 18 outputs had the float search's KLD to the digit, one 4%
  /// higher, one 2% lower; the 1.1 B shapes' run was 1.30x faster (docs/performance.md, AWQ).
  std::optional<bool> search_bf16;
};

/// Throws Errc::invalid_argument naming the setting (bits, group size, grid, shrink; with
/// gptq_rounding GPTQ's damp and scale search).
LQ_API void validate(const AwqParams& params);

/// The GPTQ parameters of AwqParams::gptq_rounding (asymmetric, AWQ's bits and groups, gptq_damp,
/// gptq_scale_search, static act-order with gptq_act_order; scales rounded to scale_storage).
LQ_API GptqParams awq_gptq_params(const AwqParams& params, int scale_storage);

/// The whole configuration of `lq quantize MODEL awq`.
struct AwqConfig {
  AwqParams params;
  GptqLayout layout = GptqLayout::awq;  ///< awq (4-bit only), compressed_tensors or gptq (asymmetric)
  int64_t calibration_samples = 128;    ///< chunks of ctx tokens (AutoAWQ: 128 x 512)
  int64_t ctx = 512;
  std::filesystem::path calibration_data;  ///< empty = the built-in WikiText-2 text
  /// awq_model on a streamed checkpoint: a checkpoint after every block in this state directory
  /// (awq_checkpoint_state); empty: none. As GptqConfig's.
  std::filesystem::path checkpoint_dir;
  bool resume = false;  ///< continue the checkpoint in checkpoint_dir (refused when it is another run's)
};

/// The state directory of an AWQ checkpoint under `dir` (as gptq_checkpoint_state).
LQ_API std::filesystem::path awq_checkpoint_state(const std::filesystem::path& dir, const AwqConfig& config,
                                                  bool resume);

/// AutoAWQ's grid of one matrix (rows x cols, row-major) in groups of `group_size` columns:
/// scale = (max - min) / (2^bits - 1) (min 1e-5), zero = clamp(-round(min / scale)),
/// code = clamp(round(w / scale) + zero). `clip` (rows x groups, may be null) clamps each group to
/// [-clip, clip] first. Scales are rounded to their storage before the codes are chosen (16 =
/// binary16, AutoAWQ's and GPTQ's; 17 = bfloat16; 0 = float). Rows run in parallel on ctx's threads.
LQ_API GptqMatrix awq_quantize_matrix(const float* w, int64_t rows, int64_t cols, int bits, int64_t group_size,
                                      const float* clip = nullptr, const Context& ctx = {}, int scale_storage = 16);

/// One scale search.
struct AwqSearch {
  std::vector<float> scales;   ///< per input channel; all 1 when the identity won
  double alpha = -1;           ///< the chosen exponent; -1 = the identity
  bool duo = false;            ///< the chosen candidate is a duo scaling (weights' means in it)
  double loss = 0;             ///< its loss
  double identity_loss = 0;    ///< loss without scaling (NaN when not a candidate)
  std::vector<double> losses;  ///< per candidate after the identity: the duo α grid, then the plain one (NaN: not re-costed after a screen)
  std::vector<double> screen_losses;  ///< with a screen: per candidate after the identity, on the sample
};

/// The candidate scales for exponent `alpha` from the per-channel statistics: mean |x| over the
/// calibration tokens and mean |w| / (its group's max |w|) over the output rows.
LQ_API std::vector<float> awq_candidate_scales(std::span<const float> x_mean, std::span<const float> w_mean,
                                               double alpha, bool duo_scaling);

/// Evaluates `loss` (the inspected module's output MSE with the scaled, quantized weights) for
/// every candidate and returns the best (ties keep the earlier: the identity, then α ascending,
/// duo scalings before the plain ones). With `screen` (the same loss on a sample of the tokens)
/// every candidate is costed by `screen` first and only the params.search_keep cheapest there,
/// and the identity, by `loss`.
LQ_API AwqSearch awq_search_scales(std::span<const float> x_mean, std::span<const float> w_mean,
                                   const AwqParams& params,
                                   const std::function<double(std::span<const float> scales)>& loss,
                                   const std::function<double(std::span<const float> scales)>& screen = {});

/// The fold: divides row i of `prev` (row_len values a row; 1 for a norm weight) by s[i].
LQ_API void awq_divide_rows(std::span<float> prev, int64_t row_len, std::span<const float> s);
/// Multiplies column j of `next` (rows of cols = s.size() values) by s[j].
LQ_API void awq_multiply_columns(std::span<float> next, std::span<const float> s);

/// What the search chose for one group of one block.
struct AwqGroupReport {
  int layer = -1;
  std::string group;       ///< "input_layernorm->q,k,v", "v_proj->o_proj", "post_attention_layernorm->gate,up", "up_proj->down_proj"
  double alpha = -1;       ///< -1: the identity won
  bool duo = false;        ///< the scales are a duo scaling's (weights' means in them)
  double loss = 0, identity_loss = 0;  ///< inspected output MSE, chosen and without scaling
};

struct AwqResult {
  GptqResult gptq;                    ///< files, sizes, per-linear reports (loss: relative output MSE)
  std::vector<AwqGroupReport> groups;
  /// Linears whose grid was fitted on their calibration inputs: clipped, or with
  /// AwqParams::gptq_rounding rounded by GPTQ.
  int64_t clipped_linears = 0;
  std::string attention;              ///< how the q/k/v group was inspected
  bool search_bf16 = false;           ///< the scale search's products were bf16 (AwqParams::search_bf16, resolved)
  double search_seconds = 0;
};

/// The AWQ pipeline over one Hugging Face checkpoint (Llama / Mistral / Qwen2 / Qwen3 / Gemma 2 /
/// Gemma 3 / Phi-3 decoders).
class LQ_API AwqQuantizer {
 public:
  /// Validates and loads the model (Errc::invalid_argument for a GGUF source, unsupported bits, a
  /// group size that does not divide a row, the AWQ layout with 3 bits; Errc::invalid_model for
  /// another architecture). A mixture of experts' experts are modules of their own (matrix()), the
  /// routers float; the bytes written are awq_model's.
  AwqQuantizer(const ModelSource& source, AwqConfig config);
  ~AwqQuantizer();
  AwqQuantizer(const AwqQuantizer&) = delete;
  AwqQuantizer& operator=(const AwqQuantizer&) = delete;
  /// Calibration data; without a call run() uses config.calibration_data or the built-in text.
  /// Errc::calibration_error when it gives not one chunk of ctx tokens.
  void set_calibration(const CalibrationData& data);
  /// Searches, folds, clips and quantizes block by block. Afterwards model() holds the folded
  /// norms and the dequantized weights (F32).
  void run(const Context& ctx = {});
  /// Writes the output directory (atomic, as GptqQuantizer::write).
  AwqResult write(const std::filesystem::path& dir, const Context& ctx = {});
  const GptqMatrix& matrix(const std::string& module) const;
  Model& model();
  const AwqResult& summary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The whole command: open `model`, quantize, write `out` (default awq_default_output()). A
/// checkpoint gptq_model streams is quantized the same way, with one block in memory (its
/// weights and its calibration inputs; the hidden states between blocks in work files) and a
/// checkpoint after each block when config.checkpoint_dir is set; the output bytes are
/// AwqQuantizer's.
LQ_API AwqResult awq_model(const std::filesystem::path& model, std::filesystem::path out, const AwqConfig& config,
                           const Context& ctx = {});

/// "NAME-awq-w4a16" (bits and group size in the name when not 4 / 128) in the current directory.
LQ_API std::filesystem::path awq_default_output(const std::filesystem::path& model, const AwqConfig& config);

}  // namespace lq
