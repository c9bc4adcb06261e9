// The GGUF v3 container: metadata values, the validating memory-mapped reader and the streaming
// writer. Pure file I/O (bytes, metadata, validation): it must not decode tensors or call
// kernels (decoding is lib/model/decode.cpp's).
#include <lq/error.hpp>
#include "core/fail.hpp"
#include "core/shape.hpp"
#include <lq/gguf.hpp>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <unordered_set>


namespace lq::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr size_t kMaxName = 64;           // ggml's GGML_MAX_NAME (names are shorter)
constexpr int kMaxDims = 4;

// Name and element size (0: not a fixed-size element) of each value type, by its GGUF id.
struct ValueTypeRow {
  const char* name;
  size_t size;
};
constexpr ValueTypeRow kValueTypes[] = {
    {"u8", 1},   {"i8", 1},     {"u16", 2},   {"i16", 2}, {"u32", 4}, {"i32", 4}, {"f32", 4},  // 0-6
    {"bool", 1}, {"string", 0}, {"array", 0}, {"u64", 8}, {"i64", 8}, {"f64", 8},              // 7-12
};
static_assert(std::size(kValueTypes) == static_cast<size_t>(ValueType::FLOAT64) + 1);

bool valid_value_type(int32_t t) { return t >= 0 && static_cast<size_t>(t) < std::size(kValueTypes); }

uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

const char* value_type_name(ValueType t) noexcept {
  return valid_value_type(static_cast<int32_t>(t)) ? kValueTypes[static_cast<size_t>(t)].name : "?";
}

size_t value_type_size(ValueType t) noexcept {
  return valid_value_type(static_cast<int32_t>(t)) ? kValueTypes[static_cast<size_t>(t)].size : 0;
}

// ---- Value -----------------------------------------------------------------------------------

template <typename T>
Value Value::scalar(ValueType t, T v) {
  Value x;
  x.type_ = t;
  x.raw_.resize(sizeof(T));
  std::memcpy(x.raw_.data(), &v, sizeof(T));
  return x;
}

template Value Value::scalar<uint8_t>(ValueType, uint8_t);
template Value Value::scalar<int8_t>(ValueType, int8_t);
template Value Value::scalar<uint16_t>(ValueType, uint16_t);
template Value Value::scalar<int16_t>(ValueType, int16_t);
template Value Value::scalar<uint32_t>(ValueType, uint32_t);
template Value Value::scalar<int32_t>(ValueType, int32_t);
template Value Value::scalar<uint64_t>(ValueType, uint64_t);
template Value Value::scalar<int64_t>(ValueType, int64_t);
template Value Value::scalar<float>(ValueType, float);
template Value Value::scalar<double>(ValueType, double);
template Value Value::scalar<bool>(ValueType, bool);

Value Value::string(std::string v) {
  Value x;
  x.type_ = ValueType::STRING;
  x.str_ = std::move(v);
  return x;
}

Value Value::strings(std::vector<std::string> v) {
  Value x;
  x.type_ = ValueType::ARRAY;
  x.elem_ = ValueType::STRING;
  x.strs_ = std::move(v);
  return x;
}

Value Value::array_raw(ValueType elem, std::vector<uint8_t> bytes) {
  const size_t es = value_type_size(elem);
  if (es == 0 || bytes.size() % es != 0)
    fail(Errc::general, "gguf: invalid raw array of {}", value_type_name(elem));
  Value x;
  x.type_ = ValueType::ARRAY;
  x.elem_ = elem;
  x.raw_ = std::move(bytes);
  return x;
}

template <typename T>
Value Value::array(ValueType elem, std::span<const T> values) {
  if (value_type_size(elem) != sizeof(T)) fail(Errc::general, "gguf: array element size mismatch");
  std::vector<uint8_t> bytes(values.size_bytes());
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return array_raw(elem, std::move(bytes));
}

template LQ_API Value Value::array<uint8_t>(ValueType, std::span<const uint8_t>);
template LQ_API Value Value::array<int8_t>(ValueType, std::span<const int8_t>);
template LQ_API Value Value::array<uint16_t>(ValueType, std::span<const uint16_t>);
template LQ_API Value Value::array<int16_t>(ValueType, std::span<const int16_t>);
template LQ_API Value Value::array<uint32_t>(ValueType, std::span<const uint32_t>);
template LQ_API Value Value::array<int32_t>(ValueType, std::span<const int32_t>);
template LQ_API Value Value::array<uint64_t>(ValueType, std::span<const uint64_t>);
template LQ_API Value Value::array<int64_t>(ValueType, std::span<const int64_t>);
template LQ_API Value Value::array<float>(ValueType, std::span<const float>);
template LQ_API Value Value::array<double>(ValueType, std::span<const double>);

