// Prompt-processing kernels (kernels/cpu/qgemm.hpp, isa_ops.hpp) on every instruction set this
// machine runs: activation records equal the reference Q8_0 / Q8_K quantizers, panel GEMMs equal
// the scalar reference dots bit for bit, bf16 GEMM equals a double product of the bf16 values,
// and results do not depend on how rows and tokens are split.
#include <lq/quant_type.hpp>

#include "kernels/cpu/rows.hpp"
#include "core/half.hpp"
#include "engine_kernels.hpp"
#include "matmul.hpp"
#include "qgemm.hpp"
#include "types/ref/blocks.hpp"
#include "support/cpu_isa.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

LQ_CPU_QGEMM_KERNELS(LQ_CPU_EXTERN)
LQ_CPU_MATMUL_KERNELS(LQ_CPU_EXTERN)

using namespace lq;
using cpu::QActLayout;
using cpu::QGemmArgs;

namespace {

using QGemmFn = void (*)(const QGemmArgs&);
using ActFn = void (*)(const float*, int64_t, const QActLayout&, uint8_t*);

struct IsaSet {
  std::string name;
  ActFn act_q8_0, act_q8_k, act_bf16;
  QGemmFn q4_0, q5_0, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, bf16;
};

template <class A>
IsaSet isa_set(const char* name) {
  using namespace lq::cpu;
  return {name,
          QuantizeActQ8_0<A>::run,
          QuantizeActQ8K<A>::run,
          QuantizeActBf16<A>::run,
          QGemmQ4_0<A>::run,
          QGemmQ5_0<A>::run,
          QGemmQ8_0<A>::run,
          QGemmQ2K<A>::run,
          QGemmQ3K<A>::run,
          QGemmQ4K<A>::run,
          QGemmQ5K<A>::run,
          QGemmQ6K<A>::run,
          GemmBf16<A>::run};
}

std::vector<IsaSet> usable_isas() {
  std::vector<IsaSet> out;
  test::for_each_cpu_isa([&]<class A>(const char* name) { out.push_back(isa_set<A>(name)); });
  return out;
}

QActLayout layout(int64_t k, int block) { return cpu::qact_layout(k, block); }
QActLayout bf16_layout(int64_t k) { return cpu::bf16_act_layout(k); }

template <class T>
const T* field(const std::vector<uint8_t>& recs, const QActLayout& l, int64_t t, size_t off) {
  return reinterpret_cast<const T*>(recs.data() + static_cast<size_t>(t) * l.bytes + off);
}

/// For each block b of token t of x (m rows of k): the records `act` writes with layout l, and
/// block b of that row as the reference quantizer of `type` writes it.
template <class Block>
void each_record_block(ActFn act, const QActLayout& l, QuantType type, const std::vector<float>& x, int64_t m, int64_t k,
                       const std::function<void(const std::vector<uint8_t>&, int64_t, int64_t, const Block&)>& check) {
  std::vector<uint8_t> recs(l.bytes * m);
  act(x.data(), m, l, recs.data());
  const int64_t per_row = k / type_info(type).block_size;
  std::vector<Block> want(static_cast<size_t>(m * per_row));
  type_info(type).quantize_ref(x.data(), want.data(), m, k, nullptr);
  for (int64_t t = 0; t < m; ++t)
    for (int64_t b = 0; b < per_row; ++b) check(recs, t, b, want[static_cast<size_t>(t * per_row + b)]);
}

// Rows with awkward values: exact halves after scaling, ties of +/- the maximum, a zero block.
std::vector<float> activation_rows(int64_t m, int64_t k, uint32_t seed) {
  auto x = test::gaussian(static_cast<size_t>(m * k), seed);
  if (m > 1 && k >= 64) {
    float* r = x.data() + k;  // row 1: block 0 has amax 127, so q = x exactly with halves
    for (int j = 0; j < 32; ++j) r[j] = j == 0 ? 127.f : static_cast<float>(j % 7) - 3.5f;
    for (int j = 32; j < 64; ++j) r[j] = 0.f;
  }
  if (m > 2 && k >= 256) {
    float* r = x.data() + 2 * k;  // row 2: -3 comes first, then +3
    for (int j = 0; j < 256; ++j) r[j] = static_cast<float>(j % 5) * 0.5f - 1.f;
    r[10] = -3.f;
    r[20] = 3.f;
  }
  return x;
}

}  // namespace

