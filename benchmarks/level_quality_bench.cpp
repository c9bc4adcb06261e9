// Model quality per quantization level, ours vs llama.cpp: KL divergence, same-top % and
// perplexity of the tiny model quantized by lq::Quantizer, measured by the engine against the
// original model (the HF directory loaded as is), next to llama.cpp's figures.
//
// Each configuration is a key of the golden manifest: "mix-imatrix/<LEVEL>" (the level's mixture
// with the golden imatrix), "mix/<LEVEL>" (no imatrix), "pure/<TYPE>" and "pure-imatrix/<TYPE>"
// (every weight in one type; made as llama.cpp made its files, see tests/quantize_test.cpp).
// All quantized models are evaluated in lock-step with one run of the reference per chunk
// (llama-perplexity's chunking: BOS, ctx tokens, second half scored), with the statistics of
// lq::kl_divergence().
//
// llama.cpp's figures come from manifest.json (100 chunks of eval.txt at ctx 256), or, with
// --llama DIR, from evaluating llama.cpp's own files DIR/<key>.gguf with the engine in the same
// run (any text, any chunk count; make them with llama-quantize). --swap REGEX replaces our
// tensors whose names match by llama.cpp's (from DIR/<key>.gguf) for diagnosis.
//
// Any other model (--model DIR, e.g. one of the zoo's, scripts/zoo/) takes its own importance
// matrix (--imatrix FILE, e.g. from `lq analyze`) and llama.cpp's files from --llama DIR; the
// manifest then does not apply. The ratio ours / llama.cpp's comes with a 95% interval from the
// chunk-to-chunk variance (the delta method on the paired per-chunk means), and --json FILE
// writes every figure for scripts (scripts/zoo/level_quality_zoo.sh builds the zoo table from it).
//
// --gptq FILE quantizes ours as `lq quantize MODEL gguf -q LEVEL --imatrix ... --gptq
// --calibration-data FILE` does (GPTQ's error feedback on the types that have a walk, the same
// imatrix; --calibration-samples N chunks of 256 tokens, default 64); llama.cpp's files are as
// without it.
//
// Usage: level_quality_bench [--levels L,L,...] [--modes mix-imatrix,mix,...] [--keys K,K,...]
//          [--chunks N] [--ctx N] [--text eval|wikitext|FILE] [--llama DIR] [--swap REGEX]
//          [--save DIR] [--model DIR] [--imatrix FILE] [--json FILE] [--shared DIR] [--threads N]
//          [--gptq CALIBRATION_FILE [--calibration-samples N]]
#include <lq/lq.hpp>
#include <lq/engine.hpp>
#include <lq/gguf.hpp>
#include <lq/gptq_gguf.hpp>
#include <lq/threads.hpp>
#include <lq/tokenizer.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace fs = std::filesystem;
using namespace lq;

namespace {

using bench::split_list;

struct Stats {
  double kld = 0, nll = 0;
  int64_t same = 0, n = 0;
  std::vector<double> chunk_kld;  // mean KLD of each chunk
  void add(double k, double l, bool s) {
    kld += k;
    nll += l;
    same += s;
    ++n;
  }
  double kld_mean() const { return n ? kld / static_cast<double>(n) : 0; }
  double ppl() const { return n ? std::exp(nll / static_cast<double>(n)) : 0; }
  double same_pct() const { return n ? 100.0 * static_cast<double>(same) / static_cast<double>(n) : 0; }
};

// Ratio of mean KLDs a / b over paired chunks and its 95% half-width: R = mean(a) / mean(b),
// var(R) ~ var_i(a_i - R b_i) / (n mean(b)^2) (the delta method; chunks as the samples).
struct Ratio {
  double r = 0, half = 0;
};
Ratio lqb_chunk_ratio(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = std::min(a.size(), b.size());
  if (n == 0) return {};
  double sa = 0, sb = 0;
  for (size_t i = 0; i < n; ++i) {
    sa += a[i];
    sb += b[i];
  }
  const double ma = sa / static_cast<double>(n), mb = sb / static_cast<double>(n);
  if (mb <= 0) return {};
  const double r = ma / mb;
  double v = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = a[i] - r * b[i];
    v += d * d;
  }
  v = n > 1 ? v / static_cast<double>(n - 1) : 0;
  return {r, 1.96 * std::sqrt(v / static_cast<double>(n)) / mb};
}

