// The analysis pieces the library took over from the CLI: the "enough tokens for one chunk" rule,
// merging super weights, their statistics and mask file, and the analysis report's save/load.
#include <lq/analysis_report.hpp>
#include <lq/calibration.hpp>
#include <lq/error.hpp>
#include <lq/super_weights.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <fstream>

using namespace lq;
namespace fs = std::filesystem;

namespace {

auto has_code(Errc c) {
  return Catch::Predicate<Error>([c](const Error& e) { return e.code() == c; });
}

DetectedSuperWeight spike(const std::string& tensor, int64_t row, int64_t col, float value, bool confirmed) {
  return {{tensor, row, col, value}, 1, 123.5f, 77.25f, 41.5, 12.0, confirmed, 0.125f, col};
}

}  // namespace

TEST_CASE("analysis: one chunk rule for every evaluation, exit 15", "[analyze][calibration]") {
  CHECK(evaluation_chunks(16, 16, ChunkRule::imatrix, "t") == 1);
  CHECK(evaluation_chunks(47, 16, ChunkRule::imatrix, "t") == 2);
  CHECK_THROWS_MATCHES(evaluation_chunks(15, 16, ChunkRule::imatrix, "t"), Error, has_code(Errc::calibration_error));
  CHECK(evaluation_chunks(32, 16, ChunkRule::perplexity, "t") == 2);
  CHECK(evaluation_chunks(50, 16, ChunkRule::perplexity, "t") == 3);
  CHECK_THROWS_MATCHES(evaluation_chunks(31, 16, ChunkRule::perplexity, "t"), Error, has_code(Errc::calibration_error));
  CHECK(evaluation_chunks(1, 16, ChunkRule::full_window, "t") == 1);
  CHECK_THROWS_MATCHES(evaluation_chunks(0, 16, ChunkRule::full_window, "t"), Error, has_code(Errc::calibration_error));
  CHECK_THROWS_MATCHES(evaluation_chunks(10, 0, ChunkRule::imatrix, "t"), Error, has_code(Errc::invalid_argument));
  try {
    evaluation_chunks(5, 16, ChunkRule::perplexity, "wiki.txt");
    FAIL("not refused");
  } catch (const Error& e) {
    CHECK(exit_code(e.code()) == 15);
    const std::string w = e.what();
    CHECK(w.find("wiki.txt") != std::string::npos);
    CHECK(w.find("too short") != std::string::npos);
  }
}

TEST_CASE("analysis: super weights merge confirmed spikes and the coverage rule", "[analyze][super]") {
  SuperWeightDetection d;
  d.found = {spike("blk.1.ffn_down.weight", 37, 101, 8.0f, true), spike("blk.2.ffn_down.weight", 5, 6, 3.0f, false)};
  const std::vector<ProtectedWeight> by_cov = {{"blk.1.ffn_down.weight", 37, 101, 8.0f},
                                               {"output.weight", 2, 3, -1.0f},
                                               {"blk.0.attn_q.weight", 9, 1, 0.5f}};
  const auto merged = merge_super_weights(d, by_cov);
  REQUIRE(merged.size() == 3);  // the spike once, the unconfirmed one left out
  CHECK(merged[0].tensor == "blk.0.attn_q.weight");
  CHECK(merged[1].tensor == "blk.1.ffn_down.weight");
  CHECK(merged[2].tensor == "output.weight");
  const SuperWeightStatistics st = super_weight_statistics(merged);
  CHECK(st.count == 3);
  CHECK(st.per_layer == std::map<std::string, int64_t>{{"blk.0", 1}, {"blk.1", 1}, {"output.weight", 1}});
  CHECK(st.value_max == 8.0);
  CHECK(st.value_min == -1.0);
  CHECK(st.value_mean == Approx(7.5 / 3));
  CHECK(super_weight_statistics({}).value_max == 0.0);

  test::TempDir tmp;
  SuperWeightSelection sel;
  sel.weights = merged;
  sel.detection = d;
  sel.coverage = 1e-4;
  sel.coverage_selected = 3;
  sel.statistics = st;
  CHECK(sel.spikes_confirmed() == 1);
  save_super_weights(tmp / "m.json", sel, "model-dir", ImportanceMethod::activation);
  const auto back = load_super_weights(tmp / "m.json");
  REQUIRE(back.size() == merged.size());
  for (size_t i = 0; i < back.size(); ++i) {
    CHECK(back[i].tensor == merged[i].tensor);
    CHECK(back[i].row == merged[i].row);
    CHECK(back[i].col == merged[i].col);
    CHECK(back[i].value == merged[i].value);
  }
  std::ofstream(tmp / "bad.json") << "{\"weights\": 3}";
  CHECK_THROWS_MATCHES(load_super_weights(tmp / "bad.json"), Error, has_code(Errc::invalid_argument));
}

