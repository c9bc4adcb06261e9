// Codebook search shared by the IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S and IQ1_M quantizers.
//
// All five formats describe a 256-value super-block as
//     xhat = D * m(l_u) * v(entry, k)     (times a stored sign for the IQ2 family)
// with D one fp16 scale, l_u a small integer scale code per sub-block ("unit" of 16 or 32 values)
// and v the coordinates of a codebook entry, an 8-vector over three levels. The solver below
// minimises sum_i w_i (a_i - xhat_i)^2 for one super-block: it finds a good continuous scale per
// unit, then searches D (and the codes l_u, and the entries again for each quantized scale) so
// the error is measured with the scales that will actually be stored. Costs use the codebook's
// true level values (8, 25, 43 are not in ratio 1:3:5) and the fp16-rounded D.
#pragma once

#include <cstdint>
#include <vector>

namespace lq::ref {

/// Points of {0,1,2}^8, keyed in base 3 (coordinate 0 is the least significant digit).
inline constexpr int kIqKeys = 6561;

/// A codebook of 8-vectors over three levels, indexed for nearest-entry search.
struct IqGrid {
  int size = 0;
  std::vector<uint8_t> levels;       ///< size * 8 level indices (0..2), entry-major
  std::vector<int32_t> map;          ///< per key: entry (>= 0) or -(1 + offset into neighbours)
  /// At each offset: a count, then that many candidates, each `entry << 16 | pair codes`: four
  /// 4-bit codes l[2p] + 3 l[2p+1] of the entry's coordinate pairs.
  std::vector<uint32_t> neighbours;
};

enum class IqCodebook { iq2xxs, iq2xs, iq2s, iq1s };

/// The index of a codebook, built once on first use (thread-safe, immutable afterwards).
const IqGrid& iq_grid(IqCodebook cb);

/// How a format maps codes to values (see the file comment).
struct IqFormat {
  IqCodebook codebook;
  int unit;                 ///< values sharing one scale code: 16 or 32
  int lmax;                 ///< largest scale code (15 or 7)
  float mult;               ///< m(l) = mult * (2l + 1)
  int variants;             ///< level sets to choose from (IQ1: the sign of the shift)
  bool variant_per_group;   ///< chosen per 8 values (IQ1_M) or per unit (IQ1_S)
  float levels[2][3];       ///< level values of each variant, ascending
  int trials;               ///< starting scales tried per unit
  float trial_lo, trial_hi; ///< range of max|a| / (s * top level) the trials cover
  int steps;                ///< entry-choice / scale-refit rounds per starting scale
  int refits;               ///< least-squares refits of the super-block scale
};

/// Codes of one super-block.
struct IqSolution {
  float d = 0;             ///< super-block scale (exactly representable in fp16)
  uint8_t l[16] = {};      ///< scale code per unit
  uint16_t index[32] = {}; ///< codebook entry per group of 8
  uint8_t variant[32] = {};///< level set per group of 8
};

/// Search weights of one super-block of 256 values: magnitude_weights (ref/importance.hpp),
/// (imatrix_j + floor) * sqrt(sigma_mult * mean(x^2) + x_j^2), or the magnitude factor alone
/// without importance data (`imatrix` points at the block's 256 columns or is null). With the
/// factor, the i-quant levels' KL divergence on the tiny model fell 9-18% (IQ1_S 0.276 -> 0.231,
/// IQ1_M 0.212 -> 0.186, IQ2_XXS 0.106 -> 0.097, IQ2_S 0.073 -> 0.062).
void iq_weights(const float* x, const float* imatrix, float floor, float sigma_mult, float* w);

/// The floor added to every importance weight: a tenth of the mean over the row's n columns.
/// Columns the calibration never exercised still get some weight, which keeps the plain RMSE in
/// check at a negligible cost in weighted error.
float iq_importance_floor(const float* imatrix, int64_t n);

/// Solves one super-block of 256 targets `a` with weights `w` (w >= 0). d = 0 when the block is
/// (numerically) zero.
void iq_solve(const IqFormat& f, const float* a, const float* w, IqSolution& out);

}  // namespace lq::ref
