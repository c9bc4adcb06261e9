// BF16 panel GEMM on Intel AMX (Advanced Matrix Extensions): the same contract, panels and
// activation records as GemmBf16 (qgemm.hpp), with the products on the tile unit. One 16-row weight
// panel is a B tile per 32 values of k (its 32-bit lanes hold the value pairs in the layout
// TDPBF16PS reads); 16 tokens' records are an A tile; four tiles of 16 tokens x 16 rows (32 tokens
// times two panels) accumulate in float. gemm_bf16_amx leaves rows of k not a multiple of 32, and
// fewer than 16 tokens, to the AVX-512 kernel. Float activations (the engine's exact mode) are
// split into three bf16 parts hi + mid + lo that sum to them exactly; the records hold the three
// parts one after the other and the panel is read three times along k, so the products are exact
// and only the float accumulation rounds (gemm_bf16x3_amx). Built for x86-64 only, with the
// AVX-512 VNNI flags plus -mamx-tile -mamx-bf16, where the compiler has them; elsewhere
// no_amx.cpp stands in and says "not usable".
#include "engine_kernels.hpp"

#include <cstring>

// GCC spells the feature macros __AMX_TILE__ / __AMX_BF16__, clang __AMXTILE__ / __AMXBF16__.
#if !((defined(__AMX_TILE__) || defined(__AMXTILE__)) && (defined(__AMX_BF16__) || defined(__AMXBF16__)) && \
      defined(__x86_64__))
#error "amx.cpp needs x86-64 and -mamx-tile -mamx-bf16 (kernels/cpu/CMakeLists.txt builds no_amx.cpp otherwise)"
#endif

#include "qgemm.hpp"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace lq::cpu {

bool has_amx_bf16() noexcept {
  static const bool usable = [] {
    if (!has_avx512_vnni()) return false;  // the tails run the AVX-512 VNNI kernel
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(d & (1u << 22)) || !(d & (1u << 24))) return false;  // AMX-BF16, AMX-TILE
    unsigned xlo, xhi;
    __asm__("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & (3u << 17)) != (3u << 17)) return false;  // the OS manages XTILECFG and XTILEDATA
    // Linux hands the tile state to a process only on request (arch_prctl ARCH_REQ_XCOMP_PERM).
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
}

namespace {

// LDTILECFG's 64-byte operand: palette 1, then bytes per row and rows of each tile.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Tiles: 0-3 accumulators (16 tokens x 16 rows, float: tokens 0-15 and 16-31 of a block times
// the rows of two panels); 4, 5 activations (16 tokens x 32 bf16); 6, 7 weights (16 pairs x 16
// rows).
void load_config() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

}  // namespace

// The tile loop over records of a.k values against panels packed from weight rows of kw values,
// read a.k / kw times along k (the split records of gemm_bf16x3_amx). Up to kAmxGroup panels are
// packed at once and every block of 32 tokens runs against all of them, two panels at a time
// (four accumulators, so that each tile loaded feeds two products): a token's records are read
// from memory once per group rather than once per panel. Tokens past the last multiple of 16
// run as a block of 16 whose missing records are zeros.
void amx_gemm(const QGemmArgs& a, int64_t kw) {
  using Arch = Avx512Vnni;
  load_config();  // per thread: the pool's workers each run this
  const int64_t kp = a.k / 2, kpw = kw / 2, ps = kpw * kPanelRows, m16 = a.m / 16 * 16;
  const size_t xs = a.lay.bytes;
  auto& buf = qg::scratch<Arch, struct AmxTag>(static_cast<size_t>(kAmxGroup * ps));
  thread_local std::vector<uint8_t> tail;
  if (m16 < a.m) {
    tail.assign(16 * xs, 0);
    std::memcpy(tail.data(), a.act + static_cast<size_t>(m16) * xs, static_cast<size_t>(a.m - m16) * xs);
  }
  QGemmArgs pa = a;
  pa.k = kw;
  alignas(64) float c[4][16][16];
  for (int64_t r0 = 0; r0 < a.rows; r0 += kAmxGroup * kPanelRows) {
    const int np = static_cast<int>(std::min<int64_t>(kAmxGroup, (a.rows - r0 + kPanelRows - 1) / kPanelRows));
    int rows[kAmxGroup] = {};
    for (int j = 0; j < np; ++j) rows[j] = qg::pack_bf16<Arch>(pa, r0 + j * kPanelRows, buf.data() + j * ps);
    for (int64_t t = 0; t < a.m;) {
      const bool in_tail = t >= m16, two_t = t + 32 <= m16;
      const int64_t valid = in_tail ? a.m - m16 : two_t ? 32 : 16;
      const uint8_t* x0 = in_tail ? tail.data() : a.act + static_cast<size_t>(t) * xs;
      const uint8_t* x1 = x0 + 16 * xs;
      for (int j = 0; j < np; j += 2) {
        const bool two_p = j + 1 < np;
        const int32_t* q0 = buf.data() + j * ps;
        const int32_t* q1 = q0 + ps;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t p = 0, pw = 0; p < kp; p += 16, pw = pw + 16 == kpw ? 0 : pw + 16) {
          _tile_loadd(4, x0 + p * 4, xs);
          _tile_loadd(6, q0 + pw * kPanelRows, 64);
          _tile_dpbf16ps(0, 4, 6);
          if (two_p) {
            _tile_loadd(7, q1 + pw * kPanelRows, 64);
            _tile_dpbf16ps(1, 4, 7);
          }
          if (two_t) {
            _tile_loadd(5, x1 + p * 4, xs);
            _tile_dpbf16ps(2, 5, 6);
            if (two_p) _tile_dpbf16ps(3, 5, 7);
          }
        }
        _tile_stored(0, c[0], 64);
        _tile_stored(1, c[1], 64);
        _tile_stored(2, c[2], 64);
        _tile_stored(3, c[3], 64);
        for (int64_t i = 0; i < valid; ++i)
          for (int jj = 0; jj < (two_p ? 2 : 1); ++jj)
            std::memcpy(a.y + (t + i) * a.ldy + r0 + (j + jj) * kPanelRows, c[2 * (i / 16) + jj][i % 16],
                        static_cast<size_t>(rows[j + jj]) * sizeof(float));
      }
      t += valid;
    }
  }
  _tile_release();
}

void gemm_bf16_amx(const QGemmArgs& a) {
  if (a.k % 32 != 0 || a.m < 16) {
    gemm_bf16(a);
    return;
  }
  amx_gemm(a, a.k);
}

void quantize_act_bf16x3(const float* x, int64_t m, const QActLayout& lay, uint8_t* dst) {
  const int64_t k = lay.k;
  for (int64_t t = 0; t < m; ++t) {
    auto* o = reinterpret_cast<uint16_t*>(dst + static_cast<size_t>(t) * lay.bytes);
    const float* xr = x + t * k;
    for (int64_t i = 0; i < k; ++i) {
      const uint16_t hi = f32_to_bf16(xr[i]);
      const float r = xr[i] - bf16_to_f32(hi);
      const uint16_t mid = f32_to_bf16(r);
      o[i] = hi;
      o[k + i] = mid;
      o[2 * k + i] = f32_to_bf16(r - bf16_to_f32(mid));
    }
  }
}

void gemm_bf16x3_amx(const QGemmArgs& a) {
  QGemmArgs b = a;
  b.k = 3 * a.k;
  amx_gemm(b, a.k);
}

}  // namespace lq::cpu