TEST_CASE("perf: activation records equal the reference Q8_0 and Q8_K quantizers", "[perf]") {
  for (const auto& isa : usable_isas()) {
    for (int64_t k : {32, 96, 256, 768}) {
      const int64_t m = 5;
      INFO(isa.name << " k=" << k);
      const auto x = activation_rows(m, k, 11);
      {
        const QActLayout l = layout(k, 32);
        each_record_block<ref::block_q8_0>(
            isa.act_q8_0, l, QuantType::Q8_0, x, m, k, [&](const auto& recs, int64_t t, int64_t b, const auto& wb) {
              CHECK(field<float>(recs, l, t, l.d)[b] == fp16_to_f32(wb.d));
              int sum = 0;
              for (int j = 0; j < 32; ++j) {
                CHECK(int(field<int8_t>(recs, l, t, l.qs)[32 * b + j]) == int(wb.qs[j]));
                sum += wb.qs[j];
              }
              CHECK(field<int32_t>(recs, l, t, l.s32)[b] == sum);
            });
      }
      if (k % 256 == 0) {
        const QActLayout l = layout(k, 256);
        each_record_block<ref::block_q8_K>(
            isa.act_q8_k, l, QuantType::Q8_K, x, m, k, [&](const auto& recs, int64_t t, int64_t b, const auto& wb) {
              CHECK(field<float>(recs, l, t, l.d)[b] == wb.d);
              CHECK(std::memcmp(field<int8_t>(recs, l, t, l.qs) + 256 * b, wb.qs, 256) == 0);
              for (int g = 0; g < 16; ++g) CHECK(field<int32_t>(recs, l, t, l.s16)[16 * b + g] == wb.bsums[g]);
              for (int g = 0; g < 8; ++g) {
                const int s32 = wb.bsums[2 * g] + wb.bsums[2 * g + 1];
                CHECK(field<int32_t>(recs, l, t, l.s32)[8 * b + g] == s32);
                const uint32_t p16 = field<uint32_t>(recs, l, t, l.p16)[8 * b + g];
                CHECK(int16_t(p16 & 0xffff) == wb.bsums[2 * g]);
                CHECK(int16_t(p16 >> 16) == wb.bsums[2 * g + 1]);
              }
              for (int g = 0; g < 4; ++g) {
                const uint32_t p32 = field<uint32_t>(recs, l, t, l.p32)[4 * b + g];
                CHECK(int16_t(p32 & 0xffff) == wb.bsums[4 * g] + wb.bsums[4 * g + 1]);
                CHECK(int16_t(p32 >> 16) == wb.bsums[4 * g + 2] + wb.bsums[4 * g + 3]);
              }
            });
      }
    }
  }
}

