// The calibration chunks of the weight quantizers (calibration_chunks.hpp).
#include "quantize/calibration_chunks.hpp"

#include <lq/gguf.hpp>
#include <lq/tokenizer.hpp>

#include "model/tensor_names.hpp"

#include <fmt/format.h>

namespace lq::quant_impl {

CalibrationData calibration_text(const std::filesystem::path& path, Progress& progress) {
  if (!path.empty()) return load_calibration(path);
  progress.message("No calibration data given: using the built-in WikiText-2 text");
  return default_calibration();
}

bool linears_are_bf16(const ModelSource& src) {
  for (const ModelTensor& t : src.tensors())
    if (names::block_of(t.name) >= 0 && t.ne.size() >= 2 && t.name.ends_with(".weight") &&
        t.name.find("norm") == std::string::npos && t.name.find("gate_inp") == std::string::npos)
      return t.type == QuantType::BF16;
  return false;
}

int32_t source_chunk_bos(const ModelSource& src) {
  const gguf::Metadata meta = src.gguf_metadata();
  const int64_t n_vocab = src.at("token_embd.weight").ne[1];
  int32_t bos = static_cast<int32_t>(meta.get_int("tokenizer.ggml.bos_token_id").value_or(-1));
  bool add_bos = true;
  if (const auto* v = meta.find("tokenizer.ggml.add_bos_token"); v && !v->is_array()) add_bos = v->as_bool();
  if (bos >= n_vocab) bos = -1;
  return add_bos ? bos : -1;
}

std::vector<std::vector<int32_t>> calibration_chunks(const ModelSource& src, const CalibrationData& data, int64_t ctx,
                                                     int64_t samples, int32_t bos, std::vector<std::string>& warnings) {
  const Tokenizer tok = Tokenizer::from_gguf(src.gguf_metadata(), src.path().string());
  const auto tokens = imatrix_calibration_tokens(data, tok, ctx * samples);
  const int64_t available = evaluation_chunks(static_cast<int64_t>(tokens.size()), ctx, ChunkRule::imatrix, data.source);
  if (available < samples)
    warnings.push_back(fmt::format(
        "the calibration data gives {} chunks of {} tokens ({} tokens), fewer than the {} asked; using {}", available, ctx,
        tokens.size(), samples, available));
  return make_chunks(tokens, ctx, samples, bos);
}

}  // namespace lq::quant_impl
