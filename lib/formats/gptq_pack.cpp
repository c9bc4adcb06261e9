// Packing of integer weight codes for compressed-tensors pack-quantized and the AutoGPTQ /
// GPTQModel layout, and their config blocks (see gptq_pack.hpp).
#include "formats/gptq_pack.hpp"

#include "formats/compressed_tensors.hpp"

#include <algorithm>
#include <cstring>

namespace lq::gptq_pack {

namespace {

// Appends value v (b bits) at bit position `bit` of a little-endian stream of 32-bit words.
inline void gp_put_bits(uint32_t* words, int64_t bit, uint32_t v, int b) {
  const int64_t w = bit >> 5;
  const int s = static_cast<int>(bit & 31);
  words[w] |= v << s;
  if (s + b > 32) words[w + 1] |= v >> (32 - s);
}

inline uint32_t gp_get_bits(const uint32_t* words, int64_t bit, int b) {
  const int64_t w = bit >> 5;
  const int s = static_cast<int>(bit & 31);
  uint64_t x = words[w] >> s;
  if (s + b > 32) x |= static_cast<uint64_t>(words[w + 1]) << (32 - s);
  return static_cast<uint32_t>(x) & ((1u << b) - 1u);
}

}  // namespace

std::vector<int32_t> ct_pack_rows(const uint8_t* codes, int64_t rows, int64_t cols, int bits) {
  const int64_t nw = (cols * bits + 31) / 32;
  std::vector<int32_t> out(static_cast<size_t>(rows * nw + 1), 0);  // one spare word for the last straddle
  const uint32_t mask = (1u << bits) - 1u;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<uint32_t> row(static_cast<size_t>(nw) + 1, 0u);
    for (int64_t c = 0; c < cols; ++c) gp_put_bits(row.data(), c * bits, codes[r * cols + c] & mask, bits);
    std::memcpy(&out[static_cast<size_t>(r * nw)], row.data(), static_cast<size_t>(nw) * 4);
  }
  out.pop_back();
  return out;
}

std::vector<uint8_t> ct_unpack_rows(const int32_t* packed, int64_t rows, int64_t cols, int bits) {
  const int64_t nw = (cols * bits + 31) / 32;
  std::vector<uint8_t> out(static_cast<size_t>(rows * cols));
  std::vector<uint32_t> row(static_cast<size_t>(nw) + 1);
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(row.data(), packed + r * nw, static_cast<size_t>(nw) * 4);
    row[static_cast<size_t>(nw)] = 0;
    for (int64_t c = 0; c < cols; ++c)
      out[static_cast<size_t>(r * cols + c)] = static_cast<uint8_t>(gp_get_bits(row.data(), c * bits, bits));
  }
  return out;
}

std::vector<int32_t> ct_pack_columns(const int32_t* zeros, int64_t rows, int64_t groups, int bits) {
  const int64_t nr = (rows * bits + 31) / 32;
  std::vector<int32_t> out(static_cast<size_t>(nr * groups), 0);
  const uint32_t mask = (1u << bits) - 1u;
  std::vector<uint32_t> col(static_cast<size_t>(nr) + 1);
  for (int64_t g = 0; g < groups; ++g) {
    std::fill(col.begin(), col.end(), 0u);
    for (int64_t r = 0; r < rows; ++r) gp_put_bits(col.data(), r * bits, static_cast<uint32_t>(zeros[r * groups + g]) & mask, bits);
    for (int64_t w = 0; w < nr; ++w) out[static_cast<size_t>(w * groups + g)] = static_cast<int32_t>(col[static_cast<size_t>(w)]);
  }
  return out;
}

std::vector<int32_t> gptq_pack_qweight(const uint8_t* codes, int64_t out, int64_t in, int bits) {
  const int64_t nw = in * bits / 32;
  std::vector<uint32_t> col(static_cast<size_t>(nw));
  std::vector<int32_t> q(static_cast<size_t>(nw * out));
  for (int64_t o = 0; o < out; ++o) {
    std::fill(col.begin(), col.end(), 0u);
    for (int64_t i = 0; i < in; ++i) gp_put_bits(col.data(), i * bits, codes[o * in + i], bits);
    for (int64_t w = 0; w < nw; ++w) q[static_cast<size_t>(w * out + o)] = static_cast<int32_t>(col[static_cast<size_t>(w)]);
  }
  return q;
}

std::vector<uint8_t> gptq_unpack_qweight(const int32_t* qweight, int64_t out, int64_t in, int bits) {
  const int64_t nw = in * bits / 32;
  std::vector<uint32_t> col(static_cast<size_t>(nw) + 1);
  std::vector<uint8_t> codes(static_cast<size_t>(out * in));
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t w = 0; w < nw; ++w) col[static_cast<size_t>(w)] = static_cast<uint32_t>(qweight[w * out + o]);
    col[static_cast<size_t>(nw)] = 0;
    for (int64_t i = 0; i < in; ++i) codes[static_cast<size_t>(o * in + i)] = static_cast<uint8_t>(gp_get_bits(col.data(), i * bits, bits));
  }
  return codes;
}

