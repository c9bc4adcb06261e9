// The text side of an evaluation: a model source's tokenizer, whether two vocabularies can be
// compared, and the token stream of calibration texts. No model evaluation here.
#include "quality/internal.hpp"

#include <lq/error.hpp>

#include <fmt/format.h>

namespace lq {

std::string vocabulary_mismatch(const Tokenizer& a, const Tokenizer& b) {
  if (a.vocab_size() != b.vocab_size())
    return fmt::format("vocabulary sizes differ ({} vs {} tokens)", a.vocab_size(), b.vocab_size());
  if (a.bos_id() != b.bos_id() || a.eos_id() != b.eos_id())
    return fmt::format("special tokens differ (BOS {} / EOS {} vs BOS {} / EOS {})", a.bos_id(), a.eos_id(),
                       b.bos_id(), b.eos_id());
  if (a.add_bos() != b.add_bos()) return "one tokenizer adds BOS and the other does not";
  // Ids and texts must agree; token types need not (tokenizer files rewritten by another tool, as
  // transformers' save does for llm-compressor's outputs, may call <unk> unknown or control):
  // the logits still compare id for id, as llama-perplexity's KL divergence compares them.
  for (size_t i = 0; i < a.vocab_size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    if (a.token_text(id) != b.token_text(id))
      return fmt::format("token {} differs ('{}' vs '{}')", id, a.token_text(id), b.token_text(id));
  }
  return {};
}

void require_same_vocabulary(const std::string& a_name, const Tokenizer& a, const std::string& b_name,
                             const Tokenizer& b) {
  const std::string why = vocabulary_mismatch(a, b);
  if (!why.empty())
    throw Error(Errc::invalid_argument, fmt::format("{} and {} do not share a vocabulary: {}", a_name, b_name, why),
                "Compare a quantized model with the model it was made from");
}

Tokenizer tokenizer_for(const ModelSource& source) {
  return Tokenizer::from_gguf(source.gguf_metadata(), source.path().string());
}

std::vector<int32_t> calibration_tokens(const Tokenizer& tok, const CalibrationData& data) {
  std::vector<int32_t> out;
  for (const auto& t : data.texts) {
    const auto ids = tok.encode(t, /*add_special=*/false);
    out.insert(out.end(), ids.begin(), ids.end());
  }
  return out;
}

}  // namespace lq
