// liblq: calibration data: loading texts (plain text, JSON, JSONL) and cutting token chunks.
#pragma once

#include <lq/api.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace lq {

class Tokenizer;

/// Calibration texts and where they came from.
struct CalibrationData {
  std::vector<std::string> texts;  ///< one entry for a plain-text file, one per sample otherwise
  std::string source;              ///< file path, or "built-in: ..." for the default
};

/// Loads calibration data. By extension (and content): `.json` = a list of strings or of objects
/// with a "text" field; `.jsonl` = one string or object with "text" per line; anything else is
/// plain UTF-8 text used as one document. Missing, empty (nothing but whitespace: nothing to
/// calibrate on) or malformed data throws Errc::calibration_error naming the file (and line).
LQ_API CalibrationData load_calibration(const std::filesystem::path& path);

/// Loads a plain text file as one document, whatever its extension (perplexity -f, tokenize -f):
/// source = the path. Any non-empty text is taken, whitespace only included (one space or one
/// newline has tokens). A missing, unreadable, empty (0 bytes) or binary (NUL bytes) file throws
/// Errc::calibration_error.
LQ_API CalibrationData load_text(const std::filesystem::path& path);

/// The built-in calibration text used when none is given: the WikiText-2 test split (raw,
/// non-empty rows of Salesforce/wikitext wikitext-2-raw-v1; CC BY-SA 3.0 / GFDL), shipped in
/// data/calibration/wikitext2-test.txt and compiled into the library.
LQ_API CalibrationData default_calibration();

/// The token stream of calibration data as llama-imatrix tokenizes it: a single text (a plain
/// file) is encoded as one string with BOS first when the tokenizer adds one (and no trailing
/// EOS); several samples (JSON, JSONL) are encoded one by one without special tokens and
/// concatenated after one BOS, stopping once `need_tokens` are reached (< 0: all).
LQ_API std::vector<int32_t> imatrix_calibration_tokens(const CalibrationData& data, const Tokenizer& tokenizer,
                                                       int64_t need_tokens);

/// Token chunks as llama-imatrix and llama-perplexity cut them: `tokens` is the whole stream
/// (BOS first when the model adds one); chunk i is tokens[i*ctx, (i+1)*ctx) with its first
/// token replaced by `bos` (when bos >= 0). Returns at most `max_chunks` (< 0: all) chunks.
LQ_API std::vector<std::vector<int32_t>> make_chunks(const std::vector<int32_t>& tokens, int64_t ctx,
                                                     int64_t max_chunks, int32_t bos);

/// How an evaluation cuts a token stream into chunks of ctx tokens, which decides how many
/// tokens one chunk needs.
enum class ChunkRule {
  imatrix,      ///< llama-imatrix: every token of a chunk counts; one chunk needs ctx tokens
  perplexity,   ///< llama-perplexity: the second half of each chunk is scored; the stream (BOS
                ///< included) needs 2 x ctx tokens
  full_window,  ///< windows of ctx-1 tokens after a BOS, the last one partial; one token is enough
};

/// The rule "enough tokens for one chunk", the one place every evaluation (analysis, perplexity,
/// quality reports) applies it: the number of whole chunks of `ctx` tokens in a stream of
/// `stream_tokens` tokens (1 for a full_window stream shorter than ctx). Throws
/// Errc::calibration_error (exit 15), naming `source`, when the stream is too short for one chunk
/// under `rule`, and Errc::invalid_argument for ctx < 1.
LQ_API int64_t evaluation_chunks(int64_t stream_tokens, int64_t ctx, ChunkRule rule, std::string_view source);

}  // namespace lq
