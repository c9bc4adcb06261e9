// The importance analysis loop: calibration chunks through the engine (activation statistics
// from the linear-layer hook) or through the backward pass (gradient, Fisher), double
// accumulators in a fixed order, a checkpoint after every chunk. Checkpoint files, the cache,
// model identities and scores live beside it (checkpoint, imatrix_cache, fingerprint, scores).
#include <lq/backend.hpp>
#include <lq/calibration.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/importance.hpp>
#include <lq/io.hpp>
#include <lq/threads.hpp>
#include <lq/tokenizer.hpp>

#include "analysis/checkpoint.hpp"
#include "analysis/fingerprint.hpp"
#include "analysis/imatrix_cache.hpp"
#include "engine/backward.hpp"
#include "backend/ops.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq {

using analysis::Accum;
using analysis::Fnv;

namespace {

// sum[c] += sum over rows of x[t, c]^2, columns split over threads, rows in order.
void add_column_squares(const detail::EngineOps& ops, const float* x, int64_t rows, int64_t cols, double* out,
                        int threads) {
  parallel_for(cols, rows * cols >= (1 << 16) ? threads : 1, 64, [&](int64_t c0, int64_t c1) {
    ops.add_squares(c1 - c0, x + c0, cols, rows, out + c0);
  });
}

// A sum that is NaN or infinite means the model produced such values (a NaN or infinite weight,
// or a forward pass that overflows): nothing useful can be written, as llama-imatrix also stops.
void check_finite(const std::vector<double>& sums, const std::string& tensor, const char* what, int64_t chunk) {
  for (size_t c = 0; c < sums.size(); ++c)
    if (!std::isfinite(sums[c]))
      fail(Errc::importance_failed,
           "analyze: chunk {}: the {} of {} are not finite ({} in column {}); the model's weights or its forward "
           "pass produce NaN or infinite values, so no importance matrix was written",
           chunk + 1, what, tensor, sums[c], c);
}

}  // namespace

struct ImportanceAnalyzer::Impl {
  const ModelSource& src;
  ImportanceOptions opt;
  std::unique_ptr<Model> model;
  std::vector<std::vector<int32_t>> chunks;
  std::string source;
  std::vector<std::string> warnings;
  bool have_data = false;
  fs::path ckpt_dir;  // the state directory of this run

  Impl(const ModelSource& s, ImportanceOptions o) : src(s), opt(std::move(o)) {
    if (opt.ctx < 2) fail(Errc::invalid_argument, "importance: ctx must be at least 2, got {}", opt.ctx);
    if (opt.samples < 1) fail(Errc::invalid_argument, "importance: calibration samples must be positive, got {}", opt.samples);
    model = Model::load(src);
    if (model->config().n_ctx_train > 0 && opt.ctx > model->config().n_ctx_train)
      warnings.push_back(fmt::format("the model was trained on {} context tokens ({} asked)", model->config().n_ctx_train,
                                     opt.ctx));
  }

  // The KV cache type the evaluation uses.
  bool kv_f16() const { return opt.method == ImportanceMethod::activation && opt.kv_f16; }

  // ImportanceOptions::activations resolved for this source: llama.cpp's rounding of the inputs of
  // 16-bit weights.
  bool llama_act() const {
    return opt.activations == ActivationRounding::llama ||
           (opt.activations == ActivationRounding::automatic && src.is_gguf());
  }

  void cut(const std::vector<int32_t>& tokens) {
    const int32_t bos = model->add_bos() ? model->bos_token() : -1;
    const int64_t available =
        evaluation_chunks(static_cast<int64_t>(tokens.size()), opt.ctx, ChunkRule::imatrix, source);
    if (available < opt.samples)
      warnings.push_back(fmt::format("the calibration data gives {} chunks of {} tokens ({} tokens), fewer than the {} "
                                     "asked; using {}",
                                     available, opt.ctx, tokens.size(), opt.samples, available));
    chunks = make_chunks(tokens, opt.ctx, opt.samples, bos);
    have_data = true;
  }

  void set_calibration(const CalibrationData& data) {
    source = data.source;
    const Tokenizer tok = Tokenizer::from_gguf(src.gguf_metadata(), src.path().string());
    cut(imatrix_calibration_tokens(data, tok, opt.ctx * opt.samples));
  }