TEST_CASE("perf: panel GEMMs equal the scalar reference dots bit for bit", "[perf]") {
  struct Case {
    QuantType type;
    QGemmFn IsaSet::*fn;
  };
  const std::vector<Case> cases = {{QuantType::Q4_0, &IsaSet::q4_0}, {QuantType::Q5_0, &IsaSet::q5_0},
                                   {QuantType::Q8_0, &IsaSet::q8_0}, {QuantType::Q2_K, &IsaSet::q2_k},
                                   {QuantType::Q3_K, &IsaSet::q3_k}, {QuantType::Q4_K, &IsaSet::q4_k},
                                   {QuantType::Q5_K, &IsaSet::q5_k}, {QuantType::Q6_K, &IsaSet::q6_k}};
  for (const auto& isa : usable_isas()) {
    for (const auto& c : cases) {
      const TypeInfo& wi = type_info(c.type);
      const TypeInfo& xi = type_info(wi.dot_type);
      const int block = static_cast<int>(xi.block_size);
      const std::vector<int64_t> ks = block == 32 ? std::vector<int64_t>{32, 96, 544} : std::vector<int64_t>{256, 768};
      for (int64_t k : ks) {
        for (auto [rows, m] : {std::pair<int64_t, int64_t>{1, 1}, {16, 13}, {37, 29}, {5, 8}}) {
          INFO(isa.name << " " << wi.name << " k=" << k << " rows=" << rows << " m=" << m);
          const auto wf = test::gaussian(static_cast<size_t>(rows * k), 21);
          const auto xf = activation_rows(m, k, 22);
          const size_t ws = wi.row_bytes(k), xs = xi.row_bytes(k);
          std::vector<uint8_t> wq(ws * rows), xq(xs * m);
          wi.quantize_ref(wf.data(), wq.data(), rows, k, nullptr);
          xi.quantize_ref(xf.data(), xq.data(), m, k, nullptr);
          const QActLayout l = layout(k, block);
          std::vector<uint8_t> recs(l.bytes * m);
          (block == 32 ? isa.act_q8_0 : isa.act_q8_k)(xf.data(), m, l, recs.data());
          const int64_t ldy = rows + 3;
          std::vector<float> y(static_cast<size_t>(m * ldy), -7.f);
          (isa.*c.fn)(QGemmArgs{k, wq.data(), ws, rows, recs.data(), l, m, y.data(), ldy});
          int bad = 0;
          for (int64_t t = 0; t < m; ++t) {
            for (int64_t r = 0; r < rows; ++r) {
              const float want = wi.dot_ref(k, wq.data() + r * ws, xq.data() + t * xs);
              const float got = y[static_cast<size_t>(t * ldy + r)];
              if (std::memcmp(&got, &want, 4) != 0 && ++bad <= 3)
                FAIL_CHECK("t=" << t << " r=" << r << " got " << got << " want " << want);
            }
            for (int64_t r = rows; r < ldy; ++r) CHECK(y[static_cast<size_t>(t * ldy + r)] == -7.f);
          }
          CHECK(bad == 0);
        }
      }
    }
  }
}

TEST_CASE("perf: panel GEMM results do not depend on the row and token split", "[perf]") {
  for (const auto& isa : usable_isas()) {
    for (auto [type, fn] : {std::pair<QuantType, QGemmFn IsaSet::*>{QuantType::Q4_K, &IsaSet::q4_k},
                            {QuantType::Q8_0, &IsaSet::q8_0}, {QuantType::Q6_K, &IsaSet::q6_k}}) {
      const TypeInfo& wi = type_info(type);
      const int block = static_cast<int>(type_info(wi.dot_type).block_size);
      const int64_t k = 512, rows = 40, m = 27;
      INFO(isa.name << " " << wi.name);
      const auto wf = test::gaussian(static_cast<size_t>(rows * k), 31);
      const auto xf = test::gaussian(static_cast<size_t>(m * k), 32);
      const size_t ws = wi.row_bytes(k);
      std::vector<uint8_t> wq(ws * rows);
      wi.quantize_ref(wf.data(), wq.data(), rows, k, nullptr);
      const QActLayout l = layout(k, block);
      std::vector<uint8_t> recs(l.bytes * m);
      (block == 32 ? isa.act_q8_0 : isa.act_q8_k)(xf.data(), m, l, recs.data());
      std::vector<float> whole(static_cast<size_t>(m * rows)), parts(whole.size());
      (isa.*fn)(QGemmArgs{k, wq.data(), ws, rows, recs.data(), l, m, whole.data(), rows});
      // rows 0..18, 19..39 and tokens one at a time / in two uneven groups
      for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, 19}, {19, 40}}) {
        (isa.*fn)(QGemmArgs{k, wq.data() + r0 * ws, ws, r1 - r0, recs.data(), l, 3, parts.data() + r0, rows});
        for (int64_t t = 3; t < m; ++t)
          (isa.*fn)(QGemmArgs{k, wq.data() + r0 * ws, ws, r1 - r0, recs.data() + t * l.bytes, l, 1,
                              parts.data() + t * rows + r0, rows});
      }
      CHECK(std::memcmp(whole.data(), parts.data(), whole.size() * sizeof(float)) == 0);
    }
  }
}

