// Importance matrix files in llama.cpp's two formats: the GGUF-based one (<name>.in_sum2 and
// <name>.counts tensors plus imatrix.* metadata) and the legacy .dat one, read, validated,
// written and combined. File I/O only: computing a matrix is lib/analysis's.
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/gguf.hpp>
#include <lq/imatrix.hpp>
#include <lq/io.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <unordered_map>

#include <fmt/ranges.h>

namespace fs = std::filesystem;

namespace lq {

std::vector<float> ImatrixEntry::mean(int64_t mat) const {
  std::vector<float> m(static_cast<size_t>(n_cols));
  const float c = counts[static_cast<size_t>(mat)];
  for (int64_t j = 0; j < n_cols; ++j) m[j] = c > 0 ? in_sum2[mat * n_cols + j] / c : 1.0f;
  return m;
}

const ImatrixEntry* Imatrix::find(const std::string& name) const {
  auto it = entries.find(name);
  return it == entries.end() ? nullptr : &it->second;
}

std::optional<std::vector<float>> Imatrix::column_weights(const std::string& name, int64_t n_cols) const {
  const ImatrixEntry* e = find(name);
  if (!e) return std::nullopt;
  if (e->n_cols != n_cols || e->n_mat != 1)
    fail(Errc::imatrix_error, "importance matrix entry '{}' has {} x {} values but the tensor rows have {}", name,
         e->n_cols, e->n_mat, n_cols);
  return e->mean(0);
}

std::optional<std::vector<float>> Imatrix::column_weights(const std::string& name, int64_t n_cols,
                                                         int64_t n_mat) const {
  const ImatrixEntry* e = find(name);
  if (!e) return std::nullopt;
  if (e->n_cols != n_cols || (e->n_mat != n_mat && e->n_mat != 1))
    fail(Errc::imatrix_error, "importance matrix entry '{}' has {} x {} values but the tensor has {} matrices of rows of {}",
         name, e->n_cols, e->n_mat, n_mat, n_cols);
  std::vector<float> out;
  out.reserve(static_cast<size_t>(n_cols * n_mat));
  for (int64_t m = 0; m < n_mat; ++m) {
    const std::vector<float> v = e->mean(e->n_mat == 1 ? 0 : m);
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

namespace {

void check_finite(const std::string& file, const std::string& name, const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) fail(Errc::imatrix_error, "{}: entry '{}' holds a non-finite value", file, name);
}

Imatrix load_gguf(const fs::path& path) {
  const std::string file = path.string();
  std::unique_ptr<gguf::Reader> r;
  try {
    r = std::make_unique<gguf::Reader>(path);
  } catch (const Error& e) {
    fail(Errc::imatrix_error, "{}", e.what());
  }
  Imatrix im;
  const auto& m = r->metadata();
  if (auto t = m.get_string("general.type"); t && *t != "imatrix")
    fail(Errc::imatrix_error, "{}: GGUF file of type '{}' is not an importance matrix", file, *t);
  if (const auto* d = m.find("imatrix.datasets"); d && d->is_array() && d->elem_type() == gguf::ValueType::STRING)
    im.datasets = d->as_strings();
  if (!m.contains("imatrix.chunk_count") || !m.contains("imatrix.chunk_size"))
    fail(Errc::imatrix_error, "{}: missing imatrix.chunk_count / imatrix.chunk_size", file);
  im.chunk_count = m.get_int("imatrix.chunk_count").value_or(0);
  im.chunk_size = m.get_int("imatrix.chunk_size").value_or(0);
  const std::string s2 = ".in_sum2", sc = ".counts";
  std::unordered_map<std::string, const gguf::TensorInfo*> by_name;  // one lookup per entry, not a scan
  for (const auto& t : r->tensors()) by_name.emplace(t.name, &t);
  for (const auto& t : r->tensors()) {
    if (t.name.size() <= s2.size() || t.name.compare(t.name.size() - s2.size(), s2.size(), s2) != 0) continue;
    const std::string name = t.name.substr(0, t.name.size() - s2.size());
    const auto found = by_name.find(name + sc);
    if (found == by_name.end()) fail(Errc::imatrix_error, "{}: entry '{}' has sums but no counts", file, name);
    const gguf::TensorInfo* c = found->second;
    if (t.type != QuantType::F32 || c->type != QuantType::F32)
      fail(Errc::imatrix_error, "{}: entry '{}' is not F32", file, name);
    // Sums are [n_cols] or [n_cols, n_mat]; an entry without values says nothing.
    if (t.ne.size() > 2 || t.n_elements() == 0)
      fail(Errc::imatrix_error, "{}: entry '{}' has shape [{}]; expected [columns] or [columns, matrices], none 0",
           file, name, fmt::join(t.ne, ", "));
    ImatrixEntry e;
    e.n_cols = t.ne[0];
    e.n_mat = t.ne.size() > 1 ? t.ne[1] : 1;
    if (c->n_elements() != e.n_mat)
      fail(Errc::imatrix_error, "{}: entry '{}' has {} counts for {} matrices", file, name, c->n_elements(), e.n_mat);
    e.in_sum2.resize(static_cast<size_t>(t.n_elements()));
    e.counts.resize(static_cast<size_t>(e.n_mat));
    std::memcpy(e.in_sum2.data(), r->data(t).data(), e.in_sum2.size() * 4);
    std::memcpy(e.counts.data(), r->data(*c).data(), e.counts.size() * 4);
    check_finite(file, name, e.in_sum2);
    check_finite(file, name, e.counts);
    im.entries[name] = std::move(e);
  }
  for (const auto& t : r->tensors()) {
    if (t.name.size() > sc.size() && t.name.compare(t.name.size() - sc.size(), sc.size(), sc) == 0 &&
        !im.entries.count(t.name.substr(0, t.name.size() - sc.size())))
      fail(Errc::imatrix_error, "{}: counts tensor '{}' has no sums", file, t.name);
  }
  return im;
}

class ByteReader {
 public:
  ByteReader(const std::string& data, const std::string& file) : d_(data), file_(file) {}
  template <typename T>
  T get(const char* what) {
    if (d_.size() - pos_ < sizeof(T)) fail(Errc::imatrix_error, "{}: truncated importance matrix (reading {})", file_, what);
    T v;
    std::memcpy(&v, d_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(int32_t n, const char* what) {
    if (n < 0 || d_.size() - pos_ < static_cast<size_t>(n))
      fail(Errc::imatrix_error, "{}: truncated or malformed importance matrix (reading {})", file_, what);
    std::string s = d_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }
  size_t remaining() const { return d_.size() - pos_; }

 private:
  const std::string& d_;
  const std::string& file_;
  size_t pos_ = 0;
};

// Legacy layout: i32 n_entries; per entry i32 len, name, i32 ncall, i32 nval, f32[nval];
// trailer i32 chunk count, i32 len, dataset name. Values are mean * ncall; we keep
// in_sum2 = value and counts = ncall so that in_sum2 / counts is the mean.
Imatrix load_dat(const fs::path& path, const std::string& data) {
  const std::string file = path.string();
  ByteReader br(data, file);
  Imatrix im;
  const int32_t n = br.get<int32_t>("entry count");
  if (n < 0 || static_cast<size_t>(n) > data.size() / 12) fail(Errc::imatrix_error, "{}: not an importance matrix file", file);
  for (int32_t i = 0; i < n; ++i) {
    const int32_t len = br.get<int32_t>("name length");
    if (len <= 0 || len > 4096) fail(Errc::imatrix_error, "{}: not an importance matrix file (bad entry name length)", file);
    std::string name = br.str(len, "name");
    const int32_t ncall = br.get<int32_t>("ncall");
    const int32_t nval = br.get<int32_t>("value count");
    if (nval <= 0 || static_cast<size_t>(nval) > br.remaining() / 4)
      fail(Errc::imatrix_error, "{}: entry '{}': truncated or malformed values", file, name);
    ImatrixEntry e;
    e.n_cols = nval;
    e.in_sum2.resize(static_cast<size_t>(nval));
    for (auto& v : e.in_sum2) v = br.get<float>("values");
    e.counts = {static_cast<float>(ncall)};
    check_finite(file, name, e.in_sum2);
    if (im.entries.count(name)) fail(Errc::imatrix_error, "{}: duplicate entry '{}'", file, name);
    im.entries[std::move(name)] = std::move(e);
  }
  im.chunk_size = 1;
  im.counts_in_chunks = true;
  if (br.remaining() >= 4) {
    im.chunk_count = br.get<int32_t>("chunk count");
    if (br.remaining() >= 4) {
      const int32_t len = br.get<int32_t>("dataset length");
      im.datasets.push_back(br.str(len, "dataset"));
    }
  }
  if (br.remaining() != 0) fail(Errc::imatrix_error, "{}: {} trailing bytes after the importance matrix", file, br.remaining());
  return im;
}

}  // namespace

Imatrix Imatrix::load(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(Errc::imatrix_error, "importance matrix not found: {}", path.string());
  if (!fs::is_regular_file(path, ec)) fail(Errc::imatrix_error, "importance matrix is not a file: {}", path.string());
  std::string head(4, '\0');
  {
    std::ifstream in(path, std::ios::binary);
    in.read(head.data(), 4);
    head.resize(static_cast<size_t>(in.gcount()));
  }
  Imatrix im = head == "GGUF" ? load_gguf(path) : load_dat(path, read_file(path));
  if (im.entries.empty()) fail(Errc::imatrix_error, "{}: the importance matrix has no entries", path.string());
  return im;
}

Imatrix Imatrix::combine(const std::vector<Imatrix>& parts, int64_t legacy_chunk_size) {
  if (parts.empty()) fail(Errc::invalid_argument, "combine: no importance matrices given");
  int64_t legacy = legacy_chunk_size;
  for (const Imatrix& p : parts)
    if (legacy <= 0 && !p.counts_in_chunks && p.chunk_size > 0) legacy = p.chunk_size;
  if (legacy <= 0) legacy = 512;
  struct Acc {
    int64_t n_cols, n_mat;
    std::vector<double> sum, counts;
    size_t first;  // input that brought it
  };
  std::map<std::string, Acc> acc;
  Imatrix out;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Imatrix& p = parts[i];
    const int64_t size = p.counts_in_chunks ? legacy : p.chunk_size;
    const double scale = p.counts_in_chunks ? static_cast<double>(legacy) : 1.0;
    if (i == 0) out.chunk_size = size;
    else if (size != out.chunk_size)
      fail(Errc::imatrix_error, "combine: input {} has chunks of {} tokens, input 1 of {}", i + 1, size, out.chunk_size);
    out.chunk_count += p.chunk_count;
    out.datasets.insert(out.datasets.end(), p.datasets.begin(), p.datasets.end());
    for (const auto& [name, e] : p.entries) {
      auto [it, fresh] = acc.try_emplace(name, Acc{e.n_cols, e.n_mat, {}, {}, i});
      Acc& a = it->second;
      if (fresh) {
        a.sum.assign(static_cast<size_t>(e.n_cols * e.n_mat), 0.0);
        a.counts.assign(static_cast<size_t>(e.n_mat), 0.0);
      } else if (a.n_cols != e.n_cols || a.n_mat != e.n_mat) {
        fail(Errc::imatrix_error, "combine: '{}' has {} x {} values in input {} but {} x {} in input {}", name, e.n_cols,
             e.n_mat, i + 1, a.n_cols, a.n_mat, a.first + 1);
      }
      for (size_t j = 0; j < a.sum.size(); ++j) a.sum[j] += static_cast<double>(e.in_sum2[j]) * scale;
      for (size_t j = 0; j < a.counts.size(); ++j) a.counts[j] += static_cast<double>(e.counts[j]) * scale;
    }
  }
  for (auto& [name, a] : acc) {
    ImatrixEntry e;
    e.n_cols = a.n_cols;
    e.n_mat = a.n_mat;
    e.in_sum2.assign(a.sum.begin(), a.sum.end());
    e.counts.assign(a.counts.begin(), a.counts.end());
    out.entries[name] = std::move(e);
  }
  return out;
}

void Imatrix::save_gguf(const fs::path& path) const {
  gguf::Writer w(path);
  auto& m = w.metadata();
  m.set("general.type", gguf::Value::string("imatrix"));
  m.set("imatrix.datasets", gguf::Value::strings(datasets));
  m.set("imatrix.chunk_count", gguf::Value::u32(static_cast<uint32_t>(chunk_count)));
  m.set("imatrix.chunk_size", gguf::Value::u32(static_cast<uint32_t>(chunk_size)));
  for (const auto& [name, e] : entries) {  // std::map: sorted by name
    std::vector<int64_t> ne = {e.n_cols};
    if (e.n_mat > 1) ne.push_back(e.n_mat);
    w.add_tensor(name + ".in_sum2", QuantType::F32, ne);
    const std::vector<int64_t> nc = e.n_mat > 1 ? std::vector<int64_t>{1, e.n_mat} : std::vector<int64_t>{1};
    w.add_tensor(name + ".counts", QuantType::F32, nc);
  }
  for (const auto& [name, e] : entries) {
    w.write(e.in_sum2.data(), e.in_sum2.size() * 4);
    w.write(e.counts.data(), e.counts.size() * 4);
  }
  w.commit();
}

void Imatrix::save_dat(const fs::path& path) const {
  std::string out;
  auto put_i32 = [&](int32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  auto put_f32 = [&](float v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  put_i32(static_cast<int32_t>(entries.size()));
  const double cs = chunk_size > 0 ? static_cast<double>(chunk_size) : 1.0;
  for (const auto& [name, e] : entries) {
    put_i32(static_cast<int32_t>(name.size()));
    out += name;
    const float max_count = *std::max_element(e.counts.begin(), e.counts.end());
    const int32_t ncall = static_cast<int32_t>(std::ceil(max_count / cs));
    put_i32(ncall);
    put_i32(static_cast<int32_t>(e.n_cols * e.n_mat));
    for (int64_t mat = 0; mat < e.n_mat; ++mat) {
      const float c = e.counts[static_cast<size_t>(mat)];
      // In float, as llama-imatrix computes it, so the same sums give the same bytes.
      for (int64_t j = 0; j < e.n_cols; ++j)
        put_f32(c > 0 ? (e.in_sum2[mat * e.n_cols + j] / c) * static_cast<float>(ncall)
                      : static_cast<float>(ncall));  // reads back as 1.0
    }
  }
  put_i32(static_cast<int32_t>(chunk_count));
  const std::string ds = datasets.empty() ? std::string() : datasets.front();
  put_i32(static_cast<int32_t>(ds.size()));
  out += ds;
  write_file_atomic(path, out);
}

}  // namespace lq
