// `lq quantize MODEL gptq|rtn` at bounded memory (gptq_model in gptq.hpp): the checkpoint is never
// loaded whole. Block L is read from the source when its turn comes into a one-block engine Model
// (GsBlockSource: block L renamed blk.0, its token embedding a table of ctx rows that holds one
// calibration chunk's hidden states at a time), its Hessians are gathered from the hidden states
// entering it, its linears are quantized and spooled to disk, and the chunks are run once more
// through the quantized block to give the hidden states entering block L + 1. Memory: one block's
// weights, its Hessians and one chunk's activations; the hidden states of all chunks live in a
// file of the work directory. The output is assembled at the end in the source's tensor order,
// each quantized matrix read back from the spool, so the bytes equal GptqQuantizer's.
//
// The work directory is a checkpoint when asked (GptqConfig::checkpoint_dir): state.json (what
// the run is), block-L.bin (block L's matrices), hidden-L.bin (the hidden states entering block
// L) and blocks.log (one checksummed line per finished block, appended after its files are
// flushed). A run killed at any point leaves a consistent prefix; resume continues after the
// last logged block and writes the same bytes. Without a checkpoint the work directory lives in
// the output's temporary directory and goes with it.
//
// Mixtures of experts: each expert's gate, up and down is a linear of its own (GsLinear::expert),
// its Hessians (sites 4 + 2e, 5 + 2e) gathered from the engine's per-expert products, i.e. from the
// tokens routed to it; an expert no token reached is rounded to nearest (the hook gets no H). The
// merged expert tensor's values are held while its experts are quantized, then put back whole.
//
// With GptqConfig::smoothquant (W8A8, llm-compressor's SmoothQuant + GPTQ recipe) the same pass
// that gathers block L's Hessians gathers the smoothing statistics of its two norm outputs; the
// scales (SmoothQuant's own functions) are folded into the block (norm γ/s, W*s), the Hessians of
// the smoothed inputs are D⁻¹HD⁻¹ (D = diag(s)), and the block's spool record also holds the
// smoothing (scales, folded norms, the static input maxima), which the output and a resume read.
#include <lq/gptq.hpp>

#include <lq/calibration.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/tokenizer.hpp>

#include "core/fail.hpp"
#include "core/output_dir.hpp"
#include "formats/gptq_pack.hpp"
#include "formats/quant_unpack.hpp"
#include "formats/safetensors.hpp"
#include "formats/safetensors_writer.hpp"
#include "model/architecture.hpp"
#include "model/tensor_names.hpp"
#include "engine/impl.hpp"
#include "quantize/calibration_chunks.hpp"
#include "quantize/awq_block.hpp"
#include "quantize/block_stream.hpp"
#include "quantize/checkpoint.hpp"
#include "quantize/gptq_stream.hpp"
#include "quantize/gptq_walk.hpp"
#include "quantize/gptq_write.hpp"
#include "quantize/smoothquant_stats.hpp"
#include "core/half.hpp"

#include <Eigen/Core>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include <fcntl.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <unistd.h>

namespace fs = std::filesystem;

