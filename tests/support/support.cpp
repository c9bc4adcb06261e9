// Test helpers: the skip record the runner turns into its exit status, the ../shared lookup (a
// skip, or a failure in CI) and its golden files, SHA-256, random rows, shell commands, temporary
// directories, small random Llama models, session logits, and the library's and the CLI's errors.
#include "support/support.hpp"

#include "core/half.hpp"
#include "formats/safetensors.hpp"

#include <lq/gguf.hpp>
#include <lq/io.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string_view>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace lq::test {

namespace {
std::atomic<int> g_skips{0};
}  // namespace

void skip(const std::string& reason) {
  g_skips.fetch_add(1, std::memory_order_relaxed);
  WARN("SKIPPED: " << reason);
}

int skip_count() { return g_skips.load(std::memory_order_relaxed); }

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && (std::string_view(ci) == "true" || std::string_view(ci) == "1");
}

fs::path shared_dir_searched() {
  if (const char* env = std::getenv("LQ_SHARED_DIR"); env && *env) return env;
  return LQ_DEFAULT_SHARED_DIR;
}

std::optional<fs::path> shared_dir() {
  if (const char* env = std::getenv("LQ_SHARED_DIR"); env && *env) {
    if (fs::is_directory(env)) return fs::path(env);
    return std::nullopt;
  }
  const fs::path p = LQ_DEFAULT_SHARED_DIR;
  if (fs::is_directory(p)) return fs::canonical(p);
  return std::nullopt;
}

std::optional<fs::path> find_shared_file(const std::string& rel) {
  auto d = shared_dir();
  if (!d || !fs::exists(*d / rel)) return std::nullopt;
  return *d / rel;
}

std::optional<fs::path> shared_file(const std::string& rel) {
  if (auto p = find_shared_file(rel)) return p;
  const auto d = shared_dir();
  const fs::path missing = d ? *d / rel : shared_dir_searched();
  const std::string what = d ? missing.string() + " is absent"
                             : "shared data directory not found: looked for " + missing.string() +
                                   " (set LQ_SHARED_DIR); needed " + rel;
  if (in_ci()) {
    // One unwrapped line in the log (Catch wraps its own messages at 80 columns).
    std::fprintf(stderr, "FAILED: CI=true requires the shared data: %s\n", what.c_str());
    FAIL("CI=true requires the shared data: " << what);
  }
  skip(what);
  return std::nullopt;
}

fs::path data_file(const std::string& rel) { return fs::path(LQ_TEST_DATA_DIR) / rel; }

nlohmann::json golden_manifest() {
  const auto p = shared_file("golden/manifest.json");
  if (!p) return {};
  std::ifstream in(*p);
  return nlohmann::json::parse(in);
}

std::optional<TinyWithImatrix> tiny_with_imatrix() {
  const auto model = shared_file("models/tiny-llama");
  const auto imatrix_path = shared_file("golden/imatrix.gguf");
  if (!model || !imatrix_path) return std::nullopt;
  return TinyWithImatrix{*model, *imatrix_path, Imatrix::load(*imatrix_path)};
}

namespace {
// LQ_TEST_CLI_WRAPPER split into words (no quoting: an emulator and its options).
std::vector<std::string> cli_wrapper_words() {
  std::vector<std::string> words;
  if (const char* w = std::getenv("LQ_TEST_CLI_WRAPPER")) {
    std::istringstream in(w);
    for (std::string word; in >> word;) words.push_back(word);
  }
  return words;
}
}  // namespace

std::optional<TinyWithCalibration> tiny_with_calibration() {
  const auto f = shared_files<2>({"models/tiny-llama", "corpus/calibration.txt"});
  if (!f) return std::nullopt;
  return TinyWithCalibration{(*f)[0], (*f)[1]};
}

std::map<std::string, std::string> files_below(const std::filesystem::path& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) m[std::filesystem::relative(e.path(), dir).string()] = read_file(e.path());
  return m;
}

std::string cli_path() {
  std::string cmd;
  for (const auto& w : cli_wrapper_words()) cmd += w + " ";
  return cmd + LQ_CLI_PATH;
}

