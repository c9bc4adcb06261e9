// W8A8 (int8 weights with a scale per row, int8 activations with a scale per token): the CPU
// kernels (kernels/cpu/int8_gemm.hpp) equal the scalar references bit for bit on every ISA this
// machine runs, including the full int8 range and ragged row lengths; the engine runs a model
// whose linears are all W8 close to the original's perplexity.
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/gguf.hpp>
#include <lq/quant_type.hpp>

#include "engine_kernels.hpp"
#include "int8_gemm.hpp"
#include "types/ref/int8_rows.hpp"
#include "support/cpu_isa.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <vector>

LQ_CPU_INT8_KERNELS(LQ_CPU_EXTERN)

using namespace lq;

namespace {

// Rows of W8 covering the whole int8 range: quantized gaussian rows, rows whose largest magnitude
// is negative (so -128 appears), and rows of random bytes with random scales.
std::vector<uint8_t> int8_weight_rows(int64_t rows, int64_t k, uint32_t seed) {
  const size_t rb = static_cast<size_t>(k + 4);
  std::vector<uint8_t> w(rb * static_cast<size_t>(rows));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(-128, 127);
  std::uniform_real_distribution<float> sc(1e-4f, 0.1f);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = w.data() + static_cast<size_t>(r) * rb;
    if (r % 3 == 2) {
      const float d = sc(rng);
      std::memcpy(row, &d, 4);
      for (int64_t i = 0; i < k; ++i) row[4 + i] = static_cast<uint8_t>(static_cast<int8_t>(byte(rng)));
    } else {
      auto x = test::gaussian(static_cast<size_t>(k), seed + static_cast<uint32_t>(r));
      if (r % 3 == 1) x[static_cast<size_t>(r % k)] = -8.f;
      ref::quantize_w8(x.data(), row, 1, k, nullptr);
    }
  }
  return w;
}

// Activation rows with outlier channels (as LLM activations have), one all-zero row.
std::vector<float> w8_activation_rows(int64_t m, int64_t k, uint32_t seed) {
  auto x = test::gaussian(static_cast<size_t>(m * k), seed);
  for (int64_t t = 0; t < m; ++t)
    for (int64_t i = 0; i < k; i += 17) x[static_cast<size_t>(t * k + i)] *= 30.f;
  if (m > 2)
    for (int64_t i = 0; i < k; ++i) x[static_cast<size_t>(k + i)] = 0.f;
  return x;
}

}  // namespace

TEST_CASE("int8: activation records equal the reference A8 quantizer on every ISA", "[int8]") {
  test::for_each_cpu_isa([&]<class A>(const char* isa) {
    for (const int64_t k : {1, 7, 64, 100, 2048}) {
      const int64_t m = 5;
      INFO(isa << " k=" << k);
      const auto x = w8_activation_rows(m, k, 3);
      const cpu::QActLayout lay = cpu::i8_token_layout(k);
      std::vector<uint8_t> rec(lay.bytes * m, 0xEE);
      cpu::QuantizeActI8Token<A>::run(x.data(), m, lay, rec.data());
      const size_t rb = type_info(QuantType::A8).row_bytes(k);
      std::vector<uint8_t> want(rb * m);
      ref::quantize_a8(x.data(), want.data(), m, k, nullptr);
      for (int64_t t = 0; t < m; ++t) {
        const uint8_t* r = rec.data() + t * lay.bytes;
        const uint8_t* w = want.data() + t * rb;
        CHECK(std::memcmp(r + lay.d, w, 4) == 0);
        CHECK(std::memcmp(r + lay.qs, w + 4, static_cast<size_t>(k)) == 0);
        int32_t sum = 0, got;
        for (int64_t i = 0; i < k; ++i) sum += static_cast<int8_t>(w[4 + i]);
        std::memcpy(&got, r + lay.s32, 4);
        CHECK(got == sum);
        for (int64_t i = k; i < (k + 3) / 4 * 4; ++i) CHECK(r[lay.qs + i] == 0);
      }
    }
  });
}

