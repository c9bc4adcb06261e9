// Quality measurements on the engine (perplexity, KL divergence, both in llama-perplexity's
// chunking) and generation (greedy or sampled).
#include "engine/impl.hpp"

#include <lq/calibration.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/threads.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

namespace lq {

namespace {
SessionOptions session_options(int64_t n_ctx, const PerplexityOptions& o) {
  SessionOptions so{n_ctx, false, o.bf16_activations};
  so.kv_f16 = o.kv_f16;
  return so;
}

// One evaluation window: `input` is run from an empty cache; output row j (of the rows from
// `first_output`) predicts targets[j]; rows without a target are not scored.
struct Window {
  std::vector<int32_t> input;
  int64_t first_output = 0;
  std::vector<int32_t> targets;
};

class WindowPlan {
 public:
  WindowPlan(const Model& model, std::span<const int32_t> tokens, const PerplexityOptions& o, const char* what)
      : o_(o), bos_(model.bos_token()), replace_bos_(model.add_bos() && model.bos_token() >= 0) {
    if (tokens.empty()) fail(Errc::invalid_argument, "{}: the token list is empty", what);
    if (o.ctx < 3) fail(Errc::invalid_argument, "{}: ctx must be at least 3, got {}", what, o.ctx);
    if (o.chunks == 0 || o.chunks < -1)
      fail(Errc::invalid_argument, "{}: chunks must be positive or -1 (all), got {}", what, o.chunks);
    const int64_t limit = model.config().n_ctx_train;
    (void)limit;  // longer contexts than trained are allowed, as in llama-perplexity
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] < 0 || tokens[i] >= model.n_vocab())
        fail(Errc::invalid_argument, "{}: token id {} at index {} is outside the vocabulary [0, {})", what, tokens[i],
             i, model.n_vocab());
    if (o.full_window) {
      stream_.assign(tokens.begin(), tokens.end());
      const int64_t per = bos_ >= 0 ? o.ctx - 1 : o.ctx;
      const int64_t n = static_cast<int64_t>(stream_.size());
      if (bos_ < 0 && n < 2)
        fail(Errc::invalid_argument, "{}: at least 2 tokens are needed without a BOS token, got {}", what, n);
      per_ = per;
      count_ = (n + per - 1) / per;
    } else {
      if (o.prepend_bos && replace_bos_) stream_.push_back(bos_);
      stream_.insert(stream_.end(), tokens.begin(), tokens.end());
      const int64_t n = static_cast<int64_t>(stream_.size());
      count_ = evaluation_chunks(n, o.ctx, ChunkRule::perplexity, what);
    }
    if (o.chunks > 0) count_ = std::min(count_, o.chunks);
  }

  int64_t size() const { return count_; }
  int64_t max_len() const { return o_.ctx; }

  Window get(int64_t i) const {
    Window w;
    if (o_.full_window) {
      const int64_t n = static_cast<int64_t>(stream_.size());
      const int64_t s = i * per_, e = std::min(n, s + per_);
      if (bos_ >= 0) w.input.push_back(bos_);
      w.input.insert(w.input.end(), stream_.begin() + s, stream_.begin() + e);
      w.first_output = 0;
      if (bos_ >= 0) w.targets.assign(stream_.begin() + s, stream_.begin() + e);
      else w.targets.assign(stream_.begin() + s + 1, stream_.begin() + e);
      return w;
    }
    const int64_t ctx = o_.ctx, first = ctx / 2;
    const int64_t s = i * ctx;
    w.input.assign(stream_.begin() + s, stream_.begin() + s + ctx);
    if (replace_bos_) w.input[0] = bos_;
    w.first_output = first;
    // logits of positions first .. ctx-2 predict the tokens after them (llama-perplexity).
    w.targets.assign(stream_.begin() + s + first + 1, stream_.begin() + s + ctx);
    return w;
  }

 private:
  const PerplexityOptions& o_;
  int32_t bos_;
  bool replace_bos_;
  std::vector<int32_t> stream_;
  int64_t per_ = 0;
  int64_t count_ = 0;
};

struct LogSoftmax {
  float max;
  float log_sum;  // log(sum exp(l - max))
  int argmax;
};