CliChild::CliChild(const std::vector<std::string>& args) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_ = ::fork();
  REQUIRE(pid_ >= 0);
  if (pid_ == 0) {
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
    std::FILE* null = std::freopen("/dev/null", "w", stdout);
    (void)null;
    std::vector<std::string> words = cli_wrapper_words();
    words.push_back(LQ_CLI_PATH);
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(w.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  err_ = ::fdopen(fds[0], "r");
}

CliChild::~CliChild() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (err_) std::fclose(err_);
}

bool CliChild::wait_for_progress(const char* label, const char* unit, int64_t done) {
  char line[4096];
  while (std::fgets(line, sizeof line, err_)) {
    text_ += line;
    long long d = 0, n = 0;
    const char* at = std::strstr(line, label);
    const char* pct = at ? std::strchr(at, '%') : nullptr;
    if (pct && std::strstr(line, unit) && std::sscanf(pct + 1, " %lld/%lld", &d, &n) == 2 && d >= done) return true;
  }
  return false;
}

int CliChild::signal_and_wait(int sig) {
  ::kill(pid_, sig);
  char buf[4096];
  while (std::fgets(buf, sizeof buf, err_)) text_ += buf;
  int st = 0;
  ::waitpid(pid_, &st, 0);
  pid_ = -1;
  return st;
}

int error_lines(const std::string& err) {
  int n = 0;
  std::istringstream in(err);
  std::string line;
  while (std::getline(in, line))
    if (line.find("error") != std::string::npos) ++n;
  return n;
}

void check_cli_failure(const CliFailure& c) {
  const RunResult r = run(cli_path() + " " + c.args);
  CHECK(r.status == c.code);
  CHECK(error_lines(r.err) == 1);
  CHECK(r.err.find(c.needle) != std::string::npos);
}

