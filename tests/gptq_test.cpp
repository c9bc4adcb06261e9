// GPTQ (gptq.hpp) and the W4A16 packings (formats/gptq_pack.hpp): error feedback beats round to
// nearest on the calibration inputs of a random linear, a Hessian that is not positive definite
// raises the dampening (reported, never a silent fallback), act-order groupings, hand-computed
// packing vectors (3-bit values straddling words, v1 zeros minus one), the tiny model's output
// directories read back, CLI errors with exit codes and atomic output.
#include "support/support.hpp"

#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/gptq.hpp>
#include <lq/io.hpp>

#include "formats/gptq_pack.hpp"
#include "formats/quant_unpack.hpp"
#include "formats/safetensors.hpp"
#include "core/half.hpp"
#include "engine/impl.hpp"
#include "quantize/gptq_walk.hpp"

#include <Eigen/Cholesky>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <set>

namespace fs = std::filesystem;
using namespace lq;

namespace {

std::vector<int32_t> gt_i32(const SafetensorsFile& f, const std::string& name) {
  const StTensor* t = f.find(name);
  REQUIRE(t != nullptr);
  REQUIRE(t->dtype == StDtype::I32);
  std::vector<int32_t> v(t->nbytes / 4);
  f.read(t->begin, t->nbytes, v.data());
  return v;
}

std::vector<uint16_t> gt_u16(const SafetensorsFile& f, const std::string& name, StDtype dt) {
  const StTensor* t = f.find(name);
  REQUIRE(t != nullptr);
  REQUIRE(t->dtype == dt);
  std::vector<uint16_t> v(t->nbytes / 2);
  f.read(t->begin, t->nbytes, v.data());
  return v;
}

// "blk.0.attn_q.weight" -> "model.layers.0.self_attn.q_proj".
std::optional<std::string> names_gguf_module(const std::string& gguf) {
  static const std::pair<const char*, const char*> kMap[] = {
      {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"}, {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"}};
  const auto dot = gguf.find('.', 4);
  const std::string layer = gguf.substr(4, dot - 4), rest = gguf.substr(dot + 1, gguf.size() - dot - 8);
  for (const auto& [g, h] : kMap)
    if (rest == g) return "model.layers." + layer + "." + h;
  return std::nullopt;
}

}  // namespace

TEST_CASE("gptq: error feedback beats round to nearest on the calibration inputs", "[gptq]") {
  const test::CalibProblem p = test::calib_problem(512, 64, 24, 7);
  struct Case {
    int bits;
    int64_t group;
    bool sym;
    GptqActOrder ao;
  };
  for (const Case c : {Case{4, 32, true, GptqActOrder::none}, Case{3, 32, true, GptqActOrder::none},
                       Case{4, 16, false, GptqActOrder::none}, Case{2, 64, false, GptqActOrder::none},
                       Case{4, -1, true, GptqActOrder::none}, Case{4, 32, true, GptqActOrder::static_groups},
                       Case{3, 16, true, GptqActOrder::group}, Case{8, 32, true, GptqActOrder::none}}) {
    INFO("bits " << c.bits << " group " << c.group << " sym " << c.sym << " act-order " << int(c.ao));
    GptqParams gp;
    gp.bits = c.bits, gp.group_size = c.group, gp.sym = c.sym, gp.act_order = c.ao, gp.block_size = 24;
    GptqParams rp = gp;
    rp.rtn = true;
    const GptqMatrix g = gptq_quantize_matrix(p.w.data(), p.rows, p.d, p.h.data(), gp);
    const GptqMatrix r = gptq_quantize_matrix(p.w.data(), p.rows, p.d, nullptr, rp);
    CHECK(g.damp_raises == 0);
    CHECK(g.dead_columns == 0);
    const double eg = test::calib_output_error(p, g.dequantize()), er = test::calib_output_error(p, r.dequantize());
    CHECK(eg < 0.85 * er);
    // Codes and zeros stay on the grid.
    for (uint8_t q : g.codes) CHECK(q < (1u << c.bits));
    for (int32_t z : g.zeros) CHECK((z >= 0 && z < (1 << c.bits)));
    if (c.sym)
      for (int32_t z : g.zeros) CHECK(z == (1 << (c.bits - 1)));
    // The reported loss, sum (w - q)^2 / U_ii^2 / 2 over the walk, is positive and finite.
    CHECK(g.loss > 0);
    CHECK(std::isfinite(g.loss));
  }
}

TEST_CASE("gptq: the lazy batch width does not change the result", "[gptq]") {
  const test::CalibProblem p = test::calib_problem(256, 48, 8, 11);
  GptqParams a;
  a.bits = 4, a.group_size = 16;
  a.block_size = 48;
  GptqParams b = a;
  b.block_size = 16;  // group starts at block starts in both: the same weights at each group start
  {  // with the scale search (the default) too
    const GptqMatrix x = gptq_quantize_matrix(p.w.data(), p.rows, p.d, p.h.data(), a);
    const GptqMatrix y = gptq_quantize_matrix(p.w.data(), p.rows, p.d, p.h.data(), b);
    int64_t diff = 0;
    for (size_t i = 0; i < x.codes.size(); ++i) diff += x.codes[i] != y.codes[i];
    CHECK(diff <= 2);
  }
  // Min-max scales from here: the lag below changes a searched scale's choice more often.
  a.scale_search = b.scale_search = 0;
  const GptqMatrix x = gptq_quantize_matrix(p.w.data(), p.rows, p.d, p.h.data(), a);
  const GptqMatrix y = gptq_quantize_matrix(p.w.data(), p.rows, p.d, p.h.data(), b);
  int64_t diff = 0;
  for (size_t i = 0; i < x.codes.size(); ++i) diff += x.codes[i] != y.codes[i];
  CHECK(diff <= 2);  // float reassociation only
  b.block_size = 5;  // blocks that cut groups: the columns past a block lag by its errors at a group start
  const GptqMatrix y5 = gptq_quantize_matrix(p.w.data(), p.rows, p.d, p.h.data(), b);
  diff = 0;
  for (size_t i = 0; i < x.codes.size(); ++i) diff += x.codes[i] != y5.codes[i];
  CHECK(diff <= static_cast<int64_t>(x.codes.size() / 20));
  // Per channel (scales fixed before the walk) the two are the same up to float reassociation.
  a.group_size = b.group_size = -1;
  const GptqMatrix u = gptq_quantize_matrix(p.w.data(), p.rows, p.d, p.h.data(), a);
  const GptqMatrix v = gptq_quantize_matrix(p.w.data(), p.rows, p.d, p.h.data(), b);
  diff = 0;
  for (size_t i = 0; i < u.codes.size(); ++i) diff += u.codes[i] != v.codes[i];
  CHECK(diff <= 2);
}