namespace lq {

namespace gptq_stream_impl {

using GsRowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

double gs_seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The Hugging Face row of the engine's row r of a permuted q/k weight.
int64_t gs_hf_row(int64_t r, int64_t hd) {
  const int64_t h = r / hd, w = r % hd;
  return h * hd + (w % 2) * (hd / 2) + w / 2;
}

struct GsStop {};  // thrown by the Hessian hook after ffn_down's input

using GsBlockSource = block_stream::BlockSource;

struct GsLinear {
  std::string role;    // "attn_q", ...
  std::string module;  // model.layers.3.self_attn.q_proj
  int layer = -1;
  // Hessian: 0 q/k/v, 1 o, 2 gate/up (a shared expert's too), 3 down; expert e's gate/up 4 + 2e,
  // its down 5 + 2e
  int site = 0;
  int expert = -1;     // the matrix of a merged expert tensor (role ffn_*_exps); -1 else
  bool permuted = false;
  int64_t rows = 0, cols = 0;
};

// The Hessian index of a hooked linear (GsLinear::site); -1 for a linear GPTQ does not take (the
// routers).
inline int gs_site(std::string_view role, int expert) {
  if (const int k = linear_input_site(role); k >= 0) return k;
  const int x = expert_input_site(role);
  return x < 0 || expert < 0 ? -1 : 4 + 2 * expert + x;
}

using GsFile = block_stream::WorkFile;

template <class T>
void gs_put_vec(GsFile& f, const std::vector<T>& v) {
  const uint64_t n = v.size();
  f.write(&n, 8);
  if (n) f.write(v.data(), n * sizeof(T));
}
template <class T>
void gs_get_vec(GsFile& f, std::vector<T>& v, uint64_t limit) {
  uint64_t n = 0;
  f.read(&n, 8);
  if (n > limit) fail(Errc::invalid_argument, "gptq: a damaged spool record (a vector of {} values)", n);
  v.resize(static_cast<size_t>(n));
  if (n) f.read(v.data(), n * sizeof(T));
}

// One quantized matrix in the spool: its dimensions and report, then its arrays.
void gs_put_matrix(GsFile& f, const GptqMatrix& q) {
  const int64_t dims[4] = {q.rows, q.cols, q.groups, q.bits};
  f.write(dims, sizeof dims);
  const double d[2] = {q.damp, q.loss};
  f.write(d, sizeof d);
  const int64_t e[2] = {q.damp_raises, q.dead_columns};
  f.write(e, sizeof e);
  gs_put_vec(f, q.codes);
  gs_put_vec(f, q.scales);
  gs_put_vec(f, q.zeros);
  gs_put_vec(f, q.g_idx);
  gs_put_vec(f, q.perm);
}

void gs_get_matrix(GsFile& f, GptqMatrix& q) {
  int64_t dims[4];
  f.read(dims, sizeof dims);
  double d[2];
  f.read(d, sizeof d);
  int64_t e[2];
  f.read(e, sizeof e);
  q.rows = dims[0];
  q.cols = dims[1];
  q.groups = dims[2];
  q.bits = static_cast<int>(dims[3]);
  q.damp = d[0];
  q.loss = d[1];
  q.damp_raises = static_cast<int>(e[0]);
  q.dead_columns = e[1];
  const uint64_t n = static_cast<uint64_t>(std::max<int64_t>(0, q.rows) * std::max<int64_t>(0, q.cols));
  gs_get_vec(f, q.codes, n);
  gs_get_vec(f, q.scales, n);
  gs_get_vec(f, q.zeros, n);
  gs_get_vec(f, q.g_idx, static_cast<uint64_t>(q.cols));
  gs_get_vec(f, q.perm, static_cast<uint64_t>(q.cols));
}

// One block's smoothing in the spool (after its matrices): per group its α, errors, scales and
// folded norm, then the four inputs' activation maxima (static input scales x 127.5).
struct GsSmoothing {
  double alpha[2] = {0, 0}, mse_chosen[2] = {0, 0}, mse_default[2] = {0, 0};
  std::vector<float> scales[2], norm[2];
  double act_max[2] = {0, 0};  // max_j a_j before smoothing
  std::vector<float> site_max;  // 4: max_j a_j / s_j (q/k/v, gate/up inputs), max_j a_j (o, down)
};

void gs_put_smoothing(GsFile& f, const GsSmoothing& s) {
  for (int g = 0; g < 2; ++g) {
    const double d[4] = {s.alpha[g], s.mse_chosen[g], s.mse_default[g], s.act_max[g]};
    f.write(d, sizeof d);
    gs_put_vec(f, s.scales[g]);
    gs_put_vec(f, s.norm[g]);
  }
  gs_put_vec(f, s.site_max);
}

void gs_get_smoothing(GsFile& f, GsSmoothing& s, uint64_t limit) {
  for (int g = 0; g < 2; ++g) {
    double d[4];
    f.read(d, sizeof d);
    s.alpha[g] = d[0];
    s.mse_chosen[g] = d[1];
    s.mse_default[g] = d[2];
    s.act_max[g] = d[3];
    gs_get_vec(f, s.scales[g], limit);
    gs_get_vec(f, s.norm[g], limit);
  }
  gs_get_vec(f, s.site_max, 4);
  if (s.site_max.size() != 4) fail(Errc::invalid_argument, "gptq: a damaged smoothing record");
}

// One AWQ block in the spool (after its matrices): the float tensors it changed (folded norms, a
// scaled v bias; source names), its scale searches, its linears' reports and clipped count.
struct GsAwqRecord {
  std::vector<std::pair<std::string, std::vector<float>>> floats;
  std::vector<AwqGroupReport> groups;
  std::vector<GptqLayerReport> reports;
  int64_t clipped = 0;
};

void gs_put_string(GsFile& f, const std::string& v) { gs_put_vec(f, std::vector<char>(v.begin(), v.end())); }
std::string gs_get_string(GsFile& f) {
  std::vector<char> v;
  gs_get_vec(f, v, 4096);
  return std::string(v.begin(), v.end());
}

void gs_put_awq(GsFile& f, const GsAwqRecord& r) {
  const uint64_t n[4] = {r.floats.size(), r.groups.size(), r.reports.size(), static_cast<uint64_t>(r.clipped)};
  f.write(n, sizeof n);
  for (const auto& [name, v] : r.floats) {
    gs_put_string(f, name);
    gs_put_vec(f, v);
  }
  for (const AwqGroupReport& g : r.groups) {
    gs_put_string(f, g.group);
    const double d[4] = {g.alpha, g.loss, g.identity_loss, g.duo ? 1.0 : 0.0};
    f.write(d, sizeof d);
    const int64_t layer = g.layer;
    f.write(&layer, 8);
  }
  for (const GptqLayerReport& l : r.reports) {
    gs_put_string(f, l.module);
    const double d[2] = {l.loss, l.damp};
    f.write(d, sizeof d);
    const int64_t e[3] = {l.layer, l.damp_raises, l.dead_columns};
    f.write(e, sizeof e);
  }
}

void gs_get_awq(GsFile& f, GsAwqRecord& r, uint64_t limit) {
  uint64_t n[4];
  f.read(n, sizeof n);
  if (n[0] > 16 || n[1] > (1u << 16) || n[2] > (1u << 18)) fail(Errc::invalid_argument, "awq: a damaged spool record");
  r.clipped = static_cast<int64_t>(n[3]);
  r.floats.resize(static_cast<size_t>(n[0]));
  for (auto& [name, v] : r.floats) {
    name = gs_get_string(f);
    gs_get_vec(f, v, limit);
  }
  r.groups.resize(static_cast<size_t>(n[1]));
  for (AwqGroupReport& g : r.groups) {
    g.group = gs_get_string(f);
    double d[4];
    f.read(d, sizeof d);
    g.alpha = d[0], g.loss = d[1], g.identity_loss = d[2], g.duo = d[3] != 0;
    int64_t layer = 0;
    f.read(&layer, 8);
    g.layer = static_cast<int>(layer);
  }
  r.reports.resize(static_cast<size_t>(n[2]));
  for (GptqLayerReport& l : r.reports) {
    l.module = gs_get_string(f);
    double d[2];
    f.read(d, sizeof d);
    l.loss = d[0], l.damp = d[1];
    int64_t e[3];
    f.read(e, sizeof e);
    l.layer = static_cast<int>(e[0]), l.damp_raises = static_cast<int>(e[1]), l.dead_columns = e[2];
  }
}

std::string gs_hex(uint64_t v) { return fmt::format("{:016x}", v); }

void gs_sync_dir(const fs::path& d) {
  const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// A run's state directory: DIR/NAME, or with `resume` DIR itself when it holds the state.
fs::path gs_state_dir(const fs::path& dir, const std::string& name, bool resume, const char* run) {
  const fs::path sub = dir / name;
  if (!resume) return sub;
  std::error_code ec;
  if (fs::is_regular_file(dir / "state.json", ec)) return dir;
  if (fs::is_regular_file(sub / "state.json", ec)) return sub;
  if (!fs::exists(dir, ec)) fail(Errc::invalid_argument, "--resume: checkpoint not found: {}", dir.string());
  fail(Errc::invalid_argument, "--resume: {} holds no checkpoint of this {} run (no state.json, nor {}/state.json)",
       dir.string(), run, name);
}

// The streamed run.
class GsRun {
 public:
  // out: the output directory; with config.matrix_hook (gptq_stream_hook) the folder that holds the
  // work files for the run's duration instead, and nothing is written.
  // awq: AWQ's searches instead of GPTQ's walk (awq_stream), config from awq_gptq_config.
  // data: the calibration data (null: config.calibration_data's file or the built-in text).
  GsRun(const fs::path& model_path, fs::path out, const GptqConfig& config, const Context& ctx,
        const AwqParams* awq = nullptr, const CalibrationData* data = nullptr)
      : cfg_(config), ctx_(ctx), progress_(ctx.progress_sink()), out_path_(std::move(out)), data_(data) {
    validate(cfg_.params);
    if (awq) {
      awq_ = *awq;
      awq_summary_.attention = "attention output (recomputed, checked against the engine)";
    }
    hook_ = static_cast<bool>(cfg_.matrix_hook);
    if (hook_ && (cfg_.params.rtn || cfg_.smoothquant))
      fail(Errc::invalid_argument, "gptq: a matrix hook runs GPTQ's calibration alone (no RTN or SmoothQuant)");
    if (cfg_.calibration_samples < 1)
      fail(Errc::invalid_argument, "gptq: calibration samples must be positive, got {}", cfg_.calibration_samples);
    if (cfg_.ctx < 2) fail(Errc::invalid_argument, "gptq: ctx must be at least 2, got {}", cfg_.ctx);
    src_ = ModelSource::open(model_path);
    if (src_->is_gguf())
      fail(Errc::invalid_argument,
           "gptq: {} is a GGUF file; quantize a Hugging Face checkpoint (config.json and safetensors), or use "
           "`convert {} gptq` for the exact mapping of Q4_0/Q8_0/Q4_1",
           src_->path().string(), src_->path().string());
    if (cfg_.smoothquant) check_smoothquant();
    moe_ = src_->config().n_expert > 0;
    if (moe_ && cfg_.smoothquant && cfg_.smoothquant->static_activations)
      fail(Errc::invalid_argument, "gptq: W8A8 of a mixture of experts ({}) quantizes activations dynamically per "
           "token; static input scales are not supported for experts", src_->config().model_type);
    if (awq_) {
      awq_ = awq_impl::awq_resolved(*awq_, *src_);
      awq_summary_.search_bf16 = *awq_->search_bf16;
    }
    if (!cfg_.bf16_activations) cfg_.bf16_activations = quant_impl::linears_are_bf16(*src_);
    summary_.calibration_bf16 = *cfg_.bf16_activations;
    plan_linears();
  }

  GptqResult run() {
    const auto t0 = std::chrono::steady_clock::now();
    // Refusals about the output directory come before any heavy work.
    if (!hook_)
      od_ = std::make_unique<OutputDir>(out_path_, std::vector<std::string>{"compressed-tensors", "gptq", "awq"},
                                        "quantized output");
    if (!cfg_.params.rtn) calibrate_tokens();
    open_work();
    const ModelConfig& mc = src_->config();
    if (!cfg_.params.rtn) {
      if (first_block_ == 0) write_embeddings();
      progress_.message(fmt::format("{}: {} blocks, {} chunks of {} tokens from {} (streamed, one block in memory)",
                                    awq_ ? "AWQ" : "GPTQ", mc.n_layer, chunks_.size(), cfg_.ctx,
                                    summary_.calibration_source));
    }
    const char* stage = cfg_.params.rtn ? "Quantizing (RTN)" : awq_ ? "AWQ" : "GPTQ";
    progress_.update(stage, first_block_, mc.n_layer, "blocks");
    for (int64_t L = first_block_; L < mc.n_layer; ++L) {
      ctx_.check_cancelled();
      block(L);
      progress_.update(stage, L + 1, mc.n_layer, "blocks");
    }
    progress_.finish(stage);
    summary_.chunks = static_cast<int64_t>(chunks_.size());
    summary_.ctx = cfg_.params.rtn ? 0 : cfg_.ctx;
    summary_.tokens = 0;
    for (const auto& c : chunks_) summary_.tokens += static_cast<int64_t>(c.size());
    summary_.quantize_seconds = gs_seconds_since(t0) - summary_.calibration_seconds;
    if (hook_) {
      log_.reset();
      std::error_code ec;
      if (cfg_.checkpoint_dir.empty()) fs::remove_all(work_, ec);  // a checkpoint is the caller's to remove
    } else {
      write_output();
    }
    summary_.seconds = gs_seconds_since(t0);
    return summary_;
  }

  ~GsRun() {
    if (hook_ && !work_.empty() && cfg_.checkpoint_dir.empty()) {
      log_.reset();
      std::error_code ec;
      fs::remove_all(work_, ec);
    }
  }

 private:
  // GPTQ W8A8 after SmoothQuant: the settings the int-quantized output can hold.
  void check_smoothquant() {
    const SmoothQuantConfig& sq = *cfg_.smoothquant;
    validate(sq);
    const GptqParams& p = cfg_.params;
    if (p.rtn)
      fail(Errc::invalid_argument, "gptq: SmoothQuant with round to nearest is `quantize MODEL smoothquant --smoothquant`");
    if (p.bits != 8 || p.group_size != -1 || !p.sym)
      fail(Errc::invalid_argument, "gptq: W8A8 after SmoothQuant quantizes weights to symmetric 8 bits per output channel "
           "(bits 8, group size -1, sym), not {}-bit{}{}", p.bits, p.group_size > 0 ? fmt::format(" g{}", p.group_size) : "",
           p.sym ? "" : " asym");
    if (cfg_.layout != GptqLayout::compressed_tensors)
      fail(Errc::invalid_argument, "gptq: W8A8 is written in the compressed-tensors layout (int-quantized) only");
    if (!sq.per_channel)
      fail(Errc::invalid_argument, "gptq: W8A8 with GPTQ quantizes weights per output channel (no per-tensor weights)");
    if (!sq.quantize) fail(Errc::invalid_argument, "gptq: SmoothQuant with GPTQ always quantizes (quantize false is SmoothQuantizer's)");
  }

  void plan_linears() {
    const ModelConfig& mc = src_->config();
    gptq_impl::gp_check_layout(cfg_);
    const Architecture& arch = architecture_of(mc, "gptq");
    cfg_.params.scale_storage = 16;
    for (int64_t L = 0; L < mc.n_layer; ++L)
      for (const char* role : block_linear_roles(arch)) {
        const std::string name = fmt::format("blk.{}.{}.weight", L, role);
        const ModelTensor& t = src_->at(name);
        if (t.ne.size() != 2) fail(Errc::invalid_model, "gptq: {} is not a matrix", name);
        GsLinear x;
        x.role = role;
        x.module = names::hf_module(name, arch.fused_gate_up);
        x.layer = static_cast<int>(L);
        x.site = linear_input_site(x.role);
        x.rows = t.ne[1];
        x.cols = t.ne[0];
        x.permuted = arch.permute_qk && (x.role == "attn_q" || x.role == "attn_k");
        gptq_impl::gp_check_linear(cfg_, x.module, x.rows, x.cols, t.type, cfg_.params.scale_storage);
        linears_.push_back(std::move(x));
        if (role == std::string_view("attn_output")) plan_experts(L, arch);  // the checkpoint's order
      }
    if (linears_.empty()) fail(Errc::invalid_model, "gptq: {} has no decoder linears", src_->path().string());
    for (std::string& w : gptq_impl::gp_config_warnings(cfg_, mc.n_ctx_train)) summary_.warnings.push_back(std::move(w));
  }

  // Block L's experts, one matrix each (role-major: every expert's gate, then up, then down), named
  // as the checkpoint names them.
  void plan_experts(int64_t L, const Architecture& arch) {
    for (const char* role : expert_linear_roles(arch)) {
      const std::string name = fmt::format("blk.{}.{}.weight", L, role);
      const ModelTensor& t = src_->at(name);
      if (t.ne.size() != 3) fail(Errc::invalid_model, "gptq: {} is not a 3-D expert tensor", name);
      for (int e = 0; e < static_cast<int>(t.ne[2]); ++e) {
        GsLinear x;
        x.role = role;
        x.expert = e;
        x.module = names::hf_expert_module(name, e, arch.moe == Architecture::MoeStyle::mixtral);
        x.layer = static_cast<int>(L);
        x.site = gs_site(x.role, e);
        x.rows = t.ne[1];
        x.cols = t.ne[0];
        gptq_impl::gp_check_linear(cfg_, x.module, x.rows, x.cols, t.type, cfg_.params.scale_storage);
        linears_.push_back(std::move(x));
      }
    }
  }

  void calibrate_tokens() {
    const CalibrationData data = data_ ? *data_ : quant_impl::calibration_text(cfg_.calibration_data, progress_);
    summary_.calibration_source = data.source;
    const int64_t n_vocab = src_->at("token_embd.weight").ne[1];
    chunks_ = quant_impl::calibration_chunks(*src_, data, cfg_.ctx, cfg_.calibration_samples,
                                             quant_impl::source_chunk_bos(*src_), summary_.warnings);
    for (const auto& c : chunks_) {
      max_len_ = std::max<int64_t>(max_len_, static_cast<int64_t>(c.size()));
      for (int32_t t : c)
        if (t < 0 || t >= n_vocab) fail(Errc::calibration_error, "gptq: calibration token {} is outside the vocabulary", t);
    }
  }

  // What the run is: a resumed run must match it exactly.
  std::string identity() const {
    nlohmann::ordered_json j;
    const ModelConfig& mc = src_->config();
    j["kind"] = "gptq-stream-1";
    j["model"] = {{"n_layer", mc.n_layer}, {"n_embd", mc.n_embd}, {"n_ff", mc.n_ff}, {"n_head", mc.n_head},
                  {"n_head_kv", mc.n_head_kv}, {"architecture", mc.architecture}, {"source_bytes", src_->source_bytes()}};
    quantize_ckpt::StreamHash th;
    std::vector<uint8_t> row;
    for (const ModelTensor& t : src_->tensors()) {
      th.add(t.name.data(), t.name.size());
      th.add(t.ne.data(), t.ne.size() * 8);
      const int32_t ty = static_cast<int32_t>(t.type);
      th.add(&ty, 4);
      if (t.n_rows() > 0) {  // sampled rows: the first and the last
        row.resize(t.row_bytes());
        for (int64_t r : {int64_t{0}, t.n_rows() - 1}) {
          src_->read_rows_raw(t, r, 1, row.data());
          th.add(row.data(), row.size());
        }
      }
    }
    j["tensors"] = gs_hex(th.value());
    const GptqParams& p = cfg_.params;
    j["params"] = {{"bits", p.bits}, {"group_size", p.group_size}, {"sym", p.sym}, {"act_order", static_cast<int>(p.act_order)},
                   {"damp", p.damp}, {"max_damp_raises", p.max_damp_raises}, {"block_size", p.block_size},
                   {"rtn", p.rtn}, {"scale_storage", p.scale_storage}, {"scale_search", p.scale_search}};
    quantize_ckpt::StreamHash ch;
    for (const auto& c : chunks_) {
      const uint64_t n = c.size();
      ch.add(&n, 8);
      ch.add(c.data(), c.size() * 4);
    }
    j["calibration"] = {{"ctx", cfg_.ctx}, {"chunks", chunks_.size()}, {"tokens", gs_hex(ch.value())},
                        {"bf16_activations", cfg_.bf16_activations.value_or(false)}};
    if (!cfg_.checkpoint_tag.empty()) j["caller"] = cfg_.checkpoint_tag;
    if (const auto& sq = cfg_.smoothquant)
      j["params"]["smoothquant"] = {{"alpha", sq->alpha}, {"alpha_auto", sq->alpha_auto}, {"alpha_grid", sq->alpha_grid},
                                    {"auto_rows", sq->auto_rows}, {"activation_percentile", sq->activation_percentile},
                                    {"static_activations", sq->static_activations}};
    if (awq_)
      j["params"]["awq"] = {{"n_grid", awq_->n_grid}, {"duo_scaling", awq_->duo_scaling},
                            {"identity_candidate", awq_->identity_candidate}, {"plain_candidates", awq_->plain_candidates},
                            {"clip", awq_->clip}, {"clip_qk", awq_->clip_qk},
                            {"clip_grid", awq_->clip_grid}, {"max_shrink", awq_->max_shrink},
                            {"clip_tokens", awq_->clip_tokens}, {"clip_asym", awq_->clip_asym}, {"clip_cross", awq_->clip_cross},
                            {"refit_scale", awq_->refit_scale}, {"scale_v_o", awq_->scale_v_o}, {"scale_v_o_gqa", awq_->scale_v_o_gqa},
                            {"gptq_rounding", awq_->gptq_rounding}, {"gptq_act_order", awq_->gptq_act_order},
                            {"gptq_damp", awq_->gptq_damp}, {"gptq_scale_search", awq_->gptq_scale_search},
                            {"gain_correction", awq_->gain_correction}, {"search_tokens", awq_->search_tokens},
                            {"search_keep", awq_->search_keep}, {"search_bf16", awq_->search_bf16.value_or(false)}};
    return j.dump(2) + "\n";
  }

  fs::path block_file(int64_t L) const { return work_ / fmt::format("block-{}.bin", L); }
  fs::path hidden_file(int64_t L) const { return work_ / fmt::format("hidden-{}.bin", L); }
  fs::path expert_inputs_file(int64_t L) const { return work_ / fmt::format("experts-{}.bin", L); }

  void open_work() {
    std::error_code ec;
    const fs::path& ck = cfg_.checkpoint_dir;
    if (ck.empty()) {
      work_ = hook_ ? out_path_ / fmt::format(".lq-gptq-work-{}", ::getpid()) : od_->make_tmp() / ".gptq-work";
      fs::create_directories(work_, ec);
      if (ec) fail(Errc::output_error, "gptq: cannot create {}: {}", work_.string(), ec.message());
      append_log_header();
      return;
    }
    work_ = ck;
    const std::string id = identity();
    summary_.checkpoint = ck;
    if (cfg_.resume) {
      if (!fs::is_regular_file(ck / "state.json", ec))
        fail(Errc::invalid_argument, "--resume: {} holds no GPTQ checkpoint (no state.json)", ck.string());
      const std::string was = read_file(ck / "state.json");
      if (was != id) {
        const auto a = nlohmann::json::parse(was, nullptr, false), b = nlohmann::json::parse(id);
        std::string what = "the model";
        if (!a.is_discarded() && a.is_object()) {
          if (a.value("params", nlohmann::json()) != b["params"] ||
              a.value("caller", nlohmann::json()) != b.value("caller", nlohmann::json()))
            what = "other quantization settings";
          else if (a.value("calibration", nlohmann::json()) != b["calibration"]) what = "other calibration data";
        }
        fail(Errc::invalid_argument, "--resume: the checkpoint in {} was made for {} ({}); start again without --resume",
             ck.string(), what == "the model" ? "another model" : what, what);
      }
      remove_old_temps();
      load_log();
      if (first_block_ > 0)
        progress_.message(fmt::format("resumed: {}/{} blocks from {}", first_block_, src_->config().n_layer, ck.string()));
      summary_.resumed_blocks = first_block_;
    } else {
      if (fs::exists(ck, ec)) {
        if (fs::exists(ck / "state.json", ec)) {
          remove_old_temps();
          progress_.message(fmt::format("Replacing the checkpoint in {}", ck.string()));
        } else if (!fs::is_empty(ck, ec)) {
          fail(Errc::output_error, "gptq: the checkpoint directory {} exists and is not a GPTQ checkpoint", ck.string());
        }
        fs::remove_all(ck, ec);
      }
      fs::create_directories(ck, ec);
      if (ec) fail(Errc::output_error, "gptq: cannot create {}: {}", ck.string(), ec.message());
      write_file_atomic(ck / "state.json", id);
      append_log_header();
    }
    // The output's temporary directory: a killed run cannot remove it, the next one does (a hook's
    // caller writes its own output).
    if (!hook_) {
      const fs::path& tmp = od_->make_tmp();
      std::ofstream(ck / "temp-outputs.txt", std::ios::app) << tmp.string() << "\n";
    }
  }

  void remove_old_temps() {
    std::ifstream in(cfg_.checkpoint_dir / "temp-outputs.txt");
    std::string line;
    std::error_code ec;
    while (std::getline(in, line))
      if (!line.empty() && line.find(".tmp-") != std::string::npos) fs::remove_all(line, ec);
    fs::remove(cfg_.checkpoint_dir / "temp-outputs.txt", ec);
  }

  void append_log_header() {
    log_ = std::make_unique<GsFile>(work_ / "blocks.log", true);
    log_->sync();
  }

  // The consistent prefix of blocks.log: block i's line names the checksums of block-i.bin and
  // of hidden-(i+1).bin; a torn line or a block file whose checksum differs ends the prefix. Only
  // the hidden states entering the next block are kept (the earlier ones are removed once the
  // block after them is logged), so they are checked for the last line only.
  void load_log() {
    const std::string text = read_file(work_ / "blocks.log");
    size_t pos = 0;
    std::vector<std::string> lines, hidden;
    while (true) {
      const size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) break;
      const std::string line = text.substr(pos, nl - pos);
      long long L = -1;
      char bh[17] = {}, hh[17] = {};
      if (std::sscanf(line.c_str(), "block %lld %16s %16s", &L, bh, hh) != 3 ||
          L != static_cast<long long>(lines.size()))
        break;
      if (!check_file(block_file(L), bh)) break;
      lines.push_back(line);
      hidden.push_back(hh);
      pos = nl + 1;
    }
    int64_t done = static_cast<int64_t>(lines.size());
    const int64_t n_layer = src_->config().n_layer;
    if (!cfg_.params.rtn && done > 0 && done < n_layer && !check_file(hidden_file(done), hidden.back().c_str())) done = 0;
    first_block_ = done;
    std::string kept;
    for (int64_t i = 0; i < done; ++i) kept += lines[static_cast<size_t>(i)] + "\n";
    // Rewrite the log as its good prefix, then read back the finished blocks' reports.
    log_ = std::make_unique<GsFile>(work_ / "blocks.log.tmp", true);
    log_->write(kept.data(), kept.size());
    log_->sync();
    std::error_code ec;
    fs::rename(work_ / "blocks.log.tmp", work_ / "blocks.log", ec);
    for (int64_t L = 0; L < done && !hook_; ++L) {  // a hook's block files are empty: its caller keeps its results
      GsFile f(block_file(L), false);
      for (const GsLinear& x : linears_) {
        if (x.layer != L) continue;
        GptqMatrix q;
        gs_get_matrix(f, q);
        if (!awq_) report(x, q);
      }
      if (awq_) {
        GsAwqRecord rec;
        gs_get_awq(f, rec, awq_float_limit());
        summary_.layers.insert(summary_.layers.end(), rec.reports.begin(), rec.reports.end());
        for (const GptqLayerReport& r : rec.reports) summary_.damp_raises += r.damp_raises;
        awq_summary_.groups.insert(awq_summary_.groups.end(), rec.groups.begin(), rec.groups.end());
        awq_summary_.clipped_linears += rec.clipped;
      }
      if (cfg_.smoothquant) {
        GsSmoothing sm;
        gs_get_smoothing(f, sm, static_cast<uint64_t>(std::max(src_->config().n_embd, int64_t{1})));
        report_smoothing(L, sm);
      }
    }
  }

  void report_smoothing(int64_t L, const GsSmoothing& sm) {
    for (int g = 0; g < 2; ++g) {
      if (sm.scales[g].empty()) continue;  // not smoothed (a mixture of experts' MLP group)
      SmoothQuantGroup G;
      G.layer = static_cast<int>(L);
      G.norm = fmt::format("model.layers.{}.{}", L, g == 0 ? "input_layernorm" : "post_attention_layernorm");
      for (const GsLinear& x : linears_)
        if (x.layer == L && x.site == 2 * g) G.linears.push_back(x.module);
      G.alpha = sm.alpha[g];
      G.mse_chosen = sm.mse_chosen[g];
      G.mse_default = sm.mse_default[g];
      G.activation_max = sm.act_max[g];
      G.activation_max_smoothed = sm.site_max[static_cast<size_t>(2 * g)];
      if (!sm.scales[g].empty()) {
        const auto [lo, hi] = std::minmax_element(sm.scales[g].begin(), sm.scales[g].end());
        G.scale_min = *lo;
        G.scale_max = *hi;
      }
      summary_.smoothing.push_back(std::move(G));
    }
  }

  bool check_file(const fs::path& p, const char* want) const {
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) return false;
    GsFile f(p, false);
    std::vector<uint8_t> buf(1 << 20);
    uint64_t left = fs::file_size(p, ec);
    while (left > 0) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
      f.read(buf.data(), n);
      left -= n;
    }
    return gs_hex(f.hash()) == want;
  }

