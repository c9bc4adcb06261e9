// Model identity for analysis checkpoints and the imatrix cache (see fingerprint.hpp). Reads a
// few rows of each tensor through the source; computes nothing else.
#include "analysis/fingerprint.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace lq::analysis {

std::string Fnv::hex() const { return fmt::format("{:016x}", h); }

std::string model_identity(const ModelSource& src) {
  Fnv f;
  const ModelConfig& c = src.config();
  f.add_string(c.architecture);
  for (int64_t v : {c.n_vocab, c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.n_ff, c.head_dim}) f.add_value(v);
  std::vector<uint8_t> row;
  for (const auto& t : src.tensors()) {
    f.add_string(t.name);
    f.add_value(static_cast<int32_t>(t.type));
    for (int64_t d : t.ne) f.add_value(d);
    if (t.n_rows() == 0) continue;
    // Up to 16 rows spread over the tensor, the first and last among them: cheap to read, and an
    // edited model (fine-tuned, merged, re-quantized) changes them.
    row.resize(t.row_bytes());
    const int64_t n = t.n_rows(), samples = std::min<int64_t>(n, 16);
    for (int64_t i = 0; i < samples; ++i) {
      const int64_t r = samples == 1 ? 0 : i * (n - 1) / (samples - 1);
      src.read_rows_raw(t, r, 1, row.data());
      f.add(row.data(), row.size());
    }
  }
  return f.hex();
}

}  // namespace lq::analysis
