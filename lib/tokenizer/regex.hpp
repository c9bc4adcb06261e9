// A small backtracking regex engine over code points, for pre-tokenizer split patterns.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace lq::detail {

/// Compiled pattern with leftmost-first (Perl/Oniguruma) semantics.
///
/// Supported: literals, `.`, classes `[...]` / `[^...]` with ranges, `\s \S \d \D \w \W`,
/// `\p{..}` / `\P{..}` general categories (L, Lu, Ll, Lt, Lm, Lo, M, Mn, ..., N, P, S, Z, C and
/// their long names), escapes `\r \n \t \f \v \xHH \x{H..} \uHHHH`, groups `(..)`, `(?:..)`,
/// `(?i:..)`, `(?i)`, look-ahead `(?=..)` / `(?!..)`, anchors `^ $ \A \z \b \B`, quantifiers
/// `? * + {n} {n,} {n,m}` (greedy, lazy `?` suffix, possessive `+` suffix on single-character
/// atoms). `^`/`$` match at line boundaries as in Oniguruma's Ruby syntax. Case folding under
/// `(?i)` covers ASCII plus U+017F/U+212A. Anything else (look-behind, back-references, scripts
/// such as \p{Han}, nested classes) throws Errc::invalid_model.
class Regex {
 public:
  explicit Regex(std::string_view pattern);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  /// Finds the leftmost match in s[from, n); sets [begin, end) (possibly empty) and returns true.
  bool find(const char32_t* s, size_t n, size_t from, size_t& begin, size_t& end) const;
  const std::string& pattern() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lq::detail