  // hidden-0.bin: each chunk's token embeddings (exactly what the engine's first block reads:
  // Gemma's scaled by sqrt(n_embd), as the engine scales them).
  void write_embeddings() {
    const ModelTensor& embd = src_->at("token_embd.weight");
    const int64_t d = embd.ne[0];
    const bool scaled = architecture_of(src_->config(), "gptq").scale_embedding;
    const float scale = std::sqrt(static_cast<float>(d));
    GsFile f(hidden_file(0), true);
    std::vector<float> x;
    for (const auto& c : chunks_) {
      x.resize(c.size() * static_cast<size_t>(d));
      for (size_t t = 0; t < c.size(); ++t) src_->read_rows_f32(embd, c[t], 1, x.data() + t * static_cast<size_t>(d));
      if (scaled)
        for (float& e : x) e *= scale;
      f.write(x.data(), x.size() * 4);
    }
    f.sync();
  }

  void report(const GsLinear& x, const GptqMatrix& q) {
    summary_.layers.push_back(GptqLayerReport{x.module, x.layer, q.loss, q.damp, q.damp_raises, q.dead_columns});
    summary_.damp_raises += q.damp_raises;
  }

  // Reads the hidden states of the next chunk (n_tokens x d) from `in` into x and puts them into the
  // block model's embedding table (rows x d); returns the chunk's token count.
  int64_t load_hidden(Model& m, GsFile& in, size_t n_tokens, int64_t rows, int64_t d, std::vector<float>& x,
                      std::vector<float>& table) {
    ctx_.check_cancelled();
    const int64_t n = static_cast<int64_t>(n_tokens);
    x.resize(static_cast<size_t>(n * d));
    in.read(x.data(), x.size() * 4);
    table.assign(static_cast<size_t>(rows * d), 0.f);
    std::memcpy(table.data(), x.data(), static_cast<size_t>(n * d) * 4);
    m.replace_tensor("token_embd.weight", table, QuantType::F32);
    return n;
  }

