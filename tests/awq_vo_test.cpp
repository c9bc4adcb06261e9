// AWQ's v_proj -> o_proj group. With as many key/value heads as query heads (an MHA copy of the
// tiny model: each kv head's k/v rows repeated for the query heads that share it, so it computes
// the same function): the v -> o fold keeps the logits when nothing is quantized, and AwqQuantizer
// applies it: v_proj's rows and o_proj's columns move by reciprocal scales that are not all 1; the
// streamed run (awq_model) writes the same bytes. Under GQA (the tiny model itself), where AutoAWQ
// skips the pair: one scale a v row, shared by the o columns of every query head reading that kv
// head; the tied fold keeps the function (and tied the wrong way does not), the quantizer moves
// each v row with its o columns, and the streamed run writes the same bytes.
#include "support/support.hpp"

#include <lq/awq.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/model.hpp>

#include "core/half.hpp"
#include "formats/safetensors.hpp"
#include "formats/safetensors_writer.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace lq;

namespace {

// The tiny model with n_kv_heads = n_heads: k_proj and v_proj rows of kv head h / group repeated
// for query head h (Hugging Face order keeps a head's rows together, so q/k's RoPE permutation is
// per head and unaffected). Returns the new checkpoint's directory.
// With qwen2: a Qwen2 checkpoint instead (model_type qwen2, NEOX RoPE, random q/k/v biases in bf16):
// another function, but a valid Qwen2 model whose v_proj -> o_proj fold also scales the v bias.
fs::path avo_mha_copy(const fs::path& tiny, const fs::path& out, bool qwen2 = false) {
  fs::create_directories(out);
  auto cfg = nlohmann::ordered_json::parse(read_file(tiny / "config.json"));
  const int64_t n_head = cfg["num_attention_heads"].get<int64_t>(), n_kv = cfg["num_key_value_heads"].get<int64_t>();
  const int64_t hd = cfg["head_dim"].get<int64_t>();
  REQUIRE(n_head % n_kv == 0);
  const int64_t group = n_head / n_kv;
  cfg["num_key_value_heads"] = n_head;
  if (qwen2) {
    cfg["model_type"] = "qwen2";
    cfg["architectures"] = {"Qwen2ForCausalLM"};
  }
  write_file_atomic(out / "config.json", cfg.dump(2) + "\n");
  for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                        "generation_config.json"})
    if (fs::exists(tiny / f)) fs::copy_file(tiny / f, out / f);
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (const auto& e : fs::directory_iterator(tiny))
    if (e.path().extension() == ".safetensors") files.push_back(std::make_unique<SafetensorsFile>(e.path()));
  struct Item {
    const SafetensorsFile* f;
    const StTensor* t;
    bool expand;
  };
  std::vector<Item> items;
  std::vector<StTensorSpec> specs;
  for (const auto& f : files)
    for (const auto& t : f->tensors()) {
      const bool kv = t.name.find("k_proj.weight") != std::string::npos || t.name.find("v_proj.weight") != std::string::npos;
      std::vector<int64_t> shape = t.shape;
      if (kv) {
        REQUIRE(shape[0] == n_kv * hd);
        shape[0] = n_head * hd;
      }
      specs.push_back({t.name, t.dtype, shape});
      items.push_back({f.get(), &t, kv});
    }
  const int64_t n_layer = cfg["num_hidden_layers"].get<int64_t>();
  if (qwen2)
    for (int64_t L = 0; L < n_layer; ++L)
      for (const char* m : {"q_proj", "k_proj", "v_proj"})
        specs.push_back({"model.layers." + std::to_string(L) + ".self_attn." + m + ".bias", StDtype::BF16, {n_head * hd}});
  ShardedSafetensorsWriter w(out, specs);
  std::vector<uint8_t> raw, big;
  for (const Item& it : items) {
    raw.resize(it.t->nbytes);
    it.f->read(it.t->begin, it.t->nbytes, raw.data());
    if (!it.expand) {
      w.write(it.t->name, raw.data(), raw.size());
      continue;
    }
    const size_t row = it.t->nbytes / static_cast<size_t>(it.t->shape[0]);
    big.resize(row * static_cast<size_t>(n_head * hd));
    for (int64_t h = 0; h < n_head; ++h)
      std::memcpy(&big[static_cast<size_t>(h * hd) * row], &raw[static_cast<size_t>((h / group) * hd) * row],
                  row * static_cast<size_t>(hd));
    w.write(it.t->name, big.data(), big.size());
  }
  std::mt19937 rng(11);
  std::normal_distribution<float> N(0.0f, 0.05f);
  for (size_t i = items.size(); i < specs.size(); ++i) {
    std::vector<uint16_t> b(static_cast<size_t>(n_head * hd));
    for (auto& v : b) v = f32_to_bf16(N(rng));
    w.write(specs[i].name, b.data(), b.size() * 2);
  }
  w.commit();
  return out;
}

