// The error table (codes, exit codes, JSON names, hints), the throw funnel, and escape_text(),
// which makes text read from files safe to print in messages and JSON.
#include <lq/error.hpp>

#include <array>
#include <cstdint>

namespace lq {
namespace {

constexpr std::array<ErrcInfo, 17> kErrcTable = {{
    {Errc::ok, 0, "", ""},
    {Errc::general, 1, "GeneralError", ""},
    {Errc::invalid_argument, 2, "InvalidArgumentError", "Run the command with --help for its options"},
    {Errc::not_found, 3, "ModelNotFoundError", "Check the path, or the Hub ID in the local Hugging Face cache"},
    {Errc::auth_required, 4, "AuthenticationRequiredError", "Download the gated model into the local cache first"},
    {Errc::out_of_memory, 5, "OutOfMemoryError", "Use fewer threads or a smaller batch"},
    {Errc::invalid_model, 6, "InvalidModelError", "The model files are malformed or of an unsupported architecture"},
    {Errc::output_error, 7, "OutputError", "Check that the output directory exists and is writable"},
    {Errc::interrupted, 8, "InterruptedError", "Resume with --resume"},
    {Errc::imatrix_error, 10, "ImportanceMatrixError", "Compute one with `lq analyze MODEL`"},
    {Errc::quality_degraded, 11, "QualityDegradationError",
     "Try using --protect-super-weights or a less aggressive profile"},
    {Errc::coherence_failed, 12, "CoherenceCheckFailed",
     "Ultra-low-bit quantization may be too aggressive. Consider Q2_K or dynamic quantization"},
    {Errc::profile_error, 13, "ProfileError", "Run `lq profile list` for the presets"},
    {Errc::smoothquant_failed, 14, "SmoothQuantError", "Try a different --alpha"},
    {Errc::calibration_error, 15, "CalibrationDataError", "Give plain text, a JSON list of strings or JSONL"},
    {Errc::importance_failed, 16, "ImportanceComputationError", ""},
}};

}  // namespace

const ErrcInfo& errc_info(Errc c) noexcept {
  const auto i = static_cast<size_t>(c);
  return i < kErrcTable.size() ? kErrcTable[i] : kErrcTable[1];
}

namespace {

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlongs, no surrogates,
// nothing above U+10FFFF), or 0 when the bytes there are not one.
size_t utf8_sequence_length(std::string_view s, size_t i) noexcept {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  return n;
}

}  // namespace

std::string escape_text(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  auto hex = [&](uint8_t c) {
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 15];
  };
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence_length(s, i);
    const auto c = static_cast<uint8_t>(s[i]);
    if (n == 0) {
      hex(c);
      ++i;
    } else if (n == 1 && (c < 0x20 || c == 0x7F)) {
      if (c == '\n') out += "\\n";
      else if (c == '\t') out += "\\t";
      else if (c == '\r') out += "\\r";
      else hex(c);
      ++i;
    } else if (n == 2 && c == 0xC2 && static_cast<uint8_t>(s[i + 1]) < 0xA0) {  // C1 controls U+0080..U+009F
      hex(c);
      hex(static_cast<uint8_t>(s[i + 1]));
      i += 2;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

void throw_error(Errc code, std::string message, std::string suggestion) {
  throw Error(code, message, std::move(suggestion));
}

}  // namespace lq