namespace {

constexpr std::array<uint32_t, 64> kK = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void block(std::array<uint32_t, 8>& h, const uint8_t* p) {
  uint32_t w[64];
  for (int i = 0; i < 16; ++i) w[i] = (uint32_t(p[4 * i]) << 24) | (uint32_t(p[4 * i + 1]) << 16) | (uint32_t(p[4 * i + 2]) << 8) | p[4 * i + 3];
  for (int i = 16; i < 64; ++i) {
    const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (int i = 0; i < 64; ++i) {
    const uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
    const uint32_t ch = (e & f) ^ (~e & g);
    const uint32_t t1 = hh + S1 + ch + kK[i] + w[i];
    const uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
    const uint32_t mj = (a & b) ^ (a & c) ^ (b & c);
    const uint32_t t2 = S0 + mj;
    hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
  }
  h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

}  // namespace

std::string sha256_hex(std::span<const uint8_t> bytes) {
  std::array<uint32_t, 8> h = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const size_t n = bytes.size();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) block(h, bytes.data() + i);
  uint8_t tail[128] = {};
  const size_t rem = n - i;
  std::memcpy(tail, bytes.data() + i, rem);
  tail[rem] = 0x80;
  const size_t tl = rem + 9 <= 64 ? 64 : 128;
  const uint64_t bits = static_cast<uint64_t>(n) * 8;
  for (int k = 0; k < 8; ++k) tail[tl - 1 - k] = static_cast<uint8_t>(bits >> (8 * k));
  block(h, tail);
  if (tl == 128) block(h, tail + 64);
  std::string out;
  char buf[9];
  for (uint32_t v : h) {
    std::snprintf(buf, sizeof buf, "%08x", v);
    out += buf;
  }
  return out;
}

namespace {

template <class Dist>
std::vector<float> draw(size_t n, uint32_t seed, Dist dist) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace

std::vector<float> gaussian(size_t n, uint32_t seed) { return draw(n, seed, std::normal_distribution<float>(0.f, 1.f)); }

std::vector<float> positive(size_t n, uint32_t seed) {
  return draw(n, seed, std::uniform_real_distribution<float>(0.05f, 4.0f));
}

std::vector<float> uneven_importance(size_t n, uint32_t seed) {
  return draw(n, seed, std::lognormal_distribution<float>(0.f, 1.5f));
}

std::vector<NamedRow> hostile_rows(int64_t n) {
  std::vector<NamedRow> rows;
  auto make = [&](const char* name, auto fn) {
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) x[i] = fn(i);
    rows.push_back({name, std::move(x)});
  };
  make("zeros", [](int64_t) { return 0.f; });
  make("constant", [](int64_t) { return 0.37f; });
  make("negative constant", [](int64_t) { return -2.5f; });
  make("denormals", [](int64_t i) { return (i % 2 ? 1.f : -1.f) * 1e-40f * static_cast<float>(i % 7); });
  make("single spike", [](int64_t i) { return i == 300 ? -7.f : 0.f; });
  make("alternating", [](int64_t i) { return i % 2 ? 1.f : -1.f; });
  make("zero block beside a busy one", [](int64_t i) { return i < 256 ? 0.f : 1.f + 0.01f * static_cast<float>(i % 7); });
  return rows;
}

std::vector<std::vector<float>> varied_rows(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::student_t_distribution<float> heavy(2.f);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<std::vector<float>> rows;
  auto make = [&](auto fn) {
    std::vector<float> r(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) r[i] = fn(i);
    rows.push_back(std::move(r));
  };
  make([&](int64_t) { return g(rng); });
  make([&](int64_t) { return 0.02f * heavy(rng); });
  make([&](int64_t) { return 3.f + u(rng); });
  make([&](int64_t) { return -5.f + 0.1f * g(rng); });
  make([&](int64_t i) { return i % 97 == 0 ? 40.f * g(rng) : g(rng); });
  make([&](int64_t) { return u(rng) < -0.8f ? g(rng) : 0.f; });
  make([&](int64_t) { return 1e-6f * g(rng); });
  make([&](int64_t) { return 1e3f * u(rng); });
  make([&](int64_t i) { return static_cast<float>(i % 7) - 3.f; });
  return rows;
}

std::vector<uint8_t> quantize_rows(QuantizeFn fn, const TypeInfo& ti, const std::vector<float>& x, int64_t n,
                                   const float* imatrix) {
  const int64_t rows = static_cast<int64_t>(x.size()) / n;
  std::vector<uint8_t> q(ti.row_bytes(n) * static_cast<size_t>(rows));
  fn(x.data(), q.data(), rows, n, imatrix);
  return q;
}

std::vector<float> dequantize_rows(DequantizeFn fn, const TypeInfo& ti, const std::vector<uint8_t>& q, int64_t n) {
  const size_t rb = ti.row_bytes(n);
  std::vector<float> y(q.size() / rb * static_cast<size_t>(n));
  for (size_t r = 0; r < q.size() / rb; ++r) fn(q.data() + r * rb, y.data() + r * static_cast<size_t>(n), n);
  return y;
}

double rel_rmse(const std::vector<float>& x, const std::vector<float>& y) {
  double e = 0, s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - y[i];
    e += d * d;
    s += static_cast<double>(x[i]) * x[i];
  }
  return s > 0 ? std::sqrt(e / s) : std::sqrt(e);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

CalibProblem calib_problem(int64_t n, int64_t d, int64_t rows, uint32_t seed) {
  CalibProblem p;
  p.n = n, p.d = d, p.rows = rows;
  std::mt19937 rng(seed);
  std::normal_distribution<float> N(0, 1);
  std::vector<float> a(static_cast<size_t>(d * d)), s(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j) a[static_cast<size_t>(i * d + j)] = (i == j ? 1.0f : 0.0f) + 0.3f * N(rng);
  for (auto& v : s) v = std::exp(N(rng));
  p.x.assign(static_cast<size_t>(n * d), 0);
  std::vector<float> z(static_cast<size_t>(d));
  for (int64_t t = 0; t < n; ++t) {
    for (auto& v : z) v = N(rng);
    for (int64_t j = 0; j < d; ++j) {
      double acc = 0;
      for (int64_t i = 0; i < d; ++i) acc += z[static_cast<size_t>(i)] * a[static_cast<size_t>(i * d + j)];
      p.x[static_cast<size_t>(t * d + j)] = static_cast<float>(acc) * s[static_cast<size_t>(j)];
    }
  }
  p.h.assign(static_cast<size_t>(d * d), 0);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = i; j < d; ++j) {
      double acc = 0;
      for (int64_t t = 0; t < n; ++t) acc += double(p.x[static_cast<size_t>(t * d + i)]) * p.x[static_cast<size_t>(t * d + j)];
      p.h[static_cast<size_t>(i * d + j)] = p.h[static_cast<size_t>(j * d + i)] = static_cast<float>(2 * acc / n);
    }
  p.w.resize(static_cast<size_t>(rows * d));
  for (auto& v : p.w) v = 0.05f * N(rng);
  return p;
}