// Euclidean norms of the rows (by_rows) or the columns of a rows x cols matrix.
std::vector<double> avo_norms(const std::vector<float>& w, int64_t rows, int64_t cols, bool by_rows) {
  std::vector<double> n(static_cast<size_t>(by_rows ? rows : cols), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const double v = w[static_cast<size_t>(r * cols + c)];
      n[static_cast<size_t>(by_rows ? r : c)] += v * v;
    }
  for (auto& x : n) x = std::sqrt(x);
  return n;
}

// How block 0's v rows and o columns moved between a run with the v -> o group (on) and one
// without (off): per o column c, the factor of v row row_of(c) (its norm without / with, ~ s) and
// of column c (with / without, ~ s); lo and hi of the v factors, and the worst |log| ratio of the two.
struct AvoMove {
  double lo = 1e30, hi = 0, worst = 0;
};
AvoMove avo_move(const AwqQuantizer& on, const AwqQuantizer& off, int64_t d, int64_t n_v, int64_t n_o,
                 const std::function<int64_t(int64_t)>& row_of) {
  const auto v_on = on.matrix("model.layers.0.self_attn.v_proj").dequantize(),
             v_off = off.matrix("model.layers.0.self_attn.v_proj").dequantize();
  const auto o_on = on.matrix("model.layers.0.self_attn.o_proj").dequantize(),
             o_off = off.matrix("model.layers.0.self_attn.o_proj").dequantize();
  const auto rv_on = avo_norms(v_on, n_v, d, true), rv_off = avo_norms(v_off, n_v, d, true);
  const auto co_on = avo_norms(o_on, d, n_o, false), co_off = avo_norms(o_off, d, n_o, false);
  AvoMove m;
  for (int64_t c = 0; c < n_o; ++c) {
    const size_t j = static_cast<size_t>(row_of(c));
    const double sv = rv_off[j] / rv_on[j];
    const double so = co_on[static_cast<size_t>(c)] / co_off[static_cast<size_t>(c)];
    m.lo = std::min(m.lo, sv);
    m.hi = std::max(m.hi, sv);
    m.worst = std::max(m.worst, std::fabs(std::log(sv / so)));
  }
  return m;
}

}  // namespace