TEST_CASE("analysis: the report saves and loads back to the same document", "[analyze]") {
  test::TempDir tmp;
  AnalysisReport r;
  r.output_path = tmp / "m.imatrix";
  r.model_path = "models/tiny";
  r.model_name = "tiny";
  r.method = ImportanceMethod::fisher;
  r.num_layers = 2;
  r.total_parameters = 1234;
  r.calibration_samples = 3;
  r.tokens_per_sample = 128;
  r.resumed_samples = 1;
  r.custom_calibration = true;
  r.calibration_path = "data.txt";
  r.statistics = {0.5, 14.25, 1.5, 0.75, 99};
  r.layer_scores = {{"blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj", 0, 2.5, 1.0, 64},
                    {"blk.1.ffn_down.weight", "model.layers.1.mlp.down_proj", 1, 1.25, 0.5, 128}};
  r.block_scores = block_scores(r.layer_scores);
  SuperWeightSelection sel;
  sel.weights = {{"blk.1.ffn_down.weight", 37, 101, 8.0f}};
  sel.detection.rounds = 2;
  sel.detection.layers = {{0, 1.5f, 3, 2.25f, 4, 5}, {1, 150.5f, 101, 80.0f, 37, 2}};
  sel.detection.found = {spike("blk.1.ffn_down.weight", 37, 101, 8.0f, true)};
  sel.coverage = 2e-4;
  sel.coverage_selected = 1;
  sel.statistics = super_weight_statistics(sel.weights);
  r.record(sel, tmp / "m.super_weights.json");
  r.duration_seconds = 1.5;
  r.tokens_per_second = 300.25;
  r.activation_rounding = "bf16";
  r.kv_f16 = true;
  r.warnings = {"a warning"};
  r.mean_loss = 2.75;
  r.report_path = tmp / "r.json";
  r.save(tmp / "r.json");
  const AnalysisReport back = AnalysisReport::load(tmp / "r.json");
  CHECK(back.to_json_string() == r.to_json_string());
  CHECK(back.output_path == r.output_path);
  CHECK(back.method == ImportanceMethod::fisher);
  REQUIRE(back.super_weights);
  CHECK(back.super_weights->total_protected == 1);
  CHECK(back.super_weights->detection.found.at(0).weight.col == 101);
  CHECK(back.coverage == 2e-4);
  REQUIRE(back.mean_loss);
  CHECK(*back.mean_loss == 2.75);

  // Not identified: no super-weight part, coverage still reported.
  AnalysisReport plain = r;
  plain.super_weights.reset();
  plain.mean_loss.reset();
  plain.save(tmp / "p.json");
  const AnalysisReport pb = AnalysisReport::load(tmp / "p.json");
  CHECK_FALSE(pb.super_weights);
  CHECK_FALSE(pb.mean_loss);
  CHECK(pb.to_json_string() == plain.to_json_string());

  CHECK_THROWS_MATCHES(AnalysisReport::load(tmp / "missing.json"), Error, has_code(Errc::imatrix_error));
  std::ofstream(tmp / "nojson.json") << "not json";
  CHECK_THROWS_MATCHES(AnalysisReport::load(tmp / "nojson.json"), Error, has_code(Errc::imatrix_error));
  std::ofstream(tmp / "other.json") << "{\"status\": \"success\"}";
  CHECK_THROWS_MATCHES(AnalysisReport::load(tmp / "other.json"), Error, has_code(Errc::imatrix_error));
}

TEST_CASE("analysis: model_stem names models for files and reports", "[analyze]") {
  CHECK(model_stem("models/tiny-llama") == "tiny-llama");
  CHECK(model_stem("models/tiny-llama/") == "tiny-llama");
  CHECK(model_stem("x/model-Q4_K.gguf") == "model-Q4_K");
  CHECK(model_stem("org/name") == "name");
  CHECK(model_stem(".") == "model");
}
