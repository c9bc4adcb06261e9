// Calibration data: loading texts (plain text, JSON, JSONL, the built-in WikiText-2 text), the
// rule of how many tokens one evaluation chunk needs, turning the texts into one token stream
// (the tokenizer encodes; this file only orders the samples) and cutting token chunks. No model
// evaluation here.
#include <lq/calibration.hpp>
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/io.hpp>
#include <lq/tokenizer.hpp>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <sstream>

// The default calibration text is linked in with the assembler's .incbin (no multi-megabyte
// initializer for the compiler to chew on).
asm(".section .rodata\n"
    ".balign 16\n"
    ".global lq_default_calibration_begin\n"
    "lq_default_calibration_begin:\n"
    ".incbin \"" LQ_DEFAULT_CALIBRATION_FILE "\"\n"
    ".global lq_default_calibration_end\n"
    "lq_default_calibration_end:\n"
    ".byte 0\n"
    ".previous\n");
extern "C" const char lq_default_calibration_begin[];
extern "C" const char lq_default_calibration_end[];

using nlohmann::json;

namespace lq {
namespace {

std::string text_of(const json& item, const std::string& where) {
  if (item.is_string()) return item.get<std::string>();
  if (item.is_object() && item.contains("text") && item["text"].is_string()) return item["text"].get<std::string>();
  fail(Errc::calibration_error, "{}: each sample must be a string or an object with a \"text\" string", where);
}

}  // namespace

CalibrationData load_calibration(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(Errc::calibration_error, "calibration data not found: {}", path.string());
  if (std::filesystem::is_directory(path, ec)) fail(Errc::calibration_error, "calibration data is a directory: {}", path.string());
  const std::string data = read_file(path);
  const std::string file = path.string();
  CalibrationData cd;
  cd.source = file;
  const std::string ext = path.extension().string();
  if (ext == ".json") {
    json j;
    try {
      j = json::parse(data);
    } catch (const json::exception& e) {
      fail(Errc::calibration_error, "{}: malformed JSON: {}", file, e.what());
    }
    if (j.is_object() && j.contains("samples")) j = j["samples"];
    if (!j.is_array()) fail(Errc::calibration_error, "{}: expected a JSON list of strings or of objects with \"text\"", file);
    for (size_t i = 0; i < j.size(); ++i) cd.texts.push_back(text_of(j[i], fmt::format("{}: item {}", file, i)));
  } else if (ext == ".jsonl") {
    std::istringstream in(data);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json j;
      try {
        j = json::parse(line);
      } catch (const json::exception& e) {
        fail(Errc::calibration_error, "{}: line {}: malformed JSON: {}", file, n, e.what());
      }
      cd.texts.push_back(text_of(j, fmt::format("{}: line {}", file, n)));
    }
  } else {
    if (data.find('\0') != std::string::npos) fail(Errc::calibration_error, "{}: not a text file (contains NUL bytes)", file);
    cd.texts.push_back(data);
  }
  size_t chars = 0;
  for (const auto& t : cd.texts) chars += t.find_first_not_of(" \t\r\n") == std::string::npos ? 0 : t.size();
  if (chars == 0) fail(Errc::calibration_error, "{}: the calibration data is empty (no text but whitespace)", file);
  return cd;
}

CalibrationData load_text(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(Errc::calibration_error, "text file not found: {}", path.string());
  if (fs::is_directory(path, ec)) fail(Errc::calibration_error, "{}: is a directory, not a text file", path.string());
  std::string data;
  try {
    data = read_file(path);
  } catch (const Error& e) {
    fail(Errc::calibration_error, "{}", e.what());
  }
  if (data.find('\0') != std::string::npos) fail(Errc::calibration_error, "{}: not a text file (contains NUL bytes)", path.string());
  if (data.empty()) fail(Errc::calibration_error, "{}: the text file is empty (0 bytes)", path.string());
  CalibrationData cd;
  cd.texts.push_back(std::move(data));
  cd.source = path.string();
  return cd;
}

CalibrationData default_calibration() {
  CalibrationData cd;
  cd.texts.emplace_back(lq_default_calibration_begin,
                        static_cast<size_t>(lq_default_calibration_end - lq_default_calibration_begin));
  cd.source = "built-in: WikiText-2 test (wikitext-2-raw-v1)";
  return cd;
}

std::vector<int32_t> imatrix_calibration_tokens(const CalibrationData& data, const Tokenizer& tok, int64_t need) {
  std::vector<int32_t> tokens;
  if (data.texts.size() == 1) {
    tokens = tok.encode(data.texts[0], true, false);
    if (tok.add_eos() && !tokens.empty() && tokens.back() == tok.eos_id()) tokens.pop_back();
  } else {
    if (tok.add_bos() && tok.bos_id() >= 0) tokens.push_back(tok.bos_id());
    for (const auto& t : data.texts) {
      const auto ids = tok.encode(t, false, false);
      tokens.insert(tokens.end(), ids.begin(), ids.end());
      if (need >= 0 && static_cast<int64_t>(tokens.size()) >= need) break;  // samples are independent: the rest is not needed
    }
  }
  return tokens;
}

int64_t evaluation_chunks(int64_t stream_tokens, int64_t ctx, ChunkRule rule, std::string_view source) {
  if (ctx < 1) fail(Errc::invalid_argument, "context size must be positive, got {}", ctx);
  const int64_t n = std::max<int64_t>(0, stream_tokens);
  switch (rule) {
    case ChunkRule::imatrix:
      if (n < ctx)
        throw Error(Errc::calibration_error,
                    fmt::format("{}: too short ({} tokens, need {}: one chunk of ctx tokens)", source, n, ctx),
                    "Give a longer text or a smaller --ctx");
      return n / ctx;
    case ChunkRule::perplexity:
      if (n < 2 * ctx)
        throw Error(Errc::calibration_error,
                    fmt::format("{}: too short ({} tokens, need {}: one evaluation chunk is 2 x ctx tokens, as "
                                "llama-perplexity)",
                                source, n, 2 * ctx),
                    "Give a longer text or a smaller --ctx");
      return n / ctx;
    case ChunkRule::full_window:
      if (n < 1)
        throw Error(Errc::calibration_error, fmt::format("{}: too short (0 tokens, need 1)", source),
                    "Give a longer text");
      return std::max<int64_t>(1, n / ctx);
  }
  return 0;
}

std::vector<std::vector<int32_t>> make_chunks(const std::vector<int32_t>& tokens, int64_t ctx, int64_t max_chunks,
                                              int32_t bos) {
  if (ctx <= 0) fail(Errc::invalid_argument, "context size must be positive, got {}", ctx);
  const int64_t available = static_cast<int64_t>(tokens.size()) / ctx;
  const int64_t n = max_chunks < 0 ? available : std::min(available, max_chunks);
  std::vector<std::vector<int32_t>> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int32_t> c(tokens.begin() + i * ctx, tokens.begin() + (i + 1) * ctx);
    if (bos >= 0) c[0] = bos;
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace lq