  fs::path resume_dir() const { return analysis::resume_dir(opt.resume, opt.method); }

  std::string data_identity() const {
    Fnv f;
    f.add_value(opt.ctx);
    f.add_value(static_cast<int64_t>(chunks.size()));
    for (const auto& c : chunks) f.add(c.data(), c.size() * sizeof(int32_t));
    return f.hex();
  }

  ImportanceResult run(const Context& ctx) {
    Progress& progress = ctx.progress_sink();
    if (!have_data) {
      progress.message("No calibration data given: using the built-in WikiText-2 text");
      set_calibration(default_calibration());
    }
    const auto& lin = model->linears();
    std::vector<Accum> acc;
    std::vector<int> slot(lin.size(), -1);
    std::vector<char> wanted(lin.size(), 0);
    for (size_t i = 0; i < lin.size(); ++i) {
      const LinearInfo& li = lin[i];
      const bool is_output = li.role == "output";
      if (is_output && opt.process_output && li.name != "output.weight")
        warnings.push_back(fmt::format("the output projection is tied to {}: it gets no entry (as in llama-imatrix)", li.name));
      if (is_output && (!opt.process_output || li.name != "output.weight")) continue;
      slot[i] = static_cast<int>(acc.size());
      wanted[i] = 1;
      Accum a;
      a.linear = static_cast<int>(i);
      a.name = li.name;
      a.n_cols = li.n_in;
      // An expert tensor: one row of sums per expert, then the experts' row counts.
      a.sum.assign(static_cast<size_t>(li.n_in * li.n_expert + (li.n_expert > 1 ? li.n_expert : 0)), 0.0);
      acc.push_back(std::move(a));
    }
    const int64_t n_chunks = static_cast<int64_t>(chunks.size());
    json base = {{"format", "lq.analyze-checkpoint"},
                 {"version", 1},
                 {"method", analysis::method_key(opt.method)},
                 {"ctx", opt.ctx},
                 {"chunks", n_chunks},
                 {"process_output", opt.process_output},
                 {"activation_rounding", llama_act() ? "llama" : "exact"},
                 {"kv_cache", kv_f16() ? "f16" : "f32"},
                 {"model_id", analysis::model_identity(src)},
                 {"data_id", data_identity()},
                 {"calibration", source}};
    json entries = json::array();
    for (const auto& a : acc) entries.push_back({a.name, a.n_cols});
    base["entries"] = entries;

    ImportanceResult res;
    res.method = opt.method;
    res.ctx = opt.ctx;
    // The cache key: everything the result depends on (not the data's label).
    fs::path cached;
    if (!opt.cache_dir.empty() && opt.resume.empty()) {
      cached = analysis::cache_path(opt.cache_dir, base);
      if (analysis::load_cached(cached, acc, source, res, warnings)) {
        res.kv_f16 = kv_f16();
        res.layers = layer_scores(res.imatrix, *model);
        res.statistics = importance_statistics(res.imatrix);
        progress.message(fmt::format("Importance matrix taken from the cache: {}", cached.string()));
        res.warnings = warnings;
        return res;
      }
    }
    int64_t start = 0, tokens_before = 0;
    double loss_sum = 0;
    if (!opt.resume.empty()) {
      start = analysis::load_checkpoint(resume_dir(), base, n_chunks, acc, tokens_before, loss_sum);
      res.chunks_resumed = start;
      progress.message(fmt::format("Resuming from {}: {} of {} chunks done", resume_dir().string(), start, n_chunks));
    }
    ckpt_dir = !opt.checkpoint_dir.empty() ? analysis::state_dir(opt.checkpoint_dir, opt.method)
                                           : (!opt.resume.empty() ? resume_dir() : fs::path());

    const int threads = ctx.thread_count();
    const detail::EngineOps ops = Registry::instance().engine_ops(ctx.active_backend());
    std::unique_ptr<Session> session;
    std::unique_ptr<engine::Backprop> bp;
    std::vector<double> colbuf, abs_buf, sq_buf;
    const float* last_input = nullptr;
    int last_expert = -1;
    int64_t chunk = 0;  // the one being evaluated
    if (opt.method == ImportanceMethod::activation) {
      SessionOptions so{opt.ctx, false, llama_act(), true};
      so.kv_f16 = kv_f16();
      session = std::make_unique<Session>(*model, so, ctx);
      session->set_linear_hook([&](const LinearEvent& ev) {
        ctx.check_cancelled();  // a long chunk stops early; its partial sums are discarded with it
        const int idx = static_cast<int>(ev.linear - lin.data());
        if (idx < 0 || static_cast<size_t>(idx) >= lin.size() || slot[static_cast<size_t>(idx)] < 0) {
          last_input = nullptr;
          return;
        }
        Accum& a = acc[static_cast<size_t>(slot[static_cast<size_t>(idx)])];
        // q/k/v (and gate/up) are shown one after the other with the same input: square it once.
        if (ev.input != last_input || ev.expert != last_expert || static_cast<int64_t>(colbuf.size()) != a.n_cols) {
          colbuf.assign(static_cast<size_t>(a.n_cols), 0.0);
          add_column_squares(ops, ev.input, ev.n_tokens, a.n_cols, colbuf.data(), threads);
          check_finite(colbuf, a.name, "input activations", chunk);
          last_input = ev.input;
          last_expert = ev.expert;
        }
        const int64_t n_mat = lin[static_cast<size_t>(idx)].n_expert;
        const int64_t at = ev.expert > 0 ? ev.expert * a.n_cols : 0;
        for (int64_t c = 0; c < a.n_cols; ++c) a.sum[static_cast<size_t>(at + c)] += colbuf[static_cast<size_t>(c)];
        if (n_mat > 1 && ev.expert >= 0) a.sum[static_cast<size_t>(a.n_cols * n_mat + ev.expert)] += static_cast<double>(ev.n_tokens);
        a.count += ev.n_tokens;
      });
    } else {
      bp = std::make_unique<engine::Backprop>(*model, threads);
    }

    progress.message(fmt::format("Computing importance matrix ({})", importance_method_name(opt.method)));
    const auto t0 = std::chrono::steady_clock::now();
    int64_t done = start, tokens_run = 0;
    progress.update("Analyzing", done, n_chunks, "chunks");
    try {
      for (int64_t i = start; i < n_chunks; ++i) {
        ctx.check_cancelled();
        const auto& ch = chunks[static_cast<size_t>(i)];
        const int64_t n = static_cast<int64_t>(ch.size());
        chunk = i;
        if (session) {
          session->clear();
          last_input = nullptr;
          last_expert = -1;
          session->eval(ch, opt.process_output ? 0 : n);
        } else {
          loss_sum += bp->run(ch, wanted, [&](const engine::WeightGrad& g) {
            ctx.check_cancelled();
            Accum& a = acc[static_cast<size_t>(slot[static_cast<size_t>(g.linear)])];
            const bool fisher = opt.method == ImportanceMethod::fisher;
            std::vector<double>& buf = fisher ? sq_buf : abs_buf;
            buf.assign(static_cast<size_t>(a.n_cols), 0.0);
            engine::weight_grad_columns(g, fisher ? nullptr : buf.data(), fisher ? buf.data() : nullptr, threads);
            check_finite(buf, a.name, "gradients", chunk);
            // An expert's slice: its own row of sums and its own count (the output rows it had
            // gradients for in this chunk), as the activation path counts its tokens.
            const int64_t n_mat = lin[static_cast<size_t>(g.linear)].n_expert;
            const int64_t at = g.expert > 0 ? g.expert * a.n_cols : 0;
            for (int64_t c = 0; c < a.n_cols; ++c) a.sum[static_cast<size_t>(at + c)] += buf[static_cast<size_t>(c)];
            if (n_mat > 1 && g.expert >= 0) a.sum[static_cast<size_t>(a.n_cols * n_mat + g.expert)] += static_cast<double>(g.n_out);
            a.count += g.n_out;
          });
        }
        tokens_run += n;
        done = i + 1;
        if (!ckpt_dir.empty()) analysis::save_checkpoint(ckpt_dir, base, done, tokens_before + tokens_run, loss_sum, acc);
        progress.update("Analyzing", done, n_chunks, "chunks");
      }
    } catch (const Error& e) {
      if (e.code() != Errc::interrupted) throw;
      progress.finish("Analyzing");
      if (!ckpt_dir.empty() && done > 0)
        throw Error(Errc::interrupted,
                    fmt::format("interrupted after {} of {} chunks; the checkpoint was kept in {}", done, n_chunks,
                                ckpt_dir.string()),
                    fmt::format("Resume with --resume {}", ckpt_dir.string()));
      throw Error(Errc::interrupted, fmt::format("interrupted after {} of {} chunks (no checkpoint)", done, n_chunks));
    }
    progress.finish("Analyzing");
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // Reported only where it acted: a model with no 16-bit linear weight multiplies as it would
    // without it.
    const auto any_type = [&](QuantType t) {
      return std::ranges::any_of(model->linears(), [t](const LinearInfo& l) { return l.type == t; });
    };
    res.bf16_activations = session != nullptr && llama_act() && any_type(QuantType::BF16);
    res.f16_activations = session != nullptr && llama_act() && any_type(QuantType::F16);
    res.kv_f16 = kv_f16();
    res.tokens = tokens_run;
    res.chunks = done;
    if (opt.method != ImportanceMethod::activation && done > 0) res.mean_loss = loss_sum / static_cast<double>(done);

    Imatrix& im = res.imatrix;
    im.datasets = {source};
    im.chunk_count = done;
    im.chunk_size = opt.ctx;
    for (const auto& a : acc) {
      ImatrixEntry e;
      e.n_cols = a.n_cols;
      e.n_mat = model->linears()[static_cast<size_t>(a.linear)].n_expert;
      e.in_sum2.resize(static_cast<size_t>(a.n_cols * e.n_mat));
      for (size_t c = 0; c < e.in_sum2.size(); ++c) e.in_sum2[c] = static_cast<float>(a.sum[c]);
      e.counts = {static_cast<float>(a.count)};
      if (e.n_mat > 1) {
        e.counts.resize(static_cast<size_t>(e.n_mat));
        for (int64_t x = 0; x < e.n_mat; ++x)
          e.counts[static_cast<size_t>(x)] = static_cast<float>(a.sum[static_cast<size_t>(a.n_cols * e.n_mat + x)]);
      }
      im.entries[a.name] = std::move(e);
    }
    res.layers = layer_scores(im, *model);
    res.statistics = importance_statistics(im);
    if (!cached.empty()) analysis::store_cached(cached, res, warnings);
    res.warnings = warnings;
    return res;
  }
};

