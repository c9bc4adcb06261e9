// Internal: a validating reader for one .safetensors file (header parsed once, data read with
// pread so that streaming a large model does not grow the resident set; the engine, which holds
// whole tensors, may share them from a mapping of the file instead).
#pragma once

#include <lq/quant_type.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace lq {

class MappedFile;

/// Element types a safetensors header may name.
enum class StDtype { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3 };  // F8_E4M3: float8_e4m3fn

struct StTensor {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;  ///< as stored (row-major, outermost first)
  uint64_t begin = 0;          ///< absolute file offset of the data
  uint64_t nbytes = 0;
};

/// Bytes per element of a safetensors dtype.
size_t st_dtype_size(StDtype t);
/// The equivalent ggml type (U8 and BOOL have none and read as raw bytes: I8).
QuantType st_dtype_to_type(StDtype t);
const char* st_dtype_name(StDtype t);

class SafetensorsFile {
 public:
  /// Opens and validates the header; throws Errc::invalid_model naming the file (and tensor).
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<StTensor>& tensors() const { return tensors_; }
  const StTensor* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t file_size() const { return size_; }

  /// Reads `n` bytes at absolute offset `off` (throws on short reads).
  void read(uint64_t off, size_t n, void* dst) const;
  /// The `n` bytes at `off` inside a read-only mapping of the file (made on first use), kept
  /// alive by the pointer; asks the OS to read them ahead.
  std::shared_ptr<const uint8_t> share(uint64_t off, size_t n) const;

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  std::vector<StTensor> tensors_;
  std::map<std::string, std::string> metadata_;
  mutable std::once_flag map_once_;
  mutable std::shared_ptr<MappedFile> map_;
};

}  // namespace lq
