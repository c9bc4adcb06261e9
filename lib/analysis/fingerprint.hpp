// Internal: identities of models and data for analysis checkpoints and the imatrix cache
// (FNV-1a, 64 bits). Not a security measure: it tells runs apart, it does not authenticate.
#pragma once

#include <lq/model.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace lq::analysis {

/// FNV-1a over bytes, values and length-prefixed strings.
struct Fnv {
  uint64_t h = 0xcbf29ce484222325ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
  template <typename T>
  void add_value(const T& v) {
    add(&v, sizeof v);
  }
  void add_string(const std::string& s) {
    add_value(static_cast<uint64_t>(s.size()));
    add(s.data(), s.size());
  }
  /// 16 lowercase hex digits.
  std::string hex() const;
};

/// Identity of a model: its configuration, tensor names, types and shapes, and up to 16 rows of
/// every tensor (an edited, merged or re-quantized model changes them).
std::string model_identity(const ModelSource& src);

}  // namespace lq::analysis