  // SmoothQuant on block L (in `model`, the one-block model): the scales of both groups from their
  // inputs' statistics, as SmoothQuantizer computes them (smoothing_scales; MigrationAnalyzer for
  // alpha auto), the norms folded (γ/s, in the checkpoint's dtype), and the groups' Hessians turned
  // into those of the smoothed inputs X/s: H_ij / (s_i s_j). The weights get W*s when quantized.
  void smooth_block(int64_t L, Model& model, std::vector<GsRowMat>& H, const std::vector<sq_impl::SqInputStats>& stats,
                    GsSmoothing& sm) {
    const SmoothQuantConfig& sq = *cfg_.smoothquant;
    sm.site_max.assign(4, 0.0f);
    for (int g = 0; g < (moe_ ? 1 : 2); ++g) {
      const int k = 2 * g;
      const std::vector<float> a = stats[static_cast<size_t>(k)].statistic();
      const std::string norm_role = g == 0 ? "attn_norm" : "ffn_norm";
      const std::string norm_name = fmt::format("model.layers.{}.{}", L, g == 0 ? "input_layernorm" : "post_attention_layernorm");
      // The group's weights' column maxima, row by row from the model (the float matrices are held
      // only for the α search, which needs them whole).
      const size_t n = a.size();
      std::vector<float> wmax(n, 0.0f);
      std::vector<std::vector<float>> W;
      {
        const Model::Impl& mi = detail::ModelAccess::impl(model);
        const engine::Exec ex = engine::Exec::with_threads(1);
        std::vector<float> row(n);
        for (const GsLinear& x : linears_) {
          if (x.layer != L || x.site != k) continue;
          const engine::Tensor* t = mi.find("blk.0." + x.role + ".weight");
          if (!t || t->row_length() != static_cast<int64_t>(n))
            fail(Errc::invalid_model, "gptq: {}: a linear's rows are not {} long", norm_name, n);
          for (int64_t r = 0; r < t->n_rows(); ++r) {
            engine::dequantize_row(ex, *t, r, row.data());
            for (size_t i = 0; i < n; ++i) wmax[i] = std::max(wmax[i], std::fabs(row[i]));
          }
          if (sq.alpha_auto) W.push_back(model.tensor_f32("blk.0." + x.role + ".weight"));
        }
      }
      double alpha = sq.alpha;
      if (sq.alpha_auto) {
        const MigrationAnalyzer analyzer(sq.alpha_grid, true, sq.static_activations);
        const std::vector<float> X = stats[static_cast<size_t>(k)].sample();
        const int64_t rows = stats[static_cast<size_t>(k)].rows();
        const MigrationResult m = analyzer.find_optimal_alpha(W, X, rows, a, ctx_);
        alpha = m.alpha;
        sm.mse_chosen[g] = m.error;
        sm.mse_default[g] = -1;
        for (size_t i = 0; i < analyzer.grid().size(); ++i)
          if (std::fabs(analyzer.grid()[i] - sq.alpha) < 1e-12) sm.mse_default[g] = m.errors[i];
        if (sm.mse_default[g] < 0) sm.mse_default[g] = analyzer.error(W, X, rows, smoothing_scales(a, wmax, sq.alpha), ctx_);
        progress_.message(fmt::format("  {}: alpha {:.2f} (relative MSE {:.3g}; {:.3g} at alpha {})", norm_name, alpha,
                                      sm.mse_chosen[g], sm.mse_default[g], sq.alpha));
      }
      std::vector<float> s = smoothing_scales(a, wmax, alpha);
      double amax = 0, smax = 0;
      for (size_t j = 0; j < n; ++j) {
        if (!std::isfinite(s[j]) || s[j] <= 0)
          fail(Errc::smoothquant_failed, "gptq: {}: smoothing scale of channel {} is {}; nothing was written", norm_name, j, s[j]);
        amax = std::max(amax, static_cast<double>(a[j]));
        smax = std::max(smax, static_cast<double>(a[j]) / s[j]);
      }
      // The norm γ/s, as the output stores it (Gemma's 1 + w as w); the block computes with what
      // reading that back gives.
      std::vector<float> gamma = model.tensor_f32("blk.0." + norm_role + ".weight");
      if (gamma.size() != n) fail(Errc::invalid_model, "gptq: {} has {} values, not {}", norm_name, gamma.size(), n);
      for (size_t j = 0; j < n; ++j) gamma[j] /= s[j];
      std::vector<float> stored =
          gptq_impl::gp_checkpoint_floats(src_->at(fmt::format("blk.{}.{}.weight", L, norm_role)), gamma);
      for (size_t j = 0; j < n; ++j)
        if (!std::isfinite(gamma[j]))
          fail(Errc::smoothquant_failed, "gptq: {}: smoothed norm weight {} is not finite; nothing was written", norm_name, j);
      model.replace_tensor("blk.0." + norm_role + ".weight", gamma, QuantType::F32);
      GsRowMat& h = H[static_cast<size_t>(k)];
      for (int64_t i = 0; i < h.rows(); ++i)
        for (int64_t j = 0; j < h.cols(); ++j) h(i, j) = h(i, j) / s[static_cast<size_t>(i)] / s[static_cast<size_t>(j)];
      sm.alpha[g] = alpha;
      sm.act_max[g] = amax;
      sm.site_max[static_cast<size_t>(k)] = static_cast<float>(smax);
      sm.scales[g] = std::move(s);
      sm.norm[g] = std::move(stored);
    }
    if (sq.static_activations)
      for (int k : {1, 3}) {
        const std::vector<float> a = stats[static_cast<size_t>(k)].statistic();
        sm.site_max[static_cast<size_t>(k)] = *std::max_element(a.begin(), a.end());
      }
  }

