// The forward pass: embedding, then per block RMSNorm -> q/k/v (+bias) (-> per-head q/k RMSNorm) -> RoPE -> causal GQA
// attention over the KV cache -> output projection -> residual, RMSNorm -> SwiGLU -> residual;
// final RMSNorm and the output projection for the requested rows.
#include "engine/impl.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/threads.hpp>

#include <memory>


#include <algorithm>
#include <cmath>
#include <cstring>

namespace lq {

using engine::Tensor;

struct Session::Impl {
  const Model& model;
  const Model::Impl& m;
  SessionOptions opt;
  engine::Exec ex;
  int threads = 1;
  int64_t n_ctx = 0;
  int64_t n_past = 0;
  int64_t n_out = 0;
  // Positions from partial_from on were run through some blocks only (eval_blocks): nothing may
  // attend to them until clear() or truncate() drops them. -1: every cached position is whole.
  int64_t partial_from = -1;
  // K cache: [layer][pos][n_head_kv * head_dim]; V cache transposed: [layer][kv head][head_dim][pos],
  // so that both attention products read their second operand as contiguous rows.
  std::vector<float> kcache, vcache;
  std::vector<float> logits;
  LinearHook hook;
  std::vector<LayerActivations> acts;
  std::vector<float> out_norm_act;
  // scratch, sized per eval
  std::vector<float> x, h, q, k, v, attn, proj, gate, up, act, rope_cs;
  std::vector<float> fused;  // fused products' outputs (qkv, gate_up) before they are split
  std::vector<float> rope_cs_swa;
  // Mixture-of-experts scratch: router logits, each token's experts and weights, the rows of one
  // expert's tokens, and every (token, expert) result before they are combined.
  std::vector<float> router, route_p, route_w, xg, gg, ug, ag, yexp, shexp_gate;
  std::vector<int32_t> route_e, expert_rows, expert_pos, expert_first, slot_of;

  Impl(const Model& model_, SessionOptions o, const Context& ctx)
      : model(model_), m(model_.impl()), opt(o), ex(engine::Exec::from(ctx)) {
    if (o.n_ctx < 0) fail(Errc::invalid_argument, "session: n_ctx must be positive, got {}", o.n_ctx);
    threads = ex.threads;
    const ModelConfig& c = m.config;
    n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min<int64_t>(c.n_ctx_train > 0 ? c.n_ctx_train : 4096, 4096);
    const size_t per_layer = static_cast<size_t>(n_ctx * c.n_head_kv * c.head_dim);
    kcache.assign(per_layer * static_cast<size_t>(c.n_layer), 0.f);
    vcache.assign(per_layer * static_cast<size_t>(c.n_layer), 0.f);
    if (o.save_activations) acts.resize(static_cast<size_t>(c.n_layer));
  }

  // Runs the products of `idx` (weights sharing input `in`) together, then biases and hooks.
  // A null `outs` entry: the product is not needed; the hook is shown its input only.
  void run_linears(std::initializer_list<int> idx, const float* in, int64_t n,
                   std::initializer_list<float*> outs, std::initializer_list<const Tensor*> biases) {
    if (outs.size() == 1 && *outs.begin() == nullptr) {
      const int i = *idx.begin();
      if (hook) hook(LinearEvent{&m.linears[static_cast<size_t>(i)], n, in, nullptr});
      return;
    }
    engine::LinearOp ops[4];
    size_t c = 0;
    auto o = outs.begin();
    for (int i : idx) ops[c++] = engine::LinearOp{m.linear_tensors[static_cast<size_t>(i)], in, n, *o++, !opt.bf16_activations,
                                               opt.bf16_activations};
    engine::matmul_many(ex, std::span<const engine::LinearOp>(ops, c));
    auto b = biases.begin();
    c = 0;
    for (int i : idx) {
      const engine::LinearOp& op = ops[c++];
      const Tensor* bias = b != biases.end() ? *b++ : nullptr;
      if (bias) {
        const int64_t no = op.w->n_rows();
        const float* bv = bias->f32();
        for (int64_t t = 0; t < n; ++t)
          for (int64_t j = 0; j < no; ++j) op.y[t * no + j] += bv[j];
      }
      if (hook) hook(LinearEvent{&m.linears[static_cast<size_t>(i)], n, in, op.y});
    }
  }

