// Analysis checkpoints (see checkpoint.hpp): state.json with the run's identity and progress, the
// loss sum bit-exactly, and the raw double sums of every accumulator in a sums-NNNNNN.bin file.
#include "analysis/checkpoint.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/io.hpp>

#include <fmt/format.h>

#include <cstring>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lq::analysis {

const char* method_key(ImportanceMethod m) noexcept {
  switch (m) {
    case ImportanceMethod::gradient: return "gradient";
    case ImportanceMethod::fisher: return "fisher";
    default: return "activation";
  }
}

fs::path state_dir(const fs::path& checkpoint_dir, ImportanceMethod m) {
  return checkpoint_dir / (std::string("analyze-") + method_key(m));
}

fs::path resume_dir(const fs::path& r, ImportanceMethod m) {
  std::error_code ec;
  if (fs::is_regular_file(r / "state.json", ec)) return r;
  const fs::path sub = state_dir(r, m);
  if (fs::is_regular_file(sub / "state.json", ec)) return sub;
  if (!fs::exists(r, ec)) fail(Errc::invalid_argument, "--resume: checkpoint not found: {}", r.string());
  fail(Errc::invalid_argument, "--resume: {} holds no {} analysis checkpoint (no state.json)", r.string(), method_key(m));
}

namespace {

void write_sums(const fs::path& path, const std::vector<Accum>& acc) {
  std::string bytes;
  for (const auto& a : acc) {
    bytes.append(reinterpret_cast<const char*>(a.sum.data()), a.sum.size() * sizeof(double));
    bytes.append(reinterpret_cast<const char*>(&a.count), sizeof a.count);
  }
  write_file_atomic(path, bytes);
}

}  // namespace

void save_checkpoint(const fs::path& dir, const json& base, int64_t done, int64_t tokens_done, double loss_sum,
                     const std::vector<Accum>& acc) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(Errc::output_error, "cannot create the checkpoint directory {}: {}", dir.string(), ec.message());
  const std::string sums = fmt::format("sums-{:06}.bin", done);
  write_sums(dir / sums, acc);
  json st = base;
  st["chunks_done"] = done;
  st["tokens_done"] = tokens_done;
  // The loss sum is kept bit-exactly (hex of the double's bits).
  uint64_t bits;
  std::memcpy(&bits, &loss_sum, sizeof bits);
  st["loss_sum_bits"] = fmt::format("{:016x}", bits);
  st["sums_file"] = sums;
  write_file_atomic(dir / "state.json", st.dump(1) + "\n");
  std::vector<fs::path> old;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().rfind("sums-", 0) == 0 && e.path().filename() != sums) old.push_back(e.path());
  for (const auto& p : old) fs::remove(p, ec);
}

int64_t load_checkpoint(const fs::path& dir, const json& base, int64_t n_chunks, std::vector<Accum>& acc,
                        int64_t& tokens_done, double& loss_sum) {
  json st;
  try {
    st = json::parse(read_file(dir / "state.json"));
  } catch (const json::exception& e) {
    fail(Errc::invalid_argument, "--resume: {}: malformed checkpoint state: {}", (dir / "state.json").string(), e.what());
  }
  if (st.value("format", "") != "lq.analyze-checkpoint")
    fail(Errc::invalid_argument, "--resume: {} is not an analysis checkpoint", dir.string());
  auto mismatch = [&](const char* key, const std::string& what) {
    if (!st.contains(key) || st[key] != base[key])
      fail(Errc::invalid_argument,
           "--resume: the checkpoint in {} was made with {} {}, this run has {} (resume with the same model, "
           "calibration data and options, or start afresh without --resume)",
           dir.string(), what, st.contains(key) ? st[key].dump() : std::string("(none)"), base[key].dump());
  };
  mismatch("model_id", "another model: identity");
  mismatch("method", "method");
  mismatch("ctx", "ctx");
  mismatch("chunks", "chunk count");
  mismatch("process_output", "process_output");
  mismatch("activation_rounding", "activation rounding");
  mismatch("kv_cache", "KV cache type");
  mismatch("data_id", "other calibration data: identity");
  mismatch("entries", "other weights: entries");
  const int64_t done = st.value("chunks_done", int64_t{-1});
  if (done < 0 || done > n_chunks)
    fail(Errc::invalid_argument, "--resume: {}: invalid chunk count in the checkpoint", dir.string());
  tokens_done = st.value("tokens_done", int64_t{0});
  const uint64_t bits = std::stoull(st.value("loss_sum_bits", std::string("0")), nullptr, 16);
  std::memcpy(&loss_sum, &bits, sizeof loss_sum);
  const fs::path sums = dir / st.value("sums_file", std::string());
  std::string bytes;
  try {
    bytes = read_file(sums);
  } catch (const Error&) {
    fail(Errc::invalid_argument, "--resume: the checkpoint's sums file {} is missing", sums.string());
  }
  size_t need = 0;
  for (const auto& a : acc) need += a.sum.size() * sizeof(double) + sizeof(int64_t);
  if (bytes.size() != need)
    fail(Errc::invalid_argument, "--resume: {} has {} bytes, {} expected", sums.string(), bytes.size(), need);
  size_t pos = 0;
  for (auto& a : acc) {
    std::memcpy(a.sum.data(), bytes.data() + pos, a.sum.size() * sizeof(double));
    pos += a.sum.size() * sizeof(double);
    std::memcpy(&a.count, bytes.data() + pos, sizeof a.count);
    pos += sizeof a.count;
  }
  return done;
}

}  // namespace lq::analysis
