// Internal: helpers the quality files share and the tests reach (vocabulary comparison, coherence
// sub-scores, grouping of weight errors, the assessment, the perplexity options they evaluate with). Not part of the public API:
// include/lq/quality.hpp holds what embedders call (the grades among them).
#pragma once

#include <lq/context.hpp>
#include <lq/engine.hpp>
#include <lq/quality.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace lq {

/// Why two tokenizers cannot be compared, or "" when their vocabularies are the same (same size,
/// same token texts and types, same BOS/EOS ids).
std::string vocabulary_mismatch(const Tokenizer& a, const Tokenizer& b);

/// Distinct n-gram ratio of `tokens`: (distinct n-grams) / (n-grams), over the size - n + 1
/// n-grams of the sequence. 1 = no n-gram repeats; a single token repeated gives 1 / (size-n+1).
/// Sequences shorter than n score 1. Throws Errc::invalid_argument for n < 1.
double repetition_score(std::span<const int32_t> tokens, int n = 3);

/// Fluency of a continuation judged by the original model: exp(mean_logp - mean_logp_reference)
/// clipped to [0, 1], where both are mean natural-log probabilities per token under the original
/// model, of the continuation and of the original's own greedy continuation of the same prompt.
double fluency_score(double mean_logp, double mean_logp_reference) noexcept;

/// Groups tensor errors by TensorError::group, in the order groups first appear.
std::vector<LayerError> group_layer_errors(const std::vector<TensorError>& errors);

/// Fills grade, warnings and recommendations of `r` from its measurements.
void assess(QualityReport& r, const QualityOptions& options);

/// Options evaluating `chunks` chunks of `chunk_ctx` tokens that report each chunk to ctx's
/// progress sink as "Perplexity" and stop when ctx is cancelled (ctx must outlive their use).
PerplexityOptions quality_perplexity_options(int64_t chunk_ctx, int64_t chunks, const Context& ctx);

}  // namespace lq
