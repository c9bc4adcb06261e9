// GPTQ W8A8 after SmoothQuant (gptq_model with GptqConfig::smoothquant) on the tiny Llama: the
// directory has the layout of `quantize MODEL smoothquant --smoothquant` (config, names, dtypes,
// shapes; static input scales), block 0's smoothing equals SmoothQuantizer's (same inputs, same
// scales, same folded norms), the fold stays exact (γ'·Wq ≈ γ·W), the GPTQ-rounded int8 weights
// differ from round to nearest and give a lower output error on the calibration set, the engine
// opens the output, and the settings W8A8 cannot hold are refused (library and CLI, exit 2).
#include <lq/calibration.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/gptq.hpp>
#include <lq/io.hpp>
#include <lq/model.hpp>
#include <lq/smoothquant.hpp>
#include <lq/tokenizer.hpp>

#include "core/half.hpp"
#include "formats/safetensors.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace lq;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kW8Samples = 4, kW8Ctx = 64;

SmoothQuantConfig w8_sq(const fs::path& calib, bool is_static) {
  SmoothQuantConfig c;
  c.calibration_samples = kW8Samples;
  c.ctx = kW8Ctx;
  c.calibration_data = calib;
  c.static_activations = is_static;
  return c;
}

GptqConfig w8_gptq(const fs::path& calib, bool is_static) {
  GptqConfig c;
  c.params.bits = 8;
  c.params.group_size = -1;
  c.calibration_samples = kW8Samples;
  c.ctx = kW8Ctx;
  c.calibration_data = calib;
  c.smoothquant = w8_sq(calib, is_static);
  return c;
}

// Every tensor of a checkpoint directory by name.
struct W8Checkpoint {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, std::pair<const SafetensorsFile*, const StTensor*>> tensors;
  explicit W8Checkpoint(const fs::path& dir) {
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") {
        files.push_back(std::make_unique<SafetensorsFile>(e.path()));
        for (const auto& t : files.back()->tensors()) tensors[t.name] = {files.back().get(), &t};
      }
  }
  const StTensor& at(const std::string& n) const { return *tensors.at(n).second; }
  std::vector<uint8_t> bytes(const std::string& n) const {
    const auto& [f, t] = tensors.at(n);
    std::vector<uint8_t> b(t->nbytes);
    f->read(t->begin, t->nbytes, b.data());
    return b;
  }
  std::vector<float> floats(const std::string& n) const {
    const StTensor& t = at(n);
    const auto b = bytes(n);
    const size_t es = st_dtype_size(t.dtype);
    std::vector<float> v(t.nbytes / es);
    for (size_t i = 0; i < v.size(); ++i) {
      uint16_t h = 0;
      std::memcpy(&h, &b[i * es], std::min<size_t>(es, 2));
      if (t.dtype == StDtype::BF16) v[i] = bf16_to_f32(h);
      else if (t.dtype == StDtype::F16) v[i] = fp16_to_f32(h);
      else std::memcpy(&v[i], &b[i * es], 4);
    }
    return v;
  }
  // Dequantized int8 weight of module m: weight * weight_scale per row.
  std::vector<float> dequantized(const std::string& m) const {
    const StTensor& t = at(m + ".weight");
    const auto q = bytes(m + ".weight");
    const auto sc = floats(m + ".weight_scale");
    const int64_t rows = t.shape[0], cols = t.shape[1];
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        w[static_cast<size_t>(r * cols + c)] =
            static_cast<float>(static_cast<int8_t>(q[static_cast<size_t>(r * cols + c)])) * sc[static_cast<size_t>(r)];
    return w;
  }
};

