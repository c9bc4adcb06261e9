// liblq: measured sensitivity of a model to quantization, tensor by tensor: the KL divergence
// from the unquantized model's outputs caused by quantizing one tensor alone to each candidate
// type, measured with the engine on a few chunks of text; its cache file; and the cost the size
// solver takes from it (`--objective kld`).
#pragma once

#include <lq/api.hpp>
#include <lq/context.hpp>
#include <lq/imatrix.hpp>
#include <lq/model.hpp>
#include <lq/profile.hpp>  // TypeAssignment
#include <lq/quant_type.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace lq {

/// One tensor's row of a sensitivity table: the measured KLD for each measured type.
struct SensitivityRow {
  std::string tensor;
  std::vector<QuantType> types;  ///< measured types, in measurement order
  std::vector<double> kld;       ///< mean KL(original || model with this tensor quantized) per scored token
};

/// What a table was measured on. A cached table is reused only when all of it matches.
struct SensitivityKey {
  std::string model;     ///< fingerprint of the tensors (names, shapes, stored types)
  std::string text;      ///< fingerprint of the token stream
  std::string imatrix;   ///< fingerprint of the importance matrix ("" without one)
  std::string types;     ///< the requested types, comma-separated
  std::string tensors;   ///< fingerprint of the requested tensor list ("" = every quantizable weight)
  int64_t ctx = 0;
  int64_t chunks = 0;
  /// The quantizers' revision the table was measured with (tables written before revisions were
  /// recorded read as 1): a table measured with other quantized bytes is measured again.
  int revision = 0;
  bool operator==(const SensitivityKey&) const = default;
};

/// Per-tensor, per-type KLD measured with the engine.
struct LQ_API SensitivityTable {
  SensitivityKey key;
  std::vector<SensitivityRow> rows;
  double seconds = 0;          ///< wall time of the measurement
  int64_t evaluations = 0;     ///< model evaluations (one per tensor and type, each on every chunk)
  double reference_kld_floor = 0;  ///< KLD of the unquantized model against its stored logits (0 up to rounding)

  const SensitivityRow* find(const std::string& tensor) const;
  /// Writes the table as JSON (temp file + rename).
  void save(const std::filesystem::path& path) const;
  /// Reads a table written by save(); a malformed file throws Errc::profile_error.
  static SensitivityTable load(const std::filesystem::path& path);
};

/// Settings of measure_sensitivity().
struct SensitivityOptions {
  /// Types to measure every tensor at. Empty: the solver's default ladder. The solver uses a
  /// measured KLD where it has one and, for a type not measured, the tensor's imatrix-weighted
  /// error scaled by its ratio KLD / error at the measured type nearest in bits per weight (so a
  /// single probe type gives a cheap estimate; see docs/profiles.md).
  std::vector<QuantType> types;
  const Imatrix* imatrix = nullptr;  ///< the quantizer's importance weights (i-quants need them)
  int64_t ctx = 256;                 ///< chunk length in tokens (llama-perplexity's chunking, second half scored)
  int64_t chunks = 4;                ///< chunks of the text evaluated per measurement
  /// Tensors to measure (GGUF names); empty: every quantizable weight the engine runs.
  std::vector<std::string> tensors;
  /// Each evaluation starts at the first block the tensor changes, from the unquantized model's
  /// residual stream entering it (kept per chunk, one block's worth: chunks x ctx x n_embd floats),
  /// so a tensor of block b runs only blocks b.. and the output head; the table is the same bit
  /// for bit, in about half the time on a deep model. false: every evaluation from the embeddings.
  bool resume_at_block = true;
};

/// The fingerprints a table measured with these inputs would carry (to check a cache).
LQ_API SensitivityKey sensitivity_key(const ModelSource& source, std::span<const int32_t> tokens,
                                      const SensitivityOptions& options);

/// Measures the table: the model is loaded once; the reference outputs of each chunk are kept;
/// then for each tensor and type the tensor is replaced by its quantized bytes, the chunks are
/// evaluated and the tensor restored. Runs on ctx's threads, reports each evaluation to its
/// progress sink ("Sensitivity") and stops (Errc::interrupted) when its token is cancelled.
/// `tokens` is the text's token ids without BOS. Throws Errc::invalid_argument when the text is
/// too short for `chunks` chunks of `ctx` tokens, Errc::imatrix_error for a type that needs an
/// importance matrix when none is given.
LQ_API SensitivityTable measure_sensitivity(const ModelSource& source, std::span<const int32_t> tokens,
                                            const SensitivityOptions& options = {}, const Context& ctx = {});

/// The cached table at `cache` when its key matches, else a new measurement, saved there (when
/// `cache` is not empty). `reused` says which happened.
LQ_API SensitivityTable cached_sensitivity(const ModelSource& source, std::span<const int32_t> tokens,
                                           const SensitivityOptions& options, const std::filesystem::path& cache,
                                           bool* reused = nullptr, const Context& ctx = {});

/// The mean KLD from the unquantized model, on the text and settings a table is measured with
/// (`options`' chunks of ctx tokens of `tokens`), of the model with every tensor of a mix
/// replaced by its quantized bytes (the importance matrix used as the quantizer uses it;
/// tensors not named, and tensors the engine does not run, keep their stored values), one figure
/// per mix. The model is loaded once; each mix costs one evaluation and the quantization of the
/// tensors whose type differs from the mix before. Runs on ctx's threads; Errc::interrupted when
/// cancelled.
LQ_API std::vector<double> measure_mix_kld(const ModelSource& source, std::span<const int32_t> tokens,
                                           const SensitivityOptions& options, const std::vector<TypeAssignment>& mixes,
                                           const Context& ctx = {});

/// Spearman rank correlation of two equally long series (ties get their mean rank); 0 for fewer
/// than two values.
LQ_API double rank_correlation(std::span<const double> a, std::span<const double> b);

}  // namespace lq
