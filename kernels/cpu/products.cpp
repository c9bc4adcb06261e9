// The CPU back-end's products y = x W^T over weights of any type (EngineOps::products). Several
// products (q/k/v, gate/up) are cut into tiles together and run in one parallel region, so a step of
// the forward pass costs one synchronisation whatever the number of weights in it.
//
// Paths, chosen from the CPU row of the weight's type (rows.hpp): float weights run the blocked
// GEMM; quantized weights with a panel kernel run it for batches (prompt processing: each 16-row
// weight panel is decoded once per call and every token runs against it); smaller batches run the
// type's dot (4 x 4 tiles where it has them); types without a dot are dequantized tile by tile.
// Activations are quantized once per (input, format) before the tiles run (for F16 weights with
// f16_act: rounded to binary16 once per input; for BF16 batches without a bf16 panel kernel: to
// bf16). Every output element is computed by the same sequence of operations whatever the tiling,
// so results do not depend on the thread count.
#include "rows.hpp"

#include <lq/backend.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/threads.hpp>

#include "backend/ops.hpp"
#include "core/half.hpp"

#include <algorithm>
#include <map>
#include <tuple>
#include <vector>

namespace lq::cpu {
namespace {

using lq::detail::Product;
using lq::detail::WeightView;

// Weights the blocked GEMM reads directly.
bool gemm_type(QuantType t) { return t == QuantType::F32 || t == QuantType::F16 || t == QuantType::BF16; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Each calling thread's activations, kept between calls by input address (and format): the
// quantized records of the panel and dot paths, and the rounded copies for the float GEMM.
using ActKey = std::tuple<const float*, QuantType, ActFormat, float>;
thread_local std::map<ActKey, std::vector<uint8_t>> qbufs;
thread_local std::map<std::pair<const float*, QuantType>, std::vector<float>> hbufs;

enum class Path { gemm, panel, dot, dequant };

// Batches from this many tokens use the panel kernels: decoding a panel costs about as much as
// a few tokens' products (matmul_bench --m).
constexpr int64_t kPanelMinTokens = 4;

struct Prepared {
  const Product* op;
  Path path;
  const float* x = nullptr;     // float activations (gemm and dequant paths): op->x or a rounded copy
  DotFn dot = nullptr;
  TileFn tile = nullptr;
  DequantizeFn deq = nullptr;
  PanelKernel panel;
  QActLayout lay;               // activation records (panel path)
  const uint8_t* xq = nullptr;  // activations in dot_type (dot path) or records (panel path)
  size_t qb = 0;                // bytes per quantized activation row
};

struct Tile {
  int op;
  int64_t i0, i1;  // activation rows (tokens)
  int64_t j0, j1;  // weight rows (outputs)
};

// Products below this many multiply-adds run on the calling thread: waking workers costs more.
constexpr int64_t kSerialMacs = 1 << 18;

void run_tile(const Prepared& p, const Tile& t) {
  const WeightView& w = p.op->w;
  const int64_t n = w.rows, k = w.cols;
  switch (p.path) {
    case Path::gemm: {
      gemm_nt(GemmArgs{t.i1 - t.i0, t.j1 - t.j0, k, p.x + t.i0 * k, k, w.row(t.j0), w.type, k,
                       p.op->y + t.i0 * n + t.j0, n, false});
      break;
    }
    case Path::panel: {
      p.panel.fn(QGemmArgs{k, w.row(t.j0), w.row_bytes, t.j1 - t.j0, p.xq + static_cast<size_t>(t.i0) * p.qb,
                           p.lay, t.i1 - t.i0, p.op->y + t.i0 * n + t.j0, n});
      break;
    }
    case Path::dot: {
      // Weight rows stay in L1 while the tile's tokens stream from L2.
      float* y = p.op->y;
      auto single = [&](int64_t r, int64_t i) { y[i * n + r] = p.dot(k, w.row(r), p.xq + static_cast<size_t>(i) * p.qb); };
      int64_t r = t.j0;
      if (p.tile) {
        for (; r + 4 <= t.j1; r += 4) {
          int64_t i = t.i0;
          for (; i + 4 <= t.i1; i += 4) p.tile(k, w.row(r), w.row_bytes, p.xq + static_cast<size_t>(i) * p.qb, p.qb, y + i * n + r, n);
          for (; i < t.i1; ++i)
            for (int64_t rr = r; rr < r + 4; ++rr) single(rr, i);
        }
      }
      for (; r < t.j1; ++r)
        for (int64_t i = t.i0; i < t.i1; ++i) single(r, i);
      break;
    }
    case Path::dequant: {
      thread_local std::vector<float> buf, stored;
      buf.resize(static_cast<size_t>((t.j1 - t.j0) * k));
      if (!w.col_order) {
        p.deq(w.row(t.j0), buf.data(), (t.j1 - t.j0) * k);
      } else {  // columns back in the matrix's order, so the product is the in-order one
        stored.resize(buf.size());
        p.deq(w.row(t.j0), stored.data(), (t.j1 - t.j0) * k);
        for (int64_t r = 0; r < t.j1 - t.j0; ++r)
          for (int64_t c = 0; c < k; ++c) buf[static_cast<size_t>(r * k + w.col_order[c])] = stored[static_cast<size_t>(r * k + c)];
      }
      gemm_nt(GemmArgs{t.i1 - t.i0, t.j1 - t.j0, k, p.x + t.i0 * k, k, buf.data(), QuantType::F32, k,
                       p.op->y + t.i0 * n + t.j0, n, false});
      break;
    }
  }
}

void add_tiles(const Prepared& p, int op, int nt, std::vector<Tile>& tiles) {
  const WeightView& w = p.op->w;
  const int64_t m = p.op->m, n = w.rows;
  int64_t mb, nb;
  switch (p.path) {
    case Path::gemm:
      if (m <= 3) {
        mb = m;
        nb = std::clamp<int64_t>((ceil_div(n, nt * 4) + 15) / 16 * 16, 16, 256);
      } else {
        // Each tile widens and packs its weight columns once: the more tokens share that, the
        // less it costs (192-token tiles spent 12% of an F16 product on it; whole batches 5%).
        // A tile also reads all its tokens' activations (mb x k floats) to meet its nb weight
        // rows. Where they outgrow a core's L2 (1B-sized rows), that traffic rather than the
        // products set the pace on 16 threads with fewer than 64 rows (F16 analysis of a 1B:
        // 6% faster with the tokens split first); small rows keep whole batches.
        mb = m <= 1024 ? m : 512;
        nb = 128;
        auto few = [&] { return ceil_div(m, mb) * ceil_div(n, nb) < 4 * nt; };
        if (mb * w.cols * 4 > (int64_t{1} << 20)) {
          while (nb > 64 && few()) nb /= 2;
          while (mb > 128 && few()) mb = (mb / 2 + 15) / 16 * 16;
        }
        while (nb > 32 && few()) nb /= 2;
      }
      break;
    case Path::panel:
      // all tokens against panels of 16 rows; enough tiles to balance the threads. A kernel that
      // reuses each token's records across a group of panels (AMX) gets whole groups while every
      // thread still has two tiles of this product.
      mb = m;
      if (p.panel.rows_per_call > 0) {
        nb = p.panel.rows_per_call;
        while (nb > 16 && ceil_div(n, nb) < 2 * nt) nb /= 2;
      } else {
        nb = std::clamp<int64_t>((ceil_div(n, 8 * nt) + 15) / 16 * 16, 16, 128);
      }
      break;
    case Path::dot:
      mb = 64;
      nb = m == 1 ? 8 : 16;
      break;
    default:
      mb = m;
      nb = 32;
      break;
  }
  for (int64_t i = 0; i < m; i += mb)
    for (int64_t j = 0; j < n; j += nb) tiles.push_back(Tile{op, i, std::min(m, i + mb), j, std::min(n, j + nb)});
}

// The CPU kernels of a type's row, the scalar reference where the row has none.
KernelSet cpu_kernels(QuantType t) { return Registry::instance().kernels(Registry::instance().cpu(), t); }

}  // namespace

void release_product_buffers() {
  qbufs = {};
  hbufs = {};
}

bool supports_weight(QuantType t) {
  if (gemm_type(t)) return true;
  const KernelSet k = cpu_kernels(t);
  if (k.dot && cpu_kernels(type_info(t).dot_type).quantize) return true;
  return k.dequantize != nullptr;
}

void products(std::span<const Product> ops, int threads) {
  const int nt = threads > 0 ? threads : hardware_threads();
  std::vector<Prepared> prep;
  int64_t macs = 0;
  for (const Product& op : ops) {
    if (op.m <= 0) continue;
    Prepared p{&op, Path::gemm, op.x};
    const QuantType t = op.w.type;
    const int64_t k = op.w.cols;
    // A fixed activation scale (static W8A8) exists only in the panel's records: every batch runs it.
    const bool fixed_act = op.w.input_scale > 0;
    const PanelKernel panel = op.m < kPanelMinTokens && !fixed_act ? PanelKernel{} : panel_kernel(t, op.float_act, k);
    if (fixed_act && (!panel || panel.act != ActFormat::i8_token))
      fail(Errc::invalid_model, "engine: tensor '{}' of type {} has a static activation scale but no int8 product",
           op.w.name, type_name(t));
    if (panel) {
      p.path = Path::panel;
      p.panel = panel;
      p.lay = act_format(panel.act).layout(k);
      if (fixed_act) p.lay.fixed_scale = op.w.input_scale;
      p.qb = p.lay.bytes;
    } else if (!gemm_type(t)) {
      const KernelSet kern = cpu_kernels(t);
      if (kern.dot && cpu_kernels(type_info(t).dot_type).quantize) {
        p.path = Path::dot;
        p.dot = kern.dot;
        if (op.m >= 4) p.tile = row(t).tile;
      } else if (kern.dequantize) {
        p.path = Path::dequant;
        p.deq = kern.dequantize;
      } else {
        fail(Errc::invalid_model, "engine: tensor '{}' has type {} with no CPU kernel", op.w.name, type_name(t));
      }
    }
    if (op.w.col_order && p.path != Path::dequant)
      fail(Errc::invalid_model, "engine: tensor '{}' has a column order its type {}'s products do not take", op.w.name,
           type_name(t));
    macs += op.m * op.w.rows * op.w.cols;
    prep.push_back(p);
  }
  if (prep.empty()) return;
  const int use = macs < kSerialMacs ? 1 : nt;

  // Activations: each (input, format) pair is quantized once. Formats: the dot_type's GGUF
  // layout (dot path) or panel records (panel path).
  using Key = ActKey;
  std::vector<std::pair<Key, Prepared*>> to_quantize;
  for (Prepared& p : prep) {
    if (p.path != Path::dot && p.path != Path::panel) continue;
    const QuantType dt = type_info(p.op->w.type).dot_type;
    const int64_t k = p.op->w.cols;
    if (p.path == Path::dot) p.qb = type_info(dt).row_bytes(k);
    const Key key = p.path == Path::dot ? Key{p.op->x, dt, ActFormat::none, 0.f}
                                        : Key{p.op->x, QuantType::F32, p.panel.act, p.lay.fixed_scale};
    auto& buf = qbufs[key];
    const size_t need = static_cast<size_t>(p.op->m) * p.qb;
    bool fresh = true;
    for (auto& [kk, pp] : to_quantize)
      if (kk == key) fresh = false;
    if (fresh) {
      if (buf.size() < need) buf.resize(need);
      to_quantize.emplace_back(key, &p);
    }
    p.xq = buf.data();
  }
  // Float-GEMM inputs rounded first, as llama.cpp multiplies them, each input once per format into
  // a copy (the caller's activations stay as they are: hooks read them): F16 weights with f16_act
  // to binary16; BF16 weights whose batch would run the bf16 panel but where the CPU has no panel
  // kernel (no AVX-512 BF16: AVX2, NEON) to bf16, so that the products do not depend on the ISA.
  std::vector<std::pair<const float*, QuantType>> rounded;
  for (Prepared& p : prep) {
    if (p.path != Path::gemm) continue;
    const QuantType t = p.op->w.type;
    const bool to_half = t == QuantType::F16 && p.op->f16_act;
    const bool to_bf16 = t == QuantType::BF16 && !p.op->float_act && p.op->m >= kPanelMinTokens;
    if (!to_half && !to_bf16) continue;
    const std::pair<const float*, QuantType> key{p.op->x, t};
    auto& buf = hbufs[key];
    const int64_t count = p.op->m * p.op->w.cols;
    if (std::ranges::find(rounded, key) == rounded.end()) {
      if (static_cast<int64_t>(buf.size()) < count) buf.resize(static_cast<size_t>(count));
      const float* src = p.op->x;
      float* dst = buf.data();
      parallel_for(count, count < (1 << 15) ? 1 : use, 4096, [&](int64_t i0, int64_t i1) {
        if (to_half) {
          round_half(i1 - i0, src + i0, dst + i0);
        } else {
          for (int64_t i = i0; i < i1; ++i) dst[i] = bf16_to_f32(f32_to_bf16(src[i]));
        }
      });
      rounded.push_back(key);
    }
    p.x = buf.data();
  }
  for (auto& [key, p] : to_quantize) {
    const int64_t k = p->op->w.cols;
    const float* x = std::get<0>(key);
    uint8_t* dst = const_cast<uint8_t*>(p->xq);
    const size_t qb = p->qb;
    if (p->path == Path::panel) {
      const QuantizeActFn q = act_format(p->panel.act).quantize;
      const QActLayout lay = p->lay;
      parallel_for(p->op->m, p->op->m >= 16 ? use : 1, 8,
                   [&](int64_t b, int64_t e) { q(x + b * k, e - b, lay, dst + static_cast<size_t>(b) * qb); });
    } else {
      const QuantizeFn q = cpu_kernels(std::get<1>(key)).quantize;
      parallel_for(p->op->m, p->op->m >= 16 ? use : 1, 8,
                   [&](int64_t b, int64_t e) { q(x + b * k, dst + static_cast<size_t>(b) * qb, e - b, k, nullptr); });
    }
  }

  std::vector<Tile> tiles;
  for (size_t i = 0; i < prep.size(); ++i) add_tiles(prep[i], static_cast<int>(i), use, tiles);
  parallel_for(static_cast<int64_t>(tiles.size()), use, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) run_tile(prep[static_cast<size_t>(tiles[i].op)], tiles[static_cast<size_t>(i)]);
  });
  if (qbufs.size() > 16) qbufs.clear();
  if (hbufs.size() > 16) hbufs.clear();
}

}  // namespace lq::cpu