// The float inputs of layer 0's q/k/v (k = 0) and gate/up (k = 1) products on the calibration
// chunks the quantizers use (norm output times γ), rows of n values.
std::vector<float> w8_layer0_inputs(const test::TinyWithCalibration& t, int k, int64_t& n) {
  auto src = ModelSource::open(t.dir);
  auto model = Model::load(*src);
  const Tokenizer tok = Tokenizer::from_gguf(src->gguf_metadata(), src->path().string());
  const auto tokens = imatrix_calibration_tokens(load_calibration(t.calib), tok, kW8Ctx * kW8Samples);
  const auto chunks = make_chunks(tokens, kW8Ctx, kW8Samples, model->add_bos() ? model->bos_token() : -1);
  std::vector<float> x;
  SessionOptions so;
  so.n_ctx = kW8Ctx;
  so.hook_inputs_only = true;
  Session s(*model, so);
  const char* role = k == 0 ? "attn_q" : "ffn_gate";
  s.set_linear_hook([&](const LinearEvent& ev) {
    if (ev.linear->layer != 0 || ev.linear->role != role) return;
    n = ev.linear->n_in;
    x.insert(x.end(), ev.input, ev.input + ev.n_tokens * ev.linear->n_in);
  });
  for (const auto& c : chunks) {
    s.clear();
    s.eval(c, static_cast<int64_t>(c.size()));
  }
  return x;
}

// sum over rows of |x W^T|^2 differences: x (rows x n) against weights a and b (out x n).
double w8_output_error(const std::vector<float>& x, int64_t n, const std::vector<float>& a, const std::vector<float>& b) {
  const int64_t rows = static_cast<int64_t>(x.size()) / n, out = static_cast<int64_t>(a.size()) / n;
  double e = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double ya = 0, yb = 0;
      for (int64_t j = 0; j < n; ++j) {
        ya += static_cast<double>(x[static_cast<size_t>(r * n + j)]) * a[static_cast<size_t>(o * n + j)];
        yb += static_cast<double>(x[static_cast<size_t>(r * n + j)]) * b[static_cast<size_t>(o * n + j)];
      }
      e += (ya - yb) * (ya - yb);
    }
  return e;
}

}  // namespace