std::vector<int32_t> gptq_pack_qzeros(const int32_t* zeros, int64_t out, int64_t groups, int bits, bool v1) {
  const int64_t nw = out * bits / 32;
  const uint32_t mask = (1u << bits) - 1u;
  std::vector<int32_t> q(static_cast<size_t>(groups * nw), 0);
  for (int64_t g = 0; g < groups; ++g) {
    auto* row = reinterpret_cast<uint32_t*>(&q[static_cast<size_t>(g * nw)]);
    for (int64_t o = 0; o < out; ++o) {
      const uint32_t z = static_cast<uint32_t>(zeros[o * groups + g] - (v1 ? 1 : 0)) & mask;
      gp_put_bits(row, o * bits, z, bits);
    }
  }
  return q;
}

// Output o of word column c sits in nibble kAwqNibble[o % 8] (AutoAWQ's interleave: nibble k holds
// output c*8 + {0, 2, 4, 6, 1, 3, 5, 7}[k]).
constexpr int kAwqNibble[8] = {0, 4, 1, 5, 2, 6, 3, 7};

// [out, cols] 4-bit values (low nibbles of v) as AutoAWQ's [cols, out / 8] int32 words.
template <class T>
std::vector<int32_t> awq_pack_nibbles(const T* v, int64_t out, int64_t cols) {
  const int64_t nw = out / 8;
  std::vector<int32_t> q(static_cast<size_t>(cols * nw), 0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < cols; ++i) {
      auto& word = reinterpret_cast<uint32_t&>(q[static_cast<size_t>(i * nw + o / 8)]);
      word |= (static_cast<uint32_t>(v[o * cols + i]) & 15u) << (4 * kAwqNibble[o % 8]);
    }
  return q;
}

std::vector<int32_t> awq_pack_qweight(const uint8_t* codes, int64_t out, int64_t in) {
  return awq_pack_nibbles(codes, out, in);
}

std::vector<int32_t> awq_pack_qzeros(const int32_t* zeros, int64_t out, int64_t groups) {
  return awq_pack_nibbles(zeros, out, groups);
}

nlohmann::ordered_json awq_quantization_config(int64_t group_size) {
  nlohmann::ordered_json c;
  c["quant_method"] = "awq";
  c["bits"] = 4;
  c["group_size"] = group_size;
  c["zero_point"] = true;
  c["version"] = "gemm";
  c["modules_to_not_convert"] = nullptr;
  return c;
}

std::vector<int32_t> gptq_unpack_qzeros(const int32_t* qzeros, int64_t out, int64_t groups, int bits, bool v1) {
  const int64_t nw = out * bits / 32;
  const uint32_t mask = (1u << bits) - 1u;
  std::vector<int32_t> z(static_cast<size_t>(out * groups));
  std::vector<uint32_t> row(static_cast<size_t>(nw) + 1);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t w = 0; w < nw; ++w) row[static_cast<size_t>(w)] = static_cast<uint32_t>(qzeros[g * nw + w]);
    row[static_cast<size_t>(nw)] = 0;
    for (int64_t o = 0; o < out; ++o)
      z[static_cast<size_t>(o * groups + g)] =
          static_cast<int32_t>((gp_get_bits(row.data(), o * bits, bits) + (v1 ? 1u : 0u)) & mask);
  }
  return z;
}

nlohmann::ordered_json ct_pack_quantization_config(int bits, int64_t group_size, bool sym, const std::string& actorder) {
  nlohmann::ordered_json a;
  a["num_bits"] = bits;
  a["type"] = "int";
  a["symmetric"] = sym;
  a["group_size"] = group_size > 0 ? nlohmann::ordered_json(group_size) : nlohmann::ordered_json(nullptr);
  a["strategy"] = group_size > 0 ? "group" : "channel";
  a["block_structure"] = nullptr;
  a["dynamic"] = false;
  a["actorder"] = actorder.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(actorder);
  a["observer"] = "minmax";
  a["observer_kwargs"] = nlohmann::ordered_json::object();
  nlohmann::ordered_json group;
  group["targets"] = {"Linear"};
  group["weights"] = a;
  group["input_activations"] = nullptr;
  group["output_activations"] = nullptr;
  group["format"] = "pack-quantized";
  nlohmann::ordered_json q;
  q["config_groups"] = {{"group_0", group}};
  q["format"] = "pack-quantized";
  q["global_compression_ratio"] = nullptr;
  q["ignore"] = {"lm_head"};
  q["kv_cache_scheme"] = nullptr;
  q["quant_method"] = "compressed-tensors";
  q["quantization_status"] = "compressed";
  q["sparsity_config"] = nlohmann::ordered_json::object();
  q["version"] = ct::kFormatVersion;
  return q;
}

nlohmann::ordered_json gptq_quantize_config(int bits, int64_t group_size, bool sym, bool desc_act, bool static_groups,
                                            double damp, bool v2) {
  nlohmann::ordered_json q;
  q["bits"] = bits;
  q["group_size"] = group_size > 0 ? group_size : -1;
  q["desc_act"] = desc_act;
  q["sym"] = sym;
  q["static_groups"] = static_groups;
  q["true_sequential"] = false;
  q["damp_percent"] = damp;
  q["lm_head"] = false;
  q["quant_method"] = "gptq";
  q["checkpoint_format"] = v2 ? "gptq_v2" : "gptq";
  q["format"] = v2 ? "gptq_v2" : "gptq";  // GPTQModel's older name of checkpoint_format
  q["pack_dtype"] = "int32";
  q["meta"] = {{"quantizer", {std::string("liblq:") + LQ_VERSION}}, {"damp_percent", damp}, {"static_groups", static_groups},
               {"true_sequential", false}};
  return q;
}

}  // namespace lq::gptq_pack
