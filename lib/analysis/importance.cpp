// Importance analysis: calibration chunks through the engine (activation statistics from the
// linear-layer hook) or through the backward pass (gradient, Fisher), double accumulators in a
// fixed order, a checkpoint after every chunk, per-layer scores.
#include <lq/error.hpp>
#include <lq/importance.hpp>
#include <lq/io.hpp>
#include <lq/threads.hpp>
#include <lq/tokenizer.hpp>

#include "engine/backward.hpp"
#include "kernels/cpu/engine_kernels.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq {

const char* importance_method_name(ImportanceMethod m) noexcept {
  switch (m) {
    case ImportanceMethod::gradient: return "gradient";
    case ImportanceMethod::fisher: return "fisher";
    default: return "activation_magnitude";
  }
}

ImportanceMethod parse_importance_method(std::string_view s) {
  if (s == "activation" || s == "activation_magnitude") return ImportanceMethod::activation;
  if (s == "gradient") return ImportanceMethod::gradient;
  if (s == "fisher") return ImportanceMethod::fisher;
  fail(Errc::invalid_argument, "unknown importance method '{}' (activation, gradient, fisher)", s);
}

const char* activation_rounding_name(ActivationRounding r) noexcept {
  switch (r) {
    case ActivationRounding::exact: return "exact";
    case ActivationRounding::llama: return "llama";
    default: return "auto";
  }
}

ActivationRounding parse_activation_rounding(std::string_view s) {
  if (s == "auto") return ActivationRounding::automatic;
  if (s == "exact") return ActivationRounding::exact;
  if (s == "llama" || s == "bf16") return ActivationRounding::llama;
  fail(Errc::invalid_argument, "unknown --activations '{}' (auto, exact, llama)", s);
}