// max in float, the sum of exp in double (as llama-perplexity), on the back-end's row kernel.
LogSoftmax log_softmax(const detail::EngineOps& ops, std::span<const float> l) {
  LogSoftmax r{};
  int64_t am = 0;
  const double sum = ops.sum_exp_row(static_cast<int64_t>(l.size()), l.data(), &r.max, &am);
  r.log_sum = static_cast<float>(std::log(sum));
  r.argmax = static_cast<int>(am);
  return r;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

PerplexityResult perplexity(const Model& model, std::span<const int32_t> tokens, const PerplexityOptions& o,
                            const Context& ctx) {
  const int threads = ctx.thread_count();
  const detail::EngineOps ops = engine::Exec::from(ctx).ops;
  WindowPlan plan(model, tokens, o, "perplexity");
  const auto t0 = std::chrono::steady_clock::now();
  Session s(model, session_options(plan.max_len(), o), ctx);
  double nll = 0, nll2 = 0;
  int64_t count = 0, evaluated = 0;
  std::vector<double> row_nll;
  for (int64_t i = 0; i < plan.size(); ++i) {
    const Window w = plan.get(i);
    s.clear();
    s.eval(w.input, w.first_output);
    evaluated += static_cast<int64_t>(w.input.size());
    const int64_t nt = static_cast<int64_t>(w.targets.size());
    row_nll.assign(static_cast<size_t>(nt), 0.0);
    parallel_for(nt, threads, 8, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        const auto l = s.logits(j);
        const LogSoftmax ls = log_softmax(ops, l);
        row_nll[static_cast<size_t>(j)] = -static_cast<double>(l[static_cast<size_t>(w.targets[j])] - ls.max - ls.log_sum);
      }
    });
    for (double v : row_nll) {
      nll += v;
      nll2 += v * v;
    }
    count += nt;
    if (o.progress) o.progress(i + 1, plan.size(), std::exp(nll / static_cast<double>(count)));
    ctx.check_cancelled();
  }
  PerplexityResult r;
  r.n_scored = count;
  r.n_chunks = plan.size();
  r.n_evaluated = evaluated;
  r.mean_nll = nll / static_cast<double>(count);
  r.ppl = std::exp(r.mean_nll);
  double var = nll2 / static_cast<double>(count) - r.mean_nll * r.mean_nll;
  r.ppl_error = var > 0 && count > 1 ? std::sqrt(var / static_cast<double>(count - 1)) * r.ppl : 0;
  r.seconds = seconds_since(t0);
  return r;
}

KldResult kl_divergence(const Model& model, const Model& reference, std::span<const int32_t> tokens,
                        const PerplexityOptions& o, const Context& ctx) {
  const int threads = ctx.thread_count();
  const detail::EngineOps ops = engine::Exec::from(ctx).ops;
  if (model.n_vocab() != reference.n_vocab())
    fail(Errc::invalid_argument, "kl_divergence: the vocabularies differ ({} tokens vs {} in the reference)",
         model.n_vocab(), reference.n_vocab());
  WindowPlan plan(reference, tokens, o, "kl_divergence");
  const auto t0 = std::chrono::steady_clock::now();
  Session sm(model, session_options(plan.max_len(), o), ctx);
  Session sr(reference, session_options(plan.max_len(), o));
  struct Row {
    double kld, nll, nll_base, p_diff;
    bool same_top;
  };
  std::vector<Row> rows;
  std::vector<float> klds;
  double sum_kld = 0, sum_kld2 = 0, sum_nll = 0, sum_nll2 = 0, sum_nllb = 0, sum_nllb2 = 0, sum_pd2 = 0, sum_pd4 = 0;
  double sum_dn = 0, sum_dn2 = 0;  // nll - nll_base
  int64_t same = 0;
  for (int64_t i = 0; i < plan.size(); ++i) {
    const Window w = plan.get(i);
    sm.clear();
    sr.clear();
    sm.eval(w.input, w.first_output);
    sr.eval(w.input, w.first_output);
    const int64_t nt = static_cast<int64_t>(w.targets.size());
    rows.assign(static_cast<size_t>(nt), Row{});
    parallel_for(nt, threads, 4, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        const auto lm = sm.logits(j), lr = sr.logits(j);
        const LogSoftmax a = log_softmax(ops, lm), c = log_softmax(ops, lr);
        // sum p_ref (log p_ref - log p): the two log-softmaxes differ by (lr - lm) - k
        const double k = (static_cast<double>(c.max) + c.log_sum) - (static_cast<double>(a.max) + a.log_sum);
        const double kl = ops.kld_row(static_cast<int64_t>(lr.size()), lr.data(), lm.data(), c.max, c.log_sum, k);
        const size_t tgt = static_cast<size_t>(w.targets[static_cast<size_t>(j)]);
        Row& r = rows[static_cast<size_t>(j)];
        r.kld = kl;
        r.nll = -(static_cast<double>(lm[tgt]) - a.max - a.log_sum);
        r.nll_base = -(static_cast<double>(lr[tgt]) - c.max - c.log_sum);
        r.p_diff = std::exp(-r.nll) - std::exp(-r.nll_base);
        r.same_top = a.argmax == c.argmax;
      }
    });
    for (const Row& r : rows) {
      sum_kld += r.kld;
      sum_kld2 += r.kld * r.kld;
      sum_nll += r.nll;
      sum_nll2 += r.nll * r.nll;
      sum_nllb += r.nll_base;
      sum_nllb2 += r.nll_base * r.nll_base;
      sum_pd2 += r.p_diff * r.p_diff;
      sum_pd4 += r.p_diff * r.p_diff * r.p_diff * r.p_diff;
      sum_dn += r.nll - r.nll_base;
      sum_dn2 += (r.nll - r.nll_base) * (r.nll - r.nll_base);
      same += r.same_top;
      klds.push_back(static_cast<float>(r.kld));
    }
    if (o.progress) o.progress(i + 1, plan.size(), std::exp(sum_nll / static_cast<double>(klds.size())));
    ctx.check_cancelled();
  }
  const auto n = static_cast<double>(klds.size());
  auto mean_err = [n](double s, double s2) {
    const double f = s / n;
    const double var = s2 / n - f * f;
    return std::pair<double, double>(f, var > 0 && n > 10 ? std::sqrt(var / (n - 1)) : 0.0);
  };
  KldResult r;
  r.n_scored = static_cast<int64_t>(klds.size());
  std::tie(r.kld_mean, r.kld_error) = mean_err(sum_kld, sum_kld2);
  r.ppl = std::exp(sum_nll / n);
  r.ppl_reference = std::exp(sum_nllb / n);
  r.ppl_error = mean_err(sum_nll, sum_nll2).second * r.ppl;
  r.ppl_reference_error = mean_err(sum_nllb, sum_nllb2).second * r.ppl_reference;
  r.delta_p_rms_pct = 100.0 * std::sqrt(sum_pd2 / n);
  std::tie(r.ln_ppl_ratio, r.ln_ppl_ratio_error) = mean_err(sum_dn, sum_dn2);
  const double top = static_cast<double>(same) / n;
  r.same_top_pct = 100.0 * top;
  r.same_top_error = n > 1 ? 100.0 * std::sqrt(top * (1 - top) / (n - 1)) : 0.0;
  std::sort(klds.begin(), klds.end());
  auto percentile = [&](double f) {
    const double p = f * static_cast<double>(klds.size() - 1);
    const size_t ip = static_cast<size_t>(p);
    const double frac = p - static_cast<double>(ip);
    return (1 - frac) * klds[ip] + frac * klds[std::min(ip + 1, klds.size() - 1)];
  };
  const size_t nk = klds.size();
  r.kld_median = nk % 2 == 0 ? 0.5 * (klds[nk / 2] + klds[nk / 2 - 1]) : klds[nk / 2];
  r.kld_p99 = percentile(0.99);
  r.kld_max = klds.back();
  r.seconds = seconds_since(t0);
  return r;
}