double calib_output_error(const CalibProblem& p, const std::vector<float>& q) {
  double e = 0;
  for (int64_t t = 0; t < p.n; ++t)
    for (int64_t r = 0; r < p.rows; ++r) {
      double s = 0;
      for (int64_t j = 0; j < p.d; ++j)
        s += double(p.x[static_cast<size_t>(t * p.d + j)]) *
             (p.w[static_cast<size_t>(r * p.d + j)] - q[static_cast<size_t>(r * p.d + j)]);
      e += s * s;
    }
  return e;
}

GptqConfig small_gptq_config(const std::filesystem::path& calib, int samples, int64_t ctx) {
  GptqConfig c;
  c.layout = GptqLayout::compressed_tensors;
  c.calibration_samples = samples;
  c.ctx = ctx;
  c.calibration_data = calib;
  return c;
}

GptqGgufConfig small_gptq_gguf_config(const std::filesystem::path& calib, int samples, int64_t ctx) {
  GptqGgufConfig c;
  c.calibration_samples = samples;
  c.ctx = ctx;
  c.calibration_data = calib;
  return c;
}

AwqConfig small_awq_config(const std::filesystem::path& calib, int samples, int64_t ctx) {
  AwqConfig c;
  c.layout = GptqLayout::compressed_tensors;
  c.calibration_samples = samples;
  c.ctx = ctx;
  c.calibration_data = calib;
  return c;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return diff / std::max(scale, 1e-30);
}

double worst_row_rel_diff(const std::vector<float>& a, const std::vector<float>& b, size_t row) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t r = 0; r < a.size() / row; ++r) {
    double diff = 0, mag = 0;
    for (size_t i = r * row; i < (r + 1) * row; ++i) {
      diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
      mag = std::max(mag, static_cast<double>(std::fabs(b[i])));
    }
    worst = std::max(worst, diff / mag);
  }
  return worst;
}

std::vector<float> bf16_values(const uint8_t* raw, size_t n) {
  std::vector<float> w(n);
  for (size_t i = 0; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, raw + 2 * i, 2);
    w[i] = bf16_to_f32(b);
  }
  return w;
}

void for_each_safetensors_tensor(const fs::path& dir,
                                 const std::function<void(const StTensor&, std::vector<uint8_t>&)>& fn) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    SafetensorsFile f(e.path());
    for (const StTensor& t : f.tensors()) {
      std::vector<uint8_t> raw(t.nbytes);
      f.read(t.begin, raw.size(), raw.data());
      fn(t, raw);
    }
  }
}

std::vector<float> all_logits(const Session& s) {
  std::vector<float> out;
  for (int64_t i = 0; i < s.n_outputs(); ++i) {
    const auto l = s.logits(i);
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

std::vector<float> logits_of(const Model& m, std::span<const int32_t> prompt, int64_t first_output,
                             const SessionOptions& so) {
  Session s(m, so);
  s.eval(prompt, first_output);
  return all_logits(s);
}

bool no_write_leftovers(const std::filesystem::path& dir) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.find(".tmp-") != std::string::npos || n.find(".old-") != std::string::npos) return false;
  }
  return true;
}

void check_directory_writes(const std::function<void(const std::filesystem::path&, const Context&)>& write) {
  namespace fs = std::filesystem;
  TempDir tmp;
  CancelToken token;
  token.cancel();
  Context ctx;
  ctx.cancel = &token;
  check_error(Errc::interrupted, [&] { write(tmp / "out", ctx); }, {}, "not interrupted");
  CHECK_FALSE(fs::exists(tmp / "out"));
  CHECK(fs::is_empty(tmp.path()));
  // A directory that is not an earlier output is never replaced.
  fs::create_directory(tmp / "mine");
  std::ofstream(tmp / "mine" / "notes.txt") << "keep";
  check_error(Errc::output_error, [&] { write(tmp / "mine", Context{}); }, "not an earlier");
  CHECK(read_file(tmp / "mine" / "notes.txt") == "keep");
  // An earlier output is.
  write(tmp / "out", Context{});
  write(tmp / "out", Context{});
  CHECK(fs::exists(tmp / "out" / "model.safetensors"));
  CHECK(no_write_leftovers(tmp.path()));
}

