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

/// Checkpointing of Quantizer::quantize(): the bytes of every finished tensor are kept in a state
/// directory, flushed to disk tensor by tensor, so a run stopped at any point (Ctrl-C, kill -9, a
/// crash) continues with `resume` and writes the same bytes as an uninterrupted run. Removed
/// once the output is complete. Costs one extra write of the output's tensor data.
struct QuantizeCheckpoint {
  /// The state directory (created; holds state.json, data.bin, tensors.log); empty: none.
  /// quantize_checkpoint_state() names it inside a checkpoint directory.
  std::filesystem::path dir;
  /// Continue the checkpoint in `dir`: its finished tensors are copied, not quantized again.
  /// Errc::invalid_argument when there is none, or when it was made for another model, level,
  /// per-tensor types, importance data or protected weights (the message says which). False:
  /// whatever `dir` held is replaced.
  bool resume = false;
  /// The run's name in the checkpoint and its refusals ("Q4_K_M", "dynamic (profile balanced)");
  /// empty: the level's name.
  std::string level;
};

/// The state directory of a `level` quantization in checkpoint directory `dir`: dir/gguf-LEVEL.
/// With `resume`: `dir` itself when it holds a checkpoint, else dir/gguf-LEVEL when that does,
/// else Errc::invalid_argument.
LQ_API std::filesystem::path quantize_checkpoint_state(const std::filesystem::path& dir, const std::string& level,
                                                      bool resume);

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
  /// Bytes made beforehand for some tensors (GGUF name -> data of the planned type, e.g. by
  /// gptq_gguf_tensors()): written instead of quantizing those tensors. Null: none.
  const std::map<std::string, std::vector<uint8_t>>* tensor_bytes = nullptr;
  /// Where to keep the state of finished tensors (nothing when checkpoint.dir is empty).
  QuantizeCheckpoint checkpoint;
  /// With an importance matrix: after each tensor's search, raise every block's fp16 scales so that
  /// its decoded values keep the weights' importance-weighted projection (sum w x x̂ = sum w x²;
  /// a least-squares scale leaves them shorter by the block's relative error). Uniform weights for
  /// tensors the matrix does not cover; protected rows and tensor_bytes are left as they are. On the
  /// model zoo it lowered the KL divergence at most (model, level) pairs (docs/quality-zoo.md).
  /// Runs without an importance matrix are unaffected.
  bool gain_correction = true;
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
  std::filesystem::path checkpoint;  ///< the state directory used ("" without checkpointing)
  size_t resumed_tensors = 0;        ///< tensors copied from the checkpoint instead of quantized
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
  /// and throws Errc::interrupted between chunks of rows once its token is cancelled (no output
  /// file is left; a checkpoint, with options.checkpoint, is kept).
  QuantizeResult quantize(const ModelSource& src, const std::filesystem::path& out, const Context& ctx = {}) const;

  /// Quantizes `nrows` rows of `n_per_row` floats into `dst` (row_bytes * nrows bytes) on ctx's
  /// threads with its back-end's kernel. `imatrix` may be nullptr. `uncovered`: the run has an
  /// importance matrix, but no entry for these rows' tensor (see uncovered_kernel).
  /// `gain_correction`: as QuantizeOptions::gain_correction, applied when the run has an importance
  /// matrix (imatrix given, or uncovered), so that the rows equal those a file of such a run holds.
  static void quantize_rows(QuantType t, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                            const float* imatrix, const Context& ctx = {}, bool uncovered = false,
                            bool gain_correction = true);

  /// The kernel for a tensor that the run's importance matrix has no entry for (token_embd, output,
  /// a tied embedding; llama-imatrix leaves them out): Q6_K weighs each value by its square, as
  /// llama.cpp's Q6_K does without an imatrix (on the model zoo it lowered the KL divergence at
  /// 24 of the 30 (model, level) pairs it touches, docs/quality-zoo.md). nullptr for the other
  /// types: their plain search. Runs without any importance matrix keep the plain search.
  static QuantizeFn uncovered_kernel(QuantType t);

 private:
  QuantizeOptions opts_;
};

}  // namespace lq
