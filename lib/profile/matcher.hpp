// Internal: matching a profile rule's pattern and layer range against a model's tensors.
// Pure name and layer logic: no types, sizes, files or kernels here.
#pragma once

#include <lq/model.hpp>
#include <lq/profile.hpp>

#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace lq::profile {

/// An inclusive range of layer (block) indices; `any` matches every tensor, block or not.
struct Range {
  bool any = true;
  int lo = 0, hi = 0;
};

/// "A-B" (absolute), "N" or "A%-B%" (relative depth) -> the inclusive layer range for a model
/// of `n_layer` layers; nullopt when `s` is none of these.
std::optional<Range> parse_range(const std::string& s, int n_layer);

/// One rule's glob (and optional layer range) compiled for a model of `n_layer` layers.
/// Invalid patterns or ranges throw Errc::profile_error naming `source`.
class Matcher {
 public:
  Matcher(const ProfileRule& rule, int n_layer, const std::string& source);
  /// Whether the rule matches the tensor by its GGUF or Hugging Face name (with or without
  /// ".weight"), inside the rule's layer range.
  bool matches(const ModelTensor& t) const;

 private:
  std::regex re_;
  std::vector<Range> ranges_;
  Range layers_;
};

}  // namespace lq::profile