namespace {

int64_t int_from(ValueType t, const uint8_t* p) {
  switch (t) {
    case ValueType::UINT8: return *p;
    case ValueType::INT8: return static_cast<int8_t>(*p);
    case ValueType::BOOL: return *p != 0;
    case ValueType::UINT16: { uint16_t v; std::memcpy(&v, p, 2); return v; }
    case ValueType::INT16: { int16_t v; std::memcpy(&v, p, 2); return v; }
    case ValueType::UINT32: { uint32_t v; std::memcpy(&v, p, 4); return v; }
    case ValueType::INT32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case ValueType::UINT64: { uint64_t v; std::memcpy(&v, p, 8); return static_cast<int64_t>(v); }
    case ValueType::INT64: { int64_t v; std::memcpy(&v, p, 8); return v; }
    default: fail(Errc::invalid_model, "gguf: value of type {} is not an integer", value_type_name(t));
  }
}

double float_from(ValueType t, const uint8_t* p) {
  switch (t) {
    case ValueType::FLOAT32: { float v; std::memcpy(&v, p, 4); return v; }
    case ValueType::FLOAT64: { double v; std::memcpy(&v, p, 8); return v; }
    case ValueType::UINT64: { uint64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
    default: return static_cast<double>(int_from(t, p));
  }
}

}  // namespace

int64_t Value::as_int() const {
  if (is_array() || type_ == ValueType::STRING) fail(Errc::invalid_model, "gguf: expected an integer, got {}", value_type_name(type_));
  return int_from(type_, raw_.data());
}

uint64_t Value::as_uint() const {
  if (type_ == ValueType::UINT64) {
    uint64_t v;
    std::memcpy(&v, raw_.data(), 8);
    return v;
  }
  const int64_t v = as_int();
  if (v < 0) fail(Errc::invalid_model, "gguf: expected a non-negative integer, got {}", v);
  return static_cast<uint64_t>(v);
}

double Value::as_float() const {
  if (is_array() || type_ == ValueType::STRING) fail(Errc::invalid_model, "gguf: expected a number, got {}", value_type_name(type_));
  return float_from(type_, raw_.data());
}

bool Value::as_bool() const {
  if (type_ != ValueType::BOOL) fail(Errc::invalid_model, "gguf: expected a bool, got {}", value_type_name(type_));
  return raw_[0] != 0;
}

const std::string& Value::as_string() const {
  if (type_ != ValueType::STRING) fail(Errc::invalid_model, "gguf: expected a string, got {}", value_type_name(type_));
  return str_;
}

size_t Value::size() const {
  if (!is_array()) return 1;
  if (elem_ == ValueType::STRING) return strs_.size();
  return raw_.size() / value_type_size(elem_);
}

const std::vector<std::string>& Value::as_strings() const {
  if (!is_array() || elem_ != ValueType::STRING) fail(Errc::invalid_model, "gguf: expected a string array");
  return strs_;
}

double Value::float_at(size_t i) const {
  if (!is_array() || elem_ == ValueType::STRING || i >= size()) fail(Errc::invalid_model, "gguf: bad numeric array access");
  return float_from(elem_, raw_.data() + i * value_type_size(elem_));
}

int64_t Value::int_at(size_t i) const {
  if (!is_array() || elem_ == ValueType::STRING || i >= size()) fail(Errc::invalid_model, "gguf: bad numeric array access");
  return int_from(elem_, raw_.data() + i * value_type_size(elem_));
}

bool Value::operator==(const Value& o) const {
  if (type_ != o.type_) return false;
  if (is_array() && elem_ != o.elem_) return false;
  return raw_ == o.raw_ && str_ == o.str_ && strs_ == o.strs_;
}

std::string Value::to_string(size_t max_items) const {
  if (type_ == ValueType::STRING) return str_.size() > 200 ? fmt::format("\"{}...\"", str_.substr(0, 200)) : fmt::format("\"{}\"", str_);
  if (!is_array()) {
    if (type_ == ValueType::BOOL) return as_bool() ? "true" : "false";
    if (type_ == ValueType::FLOAT32 || type_ == ValueType::FLOAT64) return fmt::format("{}", as_float());
    if (type_ == ValueType::UINT64) return fmt::format("{}", as_uint());
    return fmt::format("{}", as_int());
  }
  std::string s = fmt::format("[{} x {}]", size(), value_type_name(elem_));
  s += " [";
  const size_t n = std::min(size(), max_items);
  for (size_t i = 0; i < n; ++i) {
    if (i) s += ", ";
    if (elem_ == ValueType::STRING) s += fmt::format("\"{}\"", strs_[i]);
    else if (elem_ == ValueType::FLOAT32 || elem_ == ValueType::FLOAT64) s += fmt::format("{}", float_at(i));
    else s += fmt::format("{}", int_at(i));
  }
  if (size() > n) s += ", ...";
  s += "]";
  return s;
}

// ---- Metadata --------------------------------------------------------------------------------

void Metadata::set(const std::string& key, Value v) {
  if (auto it = index_.find(key); it != index_.end()) {
    kv_[it->second].second = std::move(v);
    return;
  }
  index_.emplace(key, kv_.size());
  kv_.emplace_back(key, std::move(v));
}

const Value* Metadata::find(const std::string& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &kv_[it->second].second;
}

const Value& Metadata::at(const std::string& key) const {
  const Value* v = find(key);
  if (!v) fail(Errc::invalid_model, "missing metadata key '{}'", key);
  return *v;
}

bool Metadata::erase(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  const size_t pos = it->second;
  index_.erase(it);
  kv_.erase(kv_.begin() + static_cast<std::ptrdiff_t>(pos));
  for (auto& [k, i] : index_)
    if (i > pos) --i;
  return true;
}

std::optional<std::string> Metadata::get_string(const std::string& key) const {
  const Value* v = find(key);
  if (!v || v->type() != ValueType::STRING) return std::nullopt;
  return v->as_string();
}

std::optional<int64_t> Metadata::get_int(const std::string& key) const {
  const Value* v = find(key);
  if (!v || v->is_array() || v->type() == ValueType::STRING || v->type() == ValueType::FLOAT32 ||
      v->type() == ValueType::FLOAT64)
    return std::nullopt;
  return v->as_int();
}

std::optional<double> Metadata::get_float(const std::string& key) const {
  const Value* v = find(key);
  if (!v || v->is_array() || v->type() == ValueType::STRING) return std::nullopt;
  return v->as_float();
}

// ---- tensors ---------------------------------------------------------------------------------

int64_t TensorInfo::n_elements() const { return element_count(ne); }

int64_t TensorInfo::n_rows() const { return row_count(ne); }

uint64_t tensor_nbytes(QuantType t, std::span<const int64_t> ne) {
  const TypeInfo& ti = type_info(t);
  if (ne.empty()) return 0;
  if (ne[0] % ti.block_size != 0)
    fail(Errc::invalid_model, "row length {} is not a multiple of {}'s block size {}", ne[0], ti.name, ti.block_size);
  uint64_t n = ti.row_bytes(ne[0]);
  for (size_t i = 1; i < ne.size(); ++i) n *= static_cast<uint64_t>(ne[i]);
  return n;
}

// ---- Reader ----------------------------------------------------------------------------------

namespace {

class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n, const std::string& file) : p_(p), n_(n), file_(file) {}
  size_t pos() const { return pos_; }
  [[noreturn]] void truncated(const char* what) const {
    fail(Errc::invalid_model, "{}: truncated GGUF header (reading {} at byte {}, file has {} bytes)", file_, what, pos_, n_);
  }
  const uint8_t* take(size_t k, const char* what) {
    if (k > n_ - pos_) truncated(what);
    const uint8_t* r = p_ + pos_;
    pos_ += k;
    return r;
  }
  template <typename T>
  T get(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }
  std::string str(const char* what) {
    const uint64_t len = get<uint64_t>(what);
    if (len > n_ - pos_) truncated(what);
    const auto* s = reinterpret_cast<const char*>(take(static_cast<size_t>(len), what));
    return std::string(s, static_cast<size_t>(len));
  }
  size_t remaining() const { return n_ - pos_; }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& file_;
};

