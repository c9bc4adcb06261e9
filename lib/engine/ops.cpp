// The engine's execution context (Exec: the back-end's operations from the registry, threads),
// its tensor storage, the products (handed to the back-end's EngineOps::products), and the row
// operations of the forward and backward passes (RMSNorm, residual adds, RoPE, binary16 rounding)
// split by tokens across threads: with the products parallel, these would otherwise run on one
// thread while the others wait. No kernel code here: every kernel comes through Exec.
#include "engine/impl.hpp"
#include "core/fail.hpp"
#include "core/shape.hpp"

#include <lq/backend.hpp>
#include <lq/threads.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

#include <sys/mman.h>

namespace lq::engine {

Exec Exec::from(const Context& ctx) {
  const Registry& r = Registry::instance();
  const Backend& b = ctx.active_backend();
  const bool named = ctx.backend != nullptr || &b != &r.resolve("auto");
  return Exec{r.engine_ops(b), &b, named, ctx.thread_count()};
}

KernelSet Exec::kernels(QuantType t) const {
  const Registry& r = Registry::instance();
  return named ? r.kernels(*backend, t) : r.kernels(t);
}

Exec Exec::with_threads(int threads) {
  Context ctx;
  ctx.threads = threads;
  return from(ctx);
}

Buffer::Buffer(size_t n) : n_(n) {
  if (n == 0) return;
  constexpr size_t kMapped = size_t{1} << 20;
  if (n >= kMapped) {
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail(Errc::out_of_memory, "engine: cannot allocate {} bytes", n);
    p_ = std::unique_ptr<uint8_t[], BufferFree>(static_cast<uint8_t*>(p), BufferFree{n});
    return;
  }
  const size_t padded = (n + 63) / 64 * 64;
  p_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, padded)));
  if (!p_) fail(Errc::out_of_memory, "engine: cannot allocate {} bytes", n);
}

void BufferFree::operator()(uint8_t* p) const {
  if (mapped > 0) ::munmap(p, mapped);
  else std::free(p);
}

int64_t Tensor::n_rows() const { return row_count(ne); }

Tensor expert_view(const Tensor& t, int64_t e) {
  Tensor v;
  v.name = t.name;
  v.type = t.type;
  v.ne = {t.ne[0], t.ne[1]};
  v.col_order = t.col_order;
  const size_t bytes = v.row_bytes() * static_cast<size_t>(t.ne[1]);
  v.data = Buffer(std::shared_ptr<const uint8_t>(std::shared_ptr<const uint8_t>(), t.data.data() + e * bytes), bytes);
  return v;
}

void route_experts(const float* logits, int64_t n, int64_t n_expert, int64_t k, bool normalise, float* probs,
                   int32_t* experts, float* weights) {
  const int64_t E = n_expert;
  std::vector<int32_t> idx(static_cast<size_t>(E));
  for (int64_t t = 0; t < n; ++t) {
    const float* l = logits + t * E;
    float* p = probs + t * E;
    const float mx = *std::max_element(l, l + E);
    double sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(l[e] - mx);
    for (int64_t e = 0; e < E; ++e) p[e] = static_cast<float>(p[e] / sum);
    for (int64_t e = 0; e < E; ++e) idx[static_cast<size_t>(e)] = static_cast<int32_t>(e);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t z) { return p[a] > p[z] || (p[a] == p[z] && a < z); });
    float wsum = 0;
    for (int64_t j = 0; j < k; ++j) wsum += p[idx[static_cast<size_t>(j)]];
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = idx[static_cast<size_t>(j)];
      experts[t * k + j] = e;
      weights[t * k + j] = normalise ? p[e] / wsum : p[e];
    }
  }
}

bool supports_weight_type(const Exec& ex, QuantType t) { return ex.ops.supports_weight(t); }

