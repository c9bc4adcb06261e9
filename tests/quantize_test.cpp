// Golden encode and golden mixtures: our quantization of tiny-llama against llama.cpp's files.
#include <lq/lq.hpp>

#include "support/support.hpp"

#include "quantize/gain.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>

using namespace lq;
namespace fs = std::filesystem;

TEST_CASE("quantize: golden mixtures assign llama.cpp's type to every tensor", "[quantize][golden][mixture]") {
  const auto m = test::golden_manifest();
  const auto tiny = test::tiny_with_imatrix();
  if (m.is_null() || !tiny) return;
  auto src = ModelSource::open(tiny->model);
  const Imatrix& imatrix = tiny->imatrix;
  int checked = 0;
  for (const auto& [key, entry] : m.at("files").items()) {
    const bool mix = entry.value("kind", "") == "mix";
    const bool pure = entry.value("kind", "") == "pure";
    if (!mix && !pure) continue;
    const std::string level = entry.at("ftype");
    DYNAMIC_SECTION(key) {
      QuantizeOptions o;
      auto ft = parse_file_type(level);
      REQUIRE(ft);
      o.ftype = *ft;
      o.pure = pure;
      if (entry.value("imatrix", false)) {
        o.imatrix = &imatrix;
        if (pure) {
          // llama.cpp made its pure files with an imatrix with token_embd and output forced to Q8_0
          // (those two never have importance data).
          o.token_embedding_type = QuantType::Q8_0;
          o.output_tensor_type = QuantType::Q8_0;
        }
      }
      if (entry.contains("error")) {
        // llama.cpp refused this level (it needs an importance matrix): so must we, with exit 10.
        try {
          (void)Quantizer(o).plan(*src);
          FAIL("level " << level << " accepted without an importance matrix");
        } catch (const Error& e) {
          CHECK(e.code() == Errc::imatrix_error);
        }
      } else {
        const auto plan = Quantizer(o).plan(*src);
        const auto& tensors = entry.at("tensors");
        REQUIRE(plan.size() == tensors.size());
        for (const auto& p : plan) {
          INFO(key << " " << p.name);
          CHECK(type_name(p.type) == std::string(type_name(static_cast<QuantType>(tensors.at(p.name).at("type").get<int>()))));
        }
      }
      ++checked;
    }
  }
}

namespace {

double rmse(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return std::sqrt(s / static_cast<double>(n));
}

}  // namespace

