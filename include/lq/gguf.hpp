// liblq: GGUF v3 container: typed metadata values, a validating reader and a streaming writer.
// File I/O only (bytes, metadata, validation): decoding tensors to float is compute and lives
// in decode.hpp (lq::read_rows_f32).
#pragma once

#include <lq/api.hpp>
#include <lq/io.hpp>
#include <lq/quant_type.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lq::gguf {

/// GGUF metadata value type ids (pinned by the format).
enum class ValueType : int32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

/// Name of a value type ("u32", "string", ...).
LQ_API const char* value_type_name(ValueType t) noexcept;
/// Bytes of one element of a fixed-size type (0 for STRING and ARRAY).
LQ_API size_t value_type_size(ValueType t) noexcept;

/// One metadata value: a scalar, a string, or a one-level array of either.
class LQ_API Value {
 public:
  Value() = default;
  static Value u8(uint8_t v) { return scalar(ValueType::UINT8, v); }
  static Value i8(int8_t v) { return scalar(ValueType::INT8, v); }
  static Value u16(uint16_t v) { return scalar(ValueType::UINT16, v); }
  static Value i16(int16_t v) { return scalar(ValueType::INT16, v); }
  static Value u32(uint32_t v) { return scalar(ValueType::UINT32, v); }
  static Value i32(int32_t v) { return scalar(ValueType::INT32, v); }
  static Value u64(uint64_t v) { return scalar(ValueType::UINT64, v); }
  static Value i64(int64_t v) { return scalar(ValueType::INT64, v); }
  static Value f32(float v) { return scalar(ValueType::FLOAT32, v); }
  static Value f64(double v) { return scalar(ValueType::FLOAT64, v); }
  static Value boolean(bool v) { return scalar(ValueType::BOOL, v); }
  static Value string(std::string v);
  static Value strings(std::vector<std::string> v);
  /// A numeric/bool array of element type `elem` from raw little-endian element bytes.
  static Value array_raw(ValueType elem, std::vector<uint8_t> bytes);
  template <typename T>
  static Value array(ValueType elem, std::span<const T> values);

  ValueType type() const { return type_; }
  /// Element type of an array (meaningless for non-arrays).
  ValueType elem_type() const { return elem_; }
  bool is_array() const { return type_ == ValueType::ARRAY; }

  /// Any integer or bool scalar as int64 / uint64; throws for other types.
  int64_t as_int() const;
  uint64_t as_uint() const;
  /// Any numeric scalar as double.
  double as_float() const;
  bool as_bool() const;
  const std::string& as_string() const;

  /// Number of array elements.
  size_t size() const;
  /// String array elements.
  const std::vector<std::string>& as_strings() const;
  /// Raw bytes of a numeric array.
  const std::vector<uint8_t>& raw() const { return raw_; }
  /// Numeric array element i converted to double / int64.
  double float_at(size_t i) const;
  int64_t int_at(size_t i) const;

  /// Exact equality: same type, element type and bytes.
  bool operator==(const Value& o) const;
  /// Short human-readable rendering (arrays abbreviated).
  std::string to_string(size_t max_items = 8) const;

 private:
  template <typename T>
  static Value scalar(ValueType t, T v);
  ValueType type_ = ValueType::UINT8;
  ValueType elem_ = ValueType::UINT8;
  std::vector<uint8_t> raw_;          // scalar bytes, or numeric array element bytes
  std::string str_;                   // STRING scalar
  std::vector<std::string> strs_;     // STRING array
};

/// Ordered key/value metadata (keys unique). Lookups go through a hash index, so a file with a
/// million keys reads in linear time.
class LQ_API Metadata {
 public:
  /// Sets `key` (replacing an existing value in place, else appending).
  void set(const std::string& key, Value v);
  const Value* find(const std::string& key) const;
  /// Value of `key`; throws Errc::invalid_model naming the key when absent.
  const Value& at(const std::string& key) const;
  bool contains(const std::string& key) const { return find(key) != nullptr; }
  bool erase(const std::string& key);
  const std::vector<std::pair<std::string, Value>>& entries() const { return kv_; }
  size_t size() const { return kv_.size(); }