void matmul_many(const Exec& ex, std::span<const LinearOp> ops) {
  detail::Product prods[8];
  std::vector<detail::Product> many;
  detail::Product* p = prods;
  if (ops.size() > std::size(prods)) {
    many.resize(ops.size());
    p = many.data();
  }
  for (size_t i = 0; i < ops.size(); ++i) {
    const LinearOp& op = ops[i];
    const Tensor& w = *op.w;
    if (w.data.data() == nullptr && w.n_rows() * w.row_length() > 0)
      fail(Errc::general, "engine: the weights of '{}' were released", w.name);
    p[i] = detail::Product{detail::WeightView{w.type, w.data.data(), w.n_rows(), w.row_length(), w.row_bytes(), w.name.c_str(),
                                                              w.input_scale, w.col_order ? w.col_order->data() : nullptr},
                           op.x, op.m, op.y, op.float_act, op.f16_act};
  }
  ex.ops.products(std::span<const detail::Product>(p, ops.size()), ex.threads);
}

void matmul(const Exec& ex, const Tensor& w, const float* x, int64_t m, float* y) {
  const LinearOp op{&w, x, m, y};
  matmul_many(ex, std::span<const LinearOp>(&op, 1));
}

void dequantize_row(const Exec& ex, const Tensor& t, int64_t r, float* dst) {
  const DequantizeFn deq = ex.kernels(t.type).dequantize;
  if (!deq) fail(Errc::invalid_model, "engine: tensor '{}' has type {} that cannot be decoded", t.name, type_name(t.type));
  if (!t.col_order) {
    deq(t.row(r), dst, t.row_length());
    return;
  }
  thread_local std::vector<float> stored;
  stored.resize(static_cast<size_t>(t.row_length()));
  deq(t.row(r), stored.data(), t.row_length());
  const std::vector<int32_t>& order = *t.col_order;
  for (size_t c = 0; c < stored.size(); ++c) dst[order[c]] = stored[c];
}

namespace {
// Below this many values an operation stays on the calling thread: waking workers costs more.
constexpr int64_t kSerialValues = 1 << 15;

int use_threads(int64_t values, int threads) { return values >= kSerialValues ? threads : 1; }
}  // namespace

void rms_norm(const Exec& ex, const float* in, const Tensor& w, float eps, int64_t d, int64_t n, float* out,
              float* scales) {
  const float* g = w.f32();
  const auto norm = ex.ops.rms_norm_row;
  parallel_for(n, use_threads(n * d, ex.threads), 4, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float s = norm(d, in + t * d, g, eps, out + t * d);
      if (scales) scales[t] = s;
    }
  });
}

void split_columns(const float* src, int64_t n, std::initializer_list<ColumnPart> parts) {
  int64_t width = 0;
  for (const auto& p : parts) width += p.cols;
  for (int64_t t = 0; t < n; ++t) {
    const float* row = src + t * width;
    for (const auto& p : parts) {
      std::memcpy(p.dst + t * p.cols, row, static_cast<size_t>(p.cols) * sizeof(float));
      row += p.cols;
    }
  }
}

void join_columns(float* dst, int64_t n, std::initializer_list<std::pair<const float*, int64_t>> parts) {
  int64_t width = 0;
  for (const auto& p : parts) width += p.second;
  for (int64_t t = 0; t < n; ++t) {
    float* row = dst + t * width;
    for (const auto& [src, cols] : parts) {
      std::memcpy(row, src + t * cols, static_cast<size_t>(cols) * sizeof(float));
      row += cols;
    }
  }
}

void add_into(float* dst, const float* src, int64_t count, int threads) {
  parallel_for(count, use_threads(count, threads), 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] += src[i];
  });
}

void round_to_half(const Exec& ex, const float* src, float* dst, int64_t count) {
  const auto round = ex.ops.round_half;
  parallel_for(count, use_threads(count, ex.threads), 4096,
               [&](int64_t i0, int64_t i1) { round(i1 - i0, src + i0, dst + i0); });
}

void rope(float* data, int64_t n, int64_t heads, int64_t head_dim, bool neox, const float* cs_all, bool inverse,
          int threads) {
  const int64_t row = heads * head_dim;
  parallel_for(n, use_threads(n * row, threads), 4, [&](int64_t t0, int64_t t1) {
    apply_rope(data + t0 * row, t1 - t0, heads, head_dim, neox, cs_all + t0 * head_dim, inverse);
  });
}

}  // namespace lq::engine