  void block(int64_t L) {
    release_free_memory();
    const ModelConfig& mc = src_->config();
    const int64_t rows = std::max<int64_t>(max_len_, 1);
    GsBlockSource bs(*src_, L, rows);
    std::unique_ptr<Model> model = Model::load(bs);
    const int64_t d = model->config().n_embd;
    const bool calibrated = !cfg_.params.rtn;
    std::vector<GsRowMat> H;
    // A mixture whose expert Hessians would pass cfg_.expert_hessian_bytes: the experts' inputs go
    // to a spool file during the pass (each record's offset and rows per site), and each Hessian is
    // formed from it just before a linear reading it is quantized and freed after (expert_hessian:
    // an expert's gate/up Hessian twice, for its gate and for its up).
    std::vector<char> spooled;
    std::vector<std::vector<std::pair<uint64_t, int64_t>>> spool_at;
    std::vector<int64_t> site_width, site_seen;
    std::unique_ptr<GsFile> expert_inputs;
    std::vector<char> unrouted;  // per Hessian site: an expert input no calibration token reached
    std::vector<sq_impl::SqInputStats> stats;  // smoothquant: the four inputs' statistics
    GsSmoothing sm;
    std::vector<int32_t> ids(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    std::vector<float> table, x;
    GsFile spool(block_file(L), true);
    if (awq_) {
      awq_block(L, *model, rows, d, ids, table, x, spool);
    } else {
    if (calibrated) {
      const auto tc = std::chrono::steady_clock::now();
      // One Hessian per input the block's linears read (the width of their rows); a MoE block
      // without a shared expert has none at sites 2 and 3.
      std::vector<int64_t> widths(4, 0);
      for (const GsLinear& xl : linears_)
        if (xl.layer == L) {
          if (static_cast<size_t>(xl.site) >= widths.size()) widths.resize(static_cast<size_t>(xl.site) + 1, 0);
          widths[static_cast<size_t>(xl.site)] = xl.cols;
        }
      const int sites = static_cast<int>(widths.size());
      int64_t expert_bytes = 0;  // the experts' Hessians (sites 4 + 2e and 5 + 2e)
      for (int k = 4; k < sites; ++k) expert_bytes += widths[static_cast<size_t>(k)] * widths[static_cast<size_t>(k)] * 4;
      spooled.assign(widths.size(), 0);
      if (expert_bytes > 0 && expert_bytes > cfg_.expert_hessian_bytes) {
        for (int k = 4; k < sites; ++k) spooled[static_cast<size_t>(k)] = 1;
        spool_at.assign(widths.size(), {});
        expert_inputs = std::make_unique<GsFile>(expert_inputs_file(L), true);
      }
      H.resize(widths.size());
      for (int k = 0; k < sites; ++k)
        if (!spooled[static_cast<size_t>(k)]) H[static_cast<size_t>(k)] = GsRowMat::Zero(widths[k], widths[k]);
      std::vector<int64_t> seen(widths.size(), 0);
      bool non_finite = false;
      if (cfg_.smoothquant) {
        // The four inputs' statistics: the norm outputs always, o/down's for static input scales.
        SmoothQuantConfig plain = *cfg_.smoothquant;
        plain.alpha_auto = false;
        const char* what[4] = {"input_layernorm output", "self_attn.o_proj input", "post_attention_layernorm output",
                               "mlp.down_proj input"};
        for (int k = 0; k < 4; ++k)
          stats.emplace_back(fmt::format("model.layers.{}.{}", L, what[k]), std::max<int64_t>(widths[k], 1),
                             k % 2 == 0 ? *cfg_.smoothquant : plain,
                             0x5eed0000u + static_cast<uint64_t>(4 * L + k));
      }
      const bool static_inputs = cfg_.smoothquant && cfg_.smoothquant->static_activations;
      {
        SessionOptions so;
        so.n_ctx = cfg_.ctx;
        so.hook_inputs_only = true;
        so.bf16_activations = cfg_.bf16_activations.value_or(false);
        Session session(*model, so, ctx_);
        const gptq_impl::GpGemmFn gemm = engine::Exec::from(ctx_).ops.gemm;
        const float* last_input = nullptr;
        int last_site = -1;
        session.set_linear_hook([&](const LinearEvent& ev) {
          const LinearInfo& l = *ev.linear;
          if (l.layer != 0) return;
          const int k = gs_site(l.role, ev.expert);
          if (k < 0 || k >= sites || widths[static_cast<size_t>(k)] == 0) return;
          if (!(ev.input == last_input && k == last_site)) {
            last_input = ev.input;
            last_site = k;
            if (!Eigen::Map<const GsRowMat>(ev.input, ev.n_tokens, l.n_in).allFinite()) non_finite = true;
            if (spooled[static_cast<size_t>(k)]) {
              spool_at[static_cast<size_t>(k)].emplace_back(expert_inputs->bytes(), ev.n_tokens);
              expert_inputs->write(ev.input, static_cast<size_t>(ev.n_tokens * l.n_in) * sizeof(float));
              summary_.expert_inputs_spooled += ev.n_tokens * l.n_in * static_cast<int64_t>(sizeof(float));
            } else {
              gptq_impl::gp_add_gram(H[static_cast<size_t>(k)], ev.input, ev.n_tokens, l.n_in, ctx_.thread_count(), gemm);
            }
            seen[k] += ev.n_tokens;
            if (!stats.empty() && k < 4 && (k % 2 == 0 || static_inputs))
              stats[static_cast<size_t>(k)].observe(ev.input, ev.n_tokens, ctx_.thread_count());
          }
          if (k == 3) throw GsStop{};
        });
        GsFile in(hidden_file(L), false);
        for (const auto& ch : chunks_) {
          const int64_t n = load_hidden(*model, in, ch.size(), rows, d, x, table);
          session.clear();
          last_input = nullptr;
          last_site = -1;
          try {
            session.eval(std::span<const int32_t>(ids.data(), static_cast<size_t>(n)), n);
          } catch (const GsStop&) {
          }
        }
      }
      summary_.calibration_seconds += gs_seconds_since(tc);
      if (non_finite)
        fail(Errc::smoothquant_failed, "gptq: block {} sees NaN or infinite activations on the calibration data; nothing "
             "was written", L);
      unrouted.assign(static_cast<size_t>(sites), 0);
      for (int k = 0; k < sites; ++k) {
        if (widths[static_cast<size_t>(k)] == 0) continue;
        if (seen[k] == 0 && k < 4) fail(Errc::calibration_error, "gptq: block {} saw no calibration tokens", L);
        if (seen[k] == 0) {  // an expert the router never chose: no Hessian, rounded to nearest
          unrouted[static_cast<size_t>(k)] = 1;
          H[static_cast<size_t>(k)].resize(0, 0);
          continue;
        }
        if (!spooled[static_cast<size_t>(k)]) gptq_impl::gp_finish_gram(H[static_cast<size_t>(k)], 2.0f / static_cast<float>(seen[k]));
      }
      site_width = widths;
      site_seen = seen;
      expert_inputs.reset();  // written: read back by expert_hessian
      std::vector<int> rtn_experts;
      for (int k = 4; k < sites; k += 2)
        if (unrouted[static_cast<size_t>(k)] || unrouted[static_cast<size_t>(k) + 1]) rtn_experts.push_back((k - 4) / 2);
      if (!rtn_experts.empty()) {
        const std::string w = fmt::format("block {}: the calibration data routed no tokens to expert(s) {}; their "
                                          "matrices were {}", L, fmt::join(rtn_experts, ", "),
                                          hook_ ? "quantized without GPTQ's walk" : "rounded to nearest");
        progress_.message("warning: " + w);
        summary_.warnings.push_back(w);
      }
      if (cfg_.smoothquant) smooth_block(L, *model, H, stats, sm);
      stats.clear();
    }
    release_free_memory();
    // Quantize the block's linears, spool them, and put their quantized weights in the model.
    const int64_t hd = model->config().head_dim;
    // A merged expert tensor's values while its experts are quantized one after another (each
    // expert's slice then holds its dequantized weights); one at a time, as linears_ is role-major.
    std::vector<float> experts;
    // A spooled site's Hessian, formed from its records in the order the pass gave them (the same
    // sums as during the pass).
    auto spooled_site = [&](int k) { return calibrated && static_cast<size_t>(k) < spooled.size() && spooled[static_cast<size_t>(k)]; };
    auto expert_hessian = [&](int k) {
      const size_t i = static_cast<size_t>(k);
      if (!spooled_site(k) || unrouted[i]) return;
      const int64_t w = site_width[i];
      H[i] = GsRowMat::Zero(w, w);
      if (!expert_inputs) expert_inputs = std::make_unique<GsFile>(expert_inputs_file(L), false);
      const gptq_impl::GpGemmFn gemm = engine::Exec::from(ctx_).ops.gemm;
      std::vector<float> rows;
      for (const auto& [offset, n] : spool_at[i]) {
        rows.resize(static_cast<size_t>(n * w));
        expert_inputs->seek(offset);
        expert_inputs->read(rows.data(), rows.size() * sizeof(float));
        gptq_impl::gp_add_gram(H[i], rows.data(), n, w, ctx_.thread_count(), gemm);
      }
      gptq_impl::gp_finish_gram(H[i], 2.0f / static_cast<float>(site_seen[i]));
    };
    for (const GsLinear& xl : linears_) {
      if (xl.layer != L) continue;
      ctx_.check_cancelled();
      expert_hessian(xl.site);
      const std::string gg = "blk.0." + xl.role + ".weight";
      std::vector<float> w;
      const size_t slice = static_cast<size_t>(xl.rows * xl.cols), at = slice * static_cast<size_t>(std::max(xl.expert, 0));
      if (xl.expert >= 0) {
        if (xl.expert == 0) experts = model->tensor_f32(gg);
        w.assign(experts.begin() + static_cast<std::ptrdiff_t>(at), experts.begin() + static_cast<std::ptrdiff_t>(at + slice));
      } else {
        w = model->tensor_f32(gg);
      }
      if (hook_) {  // the caller's quantizer, on the weights in the engine's row order
        const bool no_tokens = !unrouted.empty() && unrouted[static_cast<size_t>(xl.site)];
        const bool h_last = last_reader_of_input(xl.role) || spooled_site(xl.site);  // H is freed after the call
        std::vector<float> dq = cfg_.matrix_hook(fmt::format("blk.{}.{}.weight", L, xl.role), w, xl.rows, xl.cols,
                                                 no_tokens ? nullptr : H[static_cast<size_t>(xl.site)].data(), h_last, ctx_);
        std::vector<float>().swap(w);
        if (static_cast<int64_t>(dq.size()) != xl.rows * xl.cols)
          fail(Errc::invalid_argument, "gptq: {}: the matrix hook returned {} values, not {}", xl.module, dq.size(),
               xl.rows * xl.cols);
        if (last_reader_of_input(xl.role) || spooled_site(xl.site)) H[static_cast<size_t>(xl.site)].resize(0, 0);
        if (xl.expert >= 0) {  // into the merged tensor, which goes into the model after its last expert
          std::copy(dq.begin(), dq.end(), experts.begin() + static_cast<std::ptrdiff_t>(at));
          if (static_cast<size_t>(at + slice) == experts.size()) {
            if (L + 1 < mc.n_layer) model->replace_tensor(gg, experts, QuantType::F32);
            std::vector<float>().swap(experts);
          }
          continue;
        }
        if (L + 1 < mc.n_layer) model->replace_tensor(gg, dq, QuantType::F32);
        continue;
      }
      if (cfg_.smoothquant && (xl.site == 0 || xl.site == 2) && !sm.scales[xl.site / 2].empty()) {  // W * s, column by column
        const std::vector<float>& sc = sm.scales[xl.site / 2];
        for (int64_t r = 0; r < xl.rows; ++r)
          for (int64_t c = 0; c < xl.cols; ++c) w[static_cast<size_t>(r * xl.cols + c)] *= sc[static_cast<size_t>(c)];
      }
      if (xl.permuted) {
        std::vector<float> o(w.size());
        for (int64_t r = 0; r < xl.rows; ++r)
          std::memcpy(&o[static_cast<size_t>(gs_hf_row(r, hd) * xl.cols)], &w[static_cast<size_t>(r * xl.cols)],
                      static_cast<size_t>(xl.cols) * 4);
        w.swap(o);
      }
      // The last linear reading an input (v, o, up, down) takes its Hessian's storage for the factor.
      const bool last_reader = last_reader_of_input(xl.role);
      GptqMatrix q;
      try {
        if (calibrated && !unrouted.empty() && unrouted[static_cast<size_t>(xl.site)]) {
          GptqParams rtn = cfg_.params;
          rtn.rtn = true;
          q = gptq_quantize_matrix(w.data(), xl.rows, xl.cols, nullptr, rtn, ctx_);
        } else if (calibrated) {
          q = gptq_impl::gp_quantize_consuming(w, xl.rows, xl.cols, H[static_cast<size_t>(xl.site)], last_reader,
                                               cfg_.params, ctx_);
        } else {
          q = gptq_quantize_matrix(w.data(), xl.rows, xl.cols, nullptr, cfg_.params, ctx_);
        }
      } catch (const Error& e) {
        if (e.code() == Errc::interrupted) throw;
        fail(e.code(), "{}: {}; nothing was written", xl.module, e.what());
      }
      std::vector<float>().swap(w);  // quantized: its values are q's from here
      if (spooled_site(xl.site)) H[static_cast<size_t>(xl.site)].resize(0, 0);  // formed again if read again
      if (q.damp_raises > 0)
        progress_.message(fmt::format("warning: {}: Cholesky failed, dampening raised {} time(s) to {}", xl.module,
                                      q.damp_raises, q.damp));
      report(xl, q);
      gs_put_matrix(spool, q);
      if (xl.expert >= 0) {  // the whole merged tensor goes into the model after its last expert
        const bool propagate = calibrated && L + 1 < mc.n_layer;
        if (propagate) {
          const std::vector<float> dq = q.dequantize();
          std::copy(dq.begin(), dq.end(), experts.begin() + static_cast<std::ptrdiff_t>(at));
        }
        if (static_cast<size_t>(at + slice) == experts.size()) {
          if (propagate) model->replace_tensor(gg, experts, QuantType::F32);
          std::vector<float>().swap(experts);
        }
        continue;
      }
      if (calibrated && L + 1 < mc.n_layer) put_quantized(*model, xl, std::move(q));
      release_free_memory();
    }
    if (cfg_.smoothquant) {
      gs_put_smoothing(spool, sm);
      report_smoothing(L, sm);
    }
    }
    spool.sync();
    H.clear();
    if (expert_inputs || !spool_at.empty()) {
      expert_inputs.reset();
      std::error_code ec;
      fs::remove(expert_inputs_file(L), ec);
    }
    // The hidden states entering block L + 1: each chunk through the quantized block.
    uint64_t next_hash = 0;
    if (calibrated && L + 1 < mc.n_layer) {
      const auto tc = std::chrono::steady_clock::now();
      SessionOptions so;
      so.n_ctx = cfg_.ctx;
      so.bf16_activations = cfg_.bf16_activations.value_or(false);
      Session session(*model, so, ctx_);
      std::vector<float> out;
      GsFile in(hidden_file(L), false);
      GsFile next(hidden_file(L + 1), true);
      for (const auto& ch : chunks_) {
        const int64_t n = load_hidden(*model, in, ch.size(), rows, d, x, table);
        session.clear();
        // the residual stream leaving the block, as the engine computes it (no logits)
        session.eval_blocks(std::span<const int32_t>(ids.data(), static_cast<size_t>(n)), 0, 1, out, n);
        next.write(out.data(), out.size() * 4);
      }
      next.sync();
      next_hash = next.hash();
      summary_.calibration_seconds += gs_seconds_since(tc);
    }
    gs_sync_dir(work_);
    const std::string line = fmt::format("block {} {} {}\n", L, gs_hex(spool.hash()), gs_hex(next_hash));
    log_->write(line.data(), line.size());
    log_->sync();
    std::error_code ec;
    if (calibrated) fs::remove(hidden_file(L), ec);
  }

  // The allocator's free pages handed back to the system (glibc keeps freed memory below the top of
  // its heaps, which the peak then counts): at block boundaries and between a block's passes, when
  // the next phase's large buffers are about to be allocated.
  static void release_free_memory() {
#if defined(__GLIBC__)
    ::malloc_trim(0);
#endif
  }

  // The block model's weight of xl replaced by q's values (engine row order), for the pass that
  // gives the next block's inputs: as W4G / W8G blocks (engine::int_blocks; the same float values
  // at 0.75 / 1.25 bytes a weight instead of 4) where every 32 columns lie in one group in their
  // order, as F32 otherwise. q's arrays are taken.
  void put_quantized(Model& model, const GsLinear& xl, GptqMatrix&& q) const {
    const std::string name = "blk.0." + xl.role + ".weight";
    unpack::IntWeight w;
    w.rows = q.rows;
    w.cols = q.cols;
    w.bits = q.bits;
    w.n_groups = q.groups;
    w.q = std::move(q.codes);
    w.scale = std::move(q.scales);
    w.zero = std::move(q.zeros);
    w.g_idx = std::move(q.g_idx);
    if (xl.permuted) {  // rows into the engine's order: row r is the Hugging Face row gs_hf_row(r)
      const int64_t hd = model.config().head_dim;
      std::vector<uint8_t> codes(w.q.size());
      std::vector<float> scale(w.scale.size());
      std::vector<int32_t> zero(w.zero.size());
      const size_t c = static_cast<size_t>(w.cols), g = static_cast<size_t>(w.n_groups);
      for (int64_t r = 0; r < w.rows; ++r) {
        const size_t from = static_cast<size_t>(gs_hf_row(r, hd)), to = static_cast<size_t>(r);
        std::memcpy(&codes[to * c], &w.q[from * c], c);
        std::copy_n(&w.scale[from * g], g, &scale[to * g]);
        std::copy_n(&w.zero[from * g], g, &zero[to * g]);
      }
      w.q.swap(codes);
      w.scale.swap(scale);
      w.zero.swap(zero);
    }
    const engine::IntBlocks ib = engine::int_blocks(w, ctx_.thread_count());
    if (!ib.bytes.empty() && ib.order.empty()) {
      model.replace_tensor(name, ib.type, ib.bytes);
      return;
    }
    std::vector<float> dq(w.q.size());
    w.dequantize_rows(0, w.rows, dq.data());
    model.replace_tensor(name, dq, QuantType::F32);
  }

  // AWQ on block L (awq_block.hpp) in the one-block model: its inputs captured from the hidden
  // states entering it, the searches, folds, clipping and quantization; the matrices (in linears_
  // order) and the block's changed float tensors and scale reports go to the spool, and the model
  // takes the folded norms and the dequantized weights for the pass to block L + 1.
  // The longest float tensor an AWQ record may hold: a router (experts x n_embd) or a norm.
  uint64_t awq_float_limit() const {
    const ModelConfig& c = src_->config();
    return static_cast<uint64_t>(std::max<int64_t>(c.n_embd, 1) * std::max<int64_t>(c.n_expert, 1));
  }

  void awq_block(int64_t L, Model& model, int64_t rows, int64_t d, const std::vector<int32_t>& ids,
                 std::vector<float>& table, std::vector<float>& x, GsFile& spool) {
    if (!awq_runner_) {
      std::vector<int64_t> lengths;
      for (const auto& c : chunks_) lengths.push_back(static_cast<int64_t>(c.size()));
      awq_runner_ = std::make_unique<awq_impl::AwBlockRunner>(*awq_, cfg_.params.scale_storage, std::move(lengths),
                                                              awq_summary_, summary_.warnings, ctx_);
    }
    const auto name = [&](const char* suffix) { return fmt::format("blk.{}.{}", L, suffix); };
    GsAwqRecord rec;
    std::map<std::string, std::pair<GptqMatrix, GptqLayerReport>> mats;
    awq_impl::AwBlockIo io;
    io.model = &model;
    io.model_layer = 0;
    io.layer = L;
    io.stored_type = [&](const char* suffix) { return src_->at(name(suffix)).checkpoint_type(); };
    io.has = [&](const char* suffix) { return src_->find(name(suffix)) != nullptr; };
    io.set_float = [&](const char* suffix, std::vector<float> v) {
      const ModelTensor& t = src_->at(name(suffix));
      std::vector<float> stored = gptq_impl::gp_checkpoint_floats(t, v);
      model.replace_tensor(fmt::format("blk.0.{}", suffix), v, QuantType::F32);
      rec.floats.emplace_back(t.source_name, std::move(stored));
    };
    io.put_matrix = [&](const std::string& module, GptqMatrix q, const GptqLayerReport& rep) {
      mats[module] = {std::move(q), rep};
    };
    io.spill_dir = work_;
    // The block's dense linears stored as floats are read again from the checkpoint while the step
    // searches them: the model's copies go once the capture is done (each is replaced below).
    for (const GsLinear& xl : linears_) {
      if (xl.layer != L || xl.expert >= 0) continue;
      const QuantType t = src_->at(name((xl.role + ".weight").c_str())).checkpoint_type();
      if (t == QuantType::F32 || t == QuantType::F16 || t == QuantType::BF16)
        io.replaced_linears.push_back("blk.0." + xl.role + ".weight");
    }
    io.read_linear = [&](const char* suffix, float* dst, int64_t n) {
      const ModelTensor& t = src_->at(name(suffix));
      if (t.n_elements() != n) fail(Errc::general, "awq: {} has {} values, not {}", t.name, t.n_elements(), n);
      // In slabs of about 4 MB: the source's decoding buffer stays that size.
      const int64_t step = std::max<int64_t>(1, (int64_t{4} << 20) / std::max<int64_t>(1, t.row_length() * 4));
      for (int64_t r = 0; r < t.n_rows(); r += step)
        src_->read_rows_f32(t, r, std::min(step, t.n_rows() - r), dst + r * t.row_length());
      src_->release(t);
    };
    const size_t groups_before = awq_summary_.groups.size();
    const int64_t clipped_before = awq_summary_.clipped_linears;
    GsFile in(hidden_file(L), false);
    awq_runner_->run(
        io, cfg_.ctx,
        [&](size_t i, Session& session) {
          const int64_t n = load_hidden(model, in, chunks_[i].size(), rows, d, x, table);
          session.eval(std::span<const int32_t>(ids.data(), static_cast<size_t>(n)), n);
        },
        summary_.calibration_seconds, ctx_);
    rec.groups.assign(awq_summary_.groups.begin() + static_cast<std::ptrdiff_t>(groups_before), awq_summary_.groups.end());
    rec.clipped = awq_summary_.clipped_linears - clipped_before;
    const bool propagate = L + 1 < src_->config().n_layer;
    std::vector<float> experts;  // a merged expert tensor's dequantized values, expert after expert
    for (const GsLinear& xl : linears_) {
      if (xl.layer != L) continue;
      auto it = mats.find(xl.module);
      if (it == mats.end()) fail(Errc::invalid_model, "awq: block {} gave no matrix for {}", L, xl.module);
      GptqMatrix& q = it->second.first;
      rec.reports.push_back(it->second.second);
      summary_.layers.push_back(it->second.second);
      summary_.damp_raises += it->second.second.damp_raises;
      gs_put_matrix(spool, q);
      if (!propagate) continue;
      if (xl.expert < 0) {
        put_quantized(model, xl, std::move(q));
        continue;
      }
      const std::vector<float> dq = q.dequantize();
      experts.insert(experts.end(), dq.begin(), dq.end());
      if (experts.size() == static_cast<size_t>(xl.rows * xl.cols * src_->config().n_expert)) {
        model.replace_tensor("blk.0." + xl.role + ".weight", experts, QuantType::F32);
        std::vector<float>().swap(experts);
      }
    }
    gs_put_awq(spool, rec);
  }

  void write_output() {
    std::error_code ec;
    // Where each module's matrix sits in the spool, and its shape (for the tensor specs).
    struct Where {
      const GsLinear* x;
      uint64_t offset;
    };
    std::map<std::string, Where> where;
    std::map<std::string, std::vector<float>> floats;  // smoothquant: the folded norms
    std::map<std::string, float> input_scales;         // smoothquant with static activations
    for (int64_t L = 0; L < src_->config().n_layer; ++L) {
      GsFile f(block_file(L), false);
      for (const GsLinear& x : linears_) {
        if (x.layer != L) continue;
        const uint64_t off = f.bytes();
        GptqMatrix q;
        gs_get_matrix(f, q);
        if (q.rows != x.rows || q.cols != x.cols) fail(Errc::invalid_argument, "gptq: a damaged spool record for {}", x.module);
        where[x.module] = Where{&x, off};
      }
      if (awq_) {
        GsAwqRecord rec;
        gs_get_awq(f, rec, awq_float_limit());
        for (auto& [name, v] : rec.floats) floats[name] = std::move(v);
      }
      if (cfg_.smoothquant) {
        GsSmoothing sm;
        gs_get_smoothing(f, sm, static_cast<uint64_t>(std::max(src_->config().n_embd, int64_t{1})));
        for (int g = 0; g < 2; ++g)
          if (!sm.norm[g].empty())  // a smoothed group's folded norm
            floats[src_->at(fmt::format("blk.{}.{}.weight", L, g == 0 ? "attn_norm" : "ffn_norm")).source_name] = sm.norm[g];
        // Static activations only (refused for experts, whose sites are past the four dense ones).
        if (cfg_.smoothquant->static_activations)
          for (const GsLinear& x : linears_)
            if (x.layer == L && x.site >= 0 && static_cast<size_t>(x.site) < sm.site_max.size())
              input_scales[x.module] = sm.site_max[static_cast<size_t>(x.site)] / 127.5f;
      }
    }
    // Each linear's shape for the tensor specs; its codes are read back from the spool when written.
    std::map<std::string, GptqMatrix> shapes;
    for (const auto& [m, w] : where) {
      GptqMatrix& q = shapes[m];
      q.rows = w.x->rows;
      q.cols = w.x->cols;
      q.bits = cfg_.params.bits;
      q.groups = cfg_.params.group_size > 0 ? w.x->cols / cfg_.params.group_size : 1;
    }
    const gptq_impl::GpDirectory d = gptq_impl::gp_write_directory(
        src_->path(), *od_, cfg_, shapes,
        [&](const std::string& m, GptqMatrix& q) -> const GptqMatrix& {
          const Where& w = where.at(m);
          GsFile f(block_file(w.x->layer), false);
          f.seek(w.offset);
          gs_get_matrix(f, q);
          return q;
        },
        floats, ctx_, input_scales);
    GptqResult& r = summary_;
    r.n_parameters = d.n_parameters;
    r.n_quantized = d.n_quantized;
    r.source_bytes = d.source_bytes;
    r.files = d.files;
    ctx_.check_cancelled();
    log_.reset();
    if (cfg_.checkpoint_dir.empty()) fs::remove_all(work_, ec);
    od_->publish();
    if (!cfg_.checkpoint_dir.empty()) {
      fs::remove_all(cfg_.checkpoint_dir, ec);
      const fs::path parent = cfg_.checkpoint_dir.parent_path();
      if (!parent.empty() && fs::is_empty(parent, ec)) fs::remove(parent, ec);
    }
    r.output = od_->dir();
    r.output_bytes = 0;
    for (const auto& f : r.files) r.output_bytes += fs::file_size(od_->dir() / f, ec);
    r.bpw = r.n_parameters > 0 ? 8.0 * static_cast<double>(d.data_bytes) / static_cast<double>(r.n_parameters) : 0;
  }

  GptqConfig cfg_;
  const Context& ctx_;
  Progress& progress_;
  fs::path out_path_;
  std::unique_ptr<ModelSource> src_;
  std::unique_ptr<OutputDir> od_;
  bool hook_ = false;  // config.matrix_hook: calibration and the caller's quantizer only
  const CalibrationData* data_ = nullptr;  // the caller's calibration data, when given
  // A mixture of experts: with SmoothQuant only the attention group is smoothed (the MLP norm feeds
  // the router and every expert), as llm-compressor's Mixtral mappings do.
  bool moe_ = false;
  std::vector<GsLinear> linears_;
  std::vector<std::vector<int32_t>> chunks_;
  int64_t max_len_ = 0;
  fs::path work_;
  std::unique_ptr<GsFile> log_;
  int64_t first_block_ = 0;
  GptqResult summary_;
  std::optional<AwqParams> awq_;                          // awq_stream's run
  std::unique_ptr<awq_impl::AwBlockRunner> awq_runner_;  // made at the first block (needs the chunks)
  AwqResult awq_summary_;

 public:
  const AwqResult& awq_summary() const { return awq_summary_; }
};

}  // namespace gptq_stream_impl

