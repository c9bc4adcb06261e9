// Names of the importance methods and activation roundings, and their parsing (the spellings of
// reports and command-line options). No analysis runs here.
#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/importance.hpp>

#include <optional>
#include <span>

namespace lq {
namespace {

// One spelling of an enum value; a value's first spelling is its name, the others are accepted
// when parsing.
template <class E>
struct Spelling {
  E value;
  const char* text;
};

constexpr Spelling<ImportanceMethod> kMethods[] = {
    {ImportanceMethod::activation, "activation_magnitude"},
    {ImportanceMethod::activation, "activation"},
    {ImportanceMethod::gradient, "gradient"},
    {ImportanceMethod::fisher, "fisher"},
};

constexpr Spelling<ActivationRounding> kRoundings[] = {
    {ActivationRounding::automatic, "auto"},
    {ActivationRounding::exact, "exact"},
    {ActivationRounding::llama, "llama"},
    {ActivationRounding::llama, "bf16"},  // its earlier name
};

// The name of v (that of the table's first row for a value outside the enum).
template <class E>
const char* name_of(std::span<const Spelling<E>> table, E v) noexcept {
  for (const Spelling<E>& s : table)
    if (s.value == v) return s.text;
  return table.front().text;
}

template <class E>
std::optional<E> parse(std::span<const Spelling<E>> table, std::string_view text) {
  for (const Spelling<E>& s : table)
    if (text == s.text) return s.value;
  return std::nullopt;
}

}  // namespace

const char* importance_method_name(ImportanceMethod m) noexcept {
  return name_of<ImportanceMethod>(kMethods, m);
}

ImportanceMethod parse_importance_method(std::string_view s) {
  if (auto m = parse<ImportanceMethod>(kMethods, s)) return *m;
  fail(Errc::invalid_argument, "unknown importance method '{}' (activation, gradient, fisher)", s);
}

const char* activation_rounding_name(ActivationRounding r) noexcept {
  return name_of<ActivationRounding>(kRoundings, r);
}

ActivationRounding parse_activation_rounding(std::string_view s) {
  if (auto r = parse<ActivationRounding>(kRoundings, s)) return *r;
  fail(Errc::invalid_argument, "unknown --activations '{}' (auto, exact, llama)", s);
}

}  // namespace lq