  void rmsnorm(const float* in, const Tensor& w, float* out, int64_t n) const {
    engine::rms_norm(ex, in, w, m.config.rms_eps, m.config.n_embd, n, out, nullptr);
  }

  // cos/sin per (token, pair), positions n_past .. n_past + n - 1. LongRoPE: the long factors when
  // the session's context exceeds the original one (llama.cpp's choice), cos and sin scaled.
  void rope_table(int64_t n) {
    const int64_t half = m.config.head_dim / 2;
    const std::vector<float>& inv =
        !m.rope_inv_freq_long.empty() && n_ctx > m.rope_original_ctx ? m.rope_inv_freq_long : m.rope_inv_freq;
    const float ms = m.rope_mscale;
    rope_cs.resize(static_cast<size_t>(n * half * 2));
    for (int64_t t = 0; t < n; ++t) {
      const float pos = static_cast<float>(n_past + t);
      for (int64_t i = 0; i < half; ++i) {
        const float theta = pos * inv[static_cast<size_t>(i)];
        rope_cs[(t * half + i) * 2] = std::cos(theta) * ms;
        rope_cs[(t * half + i) * 2 + 1] = std::sin(theta) * ms;
      }
    }
  }

  void rope(float* data, int64_t n, int64_t heads) const {
    engine::rope(data, n, heads, m.config.head_dim, m.neox_rope, rope_cs.data(), false, threads);
  }

  void attention(int64_t layer, int64_t n) {
    const ModelConfig& c = m.config;
    const int64_t hd = c.head_dim, nq = c.n_head * hd, nkv = c.n_head_kv * hd;
    const int64_t group = c.n_head / c.n_head_kv;
    const float* kc = kcache.data() + static_cast<size_t>(layer * n_ctx * nkv);
    const float* vc = vcache.data() + static_cast<size_t>(layer * n_ctx * nkv);
    const float scale = m.attn_scale;
    const engine::Block& blk = m.blocks[static_cast<size_t>(layer)];
    const float softcap = c.attn_softcap;  // Gemma 2: scores capped as cap * tanh(s / cap) before the softmax
    const int64_t window = blk.swa ? c.sliding_window : 0;  // keys older than the window are masked
    // Blocks of QB query rows against the keys they see: the products skip the masked part at
    // the kernel's tile granularity, and K and V are packed once per block.
    constexpr int64_t QB = 256;
    const int64_t qblocks = (n + QB - 1) / QB;
    const int64_t items = c.n_head * qblocks;
    // Work per item ~ rows * keys * head_dim * 2; tiny problems stay on this thread.
    const int64_t work = n * (n_past + n) * hd * c.n_head * 2;
    parallel_for(items, work >= (1 << 18) ? threads : 1, 1, [&](int64_t it0, int64_t it1) {
      thread_local std::vector<float> s;
      for (int64_t it = it0; it < it1; ++it) {
        // the later (costlier) blocks first, for the balance of the dynamic schedule
        const int64_t hh = it % c.n_head, qb = qblocks - 1 - it / c.n_head;
        const int64_t kvh = hh / group;
        const int64_t i0 = qb * QB, i1 = std::min(n, i0 + QB), rows = i1 - i0;
        const int64_t len = n_past + i1;  // keys visible to the last query of the block
        const int64_t diag = n_past + i0;  // row i sees keys 0 .. diag + i
        if (s.size() < static_cast<size_t>(QB * len)) s.resize(static_cast<size_t>(QB * len));
        detail::GemmArgs qk{rows, len, hd, q.data() + i0 * nq + hh * hd, nq, kc + kvh * hd, QuantType::F32,
                         nkv, s.data(), len, false};
        qk.c_causal = diag;
        ex.ops.gemm(qk);
        for (int64_t i = 0; i < rows; ++i) {
          float* row = s.data() + i * len;
          const int64_t visible = diag + i + 1;
          if (softcap > 0 || window > 0) {
            if (softcap > 0) ex.ops.soft_cap(visible, row, scale, softcap);
            if (window > 0) std::fill(row, row + std::max<int64_t>(0, visible - window), -INFINITY);
            ex.ops.softmax_row(visible, row, softcap > 0 ? 1.0f : scale);
          } else {
            ex.ops.softmax_row(visible, row, scale);
          }
          std::fill(row + visible, row + len, 0.f);
        }
        detail::GemmArgs pv{rows, hd, len, s.data(), len, vc + kvh * hd * n_ctx, QuantType::F32, n_ctx,
                         attn.data() + i0 * nq + hh * hd, nq, false};
        pv.a_causal = diag;
        ex.ops.gemm(pv);
      }
    });
  }

