// Internal: what a profile rule's method names (a tensor type or a level) and the type ladders
// the solver and super-weight protection climb. No model access here.
#pragma once

#include <lq/file_type.hpp>
#include <lq/quant_type.hpp>

#include <optional>
#include <string>
#include <vector>

namespace lq::profile {

/// A rule's method: exactly one of a storable tensor type or a level (whose mixture decides).
struct Method {
  std::optional<QuantType> type;
  std::optional<FileType> level;
};
/// Parses "Q4_K" / "Q4_K_M"; anything else throws Errc::profile_error naming `source`.
Method parse_method(const std::string& m, const std::string& source);

/// The solver's candidate types when a profile lists none, smallest first.
const std::vector<QuantType>& default_ladder();
/// Types raised to, in order, when a tensor's protected weights do not survive its type.
const std::vector<QuantType>& protection_ladder();

}  // namespace lq::profile
