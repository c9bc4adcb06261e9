// Dynamic quantization: presets on models of different depths, the size solver, super-weight
// protection, and bad profiles.
#include <lq/lq.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <random>

using namespace lq;
namespace fs = std::filesystem;

TEST_CASE("profile: every preset validates on the tiny model and on models of other depths", "[profile]") {
  test::TempDir tmp;
  std::vector<fs::path> models = {test::synthetic_llama(tmp, 3), test::synthetic_llama(tmp, 12)};
  if (auto tiny = test::shared_file("models/tiny-llama")) models.push_back(*tiny);
  for (const auto& mp : models) {
    auto model = ModelSource::open(mp);
    for (const auto& p : preset_profiles()) {
      INFO(mp.filename().string() << " " << p.name);
      const ProfileResolution r = validate_profile(p, *model);
      CHECK(r.unmatched_rules.empty());
      CHECK(r.problems.empty());
      CHECK(r.effective_bpw() > 1.5);
      CHECK(r.effective_bpw() < 9.0);
    }
  }
}

TEST_CASE("profile: relative layer ranges follow the model's depth", "[profile]") {
  test::TempDir tmp;
  auto model = ModelSource::open(test::synthetic_llama(tmp, 20));
  Profile p;
  p.name = "t";
  p.rules = {{"blk.*", "0%-10%", "Q8_0", ""}, {"blk.*", "90%-100%", "Q6_K", ""}, {"blk.*.attn_v.weight", "", "Q5_K", ""}};
  p.default_method = "Q2_K";
  const auto r = validate_profile(p, *model);
  for (const auto& a : r.tensors) {
    INFO(a.tensor);
    if (a.tensor.rfind("blk.0.", 0) == 0 || a.tensor.rfind("blk.1.", 0) == 0) CHECK(a.type == QuantType::Q8_0);
    else if (a.tensor.rfind("blk.18.", 0) == 0 || a.tensor.rfind("blk.19.", 0) == 0) CHECK(a.type == QuantType::Q6_K);
    else if (a.tensor.find("attn_v") != std::string::npos) CHECK(a.type == QuantType::Q5_K);
    else CHECK(a.type == QuantType::Q2_K);
  }
}

TEST_CASE("profile: the solver meets a bpw or size target within 1%", "[profile][solver]") {
  const auto tiny = test::tiny_with_imatrix();
  if (!tiny) return;
  auto model = ModelSource::open(tiny->model);
  const Imatrix& im = tiny->imatrix;
  ResolveOptions ro;
  ro.imatrix = &im;
  ro.max_rows_per_tensor = 64;
  for (const double bpw : {3.0, 4.5}) {
    Profile p = Profile::load("balanced");
    p.target_bpw = bpw;
    const auto r = resolve_profile(p, *model, ro);
    INFO("target " << bpw << " got " << r.effective_bpw());
    CHECK(std::fabs(r.effective_bpw() - bpw) / bpw <= 0.01);
    // the solved types, written into a profile, validate to the same size
    Profile solved = p;
    solved.target_bpw.reset();
    for (const auto& a : r.tensors) solved.tensor_types[a.tensor] = type_name(a.type);
    const auto v = validate_profile(solved, *model);
    CHECK(v.total_bytes == r.total_bytes);
  }
  Profile p = Profile::load("compression-max");
  p.target_bpw.reset();
  p.target_bytes = 2'000'000;
  const auto r = resolve_profile(p, *model, ro);
  CHECK(static_cast<double>(r.total_bytes) <= 2'000'000.0);
  CHECK(static_cast<double>(r.total_bytes) >= 0.99 * 2'000'000.0);
  // below what the smallest types allow
  p.target_bytes = 300'000;
  test::check_error(Errc::profile_error, [&] { (void)resolve_profile(p, *model, ro); }, "",
                    "an impossible target was accepted");
}

