// Backpropagation through the Llama forward pass: the same operations as the engine's forward
// (RMSNorm, q/k/v (fused or not, per-head q/k RMSNorm where the architecture has it) with RoPE,
// causal GQA attention, SwiGLU or a mixture of experts, output projection; Gemma's embedding
// scale, post-norms, GELU-tanh, sliding windows and soft-capping) computed in float
// with every intermediate kept, then the gradient of the mean next-token cross-entropy flowing
// back block by block. Weight gradients are never materialised here: each linear's (input,
// output gradient) pair is handed to the caller, who reduces dW = dy^T x as it needs.
//
// A mixture of experts routes each token to its top-k experts: the selection is piecewise constant
// (no gradient), so the gradient flows through the selected experts' MLPs and through their routing
// weights into the router's logits (softmax over the selected logits where the weights are
// renormalised, else over all experts). Each expert's weight gradient is handed over per expert,
// with the rows of the tokens routed to it.
//
// Products with the transposed weight (dx = dy W) run the float GEMM on column panels of W
// transposed on the fly, so no transposed copy of the model is kept.
#include "engine/backward.hpp"

#include <lq/backend.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/threads.hpp>


#include <algorithm>
#include <cmath>
#include <cstring>

namespace lq::engine {
namespace {

size_t sz(int64_t a, int64_t b) { return static_cast<size_t>(a * b); }

// dst (cols x rows) = src (rows x cols, leading dimension lds)^T.
void transpose(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int threads) {
  constexpr int64_t B = 32;
  const int64_t rb = (rows + B - 1) / B;
  parallel_for(rb, rows * cols >= (1 << 16) ? threads : 1, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * B, r1 = std::min(rows, r0 + B);
      for (int64_t c0 = 0; c0 < cols; c0 += B) {
        const int64_t c1 = std::min(cols, c0 + B);
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * lds + c];
      }
    }
  });
}

void gemm(const Exec& ex, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
          float* c, int64_t ldc, bool acc) {
  ex.ops.gemm(detail::GemmArgs{m, n, k, a, lda, b, QuantType::F32, ldb, c, ldc, acc});
}

bool is_float_type(QuantType t) { return t == QuantType::F32 || t == QuantType::F16 || t == QuantType::BF16; }

}  // namespace

struct Backprop::Impl {
  const Model::Impl& m;
  Exec ex;
  int threads;

  struct Layer {
    std::vector<float> xin, h1, q, k, v, o, xmid, h2, gate, up, act;
    std::vector<float> r1, r2;  // RMSNorm scales per token
    std::vector<float> qpre, kpre, rq, rk;  // qk_norm: q/k before their per-head RMSNorm, its scales
    // Mixture of experts: routing probabilities (n x E), each token's experts and weights (n x K);
    // slots t*K+k grouped by expert (rows[first[e] ..]) and each slot's row there (row_of); per
    // grouped row the expert's input, gate, up, SiLU(gate)*up and output.
    std::vector<float> rp, rw, xe, ge, ue, ae, ye;
    std::vector<int32_t> re, first, rows, row_of;
    std::vector<float> sgl, sgate, sup, sact, sy;  // the shared expert: gate logit, MLP, output
    // Post-norms (Gemma): the attention and MLP outputs before them, and their scales.
    std::vector<float> ao, rpa, fo, rpf;
  };
  std::vector<Layer> layers;
  std::vector<float> xf, hf, rf, logits, rope_cs, rope_cs_swa;
  // backward
  std::vector<float> dx, dmid, dh, dq, dk, dv, dov, dgate, dup, dact, dlogits, kt, dkh, dvh;
  std::vector<float> wbuf;  // a quantized weight decoded to float

  Impl(const Model& model, const Context& ctx)
      : m(detail::ModelAccess::impl(model)), ex(Exec::from(ctx)), threads(ex.threads) {
    layers.resize(static_cast<size_t>(m.config.n_layer));
  }

  const Tensor& lin(int i) const { return *m.linear_tensors[static_cast<size_t>(i)]; }

  void rmsnorm(const float* in, const Tensor& w, float* out, float* r, int64_t n) const {
    rms_norm(ex, in, w, m.config.rms_eps, m.config.n_embd, n, out, r);
  }

