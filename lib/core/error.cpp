#include <lq/error.hpp>

#include <array>

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

void throw_error(Errc code, std::string message, std::string suggestion) {
  throw Error(code, message, std::move(suggestion));
}

}  // namespace lq
