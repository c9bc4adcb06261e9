// Internal: AWQ's work on one block (awq.cpp), shared by the whole-model AwqQuantizer and the
// streamed run (gptq_stream.cpp, one block in memory): the capture of the block's four product
// inputs over the calibration chunks, then the scale searches, folds, clipping and quantization,
// every change handed to an AwBlockIo.
#pragma once

#include <lq/awq.hpp>
#include <lq/engine.hpp>
#include <lq/gptq.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lq::awq_impl {

/// What one block's AWQ step reads and writes: the model holding the block (the whole model, or the
/// streamed run's one-block model where the block is blk.0), the block's index in the checkpoint,
/// and where its changes go (the model and the output).
struct AwBlockIo {
  Model* model = nullptr;
  int model_layer = 0;  ///< the block's index in *model
  int64_t layer = 0;    ///< its index in the checkpoint
  std::function<QuantType(const char* suffix)> stored_type;  ///< the checkpoint's dtype of blk.<layer>.suffix (w's for a (1 + w) norm)
  std::function<bool(const char* suffix)> has;               ///< whether the checkpoint has it (biases)
  /// A changed float tensor of the block (a folded norm, a scaled v bias), already rounded to its
  /// stored dtype (a (1 + w) norm as 1 + w, w rounded): into *model and the output.
  std::function<void(const char* suffix, std::vector<float> values)> set_float;
  /// A quantized linear (Hugging Face row order) and its report.
  std::function<void(const std::string& module, GptqMatrix q, const GptqLayerReport& rep)> put_matrix;
  /// Where the step parks a captured input while it does not read it (an unlinked file; the
  /// streamed run's work directory); empty: every input stays in memory.
  std::filesystem::path spill_dir;
  /// The streamed run: the names (in *model) of the linears it replaces with their quantized values
  /// after the step. Their bytes are freed once the capture is done, and the step reads them as
  /// read_linear gives them; empty: the step reads every linear from *model.
  std::vector<std::string> replaced_linears;
  /// Writes blk.<layer>.suffix's n float values from the checkpoint to dst, rows in the engine's
  /// order (what Model::tensor_f32 gave before the bytes were freed).
  std::function<void(const char* suffix, float* dst, int64_t n)> read_linear;
};

/// GptqConfig for GPTQ's machinery (loading, checks, layouts, the streamed run): asymmetric, the
/// layout, the calibration and the checkpoint of c.
GptqConfig awq_gptq_config(const AwqConfig& c);
/// Validates c against the checkpoint (Errc::invalid_argument: a GGUF source, a group size that
/// does not divide a row, the AWQ layout with 3 bits); Errc::invalid_model: an architecture the block step
/// does not compute (llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3 are).
const AwqConfig& awq_checked(const ModelSource& s, const AwqConfig& c);
// p with search_bf16 set: as given, else whether the checkpoint's first decoder linear is bf16.
AwqParams awq_resolved(const AwqParams& p, const ModelSource& s);

/// The gain correction of one group of g weights x on the grid (scale, zero) with 2^bits - 1 = maxq
/// (codes clamp(round(x / scale) + zero), as AutoAWQ's): `gram` is the group's g x g block of XᵀX
/// (row-major). Returns scale x f, f = xᵀGx / x̂ᵀGx with x̂ = scale (code - zero), rounded to the
/// scales' storage (16 binary16, 17 bfloat16, 0 float); `scale` itself when f is outside [0.5, 2]
/// or not finite. The codes stay those of `scale`: the group's output then has the float weights'
/// projection on the calibration inputs, where the clamp and a least-squares refit leave it short.
float awq_gain_scale(const float* x, int64_t g, const float* gram, int maxq, float scale, int32_t zero, int storage);

/// The clipping search's cost of a group's error d, dᵀ G d = |M d|², with M (g x g, row-major) lower
/// triangular and MᵀM = G: M = P Lᵀ P, L the Cholesky factor of P G P, P the reversal of the
/// columns. Each batch of candidates is then one product with M's zero half skipped, half the
/// multiply-adds of D·G. False when G has no such factor in float (a dead input channel).
bool aw_cost_factor(const float* G, int64_t g, float* M);

/// G (n x n, row-major, symmetric) = XᵀX of inputs X becomes that of X divided column by column
/// by s: D⁻¹ G D⁻¹, D = diag(s), each entry G_ij / (s_i s_j) in double, rounded to float once (the
/// same matrix as formed from the divided inputs, up to float rounding), rows on `threads`. The
/// clipping takes its scale search's XᵀX this way instead of forming it again from the inputs.
void aw_divide_gram(float* G, int64_t n, const float* s, int threads);

/// The scale search's input statistic mean |x| per column (AwBlockStep::col_abs_mean on a float
/// matrix in memory) over rows handed a slab at a time, as from a parked file: the same floats as
/// that matrix expression gives, its sums taken in the order Eigen takes them (a column in the
/// vector unit's packets: row 0, then rows 1-4, 5-8, ... each as (a + b) + (c + d) up to row
/// (rows - 1) & ~3, then one row at a time; a column outside them, row after row).
class AwColAbsMean {
 public:
  AwColAbsMean(int64_t rows, int64_t cols);
  /// The next n rows (row-major, cols floats each).
  void add(const float* x, int64_t n);
  /// The means, once every row is added.
  std::vector<float> mean() const;

 private:
  int64_t rows_, cols_, seen_ = 0;
  std::vector<float> tree_, seq_, quad_;  // the packets' order, row after row, the quad's first three rows
};

/// Runs AWQ on one block at a time. `lengths`: the calibration chunks' token counts, in the order
/// eval_chunk feeds them.
class AwBlockRunner {
 public:
  AwBlockRunner(const AwqParams& params, int scale_storage, std::vector<int64_t> lengths, AwqResult& summary,
                std::vector<std::string>& warnings, const Context& ctx);
  ~AwBlockRunner();
  AwBlockRunner(const AwBlockRunner&) = delete;
  AwBlockRunner& operator=(const AwBlockRunner&) = delete;

  /// Captures block io.layer's inputs (eval_chunk(i, session) evaluates chunk i in the session on
  /// io.model; the forward pass is stopped after the block's ffn_down input), then searches, folds,
  /// clips and quantizes it. calib_seconds grows by the capture's time.
  void run(AwBlockIo& io, int64_t n_ctx, const std::function<void(size_t, Session&)>& eval_chunk,
           double& calib_seconds, const Context& ctx);

 private:
  struct Step;
  std::unique_ptr<Step> step_;
};

}  // namespace lq::awq_impl