  // dx += d/dx of y = x * r(x) * g, given dy: r g dy - x r^3 / d * sum(g dy x).
  void rmsnorm_backward(const float* x, const float* r, const Tensor& w, const float* dy, float* dx, int64_t n) const {
    rmsnorm_backward_rows(x, r, w, dy, dx, n, m.config.n_embd);
  }
  // The same over n rows of d values (qk_norm: one row per token and head).
  void rmsnorm_backward_rows(const float* x, const float* r, const Tensor& w, const float* dy, float* dx, int64_t n,
                             int64_t d) const {
    const float* g = w.f32();
    parallel_for(n, n * d >= (1 << 15) ? threads : 1, 16, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const float* xr = x + t * d;
        const float* dyr = dy + t * d;
        float* dxr = dx + t * d;
        double s = 0;
        for (int64_t i = 0; i < d; ++i) s += static_cast<double>(g[i]) * dyr[i] * xr[i];
        const double rr = r[t];
        const float c = static_cast<float>(rr * rr * rr * s / static_cast<double>(d));
        const float rf = r[t];
        for (int64_t i = 0; i < d; ++i) dxr[i] += rf * g[i] * dyr[i] - xr[i] * c;
      }
    });
  }

  // As the forward pass's (LongRoPE: long factors beyond the original context, cos and sin scaled;
  // the transpose of a scaled rotation is the scaled inverse rotation).
  void rope_table(int64_t n) {
    const int64_t half = m.config.head_dim / 2;
    const std::vector<float>& inv =
        !m.rope_inv_freq_long.empty() && n > m.rope_original_ctx ? m.rope_inv_freq_long : m.rope_inv_freq;
    const float ms = m.rope_mscale;
    rope_cs.resize(sz(n, half * 2));
    for (int64_t t = 0; t < n; ++t) {
      const float pos = static_cast<float>(t);
      for (int64_t i = 0; i < half; ++i) {
        const float theta = pos * inv[static_cast<size_t>(i)];
        rope_cs[static_cast<size_t>((t * half + i) * 2)] = std::cos(theta) * ms;
        rope_cs[static_cast<size_t>((t * half + i) * 2 + 1)] = std::sin(theta) * ms;
      }
    }
    if (m.rope_inv_freq_swa.empty()) return;
    rope_cs_swa.resize(sz(n, half * 2));  // the sliding-window layers' (unscaled)
    for (int64_t t = 0; t < n; ++t) {
      const float pos = static_cast<float>(t);
      for (int64_t i = 0; i < half; ++i) {
        const float theta = pos * m.rope_inv_freq_swa[static_cast<size_t>(i)];
        rope_cs_swa[static_cast<size_t>((t * half + i) * 2)] = std::cos(theta);
        rope_cs_swa[static_cast<size_t>((t * half + i) * 2 + 1)] = std::sin(theta);
      }
    }
  }

  // Rotates pairs by +theta (forward) or -theta (backward).
  void rope(const Block& b, float* data, int64_t n, int64_t heads, bool inverse) const {
    const float* cs = b.swa && !rope_cs_swa.empty() ? rope_cs_swa.data() : rope_cs.data();
    engine::rope(data, n, heads, m.config.head_dim, m.neox_rope, cs, inverse, threads);
  }

  // Products sharing one input run in one parallel region, as in the engine.
  void linears(std::initializer_list<int> idx, const float* in, int64_t n, std::initializer_list<float*> outs,
               std::initializer_list<const Tensor*> biases) const {
    LinearOp ops[4];
    size_t c = 0;
    auto o = outs.begin();
    for (int i : idx) ops[c++] = LinearOp{&lin(i), in, n, *o++};
    matmul_many(ex, std::span<const LinearOp>(ops, c));
    auto b = biases.begin();
    for (size_t i = 0; i < c; ++i, ++b) {
      if (!*b) continue;
      const int64_t no = ops[i].w->n_rows();
      const float* bv = (*b)->f32();
      for (int64_t t = 0; t < n; ++t)
        for (int64_t j = 0; j < no; ++j) ops[i].y[t * no + j] += bv[j];
    }
  }
  void linear(int idx, const float* in, int64_t n, float* out, const Tensor* bias) const {
    linears({idx}, in, n, {out}, {bias});
  }

  // dx (m x n_in) (+)= dy (m x n_out) W, with W's columns transposed panel by panel.
  void linear_backward(int idx, const float* dy, int64_t n, float* dx, bool accumulate) {
    linear_backward(lin(idx), dy, n, dx, accumulate);
  }
  void linear_backward(const Tensor& w, const float* dy, int64_t n, float* dx, bool accumulate) {
    const int64_t n_out = w.n_rows(), n_in = w.row_length();
    QuantType wt = w.type;
    const uint8_t* base = w.data.data();
    size_t row_bytes = w.row_bytes();
    const DequantizeFn widen = ex.kernels(wt).dequantize;
    const size_t elem = is_float_type(wt) ? static_cast<size_t>(type_info(wt).block_bytes) : 0;
    if (!is_float_type(wt)) {
      wbuf.resize(sz(n_out, n_in));
      parallel_for(n_out, threads, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) dequantize_row(ex, w, r, wbuf.data() + r * n_in);
      });
      wt = QuantType::F32;
      base = reinterpret_cast<const uint8_t*>(wbuf.data());
      row_bytes = static_cast<size_t>(n_in) * sizeof(float);
    }
    constexpr int64_t NB = 64;
    const int64_t blocks = (n_in + NB - 1) / NB;
    parallel_for(blocks, n * n_in * n_out >= (1 << 18) ? threads : 1, 1, [&](int64_t b0, int64_t b1) {
      thread_local std::vector<float> bt, row;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t i0 = b * NB, nb = std::min(NB, n_in - i0);
        bt.resize(sz(nb, n_out));
        row.resize(static_cast<size_t>(nb));
        for (int64_t o = 0; o < n_out; ++o) {
          if (wt == QuantType::F32)
            std::memcpy(row.data(), base + static_cast<size_t>(o) * row_bytes + static_cast<size_t>(i0) * 4, sz(nb, 1) * 4);
          else
            widen(base + static_cast<size_t>(o) * row_bytes + static_cast<size_t>(i0) * elem, row.data(), nb);
          for (int64_t j = 0; j < nb; ++j) bt[static_cast<size_t>(j * n_out + o)] = row[static_cast<size_t>(j)];
        }
        gemm(ex, n, nb, n_out, dy, n_out, bt.data(), n_out, dx + i0, n_in, accumulate);
      }
    });
  }

  void attention_forward(const Block& b, Layer& L, int64_t n) {
    const ModelConfig& c = m.config;
    const int64_t hd = c.head_dim, nq = c.n_head * hd, nkv = c.n_head_kv * hd, group = c.n_head / c.n_head_kv;
    kt.resize(sz(nkv, n));  // V transposed per KV head: [kv head][dim][token]
    for (int64_t g = 0; g < c.n_head_kv; ++g) transpose(L.v.data() + g * hd, n, hd, nkv, kt.data() + g * hd * n, 1);
    parallel_for(c.n_head, n * n * hd >= (1 << 16) ? threads : 1, 1, [&](int64_t h0, int64_t h1) {
      thread_local std::vector<float> s;
      s.resize(sz(n, n));
      for (int64_t h = h0; h < h1; ++h) {
        const int64_t g = h / group;
        probabilities(b, L, h, g, n, s.data(), nullptr);
        gemm(ex, n, hd, n, s.data(), n, kt.data() + g * hd * n, n, L.o.data() + h * hd, nq, false);
      }
    });
  }

  // Causal attention probabilities of head h (n x n, zero above the diagonal), as the engine's
  // attention: scores scaled, soft-capped (cap * tanh(s * scale / cap), kept in `capped` when
  // given) and limited to the window where the model has them.
  void probabilities(const Block& b, const Layer& L, int64_t h, int64_t g, int64_t n, float* s, float* capped) const {
    const ModelConfig& c = m.config;
    const int64_t hd = c.head_dim, nq = c.n_head * hd, nkv = c.n_head_kv * hd;
    const float scale = m.attn_scale, cap = c.attn_softcap;
    const int64_t window = b.swa ? c.sliding_window : 0;
    gemm(ex, n, n, hd, L.q.data() + h * hd, nq, L.k.data() + g * hd, nkv, s, n, false);
    for (int64_t i = 0; i < n; ++i) {
      float* row = s + i * n;
      const int64_t visible = i + 1;
      if (cap > 0 || window > 0) {
        if (cap > 0) {
          ex.ops.soft_cap(visible, row, scale, cap);
          if (capped) std::copy(row, row + visible, capped + i * n);
        }
        if (window > 0) std::fill(row, row + std::max<int64_t>(0, visible - window), -INFINITY);
        ex.ops.softmax_row(visible, row, cap > 0 ? 1.0f : scale);
      } else {
        ex.ops.softmax_row(visible, row, scale);
      }
      std::fill(row + visible, row + n, 0.f);
    }
  }

  // From d(attention output) (dov, n x nq) to dq (n x nq), dk and dv (n x nkv), before RoPE undo.
  void attention_backward(const Block& b, const Layer& L, int64_t n) {
    const ModelConfig& c = m.config;
    const int64_t hd = c.head_dim, nq = c.n_head * hd, nkv = c.n_head_kv * hd, group = c.n_head / c.n_head_kv;
    const float scale = m.attn_scale, cap = c.attn_softcap;
    kt.resize(sz(nkv, n));  // K transposed per KV head
    for (int64_t g = 0; g < c.n_head_kv; ++g) transpose(L.k.data() + g * hd, n, hd, nkv, kt.data() + g * hd * n, 1);
    dkh.resize(sz(c.n_head, n * hd));
    dvh.resize(sz(c.n_head, n * hd));
    dq.resize(sz(n, nq));
    parallel_for(c.n_head, n * n * hd >= (1 << 16) ? threads : 1, 1, [&](int64_t h0, int64_t h1) {
      thread_local std::vector<float> p, ds, tr, qt, dot, cs;
      p.resize(sz(n, n));
      if (cap > 0) cs.resize(sz(n, n));
      ds.resize(sz(n, n));
      tr.resize(sz(n, n));
      qt.resize(sz(hd, n));
      dot.resize(sz(hd, n));
      for (int64_t h = h0; h < h1; ++h) {
        const int64_t g = h / group;
        probabilities(b, L, h, g, n, p.data(), cap > 0 ? cs.data() : nullptr);
        // dP = dO V^T
        gemm(ex, n, n, hd, dov.data() + h * hd, nq, L.v.data() + g * hd, nkv, ds.data(), n, false);
        for (int64_t i = 0; i < n; ++i) {
          const float* pr = p.data() + i * n;
          float* dr = ds.data() + i * n;
          double dsum = 0;
          for (int64_t j = 0; j <= i; ++j) dsum += static_cast<double>(pr[j]) * dr[j];
          const float D = static_cast<float>(dsum);
          if (cap > 0) {  // d(cap tanh(u / cap))/du = 1 - tanh^2
            const float* cr = cs.data() + i * n;
            for (int64_t j = 0; j <= i; ++j) {
              const float th = cr[j] / cap;
              dr[j] = pr[j] * (dr[j] - D) * ((1.0f - th * th) * scale);
            }
          } else {
            for (int64_t j = 0; j <= i; ++j) dr[j] = pr[j] * (dr[j] - D) * scale;
          }
          std::fill(dr + i + 1, dr + n, 0.f);
        }
        // dQ = dS K
        gemm(ex, n, hd, n, ds.data(), n, kt.data() + g * hd * n, n, dq.data() + h * hd, nq, false);
        // dK_h = dS^T Q
        transpose(ds.data(), n, n, n, tr.data(), 1);
        transpose(L.q.data() + h * hd, n, hd, nq, qt.data(), 1);
        gemm(ex, n, hd, n, tr.data(), n, qt.data(), n, dkh.data() + h * n * hd, hd, false);
        // dV_h = P^T dO
        transpose(p.data(), n, n, n, tr.data(), 1);
        transpose(dov.data() + h * hd, n, hd, nq, dot.data(), 1);
        gemm(ex, n, hd, n, tr.data(), n, dot.data(), n, dvh.data() + h * n * hd, hd, false);
      }
    });
    dk.assign(sz(n, nkv), 0.f);
    dv.assign(sz(n, nkv), 0.f);
    for (int64_t h = 0; h < c.n_head; ++h) {
      const int64_t g = h / group;
      for (int64_t t = 0; t < n; ++t)
        for (int64_t d = 0; d < hd; ++d) {
          dk[static_cast<size_t>(t * nkv + g * hd + d)] += dkh[static_cast<size_t>(h * n * hd + t * hd + d)];
          dv[static_cast<size_t>(t * nkv + g * hd + d)] += dvh[static_cast<size_t>(h * n * hd + t * hd + d)];
        }
    }
  }

  // d(act(gate) * up), act SiLU (or GELU-tanh with `gelu`): dgate and dup of rows x cols values
  // from dact.
  void swiglu_backward(const float* gate, const float* up, const float* dact, float* dgate, float* dup,
                       int64_t rows, int64_t cols, bool gelu = false) const {
    parallel_for(rows, rows * cols >= (1 << 15) ? threads : 1, 8, [&](int64_t t0, int64_t t1) {
      if (gelu) {
        constexpr float kc = 0.7978845608f, ka = 0.044715f;
        for (size_t i = sz(t0, cols); i < sz(t1, cols); ++i) {
          const float g = gate[i], th = std::tanh(kc * (g + ka * g * g * g));
          const float gl = 0.5f * g * (1.0f + th);
          const float dgl = 0.5f * (1.0f + th) + 0.5f * g * (1.0f - th * th) * kc * (1.0f + 3.0f * ka * g * g);
          dup[i] = dact[i] * gl;
          dgate[i] = dact[i] * up[i] * dgl;
        }
        return;
      }
      for (size_t i = sz(t0, cols); i < sz(t1, cols); ++i) {
        const float gv = gate[i], sg = 1.0f / (1.0f + std::exp(-gv));
        const float silu = gv * sg;
        dup[i] = dact[i] * silu;
        dgate[i] = dact[i] * up[i] * (sg * (1.0f + gv * (1.0f - sg)));
      }
    });
  }

  // The mixture-of-experts MLP of block b on L.h2 into out (n x n_embd), as the engine's forward
  // (route_experts, per expert one product over its tokens' rows, weighted sum per token in k
  // order, the shared expert scaled by the sigmoid of its gate), every intermediate kept in L.
  void moe_forward(const Block& b, Layer& L, int64_t n, float* out) {
    const ModelConfig& c = m.config;
    const int64_t d = c.n_embd, E = c.n_expert, K = c.n_expert_used;
    const Tensor &wg = lin(b.wgate_exps), &wu = lin(b.wup_exps), &wd = lin(b.wdown_exps);
    const int64_t fe = wg.ne[1];
    std::vector<float> logits(sz(n, E));
    linear(b.wrouter, L.h2.data(), n, logits.data(), nullptr);
    L.rp.resize(sz(n, E));
    L.re.resize(sz(n, K));
    L.rw.resize(sz(n, K));
    route_experts(logits.data(), n, E, K, c.expert_weights_norm, L.rp.data(), L.re.data(), L.rw.data());
    L.first.assign(static_cast<size_t>(E + 1), 0);
    for (int32_t e : L.re) ++L.first[static_cast<size_t>(e) + 1];
    for (int64_t e = 0; e < E; ++e) L.first[e + 1] += L.first[e];
    L.rows.resize(sz(n, K));
    L.row_of.resize(sz(n, K));
    {
      std::vector<int32_t> at(L.first.begin(), L.first.end() - 1);
      for (int64_t s = 0; s < n * K; ++s) {
        const int32_t r = at[static_cast<size_t>(L.re[static_cast<size_t>(s)])]++;
        L.rows[static_cast<size_t>(r)] = static_cast<int32_t>(s);
        L.row_of[static_cast<size_t>(s)] = r;
      }
    }
    const int64_t nr = n * K;
    L.xe.resize(sz(nr, d));
    L.ge.resize(sz(nr, fe));
    L.ue.resize(sz(nr, fe));
    L.ae.resize(sz(nr, fe));
    L.ye.resize(sz(nr, d));
    for (int64_t r = 0; r < nr; ++r)
      std::memcpy(L.xe.data() + r * d, L.h2.data() + (L.rows[static_cast<size_t>(r)] / K) * d, sz(d, sizeof(float)));
    for (int64_t e = 0; e < E; ++e) {
      const int64_t f = L.first[static_cast<size_t>(e)], cnt = L.first[static_cast<size_t>(e) + 1] - f;
      if (cnt == 0) continue;
      const Tensor vg = expert_view(wg, e), vu = expert_view(wu, e), vd = expert_view(wd, e);
      const LinearOp gu[2] = {{&vg, L.xe.data() + f * d, cnt, L.ge.data() + f * fe},
                              {&vu, L.xe.data() + f * d, cnt, L.ue.data() + f * fe}};
      matmul_many(ex, gu);
      ex.ops.silu_mul(cnt * fe, L.ge.data() + f * fe, L.ue.data() + f * fe, L.ae.data() + f * fe);
      const LinearOp dn{&vd, L.ae.data() + f * fe, cnt, L.ye.data() + f * d};
      matmul_many(ex, std::span<const LinearOp>(&dn, 1));
    }
    const bool shared = b.wgate_shexp >= 0;
    if (shared) {
      const int64_t fs = lin(b.wgate_shexp).n_rows();
      L.sgl.resize(static_cast<size_t>(n));
      L.sgate.resize(sz(n, fs));
      L.sup.resize(sz(n, fs));
      L.sact.resize(sz(n, fs));
      L.sy.resize(sz(n, d));
      linears({b.wshexp_gate, b.wgate_shexp, b.wup_shexp}, L.h2.data(), n, {L.sgl.data(), L.sgate.data(), L.sup.data()},
              {nullptr, nullptr, nullptr});
      ex.ops.silu_mul(n * fs, L.sgate.data(), L.sup.data(), L.sact.data());
      linear(b.wdown_shexp, L.sact.data(), n, L.sy.data(), nullptr);
    }
    for (int64_t t = 0; t < n; ++t) {
      float* o = out + t * d;
      if (shared) {
        const float sg = 1.0f / (1.0f + std::exp(-L.sgl[static_cast<size_t>(t)]));
        for (int64_t j = 0; j < d; ++j) o[j] = L.sy[static_cast<size_t>(t * d + j)] * sg;
      } else {
        std::fill(o, o + d, 0.0f);
      }
      for (int64_t k = 0; k < K; ++k) {
        const float w = L.rw[static_cast<size_t>(t * K + k)];
        const float* y = L.ye.data() + static_cast<int64_t>(L.row_of[static_cast<size_t>(t * K + k)]) * d;
        for (int64_t j = 0; j < d; ++j) o[j] += w * y[j];
      }
    }
  }

  // From dout (n x n_embd, the gradient of the MoE output) to din (n x n_embd, its input's),
  // handing over every wanted weight's gradient: per expert with its tokens' rows, the router's
  // through the routing weights, the shared expert's and its gate's.
  void moe_backward(const Block& b, const Layer& L, int64_t n, const float* dout, float* din,
                    const std::vector<char>& wanted, const std::function<void(const WeightGrad&)>& on_grad) {
    const ModelConfig& c = m.config;
    const int64_t d = c.n_embd, E = c.n_expert, K = c.n_expert_used, nr = n * K;
    const Tensor &wg = lin(b.wgate_exps), &wu = lin(b.wup_exps), &wd = lin(b.wdown_exps);
    const int64_t fe = wg.ne[1];
    std::fill(din, din + n * d, 0.0f);
    if (b.wgate_shexp >= 0) {
      const int64_t fs = lin(b.wgate_shexp).n_rows();
      std::vector<float> dsy(sz(n, d)), dsg(static_cast<size_t>(n));
      for (int64_t t = 0; t < n; ++t) {
        const float s = 1.0f / (1.0f + std::exp(-L.sgl[static_cast<size_t>(t)]));
        double dot = 0;
        for (int64_t j = 0; j < d; ++j) {
          dot += static_cast<double>(dout[t * d + j]) * L.sy[static_cast<size_t>(t * d + j)];
          dsy[static_cast<size_t>(t * d + j)] = s * dout[t * d + j];
        }
        dsg[static_cast<size_t>(t)] = static_cast<float>(dot) * s * (1.0f - s);
      }
      std::vector<float> dsa(sz(n, fs)), dsgate(sz(n, fs)), dsup(sz(n, fs));
      emit(b.wdown_shexp, wanted, on_grad, L.sact.data(), dsy.data(), n);
      linear_backward(b.wdown_shexp, dsy.data(), n, dsa.data(), false);
      swiglu_backward(L.sgate.data(), L.sup.data(), dsa.data(), dsgate.data(), dsup.data(), n, fs);
      emit(b.wgate_shexp, wanted, on_grad, L.h2.data(), dsgate.data(), n);
      emit(b.wup_shexp, wanted, on_grad, L.h2.data(), dsup.data(), n);
      emit(b.wshexp_gate, wanted, on_grad, L.h2.data(), dsg.data(), n);
      linear_backward(b.wgate_shexp, dsgate.data(), n, din, true);
      linear_backward(b.wup_shexp, dsup.data(), n, din, true);
      linear_backward(b.wshexp_gate, dsg.data(), n, din, true);
    }
    // Routing weights' gradients (dw = dout . y per slot) and each grouped row's output gradient.
    std::vector<float> dw(sz(n, K)), dye(sz(nr, d));
    for (int64_t s = 0; s < nr; ++s) {
      const int64_t r = L.row_of[static_cast<size_t>(s)], t = s / K;
      const float* y = L.ye.data() + r * d;
      const float* g = dout + t * d;
      const float w = L.rw[static_cast<size_t>(s)];
      float* dy = dye.data() + r * d;
      double dot = 0;
      for (int64_t j = 0; j < d; ++j) {
        dot += static_cast<double>(g[j]) * y[j];
        dy[j] = w * g[j];
      }
      dw[static_cast<size_t>(s)] = static_cast<float>(dot);
    }
    int64_t most = 0;
    for (int64_t e = 0; e < E; ++e) most = std::max<int64_t>(most, L.first[e + 1] - L.first[e]);
    std::vector<float> dae(sz(most, fe)), dge(sz(most, fe)), due(sz(most, fe)), dxe(sz(most, d));
    for (int64_t e = 0; e < E; ++e) {
      const int64_t f = L.first[static_cast<size_t>(e)], cnt = L.first[static_cast<size_t>(e) + 1] - f;
      if (cnt == 0) continue;
      const Tensor vg = expert_view(wg, e), vu = expert_view(wu, e), vd = expert_view(wd, e);
      emit_expert(b.wdown_exps, e, wanted, on_grad, L.ae.data() + f * fe, dye.data() + f * d, cnt);
      linear_backward(vd, dye.data() + f * d, cnt, dae.data(), false);
      swiglu_backward(L.ge.data() + f * fe, L.ue.data() + f * fe, dae.data(), dge.data(), due.data(), cnt, fe);
      emit_expert(b.wgate_exps, e, wanted, on_grad, L.xe.data() + f * d, dge.data(), cnt);
      emit_expert(b.wup_exps, e, wanted, on_grad, L.xe.data() + f * d, due.data(), cnt);
      linear_backward(vg, dge.data(), cnt, dxe.data(), false);
      linear_backward(vu, due.data(), cnt, dxe.data(), true);
      for (int64_t i = 0; i < cnt; ++i) {  // a token's K slots are in K different experts
        float* dst = din + (L.rows[static_cast<size_t>(f + i)] / K) * d;
        const float* src = dxe.data() + i * d;
        for (int64_t j = 0; j < d; ++j) dst[j] += src[j];
      }
    }
    // Router logits: with renormalised weights w = softmax of the selected logits, dl_i = w_i (dw_i
    // - sum_k w_k dw_k) for the selected, 0 for the others; with w = p (softmax over all), dl_e =
    // p_e ([e selected] dw_e - sum_k p_k dw_k) for every expert.
    std::vector<float> dl(sz(n, E), 0.0f);
    for (int64_t t = 0; t < n; ++t) {
      float* row = dl.data() + t * E;
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(L.rw[static_cast<size_t>(t * K + k)]) * dw[static_cast<size_t>(t * K + k)];
      if (!c.expert_weights_norm)
        for (int64_t e = 0; e < E; ++e) row[e] = static_cast<float>(-L.rp[static_cast<size_t>(t * E + e)] * s);
      for (int64_t k = 0; k < K; ++k) {
        const size_t sk = static_cast<size_t>(t * K + k);
        const float w = L.rw[sk];
        row[L.re[sk]] += c.expert_weights_norm ? static_cast<float>(w * (dw[sk] - s)) : w * dw[sk];
      }
    }
    emit(b.wrouter, wanted, on_grad, L.h2.data(), dl.data(), n);
    linear_backward(b.wrouter, dl.data(), n, din, true);
  }

  void forward(std::span<const int32_t> tokens) {
    const ModelConfig& c = m.config;
    const int64_t n = static_cast<int64_t>(tokens.size());
    if (n < 2) fail(Errc::invalid_argument, "backprop: at least 2 tokens are needed, got {}", n);
    for (int64_t i = 0; i < n; ++i)
      if (tokens[i] < 0 || tokens[i] >= m.n_vocab)
        fail(Errc::invalid_argument, "backprop: token id {} at index {} is outside the vocabulary [0, {})", tokens[i], i,
             m.n_vocab);
    const int64_t d = c.n_embd, hd = c.head_dim, nq = c.n_head * hd, nkv = c.n_head_kv * hd, ff = c.n_ff;
    std::vector<float> x(sz(n, d));
    for (int64_t t = 0; t < n; ++t) dequantize_row(ex, *m.tok_embd, tokens[t], x.data() + t * d);
    if (m.embd_scale != 1.0f)
      for (float& e : x) e *= m.embd_scale;
    rope_table(n);
    for (int64_t l = 0; l < c.n_layer; ++l) {
      const Block& b = m.blocks[static_cast<size_t>(l)];
      Layer& L = layers[static_cast<size_t>(l)];
      L.xin = x;
      L.h1.resize(sz(n, d));
      L.r1.resize(static_cast<size_t>(n));
      rmsnorm(x.data(), *b.attn_norm, L.h1.data(), L.r1.data(), n);
      L.q.resize(sz(n, nq));
      L.k.resize(sz(n, nkv));
      L.v.resize(sz(n, nkv));
      if (b.wqkv >= 0) {  // fused q/k/v (phi3): one product, split
        std::vector<float> f(sz(n, nq + 2 * nkv));
        linear(b.wqkv, L.h1.data(), n, f.data(), nullptr);
        split_columns(f.data(), n, {{L.q.data(), nq}, {L.k.data(), nkv}, {L.v.data(), nkv}});
      } else {
        linears({b.wq, b.wk, b.wv}, L.h1.data(), n, {L.q.data(), L.k.data(), L.v.data()}, {b.bq, b.bk, b.bv});
      }
      if (b.q_norm) {  // per-head q/k RMSNorm (qwen3), inputs and scales kept for the backward pass
        L.qpre = L.q;
        L.kpre = L.k;
        L.rq.resize(sz(n, c.n_head));
        L.rk.resize(sz(n, c.n_head_kv));
        rms_norm(ex, L.qpre.data(), *b.q_norm, c.rms_eps, hd, n * c.n_head, L.q.data(), L.rq.data());
        rms_norm(ex, L.kpre.data(), *b.k_norm, c.rms_eps, hd, n * c.n_head_kv, L.k.data(), L.rk.data());
      }
      rope(b, L.q.data(), n, c.n_head, false);
      rope(b, L.k.data(), n, c.n_head_kv, false);
      L.o.resize(sz(n, nq));
      attention_forward(b, L, n);
      L.xmid.resize(sz(n, d));
      linear(b.wo, L.o.data(), n, L.xmid.data(), nullptr);
      if (b.attn_post_norm) {  // Gemma: the attention output normed before the residual add
        L.ao = L.xmid;
        L.rpa.resize(static_cast<size_t>(n));
        rmsnorm(L.ao.data(), *b.attn_post_norm, L.xmid.data(), L.rpa.data(), n);
      }
      add_into(L.xmid.data(), x.data(), static_cast<int64_t>(x.size()), threads);
      L.h2.resize(sz(n, d));
      L.r2.resize(static_cast<size_t>(n));
      rmsnorm(L.xmid.data(), *b.ffn_norm, L.h2.data(), L.r2.data(), n);
      if (b.wrouter >= 0) {
        moe_forward(b, L, n, x.data());
        add_into(x.data(), L.xmid.data(), static_cast<int64_t>(x.size()), threads);
        continue;
      }
      L.gate.resize(sz(n, ff));
      L.up.resize(sz(n, ff));
      L.act.resize(sz(n, ff));
      if (b.fused_gate_up) {  // fused gate/up (phi3): one product, split
        std::vector<float> f(sz(n, 2 * ff));
        linear(b.wup, L.h2.data(), n, f.data(), nullptr);
        split_columns(f.data(), n, {{L.gate.data(), ff}, {L.up.data(), ff}});
      } else {
        linears({b.wgate, b.wup}, L.h2.data(), n, {L.gate.data(), L.up.data()}, {nullptr, nullptr});
      }
      if (m.gelu_tanh_ffn) {
        ex.ops.gelu_tanh_mul(n * ff, L.gate.data(), L.up.data(), L.act.data());
      } else {
        ex.ops.silu_mul(n * ff, L.gate.data(), L.up.data(), L.act.data());
      }
      linear(b.wdown, L.act.data(), n, x.data(), nullptr);
      if (b.ffn_post_norm) {
        L.fo = x;
        L.rpf.resize(static_cast<size_t>(n));
        rmsnorm(L.fo.data(), *b.ffn_post_norm, x.data(), L.rpf.data(), n);
      }
      add_into(x.data(), L.xmid.data(), static_cast<int64_t>(x.size()), threads);
    }
    xf = std::move(x);
    hf.resize(sz(n, d));
    rf.resize(static_cast<size_t>(n));
    rmsnorm(xf.data(), *m.output_norm, hf.data(), rf.data(), n);
    logits.resize(sz(n, m.n_vocab));
    linear(m.output, hf.data(), n, logits.data(), nullptr);
    if (const float cap = c.final_softcap; cap > 0) ex.ops.soft_cap(static_cast<int64_t>(logits.size()), logits.data(), 1.0f, cap);
  }

  // Mean cross-entropy of rows 0..n-2 against tokens[1..]; with `grad`, dlogits = (p - onehot) / (n-1).
  double cross_entropy(std::span<const int32_t> tokens, bool grad) {
    const int64_t n = static_cast<int64_t>(tokens.size()), V = m.n_vocab;
    std::vector<double> nll(static_cast<size_t>(n - 1));
    if (grad) dlogits.assign(sz(n, V), 0.f);
    const float inv = 1.0f / static_cast<float>(n - 1);
    parallel_for(n - 1, threads, 4, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const float* l = logits.data() + t * V;
        float mx = l[0];
        for (int64_t v = 1; v < V; ++v) mx = std::max(mx, l[v]);
        double sum = 0;
        for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(l[v] - mx));
        const int32_t target = tokens[static_cast<size_t>(t + 1)];
        nll[static_cast<size_t>(t)] = std::log(sum) - static_cast<double>(l[target] - mx);
        if (grad) {
          float* dl = dlogits.data() + t * V;
          const double is = 1.0 / sum;
          for (int64_t v = 0; v < V; ++v) dl[v] = static_cast<float>(std::exp(static_cast<double>(l[v] - mx)) * is) * inv;
          dl[target] -= inv;
        }
      }
    });
    double total = 0;
    for (double v : nll) total += v;
    return total / static_cast<double>(n - 1);
  }

  void emit(int idx, const std::vector<char>& wanted, const std::function<void(const WeightGrad&)>& on_grad,
            const float* x, const float* dy, int64_t n) const {
    if (idx < 0 || !wanted[static_cast<size_t>(idx)]) return;
    const Tensor& w = lin(idx);
    on_grad(WeightGrad{idx, n, w.row_length(), w.n_rows(), x, dy});
  }
  // Expert e's slice of a merged expert tensor, over the rows of its n tokens.
  void emit_expert(int idx, int64_t e, const std::vector<char>& wanted,
                   const std::function<void(const WeightGrad&)>& on_grad, const float* x, const float* dy,
                   int64_t n) const {
    if (idx < 0 || !wanted[static_cast<size_t>(idx)]) return;
    const Tensor& w = lin(idx);
    on_grad(WeightGrad{idx, n, w.ne[0], w.ne[1], x, dy, static_cast<int>(e)});
  }

  double run(std::span<const int32_t> tokens, const std::vector<char>& wanted,
             const std::function<void(const WeightGrad&)>& on_grad) {
    if (wanted.size() != m.linears.size())
      fail(Errc::invalid_argument, "backprop: {} flags for {} linear weights", wanted.size(), m.linears.size());
    forward(tokens);
    const double loss = cross_entropy(tokens, true);
    const ModelConfig& c = m.config;
    const int64_t n = static_cast<int64_t>(tokens.size());
    const int64_t d = c.n_embd, nq = c.n_head * c.head_dim, ff = c.n_ff;
    if (const float cap = c.final_softcap; cap > 0)  // logits = cap tanh(z / cap)
      for (size_t i = 0; i < dlogits.size(); ++i) {
        const float th = logits[i] / cap;
        dlogits[i] *= 1.0f - th * th;
      }
    std::vector<float> dpost;  // Gemma: the gradient of a branch's output before its post-norm
    auto through_post_norm = [&](const Tensor* norm, const std::vector<float>& in, const std::vector<float>& r,
                                 const std::vector<float>& dy) -> const float* {
      if (!norm) return dy.data();
      dpost.assign(sz(n, d), 0.f);
      rmsnorm_backward(in.data(), r.data(), *norm, dy.data(), dpost.data(), n);
      return dpost.data();
    };

    emit(m.output, wanted, on_grad, hf.data(), dlogits.data(), n);
    dh.resize(sz(n, std::max(d, ff)));
    linear_backward(m.output, dlogits.data(), n, dh.data(), false);
    dx.assign(sz(n, d), 0.f);
    rmsnorm_backward(xf.data(), rf.data(), *m.output_norm, dh.data(), dx.data(), n);

    for (int64_t l = c.n_layer - 1; l >= 0; --l) {
      const Block& b = m.blocks[static_cast<size_t>(l)];
      const Layer& L = layers[static_cast<size_t>(l)];
      if (b.wrouter >= 0) {  // x_out = xmid + moe(h2)
        moe_backward(b, L, n, dx.data(), dh.data(), wanted, on_grad);
      } else {  // x_out = xmid + down(act), or xmid + post_norm(down(act))
        const float* ddown = through_post_norm(b.ffn_post_norm, L.fo, L.rpf, dx);
        emit(b.wdown, wanted, on_grad, L.act.data(), ddown, n);
        dact.resize(sz(n, ff));
        linear_backward(b.wdown, ddown, n, dact.data(), false);
        dgate.resize(sz(n, ff));
        dup.resize(sz(n, ff));
        swiglu_backward(L.gate.data(), L.up.data(), dact.data(), dgate.data(), dup.data(), n, ff, m.gelu_tanh_ffn);
        if (b.fused_gate_up) {
          std::vector<float> dgu(sz(n, 2 * ff));
          join_columns(dgu.data(), n, {{dgate.data(), ff}, {dup.data(), ff}});
          emit(b.wup, wanted, on_grad, L.h2.data(), dgu.data(), n);
          linear_backward(b.wup, dgu.data(), n, dh.data(), false);
        } else {
          emit(b.wgate, wanted, on_grad, L.h2.data(), dgate.data(), n);
          emit(b.wup, wanted, on_grad, L.h2.data(), dup.data(), n);
          linear_backward(b.wgate, dgate.data(), n, dh.data(), false);
          linear_backward(b.wup, dup.data(), n, dh.data(), true);
        }
      }
      dmid = dx;
      rmsnorm_backward(L.xmid.data(), L.r2.data(), *b.ffn_norm, dh.data(), dmid.data(), n);
      // xmid = xin + wo(o), or xin + post_norm(wo(o))
      const float* dwo = through_post_norm(b.attn_post_norm, L.ao, L.rpa, dmid);
      emit(b.wo, wanted, on_grad, L.o.data(), dwo, n);
      dov.resize(sz(n, nq));
      linear_backward(b.wo, dwo, n, dov.data(), false);
      attention_backward(b, L, n);
      rope(b, dq.data(), n, c.n_head, true);
      rope(b, dk.data(), n, c.n_head_kv, true);
      if (b.q_norm) {
        const int64_t hd = c.head_dim;
        std::vector<float> g(dq.size(), 0.f);
        rmsnorm_backward_rows(L.qpre.data(), L.rq.data(), *b.q_norm, dq.data(), g.data(), n * c.n_head, hd);
        dq.swap(g);
        g.assign(dk.size(), 0.f);
        rmsnorm_backward_rows(L.kpre.data(), L.rk.data(), *b.k_norm, dk.data(), g.data(), n * c.n_head_kv, hd);
        dk.swap(g);
      }
      if (b.wqkv >= 0) {
        const int64_t nkv = c.n_head_kv * c.head_dim;
        std::vector<float> dqkv(sz(n, nq + 2 * nkv));
        join_columns(dqkv.data(), n, {{dq.data(), nq}, {dk.data(), nkv}, {dv.data(), nkv}});
        emit(b.wqkv, wanted, on_grad, L.h1.data(), dqkv.data(), n);
        if (l == 0) break;
        linear_backward(b.wqkv, dqkv.data(), n, dh.data(), false);
      } else {
        emit(b.wq, wanted, on_grad, L.h1.data(), dq.data(), n);
        emit(b.wk, wanted, on_grad, L.h1.data(), dk.data(), n);
        emit(b.wv, wanted, on_grad, L.h1.data(), dv.data(), n);
        if (l == 0) break;  // no gradient is needed below block 0
        linear_backward(b.wq, dq.data(), n, dh.data(), false);
        linear_backward(b.wk, dk.data(), n, dh.data(), true);
        linear_backward(b.wv, dv.data(), n, dh.data(), true);
      }
      dx = dmid;
      rmsnorm_backward(L.xin.data(), L.r1.data(), *b.attn_norm, dh.data(), dx.data(), n);
    }
    return loss;
  }
};

