// SmoothQuant W8A8 on the tiny Llama: smoothing alone keeps the logits, the compressed-tensors
// directory has exactly the layout of the output-formats note §1 (config keys, names, dtypes,
// shapes, values), static and dynamic activations differ as they should, alpha auto searches,
// and every refusal (usage: exit 2; no calibration signal, NaN/Inf: exit 14; cancellation)
// leaves nothing behind.
#include <lq/calibration.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/model.hpp>
#include <lq/quality.hpp>
#include <lq/smoothquant.hpp>
#include <lq/tokenizer.hpp>

#include "core/half.hpp"
#include "formats/safetensors.hpp"
#include "formats/safetensors_writer.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <optional>

using namespace lq;
namespace fs = std::filesystem;

namespace {

// A small, quick calibration from the shared corpus.
SmoothQuantConfig sq_test_config() {
  SmoothQuantConfig c;
  c.calibration_samples = 4;
  c.ctx = 128;
  return c;
}

std::optional<fs::path> sq_calibration_file() { return test::shared_file("corpus/calibration.txt"); }

float sq_value(const SafetensorsFile& f, const StTensor& t, size_t i) {
  const size_t es = st_dtype_size(t.dtype);
  uint8_t b[4] = {};
  f.read(t.begin + i * es, es, b);
  uint16_t h;
  std::memcpy(&h, b, 2);
  if (t.dtype == StDtype::BF16) return bf16_to_f32(h);
  if (t.dtype == StDtype::F16) return fp16_to_f32(h);
  float v;
  std::memcpy(&v, b, 4);
  return v;
}

std::vector<float> sq_values(const SafetensorsFile& f, const StTensor& t) {
  std::vector<float> v(t.nbytes / st_dtype_size(t.dtype));
  for (size_t i = 0; i < v.size(); ++i) v[i] = sq_value(f, t, i);
  return v;
}

// All tensors of a checkpoint directory by name.
struct SqCheckpoint {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, std::pair<const SafetensorsFile*, const StTensor*>> tensors;
  explicit SqCheckpoint(const fs::path& dir) {
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") files.push_back(std::make_unique<SafetensorsFile>(e.path()));
    for (const auto& f : files)
      for (const auto& t : f->tensors()) tensors[t.name] = {f.get(), &t};
  }
  const StTensor& at(const std::string& n) const { return *tensors.at(n).second; }
  std::vector<float> values(const std::string& n) const { return sq_values(*tensors.at(n).first, *tensors.at(n).second); }
  std::vector<uint8_t> bytes(const std::string& n) const {
    const auto& [f, t] = tensors.at(n);
    std::vector<uint8_t> b(t->nbytes);
    f->read(t->begin, b.size(), b.data());
    return b;
  }
};

// The tiny model and a SmoothQuantizer of it with config `c`, calibrated on the shared corpus;
// nullopt (the test is skipped) without ../shared.
struct SqCalibrated {
  std::unique_ptr<ModelSource> src;
  std::unique_ptr<SmoothQuantizer> sq;
};
std::optional<SqCalibrated> sq_calibrate_tiny(SmoothQuantConfig c) {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = sq_calibration_file();
  if (!dir || !calib) return std::nullopt;
  SqCalibrated t;
  t.src = ModelSource::open(*dir);
  c.calibration_data = *calib;
  t.sq = std::make_unique<SmoothQuantizer>(*t.src, c);
  t.sq->calibrate();
  return t;
}

// The tiny model through a SmoothQuantizer with config `c` (calibrated on the shared corpus),
// written to tmp/out; null (the test is skipped) without ../shared.
struct SqWritten {
  std::unique_ptr<ModelSource> src;
  test::TempDir tmp;
  nlohmann::json config;
  fs::path out() const { return tmp / "out"; }
};
std::unique_ptr<SqWritten> sq_write_tiny(SmoothQuantConfig c) {
  auto t = sq_calibrate_tiny(std::move(c));
  if (!t) return nullptr;
  auto w = std::make_unique<SqWritten>();
  t->sq->write(w->out());
  w->src = std::move(t->src);
  w->config = nlohmann::json::parse(read_file(w->out() / "config.json"));
  return w;
}

// A copy of the tiny model with one tensor's values changed (rewritten through the writer).
void sq_edited_copy(const fs::path& from, const fs::path& to, const std::string& tensor,
                    const std::function<void(std::vector<float>&)>& edit) {
  for (const auto& e : fs::directory_iterator(from)) {
    if (e.path().extension() != ".safetensors") {
      fs::copy_file(e.path(), to / e.path().filename());
      continue;
    }
    SafetensorsFile f(e.path());
    std::vector<StTensorSpec> specs;
    for (const auto& t : f.tensors()) specs.push_back({t.name, t.dtype, t.shape});
    SafetensorsWriter w(to / e.path().filename(), specs);
    for (const auto& t : f.tensors()) {
      std::vector<uint8_t> b(t.nbytes);
      f.read(t.begin, b.size(), b.data());
      if (t.name == tensor) {
        REQUIRE(t.dtype == StDtype::BF16);
        auto v = sq_values(f, t);
        edit(v);
        for (size_t i = 0; i < v.size(); ++i) {
          const uint16_t h = f32_to_bf16(v[i]);
          std::memcpy(&b[i * 2], &h, 2);
        }
      }
      w.write(t.name, b.data(), b.size());
    }
    w.commit();
  }
}

const char* const kSqProj[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                               "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

}  // namespace

TEST_CASE("smoothquant: smoothing alone keeps the tiny model's logits", "[smoothquant]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = sq_calibration_file();
  if (!dir || !calib) return;
  auto src = ModelSource::open(*dir);
  auto original = Model::load(*src);
  const auto tokens = tokenizer_for(*src).encode("Once upon a time, there was a little dog named Max. He liked to run");
  const auto want = test::logits_of(*original, tokens);
  for (double alpha : {0.0, 0.5, 0.8, 1.0}) {
    INFO("alpha " << alpha);
    SmoothQuantConfig c = sq_test_config();
    c.quantize = false;
    c.alpha = alpha;
    c.calibration_data = *calib;
    SmoothQuantizer sq(*src, c);
    sq.calibrate();
    // The scales must really move something for the comparison to mean anything.
    double spread = 0;
    for (const auto& g : sq.groups()) spread = std::max(spread, g.scale_max / g.scale_min);
    CHECK(spread > 1.5);
    auto smoothed = Model::load(*src);
    sq.apply(*smoothed);
    CHECK(smoothed->tensor_type("blk.0.attn_norm.weight") == QuantType::F32);
    const auto got = test::logits_of(*smoothed, tokens);
    CHECK(test::worst_row_rel_diff(got, want, static_cast<size_t>(original->n_vocab())) < 1e-4);
    // The fold really changed the weights.
    CHECK(smoothed->tensor_f32("blk.0.attn_q.weight") != original->tensor_f32("blk.0.attn_q.weight"));
  }
}

TEST_CASE("smoothquant: W8A8 fake quantization in memory stays close to the original", "[smoothquant]") {
  auto t = sq_calibrate_tiny(sq_test_config());
  if (!t) return;
  const ModelSource& src = *t->src;
  auto original = Model::load(src);
  auto quantized = Model::load(src);
  t->sq->apply(*quantized);
  // Every weight row holds at most 256 distinct values (int8 multiples of one scale).
  const auto w = quantized->tensor_f32("blk.2.ffn_up.weight");
  const int64_t n = quantized->tensor_shape("blk.2.ffn_up.weight")[0];
  for (int64_t r = 0; r < 4; ++r) {
    std::vector<float> row(w.begin() + r * n, w.begin() + (r + 1) * n);
    std::sort(row.begin(), row.end());
    CHECK(std::unique(row.begin(), row.end()) - row.begin() <= 256);
  }
  const auto tokens = tokenizer_for(src).encode("The little cat sat on the mat and looked at the bird");
  const auto a = test::logits_of(*original, tokens), b = test::logits_of(*quantized, tokens);
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += a[i] * a[i];
  CHECK(std::sqrt(num / den) < 0.05);
}

TEST_CASE("smoothquant: the compressed-tensors directory matches the format note", "[smoothquant]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = sq_calibration_file();
  if (!dir || !calib) return;
  auto src = ModelSource::open(*dir);
  test::TempDir tmp;
  for (const bool is_static : {false, true}) {
    INFO((is_static ? "static" : "dynamic"));
    SmoothQuantConfig c = sq_test_config();
    c.calibration_data = *calib;
    c.static_activations = is_static;
    SmoothQuantizer sq(*src, c);
    sq.calibrate();
    const fs::path out = tmp / (is_static ? "static" : "dynamic");
    const SmoothQuantResult r = sq.write(out);
    CHECK(test::no_write_leftovers(tmp.path()));

    // config.json: the source's keys plus quantization_config, exactly.
    const auto src_cfg = nlohmann::json::parse(read_file(*dir / "config.json"));
    const auto cfg = nlohmann::json::parse(read_file(out / "config.json"));
    for (const auto& [k, v] : src_cfg.items()) CHECK(cfg[k] == v);
    CHECK(cfg.size() == src_cfg.size() + 1);
    const auto& q = cfg["quantization_config"];
    CHECK(q["quant_method"] == "compressed-tensors");
    CHECK(q["format"] == "int-quantized");
    CHECK(q["quantization_status"] == "compressed");
    CHECK(q["ignore"] == nlohmann::json::array({"lm_head"}));
    CHECK(q["kv_cache_scheme"].is_null());
    CHECK(q["version"].is_string());
    REQUIRE(q["config_groups"].size() == 1);
    const auto& g = q["config_groups"]["group_0"];
    CHECK(g["targets"] == nlohmann::json::array({"Linear"}));
    CHECK(g["output_activations"].is_null());
    const auto& wq = g["weights"];
    CHECK(wq == nlohmann::json{{"num_bits", 8}, {"type", "int"}, {"symmetric", true}, {"group_size", nullptr},
                               {"strategy", "channel"}, {"block_structure", nullptr}, {"dynamic", false},
                               {"actorder", nullptr}, {"observer", "minmax"}, {"observer_kwargs", nlohmann::json::object()}});
    const auto& ia = g["input_activations"];
    CHECK(ia == nlohmann::json{{"num_bits", 8}, {"type", "int"}, {"symmetric", true}, {"group_size", nullptr},
                               {"strategy", is_static ? "tensor" : "token"}, {"block_structure", nullptr},
                               {"dynamic", !is_static}, {"actorder", nullptr},
                               {"observer", is_static ? nlohmann::json("minmax") : nlohmann::json(nullptr)},
                               {"observer_kwargs", nlohmann::json::object()}});
    CHECK(q.size() == 7);  // config_groups format ignore kv_cache_scheme quant_method quantization_status version

    // Files: weights, config, tokenizer and generation settings.
    for (const char* f : {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer.model",
                          "tokenizer_config.json", "special_tokens_map.json"})
      CHECK(fs::exists(out / f));
    CHECK(read_file(out / "tokenizer.model") == read_file(*dir / "tokenizer.model"));
    CHECK(read_file(out / "generation_config.json") == read_file(*dir / "generation_config.json"));
    CHECK(std::find(r.files.begin(), r.files.end(), "model.safetensors") != r.files.end());

    // Tensors: every source tensor, int8 + scale(s) for the decoder linears.
    SqCheckpoint in(*dir), ck(out);
    size_t expected = 0;
    for (const auto& [name, ft] : in.tensors) {
      INFO(name);
      const StTensor& st = *ft.second;
      REQUIRE(ck.tensors.count(name));
      const StTensor& ot = ck.at(name);
      const bool linear = name.find("_proj.weight") != std::string::npos;
      ++expected;
      if (!linear) {
        CHECK(ot.dtype == st.dtype);
        CHECK(ot.shape == st.shape);
        if (name.find("layernorm") == std::string::npos) CHECK(ck.bytes(name) == in.bytes(name));
        continue;
      }
      const std::string mod = name.substr(0, name.size() - 7);
      CHECK(ot.dtype == StDtype::I8);
      CHECK(ot.shape == st.shape);
      REQUIRE(ck.tensors.count(mod + ".weight_scale"));
      const StTensor& sc = ck.at(mod + ".weight_scale");
      CHECK(sc.dtype == StDtype::BF16);
      CHECK(sc.shape == std::vector<int64_t>{st.shape[0], 1});
      ++expected;
      CHECK(ck.tensors.count(mod + ".weight_zero_point") == 0);
      if (is_static) {
        REQUIRE(ck.tensors.count(mod + ".input_scale"));
        CHECK(ck.at(mod + ".input_scale").dtype == StDtype::BF16);
        CHECK(ck.at(mod + ".input_scale").shape == std::vector<int64_t>{1});
        CHECK(ck.values(mod + ".input_scale")[0] > 0);
        ++expected;
      } else {
        CHECK(ck.tensors.count(mod + ".input_scale") == 0);
      }
    }
    CHECK(ck.tensors.size() == expected);
    CHECK(ck.tensors.count("lm_head.weight_scale") == 0);
    CHECK(ck.at("lm_head.weight").dtype == StDtype::BF16);
    CHECK(ck.at("model.embed_tokens.weight").dtype == StDtype::BF16);

    // Values: γ/s for the norms, round(W s / scale) with scale = max|row| / 127.5 for the linears.
    const auto& groups = sq.groups();
    REQUIRE(groups.size() == 12);
    const auto& g1 = groups[2];  // layer 1 input_layernorm
    CHECK(g1.norm == "model.layers.1.input_layernorm");
    const auto gamma = in.values("model.layers.1.input_layernorm.weight");
    const auto gamma_s = ck.values("model.layers.1.input_layernorm.weight");
    for (size_t j = 0; j < gamma.size(); ++j) CHECK(gamma_s[j] == bf16_to_f32(f32_to_bf16(gamma[j] / g1.scales[j])));
    const auto w = in.values("model.layers.1.self_attn.k_proj.weight");
    const auto qk = ck.bytes("model.layers.1.self_attn.k_proj.weight");
    const auto sk = ck.values("model.layers.1.self_attn.k_proj.weight_scale");
    const int64_t n = in.at("model.layers.1.self_attn.k_proj.weight").shape[1];
    for (size_t r = 0; r < sk.size(); ++r) {
      float m = 0;
      for (int64_t j = 0; j < n; ++j) m = std::max(m, std::fabs(w[r * n + j] * g1.scales[j]));
      CHECK(sk[r] == bf16_to_f32(f32_to_bf16(m / 127.5f)));
      for (int64_t j = 0; j < n; ++j) {
        const float want = std::clamp(std::nearbyint(w[r * n + j] * g1.scales[j] / sk[r]), -128.0f, 127.0f);
        CHECK(static_cast<int8_t>(qk[r * n + j]) == static_cast<int8_t>(want));
      }
    }
    // down_proj is not smoothed: its int8 weights are the plain round trip.
    const auto wd = in.values("model.layers.1.mlp.down_proj.weight");
    const auto sd = ck.values("model.layers.1.mlp.down_proj.weight_scale");
    const auto qd = ck.bytes("model.layers.1.mlp.down_proj.weight");
    const int64_t nd = in.at("model.layers.1.mlp.down_proj.weight").shape[1];
    for (int64_t j = 0; j < nd; ++j)
      CHECK(static_cast<int8_t>(qd[j]) == static_cast<int8_t>(std::clamp(std::nearbyint(wd[j] / sd[0]), -128.0f, 127.0f)));
    CHECK(std::find(r.not_smoothed.begin(), r.not_smoothed.end(), "model.layers.1.mlp.down_proj") != r.not_smoothed.end());
    if (is_static) {
      // vLLM fuses q/k/v and gate/up: one input scale for all of them, = max_j a_j/s_j / 127.5.
      for (int l = 0; l < 6; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        const float q0 = ck.values(p + "self_attn.q_proj.input_scale")[0];
        CHECK(ck.values(p + "self_attn.k_proj.input_scale")[0] == q0);
        CHECK(ck.values(p + "self_attn.v_proj.input_scale")[0] == q0);
        CHECK(q0 == bf16_to_f32(f32_to_bf16(static_cast<float>(groups[2 * l].activation_max_smoothed) / 127.5f)));
        CHECK(ck.values(p + "mlp.up_proj.input_scale")[0] == ck.values(p + "mlp.gate_proj.input_scale")[0]);
      }
    }
    CHECK(r.n_quantized == 6 * 786432);
    CHECK(r.n_parameters == 5770496);
    CHECK(r.bpw > 8);
    CHECK(r.bpw < 10);
  }
}

TEST_CASE("smoothquant: a smoothing-only checkpoint is a plain model in the source dtype", "[smoothquant]") {
  SmoothQuantConfig c = sq_test_config();
  c.quantize = false;
  const auto w = sq_write_tiny(c);
  if (!w) return;
  const ModelSource* src = w->src.get();
  CHECK_FALSE(w->config.contains("quantization_config"));
  SqCheckpoint ck(w->out());
  CHECK(ck.at("model.layers.0.self_attn.q_proj.weight").dtype == StDtype::BF16);
  CHECK(ck.tensors.count("model.layers.0.self_attn.q_proj.weight_scale") == 0);
  // It loads as an ordinary checkpoint and computes nearly the same function (bf16 rounding of
  // the folded values is the only change).
  auto original = Model::load(*src);
  auto smoothed = Model::load(w->out());
  const auto tokens = tokenizer_for(*src).encode("Once upon a time, there was a big red ball");
  const auto a = test::logits_of(*original, tokens), b = test::logits_of(*smoothed, tokens);
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += a[i] * a[i];
  CHECK(std::sqrt(num / den) < 0.02);
}

TEST_CASE("smoothquant: per-tensor weights", "[smoothquant]") {
  SmoothQuantConfig c = sq_test_config();
  c.per_channel = false;
  const auto w = sq_write_tiny(c);
  if (!w) return;
  const auto& cfg = w->config;
  CHECK(cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["strategy"] == "tensor");
  SqCheckpoint ck(w->out());
  const auto& sc = ck.at("model.layers.0.mlp.gate_proj.weight_scale");
  CHECK(sc.shape == std::vector<int64_t>{1});
  // The one scale is max |W s| / 127.5 over the whole (smoothed) tensor: some weight reaches +-127/128.
  const auto q = ck.bytes("model.layers.0.mlp.gate_proj.weight");
  int extreme = 0;
  for (uint8_t b : q) extreme = std::max(extreme, std::abs(static_cast<int>(static_cast<int8_t>(b))));
  CHECK(extreme >= 127);
}

TEST_CASE("smoothquant: alpha auto picks per layer the lowest W8A8 error", "[smoothquant]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = sq_calibration_file();
  if (!dir || !calib) return;
  auto src = ModelSource::open(*dir);
  SmoothQuantConfig c = sq_test_config();
  c.calibration_data = *calib;
  c.alpha_auto = true;
  c.alpha_grid = {0, 0.25, 0.5, 0.75, 1};
  c.auto_rows = 128;
  SmoothQuantizer sq(*src, c);
  sq.calibrate();
  for (const auto& g : sq.groups()) {
    INFO(g.norm);
    CHECK(std::find(c.alpha_grid.begin(), c.alpha_grid.end(), g.alpha) != c.alpha_grid.end());
    CHECK(g.mse_chosen <= g.mse_default);
    CHECK(g.mse_chosen > 0);
  }
  // Static activations are judged with the one input_scale they will be stored with: every token
  // quantized on the calibration maximum's grid costs more than its own per-token grid.
  SmoothQuantConfig cs = c;
  cs.static_activations = true;
  SmoothQuantizer ss(*src, cs);
  ss.calibrate();
  REQUIRE(ss.groups().size() == sq.groups().size());
  for (size_t i = 0; i < ss.groups().size(); ++i) {
    INFO(ss.groups()[i].norm);
    CHECK(ss.groups()[i].mse_chosen <= ss.groups()[i].mse_default);
    CHECK(ss.groups()[i].mse_chosen > sq.groups()[i].mse_chosen);
  }
  // A lower percentile clips the statistic: smaller a_j than the max.
  SmoothQuantConfig p = sq_test_config();
  p.calibration_data = *calib;
  p.activation_percentile = 99;
  SmoothQuantizer sp(*src, p);
  sp.calibrate();
  SmoothQuantConfig m = p;
  m.activation_percentile = 100;
  SmoothQuantizer sm(*src, m);
  sm.calibrate();
  for (size_t i = 0; i < sp.groups().size(); ++i) CHECK(sp.groups()[i].activation_max < sm.groups()[i].activation_max);
}

TEST_CASE("smoothquant: MigrationAnalyzer moves an outlier channel into the weights", "[smoothquant]") {
  // Inputs with one channel 50x larger than the rest, as LLM activations have: per-token int8
  // activations lose the other channels at alpha 0; migrating the range into the weights helps.
  const int64_t n = 64, rows = 96;
  std::vector<float> x = test::gaussian(static_cast<size_t>(rows * n), 11);
  for (int64_t r = 0; r < rows; ++r) x[static_cast<size_t>(r * n + 5)] *= 50;
  std::vector<std::vector<float>> w = {test::gaussian(static_cast<size_t>(32 * n), 12),
                                       test::gaussian(static_cast<size_t>(16 * n), 13)};
  std::vector<float> a(static_cast<size_t>(n), 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) a[static_cast<size_t>(j)] = std::max(a[static_cast<size_t>(j)], std::fabs(x[static_cast<size_t>(r * n + j)]));
  const MigrationAnalyzer an({0, 0.25, 0.5, 0.75, 1});
  const MigrationResult m = an.find_optimal_alpha(w, x, rows, a);
  REQUIRE(m.errors.size() == 5);
  CHECK(m.alpha > 0);
  CHECK(m.error == *std::min_element(m.errors.begin(), m.errors.end()));
  CHECK(m.errors[0] > 2 * m.error);
  // error() agrees with the search for the same scales.
  std::vector<float> wmax(static_cast<size_t>(n), 0.0f);
  for (const auto& mat : w)
    for (size_t k = 0; k < mat.size(); ++k) wmax[k % n] = std::max(wmax[k % n], std::fabs(mat[k]));
  CHECK(an.error(w, x, rows, smoothing_scales(a, wmax, m.alpha)) == Approx(m.error).epsilon(1e-9));
  // Static activations: one input scale max_j a_j / s_j / 127.5 for every token; at alpha 0 (the
  // outlier channel left in the activations) it costs more than per-token scales, and error() (its
  // maximum over the same rows) agrees with the search.
  const MigrationAnalyzer st({0, 0.25, 0.5, 0.75, 1}, true, true);
  const MigrationResult ms = st.find_optimal_alpha(w, x, rows, a);
  REQUIRE(ms.errors.size() == 5);
  CHECK(ms.errors[0] > m.errors[0]);
  CHECK(ms.errors != m.errors);
  CHECK(st.error(w, x, rows, smoothing_scales(a, wmax, ms.alpha)) == Approx(ms.error).epsilon(1e-9));
  // Scales: a^alpha / w^(1-alpha), a where the weights are zero, floored at 1e-5.
  const auto s = smoothing_scales({4, 9, 0, 2}, {1, 4, 1, 0}, 0.5);
  CHECK(s[0] == Approx(2));
  CHECK(s[1] == Approx(1.5));
  CHECK(s[2] == Approx(1e-5));
  CHECK(s[3] == Approx(2));
  CHECK_THROWS_AS(MigrationAnalyzer({1.5}), Error);
}

TEST_CASE("smoothquant: configuration errors", "[smoothquant]") {
  SmoothQuantConfig c;
  c.alpha = 1.5;
  CHECK_THROWS_WITH(validate(c), Catch::Matchers::Contains("alpha"));
  c.alpha = std::nan("");
  CHECK_THROWS_AS(validate(c), Error);
  c = {};
  c.activation_percentile = 0;
  CHECK_THROWS_WITH(validate(c), Catch::Matchers::Contains("percentile"));
  c.activation_percentile = 100.5;
  CHECK_THROWS_AS(validate(c), Error);
  c = {};
  c.alpha_grid = {0.5, -0.1};
  CHECK_THROWS_AS(validate(c), Error);
  try {
    c = {};
    c.alpha = -1;
    validate(c);
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::invalid_argument);
  }
}