Value read_value(Cursor& c, ValueType t, const std::string& key, const std::string& file) {
  if (t == ValueType::STRING) return Value::string(c.str("string value"));
  if (t == ValueType::ARRAY) {
    const int32_t et = c.get<int32_t>("array type");
    if (!valid_value_type(et)) fail(Errc::invalid_model, "{}: key '{}': invalid array element type {}", file, key, et);
    const auto elem = static_cast<ValueType>(et);
    if (elem == ValueType::ARRAY) fail(Errc::invalid_model, "{}: key '{}': nested arrays are not allowed", file, key);
    const uint64_t n = c.get<uint64_t>("array length");
    if (elem == ValueType::STRING) {
      if (n > c.remaining() / 8) c.truncated("string array");
      std::vector<std::string> v;
      v.reserve(static_cast<size_t>(n));
      for (uint64_t i = 0; i < n; ++i) v.push_back(c.str("string array element"));
      return Value::strings(std::move(v));
    }
    const size_t es = value_type_size(elem);
    if (n > c.remaining() / es) c.truncated("array data");
    const uint8_t* p = c.take(static_cast<size_t>(n) * es, "array data");
    return Value::array_raw(elem, std::vector<uint8_t>(p, p + static_cast<size_t>(n) * es));
  }
  const size_t es = value_type_size(t);
  const uint8_t* p = c.take(es, "value");
  switch (t) {
    case ValueType::UINT8: return Value::u8(*p);
    case ValueType::INT8: return Value::i8(static_cast<int8_t>(*p));
    case ValueType::BOOL: return Value::boolean(*p != 0);
    default: break;
  }
  Value v = Value::array_raw(t, std::vector<uint8_t>(p, p + es));  // reuse raw storage
  // convert the one-element array into a scalar of the same type
  switch (t) {
    case ValueType::UINT16: return Value::u16(static_cast<uint16_t>(v.int_at(0)));
    case ValueType::INT16: return Value::i16(static_cast<int16_t>(v.int_at(0)));
    case ValueType::UINT32: return Value::u32(static_cast<uint32_t>(v.int_at(0)));
    case ValueType::INT32: return Value::i32(static_cast<int32_t>(v.int_at(0)));
    case ValueType::UINT64: { uint64_t x; std::memcpy(&x, p, 8); return Value::u64(x); }
    case ValueType::INT64: return Value::i64(v.int_at(0));
    case ValueType::FLOAT32: { float x; std::memcpy(&x, p, 4); return Value::f32(x); }
    case ValueType::FLOAT64: { double x; std::memcpy(&x, p, 8); return Value::f64(x); }
    default: fail(Errc::invalid_model, "{}: key '{}': bad value type", file, key);
  }
}

}  // namespace