TEST_CASE("gptq: a Hessian that is not positive definite raises the dampening and says so", "[gptq]") {
  // Pairs of columns with H = [[1, 2], [2, 1]] (eigenvalues 3 and -1): 1% and 10% of the mean
  // diagonal do not help, 1000% does.
  const int64_t d = 8, rows = 4;
  std::vector<float> h(static_cast<size_t>(d * d), 0.0f);
  for (int64_t i = 0; i < d; i += 2) {
    h[static_cast<size_t>(i * d + i)] = h[static_cast<size_t>((i + 1) * d + i + 1)] = 1;
    h[static_cast<size_t>(i * d + i + 1)] = h[static_cast<size_t>((i + 1) * d + i)] = 2;
  }
  std::vector<float> w(static_cast<size_t>(rows * d));
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.7f * static_cast<float>(i));
  GptqParams p;
  p.bits = 4, p.group_size = 8;
  const GptqMatrix m = gptq_quantize_matrix(w.data(), rows, d, h.data(), p);
  CHECK(m.damp_raises >= 2);
  CHECK(m.damp == Approx(0.01 * std::pow(10.0, m.damp_raises)));
  p.max_damp_raises = 1;
  try {
    (void)gptq_quantize_matrix(w.data(), rows, d, h.data(), p);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::smoothquant_failed);
    CHECK_THAT(std::string(e.what()), Catch::Matchers::Contains("not positive definite"));
  }
  // A column that never saw signal is zeroed and counted.
  const test::CalibProblem q = test::calib_problem(128, 16, 4, 3);
  std::vector<float> hd = q.h;
  for (int64_t j = 0; j < 16; ++j) hd[static_cast<size_t>(5 * 16 + j)] = hd[static_cast<size_t>(j * 16 + 5)] = 0;
  p.max_damp_raises = 4;
  const GptqMatrix z = gptq_quantize_matrix(q.w.data(), 4, 16, hd.data(), p);
  CHECK(z.dead_columns == 1);
  const auto dz = z.dequantize();
  for (int64_t r = 0; r < 4; ++r) CHECK(dz[static_cast<size_t>(r * 16 + 5)] == 0.0f);
}

TEST_CASE("gptq: the in-place inverse factor is the upper Cholesky factor of the damped inverse", "[gptq]") {
  // n = 300 spans three of the in-place inversion's 128-column blocks; H = XᵀX of correlated
  // columns (condition number ~1e4), against chol((H + λ mean(diag H) I)^-1) in double.
  const int64_t n = 300, t = 600;
  std::mt19937 rng(7);
  std::normal_distribution<double> nd;
  Eigen::MatrixXd X(t, n);
  for (int64_t i = 0; i < t; ++i) {
    double run = 0;
    for (int64_t j = 0; j < n; ++j) X(i, j) = run = 0.9 * run + nd(rng) * (1.0 + static_cast<double>(j % 7));
  }
  const Eigen::MatrixXd H = X.transpose() * X / static_cast<double>(t);
  const double damp = 0.01;
  Eigen::MatrixXd Hd = H;
  Hd.diagonal().array() += damp * H.diagonal().mean();
  const Eigen::MatrixXd Hinv = Hd.llt().solve(Eigen::MatrixXd::Identity(n, n));
  const Eigen::MatrixXd Uref = Hinv.llt().matrixU();
  const gptq_impl::RowMat Hf = H.cast<float>();
  const gptq_impl::GpGemmFn gemm = engine::Exec::with_threads(1).ops.gemm;
  gptq_impl::RowMat U = Hf;
  double used = 0;
  int raises = -1;
  REQUIRE(gptq_impl::gp_inverse_factor(U, damp, 4, used, raises, 1, gemm));
  CHECK(raises == 0);
  CHECK(used == damp);
  const Eigen::MatrixXd Ud = U.cast<double>();
  CHECK(Ud.triangularView<Eigen::StrictlyLower>().toDenseMatrix().isZero(0.0));
  CHECK((Ud - Uref).norm() / Uref.norm() < 1e-4);
  CHECK((Ud.transpose() * Ud - Hinv).norm() / Hinv.norm() < 1e-4);
  // The stripes fix the order of every sum: the same bits on 1 and 3 threads.
  gptq_impl::RowMat U1 = Hf, U3 = Hf;
  REQUIRE(gptq_impl::gp_inverse_factor(U1, damp, 4, used, raises, 1, gemm));
  REQUIRE(gptq_impl::gp_inverse_factor(U3, damp, 4, used, raises, 3, gemm));
  CHECK(U1 == U3);

  // A failed attempt leaves H in the triangle it did not touch: an indefinite H (rank 24 of 300,
  // diagonal lowered by 5% of its mean) fails at λ 0.01 and is factored at the raised λ exactly as a
  // first attempt at that λ would be.
  Eigen::MatrixXd Y(24, n);
  for (int64_t i = 0; i < 24; ++i)
    for (int64_t j = 0; j < n; ++j) Y(i, j) = nd(rng);
  gptq_impl::RowMat Hs = (Y.transpose() * Y / 24.0).cast<float>();
  const float low = 0.05f * Hs.diagonal().mean();
  Hs.diagonal().array() -= low;
  gptq_impl::RowMat R = Hs;
  REQUIRE(gptq_impl::gp_inverse_factor(R, damp, 4, used, raises, 2, gemm));
  CHECK(raises >= 1);
  gptq_impl::RowMat D = Hs;
  int raises_direct = -1;
  double used_direct = 0;
  REQUIRE(gptq_impl::gp_inverse_factor(D, used, 0, used_direct, raises_direct, 2, gemm));
  CHECK(raises_direct == 0);
  CHECK(R == D);
  gptq_impl::RowMat F = Hs;
  CHECK_FALSE(gptq_impl::gp_inverse_factor(F, damp, 0, used, raises, 2, gemm));
}

