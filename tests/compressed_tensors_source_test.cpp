// compressed-tensors int8 (W8A8) checkpoints as a model source: a tiny model whose block linears
// are written as int8 + weight_scale (our safetensors writer) opens with those linears as W8 rows
// and evaluates exactly as the same model with the same W8 weights put in memory; bf16 scales,
// per-tensor scales and the ignore list are read; every unsupported scheme is one named error.
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/model.hpp>
#include <lq/quant_type.hpp>

#include "core/half.hpp"
#include "formats/safetensors.hpp"
#include "formats/safetensors_writer.hpp"
#include "types/ref/int8_rows.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <regex>

using namespace lq;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool ct_linear(const std::string& name) {
  static const std::regex re(R"(model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight)");
  return std::regex_match(name, re);
}

json ct_quantization_config() {
  return json::parse(R"({
    "quant_method": "compressed-tensors", "format": "int-quantized", "quantization_status": "compressed",
    "config_groups": {"group_0": {"targets": ["Linear"],
      "weights": {"num_bits": 8, "type": "int", "symmetric": true, "strategy": "channel", "dynamic": false,
                  "group_size": null, "actorder": null, "block_structure": null},
      "input_activations": {"num_bits": 8, "type": "int", "symmetric": true, "strategy": "token", "dynamic": true},
      "output_activations": null}},
    "ignore": ["lm_head"], "kv_cache_scheme": null})");
}

struct CtOptions {
  StDtype scale_dtype = StDtype::F32;
  bool per_tensor = false;            // one scale per weight ([1])
  float input_scale = 0;              // > 0: static activations, this input_scale for every linear
  std::function<void(json&)> edit_config;
  std::function<void(std::vector<StTensorSpec>&, std::vector<std::vector<uint8_t>>&)> edit_tensors;
};

// The tiny model's block linears as compressed-tensors int8 (quantized with ref::quantize_w8, or
// one scale per tensor), everything else as stored, into `out`.
void write_ct_checkpoint(const fs::path& src, const fs::path& out, const CtOptions& o = {}) {
  fs::create_directories(out);
  for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                        "generation_config.json"})
    if (fs::exists(src / f)) fs::copy_file(src / f, out / f);
  json cfg = json::parse(read_file(src / "config.json"));
  cfg["quantization_config"] = ct_quantization_config();
  if (o.input_scale > 0) {
    auto& in = cfg["quantization_config"]["config_groups"]["group_0"]["input_activations"];
    in["strategy"] = "tensor";
    in["dynamic"] = false;
  }
  if (o.edit_config) o.edit_config(cfg);
  write_file_atomic(out / "config.json", cfg.dump(2));
  std::vector<StTensorSpec> specs;
  std::vector<std::vector<uint8_t>> data;
  test::for_each_safetensors_tensor(src, [&](const StTensor& t, std::vector<uint8_t>& raw) {
    if (!ct_linear(t.name)) {
      specs.push_back({t.name, t.dtype, t.shape});
      data.push_back(std::move(raw));
      return;
    }
    const int64_t rows = t.shape[0], cols = t.shape[1];
    const std::vector<float> w = test::bf16_values(raw.data(), static_cast<size_t>(rows * cols));
    std::vector<float> scales(static_cast<size_t>(rows));
    std::vector<uint8_t> q(static_cast<size_t>(rows * cols));
    std::vector<uint8_t> row(static_cast<size_t>(cols + 4));
    float amax = 0;
    for (float v : w) amax = std::max(amax, std::fabs(v));
    for (int64_t r = 0; r < rows; ++r) {
      if (o.per_tensor) {  // one scale: W8 rows with a given scale
        scales[r] = amax / 127.5f;
        for (int64_t c = 0; c < cols; ++c)
          q[r * cols + c] = static_cast<uint8_t>(static_cast<int8_t>(
              std::clamp(std::nearbyint(w[r * cols + c] / scales[r]), -128.f, 127.f)));
        continue;
      }
      ref::quantize_w8(w.data() + r * cols, row.data(), 1, cols, nullptr);
      std::memcpy(&scales[r], row.data(), 4);
      std::memcpy(q.data() + r * cols, row.data() + 4, static_cast<size_t>(cols));
    }
    specs.push_back({t.name, StDtype::I8, t.shape});
    data.push_back(std::move(q));
    const std::string mod = t.name.substr(0, t.name.size() - 7);
    const int64_t ns = o.per_tensor ? 1 : rows;
    specs.push_back({mod + ".weight_scale", o.scale_dtype, o.per_tensor ? std::vector<int64_t>{1} : std::vector<int64_t>{rows, 1}});
    std::vector<uint8_t> sb;
    for (int64_t i = 0; i < ns; ++i) {
      if (o.scale_dtype == StDtype::F32) {
        sb.resize(sb.size() + 4);
        std::memcpy(sb.data() + sb.size() - 4, &scales[i], 4);
      } else {
        const uint16_t h = o.scale_dtype == StDtype::BF16 ? f32_to_bf16(scales[i]) : f32_to_fp16(scales[i]);
        sb.resize(sb.size() + 2);
        std::memcpy(sb.data() + sb.size() - 2, &h, 2);
      }
    }
    data.push_back(std::move(sb));
    if (o.input_scale > 0) {
      specs.push_back({mod + ".input_scale", StDtype::F32, {1}});
      std::vector<uint8_t> b(4);
      std::memcpy(b.data(), &o.input_scale, 4);
      data.push_back(std::move(b));
    }
  });
  if (o.edit_tensors) o.edit_tensors(specs, data);
  ShardedSafetensorsWriter wr(out, specs);
  for (size_t i = 0; i < specs.size(); ++i) wr.write(specs[i].name, data[i].data(), data[i].size());
  wr.commit();
}