TEST_CASE("smoothquant: cancellation leaves no directory", "[smoothquant]") {
  auto t = sq_calibrate_tiny(sq_test_config());
  if (!t) return;
  test::check_directory_writes([&](const fs::path& out, const Context& ctx) { t->sq->write(out, ctx); });
}

TEST_CASE("smoothquant: CLI usage errors exit 2", "[smoothquant][cli]") {
  auto dir = test::shared_file("models/tiny-llama");
  if (!dir) return;
  const std::string m = dir->string();
  test::TempDir tmp;
  const std::string o = " -o " + (tmp / "o").string();
  for (const auto& c : std::vector<test::CliFailure>{
           {"quantize " + m + " gguf -q Q8_0 --smoothquant" + o, 2, "validation rule 5"},
           {"quantize " + m + " gguf -q Q8_0 --alpha 0.5" + o, 2, "validation rule 6"},
           {"quantize " + m + " smoothquant --alpha 0.5" + o, 2, "--smoothquant"},
           {"quantize " + m + " smoothquant --smoothquant --alpha 1.5" + o, 2, "--alpha"},
           {"quantize " + m + " smoothquant --smoothquant --alpha half" + o, 2, "--alpha"},
           {"quantize " + m + " smoothquant --smoothquant --activation-percentile 0" + o, 2, "percentile"},
           {"quantize " + m + " smoothquant --smoothquant --activation-percentile 101" + o, 2, "percentile"},
           {"quantize " + m + " smoothquant --smoothquant -q Q8_0" + o, 2, "--quantization"},
           {"quantize " + m + " gguf -q Q8_0 --static-activations" + o, 2, "--smoothquant"},
       })
    test::check_cli_failure(c);
  CHECK(fs::is_empty(tmp.path()));
}

