// liblq: the single error type and its codes.
#pragma once

#include <lq/api.hpp>

#include <stdexcept>
#include <string>
#include <string_view>

namespace lq {

/// Error codes. Each maps to one CLI exit code (base contract 0-8, advanced contract 10-16).
enum class Errc : int {
  ok = 0,
  general,             ///< exit 1
  invalid_argument,    ///< exit 2: bad flag, bad option value, bad usage
  not_found,           ///< exit 3: model path / Hub ID not found
  auth_required,       ///< exit 4
  out_of_memory,       ///< exit 5
  invalid_model,       ///< exit 6: malformed file, unknown architecture, bad tensor
  output_error,        ///< exit 7: cannot write the output
  interrupted,         ///< exit 8: interrupted (checkpoint kept)
  imatrix_error,       ///< exit 10: importance matrix missing or invalid
  quality_degraded,    ///< exit 11
  coherence_failed,    ///< exit 12
  profile_error,       ///< exit 13: profile missing or invalid
  smoothquant_failed,  ///< exit 14
  calibration_error,   ///< exit 15: calibration data missing or malformed
  importance_failed,   ///< exit 16
};

/// Static facts about one error code: CLI exit code and the JSON `error_type` name.
struct ErrcInfo {
  Errc code;
  int exit_code;
  const char* type_name;   ///< e.g. "InvalidModelError"
  const char* suggestion;  ///< default hint for JSON error output (may be empty)
};

/// Row of the error table for `c`.
LQ_API const ErrcInfo& errc_info(Errc c) noexcept;
/// CLI exit code for `c`.
inline int exit_code(Errc c) noexcept { return errc_info(c).exit_code; }

/// Text read from a file (a tensor name, a metadata string, a token), made safe to print in a
/// message, a terminal or JSON: bytes that are not well-formed UTF-8 and control characters
/// (C0, DEL, C1) become `\xNN` (`\n`, `\t`, `\r` for those three); everything else, backslashes
/// included, is kept, so the result is valid UTF-8 and escaping it again changes nothing.
LQ_API std::string escape_text(std::string_view s);

/// The one exception type thrown by liblq. `what()` is a single human-readable line, passed
/// through escape_text() (the net under messages that quote file content).
class LQ_API Error : public std::runtime_error {
 public:
  Error(Errc code, const std::string& message, std::string suggestion = {})
      : std::runtime_error(escape_text(message)), code_(code), suggestion_(escape_text(suggestion)) {}
  Errc code() const noexcept { return code_; }
  /// Optional hint for the user ("" when none).
  const std::string& suggestion() const noexcept { return suggestion_; }

 private:
  Errc code_;
  std::string suggestion_;
};

/// The funnel every throw goes through: throws lq::Error with `code` and the message (the
/// library formats its messages with fmt internally; this header does not need it).
[[noreturn]] LQ_API void throw_error(Errc code, std::string message, std::string suggestion = {});

}  // namespace lq