std::vector<float> ct_logits(const Model& m, const std::vector<int32_t>& prompt) {
  return test::logits_of(m, prompt, -1);
}

}  // namespace

TEST_CASE("compressed-tensors: an int8 checkpoint opens with W8 linears and runs as in memory", "[int8][model]") {
  const auto tiny = test::shared_file("models/tiny-llama");
  if (!tiny) return;
  const fs::path src = *tiny;
  test::TempDir dir;
  write_ct_checkpoint(src, dir / "w8a8");
  auto ct = Model::load(dir / "w8a8");
  auto mem = Model::load(src);
  int w8 = 0;
  for (const LinearInfo& l : ct->linears()) {
    INFO(l.name);
    if (l.layer < 0) {
      CHECK(l.type == QuantType::BF16);  // lm_head is ignored: as stored
      continue;
    }
    CHECK(l.type == QuantType::W8);
    ++w8;
    // The same rows quantized in memory (q/k rows re-ordered for RoPE: per-row scales follow).
    mem->replace_tensor(l.name, mem->tensor_f32(l.name), QuantType::W8);
    CHECK(ct->tensor_f32(l.name) == mem->tensor_f32(l.name));
  }
  CHECK(w8 == 42);
  const std::vector<int32_t> prompt = {1, 450, 1200, 37, 99, 2000, 15, 7, 311, 1024, 64};
  const auto a = ct_logits(*ct, prompt), b = ct_logits(*mem, prompt);
  CHECK(test::same_bits(a, b));

  // ModelSource view: W8 tensors of [in, out] whose rows are the scale and the int8 values.
  auto source = ModelSource::open(dir / "w8a8");
  const ModelTensor& q = source->at("blk.0.attn_q.weight");
  CHECK(q.type == QuantType::W8);
  CHECK(q.row_bytes() == static_cast<size_t>(q.row_length() + 4));
  for (const auto& t : source->tensors()) CHECK(t.name.find("scale") == std::string::npos);
}

