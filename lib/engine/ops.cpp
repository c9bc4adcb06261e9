// Row operations of the forward and backward passes (RMSNorm, residual adds, RoPE, binary16
// rounding), split by tokens across threads: with the products parallel, these would otherwise
// run on one thread while the others wait.
#include "engine/impl.hpp"

#include <lq/threads.hpp>

#include "kernels/cpu/engine_kernels.hpp"

namespace lq::engine {

namespace {
// Below this many values an operation stays on the calling thread: waking workers costs more.
constexpr int64_t kSerialValues = 1 << 15;

int use_threads(int64_t values, int threads) { return values >= kSerialValues ? threads : 1; }
}  // namespace

void rms_norm(const float* in, const Tensor& w, float eps, int64_t d, int64_t n, float* out, float* scales,
              int threads) {
  const float* g = w.f32();
  parallel_for(n, use_threads(n * d, threads), 4, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float s = cpu::rms_norm_row(d, in + t * d, g, eps, out + t * d);
      if (scales) scales[t] = s;
    }
  });
}

void add_into(float* dst, const float* src, int64_t count, int threads) {
  parallel_for(count, use_threads(count, threads), 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] += src[i];
  });
}

void round_to_half(const float* src, float* dst, int64_t count, int threads) {
  parallel_for(count, use_threads(count, threads), 4096,
               [&](int64_t i0, int64_t i1) { cpu::round_half(i1 - i0, src + i0, dst + i0); });
}

void rope(float* data, int64_t n, int64_t heads, int64_t head_dim, bool neox, const float* cs_all, bool inverse,
          int threads) {
  const int64_t row = heads * head_dim;
  parallel_for(n, use_threads(n * row, threads), 4, [&](int64_t t0, int64_t t1) {
    apply_rope(data + t0 * row, t1 - t0, heads, head_dim, neox, cs_all + t0 * head_dim, inverse);
  });
}

}  // namespace lq::engine