double mean_next_token_nll(const std::vector<float>& logits, std::span<const int32_t> tokens) {
  const size_t V = logits.size() / tokens.size();
  double total = 0;
  for (size_t t = 0; t + 1 < tokens.size(); ++t) {
    const float* row = logits.data() + t * V;
    double mx = row[0], sum = 0;
    for (size_t v = 1; v < V; ++v) mx = std::max(mx, double(row[v]));
    for (size_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
    total += std::log(sum) + mx - row[tokens[t + 1]];
  }
  return total / double(tokens.size() - 1);
}

std::vector<char> linear_mask(const Model& model, const std::vector<std::string>& names) {
  std::vector<char> wanted(model.linears().size(), 0);
  for (size_t i = 0; i < wanted.size(); ++i)
    wanted[i] = std::find(names.begin(), names.end(), model.linears()[i].name) != names.end();
  return wanted;
}

void check_gradient_slope(Model& model, const std::string& name, const std::vector<float>& g,
                          const std::function<double()>& loss) {
  double norm = 0;
  for (float v : g) norm += double(v) * v;
  norm = std::sqrt(norm);
  REQUIRE(norm > 0);
  const std::vector<float> w0 = model.tensor_f32(name);
  REQUIRE(w0.size() == g.size());
  auto loss_at = [&](double eps) {
    std::vector<float> w = w0;
    for (size_t i = 0; i < w.size(); ++i) w[i] += static_cast<float>(eps * g[i] / norm);
    model.replace_tensor(name, std::span<const float>(w));
    return loss();
  };
  const double eps = 0.002;
  const double slope = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
  model.replace_tensor(name, std::span<const float>(w0));
  UNSCOPED_INFO(name << ": slope " << slope << ", gradient norm " << norm);
  CHECK(slope == Approx(norm).epsilon(0.01));
}

std::optional<Error> check_error(Errc want, const std::function<void()>& fn, const std::string& needle,
                                 const std::string& what) {
  try {
    fn();
  } catch (const Error& e) {
    CHECK(e.code() == want);
    CHECK_THAT(std::string(e.what()), Catch::Contains(needle));
    return e;
  }
  FAIL_CHECK(what);
  return std::nullopt;
}

RunResult run(const std::string& command) {
  TempDir tmp;
  const std::string cmd = command + " >" + (tmp / "out").string() + " 2>" + (tmp / "err").string();
  RunResult r;
  const int st = std::system(cmd.c_str());
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  r.out = slurp(tmp / "out");
  r.err = slurp(tmp / "err");
  return r;
}

nlohmann::json quantize_json_field(const std::string& args, const std::string& field) {
  const RunResult r = run(cli_path() + " --format json quantize " + args);
  INFO(r.err);
  REQUIRE(r.status == 0);
  return nlohmann::json::parse(r.out).at(field);
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "lq-test-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

namespace {

// The weights of a ToyShape in llama.cpp's order (see write_toy_gguf()).
std::vector<TensorShape> toy_tensors(const ToyShape& s) {
  const int64_t hd = s.d / s.heads;
  std::vector<TensorShape> ts = {{"token_embd.weight", {s.d, s.vocab}}};
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    ts.push_back({p + "attn_norm.weight", {s.d}});
    ts.push_back({p + "attn_q.weight", {s.d, s.heads * hd}});
    ts.push_back({p + "attn_k.weight", {s.d, s.kv * hd}});
    ts.push_back({p + "attn_v.weight", {s.d, s.kv * hd}});
    if (s.biases) {
      ts.push_back({p + "attn_q.bias", {s.heads * hd}});
      ts.push_back({p + "attn_k.bias", {s.kv * hd}});
      ts.push_back({p + "attn_v.bias", {s.kv * hd}});
    }
    ts.push_back({p + "attn_output.weight", {s.heads * hd, s.d}});
    ts.push_back({p + "ffn_norm.weight", {s.d}});
    ts.push_back({p + "ffn_gate.weight", {s.d, s.ff}});
    ts.push_back({p + "ffn_up.weight", {s.d, s.ff}});
    ts.push_back({p + "ffn_down.weight", {s.ff, s.d}});
  }
  ts.push_back({"output_norm.weight", {s.d}});
  if (!s.tied) ts.push_back({"output.weight", {s.d, s.vocab}});
  return ts;
}

void set_toy_metadata(gguf::Metadata& m, const ToyShape& s) {
  const std::string a = s.arch + ".";
  m.set("general.architecture", gguf::Value::string(s.arch));
  m.set(a + "block_count", gguf::Value::u32(static_cast<uint32_t>(s.layers)));
  m.set(a + "context_length", gguf::Value::u32(s.context_length));
  m.set(a + "embedding_length", gguf::Value::u32(static_cast<uint32_t>(s.d)));
  m.set(a + "feed_forward_length", gguf::Value::u32(static_cast<uint32_t>(s.ff)));
  m.set(a + "attention.head_count", gguf::Value::u32(static_cast<uint32_t>(s.heads)));
  m.set(a + "attention.head_count_kv", gguf::Value::u32(static_cast<uint32_t>(s.kv)));
  m.set(a + "rope.freq_base", gguf::Value::f32(10000.f));
  m.set(a + "attention.layer_norm_rms_epsilon", gguf::Value::f32(1e-5f));
  m.set(a + "vocab_size", gguf::Value::u32(static_cast<uint32_t>(s.vocab)));
  m.set("tokenizer.ggml.bos_token_id", gguf::Value::u32(1));
  m.set("tokenizer.ggml.eos_token_id", gguf::Value::u32(2));
}

}  // namespace

void write_toy_gguf(const fs::path& path, const ToyShape& s, uint32_t seed,
                    const std::function<float(const TensorShape&)>& matrix_sd,
                    const std::function<void(const TensorShape&, std::vector<float>&)>& edit) {
  gguf::Writer w(path);
  set_toy_metadata(w.metadata(), s);
  const std::vector<TensorShape> ts = toy_tensors(s);
  for (const auto& t : ts) w.add_tensor(t.name, QuantType::F32, t.ne);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (const auto& t : ts) {
    const int64_t cols = t.ne[0], rows = t.ne.size() > 1 ? t.ne[1] : 1;
    std::vector<float> v(static_cast<size_t>(cols * rows));
    const bool norm = t.name.find("norm") != std::string::npos;
    const float sd = t.ne.size() == 1 ? 0.1f : matrix_sd(t);
    for (auto& x : v) x = norm ? 1.0f + 0.1f * nd(rng) : sd * nd(rng);
    if (edit) edit(t, v);
    w.write(v.data(), v.size() * sizeof(float));
  }
  w.commit();
}

// A random Llama GGUF of `layers` layers (hidden 256 so every type fits), F32 weights.
fs::path synthetic_llama(const TempDir& dir, int layers) {
  const fs::path p = dir / ("synth-" + std::to_string(layers) + ".gguf");
  gguf::Writer w(p);
  auto& m = w.metadata();
  const ToyShape s{.d = 256, .ff = 512, .heads = 4, .kv = 2, .layers = layers, .vocab = 512};
  m.set("general.architecture", gguf::Value::string("llama"));
  m.set("llama.block_count", gguf::Value::u32(static_cast<uint32_t>(layers)));
  m.set("llama.embedding_length", gguf::Value::u32(static_cast<uint32_t>(s.d)));
  m.set("llama.feed_forward_length", gguf::Value::u32(static_cast<uint32_t>(s.ff)));
  m.set("llama.attention.head_count", gguf::Value::u32(static_cast<uint32_t>(s.heads)));
  m.set("llama.attention.head_count_kv", gguf::Value::u32(static_cast<uint32_t>(s.kv)));
  m.set("llama.attention.layer_norm_rms_epsilon", gguf::Value::f32(1e-5f));
  // These files hold output_norm and output right after token_embd, then the blocks.
  std::vector<TensorShape> ts = toy_tensors(s);
  std::rotate(ts.begin() + 1, ts.end() - 2, ts.end());
  for (const auto& [n, ne] : ts) w.add_tensor(n, QuantType::F32, ne);
  std::mt19937 rng(layers);
  std::normal_distribution<float> nd(0.f, 0.02f);
  for (const auto& [n, ne] : ts) {
    int64_t count = 1;
    for (auto d : ne) count *= d;
    std::vector<float> v(static_cast<size_t>(count));
    for (auto& x : v) x = ne.size() == 1 ? 1.0f : nd(rng);
    w.write(v.data(), v.size() * 4);
  }
  w.commit();
  return p;
}

}  // namespace lq::test