TEST_CASE("gptq w8a8: the smoothquant directory's layout, GPTQ-rounded weights that beat RTN on the calibration set",
          "[gptq][gptq-w8a8]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  test::TempDir tmp;
  auto src = ModelSource::open(t->dir);
  // Round to nearest: SmoothQuantizer's output with the same smoothing settings and calibration.
  SmoothQuantizer sq(*src, w8_sq(t->calib, false));
  sq.calibrate();
  sq.write(tmp / "rtn");
  const GptqResult r = gptq_model(t->dir, tmp / "gptq", w8_gptq(t->calib, false));
  CHECK(r.output == tmp / "gptq");
  CHECK(r.smoothing.size() == 2 * static_cast<size_t>(src->config().n_layer));
  for (const auto& e : fs::directory_iterator(tmp.path()))
    CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);

  // config.json and the tensors: exactly the layout of the smoothquant output.
  CHECK(nlohmann::json::parse(read_file(tmp / "gptq" / "config.json")) ==
        nlohmann::json::parse(read_file(tmp / "rtn" / "config.json")));
  W8Checkpoint in(t->dir), rtn(tmp / "rtn"), gq(tmp / "gptq");
  REQUIRE(gq.tensors.size() == rtn.tensors.size());
  for (const auto& [name, ft] : rtn.tensors) {
    INFO(name);
    REQUIRE(gq.tensors.count(name));
    CHECK(gq.at(name).dtype == ft.second->dtype);
    CHECK(gq.at(name).shape == ft.second->shape);
    if (name.find("layers.") == std::string::npos) CHECK(gq.bytes(name) == rtn.bytes(name));  // embeddings, final norm
  }
  CHECK(gq.at("model.layers.0.self_attn.q_proj.weight").dtype == StDtype::I8);
  CHECK(gq.tensors.count("model.layers.0.self_attn.q_proj.input_scale") == 0);

  // Block 0 sees the same inputs in both pipelines: the same smoothing, so the same folded norms.
  for (const char* norm : {"model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight"}) {
    INFO(norm);
    const auto a = gq.floats(norm), b = rtn.floats(norm), g = in.floats(norm);
    REQUIRE(a.size() == b.size());
    double worst = 0;
    for (size_t j = 0; j < a.size(); ++j) worst = std::max(worst, std::fabs(double(a[j]) - b[j]) / std::fabs(double(b[j])));
    CHECK(worst < 1.0 / 128);  // at most one bf16 step apart
    CHECK(a != g);             // and smoothing changed them
  }

  // Per module of block 0: the fold is exact up to the int8 rounding (γ'·Wq ≈ γ·W column by
  // column), GPTQ's codes differ from RTN's, and its output error on the calibration inputs is lower.
  struct Mod {
    const char* module;
    const char* norm;
    int k;
  };
  const Mod mods[] = {{"model.layers.0.self_attn.q_proj", "model.layers.0.input_layernorm.weight", 0},
                      {"model.layers.0.self_attn.v_proj", "model.layers.0.input_layernorm.weight", 0},
                      {"model.layers.0.mlp.up_proj", "model.layers.0.post_attention_layernorm.weight", 1}};
  std::vector<float> x[2];
  int64_t n[2] = {0, 0};
  for (int k = 0; k < 2; ++k) x[k] = w8_layer0_inputs(*t, k, n[k]);
  for (const Mod& m : mods) {
    INFO(m.module);
    const std::string w = std::string(m.module) + ".weight";
    const auto gamma = in.floats(m.norm), gamma_g = gq.floats(m.norm), gamma_r = rtn.floats(m.norm);
    const auto w0 = in.floats(w), wg = gq.dequantized(m.module), wr = rtn.dequantized(m.module);
    const int64_t cols = in.at(w).shape[1];
    REQUIRE(cols == n[m.k]);
    REQUIRE(static_cast<int64_t>(gamma.size()) == cols);
    CHECK(gq.bytes(w) != rtn.bytes(w));
    // The effective weights on the un-normed input: γ'·Wq (quantized), γ·W (original).
    auto eff = [&](const std::vector<float>& g, const std::vector<float>& q) {
      std::vector<float> e(q.size());
      for (size_t i = 0; i < q.size(); ++i) e[i] = g[i % static_cast<size_t>(cols)] * q[i];
      return e;
    };
    const auto ref = eff(gamma, w0), eg = eff(gamma_g, wg), er = eff(gamma_r, wr);
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) num += double(eg[i] - ref[i]) * (eg[i] - ref[i]), den += double(ref[i]) * ref[i];
    CHECK(std::sqrt(num / den) < 0.02);
    // The calibration inputs without γ (the norm output), through each effective weight.
    std::vector<float> xn = x[m.k];
    for (size_t i = 0; i < xn.size(); ++i) xn[i] /= gamma[i % static_cast<size_t>(cols)];
    const double e_gptq = w8_output_error(xn, cols, eg, ref), e_rtn = w8_output_error(xn, cols, er, ref);
    INFO("output error: gptq " << e_gptq << ", rtn " << e_rtn);
    CHECK(e_gptq < 0.9 * e_rtn);
  }

  // The engine opens it as a W8A8 model and computes finite logits close to the original's.
  auto out_src = ModelSource::open(tmp / "gptq");
  auto qm = Model::load(*out_src);
  auto om = Model::load(*src);
  const Tokenizer tok = Tokenizer::from_gguf(src->gguf_metadata(), src->path().string());
  const auto tokens = tok.encode("Once upon a time, there was a little dog named Max. He liked to run");
  Session a(*om), b(*qm);
  a.eval(tokens, 0);
  b.eval(tokens, 0);
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.n_outputs(); ++i) {
    const auto la = a.logits(i), lb = b.logits(i);
    for (size_t j = 0; j < la.size(); ++j) {
      REQUIRE(std::isfinite(lb[j]));
      num += double(la[j] - lb[j]) * (la[j] - lb[j]);
      den += double(la[j]) * la[j];
    }
  }
  CHECK(std::sqrt(num / den) < 0.05);
}