TEST_CASE("awq v->o: the fold is exact without quantization and applied by the quantizer on an MHA model", "[awq]") {
  auto tiny = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!tiny || !calib) {
    test::skip("the tiny model or the calibration text is missing (../shared)");
    return;
  }
  test::TempDir tmp;
  const fs::path mha = avo_mha_copy(*tiny, tmp / "mha");
  auto gqa_src = ModelSource::open(*tiny);
  auto src = ModelSource::open(mha);
  auto gqa = Model::load(*gqa_src);
  auto model = Model::load(*src);
  REQUIRE(model->config().n_head_kv == model->config().n_head);
  const std::vector<int32_t> toks = {1, 17, 300, 42, 999, 5, 77, 1500, 8, 64, 2000, 3};
  const auto want = test::logits_of(*gqa, toks);
  // The MHA copy computes the GQA model's function.
  REQUIRE(test::max_rel_diff(test::logits_of(*model, toks), want) < 1e-5);

  // 1. The fold alone: v_proj's rows / s, o_proj's columns * s (engine order = Hugging Face order
  // for v and o's columns), in two blocks, random s.
  const int64_t d = model->config().n_embd, nv = model->config().n_head * model->config().head_dim;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> U(0.25f, 4.0f);
  for (const int L : {1, 4}) {
    std::vector<float> s(static_cast<size_t>(nv));
    for (auto& v : s) v = U(rng);
    const std::string vn = "blk." + std::to_string(L) + ".attn_v.weight", on = "blk." + std::to_string(L) + ".attn_output.weight";
    std::vector<float> v = model->tensor_f32(vn), o = model->tensor_f32(on);
    REQUIRE(static_cast<int64_t>(v.size()) == nv * d);
    awq_divide_rows(v, d, s);
    awq_multiply_columns(o, s);
    model->replace_tensor(vn, v);
    // Half a fold (v only) changes the output: the check below can fail.
    CHECK(test::max_rel_diff(test::logits_of(*model, toks), want) > 1e-2);
    model->replace_tensor(on, o);
  }
  CHECK(test::max_rel_diff(test::logits_of(*model, toks), want) < 1e-4);
  // Under GQA the pair does not fit: v has fewer rows than o has columns.
  std::vector<float> gv = gqa->tensor_f32("blk.1.attn_v.weight");
  CHECK_THROWS_AS(awq_divide_rows(gv, d, std::vector<float>(static_cast<size_t>(nv), 2.0f)), Error);

  // 2. The quantizer: with v -> o on, a v_proj->o_proj group per block; block 0's v rows and o
  // columns move by reciprocal factors (the quantization noise aside) that are not all 1.
  auto run = [&](bool vo) {
    AwqConfig c;
    c.calibration_samples = 2;
    c.ctx = 64;
    c.calibration_data = *calib;
    c.params.scale_v_o = vo;
    c.params.identity_candidate = false;  // always a scaling, so the fold has something to move
    auto q = std::make_unique<AwqQuantizer>(*src, c);
    q->run();
    return q;
  };
  const auto on = run(true), off = run(false);
  int vo_groups = 0;
  for (const auto& g : on->summary().groups)
    if (g.group == "v_proj->o_proj") {
      ++vo_groups;
      CHECK(g.alpha >= 0);
    }
  CHECK(vo_groups == model->config().n_layer);
  for (const auto& g : off->summary().groups) CHECK(g.group != "v_proj->o_proj");
  const AvoMove mv = avo_move(*on, *off, d, nv, nv, [](int64_t c) { return c; });
  INFO("v row factor range " << mv.lo << " .. " << mv.hi << ", worst log mismatch with o's columns " << mv.worst);
  CHECK(mv.hi / mv.lo > 1.2);    // the scales are not all 1
  CHECK(mv.worst < 0.15);        // v's rows and o's columns moved by the same s_j

  // 3. Streamed (one block in memory, awq_model's path for this checkpoint): the same bytes.
  on->write(tmp / "memory");
  AwqConfig c;
  c.calibration_samples = 2;
  c.ctx = 64;
  c.calibration_data = *calib;
  c.params.identity_candidate = false;
  const AwqResult streamed = awq_model(mha, tmp / "stream", c);
  CHECK(test::files_below(tmp / "memory") == test::files_below(tmp / "stream"));
  CHECK(streamed.groups.size() == on->summary().groups.size());

  // 4. The same on a Qwen2 copy: the fold divides the v bias too, which the output stores (bf16)
  // and the next blocks are calibrated with.
  const fs::path q2 = avo_mha_copy(*tiny, tmp / "qwen2", true);
  auto q2src = ModelSource::open(q2);
  AwqQuantizer qm(*q2src, c);
  qm.run();
  qm.write(tmp / "qwen2-memory");
  const AwqResult qs = awq_model(q2, tmp / "qwen2-stream", c);
  int q2_vo = 0;
  for (const auto& g : qs.groups) q2_vo += g.group == "v_proj->o_proj";
  CHECK(q2_vo == model->config().n_layer);
  CHECK(test::files_below(tmp / "qwen2-memory") == test::files_below(tmp / "qwen2-stream"));
}

