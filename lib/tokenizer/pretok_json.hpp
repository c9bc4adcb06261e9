// Internal: reading a tokenizer.json `pre_tokenizer` object into a pipeline. Must not run
// pipelines or name them.
#pragma once

#include "tokenizer/pretok.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace lq::detail {

/// Parses a tokenizer.json `pre_tokenizer` object (null gives an empty pipeline). Throws
/// Errc::invalid_model for unsupported types, naming `file`.
PreTokenizer pretokenizer_from_json(const nlohmann::json& j, const std::string& file);

}  // namespace lq::detail