TEST_CASE("gptq w8a8: static activations write an input scale per linear, shared by the fused shards",
          "[gptq][gptq-w8a8]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  test::TempDir tmp;
  const GptqResult r = gptq_model(t->dir, tmp / "out", w8_gptq(t->calib, true));
  const auto cfg = nlohmann::json::parse(read_file(tmp / "out" / "config.json"));
  const auto& ia = cfg["quantization_config"]["config_groups"]["group_0"]["input_activations"];
  CHECK(ia["strategy"] == "tensor");
  CHECK(ia["dynamic"] == false);
  W8Checkpoint ck(tmp / "out");
  for (int64_t L = 0; L < 2; ++L) {
    const std::string p = "model.layers." + std::to_string(L) + ".";
    std::map<std::string, float> is;
    for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                          "mlp.up_proj", "mlp.down_proj"}) {
      INFO(p + m);
      const StTensor& s = ck.at(p + m + ".input_scale");
      CHECK(s.shape == std::vector<int64_t>{1});
      is[m] = ck.floats(p + m + ".input_scale")[0];
      CHECK(is[m] > 0);
    }
    CHECK(is["self_attn.q_proj"] == is["self_attn.k_proj"]);
    CHECK(is["self_attn.q_proj"] == is["self_attn.v_proj"]);
    CHECK(is["mlp.gate_proj"] == is["mlp.up_proj"]);
    // The smoothed maximum of the norm output over 127.5 (bf16-rounded).
    const double want = r.smoothing[static_cast<size_t>(2 * L)].activation_max_smoothed / 127.5;
    CHECK(std::fabs(is["self_attn.q_proj"] - want) <= want / 128);
  }
}

TEST_CASE("gptq w8a8: settings W8A8 cannot hold are refused", "[gptq][gptq-w8a8]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  test::TempDir tmp;
  auto refused = [&](GptqConfig c, const char* needle) {
    INFO(needle);
    CHECK_THROWS_WITH(gptq_model(t->dir, tmp / "out", c), Catch::Matchers::Contains(needle));
    CHECK(fs::is_empty(tmp.path()));
  };
  GptqConfig c = w8_gptq(t->calib, false);
  c.params.bits = 4;
  refused(c, "bits 8, group size -1");
  c = w8_gptq(t->calib, false);
  c.params.group_size = 128;
  refused(c, "bits 8, group size -1");
  c = w8_gptq(t->calib, false);
  c.params.sym = false;
  refused(c, "bits 8, group size -1");
  c = w8_gptq(t->calib, false);
  c.layout = GptqLayout::gptq;
  refused(c, "compressed-tensors layout");
  c = w8_gptq(t->calib, false);
  c.params.rtn = true;
  refused(c, "smoothquant --smoothquant");
  c = w8_gptq(t->calib, false);
  c.smoothquant->per_channel = false;
  refused(c, "per output channel");
  c = w8_gptq(t->calib, false);
  c.smoothquant->alpha = 2;
  refused(c, "alpha");
  auto src = ModelSource::open(t->dir);
  CHECK_THROWS_WITH(GptqQuantizer(*src, w8_gptq(t->calib, false)), Catch::Matchers::Contains("gptq_model"));

  const std::string m = t->dir.string(), o = " -o " + (tmp / "o").string();
  for (const auto& f : std::vector<test::CliFailure>{
           {"quantize " + m + " rtn --smoothquant" + o, 2, "validation rule 5"},
           {"quantize " + m + " awq --smoothquant" + o, 2, "validation rule 5"},
           {"quantize " + m + " gptq --alpha 0.5" + o, 2, "validation rule 6"},
           {"quantize " + m + " gptq --static-activations" + o, 2, "--smoothquant"},
           {"quantize " + m + " gptq --smoothquant --bits 4" + o, 2, "--bits 4"},
           {"quantize " + m + " gptq --smoothquant --group-size 128" + o, 2, "--group-size -1"},
           {"quantize " + m + " gptq --smoothquant --asym" + o, 2, "--asym"},
           {"quantize " + m + " gptq --smoothquant --layout gptq" + o, 2, "--layout gptq"},
           {"quantize " + m + " gptq --smoothquant --method rtn" + o, 2, "smoothquant --smoothquant"},
           {"quantize " + m + " gptq --smoothquant --per-tensor-weights" + o, 2, "per channel"},
           {"quantize " + m + " gptq --smoothquant --alpha 1.5" + o, 2, "--alpha"},
       })
    test::check_cli_failure(f);
  CHECK(fs::is_empty(tmp.path()));
}