  // RMSNorm of `rows` head vectors in place (q/k norms), weight w of head_dim values.
  void head_norm(float* data, int64_t rows, const Tensor& w) {
    const int64_t hd = m.config.head_dim;
    thread_local std::vector<float> tmp;
    tmp.assign(data, data + rows * hd);
    engine::rms_norm(ex, tmp.data(), w, m.config.rms_eps, hd, rows, data, nullptr);
  }

  // The mixture-of-experts MLP of block b on the normalised rows h (n x n_embd) into proj: router
  // logits, softmax over all experts, the top n_expert_used (ties: the lower index), their
  // probabilities as weights (renormalised to sum 1 where the architecture does), then per expert
  // one product over the rows of the tokens routed to it (gate, up, SiLU(gate) * up, down), and
  // the weighted sum per token; plus the shared expert scaled by sigmoid of its gate.
  void moe_ffn(const engine::Block& b, int64_t n) {
    const ModelConfig& c = m.config;
    const int64_t d = c.n_embd, E = c.n_expert, K = c.n_expert_used;
    const Tensor& wg = *m.linear_tensors[static_cast<size_t>(b.wgate_exps)];
    const Tensor& wu = *m.linear_tensors[static_cast<size_t>(b.wup_exps)];
    const Tensor& wd = *m.linear_tensors[static_cast<size_t>(b.wdown_exps)];
    const int64_t fe = wg.ne[1];
    router.resize(static_cast<size_t>(n * E));
    run_linears({b.wrouter}, h.data(), n, {router.data()}, {});
    route_e.resize(static_cast<size_t>(n * K));
    route_w.resize(static_cast<size_t>(n * K));
    route_p.resize(static_cast<size_t>(n * E));
    engine::route_experts(router.data(), n, E, K, c.expert_weights_norm, route_p.data(), route_e.data(), route_w.data());
    std::vector<int32_t> count(static_cast<size_t>(E), 0);
    for (int64_t i = 0; i < n * K; ++i) ++count[static_cast<size_t>(route_e[static_cast<size_t>(i)])];
    // Assignments grouped by expert, tokens in order: expert_rows[expert_first[e] ..] are (t, k) slots.
    expert_first.assign(static_cast<size_t>(E + 1), 0);
    for (int64_t e = 0; e < E; ++e) expert_first[e + 1] = expert_first[e] + count[e];
    expert_rows.resize(static_cast<size_t>(n * K));
    slot_of.resize(static_cast<size_t>(n * K));
    expert_pos.resize(static_cast<size_t>(n * K));
    {
      std::vector<int32_t> fill(expert_first.begin(), expert_first.end() - 1);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t k = 0; k < K; ++k) {
          const int32_t at = fill[route_e[t * K + k]]++;
          expert_rows[at] = static_cast<int32_t>(t * K + k);
          expert_pos[at] = static_cast<int32_t>(t);
          slot_of[t * K + k] = at;
        }
    }
    int64_t most = 0;
    for (int64_t e = 0; e < E; ++e) most = std::max<int64_t>(most, count[e]);
    xg.resize(static_cast<size_t>(most * d));
    gg.resize(static_cast<size_t>(most * fe));
    ug.resize(static_cast<size_t>(most * fe));
    ag.resize(static_cast<size_t>(most * fe));
    yexp.resize(static_cast<size_t>(n * K * d));
    for (int64_t e = 0; e < E; ++e) {
      const int64_t cnt = count[e], first = expert_first[e];
      if (cnt == 0) continue;
      parallel_for(cnt, cnt * d >= (1 << 15) ? threads : 1, 16, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i)
          std::memcpy(xg.data() + i * d, h.data() + (expert_rows[first + i] / K) * d, static_cast<size_t>(d) * sizeof(float));
      });
      const Tensor vg = engine::expert_view(wg, e), vu = engine::expert_view(wu, e), vd = engine::expert_view(wd, e);
      const bool fa = !opt.bf16_activations, ha = opt.bf16_activations;
      const engine::LinearOp gu[2] = {{&vg, xg.data(), cnt, gg.data(), fa, ha}, {&vu, xg.data(), cnt, ug.data(), fa, ha}};
      engine::matmul_many(ex, gu);
      const int ie = static_cast<int>(e);
      if (hook) {
        const int32_t* pos = expert_pos.data() + first;
        hook(LinearEvent{&m.linears[static_cast<size_t>(b.wgate_exps)], cnt, xg.data(), gg.data(), ie, pos});
        hook(LinearEvent{&m.linears[static_cast<size_t>(b.wup_exps)], cnt, xg.data(), ug.data(), ie, pos});
      }
      parallel_for(cnt, cnt * fe >= (1 << 16) ? threads : 1, 8, [&](int64_t t0, int64_t t1) {
        ex.ops.silu_mul((t1 - t0) * fe, gg.data() + t0 * fe, ug.data() + t0 * fe, ag.data() + t0 * fe);
      });
      const engine::LinearOp dn{&vd, ag.data(), cnt, yexp.data() + first * d, fa, ha};
      engine::matmul_many(ex, std::span<const engine::LinearOp>(&dn, 1));
      if (hook)
        hook(LinearEvent{&m.linears[static_cast<size_t>(b.wdown_exps)], cnt, ag.data(), yexp.data() + first * d, ie,
                         expert_pos.data() + first});
    }
    // Shared expert (Qwen2-MoE): its own SwiGLU MLP on every token, times sigmoid(gate . h).
    const bool shared = b.wgate_shexp >= 0;
    int64_t fs = 0;
    if (shared) {
      fs = m.linears[static_cast<size_t>(b.wgate_shexp)].n_out;
      shexp_gate.resize(static_cast<size_t>(n));
      gate.resize(static_cast<size_t>(n * fs));
      up.resize(static_cast<size_t>(n * fs));
      act.resize(static_cast<size_t>(n * fs));
      run_linears({b.wshexp_gate, b.wgate_shexp, b.wup_shexp}, h.data(), n, {shexp_gate.data(), gate.data(), up.data()},
                  {});
      parallel_for(n, n * fs >= (1 << 16) ? threads : 1, 8, [&](int64_t t0, int64_t t1) {
        ex.ops.silu_mul((t1 - t0) * fs, gate.data() + t0 * fs, up.data() + t0 * fs, act.data() + t0 * fs);
      });
      run_linears({b.wdown_shexp}, act.data(), n, {proj.data()}, {});
    }
    parallel_for(n, n * K * d >= (1 << 15) ? threads : 1, 4, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        float* o = proj.data() + t * d;
        if (shared) {
          const float sg = 1.0f / (1.0f + std::exp(-shexp_gate[t]));
          for (int64_t j = 0; j < d; ++j) o[j] *= sg;
        } else {
          std::fill(o, o + d, 0.0f);
        }
        for (int64_t k = 0; k < K; ++k) {
          const float w = route_w[t * K + k];
          const float* y = yexp.data() + static_cast<size_t>(slot_of[t * K + k]) * d;
          for (int64_t j = 0; j < d; ++j) o[j] += w * y[j];
        }
      }
    });
  }

  void eval(std::span<const int32_t> tokens, int64_t first_output) {
    forward(tokens, 0, static_cast<int>(m.config.n_layer), nullptr, first_output);
  }

  // Blocks [first_block, stop_block) on `tokens`: entering with their embeddings (first_block 0)
  // or with *residual; leaving with the logits (stop_block n_layer) or the residual in *residual.
  void forward(std::span<const int32_t> tokens, int first_block, int stop_block, std::vector<float>* residual,
               int64_t first_output) {
    const ModelConfig& c = m.config;
    const int64_t n = static_cast<int64_t>(tokens.size());
    if (n == 0) fail(Errc::invalid_argument, "eval: the token list is empty");
    if (first_block < 0 || first_block > stop_block || stop_block > c.n_layer)
      fail(Errc::invalid_argument, "eval_blocks: blocks [{}, {}) are not within the model's {}", first_block, stop_block,
           c.n_layer);
    if (first_block > 0 && (!residual || static_cast<int64_t>(residual->size()) != n * c.n_embd))
      fail(Errc::invalid_argument, "eval_blocks: the residual entering block {} must hold {} x {} values, got {}",
           first_block, n, c.n_embd, residual ? residual->size() : 0);
    if (partial_from >= 0 && partial_from < n_past)
      fail(Errc::invalid_argument,
           "eval: cached positions from {} on were evaluated through some blocks only (eval_blocks); clear() or "
           "truncate({}) first",
           partial_from, partial_from);
    if (n_past + n > n_ctx)
      fail(Errc::invalid_argument, "eval: {} tokens after {} cached positions exceed the context of {}", n, n_past,
           n_ctx);
    for (int64_t i = 0; i < n; ++i)
      if (tokens[i] < 0 || tokens[i] >= m.n_vocab)
        fail(Errc::invalid_argument, "eval: token id {} at index {} is outside the vocabulary [0, {})", tokens[i], i,
             m.n_vocab);
    if (first_output < 0) first_output = n - 1;
    if (first_output > n) fail(Errc::invalid_argument, "eval: first output {} is beyond the {} tokens", first_output, n);

    const int64_t d = c.n_embd, hd = c.head_dim, nq = c.n_head * hd, nkv = c.n_head_kv * hd, ff = c.n_ff;
    auto sz = [](int64_t a, int64_t b) { return static_cast<size_t>(a * b); };
    x.resize(sz(n, d));
    h.resize(sz(n, d));
    q.resize(sz(n, nq));
    k.resize(sz(n, nkv));
    v.resize(sz(n, nkv));
    attn.resize(sz(n, nq));
    proj.resize(sz(n, d));
    gate.resize(sz(n, ff));
    up.resize(sz(n, ff));
    act.resize(sz(n, ff));

    if (first_block == 0) {
      for (int64_t t = 0; t < n; ++t) engine::dequantize_row(ex, *m.tok_embd, tokens[t], x.data() + t * d);
      if (m.embd_scale != 1.0f)
        for (float& e : x) e *= m.embd_scale;
    } else {
      std::copy(residual->begin(), residual->end(), x.begin());
    }
    rope_table(n);
    if (m.sandwich_norms) rope_table_swa(n);

    for (int64_t l = first_block; l < stop_block; ++l) {
      const engine::Block& b = m.blocks[static_cast<size_t>(l)];
      LayerActivations* sa = opt.save_activations ? &acts[static_cast<size_t>(l)] : nullptr;
      if (sa) sa->input.assign(x.begin(), x.end());
      if (m.sandwich_norms) {
        sandwich_block(l, n, sa);
        continue;
      }

      rmsnorm(x.data(), *b.attn_norm, h.data(), n);
      if (b.wqkv >= 0) {  // one product, its rows split into q, k, v
        fused.resize(sz(n, nq + 2 * nkv));
        run_linears({b.wqkv}, h.data(), n, {fused.data()}, {});
        engine::split_columns(fused.data(), n, {{q.data(), nq}, {k.data(), nkv}, {v.data(), nkv}});
      } else {
        run_linears({b.wq, b.wk, b.wv}, h.data(), n, {q.data(), k.data(), v.data()}, {b.bq, b.bk, b.bv});
      }
      if (b.q_norm) {  // RMSNorm of each head's q and k (qwen3)
        engine::rms_norm(ex, q.data(), *b.q_norm, c.rms_eps, hd, n * c.n_head, q.data(), nullptr);
        engine::rms_norm(ex, k.data(), *b.k_norm, c.rms_eps, hd, n * c.n_head_kv, k.data(), nullptr);
      }
      rope(q.data(), n, c.n_head);
      rope(k.data(), n, c.n_head_kv);

      attend_and_project(l, n, sa);
      engine::add_into(x.data(), proj.data(), n * d, threads);
      if (sa) sa->ffn_input.assign(x.begin(), x.end());

      rmsnorm(x.data(), *b.ffn_norm, h.data(), n);
      if (b.wrouter >= 0) {
        moe_ffn(b, n);
        engine::add_into(x.data(), proj.data(), n * d, threads);
        if (sa) sa->ffn_norm.assign(h.begin(), h.end());
        continue;
      }
      if (b.fused_gate_up) {
        fused.resize(sz(n, 2 * ff));
        run_linears({b.wup}, h.data(), n, {fused.data()}, {});
        engine::split_columns(fused.data(), n, {{gate.data(), ff}, {up.data(), ff}});
      } else {
        run_linears({b.wgate, b.wup}, h.data(), n, {gate.data(), up.data()}, {});
      }
      parallel_for(n, n * ff >= (1 << 16) ? threads : 1, 8, [&](int64_t t0, int64_t t1) {
        ex.ops.silu_mul((t1 - t0) * ff, gate.data() + t0 * ff, up.data() + t0 * ff, act.data() + t0 * ff);
      });
      // With no logits wanted, the last block's output feeds nothing (hook_inputs_only).
      const bool unused = opt.hook_inputs_only && !sa && !residual && first_output == n && l + 1 == c.n_layer;
      run_linears({b.wdown}, act.data(), n, {unused ? nullptr : proj.data()}, {});
      if (!unused) engine::add_into(x.data(), proj.data(), n * d, threads);
      if (sa) {
        sa->ffn_norm.assign(h.begin(), h.end());
        sa->gate.assign(gate.begin(), gate.end());
        sa->up.assign(up.begin(), up.end());
        sa->act.assign(act.begin(), act.end());
      }
    }
    if (first_block > 0 || stop_block < c.n_layer) partial_from = n_past;
    n_past += n;

    if (residual && (stop_block < c.n_layer || first_output == n)) residual->assign(x.begin(), x.end());
    if (stop_block < c.n_layer) {
      n_out = 0;
      return;
    }
    n_out = n - first_output;
    logits.resize(sz(n_out, m.n_vocab));
    if (n_out == 0) return;
    rmsnorm(x.data() + first_output * d, *m.output_norm, h.data(), n_out);
    if (opt.save_activations) out_norm_act.assign(h.begin(), h.begin() + n_out * d);
    run_linears({m.output}, h.data(), n_out, {logits.data()}, {});
    if (const float cap = c.final_softcap; cap > 0) ex.ops.soft_cap(static_cast<int64_t>(logits.size()), logits.data(), 1.0f, cap);
  }

  // cos/sin of the sliding-window layers (their own RoPE base), positions as rope_table's.
  void rope_table_swa(int64_t n) {
    const int64_t half = m.config.head_dim / 2;
    rope_cs_swa.resize(static_cast<size_t>(n * half * 2));
    for (int64_t t = 0; t < n; ++t) {
      const float pos = static_cast<float>(n_past + t);
      for (int64_t i = 0; i < half; ++i) {
        const float theta = pos * m.rope_inv_freq_swa[static_cast<size_t>(i)];
        rope_cs_swa[(t * half + i) * 2] = std::cos(theta);
        rope_cs_swa[(t * half + i) * 2 + 1] = std::sin(theta);
      }
    }
  }

  // Block l's attention from q, k, v (already normed and rotated): k and v into the cache (rounded
  // to binary16 with kv_f16), the attention of the n new positions, its output projection in proj.
  void attend_and_project(int64_t l, int64_t n, LayerActivations* sa) {
    const engine::Block& b = m.blocks[static_cast<size_t>(l)];
    const int64_t nkv = m.config.n_head_kv * m.config.head_dim;
    if (opt.kv_f16) {
      engine::round_to_half(ex, k.data(), k.data(), n * nkv);
      engine::round_to_half(ex, v.data(), v.data(), n * nkv);
    }
    float* kc = kcache.data() + static_cast<size_t>(l * n_ctx * nkv);
    float* vc = vcache.data() + static_cast<size_t>(l * n_ctx * nkv);
    std::memcpy(kc + n_past * nkv, k.data(), static_cast<size_t>(n * nkv) * sizeof(float));
    parallel_for(nkv, n * nkv >= (1 << 15) ? threads : 1, 16, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t t = 0; t < n; ++t) vc[j * n_ctx + n_past + t] = v[static_cast<size_t>(t * nkv + j)];
    });

    attention(l, n);
    if (sa) {
      sa->attn_norm.assign(h.begin(), h.end());
      sa->q.assign(q.begin(), q.end());
      sa->attn.assign(attn.begin(), attn.end());
    }
    run_linears({b.wo}, attn.data(), n, {proj.data()}, {});
  }

  // A Gemma 2/3 block (architectures with sandwich_norms; their logits may be soft-capped): RMSNorm -> q/k/v (-> q/k RMSNorm per head) -> RoPE (the layer's base) ->
  // attention (scaled, soft-capped, windowed as the layer says) -> output projection -> RMSNorm ->
  // residual; RMSNorm -> GELU-tanh gated MLP -> RMSNorm -> residual. Norm weights are used as stored
  // (the converter's w + 1).
  void sandwich_block(int64_t l, int64_t n, LayerActivations* sa) {
    const ModelConfig& c = m.config;
    const engine::Block& b = m.blocks[static_cast<size_t>(l)];
    const int64_t d = c.n_embd, hd = c.head_dim, nkv = c.n_head_kv * hd, ff = c.n_ff;
    auto sz = [](int64_t a, int64_t bb) { return static_cast<size_t>(a * bb); };

    rmsnorm(x.data(), *b.attn_norm, h.data(), n);
    run_linears({b.wq, b.wk, b.wv}, h.data(), n, {q.data(), k.data(), v.data()}, {b.bq, b.bk, b.bv});
    if (b.q_norm) engine::rms_norm(ex, q.data(), *b.q_norm, c.rms_eps, hd, n * c.n_head, q.data(), nullptr);
    if (b.k_norm) engine::rms_norm(ex, k.data(), *b.k_norm, c.rms_eps, hd, n * c.n_head_kv, k.data(), nullptr);
    const float* cs = b.swa ? rope_cs_swa.data() : rope_cs.data();
    engine::rope(q.data(), n, c.n_head, hd, m.neox_rope, cs, false, threads);
    engine::rope(k.data(), n, c.n_head_kv, hd, m.neox_rope, cs, false, threads);

    attend_and_project(l, n, sa);
    rmsnorm(proj.data(), *b.attn_post_norm, proj.data(), n);
    engine::add_into(x.data(), proj.data(), n * d, threads);
    if (sa) sa->ffn_input.assign(x.begin(), x.end());

    rmsnorm(x.data(), *b.ffn_norm, h.data(), n);
    run_linears({b.wgate, b.wup}, h.data(), n, {gate.data(), up.data()}, {});
    parallel_for(n, n * ff >= (1 << 16) ? threads : 1, 8, [&](int64_t t0, int64_t t1) {
      if (m.gelu_tanh_ffn) {
        ex.ops.gelu_tanh_mul((t1 - t0) * ff, gate.data() + t0 * ff, up.data() + t0 * ff, act.data() + t0 * ff);
      } else {
        ex.ops.silu_mul((t1 - t0) * ff, gate.data() + t0 * ff, up.data() + t0 * ff, act.data() + t0 * ff);
      }
    });
    run_linears({b.wdown}, act.data(), n, {proj.data()}, {});
    rmsnorm(proj.data(), *b.ffn_post_norm, proj.data(), n);
    engine::add_into(x.data(), proj.data(), n * d, threads);
    if (sa) {
      sa->ffn_norm.assign(h.begin(), h.end());
      sa->gate.assign(gate.begin(), gate.end());
      sa->up.assign(up.begin(), up.end());
      sa->act.assign(act.begin(), act.end());
    }
  }
};