TEST_CASE("profile: protected weights survive quantization within 1%", "[profile][protect]") {
  const auto tiny = test::tiny_with_imatrix();
  if (!tiny) return;
  auto model = ModelSource::open(tiny->model);
  const Imatrix& im = tiny->imatrix;
  const auto protect = select_by_coverage(*model, im, 1e-4);
  REQUIRE(protect.size() >= 400);
  ResolveOptions ro;
  ro.imatrix = &im;
  ro.protect = protect;
  Profile p;
  p.name = "q2k";
  p.default_method = "Q2_K";
  const auto r = resolve_profile(p, *model, ro);
  QuantizeOptions qo;
  qo.ftype = FileType::Q2_K;
  qo.imatrix = &im;
  for (const auto& a : r.tensors) qo.tensor_type_map[a.tensor] = a.type;
  qo.protect = protect;
  test::TempDir tmp;
  Quantizer(qo).quantize(*model, tmp / "p.gguf");
  gguf::Reader out(tmp / "p.gguf");
  uint64_t q2k_bytes = 0;
  for (const auto& a : r.tensors) q2k_bytes += gguf::tensor_nbytes(QuantType::Q2_K, model->at(a.tensor).ne);
  // Protection raises only what it must: well below Q8_0 everywhere.
  uint64_t q8_bytes = 0;
  for (const auto& a : r.tensors) q8_bytes += gguf::tensor_nbytes(QuantType::Q8_0, model->at(a.tensor).ne);
  WARN("protection of " << protect.size() << " weights: " << r.total_bytes << " bytes vs " << q2k_bytes << " for pure Q2_K");
  CHECK(r.total_bytes < q8_bytes);
  for (const auto& w : protect) {
    const auto* t = out.find_tensor(w.tensor);
    REQUIRE(t);
    std::vector<float> row(static_cast<size_t>(t->ne[0]));
    read_rows_f32(out, *t, w.row, 1, row.data());
    INFO(w.tensor << " [" << w.row << "," << w.col << "] " << w.value << " -> " << row[w.col]);
    CHECK(std::fabs(row[static_cast<size_t>(w.col)] - w.value) <= 0.01 * std::fabs(w.value));
  }
}

TEST_CASE("profile: bad profiles and options give the contract's codes", "[profile][bad-input]") {
  test::TempDir tmp;
  auto code_of = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return exit_code(e.code());
    }
    return 0;
  };
  CHECK(code_of([] { Profile::load("no-such-profile"); }) == 13);
  std::ofstream(tmp / "bad.dqprofile") << "{ \"name\": \"x\", \"layer_configs\": [ {\"layer_pattern\": 3} ] }";
  CHECK(code_of([&] { Profile::load((tmp / "bad.dqprofile").string()); }) == 13);
  std::ofstream(tmp / "bad2.dqprofile") << "{ not json";
  CHECK(code_of([&] { Profile::load((tmp / "bad2.dqprofile").string()); }) == 13);
  std::ofstream(tmp / "bad3.dqprofile")
      << R"({"name": "x", "layer_configs": [{"layer_pattern": "blk.*", "quantization_method": "Q9_Z"}]})";
  CHECK(code_of([&] { Profile::load((tmp / "bad3.dqprofile").string()); }) == 13);
  auto tiny = test::shared_file("models/tiny-llama");
  if (!tiny) return;
  auto r = test::run(test::cli_path() + " quantize " + tiny->string() + " gguf -q dynamic --profile balanced " +
                     "--protect-super-weights -o " + (tmp / "x.gguf").string());
  CHECK(r.status == 2);
  CHECK_FALSE(fs::exists(tmp / "x.gguf"));
  r = test::run(test::cli_path() + " quantize " + tiny->string() + " gguf -q dynamic --profile nope -o " +
                (tmp / "x.gguf").string());
  CHECK(r.status == 13);
  r = test::run(test::cli_path() + " profile validate " + (tmp / "bad.dqprofile").string() + " " + tiny->string());
  CHECK(r.status == 13);
}