TEST_CASE("gptq w8a8: lq quantize MODEL gptq --smoothquant writes W8A8 and reports the smoothing", "[gptq][gptq-w8a8][cli]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  test::TempDir tmp;
  const auto res = test::run(test::cli_path() + " --threads 2 --format json quantize " + t->dir.string() +
                             " gptq --smoothquant --alpha auto --calibration-samples 2 --ctx 48 --calibration-data " +
                             t->calib.string() + " -o " + (tmp / "out").string());
  INFO(res.err);
  REQUIRE(res.status == 0);
  const auto j = nlohmann::json::parse(res.out);
  CHECK(j["quantization_level"] == "W8A8");
  CHECK(j["format"] == "compressed-tensors");
  CHECK(j["bits"] == 8);
  CHECK(j["group_size"] == -1);
  CHECK(j["smoothquant"]["alpha"] == "auto");
  REQUIRE(j["smoothquant"]["groups"].size() == 12);
  for (const auto& g : j["smoothquant"]["groups"]) {
    CHECK(g["alpha"].get<double>() >= 0);
    CHECK(g["alpha"].get<double>() <= 1);
    CHECK(g["relative_mse"].get<double>() <= g["relative_mse_default_alpha"].get<double>());
  }
  const auto cfg = nlohmann::json::parse(read_file(tmp / "out" / "config.json"));
  CHECK(cfg["quantization_config"]["format"] == "int-quantized");
}

TEST_CASE("gptq w8a8: a cancelled run resumes from its checkpoint (smoothing included) to the same bytes",
          "[gptq][gptq-w8a8]") {
  auto t = test::tiny_with_calibration();
  if (!t) return;
  test::TempDir tmp;
  GptqConfig c = w8_gptq(t->calib, true);
  c.calibration_samples = 2;
  c.ctx = 48;
  const GptqResult ref = gptq_model(t->dir, tmp / "ref", c);
  const auto want = test::files_below(tmp / "ref");
  c.checkpoint_dir = gptq_checkpoint_state(tmp / "ckpt", c, false);
  CHECK(c.checkpoint_dir == tmp / "ckpt" / "gptq-w8a8-sq-static");
  test::CancelAfter stop(2, "GPTQ");
  CHECK_THROWS_AS(gptq_model(t->dir, tmp / "out", c, stop.ctx()), Error);
  REQUIRE(fs::exists(c.checkpoint_dir / "state.json"));
  // Other smoothing settings are another run.
  GptqConfig other = c;
  other.resume = true;
  other.smoothquant->alpha = 0.7;
  CHECK_THROWS_WITH(gptq_model(t->dir, tmp / "out", other), Catch::Matchers::Contains("other quantization settings"));
  c.resume = true;
  const GptqResult r = gptq_model(t->dir, tmp / "out", c);
  CHECK(r.resumed_blocks >= 2);
  CHECK(r.resumed_blocks < 6);
  CHECK(test::files_below(tmp / "out") == want);
  REQUIRE(r.smoothing.size() == ref.smoothing.size());
  for (size_t g = 0; g < r.smoothing.size(); ++g) {
    CHECK(r.smoothing[g].norm == ref.smoothing[g].norm);
    CHECK(r.smoothing[g].activation_max_smoothed == ref.smoothing[g].activation_max_smoothed);
  }
  CHECK_FALSE(fs::exists(tmp / "ckpt"));
}
