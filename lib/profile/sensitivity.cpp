// Measured sensitivity for the size solver: per tensor and candidate type, the KL divergence from
// the unquantized model caused by quantizing that tensor alone (the engine on a few chunks, the
// reference log-probabilities kept once); the table's JSON cache with the fingerprints of what it
// was measured on; Spearman's rank correlation for validating estimates against it.
#include <lq/sensitivity.hpp>

#include <lq/backend.hpp>

#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/quantizer.hpp>
#include <lq/threads.hpp>
#include "backend/ops.hpp"
#include "core/fail.hpp"

#include "profile/methods.hpp"
#include "quantize/mixture.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

namespace lq {

namespace {

struct SensFnv {
  uint64_t h = 1469598103934665603ull;
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ull;
    }
  }
  void str(const std::string& s) {
    bytes(s.data(), s.size());
    const uint8_t z = 0;
    bytes(&z, 1);
  }
  template <class T>
  void pod(const T& v) {
    bytes(&v, sizeof v);
  }
  std::string hex() const { return fmt::format("{:016x}", h); }
};

// log-softmax of one row of logits into `out` (max in float, the exponentials in float and their
// sum in double, as lq::kl_divergence, on the back-end's row kernel).
void sens_log_softmax(const detail::EngineOps& ops, std::span<const float> l, float* out) {
  float mx = 0;
  int64_t am = 0;
  const double ls = std::log(ops.sum_exp_row(static_cast<int64_t>(l.size()), l.data(), &mx, &am));
  for (size_t i = 0; i < l.size(); ++i) out[i] = static_cast<float>(static_cast<double>(l[i] - mx) - ls);
}