  /// Convenience getters with defaults.
  std::optional<std::string> get_string(const std::string& key) const;
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;

 private:
  std::vector<std::pair<std::string, Value>> kv_;
  std::unordered_map<std::string, size_t> index_;  // key -> position in kv_
};

/// Geometry of one tensor in a GGUF file (ggml dimension order: ne[0] is the row length).
struct LQ_API TensorInfo {
  std::string name;
  QuantType type = QuantType::F32;
  std::vector<int64_t> ne;  ///< 1..4 dims
  uint64_t offset = 0;      ///< relative to the data section
  uint64_t nbytes = 0;

  int64_t n_elements() const;
  /// ne[0]
  int64_t row_length() const { return ne.empty() ? 0 : ne[0]; }
  /// Product of ne[1..]
  int64_t n_rows() const;
};

/// Byte size of a tensor of type `t` and shape `ne`; throws if ne[0] is not a multiple of the block.
LQ_API uint64_t tensor_nbytes(QuantType t, std::span<const int64_t> ne);

/// Default GGUF alignment when `general.alignment` is absent.
inline constexpr uint32_t kDefaultAlignment = 32;

/// A GGUF file opened read-only (memory-mapped). The constructor validates the whole header and
/// every tensor's extent; any violation throws Errc::invalid_model naming the file (and tensor).
class LQ_API Reader {
 public:
  explicit Reader(const std::filesystem::path& path);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  const std::filesystem::path& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  const Metadata& metadata() const { return meta_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(const std::string& name) const;
  /// Absolute file offset of the data section.
  uint64_t data_offset() const { return data_offset_; }
  /// The tensor's bytes (inside the mapping; valid while the Reader lives).
  std::span<const uint8_t> data(const TensorInfo& t) const;
  /// Tells the OS the pages of `t` are no longer needed (keeps peak RSS low when streaming).
  void release(const TensorInfo& t) const;
  /// The tensor's bytes as a pointer that keeps the mapping alive after the Reader is gone (for
  /// holding weights without copying them); asks the OS to read them ahead.
  std::shared_ptr<const uint8_t> share(const TensorInfo& t) const;

 private:
  std::filesystem::path path_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  Metadata meta_;
  std::vector<TensorInfo> tensors_;
  std::shared_ptr<MappedFile> file_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
};

/// Streams a GGUF file: set metadata and tensor infos, then write each tensor's bytes in order
/// (in as many pieces as convenient), then commit(). Output goes to a temporary file in the
/// destination directory and is renamed into place by commit(); destroyed uncommitted, nothing
/// is left behind.
class LQ_API Writer {
 public:
  explicit Writer(const std::filesystem::path& dest);
  ~Writer();

  Metadata& metadata() { return meta_; }
  /// Declares the next tensor (data must later be written in declaration order).
  void add_tensor(const std::string& name, QuantType type, std::span<const int64_t> ne);
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  /// Total file size once written (header + padded data).
  uint64_t expected_size() const;

  /// Writes magic, metadata and tensor infos. Called automatically by the first write().
  void write_header();
  /// Appends bytes of the current tensor; moves to the next tensor (padding) when one is full.
  void write(const void* data, size_t n);
  /// Pads the last tensor, flushes, and renames the temporary file to the destination.
  void commit();
  /// The temporary file being written ("" before the first write).
  std::filesystem::path temp_path() const { return out_ ? out_->temp_path() : std::filesystem::path(); }

 private:
  void next_if_full();
  uint32_t alignment() const;
  std::vector<uint8_t> serialize_header() const;
  std::filesystem::path dest_;
  Metadata meta_;
  std::vector<TensorInfo> tensors_;
  uint64_t data_size_ = 0;
  std::unique_ptr<OutputFile> out_;
  bool header_written_ = false;
  size_t cur_ = 0;          // tensor being written
  uint64_t cur_written_ = 0;
};

}  // namespace lq::gguf