TEST_CASE("gptq: the consuming quantizer works in the weights' and the Hessian's own storage, same result", "[gptq]") {
  test::CalibProblem p = test::calib_problem(200, 96, 6, 9);
  // A dead input channel: its weights are zeroed in the walk's matrix, in place as in a copy.
  for (int64_t i = 0; i < p.d; ++i) p.h[static_cast<size_t>(i * p.d + 5)] = p.h[static_cast<size_t>(5 * p.d + i)] = 0;
  for (const GptqActOrder order : {GptqActOrder::none, GptqActOrder::static_groups, GptqActOrder::group})
    for (const bool take_h : {true, false}) {
      INFO("act order " << static_cast<int>(order) << ", take_h " << take_h);
      GptqParams gp;
      gp.bits = 4, gp.group_size = 32, gp.act_order = order;
      const GptqMatrix a = gptq_quantize_matrix(p.w.data(), p.rows, p.d, p.h.data(), gp);
      CHECK(a.dead_columns == 1);
      gptq_impl::RowMat H = Eigen::Map<const gptq_impl::RowMat>(p.h.data(), p.d, p.d);
      std::vector<float> w = p.w;
      const GptqMatrix b = gptq_impl::gp_quantize_consuming(w, p.rows, p.d, H, take_h, gp, Context{});
      CHECK(w.empty());  // the walk's matrix, released
      if (take_h) {
        CHECK(H.size() == 0);
      } else {
        REQUIRE(H.size() == p.d * p.d);
        CHECK(std::equal(p.h.begin(), p.h.end(), H.data()));  // left as it was
      }
      CHECK(a.codes == b.codes);
      CHECK(a.scales == b.scales);
      CHECK(a.zeros == b.zeros);
      CHECK(a.g_idx == b.g_idx);
      CHECK(a.perm == b.perm);
      CHECK(a.dead_columns == b.dead_columns);
      CHECK(a.loss == b.loss);
    }
  std::vector<float> short_w(10);
  gptq_impl::RowMat H = Eigen::Map<const gptq_impl::RowMat>(p.h.data(), p.d, p.d);
  CHECK_THROWS_AS(gptq_impl::gp_quantize_consuming(short_w, p.rows, p.d, H, true, GptqParams{}, Context{}), Error);
}

TEST_CASE("gptq: act-order groupings", "[gptq]") {
  const test::CalibProblem p = test::calib_problem(256, 64, 6, 5);
  GptqParams gp;
  gp.bits = 4, gp.group_size = 16;
  gp.act_order = GptqActOrder::group;
  const GptqMatrix g = gptq_quantize_matrix(p.w.data(), p.rows, p.d, p.h.data(), gp);
  REQUIRE(g.perm.size() == 64);
  std::vector<int32_t> sorted = g.perm;
  std::sort(sorted.begin(), sorted.end());
  for (int32_t i = 0; i < 64; ++i) CHECK(sorted[static_cast<size_t>(i)] == i);  // a permutation
  for (size_t j = 1; j < 64; ++j)  // by descending diag(H)
    CHECK(p.h[static_cast<size_t>(g.perm[j - 1]) * 65] >= p.h[static_cast<size_t>(g.perm[j]) * 65]);
  std::vector<int> count(4, 0);
  bool monotonic = true;
  for (size_t j = 0; j < 64; ++j) {
    // The group of a column is its position in the walk / group size.
    CHECK(g.g_idx[static_cast<size_t>(g.perm[j])] == static_cast<int32_t>(j / 16));
    ++count[static_cast<size_t>(g.g_idx[j])];
    if (j > 0 && g.g_idx[j] < g.g_idx[j - 1]) monotonic = false;
  }
  for (int c : count) CHECK(c == 16);
  CHECK_FALSE(monotonic);  // uneven channel energies: not the identity grouping
  // The stored form reproduces the walk: each group's scale covers its columns' codes.
  const auto dq = g.dequantize();
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c = 0; c < p.d; ++c) {
      const size_t gi = static_cast<size_t>(r * g.groups + g.g_idx[static_cast<size_t>(c)]);
      CHECK(dq[static_cast<size_t>(r * p.d + c)] ==
            g.scales[gi] * float(int32_t(g.codes[static_cast<size_t>(r * p.d + c)]) - g.zeros[gi]));
    }
  // Static groups: the walk is reordered, the groups stay i / group size.
  gp.act_order = GptqActOrder::static_groups;
  const GptqMatrix s = gptq_quantize_matrix(p.w.data(), p.rows, p.d, p.h.data(), gp);
  CHECK(s.perm == g.perm);
  for (int32_t c = 0; c < 64; ++c) CHECK(s.g_idx[static_cast<size_t>(c)] == c / 16);
}

TEST_CASE("gptq: the importance-weighted scale search shrinks ranges and lowers the output error", "[gptq]") {
  const test::CalibProblem p = test::calib_problem(512, 64, 24, 13);
  struct Case {
    int bits;
    int64_t group;
    bool sym;
    GptqActOrder ao;
  };
  for (const Case c : {Case{4, 32, true, GptqActOrder::static_groups}, Case{3, 16, false, GptqActOrder::static_groups},
                       Case{4, 32, true, GptqActOrder::none}, Case{2, 32, false, GptqActOrder::group}}) {
    INFO("bits " << c.bits << " group " << c.group << " sym " << c.sym << " act-order " << int(c.ao));
    GptqParams a;
    a.bits = c.bits, a.group_size = c.group, a.sym = c.sym, a.act_order = c.ao, a.scale_search = 0;
    GptqParams b = a;
    b.scale_search = 20;
    const GptqMatrix x = gptq_quantize_matrix(p.w.data(), p.rows, p.d, p.h.data(), a);
    const GptqMatrix y = gptq_quantize_matrix(p.w.data(), p.rows, p.d, p.h.data(), b);
    const double ex = test::calib_output_error(p, x.dequantize()), ey = test::calib_output_error(p, y.dequantize());
    CHECK(ey < 0.97 * ex);
    if (c.ao == GptqActOrder::static_groups) {
      // Scales fixed from the same original weights: each is min-max's or at most 20% below it.
      int shrunk = 0;
      for (size_t i = 0; i < x.scales.size(); ++i) {
        if (c.sym) {
          CHECK(y.scales[i] <= x.scales[i]);
          CHECK(y.scales[i] >= 0.79f * x.scales[i]);
        }
        shrunk += y.scales[i] < 0.995f * x.scales[i];
      }
      CHECK(shrunk > static_cast<int>(x.scales.size() / 4));
    }
    for (uint8_t q : y.codes) CHECK(q < (1u << c.bits));
  }
  GptqParams bad;
  bad.scale_search = 100;
  CHECK_THROWS_WITH(validate(bad), Catch::Matchers::Contains("scale search"));
  bad.scale_search = -1;
  CHECK_THROWS_WITH(validate(bad), Catch::Matchers::Contains("scale search"));
}