Reader::Reader(const std::filesystem::path& path) : path_(path) {
  file_ = std::make_shared<MappedFile>(path);
  const std::string file = path.string();
  map_size_ = file_->size();
  map_ = file_->data();
  Cursor c(map_, map_size_, file);
  if (map_size_ < 4 || c.get<uint32_t>("magic") != kMagic)
    fail(Errc::invalid_model, "{}: not a GGUF file (bad magic)", file);
  version_ = c.get<uint32_t>("version");
  if ((version_ & 0xFFFF) == 0) fail(Errc::invalid_model, "{}: GGUF file has the wrong byte order", file);
  if (version_ < 2 || version_ > 3) fail(Errc::invalid_model, "{}: unsupported GGUF version {} (need 2 or 3)", file, version_);
  const int64_t n_tensors = c.get<int64_t>("tensor count");
  const int64_t n_kv = c.get<int64_t>("metadata count");
  if (n_tensors < 0 || n_kv < 0) fail(Errc::invalid_model, "{}: negative tensor or metadata count", file);
  // Each tensor info takes at least 32 bytes and each key/value at least 13.
  if (static_cast<uint64_t>(n_tensors) > c.remaining() / 32 || static_cast<uint64_t>(n_kv) > c.remaining() / 13 ||
      static_cast<uint64_t>(n_tensors) * 32 + static_cast<uint64_t>(n_kv) * 13 > c.remaining())
    fail(Errc::invalid_model, "{}: truncated GGUF header: declares {} tensors and {} keys but only {} bytes follow", file,
         n_tensors, n_kv, c.remaining());

  for (int64_t i = 0; i < n_kv; ++i) {
    std::string key = c.str("metadata key");
    if (key.empty()) fail(Errc::invalid_model, "{}: empty metadata key", file);
    if (meta_.contains(key)) fail(Errc::invalid_model, "{}: duplicate metadata key '{}'", file, key);
    const int32_t t = c.get<int32_t>("value type");
    if (!valid_value_type(t)) fail(Errc::invalid_model, "{}: key '{}': invalid value type {}", file, key, t);
    Value v = read_value(c, static_cast<ValueType>(t), key, file);
    meta_.set(key, std::move(v));
  }
  if (const Value* a = meta_.find("general.alignment")) {
    if (a->type() != ValueType::UINT32) fail(Errc::invalid_model, "{}: general.alignment must be u32", file);
    const uint64_t al = a->as_uint();
    if (al == 0 || (al & (al - 1)) != 0) fail(Errc::invalid_model, "{}: general.alignment {} is not a power of two", file, al);
    alignment_ = static_cast<uint32_t>(al);
  }

  std::unordered_set<std::string> names;
  uint64_t expected_offset = 0;
  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (int64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    t.name = c.str("tensor name");
    if (t.name.empty() || t.name.size() >= kMaxName)
      fail(Errc::invalid_model, "{}: tensor {} has an invalid name length {}", file, i, t.name.size());
    if (!names.insert(t.name).second) fail(Errc::invalid_model, "{}: duplicate tensor '{}'", file, t.name);
    const uint32_t nd = c.get<uint32_t>("tensor dims");
    if (nd < 1 || nd > kMaxDims) fail(Errc::invalid_model, "{}: tensor '{}' has {} dimensions", file, t.name, nd);
    // The element count and every partial product of the dimensions must fit in int64 (counts are
    // int64 products everywhere), even when a later dimension is 0.
    unsigned __int128 elements = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const int64_t v = c.get<int64_t>("tensor shape");
      if (v < 0) fail(Errc::invalid_model, "{}: tensor '{}' has a negative dimension", file, t.name);
      elements *= static_cast<unsigned __int128>(v);
      if (elements > static_cast<unsigned __int128>(INT64_MAX))
        fail(Errc::invalid_model, "{}: tensor '{}' declares more than 2^63 elements", file, t.name);
      t.ne.push_back(v);
    }
    const int32_t type = c.get<int32_t>("tensor type");
    if (!is_known_type_id(type) || type >= kQuantTypeSlots)
      fail(Errc::invalid_model, "{}: tensor '{}' has unknown type id {}", file, t.name, type);
    t.type = static_cast<QuantType>(type);
    t.offset = c.get<uint64_t>("tensor offset");
    const TypeInfo& ti = type_info(t.type);
    if (t.ne[0] % ti.block_size != 0)
      fail(Errc::invalid_model, "{}: tensor '{}': row length {} is not a multiple of {}'s block size {}", file, t.name,
           t.ne[0], ti.name, ti.block_size);
    // overflow-safe byte count
    unsigned __int128 nb = ti.row_bytes(t.ne[0]);
    for (size_t d = 1; d < t.ne.size(); ++d) nb *= static_cast<unsigned __int128>(t.ne[d]);
    if (nb > map_size_) fail(Errc::invalid_model, "{}: tensor '{}' is larger than the file", file, t.name);
    t.nbytes = static_cast<uint64_t>(nb);
    if (t.offset != expected_offset)
      fail(Errc::invalid_model, "{}: tensor '{}' has offset {} (expected {}: tensors must be contiguous, in order)", file,
           t.name, t.offset, expected_offset);
    expected_offset = pad_to(t.offset + t.nbytes, alignment_);
    tensors_.push_back(std::move(t));
  }
  data_offset_ = pad_to(c.pos(), alignment_);
  for (const auto& t : tensors_) {
    if (data_offset_ + t.offset + t.nbytes > map_size_)
      fail(Errc::invalid_model, "{}: tensor '{}' runs past the end of the file (needs {} bytes, file has {})", file, t.name,
           data_offset_ + t.offset + t.nbytes, map_size_);
  }
}