GptqResult gptq_stream_hook(const fs::path& model, const fs::path& work_root, const GptqConfig& config,
                            const Context& ctx, const CalibrationData* data) {
  gptq_stream_impl::GsRun run(model, work_root, config, ctx, nullptr, data);
  return run.run();
}

StreamWorkDir::StreamWorkDir(const std::string& prefix) {
  std::error_code ec;
  std::string tmpl = (fs::temp_directory_path(ec) / (prefix + "-XXXXXX")).string();
  if (ec || ::mkdtemp(tmpl.data()) == nullptr)
    fail(Errc::output_error, "cannot create a work folder {}: {}", tmpl, std::strerror(errno));
  path_ = tmpl;
}

StreamWorkDir::~StreamWorkDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

bool gptq_streams(const ModelSource& src) {
  // A block calibrated alone sees hidden states through a one-block model (BlockSource keeps its
  // sliding-window kind and takes the hidden states unscaled; a merged expert tensor is walked
  // one expert at a time).
  return !src.is_gguf();
}

GptqResult gptq_model(const fs::path& model, fs::path out, const GptqConfig& config, const Context& ctx) {
  validate(config.params);
  if (out.empty()) out = gptq_default_output(model, config);
  gptq_stream_impl::GsRun run(model, std::move(out), config, ctx);
  return run.run();
}