TEST_CASE("gptq: usage errors", "[gptq]") {
  std::vector<float> w(4 * 96, 0.5f), h(96 * 96, 0.0f);
  for (int i = 0; i < 96; ++i) h[static_cast<size_t>(i * 97)] = 1;
  GptqParams p;
  p.bits = 5;
  CHECK_THROWS_WITH(gptq_quantize_matrix(w.data(), 4, 96, h.data(), p), Catch::Matchers::Contains("bits"));
  p.bits = 4;
  p.group_size = 64;
  try {
    (void)gptq_quantize_matrix(w.data(), 4, 96, h.data(), p);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::invalid_argument);
    CHECK_THAT(std::string(e.what()), Catch::Matchers::Contains("does not divide"));
  }
  p.group_size = 32;
  CHECK_THROWS(gptq_quantize_matrix(w.data(), 4, 96, nullptr, p));  // GPTQ needs H
  p.damp = 0;
  CHECK_THROWS_WITH(gptq_quantize_matrix(w.data(), 4, 96, h.data(), p), Catch::Matchers::Contains("damp"));
}

TEST_CASE("gptq: packing vectors", "[gptq]") {
  using namespace lq::gptq_pack;
  // compressed-tensors, 4-bit: 8 codes a word, lowest bits first, padding in the last word.
  const uint8_t c4[10] = {1, 2, 3, 4, 5, 6, 7, 8, 15, 0};
  const auto p4 = ct_pack_rows(c4, 1, 10, 4);
  REQUIRE(p4.size() == 2);
  CHECK(static_cast<uint32_t>(p4[0]) == 0x87654321u);
  CHECK(static_cast<uint32_t>(p4[1]) == 0x0000000Fu);
  CHECK(ct_unpack_rows(p4.data(), 1, 10, 4) == std::vector<uint8_t>(c4, c4 + 10));
  // compressed-tensors zero points packed along the output axis: [ceil(out / 8), groups].
  const int32_t z[9 * 2] = {1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15, 8, 0, 6, 6};
  const auto pz = ct_pack_columns(z, 9, 2, 4);
  REQUIRE(pz.size() == 4);
  CHECK(static_cast<uint32_t>(pz[0]) == 0x87654321u);
  CHECK(static_cast<uint32_t>(pz[1]) == 0x0FEDCBA9u);
  CHECK(pz[2] == 6);
  CHECK(pz[3] == 6);
  // compressed-tensors 3-bit (0.19's dense packing): a bit stream, value 10 straddles words 0 and 1.
  std::vector<uint8_t> c3(11, 7);
  c3[10] = 5;  // binary 101: bits 30-31 of word 0 get 01, bit 0 of word 1 gets 1
  const auto p3 = ct_pack_rows(c3.data(), 1, 11, 3);
  REQUIRE(p3.size() == 2);
  CHECK(static_cast<uint32_t>(p3[0]) == 0x7FFFFFFFu);
  CHECK(p3[1] == 1);
  CHECK(ct_unpack_rows(p3.data(), 1, 11, 3) == c3);

  // GPTQ 3-bit: 32 inputs in 3 words, values 10 and 21 straddle word boundaries.
  std::vector<uint8_t> q(32);
  for (int i = 0; i < 32; ++i) q[static_cast<size_t>(i)] = static_cast<uint8_t>((i * 5 + 3) % 8);
  uint32_t ew[3] = {0, 0, 0};
  for (int i = 0; i < 10; ++i) ew[0] |= uint32_t(q[i]) << (3 * i);
  ew[0] |= (uint32_t(q[10]) & 3u) << 30;
  ew[1] |= uint32_t(q[10]) >> 2;
  for (int i = 11; i < 21; ++i) ew[1] |= uint32_t(q[i]) << (3 * (i - 11) + 1);
  ew[1] |= (uint32_t(q[21]) & 1u) << 31;
  ew[2] |= uint32_t(q[21]) >> 1;
  for (int i = 22; i < 32; ++i) ew[2] |= uint32_t(q[i]) << (3 * (i - 22) + 2);
  // Two outputs: the second has its codes reversed; qweight is [in * 3 / 32, out] = [3, 2].
  std::vector<uint8_t> two(64);
  for (int i = 0; i < 32; ++i) two[static_cast<size_t>(i)] = q[static_cast<size_t>(i)], two[static_cast<size_t>(32 + i)] = q[static_cast<size_t>(31 - i)];
  const auto qw = gptq_pack_qweight(two.data(), 2, 32, 3);
  REQUIRE(qw.size() == 6);
  for (int k = 0; k < 3; ++k) CHECK(static_cast<uint32_t>(qw[static_cast<size_t>(2 * k)]) == ew[k]);
  CHECK(gptq_unpack_qweight(qw.data(), 2, 32, 3) == two);
  // GPTQ 4-bit: qweight word [r, o] holds inputs 8r..8r+7 of output o.
  std::vector<uint8_t> c(2 * 16);
  for (int i = 0; i < 32; ++i) c[static_cast<size_t>(i)] = static_cast<uint8_t>(i % 16);
  const auto qw4 = gptq_pack_qweight(c.data(), 2, 16, 4);
  REQUIRE(qw4.size() == 4);
  CHECK(static_cast<uint32_t>(qw4[0]) == 0x76543210u);  // [0, 0]
  CHECK(static_cast<uint32_t>(qw4[1]) == 0x76543210u);  // [0, 1]: inputs 0..7 of output 1 are 0..7
  CHECK(static_cast<uint32_t>(qw4[2]) == 0xFEDCBA98u);  // [1, 0]
  // qzeros: v1 stores zero - 1 (symmetric 4-bit: 8 -> 7; 0 wraps to 15), v2 the zero.
  std::vector<int32_t> zs(8, 8);
  CHECK(static_cast<uint32_t>(gptq_pack_qzeros(zs.data(), 8, 1, 4, true)[0]) == 0x77777777u);
  CHECK(static_cast<uint32_t>(gptq_pack_qzeros(zs.data(), 8, 1, 4, false)[0]) == 0x88888888u);
  zs[0] = 0;
  const auto v1 = gptq_pack_qzeros(zs.data(), 8, 1, 4, true);
  CHECK(static_cast<uint32_t>(v1[0]) == 0x7777777Fu);
  CHECK(gptq_unpack_qzeros(v1.data(), 8, 1, 4, true) == zs);
  // 3-bit zeros over 32 outputs straddle like qweight.
  std::vector<int32_t> z3(32 * 2);
  for (int o = 0; o < 32; ++o) z3[static_cast<size_t>(o * 2)] = q[static_cast<size_t>(o)], z3[static_cast<size_t>(o * 2 + 1)] = 4;
  const auto qz3 = gptq_pack_qzeros(z3.data(), 32, 2, 3, false);
  REQUIRE(qz3.size() == 6);
  for (int k = 0; k < 3; ++k) CHECK(static_cast<uint32_t>(qz3[static_cast<size_t>(k)]) == ew[k]);
  CHECK(gptq_unpack_qzeros(qz3.data(), 32, 2, 3, false) == z3);
  CHECK(gptq_unpack_qzeros(gptq_pack_qzeros(z3.data(), 32, 2, 3, true).data(), 32, 2, 3, true) == z3);
}