Backprop::Backprop(const Model& model, const Context& ctx) : impl_(std::make_unique<Impl>(model, ctx)) {}
Backprop::Backprop(const Model& model, int threads) : Backprop(model, Context{threads}) {}
Backprop::~Backprop() = default;

double Backprop::run(std::span<const int32_t> tokens, const std::vector<char>& wanted,
                     const std::function<void(const WeightGrad&)>& on_grad) {
  return impl_->run(tokens, wanted, on_grad);
}

double Backprop::loss(std::span<const int32_t> tokens) {
  impl_->forward(tokens);
  return impl_->cross_entropy(tokens, false);
}

namespace {

// Rows of dW^T = x^T dy (n_in x n_out) in blocks of input columns; fn(i0, rows, block) sees each
// block once. Blocks are fixed by the shapes, so results do not depend on the thread count.
template <typename Fn>
void for_each_grad_block(const WeightGrad& g, int threads, Fn&& fn) {
  const Exec ex = Exec::with_threads(threads);
  std::vector<float> xt(sz(g.n_in, g.m)), dyt(sz(g.n_out, g.m));
  transpose(g.x, g.m, g.n_in, g.n_in, xt.data(), threads);
  transpose(g.dy, g.m, g.n_out, g.n_out, dyt.data(), threads);
  constexpr int64_t IB = 96;
  const int64_t blocks = (g.n_in + IB - 1) / IB;
  parallel_for(blocks, g.m * g.n_in * g.n_out >= (1 << 18) ? threads : 1, 1, [&](int64_t b0, int64_t b1) {
    thread_local std::vector<float> c;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * IB, ib = std::min(IB, g.n_in - i0);
      c.resize(sz(ib, g.n_out));
      gemm(ex, ib, g.n_out, g.m, xt.data() + i0 * g.m, g.m, dyt.data(), g.m, c.data(), g.n_out, false);
      fn(i0, ib, c.data());
    }
  });
}

}  // namespace

void weight_grad_columns(const WeightGrad& g, double* abs_sum, double* sq_sum, int threads) {
  for_each_grad_block(g, threads, [&](int64_t i0, int64_t ib, const float* c) {
    for (int64_t i = 0; i < ib; ++i) {
      const float* r = c + i * g.n_out;
      double a = 0, s = 0;
      for (int64_t o = 0; o < g.n_out; ++o) {
        const double v = r[o];
        a += std::fabs(v);
        s += v * v;
      }
      if (abs_sum) abs_sum[i0 + i] = a;
      if (sq_sum) sq_sum[i0 + i] = s;
    }
  });
}

void weight_grad_full(const WeightGrad& g, float* dw, int threads) {
  for_each_grad_block(g, threads, [&](int64_t i0, int64_t ib, const float* c) {
    for (int64_t i = 0; i < ib; ++i)
      for (int64_t o = 0; o < g.n_out; ++o) dw[o * g.n_in + i0 + i] = c[i * g.n_out + o];
  });
}

}  // namespace lq::engine
