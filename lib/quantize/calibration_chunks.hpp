// Internal: the calibration chunks every weight quantizer runs on (SmoothQuant, GPTQ in memory
// and streamed, AWQ): the calibration text (a file, or the built-in WikiText-2 text), tokenized
// with the source's tokenizer and cut into chunks as llama-imatrix cuts them.
#pragma once

#include <lq/calibration.hpp>
#include <lq/model.hpp>
#include <lq/progress.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lq::quant_impl {

/// The text of `path`, or the built-in WikiText-2 text (said on `progress`) when it is empty.
CalibrationData calibration_text(const std::filesystem::path& path, Progress& progress);

/// Whether the checkpoint's decoder linears are bf16 (its first one, by GGUF name): the default of
/// the calibration products' bf16 activations (GPTQ's calibration, AWQ's scale search).
bool linears_are_bf16(const ModelSource& src);

/// The BOS token a chunk of `src` starts with, from its GGUF metadata: -1 when the tokenizer adds
/// none or its id is outside the vocabulary.
int32_t source_chunk_bos(const ModelSource& src);

/// Up to `samples` chunks of `ctx` tokens of `data` tokenized with the tokenizer of `src`, each
/// led by `bos` when it is >= 0. A text too short for `samples` gives fewer, with a warning added
/// to `warnings`; one too short for a single chunk throws Errc::calibration_error.
std::vector<std::vector<int32_t>> calibration_chunks(const ModelSource& src, const CalibrationData& data, int64_t ctx,
                                                     int64_t samples, int32_t bos, std::vector<std::string>& warnings);

}  // namespace lq::quant_impl