namespace {

struct GtTiny {
  std::unique_ptr<ModelSource> src;
  fs::path calib;
};

std::optional<GtTiny> gt_tiny() {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return std::nullopt;
  return GtTiny{ModelSource::open(*dir), *calib};
}

GptqConfig gt_tiny_config(fs::path calib) {
  GptqConfig c;
  c.calibration_samples = 4;
  c.ctx = 64;
  c.calibration_data = std::move(calib);
  return c;
}

}  // namespace

TEST_CASE("gptq: tiny model to compressed-tensors pack-quantized, read back", "[gptq]") {
  auto t = gt_tiny();
  if (!t) return;
  GptqConfig c = gt_tiny_config(t->calib);
  c.params.group_size = 64;
  c.params.sym = false;
  c.params.act_order = GptqActOrder::group;
  GptqQuantizer q(*t->src, c);
  q.run();
  test::TempDir tmp;
  const GptqResult r = q.write(tmp / "out");
  CHECK(r.damp_raises == 0);
  CHECK(r.layers.size() == 42);
  CHECK(r.chunks == 4);
  const auto cfg = nlohmann::json::parse(read_file(tmp / "out" / "config.json"));
  const auto& qc = cfg["quantization_config"];
  CHECK(qc["quant_method"] == "compressed-tensors");
  CHECK(qc["format"] == "pack-quantized");
  CHECK(qc["quantization_status"] == "compressed");
  CHECK(qc["ignore"] == nlohmann::json::array({"lm_head"}));
  const auto& wa = qc["config_groups"]["group_0"]["weights"];
  CHECK(wa["num_bits"] == 4);
  CHECK(wa["group_size"] == 64);
  CHECK(wa["strategy"] == "group");
  CHECK(wa["symmetric"] == false);
  CHECK(wa["actorder"] == "group");
  CHECK(qc["config_groups"]["group_0"]["input_activations"].is_null());
  CHECK(fs::exists(tmp / "out" / "tokenizer.json"));

  SafetensorsFile f(tmp / "out" / "model.safetensors");
  for (const std::string m : {"model.layers.0.self_attn.q_proj", "model.layers.5.mlp.down_proj"}) {
    INFO(m);
    const GptqMatrix& g = q.matrix(m);
    CHECK(f.find(m + ".weight") == nullptr);
    const auto packed = gt_i32(f, m + ".weight_packed");
    CHECK(gptq_pack::ct_unpack_rows(packed.data(), g.rows, g.cols, 4) == g.codes);
    const auto sc = gt_u16(f, m + ".weight_scale", StDtype::BF16);
    REQUIRE(sc.size() == g.scales.size());
    for (size_t i = 0; i < sc.size(); ++i) CHECK(bf16_to_f32(sc[i]) == g.scales[i]);  // already on the bf16 grid
    const auto zp = gt_i32(f, m + ".weight_zero_point");
    CHECK(zp == gptq_pack::ct_pack_columns(g.zeros.data(), g.rows, g.groups, 4));
    CHECK(gt_i32(f, m + ".weight_g_idx") == g.g_idx);
    const StTensor* shp = f.find(m + ".weight_shape");
    REQUIRE(shp != nullptr);
    int64_t s[2];
    f.read(shp->begin, 16, s);
    CHECK(s[0] == g.rows);
    CHECK(s[1] == g.cols);
  }
  // Embeddings and norms are copied unchanged.
  CHECK(f.find("model.embed_tokens.weight")->dtype == StDtype::BF16);
  CHECK(f.find("model.norm.weight") != nullptr);
  // The engine's model now holds the dequantized q_proj, rows in the engine's (RoPE) order.
  const auto deq = q.matrix("model.layers.0.self_attn.q_proj").dequantize();
  const auto eng = q.model().tensor_f32("blk.0.attn_q.weight");
  std::multiset<float> a(deq.begin(), deq.end()), b(eng.begin(), eng.end());
  CHECK(a == b);
}

