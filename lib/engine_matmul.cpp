// The engine's matrix product y = x W^T over weights of any type, split into tiles across threads.
#include "engine_impl.hpp"

#include <lq/backend.hpp>
#include <lq/error.hpp>
#include <lq/threads.hpp>

#include "kernels/cpu/engine_kernels.hpp"

#include <algorithm>

namespace lq::engine {

Buffer::Buffer(size_t n) : n_(n) {
  if (n == 0) return;
  const size_t padded = (n + 63) / 64 * 64;
  p_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, padded)));
  if (!p_) fail(Errc::out_of_memory, "engine: cannot allocate {} bytes", n);
}

int64_t Tensor::n_rows() const {
  int64_t r = 1;
  for (size_t i = 1; i < ne.size(); ++i) r *= ne[i];
  return r;
}

namespace {

bool is_float16_or_32(QuantType t) { return t == QuantType::F32 || t == QuantType::F16 || t == QuantType::BF16; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void float_matmul(const Tensor& w, const float* x, int64_t m, float* y, int threads) {
  const int64_t n = w.n_rows(), k = w.row_length();
  const int nt = threads > 0 ? threads : hardware_threads();
  auto gemm = [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    cpu::GemmArgs g{i1 - i0, j1 - j0, k, x + i0 * k, k, w.row(j0), w.type, k, y + i0 * n + j0, n, false};
    cpu::gemm_nt(g);
  };
  if (m <= 3) {
    const int64_t nb = std::clamp<int64_t>((ceil_div(n, nt * 4) + 15) / 16 * 16, 16, 256);
    parallel_for(ceil_div(n, nb), nt, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) gemm(0, m, i * nb, std::min(n, (i + 1) * nb));
    });
    return;
  }
  const int64_t mb = m <= 288 ? m : 192;
  const int64_t mblocks = ceil_div(m, mb);
  int64_t nb = 128;
  while (nb > 32 && mblocks * ceil_div(n, nb) < 3 * nt) nb /= 2;
  const int64_t nblocks = ceil_div(n, nb);
  parallel_for(mblocks * nblocks, nt, 1, [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const int64_t i = it / nblocks, j = it % nblocks;
      gemm(i * mb, std::min(m, (i + 1) * mb), j * nb, std::min(n, (j + 1) * nb));
    }
  });
}

void dot_matmul(const Tensor& w, DotFn dot, const float* x, int64_t m, float* y, int threads) {
  const int64_t n = w.n_rows(), k = w.row_length();
  const int nt = threads > 0 ? threads : hardware_threads();
  const TypeInfo& dt = type_info(type_info(w.type).dot_type);
  const QuantizeFn quantize = Registry::instance().quantize(dt.type);
  if (!quantize) fail(Errc::general, "engine: no quantizer for the activation type {}", dt.name);
  const size_t qb = dt.row_bytes(k);
  thread_local std::vector<uint8_t> xq;
  if (xq.size() < static_cast<size_t>(m) * qb) xq.resize(static_cast<size_t>(m) * qb);
  uint8_t* xqp = xq.data();
  parallel_for(m, nt, 4, [&](int64_t b, int64_t e) { quantize(x + b * k, xqp + b * qb, e - b, k, nullptr); });

  // Tiles of RB weight rows x TB tokens: the rows stay in L1 while the tokens stream from L2.
  const int64_t rb = m == 1 ? 8 : 16, tb = 64;
  const int64_t rblocks = ceil_div(n, rb), tblocks = ceil_div(m, tb);
  const size_t wrb = w.row_bytes();
  const uint8_t* wd = w.data.data();
  parallel_for(rblocks * tblocks, nt, 1, [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const int64_t tbi = it / rblocks, rbi = it % rblocks;
      const int64_t r0 = rbi * rb, r1 = std::min(n, r0 + rb);
      const int64_t t0 = tbi * tb, t1 = std::min(m, t0 + tb);
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* wr = wd + static_cast<size_t>(r) * wrb;
        for (int64_t t = t0; t < t1; ++t) y[t * n + r] = dot(k, wr, xqp + static_cast<size_t>(t) * qb);
      }
    }
  });
}

void dequant_matmul(const Tensor& w, DequantizeFn deq, const float* x, int64_t m, float* y, int threads) {
  const int64_t n = w.n_rows(), k = w.row_length();
  const int nt = threads > 0 ? threads : hardware_threads();
  const int64_t nb = 64;
  parallel_for(ceil_div(n, nb), nt, 1, [&](int64_t b, int64_t e) {
    thread_local std::vector<float> tile;
    tile.resize(static_cast<size_t>(nb * k));
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t j0 = blk * nb, j1 = std::min(n, j0 + nb);
      deq(w.row(j0), tile.data(), (j1 - j0) * k);
      cpu::GemmArgs g{m, j1 - j0, k, x, k, tile.data(), QuantType::F32, k, y + j0, n, false};
      cpu::gemm_nt(g);
    }
  });
}

}  // namespace

bool supports_weight_type(QuantType t) {
  if (is_float16_or_32(t)) return true;
  const auto& reg = Registry::instance();
  const TypeInfo& info = type_info(t);
  if (reg.dot(t) && reg.quantize(info.dot_type)) return true;
  return reg.dequantize(t) != nullptr;
}

void matmul(const Tensor& w, const float* x, int64_t m, float* y, int threads) {
  if (m <= 0) return;
  if (is_float16_or_32(w.type)) return float_matmul(w, x, m, y, threads);
  const auto& reg = Registry::instance();
  if (DotFn dot = reg.dot(w.type); dot && reg.quantize(type_info(w.type).dot_type))
    return dot_matmul(w, dot, x, m, y, threads);
  if (DequantizeFn deq = reg.dequantize(w.type)) return dequant_matmul(w, deq, x, m, y, threads);
  fail(Errc::invalid_model, "engine: tensor '{}' has type {} with no CPU kernel", w.name, type_name(w.type));
}

void dequantize_row(const Tensor& t, int64_t r, float* dst) {
  DequantizeFn deq = Registry::instance().dequantize(t.type);
  if (!deq) fail(Errc::invalid_model, "engine: tensor '{}' has type {} that cannot be decoded", t.name, type_name(t.type));
  deq(t.row(r), dst, t.row_length());
}

}  // namespace lq::engine