TEST_CASE("compressed-tensors: bf16 and per-tensor scales", "[int8][model]") {
  const auto tiny = test::shared_file("models/tiny-llama");
  if (!tiny) return;
  const fs::path src = *tiny;
  test::TempDir dir;
  write_ct_checkpoint(src, dir / "bf16", {.scale_dtype = StDtype::BF16});
  write_ct_checkpoint(src, dir / "tensor", {.per_tensor = true, .edit_config = [](json& c) {
                        c["quantization_config"]["config_groups"]["group_0"]["weights"]["strategy"] = "tensor";
                      }});
  auto f32 = ModelSource::open(dir / "bf16");
  auto bf = Model::load(dir / "bf16");
  // The scale header holds the stored bf16 scale exactly.
  const auto v = bf->tensor_f32("blk.1.ffn_down.weight");
  const ModelTensor& t = f32->at("blk.1.ffn_down.weight");
  std::vector<uint8_t> row(t.row_bytes());
  f32->read_rows_raw(t, 0, 1, row.data());
  float d;
  std::memcpy(&d, row.data(), 4);
  CHECK(d == bf16_to_f32(f32_to_bf16(d)));
  CHECK(v[1] == static_cast<float>(static_cast<int8_t>(row[5])) * d);
  auto tensor = Model::load(dir / "tensor");
  CHECK(tensor->tensor_type("blk.2.attn_v.weight") == QuantType::W8);
  std::vector<uint8_t> r0(t.row_bytes()), r1(t.row_bytes());
  auto ts = ModelSource::open(dir / "tensor");
  ts->read_rows_raw(ts->at("blk.1.ffn_down.weight"), 0, 1, r0.data());
  ts->read_rows_raw(ts->at("blk.1.ffn_down.weight"), 5, 1, r1.data());
  CHECK(std::memcmp(r0.data(), r1.data(), 4) == 0);  // one scale for every row
}

TEST_CASE("compressed-tensors: static activations (input_scale) run as set in memory", "[int8][model]") {
  const auto tiny = test::shared_file("models/tiny-llama");
  if (!tiny) return;
  const fs::path src = *tiny;
  test::TempDir dir;
  const float scale = 0.04f;
  write_ct_checkpoint(src, dir / "static", {.input_scale = scale});
  auto ct = Model::load(dir / "static");
  auto mem = Model::load(src);
  for (const LinearInfo& l : ct->linears()) {
    if (l.layer < 0) continue;
    CHECK(ct->input_scale(l.name) == scale);
    mem->replace_tensor(l.name, mem->tensor_f32(l.name), QuantType::W8);
    mem->set_input_scale(l.name, scale);
  }
  CHECK(ct->input_scale("output.weight") == 0.f);
  const std::vector<int32_t> prompt = {1, 450, 1200, 37, 99, 2000, 15};
  const auto a = ct_logits(*ct, prompt), b = ct_logits(*mem, prompt);
  CHECK(test::same_bits(a, b));
  // One token (below the panel batch) runs the same fixed-scale product.
  const auto a1 = ct_logits(*ct, {1}), b1 = ct_logits(*mem, {1});
  CHECK(test::same_bits(a1, b1));
  // q/k/v and gate/up share the largest of their input scales (vLLM's fused products).
  write_ct_checkpoint(src, dir / "fused", {.input_scale = scale, .edit_tensors = [](auto& specs, auto& data) {
                        for (size_t i = 0; i < specs.size(); ++i)
                          if (specs[i].name == "model.layers.1.self_attn.k_proj.input_scale" ||
                              specs[i].name == "model.layers.1.mlp.gate_proj.input_scale") {
                            const float big = 0.5f;
                            std::memcpy(data[i].data(), &big, 4);
                          }
                      }});
  auto fused = Model::load(dir / "fused");
  for (const char* n : {"blk.1.attn_q.weight", "blk.1.attn_k.weight", "blk.1.attn_v.weight", "blk.1.ffn_gate.weight",
                        "blk.1.ffn_up.weight"})
    CHECK(fused->input_scale(n) == 0.5f);
  for (const char* n : {"blk.1.attn_output.weight", "blk.1.ffn_down.weight", "blk.0.attn_k.weight", "blk.2.ffn_gate.weight"})
    CHECK(fused->input_scale(n) == scale);
  // Dynamic activations with an input_scale stored: inconsistent.
  write_ct_checkpoint(src, dir / "mixed", {.input_scale = scale, .edit_config = [](json& c) {
                        auto& in = c["quantization_config"]["config_groups"]["group_0"]["input_activations"];
                        in["strategy"] = "token";
                        in["dynamic"] = true;
                      }});
  CHECK_THROWS_WITH(Model::load(dir / "mixed"), Catch::Contains("is stored but the activations are dynamic per token"));
}