AwqResult awq_stream(const fs::path& model, fs::path out, const AwqConfig& config, const Context& ctx) {
  gptq_stream_impl::GsRun run(model, std::move(out), awq_impl::awq_gptq_config(config), ctx, &config.params);
  GptqResult g = run.run();
  AwqResult r = run.awq_summary();
  r.search_seconds = g.quantize_seconds;
  r.gptq = std::move(g);
  return r;
}

fs::path gptq_checkpoint_state(const fs::path& dir, const GptqConfig& config, bool resume) {
  const GptqParams& p = config.params;
  std::string name = fmt::format("{}-w{}a16-g{}{}{}", p.rtn ? "rtn" : "gptq", p.bits, p.group_size, p.sym ? "" : "-asym",
                                 p.act_order == GptqActOrder::none ? "" : p.act_order == GptqActOrder::group ? "-actgroup" : "-act");
  if (config.smoothquant)
    name = fmt::format("gptq-w8a8-sq{}{}", config.smoothquant->static_activations ? "-static" : "",
                       p.act_order == GptqActOrder::none ? "" : p.act_order == GptqActOrder::group ? "-actgroup" : "-act");
  return gptq_stream_impl::gs_state_dir(dir, name, resume, "GPTQ");
}

fs::path awq_checkpoint_state(const fs::path& dir, const AwqConfig& config, bool resume) {
  return gptq_stream_impl::gs_state_dir(
      dir, fmt::format("awq-w{}a16-g{}", config.params.bits, config.params.group_size), resume, "AWQ");
}

}  // namespace lq
