// BF16 panel GEMM on Intel AMX (Advanced Matrix Extensions): the same contract, panels and
// activation records as GemmBf16 (qgemm.hpp), with the products on the tile unit. One 16-row
// weight panel is a B tile per 32 values of k (its 32-bit lanes hold the value pairs in the
// layout TDPBF16PS reads); 16 tokens' records are an A tile; two tiles of 16 tokens x 16 rows
// accumulate in float. Tokens past the last multiple of 16, and rows of k not a multiple of 32,
// run the AVX-512 kernel. Float activations (the engine's exact mode) are split into three bf16
// parts hi + mid + lo that sum to them exactly; the records hold the three parts one after the
// other and the panel is repeated three times along k, so the products are exact and only the
// float accumulation rounds (gemm_bf16x3_amx). Built with the AVX-512 VNNI flags plus -mamx-tile -mamx-bf16 where the
// compiler has them; elsewhere the two functions below say "not usable".
#include "engine_kernels.hpp"

#include <cstring>

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__x86_64__)
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

// Tiles: 0, 1 accumulators (16 tokens x 16 rows, float); 2, 3 activations (16 tokens x 32
// bf16); 4 weights (16 pairs x 16 rows).
void load_config() {
  TileConfig cfg;
  for (int t = 0; t < 5; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

}  // namespace

// The tile loop over records of a.k values against panels packed from weight rows of kw values,
// repeated a.k / kw times along k (the split records of gemm_bf16x3_amx).
void amx_gemm(const QGemmArgs& a, int64_t kw) {
  using Arch = Avx512Vnni;
  load_config();  // per thread: the pool's workers each run this
  const int64_t kp = a.k / 2, kpw = kw / 2, m16 = a.m / 16 * 16;
  const size_t xs = a.lay.bytes;
  auto& buf = qg::scratch<Arch, struct AmxTag>(static_cast<size_t>(kp * kPanelRows));
  int32_t* q = buf.data();
  QGemmArgs pa = a;
  pa.k = kw;
  alignas(64) float c[2][16][16];
  for (int64_t r0 = 0; r0 < a.rows; r0 += kPanelRows) {
    const int rows = qg::pack_bf16<Arch>(pa, r0, q);
    for (int64_t j = kpw; j < kp; j += kpw)
      std::memcpy(q + j * kPanelRows, q, static_cast<size_t>(kpw * kPanelRows) * sizeof(int32_t));
    int64_t t = 0;
    while (t < m16) {
      const bool two = t + 32 <= m16;
      const uint8_t* x0 = a.act + static_cast<size_t>(t) * xs;
      _tile_zero(0);
      _tile_zero(1);
      for (int64_t p = 0; p < kp; p += 16) {
        _tile_loadd(4, q + p * kPanelRows, 64);
        _tile_loadd(2, x0 + p * 4, xs);
        _tile_dpbf16ps(0, 2, 4);
        if (two) {
          _tile_loadd(3, x0 + 16 * xs + p * 4, xs);
          _tile_dpbf16ps(1, 3, 4);
        }
      }
      _tile_stored(0, c[0], 64);
      _tile_stored(1, c[1], 64);
      for (int b = 0; b < (two ? 2 : 1); ++b)
        for (int i = 0; i < 16; ++i)
          std::memcpy(a.y + (t + 16 * b + i) * a.ldy + r0, c[b][i], static_cast<size_t>(rows) * sizeof(float));
      t += two ? 32 : 16;
    }
    if (t < a.m) qg::bf16_all_tokens<Arch, 8, 1>(kp, q, a, t, a.y + r0, rows);
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

#else

namespace lq::cpu {
bool has_amx_bf16() noexcept { return false; }
void gemm_bf16_amx(const QGemmArgs& a) { gemm_bf16(a); }
// Never chosen without AMX (exact_bf16_kernel); kept so that the dispatch table links.
void gemm_bf16x3_amx(const QGemmArgs&) {}
void quantize_act_bf16x3(const float*, int64_t, const QActLayout&, uint8_t*) {}
}  // namespace lq::cpu

#endif
