// Names of the importance methods and activation roundings, and their parsing (the spellings of
// reports and command-line options). No analysis runs here.
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/importance.hpp>

namespace lq {

const char* importance_method_name(ImportanceMethod m) noexcept {
  switch (m) {
    case ImportanceMethod::gradient: return "gradient";
    case ImportanceMethod::fisher: return "fisher";
    default: return "activation_magnitude";
  }
}

ImportanceMethod parse_importance_method(std::string_view s) {
  if (s == "activation" || s == "activation_magnitude") return ImportanceMethod::activation;
  if (s == "gradient") return ImportanceMethod::gradient;
  if (s == "fisher") return ImportanceMethod::fisher;
  fail(Errc::invalid_argument, "unknown importance method '{}' (activation, gradient, fisher)", s);
}

const char* activation_rounding_name(ActivationRounding r) noexcept {
  switch (r) {
    case ActivationRounding::exact: return "exact";
    case ActivationRounding::llama: return "llama";
    default: return "auto";
  }
}

ActivationRounding parse_activation_rounding(std::string_view s) {
  if (s == "auto") return ActivationRounding::automatic;
  if (s == "exact") return ActivationRounding::exact;
  if (s == "llama" || s == "bf16") return ActivationRounding::llama;
  fail(Errc::invalid_argument, "unknown --activations '{}' (auto, exact, llama)", s);
}

}  // namespace lq