namespace {

int32_t sample(std::span<const float> logits, const GenerateOptions& o, std::mt19937_64& rng,
               std::vector<std::pair<float, int32_t>>& cand) {
  if (o.temperature <= 0) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  cand.clear();
  for (size_t i = 0; i < logits.size(); ++i) cand.emplace_back(logits[i], static_cast<int32_t>(i));
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = cand.size();
  if (o.top_k > 0 && static_cast<size_t>(o.top_k) < keep) {
    keep = static_cast<size_t>(o.top_k);
    std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(keep), cand.end(), by_logit);
    cand.resize(keep);
  } else {
    std::sort(cand.begin(), cand.end(), by_logit);
  }
  std::vector<double> p(cand.size());
  const double mx = cand[0].first;
  double sum = 0;
  for (size_t i = 0; i < cand.size(); ++i) sum += p[i] = std::exp((cand[i].first - mx) / o.temperature);
  size_t n = cand.size();
  if (o.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < cand.size(); ++i) {
      cum += p[i] / sum;
      if (cum >= o.top_p) { n = i + 1; break; }
    }
  }
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += p[i];
  // 53 random bits -> [0, 1): the same draws on every standard library.
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53 * total;
  double acc = 0;
  for (size_t i = 0; i < n; ++i) {
    acc += p[i];
    if (u < acc) return cand[i].second;
  }
  return cand[n - 1].second;
}

}  // namespace

std::vector<int32_t> generate(Session& session, std::span<const int32_t> prompt, const GenerateOptions& o) {
  if (o.max_tokens < 0) fail(Errc::invalid_argument, "generate: max_tokens must be >= 0, got {}", o.max_tokens);
  if (o.top_k < 0) fail(Errc::invalid_argument, "generate: top_k must be >= 0, got {}", o.top_k);
  if (!(o.top_p > 0 && o.top_p <= 1)) fail(Errc::invalid_argument, "generate: top_p must be in (0, 1], got {}", o.top_p);
  if (std::isnan(o.temperature)) fail(Errc::invalid_argument, "generate: temperature is NaN");
  if (prompt.empty() && session.n_outputs() == 0)
    fail(Errc::invalid_argument, "generate: the prompt is empty and the session has no logits to continue from");
  if (!prompt.empty()) session.eval(prompt);
  std::mt19937_64 rng(o.seed);
  std::vector<std::pair<float, int32_t>> cand;
  std::vector<int32_t> out;
  const int32_t eos = session.model().eos_token();
  for (int64_t i = 0; i < o.max_tokens; ++i) {
    const int32_t tok = sample(session.logits(session.n_outputs() - 1), o, rng, cand);
    out.push_back(tok);
    if (o.stop_at_eos && tok == eos) break;
    if (i + 1 == o.max_tokens || session.n_past() >= session.n_ctx()) break;
    session.eval(std::span<const int32_t>(&tok, 1));
  }
  return out;
}

}  // namespace lq