ImportanceAnalyzer::ImportanceAnalyzer(const ModelSource& source, ImportanceOptions options)
    : impl_(std::make_unique<Impl>(source, std::move(options))) {}
ImportanceAnalyzer::~ImportanceAnalyzer() = default;

void ImportanceAnalyzer::set_calibration(const CalibrationData& data) { impl_->set_calibration(data); }

void ImportanceAnalyzer::set_tokens(std::vector<int32_t> tokens, std::string source) {
  impl_->source = std::move(source);
  impl_->cut(tokens);
}

const std::vector<std::vector<int32_t>>& ImportanceAnalyzer::chunks() const { return impl_->chunks; }
const std::string& ImportanceAnalyzer::calibration_source() const { return impl_->source; }
const std::vector<std::string>& ImportanceAnalyzer::warnings() const { return impl_->warnings; }
ImportanceResult ImportanceAnalyzer::run(const Context& ctx) { return impl_->run(ctx); }
Model& ImportanceAnalyzer::model() { return *impl_->model; }
const ModelSource& ImportanceAnalyzer::source() const { return impl_->src; }
const ImportanceOptions& ImportanceAnalyzer::options() const { return impl_->opt; }

void ImportanceAnalyzer::remove_checkpoint() {
  if (impl_->ckpt_dir.empty()) return;
  std::error_code ec;
  fs::remove_all(impl_->ckpt_dir, ec);
  // Leave the parent (e.g. ./.checkpoint) only if something else lives there.
  const fs::path parent = impl_->ckpt_dir.parent_path();
  if (!parent.empty() && fs::is_directory(parent, ec) && fs::is_empty(parent, ec)) fs::remove(parent, ec);
}

}  // namespace lq