namespace {

// Runs `gemm` (a bf16 panel GEMM) on k x rows weights and m tokens rounded to bf16 by `act` and
// checks every output against the double-precision sum of the bf16 products.
void check_bf16_gemm(QGemmFn gemm, ActFn act, int64_t k, int64_t rows, int64_t m) {
  const auto wf = test::gaussian(static_cast<size_t>(rows * k), 41);
  const auto xf = test::gaussian(static_cast<size_t>(m * k), 42);
  std::vector<uint16_t> wb(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) wb[i] = f32_to_bf16(wf[i]);
  const QActLayout l = bf16_layout(k);
  std::vector<uint8_t> recs(l.bytes * m);
  act(xf.data(), m, l, recs.data());
  for (int64_t t = 0; t < m; ++t) {
    const auto* xr = field<uint16_t>(recs, l, t, 0);
    for (int64_t i = 0; i < k; ++i) REQUIRE(xr[i] == f32_to_bf16(xf[t * k + i]));
  }
  std::vector<float> y(static_cast<size_t>(m * rows));
  gemm(QGemmArgs{k, wb.data(), static_cast<size_t>(k * 2), rows, recs.data(), l, m, y.data(), rows});
  int bad = 0;
  for (int64_t t = 0; t < m; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double want = 0, mag = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double p = double(bf16_to_f32(wb[r * k + i])) * bf16_to_f32(f32_to_bf16(xf[t * k + i]));
        want += p;
        mag += std::fabs(p);
      }
      if (!(std::fabs(y[t * rows + r] - want) <= 1e-5 * mag + 1e-6) && ++bad <= 3)
        FAIL_CHECK("t=" << t << " r=" << r << " got " << y[t * rows + r] << " want " << want);
    }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("perf: bf16 GEMM equals the product of the bf16 values", "[perf]") {
  for (const auto& isa : usable_isas())
    for (int64_t k : {1, 7, 34, 64, 257, 1024, 1063})
      for (auto [rows, m] : {std::pair<int64_t, int64_t>{1, 1}, {16, 21}, {35, 6}, {64, 9}}) {
        INFO(isa.name << " k=" << k << " rows=" << rows << " m=" << m);
        check_bf16_gemm(isa.bf16, isa.act_bf16, k, rows, m);
      }
}

TEST_CASE("perf: the AMX bf16 GEMM equals the product of the bf16 values", "[perf][amx]") {
  if (!cpu::has_amx_bf16()) {
    test::skip("this CPU (or OS) gives no AMX-BF16");
    return;
  }
  // Tiles of 32 and 16 tokens, a zero-padded block of the last tokens, one or two groups of
  // panels with an odd one and a partial one; k not a multiple of 32 runs AVX-512 alone.
  for (int64_t k : {32, 64, 96, 1024, 2048, 1063})
    for (auto [rows, m] : {std::pair<int64_t, int64_t>{16, 16}, {35, 21}, {5, 32}, {48, 53}, {16, 100}, {100, 40},
                           {64, 80}}) {
      INFO("k=" << k << " rows=" << rows << " m=" << m);
      check_bf16_gemm(cpu::gemm_bf16_amx, cpu::quantize_act_bf16, k, rows, m);
    }
}

TEST_CASE("perf: the AMX exact bf16 GEMM equals the product of the float activations", "[perf][amx]") {
  if (!cpu::has_amx_bf16()) {
    test::skip("this CPU (or OS) gives no AMX-BF16");
    return;
  }
  REQUIRE(cpu::panel_kernel(QuantType::BF16, true, 64).fn == cpu::gemm_bf16x3_amx);
  CHECK(cpu::panel_kernel(QuantType::BF16, true, 48).fn == nullptr);  // k % 32 != 0: the float GEMM
  for (int64_t k : {32, 96, 2048})
    for (auto [rows, m] : {std::pair<int64_t, int64_t>{16, 16}, {35, 21}, {48, 53}, {16, 5}, {100, 40}}) {
      INFO("k=" << k << " rows=" << rows << " m=" << m);
      const auto wf = test::gaussian(static_cast<size_t>(rows * k), 51);
      auto xf = test::gaussian(static_cast<size_t>(m * k), 52);
      xf[0] = 1e-30f;  // tiny and large magnitudes split exactly too
      xf[1] = 3.0e30f;
      std::vector<uint16_t> wb(wf.size());
      for (size_t i = 0; i < wf.size(); ++i) wb[i] = f32_to_bf16(wf[i]);
      const QActLayout l = cpu::bf16x3_act_layout(k);
      std::vector<uint8_t> recs(l.bytes * m);
      cpu::quantize_act_bf16x3(xf.data(), m, l, recs.data());
      for (int64_t t = 0; t < m; ++t) {  // the three parts sum to the value exactly
        const auto* xr = reinterpret_cast<const uint16_t*>(recs.data() + t * l.bytes);
        for (int64_t i = 0; i < k; ++i)
          REQUIRE(double(bf16_to_f32(xr[i])) + bf16_to_f32(xr[k + i]) + bf16_to_f32(xr[2 * k + i]) ==
                  double(xf[t * k + i]));
      }
      std::vector<float> y(static_cast<size_t>(m * rows));
      cpu::gemm_bf16x3_amx(QGemmArgs{k, wb.data(), static_cast<size_t>(k * 2), rows, recs.data(), l, m, y.data(), rows});
      int bad = 0;
      for (int64_t t = 0; t < m; ++t)
        for (int64_t r = 0; r < rows; ++r) {
          double want = 0, mag = 0;
          for (int64_t i = 0; i < k; ++i) {
            const double p = double(bf16_to_f32(wb[r * k + i])) * xf[t * k + i];
            want += p;
            mag += std::fabs(p);
          }
          if (!(std::fabs(y[t * rows + r] - want) <= 2e-6 * mag + 1e-30) && ++bad <= 3)
            FAIL_CHECK("t=" << t << " r=" << r << " got " << y[t * rows + r] << " want " << want);
        }
      CHECK(bad == 0);
    }
}

TEST_CASE("kernels: binary16 rounding equals the F16 format's on every ISA", "[engine]") {
  // Values around every binary16 exponent (subnormals, ties, overflow), in a length that leaves
  // a remainder for every vector width.
  std::vector<float> x = {65504.f, 65519.f, 65520.f, -70000.f, 5.9604645e-8f, 2.9802322e-8f, 8.940697e-8f, 0.f, -0.f};
  const auto g = test::gaussian(4000, 17);
  for (size_t i = 0; i < g.size(); ++i) x.push_back(g[i] * std::ldexp(1.f, static_cast<int>(i % 44) - 30));
  x.push_back(1.f + 1.f / 2048);  // a tie: to even (1.0)
  std::vector<std::pair<const char*, void (*)(int64_t, const float*, float*)>> isas;
  test::for_each_cpu_isa([&]<class A>(const char* name) { isas.emplace_back(name, cpu::RoundHalf<A>::run); });
  for (const auto& [name, fn] : isas) {
    INFO(name);
    std::vector<float> y(x.size());
    fn(static_cast<int64_t>(x.size()), x.data(), y.data());
    int bad = 0;
    for (size_t i = 0; i < x.size(); ++i)
      bad += std::bit_cast<uint32_t>(y[i]) != std::bit_cast<uint32_t>(fp16_to_f32(f32_to_fp16(x[i])));
    CHECK(bad == 0);
    CHECK(y.back() == 1.f);
  }
}