struct Evaluated {
  std::string label;
  std::unique_ptr<Model> model;
  uint64_t bytes = 0;
  double quantize_s = 0;
  Stats stats;
};

struct Config {
  std::string key;  // e.g. "mix-imatrix/Q2_K"
  FileType ftype = FileType::Q8_0;
  bool pure = false, imatrix = false;
  std::optional<Evaluated> ours, llama;
};

struct LogSoftmax {
  float max, log_sum;
  int argmax;
};

// As lq::kl_divergence: max in float, the sum of exp in double.
LogSoftmax log_softmax(std::span<const float> l) {
  float mx = l[0];
  int am = 0;
  for (size_t i = 1; i < l.size(); ++i)
    if (l[i] > mx) {
      mx = l[i];
      am = static_cast<int>(i);
    }
  double sum = 0;
  for (float v : l) sum += std::exp(v - mx);
  return {mx, static_cast<float>(std::log(sum)), am};
}

std::vector<int32_t> read_i32(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<int32_t> t(raw.size() / 4);
  std::memcpy(t.data(), raw.data(), t.size() * 4);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  fs::path shared = LQ_DEFAULT_SHARED_DIR, model_dir = LQ_DEFAULT_MODEL_DIR, llama_dir, save_dir, imatrix_file,
           json_file, gptq_calibration;
  int64_t gptq_samples = 64;
  if (const char* env = std::getenv("LQ_SHARED_DIR"); env && *env) shared = env;
  std::vector<std::string> levels, modes = {"mix-imatrix", "mix"}, keys;
  int64_t chunks = 100, ctx = 256;
  int threads = 0;
  std::string text = "eval", swap;
  for (bench::CommandLine cl(argc, argv); cl.more();) {
    const std::string a = cl.next();
    if (a == "--levels") levels = split_list(cl.value());
    else if (a == "--modes") modes = split_list(cl.value());
    else if (a == "--keys") keys = split_list(cl.value());
    else if (a == "--chunks") chunks = std::atoll(cl.value().c_str());
    else if (a == "--ctx") ctx = std::atoll(cl.value().c_str());
    else if (a == "--text") text = cl.value();
    else if (a == "--llama") llama_dir = cl.value();
    else if (a == "--swap") swap = cl.value();
    else if (a == "--save") save_dir = cl.value();
    else if (a == "--model") model_dir = cl.value();
    else if (a == "--imatrix") imatrix_file = cl.value();
    else if (a == "--json") json_file = cl.value();
    else if (a == "--shared") shared = cl.value();
    else if (a == "--threads") threads = std::atoi(cl.value().c_str());
    else if (a == "--gptq") gptq_calibration = cl.value();
    else if (a == "--calibration-samples") gptq_samples = std::atoll(cl.value().c_str());
    else {
      std::fprintf(stderr,
                   "usage: %s [--levels L,...] [--modes mix-imatrix,mix,pure,pure-imatrix] [--keys K,...] [--chunks N]\n"
                   "          [--ctx N] [--text eval|wikitext|FILE] [--llama DIR] [--swap REGEX] [--save DIR]\n"
                   "          [--model DIR] [--imatrix FILE] [--json FILE] [--shared DIR] [--threads N]\n"
                   "          [--gptq CALIBRATION_FILE [--calibration-samples N]]\n",
                   argv[0]);
      return 2;
    }
  }
  const fs::path golden = shared / "golden";
  // The golden manifest and imatrix describe the tiny model only.
  std::error_code ec;
  const bool golden_model = fs::equivalent(model_dir, LQ_DEFAULT_MODEL_DIR, ec) ||
                            fs::equivalent(model_dir, shared / "models" / "tiny-llama", ec);
  if (imatrix_file.empty()) imatrix_file = golden / "imatrix.gguf";
  if (!fs::exists(imatrix_file) || !fs::exists(model_dir / "config.json") ||
      (golden_model && !fs::exists(golden / "manifest.json"))) {
    std::fprintf(stderr, "model, imatrix or golden manifest not found (%s, %s, %s)\n", model_dir.c_str(),
                 imatrix_file.c_str(), golden.c_str());
    return 1;
  }
  nlohmann::json manifest = {{"files", nlohmann::json::object()}, {"ppl", nlohmann::json::object()}};
  if (golden_model) {
    std::ifstream mf(golden / "manifest.json");
    manifest = nlohmann::json::parse(mf);
  }
  const auto& files = manifest.at("files");

  // Configurations: explicit keys, or every mode x level the manifest has (without errors).
  if (keys.empty()) {
    if (levels.empty())
      levels = {"Q2_K",    "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",  "Q5_K_S",  "Q5_K_M",
                "Q6_K",    "Q4_0",   "Q4_1",   "Q5_0",   "Q5_1",   "IQ1_S",   "IQ1_M",   "IQ2_XXS",
                "IQ2_XS",  "IQ2_S",  "IQ2_M",  "IQ3_XXS", "IQ3_S", "IQ3_M",   "IQ4_NL",  "IQ4_XS",
                "TQ1_0",   "TQ2_0"};
    for (const auto& l : levels)
      for (const auto& m : modes) keys.push_back(m + "/" + l);
  }
  std::vector<Config> configs;
  for (const auto& k : keys) {
    const size_t slash = k.find('/');
    if (slash == std::string::npos) {
      std::fprintf(stderr, "bad key '%s' (want MODE/LEVEL)\n", k.c_str());
      return 2;
    }
    const std::string mode = k.substr(0, slash), level = k.substr(slash + 1);
    const std::string mkey = k + ".gguf";
    if (files.contains(mkey) && files.at(mkey).contains("error")) continue;
    const bool in_manifest = files.contains(mkey);
    Config c;
    c.key = k;
    c.pure = mode.rfind("pure", 0) == 0;
    c.imatrix = mode.find("imatrix") != std::string::npos || (in_manifest && files.at(mkey).value("imatrix", false));
    auto ft = parse_file_type(level);
    if (c.pure) {
      auto qt = parse_quant_type(level);
      if (qt) ft = file_type_for(*qt);
    }
    if (!ft) {
      std::fprintf(stderr, "unknown level '%s'\n", level.c_str());
      return 2;
    }
    c.ftype = *ft;
    configs.push_back(std::move(c));
  }

  // Tokens.
  std::vector<int32_t> tokens;
  if (text == "eval" && golden_model) {
    tokens = read_i32(golden / "eval-tokens.i32");
  } else if (text == "eval") {
    // Another model: its own tokenization of the shared evaluation text.
    std::ifstream in(shared / "corpus" / "eval.txt", std::ios::binary);
    const std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    tokens = Tokenizer::from_hf_dir(model_dir).encode(s, false);
  } else {
    const fs::path p = text == "wikitext" ? shared / "corpus" / "wikitext2-test.raw" : fs::path(text);
    if (p.extension() == ".i32") {
      tokens = read_i32(p);
    } else {
      std::ifstream in(p, std::ios::binary);
      const std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      tokens = Tokenizer::from_hf_dir(model_dir).encode(s, false);
    }
  }

  const auto reference = Model::load(model_dir);
  const Imatrix imatrix = Imatrix::load(imatrix_file);
  auto src = ModelSource::open(model_dir);
  const fs::path tmp = save_dir.empty() ? fs::temp_directory_path() / ("lq_level_quality_" + std::to_string(::getpid())) : save_dir;
  fs::create_directories(tmp);
  std::optional<std::regex> swap_re;
  if (!swap.empty()) swap_re.emplace(swap);

  for (Config& c : configs) {
    QuantizeOptions o;
    o.ftype = c.ftype;
    o.pure = c.pure;
    Context qctx;
    qctx.threads = threads;
    if (c.imatrix) {
      o.imatrix = &imatrix;
      o.imatrix_path = imatrix_file.string();
      if (c.pure) {
        // llama.cpp's pure imatrix files force these two (they have no importance data).
        o.token_embedding_type = QuantType::Q8_0;
        o.output_tensor_type = QuantType::Q8_0;
      }
    }
    fs::path out = tmp / (c.key + ".gguf");
    fs::create_directories(out.parent_path());
    try {
      GptqGgufResult gptq;
      if (!gptq_calibration.empty()) {
        GptqGgufConfig gc;
        gc.calibration_data = gptq_calibration;
        gc.calibration_samples = gptq_samples;
        gptq = gptq_gguf_tensors(*src, o, gc, qctx);
        o.tensor_bytes = &gptq.tensor_bytes;
        o.gain_correction = false;  // as quantize --gptq
        std::fprintf(stderr, "%s: --gptq: %zu linears by GPTQ, %zu without a walk\n", c.key.c_str(),
                     gptq.gptq_tensors.size(), gptq.plain_tensors.size());
      }
      const QuantizeResult r = Quantizer(o).quantize(*src, out, qctx);
      Evaluated e;
      e.label = "ours";
      e.bytes = r.file_bytes;
      e.quantize_s = r.seconds;
      e.model = Model::load(out);
      c.ours = std::move(e);
    } catch (const Error& err) {
      std::fprintf(stderr, "%s: %s\n", c.key.c_str(), err.what());
      continue;
    }
    const fs::path lf = llama_dir.empty() ? fs::path() : llama_dir / (c.key + ".gguf");
    if (!lf.empty() && fs::exists(lf)) {
      Evaluated e;
      e.label = "llama";
      e.bytes = fs::file_size(lf);
      e.model = Model::load(lf);
      if (swap_re) {
        gguf::Reader rd(lf);
        int n = 0;
        for (const auto& t : rd.tensors())
          if (std::regex_search(t.name, *swap_re) && c.ours->model->find_linear(t.name)) {
            c.ours->model->replace_tensor(t.name, t.type, rd.data(t));
            ++n;
          }
        std::fprintf(stderr, "%s: %d tensors swapped in from llama.cpp's file\n", c.key.c_str(), n);
      }
      c.llama = std::move(e);
    }
    if (save_dir.empty()) fs::remove(out);
  }
  if (save_dir.empty()) fs::remove_all(tmp);

  // Lock-step evaluation.
  const int32_t bos = reference->bos_token();
  const bool replace_bos = reference->add_bos() && bos >= 0;
  std::vector<int32_t> stream;
  if (replace_bos) stream.push_back(bos);
  stream.insert(stream.end(), tokens.begin(), tokens.end());
  const int64_t n_chunks = std::min<int64_t>(chunks, static_cast<int64_t>(stream.size()) / ctx);
  std::vector<Evaluated*> evals;
  for (Config& c : configs) {
    if (c.ours) evals.push_back(&*c.ours);
    if (c.llama) evals.push_back(&*c.llama);
  }
  const auto t0 = std::chrono::steady_clock::now();
  Session sr(*reference, SessionOptions{ctx, false}, Context{threads});
  std::vector<std::unique_ptr<Session>> sessions;
  for (Evaluated* e : evals) sessions.push_back(std::make_unique<Session>(*e->model, SessionOptions{ctx, false}, Context{threads}));
  Stats ref_stats;
  const int64_t first = ctx / 2;
  for (int64_t ch = 0; ch < n_chunks; ++ch) {
    std::vector<int32_t> input(stream.begin() + ch * ctx, stream.begin() + (ch + 1) * ctx);
    if (replace_bos) input[0] = bos;
    const std::vector<int32_t> targets(stream.begin() + ch * ctx + first + 1, stream.begin() + (ch + 1) * ctx);
    const int64_t nt = static_cast<int64_t>(targets.size());
    sr.clear();
    sr.eval(input, first);
    std::vector<LogSoftmax> rls(static_cast<size_t>(nt));
    for (int64_t j = 0; j < nt; ++j) {
      rls[j] = log_softmax(sr.logits(j));
      ref_stats.add(0, -(static_cast<double>(sr.logits(j)[targets[j]]) - rls[j].max - rls[j].log_sum), true);
    }
    for (size_t m = 0; m < evals.size(); ++m) {
      Session& s = *sessions[m];
      s.clear();
      s.eval(input, first);
      std::vector<double> kl(static_cast<size_t>(nt)), nll(static_cast<size_t>(nt));
      double chunk_sum = 0;
      std::vector<char> same(static_cast<size_t>(nt));
      parallel_for(nt, threads, 4, [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j) {
          const auto lm = s.logits(j), lr = sr.logits(j);
          const LogSoftmax a = log_softmax(lm), c = rls[j];
          double k = 0;
          for (size_t v = 0; v < lr.size(); ++v) {
            const double lpr = static_cast<double>(lr[v]) - c.max - c.log_sum;
            const double lpm = static_cast<double>(lm[v]) - a.max - a.log_sum;
            k += std::exp(lpr) * (lpr - lpm);
          }
          kl[j] = k;
          nll[j] = -(static_cast<double>(lm[targets[j]]) - a.max - a.log_sum);
          same[j] = a.argmax == c.argmax;
        }
      });
      for (int64_t j = 0; j < nt; ++j) {
        evals[m]->stats.add(kl[j], nll[j], same[j]);
        chunk_sum += kl[j];
      }
      evals[m]->stats.chunk_kld.push_back(chunk_sum / static_cast<double>(nt));
    }
    std::fprintf(stderr, "\rchunk %lld/%lld", static_cast<long long>(ch + 1), static_cast<long long>(n_chunks));
  }
  std::fprintf(stderr, "\n");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const bool manifest_comparable = text == "eval" && n_chunks == manifest.at("ppl").value("chunks", 100) &&
                                   ctx == manifest.at("ppl").value("ctx", 256);
  std::printf("level quality: %s, text %s, ctx %lld, %lld chunks (%lld scored tokens), reference ppl %.4f, %.0f s\n",
              model_dir.c_str(), text.c_str(), static_cast<long long>(ctx), static_cast<long long>(n_chunks),
              static_cast<long long>(ref_stats.n), ref_stats.ppl(), secs);
  std::printf("llama.cpp figures: %s\n",
              !llama_dir.empty() ? "its files evaluated here where present (L), else manifest (M)"
                                 : (manifest_comparable ? "manifest.json (same text, ctx and chunks)"
                                                        : "manifest.json (100 chunks of eval.txt: NOT the same protocol)"));
  std::printf("%-22s | %9s %9s | %8s %8s | %8s %8s %6s %7s | %6s %6s |\n", "config", "MB ours", "llama", "ppl ours",
              "llama", "kld ours", "llama", "ratio", "95%+-", "top%", "llama");
  nlohmann::json out_json = {{"model", model_dir.string()}, {"text", text}, {"ctx", ctx}, {"chunks", n_chunks},
                             {"reference_ppl", ref_stats.ppl()}, {"imatrix", imatrix_file.string()}, {"gptq_calibration", gptq_calibration.string()},
                             {"configs", nlohmann::json::array()}};
  for (const Config& c : configs) {
    if (!c.ours) continue;
    const Stats& s = c.ours->stats;
    double l_bytes = 0, l_ppl = 0, l_kld = 0, l_top = 0;
    char src_mark = ' ';
    if (c.llama) {
      const Stats& l = c.llama->stats;
      l_bytes = static_cast<double>(c.llama->bytes);
      l_ppl = l.ppl();
      l_kld = l.kld_mean();
      l_top = l.same_pct();
      src_mark = 'L';
    } else if (files.contains(c.key + ".gguf")) {
      const auto& f = files.at(c.key + ".gguf");
      l_bytes = f.value("file_bytes", 0.0);
      l_ppl = f.value("ppl", 0.0);
      l_kld = f.value("kld", 0.0);
      l_top = f.value("same_top_p", 0.0);
      src_mark = 'M';
    }
    // The interval needs llama.cpp's per-chunk figures, i.e. its file evaluated in this run.
    const Ratio ci = c.llama ? lqb_chunk_ratio(s.chunk_kld, c.llama->stats.chunk_kld) : Ratio{};
    std::printf("%-22s | %9.4f %9.4f | %8.4f %8.4f | %8.5f %8.5f %6.3f %7.3f | %6.2f %6.2f | %c%s\n", c.key.c_str(),
                static_cast<double>(c.ours->bytes) / 1e6, l_bytes / 1e6, s.ppl(), l_ppl, s.kld_mean(), l_kld,
                l_kld > 0 ? s.kld_mean() / l_kld : 0.0, ci.half, s.same_pct(), l_top, src_mark,
                l_kld > 0 && s.kld_mean() > l_kld ? "  kld worse" : "");
    nlohmann::json j = {{"key", c.key},          {"bytes_ours", c.ours->bytes}, {"bytes_llama", l_bytes},
                        {"ppl_ours", s.ppl()},   {"ppl_llama", l_ppl},          {"kld_ours", s.kld_mean()},
                        {"kld_llama", l_kld},    {"top_ours", s.same_pct()},    {"top_llama", l_top},
                        {"llama_source", std::string(1, src_mark)}};
    if (l_kld > 0) j["ratio"] = s.kld_mean() / l_kld;
    if (c.llama) j["ratio_ci95"] = ci.half;
    out_json["configs"].push_back(std::move(j));
  }
  if (!json_file.empty()) {
    std::ofstream jf(json_file);
    jf << out_json.dump(2) << "\n";
    if (!jf) {
      std::fprintf(stderr, "cannot write %s\n", json_file.c_str());
      return 1;
    }
  }
  return 0;
}
