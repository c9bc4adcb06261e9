// liblq: importance matrices in llama.cpp's two file formats (GGUF-based and legacy .dat).
#pragma once

#include <lq/api.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lq {

/// Activation statistics of one weight: per input column, the sum of squared activations, and
/// the number of activation rows, per matrix (n_mat = 1 for dense weights, n_expert for MoE).
struct LQ_API ImatrixEntry {
  int64_t n_cols = 0;
  int64_t n_mat = 1;
  std::vector<float> in_sum2;  ///< n_cols * n_mat raw sums of x^2
  std::vector<float> counts;   ///< n_mat row counts

  /// Per-column mean of x^2 for matrix `mat` (count 0 gives 1.0, as llama-quantize does).
  std::vector<float> mean(int64_t mat = 0) const;
};

/// An importance matrix: entries keyed by GGUF weight name ("blk.0.attn_q.weight").
struct LQ_API Imatrix {
  std::map<std::string, ImatrixEntry> entries;
  std::vector<std::string> datasets;  ///< calibration data sources
  int64_t chunk_count = 0;            ///< number of calibration chunks processed
  int64_t chunk_size = 0;             ///< tokens per chunk
  /// Read from the legacy .dat format, which does not record tokens: counts are chunks (ncall)
  /// and in_sum2 = mean x^2 * ncall.
  bool counts_in_chunks = false;

  /// Loads a GGUF imatrix, or a legacy .dat one when the file is not GGUF (as llama.cpp does).
  /// Missing, truncated or malformed files, or non-finite values, throw Errc::imatrix_error.
  static Imatrix load(const std::filesystem::path& path);
  /// Writes the GGUF-based format (tensors <name>.in_sum2 and <name>.counts, sorted by name).
  void save_gguf(const std::filesystem::path& path) const;
  /// Writes the legacy .dat format (values = mean * ncall, ncall = ceil(max count / chunk_size)).
  void save_dat(const std::filesystem::path& path) const;

  /// Sums several matrices, as llama-imatrix does with more than one --in-file: per weight, the
  /// sums of x^2 and the counts add up (a weight missing from some inputs keeps the others'),
  /// and so do the chunk counts; the datasets lists are concatenated (llama-imatrix's file for the
  /// same inputs, at their chunk size, is the same bytes). Legacy inputs are first put in
  /// tokens at `legacy_chunk_size` tokens per chunk (0: the first GGUF input's chunk size, else
  /// 512, llama-imatrix's default context). Throws Errc::imatrix_error when a weight's shape
  /// differs between inputs, or when the inputs' chunk sizes differ.
  static Imatrix combine(const std::vector<Imatrix>& parts, int64_t legacy_chunk_size = 0);

  const ImatrixEntry* find(const std::string& name) const;
  /// Column weights (mean x^2) for a dense weight of row length n_cols, or nullopt when absent.
  /// Throws Errc::imatrix_error when the entry exists but its length differs.
  std::optional<std::vector<float>> column_weights(const std::string& name, int64_t n_cols) const;
  /// The same for a weight of n_mat matrices (a 3-D MoE expert tensor): n_mat * n_cols values,
  /// matrix by matrix. A dense entry (n_mat 1) serves a 3-D tensor whose experts share it.
  std::optional<std::vector<float>> column_weights(const std::string& name, int64_t n_cols, int64_t n_mat) const;
};

}  // namespace lq
