// liblq: quantizing tensors and whole models into GGUF. Dynamic profiles, super-weight
// protection and quality gates on top of this: quantize_job.hpp.
#pragma once

#include <lq/api.hpp>
#include <lq/context.hpp>
#include <lq/file_type.hpp>
#include <lq/imatrix.hpp>
#include <lq/model.hpp>
#include <lq/quant_type.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lq {

/// One weight that must survive quantization (a super weight): coordinates in ggml order.
struct ProtectedWeight {
  std::string tensor;
  int64_t row = 0;   ///< output channel (ggml ne[1] index)
  int64_t col = 0;   ///< input channel (ggml ne[0] index)
  float value = 0;   ///< original value
};

/// Options of a model quantization (the llama-quantize switches and liblq's additions).
struct QuantizeOptions {
  FileType ftype = FileType::Q8_0;            ///< level: base type and mixture rules
  bool pure = false;                          ///< no mixture: every weight in the base type
  std::optional<QuantType> output_tensor_type;     ///< --output-tensor-type
  std::optional<QuantType> token_embedding_type;   ///< --token-embedding-type
  bool leave_output_tensor = false;           ///< keep output.weight unquantized
  /// --tensor-type REGEX=TYPE, first match wins (ECMAScript regex searched in the GGUF name).
  std::vector<std::pair<std::string, QuantType>> tensor_types;
  /// Exact per-tensor types (dynamic profiles); applied before the mixture, like tensor_types.
  std::map<std::string, QuantType> tensor_type_map;
  bool allow_requantize = false;              ///< allow re-quantizing already-quantized tensors
  /// Write one GGUF per source file (shard or split), named OUT-00001-of-0000N.gguf, in the
  /// source's tensor order, as llama-quantize --keep-split does.
  bool keep_split = false;
  const Imatrix* imatrix = nullptr;           ///< importance data (optional)
  std::string imatrix_path;                   ///< recorded as quantize.imatrix.file
  /// Weights to keep: the rows holding them are quantized with the protected columns' importance
  /// raised far above the rest, so the block's scales are fitted to them (no size cost).
  std::vector<ProtectedWeight> protect;
};

/// The decision for one tensor.
struct LQ_API TensorPlan {
  std::string name;
  std::vector<int64_t> ne;
  QuantType source_type = QuantType::F32;
  QuantType type = QuantType::F32;  ///< type written
  bool quantize = false;            ///< false: bytes copied as they are
  bool uses_imatrix = false;
  bool fallback = false;            ///< row length forced a fallback type
  uint64_t bytes = 0;               ///< bytes of the written tensor
  int split = 0;                    ///< output file index (keep_split)
  int64_t n_elements() const;
};

/// What a quantization produced.
struct QuantizeResult {
  std::filesystem::path output;              ///< the (first) output file
  std::vector<std::filesystem::path> outputs;  ///< every output file (several with keep_split)
  FileType ftype = FileType::Q8_0;
  std::vector<TensorPlan> tensors;
  uint64_t file_bytes = 0;
  uint64_t source_bytes = 0;
  uint64_t n_weights = 0;
  double bpw = 0;           ///< file bits / weights
  double seconds = 0;
  int n_fallback = 0;
};

/// Quantizes tensors and models. Stateless apart from its options; thread-safe to share. Threads,
/// back-end, cancellation and progress come with each call's Context.
class LQ_API Quantizer {
 public:
  explicit Quantizer(QuantizeOptions opts) : opts_(std::move(opts)) {}
  const QuantizeOptions& options() const { return opts_; }

  /// Chooses every tensor's type (llama.cpp's mixture rules, overrides, fallbacks) and checks the
  /// plan: requantization without allow_requantize (Errc::invalid_argument), importance data
  /// required but absent (Errc::imatrix_error), non-finite weights are found later.
  std::vector<TensorPlan> plan(const ModelSource& src) const;

  /// Streams `src` into a GGUF file at `out` (temp file + rename). Peak memory is a few times
  /// one chunk of rows, whatever the model size. Non-finite weights throw Errc::invalid_model.
  /// Runs on ctx's threads with its back-end's kernels, reports each tensor to its progress sink,
  /// and throws Errc::interrupted between tensors once its token is cancelled (no file is left).
  QuantizeResult quantize(const ModelSource& src, const std::filesystem::path& out, const Context& ctx = {}) const;

  /// Quantizes `nrows` rows of `n_per_row` floats into `dst` (row_bytes * nrows bytes) on ctx's
  /// threads with its back-end's kernel. `imatrix` may be nullptr.
  static void quantize_rows(QuantType t, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                            const float* imatrix, const Context& ctx = {});

  /// Quantizes one row whose columns `cols` hold protected weights: their importance is raised
  /// (x 1e4 of the row's largest) on top of `imatrix` (or uniform weights when nullptr), with
  /// ctx's back-end's kernel.
  static void quantize_protected_row(QuantType t, const float* row, void* dst, int64_t n_per_row, const float* imatrix,
                                     const std::vector<int64_t>& cols, const Context& ctx = {});

 private:
  QuantizeOptions opts_;
};

}  // namespace lq