TEST_CASE("gptq: tiny model to the GPTQ layout, v1 zeros and fp16 scales", "[gptq]") {
  auto t = gt_tiny();
  if (!t) return;
  GptqConfig c = gt_tiny_config(t->calib);
  c.layout = GptqLayout::gptq;
  c.params.bits = 3;
  c.params.act_order = GptqActOrder::static_groups;
  GptqQuantizer q(*t->src, c);
  q.run();
  test::TempDir tmp;
  q.write(tmp / "out");
  const auto qc = nlohmann::json::parse(read_file(tmp / "out" / "quantize_config.json"));
  CHECK(qc["bits"] == 3);
  CHECK(qc["group_size"] == 128);
  CHECK(qc["desc_act"] == true);
  CHECK(qc["static_groups"] == true);
  CHECK(qc["sym"] == true);
  CHECK(qc["checkpoint_format"] == "gptq");
  const auto cfg = nlohmann::json::parse(read_file(tmp / "out" / "config.json"));
  CHECK(cfg["quantization_config"]["quant_method"] == "gptq");
  SafetensorsFile f(tmp / "out" / "model.safetensors");
  const std::string m = "model.layers.2.mlp.up_proj";
  const GptqMatrix& g = q.matrix(m);
  const StTensor* qw = f.find(m + ".qweight");
  REQUIRE(qw != nullptr);
  CHECK(qw->shape == std::vector<int64_t>{g.cols * 3 / 32, g.rows});
  const auto qwv = gt_i32(f, m + ".qweight");
  CHECK(gptq_pack::gptq_unpack_qweight(qwv.data(), g.rows, g.cols, 3) == g.codes);
  const auto qz = gt_i32(f, m + ".qzeros");
  const auto zeros = gptq_pack::gptq_unpack_qzeros(qz.data(), g.rows, g.groups, 3, true);
  CHECK(zeros == g.zeros);
  for (int32_t z : zeros) CHECK(z == 4);
  const auto sc = gt_u16(f, m + ".scales", StDtype::F16);
  for (int64_t gi = 0; gi < g.groups; ++gi)
    for (int64_t r = 0; r < g.rows; ++r)
      CHECK(fp16_to_f32(sc[static_cast<size_t>(gi * g.rows + r)]) == g.scales[static_cast<size_t>(r * g.groups + gi)]);
  const auto gi = gt_i32(f, m + ".g_idx");
  for (int64_t i = 0; i < g.cols; ++i) CHECK(gi[static_cast<size_t>(i)] == static_cast<int32_t>(i / 128));
}

TEST_CASE("gptq: the AWQ GEMM packing, by hand and read back", "[gptq]") {
  // One input, eight outputs with codes 0..7: nibble k holds output {0, 2, 4, 6, 1, 3, 5, 7}[k].
  std::vector<uint8_t> codes = {0, 1, 2, 3, 4, 5, 6, 7};
  const auto w1 = gptq_pack::awq_pack_qweight(codes.data(), 8, 1);
  REQUIRE(w1.size() == 1);
  CHECK(static_cast<uint32_t>(w1[0]) == 0x75316420u);
  const std::vector<int32_t> z = {15, 0, 1, 2, 3, 4, 5, 6};
  CHECK(static_cast<uint32_t>(gptq_pack::awq_pack_qzeros(z.data(), 8, 1)[0]) == 0x6420531fu);
  // 16 outputs x 64 inputs, groups of 32: packed, then unpacked by the AWQ reader.
  const int64_t out = 16, in = 64, gs = 32, groups = in / gs;
  std::mt19937 rng(7);
  std::vector<uint8_t> q(static_cast<size_t>(out * in));
  for (auto& c : q) c = static_cast<uint8_t>(rng() % 16);
  std::vector<int32_t> zeros(static_cast<size_t>(out * groups));
  for (auto& c : zeros) c = static_cast<int32_t>(rng() % 16);
  std::vector<float> scales(static_cast<size_t>(groups * out));  // [G, out], as stored
  for (auto& s : scales) s = 0.01f * static_cast<float>(1 + rng() % 50);
  const auto qw = gptq_pack::awq_pack_qweight(q.data(), out, in);
  const auto qz = gptq_pack::awq_pack_qzeros(zeros.data(), out, groups);
  CHECK(qw.size() == static_cast<size_t>(in * out / 8));
  CHECK(qz.size() == static_cast<size_t>(groups * out / 8));
  const unpack::IntWeight u = unpack::awq_gemm(qw, qz, scales, out, in, gs);
  CHECK(u.q == q);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t g = 0; g < groups; ++g) {
      CHECK(u.zero[static_cast<size_t>(o * groups + g)] == zeros[static_cast<size_t>(o * groups + g)]);
      CHECK(u.scale[static_cast<size_t>(o * groups + g)] == scales[static_cast<size_t>(g * out + o)]);
    }
  const auto cfg = gptq_pack::awq_quantization_config(gs);
  CHECK(cfg["quant_method"] == "awq");
  CHECK(cfg["version"] == "gemm");
  CHECK(cfg["zero_point"] == true);
}

TEST_CASE("gptq: the engine holds a directory's integer linears as W4G / W8G blocks, computing what their F32 values do",
          "[gptq][engine]") {
  auto t = gt_tiny();
  if (!t) return;
  struct Case {
    const char* name;
    int bits;
    int64_t group;
    bool sym;
    GptqActOrder order;
    GptqLayout layout;
    QuantType want;  // the engine's type of the linears
  };
  const Case cases[] = {
      {"4-bit g128 symmetric", 4, 128, true, GptqActOrder::none, GptqLayout::compressed_tensors, QuantType::W4G},
      {"3-bit g64 asymmetric", 3, 64, false, GptqActOrder::none, GptqLayout::compressed_tensors, QuantType::W4G},
      {"4-bit per channel, GPTQ layout", 4, -1, true, GptqActOrder::none, GptqLayout::gptq, QuantType::W4G},
      {"4-bit g128, AWQ layout", 4, 128, false, GptqActOrder::none, GptqLayout::awq, QuantType::W4G},
      // group act-order: the columns sorted by group, every 32 of them in one
      {"4-bit g32 group act-order", 4, 32, true, GptqActOrder::group, GptqLayout::compressed_tensors, QuantType::W4G},
      {"4-bit g128 group act-order, GPTQ layout", 4, 128, false, GptqActOrder::group, GptqLayout::gptq, QuantType::W4G},
      // 8-bit codes: W8G (1.25 bytes a weight); a group not in whole blocks of 32: F32
      {"8-bit g128", 8, 128, true, GptqActOrder::none, GptqLayout::compressed_tensors, QuantType::W8G},
      {"8-bit per channel, asymmetric, GPTQ layout", 8, -1, false, GptqActOrder::none, GptqLayout::gptq, QuantType::W8G},
      {"4-bit g16", 4, 16, true, GptqActOrder::none, GptqLayout::compressed_tensors, QuantType::F32},
  };
  const std::vector<int32_t> toks = {1, 450, 17, 300, 45, 45, 1024, 7, 88, 2000, 3, 12, 9, 600};
  for (const Case& k : cases) {
    INFO(k.name);
    GptqConfig c = gt_tiny_config(t->calib);
    c.params.bits = k.bits;
    c.params.group_size = k.group;
    c.params.sym = k.sym;
    c.params.act_order = k.order;
    c.params.rtn = k.order == GptqActOrder::none;  // act-order needs GPTQ's walk
    c.layout = k.layout;
    test::TempDir tmp;
    GptqQuantizer q(*t->src, c);
    q.run();
    q.write(tmp / "out");
    auto src = ModelSource::open(tmp / "out");
    auto m = Model::load(*src);
    for (const LinearInfo& l : m->linears()) {
      if (l.layer < 0) continue;  // the output projection is not quantized
      INFO(l.name);
      CHECK(l.type == k.want);
      CHECK(m->tensor_type(l.name) == k.want);
      // its values are the source's F32 rows, bit for bit
      const ModelTensor& st = src->at(l.name);
      std::vector<float> want(static_cast<size_t>(st.n_elements()));
      src->read_rows_f32(st, 0, st.n_rows(), want.data());
      CHECK(m->tensor_f32(l.name) == want);
    }
    // The same logits once every block linear is F32 (the float GEMM instead of the blocks' tiles).
    // The output projection keeps its type: a BF16 one with float activations runs AMX's split
    // product where the CPU has AMX, which rounds its sums in another order than the float GEMM.
    const std::vector<float> held = test::logits_of(*m, toks);
    for (const LinearInfo& l : m->linears())
      if (l.layer >= 0) m->replace_tensor(l.name, m->tensor_f32(l.name), QuantType::F32);
    CHECK(test::logits_of(*m, toks) == held);
  }
}