TEST_CASE("int8: the W8 panel GEMM and dot equal the scalar reference bit for bit on every ISA", "[int8]") {
  const TypeInfo& wi = type_info(QuantType::W8);
  const TypeInfo& ai = type_info(wi.dot_type);
  REQUIRE(ai.type == QuantType::A8);
  test::for_each_cpu_isa([&]<class A>(const char* isa) {
    for (const int64_t k : {4, 37, 256, 1000}) {
      for (auto [rows, m] : {std::pair<int64_t, int64_t>{1, 1}, {16, 13}, {37, 29}, {5, 12}, {40, 25}}) {
        INFO(isa << " k=" << k << " rows=" << rows << " m=" << m);
        const auto wq = int8_weight_rows(rows, k, static_cast<uint32_t>(k + rows));
        const auto xf = w8_activation_rows(m, k, static_cast<uint32_t>(m));
        const size_t ws = wi.row_bytes(k), xs = ai.row_bytes(k);
        std::vector<uint8_t> xq(xs * m);
        ai.quantize_ref(xf.data(), xq.data(), m, k, nullptr);
        const cpu::QActLayout lay = cpu::i8_token_layout(k);
        std::vector<uint8_t> recs(lay.bytes * m);
        cpu::QuantizeActI8Token<A>::run(xf.data(), m, lay, recs.data());
        const int64_t ldy = rows + 3;
        std::vector<float> y(static_cast<size_t>(m * ldy), -7.f);
        cpu::GemmW8<A>::run(cpu::QGemmArgs{k, wq.data(), ws, rows, recs.data(), lay, m, y.data(), ldy});
        int bad = 0;
        for (int64_t t = 0; t < m; ++t) {
          for (int64_t r = 0; r < rows; ++r) {
            const float want = wi.dot_ref(k, wq.data() + r * ws, xq.data() + t * xs);
            const float got = y[static_cast<size_t>(t * ldy + r)];
            const float dot = cpu::DotW8A8<A>::run(k, wq.data() + r * ws, xq.data() + t * xs);
            if ((std::memcmp(&got, &want, 4) != 0 || std::memcmp(&dot, &want, 4) != 0) && ++bad <= 3)
              FAIL_CHECK("t=" << t << " r=" << r << " gemm " << got << " dot " << dot << " want " << want);
          }
          for (int64_t r = rows; r < ldy; ++r) CHECK(y[static_cast<size_t>(t * ldy + r)] == -7.f);
        }
        CHECK(bad == 0);
      }
    }
  });
}

TEST_CASE("int8: static activations (one fixed scale) equal the reference on every ISA", "[int8]") {
  const TypeInfo& wi = type_info(QuantType::W8);
  test::for_each_cpu_isa([&]<class A>(const char* isa) {
    for (const int64_t k : {7, 256}) {
      const int64_t rows = 21, m = 6;
      INFO(isa << " k=" << k);
      const auto wq = int8_weight_rows(rows, k, 9);
      const auto xf = w8_activation_rows(m, k, 10);
      const float scale = 0.05f;  // small enough that the outlier channels clamp at -128 and 127
      const size_t ws = wi.row_bytes(k), xs = type_info(QuantType::A8).row_bytes(k);
      std::vector<uint8_t> xq(xs * m);
      ref::quantize_a8_static(xf.data(), xq.data(), m, k, scale);
      cpu::QActLayout lay = cpu::i8_token_layout(k);
      lay.fixed_scale = scale;
      std::vector<uint8_t> recs(lay.bytes * m);
      cpu::QuantizeActI8Token<A>::run(xf.data(), m, lay, recs.data());
      bool saw_min = false;
      for (int64_t t = 0; t < m; ++t) {
        CHECK(std::memcmp(recs.data() + t * lay.bytes + lay.d, xq.data() + t * xs, 4) == 0);
        CHECK(std::memcmp(recs.data() + t * lay.bytes + lay.qs, xq.data() + t * xs + 4, static_cast<size_t>(k)) == 0);
        for (int64_t i = 0; i < k; ++i) saw_min |= static_cast<int8_t>(xq[t * xs + 4 + i]) == -128;
      }
      CHECK(saw_min);
      std::vector<float> y(static_cast<size_t>(m * rows));
      cpu::GemmW8<A>::run(cpu::QGemmArgs{k, wq.data(), ws, rows, recs.data(), lay, m, y.data(), rows});
      int bad = 0;
      for (int64_t t = 0; t < m; ++t)
        for (int64_t r = 0; r < rows; ++r) {
          const float want = wi.dot_ref(k, wq.data() + r * ws, xq.data() + t * xs);
          if (std::memcmp(&y[static_cast<size_t>(t * rows + r)], &want, 4) != 0) ++bad;
        }
      CHECK(bad == 0);
    }
  });
}