// The tensors a table covers by default: weights the quantizer may quantize that the engine runs.
bool sens_engine_holds(const Model& m, const std::string& name) {
  if (m.find_linear(name)) return true;
  try {
    (void)m.tensor_type(name);
    return name == "token_embd.weight";
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

const SensitivityRow* SensitivityTable::find(const std::string& tensor) const {
  for (const auto& r : rows)
    if (r.tensor == tensor) return &r;
  return nullptr;
}

void SensitivityTable::save(const std::filesystem::path& path) const {
  nlohmann::json j;
  j["format"] = "lq-sensitivity";
  j["version"] = 1;
  j["key"] = {{"model", key.model}, {"text", key.text}, {"imatrix", key.imatrix}, {"types", key.types}, {"tensors", key.tensors}, {"ctx", key.ctx}, {"chunks", key.chunks}, {"revision", key.revision}};
  j["seconds"] = seconds;
  j["evaluations"] = evaluations;
  j["reference_kld_floor"] = reference_kld_floor;
  nlohmann::json rs = nlohmann::json::array();
  for (const auto& r : rows) {
    nlohmann::json k = nlohmann::json::object();
    for (size_t i = 0; i < r.types.size(); ++i) k[std::string(type_name(r.types[i]))] = r.kld[i];
    rs.push_back({{"tensor", r.tensor}, {"kld", k}});
  }
  j["tensors"] = rs;
  write_file_atomic(path, j.dump(1));
}

SensitivityTable SensitivityTable::load(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(Errc::profile_error, "cannot read sensitivity table '{}'", path.string());
  std::stringstream ss;
  ss << f.rdbuf();
  SensitivityTable t;
  try {
    const auto j = nlohmann::json::parse(ss.str());
    if (j.value("format", std::string()) != "lq-sensitivity")
      fail(Errc::profile_error, "'{}' is not a sensitivity table", path.string());
    const auto& k = j.at("key");
    t.key = {k.at("model").get<std::string>(), k.at("text").get<std::string>(), k.at("imatrix").get<std::string>(),
             k.at("types").get<std::string>(), k.at("tensors").get<std::string>(), k.at("ctx").get<int64_t>(), k.at("chunks").get<int64_t>(),
             k.value("revision", 1)};
    t.seconds = j.value("seconds", 0.0);
    t.evaluations = j.value("evaluations", int64_t{0});
    t.reference_kld_floor = j.value("reference_kld_floor", 0.0);
    for (const auto& r : j.at("tensors")) {
      SensitivityRow row;
      row.tensor = r.at("tensor").get<std::string>();
      for (const auto& [name, v] : r.at("kld").items()) {
        const auto qt = parse_quant_type(name);
        if (!qt) fail(Errc::profile_error, "sensitivity table '{}': unknown type '{}'", path.string(), name);
        const double kv = v.get<double>();
        if (!std::isfinite(kv) || kv < 0)
          fail(Errc::profile_error, "sensitivity table '{}': invalid KLD for {} {}", path.string(), row.tensor, name);
        row.types.push_back(*qt);
        row.kld.push_back(kv);
      }
      t.rows.push_back(std::move(row));
    }
  } catch (const nlohmann::json::exception& e) {
    fail(Errc::profile_error, "sensitivity table '{}' is malformed: {}", path.string(), e.what());
  }
  return t;
}

// The quantizers' revision, part of every key: raise it when a change gives any tensor other
// quantized bytes, so that tables cached before are measured again. 2: Q6_K tensors that the
// importance matrix does not cover are weighted by their values' squares.
constexpr int kQuantizerRevision = 2;

SensitivityKey sensitivity_key(const ModelSource& source, std::span<const int32_t> tokens, const SensitivityOptions& o) {
  SensitivityKey k;
  k.revision = kQuantizerRevision;
  SensFnv m;
  for (const auto& t : source.tensors()) {
    m.str(t.name);
    for (int64_t d : t.ne) m.pod(d);
    m.pod(static_cast<int>(t.type));
  }
  k.model = m.hex();
  SensFnv tx;
  tx.bytes(tokens.data(), tokens.size_bytes());
  k.text = tx.hex();
  if (o.imatrix) {
    SensFnv im;
    for (const auto& [name, e] : o.imatrix->entries) {
      im.str(name);
      im.bytes(e.in_sum2.data(), e.in_sum2.size() * sizeof(float));
      im.bytes(e.counts.data(), e.counts.size() * sizeof(float));
    }
    k.imatrix = im.hex();
  }
  const std::vector<QuantType>& types = o.types.empty() ? profile::default_ladder() : o.types;
  for (QuantType qt : types) k.types += (k.types.empty() ? "" : ",") + std::string(type_name(qt));
  if (!o.tensors.empty()) {
    SensFnv tn;
    for (const auto& n : o.tensors) tn.str(n);
    k.tensors = tn.hex();
  }
  k.ctx = o.ctx;
  k.chunks = o.chunks;
  return k;
}

namespace {

// The measurement's text and reference: the model's chunks of ctx tokens cut as llama-perplexity
// cuts them (BOS when the model adds one, then the stream; each chunk's first token replaced by
// BOS; the second half's outputs compared), the unquantized model's log-probabilities there, and
// the mean KLD against them of the model as it stands.
class KldProbe {
 public:
  KldProbe(Model& model, std::span<const int32_t> tokens, const SensitivityOptions& o, const Context& ctx)
      : model_(model), ctx_(ctx), ops_(Registry::instance().engine_ops(ctx.active_backend())), n_vocab_(model.n_vocab()), n_layer_(static_cast<int>(model.config().n_layer)),
        first_(o.ctx / 2), n_rows_(o.ctx - o.ctx / 2 - 1) {
    if (o.ctx < 4) fail(Errc::invalid_argument, "sensitivity: ctx must be at least 4, got {}", o.ctx);
    if (o.chunks < 1) fail(Errc::invalid_argument, "sensitivity: chunks must be positive, got {}", o.chunks);
    std::vector<int32_t> stream;
    const bool bos = model.add_bos() && model.bos_token() >= 0;
    if (bos) stream.push_back(model.bos_token());
    stream.insert(stream.end(), tokens.begin(), tokens.end());
    if (static_cast<int64_t>(stream.size()) < o.chunks * o.ctx)
      fail(Errc::invalid_argument, "sensitivity: the text has {} tokens, {} chunks of {} need {}", stream.size(),
           o.chunks, o.ctx, o.chunks * o.ctx);
    for (int64_t c = 0; c < o.chunks; ++c) {
      std::vector<int32_t> w(stream.begin() + c * o.ctx, stream.begin() + (c + 1) * o.ctx);
      if (bos) w[0] = model.bos_token();
      windows_.push_back(std::move(w));
    }
    so_.n_ctx = o.ctx;
    entry_.resize(windows_.size());
    ctx.progress_sink().message(
        fmt::format("Sensitivity: reference outputs on {} chunks of {} tokens", o.chunks, o.ctx));
    evaluate(true, 0);
  }

  int n_layer() const { return n_layer_; }

  // Keeps the unquantized model's residual stream entering block b, per chunk (every tensor must
  // be restored): a later evaluation from block b on starts there, the blocks before it unchanged.
  void advance_to(int b) {
    if (b <= at_) return;
    Session s(model_, so_, ctx_);
    for (size_t c = 0; c < windows_.size(); ++c) {
      ctx_.check_cancelled();
      s.clear();
      s.eval_blocks(windows_[c], at_, b, entry_[c], static_cast<int64_t>(windows_[c].size()));
    }
    at_ = b;
  }

  // Mean KLD over every compared row of every chunk of the model as it stands, evaluated from
  // block `from` on (at most the block advance_to reached; 0: the whole forward pass).
  double kld(int from) { return evaluate(false, from); }

 private:
  double evaluate(bool keep_reference, int from) {
    const int threads = ctx_.thread_count();
    if (keep_reference) ref_.resize(windows_.size());
    Session s(model_, so_, ctx_);
    double sum = 0;
    std::vector<double> row_kl(static_cast<size_t>(n_rows_));
    std::vector<float> residual;
    for (size_t c = 0; c < windows_.size(); ++c) {
      ctx_.check_cancelled();
      s.clear();
      if (from > 0) residual = entry_[c];
      s.eval_blocks(windows_[c], from, n_layer_, residual, first_);
      if (keep_reference) {
        ref_[c].resize(static_cast<size_t>(n_rows_ * n_vocab_));
        parallel_for(n_rows_, threads, 4, [&](int64_t b, int64_t e) {
          for (int64_t j = b; j < e; ++j) sens_log_softmax(ops_, s.logits(j), ref_[c].data() + j * n_vocab_);
        });
        continue;
      }
      parallel_for(n_rows_, threads, 4, [&](int64_t b, int64_t e) {
        // sum exp(lr) (lr - lp), lp rounded to float as the reference's lr were: the reference
        // model against itself gives exactly 0
        std::vector<float> lp(static_cast<size_t>(n_vocab_));
        for (int64_t j = b; j < e; ++j) {
          sens_log_softmax(ops_, s.logits(j), lp.data());
          row_kl[static_cast<size_t>(j)] = ops_.kld_row(n_vocab_, ref_[c].data() + j * n_vocab_, lp.data(), 0.f, 0.f, 0.0);
        }
      });
      for (double v : row_kl) sum += v;
    }
    return sum / static_cast<double>(n_rows_ * static_cast<int64_t>(windows_.size()));
  }

  Model& model_;
  const Context& ctx_;
  const detail::EngineOps ops_;  // the back-end's row kernels (log-softmax sums, KL divergence)
  const int64_t n_vocab_;
  const int n_layer_;
  const int64_t first_, n_rows_;
  SessionOptions so_;
  std::vector<std::vector<int32_t>> windows_;
  std::vector<std::vector<float>> ref_;    // log-probabilities, n_rows x n_vocab per chunk
  std::vector<std::vector<float>> entry_;  // residual stream entering block at_, per chunk
  int at_ = 0;
};

// Quantizes tensor t of `source` to qt as the quantizer writes it (each expert's rows with its own
// importance; a tensor the importance matrix does not cover by Quantizer::uncovered_kernel's rule).
std::vector<uint8_t> sens_quantize(const ModelTensor& t, std::span<const float> x,
                                   QuantType qt, const Imatrix* imatrix, const Context& ctx) {
  const int64_t ncols = t.row_length(), nrows = t.n_rows();
  const int64_t n_mat = t.ne.size() == 3 && t.ne[2] > 0 ? t.ne[2] : 1, per = nrows / n_mat;
  std::optional<std::vector<float>> w;
  if (imatrix) w = imatrix->column_weights(t.name, ncols, n_mat);
  const size_t rb = type_info(qt).row_bytes(ncols);
  std::vector<uint8_t> q(rb * static_cast<size_t>(nrows));
  for (int64_t e = 0; e < n_mat; ++e)
    Quantizer::quantize_rows(qt, x.data() + e * per * ncols, q.data() + static_cast<size_t>(e * per) * rb, per, ncols,
                             w ? w->data() + e * ncols : nullptr, ctx, imatrix != nullptr);
  return q;
}

}  // namespace

SensitivityTable measure_sensitivity(const ModelSource& source, std::span<const int32_t> tokens,
                                     const SensitivityOptions& o, const Context& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  if (o.ctx < 4) fail(Errc::invalid_argument, "sensitivity: ctx must be at least 4, got {}", o.ctx);
  if (o.chunks < 1) fail(Errc::invalid_argument, "sensitivity: chunks must be positive, got {}", o.chunks);
  Progress& progress = ctx.progress_sink();
  progress.message("Sensitivity: loading the model");
  auto model = Model::load(source);
  KldProbe probe(*model, tokens, o, ctx);
  const int n_layer = probe.n_layer();

  std::vector<std::string> names = o.tensors;
  if (names.empty())
    for (const auto& t : source.tensors())
      if (tensor_allows_quantization(t.name, static_cast<int>(t.ne.size()), true) && sens_engine_holds(*model, t.name))
        names.push_back(t.name);
  const std::vector<QuantType>& types = o.types.empty() ? profile::default_ladder() : o.types;

  // The (tensor, type) pairs to measure: those whose type fits the rows and can be quantized.
  struct Job {
    const ModelTensor* t;
    std::vector<QuantType> types;
  };
  std::vector<Job> jobs;
  int64_t total = 0;
  for (const auto& name : names) {
    const ModelTensor& t = source.at(name);
    if (!sens_engine_holds(*model, name))
      fail(Errc::invalid_argument, "sensitivity: the engine does not run tensor '{}'", name);
    Job j{&t, {}};
    const bool has_im = o.imatrix && o.imatrix->find(name);
    for (QuantType qt : types) {
      const TypeInfo& ti = type_info(qt);
      if (t.row_length() % ti.block_size != 0 || !ti.quantize_ref || !ti.storable) continue;
      if (!has_im && (ti.needs_imatrix || tensor_requires_imatrix(name, qt, FileType::Q8_0))) continue;
      j.types.push_back(qt);
    }
    // No requested type fits the rows: the first one's fallback (as the quantizer would write it).
    if (j.types.empty())
      if (auto fb = fallback_type(types.front(), t.row_length()))
        if (t.row_length() % type_info(*fb).block_size == 0) j.types.push_back(*fb);
    total += static_cast<int64_t>(j.types.size());
    jobs.push_back(std::move(j));
  }

  // The first block whose output a tensor changes: its own, 0 for the token embeddings (tied or
  // not) and n_layer for a separate output projection. Jobs run in that order; rows keep the
  // tensors' order.
  auto entry_block = [&](const std::string& name) {
    const LinearInfo* li = model->find_linear(name);
    if (!o.resume_at_block || !li || name == "token_embd.weight") return 0;
    return li->layer >= 0 ? std::min(li->layer, n_layer) : n_layer;
  };
  std::vector<size_t> order(jobs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return entry_block(jobs[a].t->name) < entry_block(jobs[b].t->name);
  });

  SensitivityTable table;
  table.key = sensitivity_key(source, tokens, o);
  table.rows.resize(jobs.size());
  int64_t done = 0;
  for (const size_t ji : order) {
    const Job& job = jobs[ji];
    const int from = entry_block(job.t->name);
    probe.advance_to(from);
    const ModelTensor& t = *job.t;
    const int64_t ncols = t.row_length(), nrows = t.n_rows();
    std::vector<float> x(static_cast<size_t>(nrows * ncols));
    source.read_rows_f32(t, 0, nrows, x.data());
    // The original, to restore: the stored bytes where the engine keeps the stored type.
    const QuantType held = model->tensor_type(t.name);
    std::vector<uint8_t> orig_bytes;
    if (held == t.type) {
      orig_bytes.resize(type_info(t.type).row_bytes(ncols) * static_cast<size_t>(nrows));
      source.read_rows_raw(t, 0, nrows, orig_bytes.data());
    }
    SensitivityRow row;
    row.tensor = t.name;
    for (QuantType qt : job.types) {
      ctx.check_cancelled();
      model->replace_tensor(t.name, qt, sens_quantize(t, x, qt, o.imatrix, ctx));
      row.types.push_back(qt);
      row.kld.push_back(std::max(0.0, probe.kld(from)));
      progress.update("Sensitivity", ++done, total, "evaluations");
    }
    if (held == t.type) model->replace_tensor(t.name, held, orig_bytes);
    else model->replace_tensor(t.name, std::span<const float>(x), held);
    table.rows[ji] = std::move(row);
  }
  progress.finish("Sensitivity");
  table.evaluations = done;
  // Every tensor restored: the model must give its reference outputs again.
  table.reference_kld_floor = probe.kld(0);
  table.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return table;
}

std::vector<double> measure_mix_kld(const ModelSource& source, std::span<const int32_t> tokens,
                                    const SensitivityOptions& o, const std::vector<TypeAssignment>& mixes,
                                    const Context& ctx) {
  Progress& progress = ctx.progress_sink();
  progress.message(fmt::format("Sensitivity: comparing {} candidate mixes", mixes.size()));
  auto model = Model::load(source);
  KldProbe probe(*model, tokens, o, ctx);
  // The engine's own type of each tensor a mix changed, and the type it holds now: a later mix
  // requantizes only the tensors whose type differs (one tensor's floats in memory at a time).
  std::map<std::string, QuantType> held, now;
  auto set_type = [&](const std::string& name, QuantType qt) {
    const ModelTensor& t = source.at(name);
    const QuantType own = held.emplace(name, model->tensor_type(name)).first->second;
    if (type_info(qt).is_float() || qt == t.type) qt = own;  // the stored values
    if (auto it = now.find(name); it != now.end() ? it->second == qt : qt == own) return;
    std::vector<float> x(static_cast<size_t>(t.n_rows() * t.row_length()));
    source.read_rows_f32(t, 0, t.n_rows(), x.data());
    if (qt == own) model->replace_tensor(name, std::span<const float>(x), own);
    else model->replace_tensor(name, qt, sens_quantize(t, x, qt, o.imatrix, ctx));
    now[name] = qt;
  };
  std::vector<double> out;
  for (const TypeAssignment& mix : mixes) {
    const std::map<std::string, QuantType> want(mix.begin(), mix.end());
    for (const auto& [name, own] : held)  // a tensor an earlier mix changed and this one does not name
      if (!want.count(name)) set_type(name, own);
    for (const auto& [name, qt] : want) {
      ctx.check_cancelled();
      if (sens_engine_holds(*model, name)) set_type(name, qt);
    }
    out.push_back(std::max(0.0, probe.kld(0)));
  }
  return out;
}

SensitivityTable cached_sensitivity(const ModelSource& source, std::span<const int32_t> tokens,
                                    const SensitivityOptions& options, const std::filesystem::path& cache, bool* reused,
                                    const Context& ctx) {
  if (reused) *reused = false;
  std::error_code ec;
  if (!cache.empty() && std::filesystem::exists(cache, ec)) {
    try {
      SensitivityTable t = SensitivityTable::load(cache);
      const bool covers = t.key == sensitivity_key(source, tokens, options);
      if (covers) {
        if (reused) *reused = true;
        return t;
      }
    } catch (const Error&) {
      // An unreadable cache is measured again and replaced.
    }
  }
  SensitivityTable t = measure_sensitivity(source, tokens, options, ctx);
  if (!cache.empty()) t.save(cache);
  return t;
}

double rank_correlation(std::span<const double> a, std::span<const double> b) {
  const size_t n = std::min(a.size(), b.size());
  if (n < 2) return 0;
  auto ranks = [n](std::span<const double> v) {
    std::vector<size_t> idx(n);
    std::iota(idx.begin(), idx.end(), size_t{0});
    std::sort(idx.begin(), idx.end(), [&](size_t i, size_t j) { return v[i] < v[j]; });
    std::vector<double> r(n);
    for (size_t i = 0; i < n;) {
      size_t j = i;
      while (j + 1 < n && v[idx[j + 1]] == v[idx[i]]) ++j;
      const double mean = (static_cast<double>(i) + static_cast<double>(j)) / 2.0;
      for (size_t k = i; k <= j; ++k) r[idx[k]] = mean;
      i = j + 1;
    }
    return r;
  };
  const auto ra = ranks(a), rb = ranks(b);
  const double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / static_cast<double>(n);
  const double mb = std::accumulate(rb.begin(), rb.end(), 0.0) / static_cast<double>(n);
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < n; ++i) {
    sab += (ra[i] - ma) * (rb[i] - mb);
    saa += (ra[i] - ma) * (ra[i] - ma);
    sbb += (rb[i] - mb) * (rb[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0;
}

}  // namespace lq