TEST_CASE("gptq: interrupted writes leave nothing, foreign directories are not replaced", "[gptq]") {
  auto t = gt_tiny();
  if (!t) return;
  GptqConfig c = gt_tiny_config(t->calib);
  c.params.rtn = true;
  GptqQuantizer q(*t->src, c);
  q.run();
  test::check_directory_writes([&](const fs::path& out, const Context& ctx) { q.write(out, ctx); });
}

TEST_CASE("gptq: CLI errors exit with the contract's codes, nothing written", "[gptq][cli]") {
  auto dir = test::shared_file("models/tiny-llama");
  if (!dir) return;
  const std::string m = dir->string();
  test::TempDir tmp;
  std::ofstream(tmp / "short.txt") << "only a few words here";
  const std::string o = " -o " + (tmp / "o").string();
  for (const auto& c : std::vector<test::CliFailure>{
           {"quantize " + m + " gptq --bits 5" + o, 2, "bits"},
           {"quantize " + m + " gptq --group-size 96" + o, 2, "does not divide"},
           {"quantize " + m + " gptq --group-size 0" + o, 2, "group size"},
           {"quantize " + m + " gptq --sym --asym" + o, 2, "--asym"},
           {"quantize " + m + " gptq --layout bogus" + o, 2, "--layout"},
           {"quantize " + m + " gptq --layout awq --bits 3" + o, 2, "the AWQ layout stores 4-bit codes only"},
           {"quantize " + m + " gptq --layout awq --act-order-group" + o, 2, "the AWQ layout has no g_idx"},
           {"quantize " + m + " gptq --act-order --act-order-group" + o, 2, "exclude"},
           {"quantize " + m + " gptq --damp 0" + o, 2, "damp"},
           {"quantize " + m + " gptq --scale-search 100" + o, 2, "scale search"},
           {"quantize " + m + " rtn --scale-search 10" + o, 2, "not to round to nearest"},
           {"quantize " + m + " awq --scale-search 10" + o, 2, "--scale-search applies to the awq output format with --gptq only"},
           {"quantize " + m + " gguf -q Q4_0 --scale-search 10" + o, 2, "--scale-search"},
           {"quantize " + m + " gptq --expert-hessian-memory 1X" + o, 2, "cannot read '1X'"},
           {"quantize " + m + " rtn --expert-hessian-memory 1GiB" + o, 2, "not to round to nearest"},
           {"quantize " + m + " awq --expert-hessian-memory 1GiB" + o, 2, "--expert-hessian-memory does not apply"},
           {"quantize " + m + " gguf -q Q4_0 --expert-hessian-memory 1GiB" + o, 2, "gguf with --gptq"},
           {"quantize " + m + " gptq -q Q4_0" + o, 2, "--quantization"},
           {"quantize " + m + " gguf -q Q4_0 --bits 4" + o, 2, "--bits"},
           {"convert " + m + " gptq" + o, 2, "not a GGUF"},
           {"convert " + m + " marlin" + o, 2, "unknown target format 'marlin'"},
           {"convert " + m + " awq" + o, 2, "not a GGUF"},
           {"convert " + m + " awq --layout gptq_v2" + o, 2, "--layout"},
           {"convert " + m + " gptq -q Q4_0" + o, 2, "-q and --imatrix apply to target gguf"},
           {"convert " + m + " gguf -q Q4_0 --layout gptq" + o, 2, "--layout applies to target gptq only"},
           {"convert " + m + " compressed-tensors --layout gptq_v2" + o, 2, "--layout"},
           {"quantize " + m + " gptq --layout gptq --bits 3 --group-size 8 --ctx 4096 --calibration-data " +
                (tmp / "short.txt").string() + o,
            15, "short.txt"},
       })
    test::check_cli_failure(c);
  CHECK_FALSE(fs::exists(tmp / "o"));
  CHECK(test::no_write_leftovers(tmp.path()));
}

TEST_CASE("gptq: CLI writes the directory and reports the dampening", "[gptq][cli]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!dir || !calib) return;
  test::TempDir tmp;
  const auto r = test::run(test::cli_path() + " --format json quantize " + dir->string() +
                           " gptq --calibration-samples 2 --ctx 64 --act-order --calibration-data " + calib->string() +
                           " -o " + (tmp / "out").string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["status"] == "success");
  CHECK(j["format"] == "compressed-tensors");
  CHECK(j["method"] == "gptq");
  CHECK(j["quantization_level"] == "W4A16");
  CHECK(j["act_order"] == "static");
  CHECK(j["damp_raises"] == 0);
  CHECK(j["layer_summary"].size() == 42);
  CHECK(j["calibration_samples"] == 2);
  CHECK(j["effective_bpw"].get<double>() < 16);
  CHECK(fs::exists(tmp / "out" / "model.safetensors"));
  CHECK(test::no_write_leftovers(tmp.path()));
}