std::string hf_module_name(const std::string& g) {
  if (g == "output.weight") return "lm_head";
  if (g == "token_embd.weight") return "model.embed_tokens";
  if (g.rfind("blk.", 0) != 0) return g;
  const size_t dot = g.find('.', 4);
  if (dot == std::string::npos) return g;
  const std::string layer = g.substr(4, dot - 4);
  std::string rest = g.substr(dot + 1);
  if (rest.size() > 7 && rest.compare(rest.size() - 7, 7, ".weight") == 0) rest.resize(rest.size() - 7);
  static const std::pair<const char*, const char*> kNames[] = {
      {"attn_q", "self_attn.q_proj"},   {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"}, {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},    {"attn_norm", "input_layernorm"}, {"ffn_norm", "post_attention_layernorm"}};
  for (const auto& [k, v] : kNames)
    if (rest == k) return "model.layers." + layer + "." + v;
  return "model.layers." + layer + "." + rest;
}

std::vector<LayerScore> layer_scores(const Imatrix& im, const Model& model) {
  std::vector<LayerScore> out;
  for (const auto& li : model.linears()) {
    const std::string name = li.role == "output" ? std::string("output.weight") : li.name;
    const ImatrixEntry* e = im.find(name);
    if (!e) continue;
    LayerScore s;
    s.tensor = name;
    s.layer_name = hf_module_name(name);
    s.layer_index = li.layer;
    s.parameter_count = li.n_in * li.n_out;
    double sum = 0;
    int64_t n = 0;
    for (int64_t mat = 0; mat < e->n_mat; ++mat)
      for (float v : e->mean(mat)) {
        sum += v;
        ++n;
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
    b.layer_name = i < 0 ? "lm_head" : "model.layers." + std::to_string(i);
    b.tensor = i < 0 ? "output" : "blk." + std::to_string(i);
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
    for (int64_t mat = 0; mat < e.n_mat; ++mat)
      for (float v : e.mean(mat)) {
        sum += v;
        sum2 += static_cast<double>(v) * v;
        st.min = std::min(st.min, static_cast<double>(v));
        st.max = std::max(st.max, static_cast<double>(v));
        ++st.count;
      }
  if (st.count == 0) return ImportanceStatistics{};
  st.mean = sum / static_cast<double>(st.count);
  st.std = std::sqrt(std::max(0.0, sum2 / static_cast<double>(st.count) - st.mean * st.mean));
  return st;
}

namespace {

// FNV-1a, 64 bits: identities of models and data in checkpoints (not a security measure).
struct Fnv {
  uint64_t h = 0xcbf29ce484222325ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
  template <typename T>
  void add_value(const T& v) {
    add(&v, sizeof v);
  }
  void add_string(const std::string& s) {
    add_value(static_cast<uint64_t>(s.size()));
    add(s.data(), s.size());
  }
  std::string hex() const { return fmt::format("{:016x}", h); }
};

std::string model_identity(const ModelSource& src) {
  Fnv f;
  const ModelConfig& c = src.config();
  f.add_string(c.architecture);
  for (int64_t v : {c.n_vocab, c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.n_ff, c.head_dim}) f.add_value(v);
  std::vector<uint8_t> row;
  for (const auto& t : src.tensors()) {
    f.add_string(t.name);
    f.add_value(static_cast<int32_t>(t.type));
    for (int64_t d : t.ne) f.add_value(d);
    if (t.n_rows() == 0) continue;
    // Up to 16 rows spread over the tensor, the first and last among them: cheap to read, and an
    // edited model (fine-tuned, merged, re-quantized) changes them.
    row.resize(t.row_bytes());
    const int64_t n = t.n_rows(), samples = std::min<int64_t>(n, 16);
    for (int64_t i = 0; i < samples; ++i) {
      const int64_t r = samples == 1 ? 0 : i * (n - 1) / (samples - 1);
      src.read_rows_raw(t, r, 1, row.data());
      f.add(row.data(), row.size());
    }
  }
  return f.hex();
}

const char* method_key(ImportanceMethod m) {
  switch (m) {
    case ImportanceMethod::gradient: return "gradient";
    case ImportanceMethod::fisher: return "fisher";
    default: return "activation";
  }
}

// Accumulated sums of one analysed weight.
struct Accum {
  int linear = -1;
  std::string name;
  int64_t n_cols = 0;
  std::vector<double> sum;
  int64_t count = 0;
};

// sum[c] += sum over rows of x[t, c]^2, columns split over threads, rows in order.
void add_column_squares(const float* x, int64_t rows, int64_t cols, double* out, int threads) {
  parallel_for(cols, rows * cols >= (1 << 16) ? threads : 1, 64, [&](int64_t c0, int64_t c1) {
    cpu::add_squares(c1 - c0, x + c0, cols, rows, out + c0);
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
  Progress& progress;

  Impl(const ModelSource& s, ImportanceOptions o)
      : src(s), opt(std::move(o)), progress(opt.progress ? *opt.progress : null_progress()) {
    if (opt.ctx < 2) fail(Errc::invalid_argument, "importance: ctx must be at least 2, got {}", opt.ctx);
    if (opt.samples < 1) fail(Errc::invalid_argument, "importance: calibration samples must be positive, got {}", opt.samples);
    if (opt.threads < 0) fail(Errc::invalid_argument, "importance: threads must be >= 0, got {}", opt.threads);
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
    const int64_t available = static_cast<int64_t>(tokens.size()) / opt.ctx;
    if (available == 0)
      fail(Errc::calibration_error,
           "{}: the calibration data gives {} tokens, fewer than one chunk of {} tokens; give more data or a smaller --ctx",
           source, tokens.size(), opt.ctx);
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
    std::vector<int32_t> tokens;
    const int64_t need = opt.ctx * opt.samples;
    if (data.texts.size() == 1) {
      tokens = tok.encode(data.texts[0], true, false);
      if (tok.add_eos() && !tokens.empty() && tokens.back() == tok.eos_id()) tokens.pop_back();
    } else {
      if (tok.add_bos() && tok.bos_id() >= 0) tokens.push_back(tok.bos_id());
      for (const auto& t : data.texts) {
        const auto ids = tok.encode(t, false, false);
        tokens.insert(tokens.end(), ids.begin(), ids.end());
        if (static_cast<int64_t>(tokens.size()) >= need) break;  // samples are independent: the rest is not needed
      }
    }
    cut(tokens);
  }

  fs::path state_dir() const { return opt.checkpoint_dir / (std::string("analyze-") + method_key(opt.method)); }

  fs::path resume_dir() const {
    const fs::path& r = opt.resume;
    std::error_code ec;
    if (fs::is_regular_file(r / "state.json", ec)) return r;
    const fs::path sub = r / (std::string("analyze-") + method_key(opt.method));
    if (fs::is_regular_file(sub / "state.json", ec)) return sub;
    if (!fs::exists(r, ec)) fail(Errc::invalid_argument, "--resume: checkpoint not found: {}", r.string());
    fail(Errc::invalid_argument, "--resume: {} holds no {} analysis checkpoint (no state.json)", r.string(),
         method_key(opt.method));
  }

  std::string data_identity() const {
    Fnv f;
    f.add_value(opt.ctx);
    f.add_value(static_cast<int64_t>(chunks.size()));
    for (const auto& c : chunks) f.add(c.data(), c.size() * sizeof(int32_t));
    return f.hex();
  }

  static void write_sums(const fs::path& path, const std::vector<Accum>& acc) {
    std::string bytes;
    for (const auto& a : acc) {
      bytes.append(reinterpret_cast<const char*>(a.sum.data()), a.sum.size() * sizeof(double));
      bytes.append(reinterpret_cast<const char*>(&a.count), sizeof a.count);
    }
    write_file_atomic(path, bytes);
  }

  void save_checkpoint(const json& base, int64_t done, int64_t tokens_done, double loss_sum,
                       const std::vector<Accum>& acc) {
    const fs::path dir = ckpt_dir;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) fail(Errc::output_error, "cannot create the checkpoint directory {}: {}", dir.string(), ec.message());
    const std::string sums = fmt::format("sums-{:06}.bin", done);
    write_sums(dir / sums, acc);
    json st = base;
    st["chunks_done"] = done;
    st["tokens_done"] = tokens_done;
    // The loss sum is kept bit-exactly (hex of the double's bits).
    uint64_t bits;
    std::memcpy(&bits, &loss_sum, sizeof bits);
    st["loss_sum_bits"] = fmt::format("{:016x}", bits);
    st["sums_file"] = sums;
    write_file_atomic(dir / "state.json", st.dump(1) + "\n");
    std::vector<fs::path> old;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().filename().string().rfind("sums-", 0) == 0 && e.path().filename() != sums) old.push_back(e.path());
    for (const auto& p : old) fs::remove(p, ec);
  }

  // Loads the checkpoint into acc; returns chunks done.
  int64_t load_checkpoint(const json& base, std::vector<Accum>& acc, int64_t& tokens_done, double& loss_sum) {
    const fs::path dir = resume_dir();
    json st;
    try {
      st = json::parse(read_file(dir / "state.json"));
    } catch (const json::exception& e) {
      fail(Errc::invalid_argument, "--resume: {}: malformed checkpoint state: {}", (dir / "state.json").string(), e.what());
    }
    if (st.value("format", "") != "lq.analyze-checkpoint")
      fail(Errc::invalid_argument, "--resume: {} is not an analysis checkpoint", dir.string());
    auto mismatch = [&](const char* key, const std::string& what) {
      if (!st.contains(key) || st[key] != base[key])
        fail(Errc::invalid_argument,
             "--resume: the checkpoint in {} was made with {} {}, this run has {} (resume with the same model, "
             "calibration data and options, or start afresh without --resume)",
             dir.string(), what, st.contains(key) ? st[key].dump() : std::string("(none)"), base[key].dump());
    };
    mismatch("model_id", "another model: identity");
    mismatch("method", "method");
    mismatch("ctx", "ctx");
    mismatch("chunks", "chunk count");
    mismatch("process_output", "process_output");
    mismatch("activation_rounding", "activation rounding");
    mismatch("kv_cache", "KV cache type");
    mismatch("data_id", "other calibration data: identity");
    mismatch("entries", "other weights: entries");
    const int64_t done = st.value("chunks_done", int64_t{-1});
    if (done < 0 || done > static_cast<int64_t>(chunks.size()))
      fail(Errc::invalid_argument, "--resume: {}: invalid chunk count in the checkpoint", dir.string());
    tokens_done = st.value("tokens_done", int64_t{0});
    const uint64_t bits = std::stoull(st.value("loss_sum_bits", std::string("0")), nullptr, 16);
    std::memcpy(&loss_sum, &bits, sizeof loss_sum);
    const fs::path sums = dir / st.value("sums_file", std::string());
    std::string bytes;
    try {
      bytes = read_file(sums);
    } catch (const Error&) {
      fail(Errc::invalid_argument, "--resume: the checkpoint's sums file {} is missing", sums.string());
    }
    size_t need = 0;
    for (const auto& a : acc) need += a.sum.size() * sizeof(double) + sizeof(int64_t);
    if (bytes.size() != need)
      fail(Errc::invalid_argument, "--resume: {} has {} bytes, {} expected", sums.string(), bytes.size(), need);
    size_t pos = 0;
    for (auto& a : acc) {
      std::memcpy(a.sum.data(), bytes.data() + pos, a.sum.size() * sizeof(double));
      pos += a.sum.size() * sizeof(double);
      std::memcpy(&a.count, bytes.data() + pos, sizeof a.count);
      pos += sizeof a.count;
    }
    return done;
  }

  ImportanceResult run() {
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
      a.sum.assign(static_cast<size_t>(li.n_in), 0.0);
      acc.push_back(std::move(a));
    }
    const int64_t n_chunks = static_cast<int64_t>(chunks.size());
    json base = {{"format", "lq.analyze-checkpoint"},
                 {"version", 1},
                 {"method", method_key(opt.method)},
                 {"ctx", opt.ctx},
                 {"chunks", n_chunks},
                 {"process_output", opt.process_output},
                 {"activation_rounding", llama_act() ? "llama" : "exact"},
                 {"kv_cache", kv_f16() ? "f16" : "f32"},
                 {"model_id", model_identity(src)},
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
      json key = base;
      key.erase("calibration");
      Fnv f;
      f.add_string(key.dump());
      cached = opt.cache_dir / (f.hex() + ".imatrix");
      if (load_cached(cached, acc, res)) return res;
    }
    int64_t start = 0, tokens_before = 0;
    double loss_sum = 0;
    if (!opt.resume.empty()) {
      start = load_checkpoint(base, acc, tokens_before, loss_sum);
      res.chunks_resumed = start;
      progress.message(fmt::format("Resuming from {}: {} of {} chunks done", resume_dir().string(), start, n_chunks));
    }
    ckpt_dir = !opt.checkpoint_dir.empty() ? state_dir() : (!opt.resume.empty() ? resume_dir() : fs::path());

    const int threads = opt.threads > 0 ? opt.threads : hardware_threads();
    std::unique_ptr<Session> session;
    std::unique_ptr<engine::Backprop> bp;
    std::vector<double> colbuf, abs_buf, sq_buf;
    const float* last_input = nullptr;
    int64_t chunk = 0;  // the one being evaluated
    if (opt.method == ImportanceMethod::activation) {
      SessionOptions so{opt.ctx, false, llama_act(), true};
      so.kv_f16 = kv_f16();
      session = std::make_unique<Session>(*model, so, Context{threads});
      session->set_linear_hook([&](const LinearEvent& ev) {
        check_interrupted();  // a long chunk stops early; its partial sums are discarded with it
        const int idx = static_cast<int>(ev.linear - lin.data());
        if (idx < 0 || static_cast<size_t>(idx) >= lin.size() || slot[static_cast<size_t>(idx)] < 0) {
          last_input = nullptr;
          return;
        }
        Accum& a = acc[static_cast<size_t>(slot[static_cast<size_t>(idx)])];
        // q/k/v (and gate/up) are shown one after the other with the same input: square it once.
        if (ev.input != last_input || static_cast<int64_t>(colbuf.size()) != a.n_cols) {
          colbuf.assign(static_cast<size_t>(a.n_cols), 0.0);
          add_column_squares(ev.input, ev.n_tokens, a.n_cols, colbuf.data(), threads);
          check_finite(colbuf, a.name, "input activations", chunk);
          last_input = ev.input;
        }
        for (int64_t c = 0; c < a.n_cols; ++c) a.sum[static_cast<size_t>(c)] += colbuf[static_cast<size_t>(c)];
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
        check_interrupted();
        const auto& ch = chunks[static_cast<size_t>(i)];
        const int64_t n = static_cast<int64_t>(ch.size());
        chunk = i;
        if (session) {
          session->clear();
          last_input = nullptr;
          session->eval(ch, opt.process_output ? 0 : n);
        } else {
          loss_sum += bp->run(ch, wanted, [&](const engine::WeightGrad& g) {
            check_interrupted();
            Accum& a = acc[static_cast<size_t>(slot[static_cast<size_t>(g.linear)])];
            const bool fisher = opt.method == ImportanceMethod::fisher;
            std::vector<double>& buf = fisher ? sq_buf : abs_buf;
            buf.assign(static_cast<size_t>(a.n_cols), 0.0);
            engine::weight_grad_columns(g, fisher ? nullptr : buf.data(), fisher ? buf.data() : nullptr, threads);
            check_finite(buf, a.name, "gradients", chunk);
            for (int64_t c = 0; c < a.n_cols; ++c) a.sum[static_cast<size_t>(c)] += buf[static_cast<size_t>(c)];
            a.count += g.n_out;
          });
        }
        tokens_run += n;
        done = i + 1;
        if (!ckpt_dir.empty()) save_checkpoint(base, done, tokens_before + tokens_run, loss_sum, acc);
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
      e.n_mat = 1;
      e.in_sum2.resize(a.sum.size());
      for (size_t c = 0; c < a.sum.size(); ++c) e.in_sum2[c] = static_cast<float>(a.sum[c]);
      e.counts = {static_cast<float>(a.count)};
      im.entries[a.name] = std::move(e);
    }
    res.layers = layer_scores(im, *model);
    res.statistics = importance_statistics(im);
    if (!cached.empty()) store_cached(cached, res);
    res.warnings = warnings;
    return res;
  }

  // A cached result for this key, if one is there and has the expected entries.
  bool load_cached(const fs::path& path, const std::vector<Accum>& acc, ImportanceResult& res) {
    std::error_code ec;
    if (!fs::exists(path, ec)) return false;
    Imatrix im;
    json side;
    try {
      im = Imatrix::load(path);
      std::ifstream in(fs::path(path).replace_extension(".json"));
      side = json::parse(in);
    } catch (const std::exception& e) {
      warnings.push_back(fmt::format("ignoring the unreadable cached result {}: {}", path.string(), e.what()));
      return false;
    }
    if (im.entries.size() != acc.size()) return false;
    for (const auto& a : acc) {
      const ImatrixEntry* e = im.find(a.name);
      if (!e || e->n_cols != a.n_cols) return false;
    }
    im.datasets = {source};
    res.imatrix = std::move(im);
    res.chunks = res.imatrix.chunk_count;
    res.mean_loss = side.value("mean_loss", 0.0);
    res.bf16_activations = side.value("bf16_activations", false);
    res.f16_activations = side.value("f16_activations", false);
    res.kv_f16 = kv_f16();
    res.from_cache = true;
    res.layers = layer_scores(res.imatrix, *model);
    res.statistics = importance_statistics(res.imatrix);
    progress.message(fmt::format("Importance matrix taken from the cache: {}", path.string()));
    res.warnings = warnings;
    return true;
  }

  // Best effort: a cache that cannot be written costs a warning, never the result.
  void store_cached(const fs::path& path, const ImportanceResult& res) {
    try {
      fs::create_directories(path.parent_path());
      write_file_atomic(fs::path(path).replace_extension(".json"),
                        json{{"mean_loss", res.mean_loss},
                             {"bf16_activations", res.bf16_activations},
                             {"f16_activations", res.f16_activations}}
                                .dump() + "\n");
      res.imatrix.save_gguf(path);
    } catch (const std::exception& e) {
      warnings.push_back(fmt::format("could not write the cache {}: {}", path.string(), e.what()));
    }
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
ImportanceResult ImportanceAnalyzer::run() { return impl_->run(); }
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