TEST_CASE("smoothquant: CLI transformation failures exit 14 naming the layer, nothing written", "[smoothquant][cli]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = sq_calibration_file();
  if (!dir || !calib) return;
  struct Broken {
    const char* tensor;
    std::function<void(std::vector<float>&)> edit;
    const char* needle;
  };
  const std::vector<Broken> cases = {
      {"model.layers.2.input_layernorm.weight", [](std::vector<float>& v) { std::fill(v.begin(), v.end(), 0.0f); },
       "model.layers.2.input_layernorm output has no calibration signal"},
      {"model.layers.1.post_attention_layernorm.weight",
       [](std::vector<float>& v) { v[7] = std::numeric_limits<float>::infinity(); },
       "model.layers.1.post_attention_layernorm output holds NaN or infinite"},
  };
  for (const auto& b : cases) {
    INFO(b.tensor);
    test::TempDir tmp;
    fs::create_directory(tmp / "model");
    sq_edited_copy(*dir, tmp / "model", b.tensor, b.edit);
    test::check_cli_failure({"quantize " + (tmp / "model").string() + " smoothquant --smoothquant --calibration-samples 2 "
                             "--ctx 64 --calibration-data " + calib->string() + " -o " + (tmp / "out").string(),
                             14, b.needle});
    CHECK_FALSE(fs::exists(tmp / "out"));
    CHECK(test::no_write_leftovers(tmp.path()));
  }
}