TEST_CASE("gptq: convert GGUF Q4_0 to the GPTQ layout keeps the codes and scales", "[gptq]") {
  auto gg = test::shared_file("golden/pure/Q4_0.gguf");
  if (!gg) return;
  test::TempDir tmp;
  const GgufConvertResult r = convert_gguf_to_gptq(*gg, tmp / "out", GptqLayout::gptq);
  CHECK(r.bits == 4);
  CHECK(r.group_size == 32);
  CHECK(r.sym);
  CHECK(r.exact.size() == 42);
  CHECK(r.requantized.empty());
  const auto qc = nlohmann::json::parse(read_file(tmp / "out" / "quantize_config.json"));
  CHECK(qc["group_size"] == 32);
  CHECK(qc["checkpoint_format"] == "gptq");
  auto src = ModelSource::open(*gg);
  SafetensorsFile f(tmp / "out" / "model.safetensors");
  const int64_t hd = src->config().head_dim;
  for (const std::string name : {"blk.0.attn_q.weight", "blk.1.attn_k.weight", "blk.3.ffn_down.weight"}) {
    INFO(name);
    const ModelTensor& t = src->at(name);
    REQUIRE(t.type == QuantType::Q4_0);
    const int64_t rows = t.n_rows(), cols = t.row_length(), nb = cols / 32;
    std::vector<uint8_t> raw(static_cast<size_t>(rows) * t.row_bytes());
    src->read_rows_raw(t, 0, rows, raw.data());
    std::vector<float> deq(static_cast<size_t>(rows * cols));
    src->read_rows_f32(t, 0, rows, deq.data());
    const std::string m = *names_gguf_module(name);
    const auto qw = gt_i32(f, m + ".qweight");
    const auto codes = gptq_pack::gptq_unpack_qweight(qw.data(), rows, cols, 4);
    const auto qz = gt_i32(f, m + ".qzeros");
    for (int32_t z : gptq_pack::gptq_unpack_qzeros(qz.data(), rows, nb, 4, true)) CHECK(z == 8);
    for (int32_t w : qz) CHECK(static_cast<uint32_t>(w) == 0x77777777u);
    const auto sc = gt_u16(f, m + ".scales", StDtype::F16);
    const bool permuted = name.find("attn_q") != std::string::npos || name.find("attn_k") != std::string::npos;
    int64_t bad = 0;
    for (int64_t row = 0; row < rows; ++row) {
      // The Hugging Face row of GGUF row `row` (llama.cpp's converter permutes q/k for RoPE).
      const int64_t h = permuted ? (row / hd) * hd + (row % hd % 2) * (hd / 2) + (row % hd) / 2 : row;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = raw.data() + static_cast<size_t>(row) * t.row_bytes() + static_cast<size_t>(b) * 18;
        uint16_t d;
        std::memcpy(&d, blk, 2);
        bad += sc[static_cast<size_t>(b * rows + h)] != d;
        for (int j = 0; j < 16; ++j) {
          bad += codes[static_cast<size_t>(h * cols + b * 32 + j)] != (blk[2 + j] & 15);
          bad += codes[static_cast<size_t>(h * cols + b * 32 + j + 16)] != (blk[2 + j] >> 4);
        }
        for (int j = 0; j < 32; ++j) {  // the GPTQ dequantization equals the GGUF's
          const float s = fp16_to_f32(sc[static_cast<size_t>(b * rows + h)]);
          const float v = s * float(int(codes[static_cast<size_t>(h * cols + b * 32 + j)]) - 8);
          bad += v != deq[static_cast<size_t>(row * cols + b * 32 + j)];
        }
      }
    }
    CHECK(bad == 0);
  }
  // A non-GGUF source and an existing directory are refused.
  if (auto hf = test::shared_file("models/tiny-llama")) try {
    (void)convert_gguf_to_gptq(*hf, tmp / "again", GptqLayout::gptq);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::invalid_argument);
  }
  try {
    (void)convert_gguf_to_gptq(*gg, tmp / "out", GptqLayout::gptq);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::output_error);
  }
  CHECK(test::no_write_leftovers(tmp.path()));
}

TEST_CASE("gptq: convert GGUF Q8_0 and Q4_1 to compressed-tensors, saying what is lost", "[gptq]") {
  auto q8 = test::shared_file("golden/pure/Q8_0.gguf");
  auto q41 = test::shared_file("golden/pure/Q4_1.gguf");
  if (!q8 || !q41) return;
  test::TempDir tmp;
  const GgufConvertResult a = convert_gguf_to_gptq(*q8, tmp / "q8", GptqLayout::compressed_tensors);
  CHECK(a.bits == 8);
  CHECK(a.exact.size() == 42);
  const auto cfg = nlohmann::json::parse(read_file(tmp / "q8" / "config.json"));
  CHECK(cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] == 8);
  CHECK(cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"] == 32);
  SafetensorsFile f(tmp / "q8" / "model.safetensors");
  CHECK(f.find("model.layers.0.mlp.up_proj.weight_packed")->shape == std::vector<int64_t>{768, 64});
  CHECK(f.find("model.layers.0.mlp.up_proj.weight_scale")->dtype == StDtype::F16);
  // llama.cpp's Q4_1 minima are not multiples of the scale: those tensors are rounded to nearest.
  const GgufConvertResult b = convert_gguf_to_gptq(*q41, tmp / "q41", GptqLayout::compressed_tensors);
  CHECK_FALSE(b.sym);
  CHECK(b.exact.size() + b.requantized.size() == 42);
  if (!b.requantized.empty()) {
    CHECK(b.worst_rel_rmse > 0);
    CHECK(b.worst_rel_rmse < 0.2);
    CHECK_FALSE(b.worst_module.empty());
  }
  CHECK_FALSE(b.lost.empty());
  SafetensorsFile g(tmp / "q41" / "model.safetensors");
  CHECK(g.find("model.layers.0.mlp.up_proj.weight_zero_point") != nullptr);
}