TEST_CASE("quantize: golden encode (float types byte-identical, legacy types no worse than llama.cpp)",
          "[quantize][golden][encode]") {
  const auto m = test::golden_manifest();
  auto model = test::shared_file("models/tiny-llama");
  if (m.is_null() || !model) return;
  auto src = ModelSource::open(*model);
  test::TempDir tmp;
  for (const char* level : {"F16", "BF16"}) {
    DYNAMIC_SECTION("convert " << level) {
      QuantizeOptions o;
      o.ftype = *parse_file_type(level);
      const fs::path out = tmp / (std::string(level) + ".gguf");
      Quantizer(o).quantize(*src, out);
      gguf::Reader ours(out);
      auto gpath = test::shared_file(std::string("golden/tiny-llama-") + level + ".gguf");
      REQUIRE(gpath);
      gguf::Reader ref(*gpath);
      REQUIRE(ours.tensors().size() == ref.tensors().size());
      for (const auto& rt : ref.tensors()) {
        INFO(rt.name);
        const auto* t = ours.find_tensor(rt.name);
        REQUIRE(t);
        CHECK(t->type == rt.type);
        CHECK(t->ne == rt.ne);
        const auto a = ours.data(*t);
        const auto b = ref.data(rt);
        REQUIRE(a.size() == b.size());
        CHECK(std::memcmp(a.data(), b.data(), a.size()) == 0);
      }
      for (const auto& [k, v] : ref.metadata().entries()) {
        INFO(k);
        const gguf::Value* mine = ours.metadata().find(k);
        REQUIRE(mine);
        CHECK(*mine == v);
      }
    }
  }
  for (const char* type : {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"}) {
    DYNAMIC_SECTION("pure " << type) {
      const auto& entry = m.at("files").at(std::string("pure/") + type + ".gguf");
      QuantizeOptions o;
      o.ftype = *parse_file_type(type);
      o.pure = true;
      const fs::path out = tmp / (std::string(type) + ".gguf");
      Quantizer(o).quantize(*src, out);
      gguf::Reader ours(out);
      CHECK(ours.metadata().at("general.file_type").as_uint() == static_cast<uint64_t>(o.ftype));
      REQUIRE(ours.tensors().size() == entry.at("tensors").size());
      for (const auto& t : ours.tensors()) {
        INFO(type << " " << t.name);
        const auto& rec = entry.at("tensors").at(t.name);
        CHECK(static_cast<int>(t.type) == rec.at("type").get<int>());
        std::vector<float> q(static_cast<size_t>(t.n_elements())), x(q.size());
        read_rows_f32(ours, t, 0, t.n_rows(), q.data());
        src->read_rows_f32(src->at(t.name), 0, t.n_rows(), x.data());
        const double e = rmse(q.data(), x.data(), t.n_elements());
        CHECK(e <= rec.at("rmse").get<double>() * (1 + 1e-6) + 1e-12);
      }
    }
  }
}

TEST_CASE("quantize: Q6_K tensors an importance matrix does not cover are weighted by their values' squares",
          "[quantize][golden][imatrix]") {
  const auto tiny = test::tiny_with_imatrix();
  if (!tiny) return;
  auto src = ModelSource::open(tiny->model);
  test::TempDir tmp;
  const Context ctx;
  // The bytes of tensor `name` as `kernel` writes them (column importance `im` or none), with the
  // gain correction a run with an importance matrix applies when `gain`.
  auto expect = [&](const std::string& name, QuantizeFn kernel, const float* im, bool gain = false) {
    const ModelTensor& t = src->at(name);
    std::vector<float> x(static_cast<size_t>(t.n_rows() * t.row_length()));
    src->read_rows_f32(t, 0, t.n_rows(), x.data());
    std::vector<uint8_t> q(type_info(QuantType::Q6_K).row_bytes(t.row_length()) * static_cast<size_t>(t.n_rows()));
    kernel(x.data(), q.data(), t.n_rows(), t.row_length(), im);
    if (gain) correct_gain(QuantType::Q6_K, x.data(), q.data(), t.n_rows(), t.row_length(), im);
    return q;
  };
  auto written = [](const gguf::Reader& r, const std::string& name) {
    const auto* t = r.find_tensor(name);
    REQUIRE(t);
    REQUIRE(t->type == QuantType::Q6_K);
    const auto d = r.data(*t);
    return std::vector<uint8_t>(d.begin(), d.end());
  };
  const QuantizeFn plain = ctx.kernels(QuantType::Q6_K).quantize;
  const QuantizeFn by_square = Quantizer::uncovered_kernel(QuantType::Q6_K);
  REQUIRE(by_square != nullptr);
  CHECK(Quantizer::uncovered_kernel(QuantType::Q4_K) == nullptr);
  REQUIRE(tiny->imatrix.find("output.weight") == nullptr);  // llama-imatrix leaves these two out
  REQUIRE(tiny->imatrix.find("token_embd.weight") == nullptr);

  QuantizeOptions o;
  o.ftype = FileType::Q6_K;
  o.imatrix = &tiny->imatrix;
  Quantizer(o).quantize(*src, tmp / "im.gguf", ctx);
  gguf::Reader with(tmp / "im.gguf");
  for (const char* name : {"output.weight", "token_embd.weight"}) {
    INFO(name);
    const auto by_sq = expect(name, by_square, nullptr, true);
    CHECK(written(with, name) == by_sq);
    CHECK(by_sq != expect(name, plain, nullptr, true));  // the rule changes these bytes
  }
  const std::string covered = "blk.0.attn_q.weight";
  const auto cw = tiny->imatrix.column_weights(covered, src->at(covered).row_length());
  REQUIRE(cw);
  CHECK(written(with, covered) == expect(covered, plain, cw->data(), true));
  // Without the gain correction the kernels' bytes as they are.
  o.gain_correction = false;
  Quantizer(o).quantize(*src, tmp / "nogain.gguf", ctx);
  gguf::Reader nogain(tmp / "nogain.gguf");
  CHECK(written(nogain, "output.weight") == expect("output.weight", by_square, nullptr));
  CHECK(written(nogain, covered) == expect(covered, plain, cw->data()));
  // The CLI's --no-gain-correction is that option.
  const auto cli = test::run(test::cli_path() + " --quiet quantize " + tiny->model.string() + " gguf -q Q6_K --imatrix " +
                             tiny->imatrix_path.string() + " --no-gain-correction -o " + (tmp / "cli.gguf").string());
  REQUIRE(cli.status == 0);
  gguf::Reader from_cli(tmp / "cli.gguf");
  for (const std::string name : {"output.weight", "token_embd.weight", "blk.0.attn_q.weight", "blk.5.ffn_down.weight"})
    CHECK(written(from_cli, name) == written(nogain, name));
  o.gain_correction = true;

  o.imatrix = nullptr;  // without an importance matrix every tensor keeps the plain search
  Quantizer(o).quantize(*src, tmp / "plain.gguf", ctx);
  gguf::Reader without(tmp / "plain.gguf");
  CHECK(written(without, "output.weight") == expect("output.weight", plain, nullptr));
}

TEST_CASE("quantize: the gain correction keeps each block's weighted projection and only rescales it",
          "[quantize][gain]") {
  // Rows with a spread of magnitudes and an importance vector far from uniform; every type with
  // fp16 scale fields: after correct_gain each block's sum w x x' equals sum w x^2 (to the fp16
  // rounding of its new scales), and its decoded values are the old ones times one factor.
  const int64_t nrows = 8, ncols = 512;
  std::vector<float> x = test::gaussian(static_cast<size_t>(nrows * ncols), 7);
  for (int64_t i = 0; i < nrows * ncols; ++i) x[static_cast<size_t>(i)] *= 1.0f + static_cast<float>(i % 37) / 9.0f;
  std::vector<float> w(static_cast<size_t>(ncols));
  for (int64_t j = 0; j < ncols; ++j) w[static_cast<size_t>(j)] = 0.05f + static_cast<float>((j * 7919) % 101) / 10.0f;
  const Context ctx;
  for (QuantType t : {QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::Q8_0, QuantType::Q2_K,
                      QuantType::Q3_K, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K, QuantType::IQ1_S, QuantType::IQ1_M,
                      QuantType::IQ2_XXS, QuantType::IQ2_XS, QuantType::IQ2_S, QuantType::IQ3_XXS, QuantType::IQ3_S,
                      QuantType::IQ4_NL, QuantType::IQ4_XS, QuantType::TQ1_0, QuantType::TQ2_0}) {
    const TypeInfo& ti = type_info(t);
    INFO(ti.name);
    std::vector<uint8_t> q(ti.row_bytes(ncols) * nrows);
    ctx.kernels(t).quantize(x.data(), q.data(), nrows, ncols, w.data());
    std::vector<uint8_t> c = q;
    correct_gain(t, x.data(), c.data(), nrows, ncols, w.data());
    std::vector<float> before(x.size()), after(x.size());
    ti.dequantize_ref(q.data(), before.data(), nrows * ncols);
    ti.dequantize_ref(c.data(), after.data(), nrows * ncols);
    const int64_t bs = ti.block_size;
    int corrected = 0, blocks = 0;
    for (int64_t b0 = 0; b0 < nrows * ncols; b0 += bs) {
      double xx = 0, xy0 = 0, xy1 = 0;
      for (int64_t i = b0; i < b0 + bs; ++i) {
        const double wi = w[static_cast<size_t>(i % ncols)], xi = x[static_cast<size_t>(i)];
        xx += wi * xi * xi;
        xy0 += wi * xi * before[static_cast<size_t>(i)];
        xy1 += wi * xi * after[static_cast<size_t>(i)];
      }
      ++blocks;
      if (!(xy0 > 0) || xx / xy0 > 2 || xx / xy0 < 0.5) continue;
      ++corrected;
      CHECK(xy1 / xx == Approx(1.0).epsilon(2e-3));
      // One factor for the whole block (to the fp16 rounding of the scaled fields: where a min is
      // subtracted, the rounding is relative to the terms, not to their difference).
      const double f = xy1 / xy0;
      double amax = 0;
      for (int64_t i = b0; i < b0 + bs; ++i) amax = std::max(amax, std::fabs(static_cast<double>(before[static_cast<size_t>(i)])));
      for (int64_t i = b0; i < b0 + bs; ++i)
        CHECK(after[static_cast<size_t>(i)] == Approx(f * before[static_cast<size_t>(i)]).margin(1e-6 + 2e-3 * amax));

    }
    CHECK(corrected >= blocks * 3 / 4);
  }
  // A type without fp16 scale fields is left as it is.
  std::vector<float> src(static_cast<size_t>(ncols));
  std::vector<uint8_t> f16(type_info(QuantType::F16).row_bytes(ncols));
  ctx.kernels(QuantType::F16).quantize(x.data(), f16.data(), 1, ncols, nullptr);
  const std::vector<uint8_t> kept = f16;
  correct_gain(QuantType::F16, x.data(), f16.data(), 1, ncols, w.data());
  CHECK(f16 == kept);
}