TEST_CASE("smoothquant: CLI writes the directory and reports per-layer alpha", "[smoothquant][cli]") {
  auto dir = test::shared_file("models/tiny-llama");
  auto calib = sq_calibration_file();
  if (!dir || !calib) return;
  test::TempDir tmp;
  const auto r = test::run(test::cli_path() + " --format json quantize " + dir->string() +
                           " smoothquant --smoothquant --alpha auto --calibration-samples 2 --ctx 64 --calibration-data " +
                           calib->string() + " --static-activations -o " + (tmp / "out").string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["status"] == "success");
  CHECK(j["format"] == "compressed-tensors");
  CHECK(j["alpha"] == "auto");
  REQUIRE(j["layer_summary"].size() == 12);
  for (const auto& l : j["layer_summary"]) {
    CHECK(l["alpha"].get<double>() >= 0);
    CHECK(l["alpha"].get<double>() <= 1);
    CHECK(l["relative_mse"].get<double>() <= l["relative_mse_default_alpha"].get<double>());
  }
  CHECK(j["effective_bpw"].get<double>() > 8);
  CHECK(j["file_size"].get<uint64_t>() > 0);
  CHECK(j["calibration_samples"] == 2);
  CHECK(fs::exists(tmp / "out" / "model.safetensors"));
  const auto cfg = nlohmann::json::parse(read_file(tmp / "out" / "config.json"));
  CHECK(cfg["quantization_config"]["config_groups"]["group_0"]["input_activations"]["strategy"] == "tensor");
  CHECK(r.err.find("alpha") != std::string::npos);  // progress names the chosen alpha per layer
}