Reader::~Reader() = default;

const TensorInfo* Reader::find_tensor(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::span<const uint8_t> Reader::data(const TensorInfo& t) const {
  return {map_ + data_offset_ + t.offset, static_cast<size_t>(t.nbytes)};
}

void Reader::release(const TensorInfo& t) const { file_->release(data_offset_ + t.offset, t.nbytes); }

std::shared_ptr<const uint8_t> Reader::share(const TensorInfo& t) const {
  file_->will_need(data_offset_ + t.offset, t.nbytes);
  return {file_, map_ + data_offset_ + t.offset};
}

// ---- Writer ----------------------------------------------------------------------------------

Writer::Writer(const std::filesystem::path& dest) : dest_(dest) {}

Writer::~Writer() = default;

void Writer::add_tensor(const std::string& name, QuantType type, std::span<const int64_t> ne) {
  if (header_written_) fail(Errc::general, "gguf writer: tensor '{}' added after the header was written", name);
  if (name.empty() || name.size() >= kMaxName) fail(Errc::invalid_argument, "gguf writer: invalid tensor name '{}'", name);
  for (const auto& t : tensors_)
    if (t.name == name) fail(Errc::invalid_argument, "gguf writer: duplicate tensor '{}'", name);
  if (ne.empty() || ne.size() > kMaxDims) fail(Errc::invalid_argument, "gguf writer: tensor '{}' has {} dims", name, ne.size());
  if (static_cast<int>(type) >= kQuantTypeSlots)
    fail(Errc::invalid_argument, "gguf writer: tensor '{}': type {} is not a GGUF type", name, type_name(type));
  TensorInfo t;
  t.name = name;
  t.type = type;
  t.ne.assign(ne.begin(), ne.end());
  t.nbytes = tensor_nbytes(type, ne);
  t.offset = data_size_;
  data_size_ = pad_to(t.offset + t.nbytes, alignment());
  tensors_.push_back(std::move(t));
}

namespace {

template <typename T>
void put(std::vector<uint8_t>& b, T v) {
  const size_t o = b.size();
  b.resize(o + sizeof(T));
  std::memcpy(b.data() + o, &v, sizeof(T));
}

void put_str(std::vector<uint8_t>& b, const std::string& s) {
  put<uint64_t>(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}

void put_value(std::vector<uint8_t>& b, const Value& v) {
  if (v.type() == ValueType::STRING) {
    put_str(b, v.as_string());
  } else if (v.is_array()) {
    put<int32_t>(b, static_cast<int32_t>(v.elem_type()));
    put<uint64_t>(b, v.size());
    if (v.elem_type() == ValueType::STRING) {
      for (const auto& s : v.as_strings()) put_str(b, s);
    } else {
      b.insert(b.end(), v.raw().begin(), v.raw().end());
    }
  } else {
    b.insert(b.end(), v.raw().begin(), v.raw().end());
  }
}

}  // namespace

uint32_t Writer::alignment() const {
  const Value* a = meta_.find("general.alignment");
  return a ? static_cast<uint32_t>(a->as_uint()) : kDefaultAlignment;
}

std::vector<uint8_t> Writer::serialize_header() const {
  std::vector<uint8_t> h;
  put<uint32_t>(h, kMagic);
  put<uint32_t>(h, 3);
  put<int64_t>(h, static_cast<int64_t>(tensors_.size()));
  put<int64_t>(h, static_cast<int64_t>(meta_.size()));
  for (const auto& [k, v] : meta_.entries()) {
    put_str(h, k);
    put<int32_t>(h, static_cast<int32_t>(v.type()));
    put_value(h, v);
  }
  for (const auto& t : tensors_) {
    put_str(h, t.name);
    put<uint32_t>(h, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) put<int64_t>(h, d);
    put<int32_t>(h, static_cast<int32_t>(t.type));
    put<uint64_t>(h, t.offset);
  }
  h.resize(pad_to(h.size(), alignment()), 0);
  return h;
}

uint64_t Writer::expected_size() const { return serialize_header().size() + data_size_; }

void Writer::write_header() {
  if (header_written_) return;
  const std::vector<uint8_t> h = serialize_header();
  out_ = std::make_unique<OutputFile>(dest_, 16u << 20, /*background=*/true);
  out_->write(h.data(), h.size());
  header_written_ = true;
  cur_ = 0;
  cur_written_ = 0;
}

void Writer::next_if_full() {
  while (cur_ < tensors_.size() && cur_written_ == tensors_[cur_].nbytes) {
    const uint64_t padded = pad_to(tensors_[cur_].nbytes, alignment());
    out_->write_zeros(static_cast<size_t>(padded - tensors_[cur_].nbytes));
    ++cur_;
    cur_written_ = 0;
  }
}

void Writer::write(const void* data, size_t n) {
  if (!header_written_) write_header();
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    next_if_full();
    if (cur_ >= tensors_.size()) fail(Errc::general, "gguf writer: more data than declared tensors");
    const uint64_t room = tensors_[cur_].nbytes - cur_written_;
    const size_t k = static_cast<size_t>(std::min<uint64_t>(room, n));
    out_->write(p, k);
    cur_written_ += k;
    p += k;
    n -= k;
  }
  next_if_full();
}

void Writer::commit() {
  if (!header_written_) write_header();
  next_if_full();
  if (cur_ != tensors_.size())
    fail(Errc::general, "gguf writer: tensor '{}' is incomplete ({} of {} bytes)", tensors_[cur_].name, cur_written_,
         tensors_[cur_].nbytes);
  out_->commit();
}

}  // namespace lq::gguf