TEST_CASE("compressed-tensors: unsupported schemes are named errors", "[int8][model]") {
  const auto tiny = test::shared_file("models/tiny-llama");
  if (!tiny) return;
  const fs::path src = *tiny;
  struct Bad {
    const char* what;
    std::function<void(json&)> edit;
    std::string message;
  };
  auto weights = [](json& c) -> json& { return c["quantization_config"]["config_groups"]["group_0"]["weights"]; };
  auto input = [](json& c) -> json& { return c["quantization_config"]["config_groups"]["group_0"]["input_activations"]; };
  const std::vector<Bad> bad = {
      {"4 bits", [&](json& c) { weights(c)["num_bits"] = 4; }, "with 4 bits is not supported"},
      {"group", [&](json& c) { weights(c)["strategy"] = "group"; weights(c)["group_size"] = 128; }, "group_size"},
      {"asymmetric", [&](json& c) { weights(c)["symmetric"] = false; }, "asymmetric"},
      {"pack", [](json& c) { c["quantization_config"]["format"] = "pack-quantized"; }, "does not match the config's scheme"},
      {"float", [&](json& c) { c["quantization_config"]["format"] = "float-quantized"; }, "FP8 E4M3 expected"},
      {"fp8 weights", [&](json& c) { weights(c)["type"] = "float"; }, "of type 'float'"},
      {"static", [&](json& c) { input(c)["strategy"] = "tensor"; input(c)["dynamic"] = false; }, "static activations"},
      {"gptq", [](json& c) { c["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}}; }, "does not match the config's scheme"},
  };
  for (const auto& b : bad) {
    INFO(b.what);
    test::TempDir dir;
    write_ct_checkpoint(src, dir / "m", {.edit_config = b.edit});
    try {
      Model::load(dir / "m");
      FAIL_CHECK("loaded");
    } catch (const Error& e) {
      CHECK(e.code() == Errc::invalid_model);
      CHECK_THAT(e.what(), Catch::Contains(b.message));
    }
  }
  // A missing weight_scale, and an int8 weight on the ignore list.
  test::TempDir dir;
  write_ct_checkpoint(src, dir / "noscale", {.edit_tensors = [](auto& specs, auto& data) {
                        for (size_t i = 0; i < specs.size(); ++i)
                          if (specs[i].name == "model.layers.3.mlp.up_proj.weight_scale") {
                            specs.erase(specs.begin() + static_cast<std::ptrdiff_t>(i));
                            data.erase(data.begin() + static_cast<std::ptrdiff_t>(i));
                            break;
                          }
                      }});
  CHECK_THROWS_WITH(Model::load(dir / "noscale"), Catch::Contains("has no 'model.layers.3.mlp.up_proj.weight_scale'"));
  write_ct_checkpoint(src, dir / "ignored", {.edit_config = [](json& c) {
                        c["quantization_config"]["ignore"] = {"lm_head", "re:.*layers\\.2\\.mlp\\.down_proj"};
                      }});
  CHECK_THROWS_WITH(Model::load(dir / "ignored"), Catch::Contains("is on the quantization ignore list"));
}

// Hidden: writes the fixture to $LQ_CT_FIXTURE_OUT for trying the CLI on it (lq info, perplexity,
// run, quality report ORIGINAL DIR): lq_tests "[.ct-fixture]". $LQ_CT_FIXTURE_SRC: another bf16
// Llama checkpoint to convert instead of the tiny model (e.g. benchmarks' make_synthetic_llama).
TEST_CASE("compressed-tensors: write the int8 fixture to $LQ_CT_FIXTURE_OUT", "[.ct-fixture]") {
  auto cfg = test::shared_file("models/tiny-llama/config.json");
  const char* out = std::getenv("LQ_CT_FIXTURE_OUT");
  if (!cfg || !out) {
    test::skip("needs ../shared/models/tiny-llama and LQ_CT_FIXTURE_OUT");
    return;
  }
  const char* from = std::getenv("LQ_CT_FIXTURE_SRC");
  write_ct_checkpoint(from ? fs::path(from) : cfg->parent_path(), out, {.scale_dtype = StDtype::BF16});
  CHECK(Model::load(out)->tensor_type("blk.0.attn_q.weight") == QuantType::W8);
}