TEST_CASE("int8: W8 follows compressed-tensors' rounding (max|w| / 127.5, half to even, [-128, 127])", "[int8]") {
  // max|w| = 2.55: scale 0.02; 2.55 / 0.02 = 127.5 rounds to 128 and clamps to 127; -2.55 gives -128;
  // 0.01 / 0.02 = 0.5 rounds to 0 and 0.03 / 0.02 = 1.5 to 2 (half to even).
  const std::vector<float> x = {2.55f, -2.55f, 0.01f, 0.03f};
  std::vector<uint8_t> q(type_info(QuantType::W8).row_bytes(4));
  ref::quantize_w8(x.data(), q.data(), 1, 4, nullptr);
  float d;
  std::memcpy(&d, q.data(), 4);
  CHECK(d == 2.55f / 127.5f);
  const auto* v = reinterpret_cast<const int8_t*>(q.data() + 4);
  CHECK(v[0] == 127);
  CHECK(v[1] == -128);
  CHECK(v[2] == 0);
  CHECK(v[3] == 2);
  // A zero row keeps a positive scale (compressed-tensors clamps it at float epsilon).
  const std::vector<float> z(4, 0.f);
  ref::quantize_w8(z.data(), q.data(), 1, 4, nullptr);
  std::memcpy(&d, q.data(), 4);
  CHECK(d > 0.f);
  // W8 is never a GGUF type.
  CHECK_FALSE(type_info(QuantType::W8).storable);
  CHECK(type_slot(QuantType::W8) >= kQuantTypeSlots);
  test::TempDir dir;
  gguf::Writer w(dir / "w8.gguf");
  const std::vector<int64_t> ne = {256, 4};
  CHECK_THROWS_WITH(w.add_tensor("blk.0.attn_q.weight", QuantType::W8, ne), Catch::Contains("is not a GGUF type"));
}

TEST_CASE("int8: the tiny model with every block linear in W8 stays close to the original", "[int8][engine]") {
  auto dir = test::shared_file("models/tiny-llama/config.json");
  auto tok = test::shared_file("golden/eval-tokens.i32");
  if (!dir || !tok) {
    test::skip("needs ../shared/models/tiny-llama and golden/eval-tokens.i32");
    return;
  }
  std::ifstream in(*tok, std::ios::binary);
  std::vector<int32_t> tokens(std::filesystem::file_size(*tok) / 4);
  in.read(reinterpret_cast<char*>(tokens.data()), static_cast<std::streamsize>(tokens.size() * 4));
  auto model = Model::load(dir->parent_path());
  PerplexityOptions o;
  o.ctx = 256;
  o.chunks = 8;
  const double base = perplexity(*model, tokens, o).ppl;
  int replaced = 0;
  for (const LinearInfo& l : model->linears()) {
    if (l.layer < 0) continue;  // lm_head stays in the model's dtype
    const auto v = model->tensor_f32(l.name);
    model->replace_tensor(l.name, v, QuantType::W8);
    CHECK(model->tensor_type(l.name) == QuantType::W8);
    ++replaced;
  }
  CHECK(replaced == 7 * 6);
  const double w8 = perplexity(*model, tokens, o).ppl;
  INFO("perplexity: original " << base << ", W8A8 dynamic " << w8);
  CHECK(std::isfinite(w8));
  CHECK(std::fabs(w8 / base - 1) < 0.01);
  CHECK(w8 != base);  // the products really ran in int8

  // Static activations: each linear's scale from its largest input over 256 other tokens.
  std::map<std::string, float> amax;
  {
    Session s(*model);
    s.set_linear_hook([&](const LinearEvent& e) {
      float& a = amax[e.linear->name];
      for (int64_t i = 0; i < e.n_tokens * e.linear->n_in; ++i) a = std::max(a, std::fabs(e.input[i]));
    });
    s.eval(std::span<const int32_t>(tokens.data() + tokens.size() - 256, 256));
  }
  for (const LinearInfo& l : model->linears())
    if (l.layer >= 0) model->set_input_scale(l.name, amax.at(l.name) / 127.f);
  const double st = perplexity(*model, tokens, o).ppl;
  INFO("perplexity: W8A8 static " << st);
  CHECK(std::isfinite(st));
  CHECK(std::fabs(st / base - 1) < 0.05);
  CHECK(st != w8);
  CHECK_THROWS_AS(model->set_input_scale("blk.0.attn_norm.weight", 1.f), Error);
  CHECK_THROWS_AS(model->set_input_scale("blk.0.attn_q.weight", -1.f), Error);
}
