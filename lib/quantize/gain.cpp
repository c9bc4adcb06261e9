// The quantizer's gain correction (gain.hpp): decode each row with the type's reference decoder,
// compare each block with its weights, scale its fp16 fields (ref::scale_block).
#include "quantize/gain.hpp"

#include "types/ref/block_gain.hpp"

#include <vector>

namespace lq {

void correct_gain(QuantType t, const float* x, uint8_t* q, int64_t nrows, int64_t ncols, const float* w) {
  const TypeInfo& ti = type_info(t);
  if (!ref::block_scalable(t) || !ti.dequantize_ref || ti.block_size <= 0 || ncols % ti.block_size != 0) return;
  const size_t rb = ti.row_bytes(ncols);
  const int64_t bs = ti.block_size, nb = ncols / bs;
  std::vector<float> y(static_cast<size_t>(ncols));
  for (int64_t r = 0; r < nrows; ++r) {
    uint8_t* row = q + static_cast<size_t>(r) * rb;
    const float* xr = x + r * ncols;
    ti.dequantize_ref(row, y.data(), ncols);
    for (int64_t b = 0; b < nb; ++b) {
      double xx = 0, xy = 0;
      for (int64_t j = b * bs; j < (b + 1) * bs; ++j) {
        const double wj = w ? static_cast<double>(w[j]) : 1.0;
        xx += wj * xr[j] * xr[j];
        xy += wj * xr[j] * y[static_cast<size_t>(j)];
      }
      if (!(xy > 0) || !(xx > 0)) continue;
      const double f = xx / xy;
      if (!(f >= 0.5 && f <= 2.0)) continue;
      ref::scale_block(t, row + static_cast<size_t>(b) * ti.block_bytes, static_cast<float>(f));
    }
  }
}

}  // namespace lq