Session::Session(const Model& model, SessionOptions options, const Context& ctx)
    : impl_(std::make_unique<Impl>(model, options, ctx)) {}
Session::~Session() = default;

void Session::eval(std::span<const int32_t> tokens, int64_t first_output) { impl_->eval(tokens, first_output); }

void Session::eval_blocks(std::span<const int32_t> tokens, int first_block, int stop_block, std::vector<float>& residual,
                          int64_t first_output) {
  impl_->forward(tokens, first_block, stop_block, &residual, first_output);
}

std::span<const float> Session::logits(int64_t i) const {
  if (i < 0 || i >= impl_->n_out)
    fail(Errc::invalid_argument, "logits: row {} requested, the last eval produced {}", i, impl_->n_out);
  return {impl_->logits.data() + i * impl_->m.n_vocab, static_cast<size_t>(impl_->m.n_vocab)};
}

int64_t Session::n_outputs() const { return impl_->n_out; }
int64_t Session::n_past() const { return impl_->n_past; }
int64_t Session::n_ctx() const { return impl_->n_ctx; }
void Session::clear() {
  impl_->n_past = 0;
  impl_->partial_from = -1;
}

void Session::truncate(int64_t n) {
  if (n < 0 || n > impl_->n_past)
    fail(Errc::invalid_argument, "truncate: {} positions requested, the cache holds {}", n, impl_->n_past);
  impl_->n_past = n;
  if (impl_->partial_from >= n) impl_->partial_from = -1;
}

void Session::set_linear_hook(LinearHook hook) { impl_->hook = std::move(hook); }

const LayerActivations& Session::activations(int layer) const {
  if (!impl_->opt.save_activations)
    fail(Errc::invalid_argument, "activations: the session was created without save_activations");
  if (layer < 0 || layer >= static_cast<int>(impl_->acts.size()))
    fail(Errc::invalid_argument, "activations: layer {} out of range [0, {})", layer, impl_->acts.size());
  return impl_->acts[static_cast<size_t>(layer)];
}

const std::vector<float>& Session::output_norm_activations() const {
  if (!impl_->opt.save_activations)
    fail(Errc::invalid_argument, "activations: the session was created without save_activations");
  return impl_->out_norm_act;
}

const Model& Session::model() const { return impl_->model; }

}  // namespace lq