TEST_CASE("awq v->o under GQA: one scale a v row, shared by the o columns of the heads that read it", "[awq]") {
  auto tiny = test::shared_file("models/tiny-llama");
  auto calib = test::shared_file("corpus/calibration.txt");
  if (!tiny || !calib) {
    test::skip("the tiny model or the calibration text is missing (../shared)");
    return;
  }
  auto src = ModelSource::open(*tiny);
  auto model = Model::load(*src);
  const ModelConfig& mc = model->config();
  REQUIRE(mc.n_head_kv < mc.n_head);  // the tiny model has GQA: 4 heads, 2 kv heads
  const int64_t d = mc.n_embd, hd = mc.head_dim, rep = mc.n_head / mc.n_head_kv;
  const int64_t nkv = mc.n_head_kv * hd, no = mc.n_head * hd;
  // Column c of o (query head c / hd, dimension c % hd) reads v row tie(c).
  auto tie = [&](int64_t c) { return (c / hd) / rep * hd + c % hd; };
  auto wrong = [&](int64_t c) { return (c / hd) % mc.n_head_kv * hd + c % hd; };  // heads dealt round-robin
  const std::vector<int32_t> toks = {1, 17, 300, 42, 999, 5, 77, 1500, 8, 64, 2000, 3};
  const auto want = test::logits_of(*model, toks);

  // 1. The tied fold keeps the function; the same scales tied the wrong way round do not.
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> U(0.25f, 4.0f);
  std::vector<float> s(static_cast<size_t>(nkv));
  for (auto& v : s) v = U(rng);
  for (const bool right : {false, true}) {
    auto m = Model::load(*src);
    for (const int L : {1, 4}) {
      const std::string vn = "blk." + std::to_string(L) + ".attn_v.weight", on = "blk." + std::to_string(L) + ".attn_output.weight";
      std::vector<float> v = m->tensor_f32(vn), o = m->tensor_f32(on), so(static_cast<size_t>(no));
      REQUIRE(static_cast<int64_t>(v.size()) == nkv * d);
      for (int64_t c = 0; c < no; ++c) so[static_cast<size_t>(c)] = s[static_cast<size_t>(right ? tie(c) : wrong(c))];
      awq_divide_rows(v, d, s);
      awq_multiply_columns(o, so);
      m->replace_tensor(vn, v);
      m->replace_tensor(on, o);
    }
    const double diff = test::max_rel_diff(test::logits_of(*m, toks), want);
    INFO("tied " << (right ? "by h / rep" : "round-robin") << ": " << diff);
    if (right) CHECK(diff < 1e-4);
    else CHECK(diff > 1e-2);
  }

  // 2. The quantizer: a v_proj->o_proj group per block with scale_v_o_gqa (none without it, the
  // default: AutoAWQ's rule); block 0's v rows and the o columns tied to them move by the same factor.
  auto run = [&](bool gqa) {
    AwqConfig c;
    c.calibration_samples = 2;
    c.ctx = 64;
    c.calibration_data = *calib;
    c.params.scale_v_o_gqa = gqa;
    c.params.identity_candidate = false;
    auto q = std::make_unique<AwqQuantizer>(*src, c);
    q->run();
    return q;
  };
  const auto on = run(true), off = run(false);
  int vo_groups = 0;
  for (const auto& g : on->summary().groups) vo_groups += g.group == "v_proj->o_proj";
  CHECK(vo_groups == mc.n_layer);
  for (const auto& g : off->summary().groups) CHECK(g.group != "v_proj->o_proj");
  const AvoMove mv = avo_move(*on, *off, d, nkv, no, tie);
  INFO("v row factor range " << mv.lo << " .. " << mv.hi << ", worst log mismatch with o's columns " << mv.worst);
  CHECK(mv.hi / mv.lo > 1.2);
  CHECK(mv.worst < 0.15);

  // 3. Streamed: the same bytes.
  test::TempDir tmp;
  on->write(tmp / "memory");
  AwqConfig c;
  c.calibration_samples = 2;
  c.ctx = 64;
  c.calibration_data = *calib;
  c.params.identity_candidate = false;
  c.params.scale_v_o_gqa = true;
  awq_model(*tiny, tmp / "stream", c);
  CHECK(test::files_below(tmp / "memory") == test::files_below(tmp / "stream"));
}
