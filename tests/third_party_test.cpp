// Third-party quantized checkpoints: hand-computed vectors for every packing (GPTQ bit streams
// with 3-bit values crossing words, v1 and v2 zeros, act-order g_idx; AWQ GEMM's interleave;
// compressed-tensors' int32 packing with its signed offset and packed zero points; FP8 E4M3
// decoding with subnormals, NaN and block scales), tiny GPTQ / AWQ / compressed-tensors
// checkpoints built here from the tiny model and opened as models, the exact mapping to GGUF
// (zero error for symmetric 4-bit g128), and one named error per broken input.
#include <lq/convert.hpp>
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/model.hpp>
#include <lq/quant_type.hpp>

#include "core/half.hpp"
#include "formats/quant_unpack.hpp"
#include "formats/safetensors.hpp"
#include "formats/safetensors_writer.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <regex>

using namespace lq;
namespace fs = std::filesystem;
using nlohmann::json;

TEST_CASE("GPTQ: 3-bit values crossing words, v1 and v2 zeros", "[third-party]") {
  // Column 0's 32 inputs in three words: value 0 = 7 (bits 0-2), value 10 = 5 (bits 30-31 of
  // word 0 hold 01, bit 0 of word 1 holds 1), value 21 = 6 (bit 31 of word 1 holds 0, bits 0-1 of
  // word 2 hold 11), value 31 = 4 (bits 29-31 of word 2); the others 0. Column 1: all 0.
  const std::vector<int32_t> qweight = {0x40000007, 0, 0x00000001, 0, static_cast<int32_t>(0x80000003u), 0};
  // Zeros along the output axis: output 0 stores 3, output 1 stores 7.
  const std::vector<int32_t> qzeros = {3 | (7 << 3)};
  const std::vector<float> scales = {0.5f, 0.25f};
  const auto v1 = unpack::gptq(qweight, qzeros, scales, {}, 2, 32, 3, 32, /*v1_zeros=*/true);
  CHECK(v1.q[0] == 7);
  CHECK(v1.q[10] == 5);
  CHECK(v1.q[21] == 6);
  CHECK(v1.q[31] == 4);
  CHECK(v1.q[1] == 0);
  CHECK(v1.zero[0] == 4);  // v1: stored + 1
  CHECK(v1.zero[1] == 0);  // v1: 7 + 1 wraps to 0 at 3 bits
  CHECK(v1.value(0, 0) == 1.5f);
  CHECK(v1.value(0, 10) == 0.5f);
  CHECK(v1.value(0, 21) == 1.0f);
  CHECK(v1.value(0, 31) == 0.0f);
  CHECK(v1.value(0, 1) == -2.0f);
  CHECK(v1.value(1, 5) == 0.0f);
  const auto v2 = unpack::gptq(qweight, qzeros, scales, {}, 2, 32, 3, 32, /*v1_zeros=*/false);
  CHECK(v2.zero[0] == 3);
  CHECK(v2.zero[1] == 7);
  CHECK(v2.value(0, 0) == 2.0f);
  CHECK(v2.value(1, 5) == -1.75f);
  // 4-bit symmetric v1: zeros stored as 7 read back as 8; value i of a word is nibble i.
  const auto s4 = unpack::gptq(std::vector<int32_t>{0x76543210}, std::vector<int32_t>{0x77777777}, std::vector<float>{2.0f},
                               {}, 1, 8, 4, -1, true);
  for (int i = 0; i < 8; ++i) CHECK(s4.value(0, i) == 2.0f * static_cast<float>(i - 8));
  // 2-bit: 16 values a word.
  const auto b2 = unpack::gptq(std::vector<int32_t>{static_cast<int32_t>(0xE4E4E4E4u)}, {}, std::vector<float>{1.0f}, {}, 1,
                               16, 2, -1, false);
  for (int i = 0; i < 16; ++i) CHECK(b2.q[static_cast<size_t>(i)] == i % 4);  // 0xE4 = 11 10 01 00
  CHECK(b2.zero[0] == 2);  // no qzeros: symmetric
}

TEST_CASE("GPTQ: act-order g_idx gathers each column's group", "[third-party]") {
  // 8 inputs, 8 outputs, 2 groups of 4 assigned out of order; all codes 9, zeros 8 (v2).
  const std::vector<int32_t> qweight(8, static_cast<int32_t>(0x99999999u));
  const std::vector<int32_t> qzeros = {static_cast<int32_t>(0x88888888u), static_cast<int32_t>(0x88888888u)};
  std::vector<float> scales(16);
  for (int o = 0; o < 8; ++o) {
    scales[static_cast<size_t>(o)] = 1.0f + o;       // group 0
    scales[static_cast<size_t>(8 + o)] = -0.5f * o;  // group 1
  }
  const std::vector<int32_t> g_idx = {1, 0, 1, 0, 0, 1, 1, 0};
  const auto w = unpack::gptq(qweight, qzeros, scales, g_idx, 8, 8, 4, 4, false);
  for (int o = 0; o < 8; ++o)
    for (int i = 0; i < 8; ++i) CHECK(w.value(o, i) == (g_idx[static_cast<size_t>(i)] == 0 ? 1.0f + o : -0.5f * o));
  CHECK_FALSE(w.contiguous_groups(4));
  // An index outside the groups is an error.
  std::vector<int32_t> bad = g_idx;
  bad[3] = 2;
  CHECK_THROWS_WITH(unpack::gptq(qweight, qzeros, scales, bad, 8, 8, 4, 4, false), Catch::Contains("g_idx[3] is 2"));
}

TEST_CASE("AWQ GEMM: the [0,2,4,6,1,3,5,7] interleave", "[third-party]") {
  // Nibble k of the word holds output ORDER[k]: outputs 0..7 with codes 0..7 pack to 0x75316420.
  const std::vector<int32_t> qweight = {0x75316420};
  const std::vector<int32_t> qzeros = {0x00000000};
  const auto w = unpack::awq_gemm(qweight, qzeros, std::vector<float>(8, 1.0f), 8, 1, 1);
  for (int o = 0; o < 8; ++o) CHECK(w.value(o, 0) == static_cast<float>(o));
  // Zeros interleave the same way: zero of output o is o, so every value is 0; scales per output.
  const auto z = unpack::awq_gemm(qweight, std::vector<int32_t>{0x75316420}, std::vector<float>(8, 3.0f), 8, 1, 1);
  for (int o = 0; o < 8; ++o) CHECK(z.value(o, 0) == 0.0f);
  // Output 1 with code 15 and zero 2: nibble 4 of the weight word, nibble 4 of the zero word.
  const auto one = unpack::awq_gemm(std::vector<int32_t>{0x000F0000}, std::vector<int32_t>{0x00020000},
                                    std::vector<float>{1, 0.5f, 1, 1, 1, 1, 1, 1}, 8, 1, 1);
  CHECK(one.value(1, 0) == 0.5f * 13);
  CHECK(one.value(0, 0) == 0.0f);
}

TEST_CASE("compressed-tensors: pack order, signed offset, packed zero points", "[third-party]") {
  // Row 0: signed values -8..-1 stored as 0..7 (value i in bits 4i); row 1: all 7 (0xF).
  const std::vector<int32_t> packed = {0x76543210, static_cast<int32_t>(0xFFFFFFFFu)};
  const std::vector<float> scales = {0.5f, 0.25f};
  const auto sym = unpack::ct_packed(packed, scales, {}, {}, {}, 2, 8, 4, -1);
  for (int i = 0; i < 8; ++i) CHECK(sym.value(0, i) == 0.5f * static_cast<float>(i - 8));
  CHECK(sym.value(1, 3) == 0.25f * 7);
  // Zero points [1, -2] packed along the output axis: unsigned 9 and 6 in one word.
  const auto asym = unpack::ct_packed(packed, scales, std::vector<int32_t>{0x69}, {}, {}, 2, 8, 4, -1);
  for (int i = 0; i < 8; ++i) CHECK(asym.value(0, i) == 0.5f * static_cast<float>(i - 9));
  CHECK(asym.value(1, 0) == 0.25f * 9);
  // The same zero points unpacked (int8).
  const auto asym8 = unpack::ct_packed(packed, scales, {}, std::vector<int8_t>{1, -2}, {}, 2, 8, 4, -1);
  CHECK(asym8.value(0, 2) == asym.value(0, 2));
  CHECK(asym8.value(1, 7) == asym.value(1, 7));
  // 8-bit packs four to a word: bytes 0x81, 0x7F, 0x00, 0xFF are 1, -1, -128, 127.
  const auto b8 = unpack::ct_packed(std::vector<int32_t>{static_cast<int32_t>(0xFF007F81u)}, std::vector<float>{1.0f}, {},
                                    {}, {}, 1, 4, 8, -1);
  CHECK(b8.value(0, 0) == 1.0f);
  CHECK(b8.value(0, 1) == -1.0f);
  CHECK(b8.value(0, 2) == -128.0f);
  CHECK(b8.value(0, 3) == 127.0f);
  // compressed-tensors 0.19 packs densely: 3-bit values cross words as GPTQ's do (the stream
  // of the GPTQ 3-bit case above as one row: signed value = code - 4).
  const auto b3 = unpack::ct_packed(std::vector<int32_t>{0x40000007, 1, static_cast<int32_t>(0x80000003u)},
                                    std::vector<float>{1.0f}, {}, {}, {}, 1, 32, 3, -1);
  CHECK(b3.value(0, 0) == 3.0f);
  CHECK(b3.value(0, 10) == 1.0f);
  CHECK(b3.value(0, 21) == 2.0f);
  CHECK(b3.value(0, 31) == 0.0f);
  CHECK(b3.value(0, 1) == -4.0f);
  // Weight-only int8 (W8A16) with group scales: columns 0-1 group 0, 2-3 group 1.
  const auto wi = unpack::ct_int8(std::vector<int8_t>{-3, 5, 100, -128}, std::vector<float>{0.5f, 2.0f}, {}, {}, 1, 4, 8, 2);
  CHECK(wi.value(0, 0) == -1.5f);
  CHECK(wi.value(0, 1) == 2.5f);
  CHECK(wi.value(0, 2) == 200.0f);
  CHECK(wi.value(0, 3) == -256.0f);
}

TEST_CASE("FP8 E4M3: normals, subnormals, NaN and block scales", "[third-party]") {
  CHECK(unpack::fp8_e4m3(0x00) == 0.0f);
  CHECK(unpack::fp8_e4m3(0x01) == std::ldexp(1.0f, -9));  // smallest subnormal: 1/8 * 2^-6
  CHECK(unpack::fp8_e4m3(0x07) == 7 * std::ldexp(1.0f, -9));
  CHECK(unpack::fp8_e4m3(0x08) == std::ldexp(1.0f, -6));  // smallest normal
  CHECK(unpack::fp8_e4m3(0x38) == 1.0f);
  CHECK(unpack::fp8_e4m3(0x3C) == 1.5f);
  CHECK(unpack::fp8_e4m3(0x40) == 2.0f);
  CHECK(unpack::fp8_e4m3(0x7E) == 448.0f);  // largest
  CHECK(unpack::fp8_e4m3(0xFE) == -448.0f);
  CHECK(unpack::fp8_e4m3(0xB8) == -1.0f);
  CHECK(std::isnan(unpack::fp8_e4m3(0x7F)));
  CHECK(std::isnan(unpack::fp8_e4m3(0xFF)));
  CHECK_FALSE(unpack::fp8_e4m3_is_nan(0x7E));
  // 3x3 weights, all 1.0 except [2, 2] = 2.0, with [2, 2] blocks: scales [[1, 2], [3, 4]].
  std::vector<uint8_t> w(9, 0x38);
  w[8] = 0x40;
  const std::vector<float> sc = {1, 2, 3, 4};
  std::vector<float> out(9);
  CHECK(unpack::fp8_dequantize_rows(w, sc, 3, 2, 2, 0, 3, out.data()) == -1);
  CHECK(out == std::vector<float>{1, 1, 2, 1, 1, 2, 3, 3, 8});
  // Per channel: one scale per row.
  CHECK(unpack::fp8_dequantize_rows(w, std::vector<float>{1, 0.5f, 2}, 3, 1, 3, 0, 3, out.data()) == -1);
  CHECK(out == std::vector<float>{1, 1, 1, 0.5f, 0.5f, 0.5f, 2, 2, 4});
  // A NaN byte is found and named by its index.
  w[4] = 0xFF;
  CHECK(unpack::fp8_dequantize_rows(w, sc, 3, 2, 2, 0, 3, out.data()) == 4);
}

// ---------------------------------------------------------------------------------------------
// Tiny checkpoints built from ../shared/models/tiny-llama.

namespace {

bool tp_linear(const std::string& name) {
  static const std::regex re(R"(model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight)");
  return std::regex_match(name, re);
}

template <typename T>
std::vector<uint8_t> tp_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<uint8_t> tp_fp16(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_fp16(v[i]);
  return tp_bytes(h);
}

struct TpTensors {
  std::vector<StTensorSpec> specs;
  std::vector<std::vector<uint8_t>> data;
  void add(const std::string& name, StDtype t, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
    specs.push_back({name, t, std::move(shape)});
    data.push_back(std::move(bytes));
  }
};

// The expected dequantized values [out, in] of each linear, by HF weight name.
using TpExpected = std::map<std::string, std::vector<float>>;

// Copies the tiny model into `out` with `qcfg` as quantization_config (or, with `qc_file`, as
// quantize_config.json) and each block linear replaced by `quantize`(module, W [out, in]).
void tp_write(const fs::path& src, const fs::path& out, const json& qcfg,
              const std::function<void(const std::string&, int64_t, int64_t, const std::vector<float>&, TpTensors&,
                                       std::vector<float>&)>& quantize,
              TpExpected* expected = nullptr, bool qc_file = false,
              const std::function<void(TpTensors&)>& edit = nullptr) {
  fs::create_directories(out);
  for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                        "generation_config.json"})
    if (fs::exists(src / f)) fs::copy_file(src / f, out / f);
  json cfg = json::parse(read_file(src / "config.json"));
  if (qc_file) write_file_atomic(out / "quantize_config.json", qcfg.dump(2));
  else cfg["quantization_config"] = qcfg;
  write_file_atomic(out / "config.json", cfg.dump(2));
  TpTensors ts;
  test::for_each_safetensors_tensor(src, [&](const StTensor& t, std::vector<uint8_t>& raw) {
    if (!tp_linear(t.name)) {
      ts.add(t.name, t.dtype, t.shape, std::move(raw));
      return;
    }
    const int64_t rows = t.shape[0], cols = t.shape[1];
    const std::vector<float> w = test::bf16_values(raw.data(), static_cast<size_t>(rows * cols));
    std::vector<float> deq;
    quantize(t.name.substr(0, t.name.size() - 7), rows, cols, w, ts, deq);
    if (expected) (*expected)[t.name] = std::move(deq);
  });
  if (edit) edit(ts);
  ShardedSafetensorsWriter wr(out, ts.specs);
  for (size_t i = 0; i < ts.specs.size(); ++i) wr.write(ts.specs[i].name, ts.data[i].data(), ts.data[i].size());
  wr.commit();
}

// GPTQ 4-bit, round to nearest: symmetric (zero 8, stored 7 in v1) or asymmetric; g_idx by
// `group_of` (i / group when empty).
// Writes `bits`-bit value number k of a stream of 32-bit words (word j at words[at(j)]), lowest
// bits first, crossing words (the test's own packer).
void tp_put(std::vector<int32_t>& words, const std::function<size_t(int64_t)>& at, int64_t k, int bits, uint32_t v) {
  const int64_t bit = k * bits;
  const int off = static_cast<int>(bit % 32);
  auto& w0 = words[at(bit / 32)];
  w0 = static_cast<int32_t>(static_cast<uint32_t>(w0) | (v << off));
  if (off + bits > 32) {
    auto& w1 = words[at(bit / 32 + 1)];
    w1 = static_cast<int32_t>(static_cast<uint32_t>(w1) | (v >> (32 - off)));
  }
}

// GPTQ `bits`-bit, round to nearest: symmetric (zero 2^(bits-1), stored minus one in v1) or
// asymmetric; g_idx by `group_of` (i / group when empty).
auto tp_gptq(int64_t group, bool sym, bool v1, std::function<int32_t(int64_t, int64_t)> group_of = nullptr, int bits = 4) {
  return [=](const std::string& mod, int64_t out, int64_t in, const std::vector<float>& w, TpTensors& ts,
             std::vector<float>& deq) {
    const int32_t maxq = (1 << bits) - 1, mid = 1 << (bits - 1);
    const int64_t G = in / group;
    std::vector<int32_t> g_idx(static_cast<size_t>(in));
    for (int64_t i = 0; i < in; ++i) g_idx[static_cast<size_t>(i)] = group_of ? group_of(i, in) : static_cast<int32_t>(i / group);
    std::vector<float> scales(static_cast<size_t>(G * out));
    std::vector<int32_t> zeros(static_cast<size_t>(G * out), mid);
    for (int64_t o = 0; o < out; ++o)
      for (int64_t g = 0; g < G; ++g) {
        float lo = 0, hi = 0, amax = 0;
        for (int64_t i = 0; i < in; ++i)
          if (g_idx[static_cast<size_t>(i)] == g) {
            const float v = w[static_cast<size_t>(o * in + i)];
            lo = std::min(lo, v);
            hi = std::max(hi, v);
            amax = std::max(amax, std::fabs(v));
          }
        float s = sym ? amax / static_cast<float>(mid - 1) : (hi - lo) / static_cast<float>(maxq);
        s = fp16_to_f32(f32_to_fp16(std::max(s, 1e-6f)));
        scales[static_cast<size_t>(g * out + o)] = s;
        if (!sym)
          zeros[static_cast<size_t>(g * out + o)] =
              static_cast<int32_t>(std::clamp(std::nearbyint(-lo / s), 0.f, static_cast<float>(maxq)));
      }
    const int64_t in_words = in * bits / 32, z_words = out * bits / 32;
    std::vector<int32_t> qweight(static_cast<size_t>(in_words * out), 0);
    deq.assign(static_cast<size_t>(out * in), 0);
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        const auto gi = static_cast<size_t>(g_idx[static_cast<size_t>(i)] * out + o);
        const int32_t z = zeros[gi];
        const int32_t q = static_cast<int32_t>(
            std::clamp(std::nearbyint(w[static_cast<size_t>(o * in + i)] / scales[gi]) + z, 0.f, static_cast<float>(maxq)));
        tp_put(qweight, [&](int64_t j) { return static_cast<size_t>(j * out + o); }, i, bits, static_cast<uint32_t>(q));
        deq[static_cast<size_t>(o * in + i)] = scales[gi] * static_cast<float>(q - z);
      }
    std::vector<int32_t> qzeros(static_cast<size_t>(G * z_words), 0);
    for (int64_t g = 0; g < G; ++g)
      for (int64_t o = 0; o < out; ++o) {
        const int32_t z = (zeros[static_cast<size_t>(g * out + o)] - (v1 ? 1 : 0)) & maxq;
        tp_put(qzeros, [&](int64_t j) { return static_cast<size_t>(g * z_words + j); }, o, bits, static_cast<uint32_t>(z));
      }
    ts.add(mod + ".qweight", StDtype::I32, {in_words, out}, tp_bytes(qweight));
    ts.add(mod + ".qzeros", StDtype::I32, {G, z_words}, tp_bytes(qzeros));
    ts.add(mod + ".scales", StDtype::F16, {G, out}, tp_fp16(scales));
    ts.add(mod + ".g_idx", StDtype::I32, {in}, tp_bytes(g_idx));
  };
}

// AWQ GEMM 4-bit asymmetric, group `group`.
auto tp_awq(int64_t group) {
  return [=](const std::string& mod, int64_t out, int64_t in, const std::vector<float>& w, TpTensors& ts,
             std::vector<float>& deq) {
    static constexpr int kOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    const int64_t G = in / group;
    std::vector<float> scales(static_cast<size_t>(G * out));
    std::vector<int32_t> zeros(static_cast<size_t>(G * out));
    for (int64_t o = 0; o < out; ++o)
      for (int64_t g = 0; g < G; ++g) {
        float lo = 0, hi = 0;
        for (int64_t i = g * group; i < (g + 1) * group; ++i) {
          lo = std::min(lo, w[static_cast<size_t>(o * in + i)]);
          hi = std::max(hi, w[static_cast<size_t>(o * in + i)]);
        }
        const float s = fp16_to_f32(f32_to_fp16(std::max((hi - lo) / 15.0f, 1e-5f)));
        scales[static_cast<size_t>(g * out + o)] = s;
        zeros[static_cast<size_t>(g * out + o)] = static_cast<int32_t>(std::clamp(-std::nearbyint(lo / s), 0.f, 15.f));
      }
    std::vector<int32_t> qweight(static_cast<size_t>(in * out / 8), 0), qzeros(static_cast<size_t>(G * out / 8), 0);
    deq.assign(static_cast<size_t>(out * in), 0);
    for (int64_t i = 0; i < in; ++i)
      for (int64_t c = 0; c < out / 8; ++c)
        for (int k = 0; k < 8; ++k) {
          const int64_t o = c * 8 + kOrder[k];
          const auto gi = static_cast<size_t>((i / group) * out + o);
          const int32_t q = static_cast<int32_t>(
              std::clamp(std::nearbyint(w[static_cast<size_t>(o * in + i)] / scales[gi]) + zeros[gi], 0.f, 15.f));
          qweight[static_cast<size_t>(i * (out / 8) + c)] |= q << (4 * k);
          deq[static_cast<size_t>(o * in + i)] = scales[gi] * static_cast<float>(q - zeros[gi]);
        }
    for (int64_t g = 0; g < G; ++g)
      for (int64_t c = 0; c < out / 8; ++c)
        for (int k = 0; k < 8; ++k)
          qzeros[static_cast<size_t>(g * (out / 8) + c)] |= zeros[static_cast<size_t>(g * out + c * 8 + kOrder[k])] << (4 * k);
    ts.add(mod + ".qweight", StDtype::I32, {in, out / 8}, tp_bytes(qweight));
    ts.add(mod + ".qzeros", StDtype::I32, {G, out / 8}, tp_bytes(qzeros));
    ts.add(mod + ".scales", StDtype::F16, {G, out}, tp_fp16(scales));
  };
}

json tp_gptq_config(int64_t group, bool sym, bool desc_act, const char* format = "gptq") {
  return {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", group}, {"sym", sym}, {"desc_act", desc_act},
          {"checkpoint_format", format}};
}

// Every value of tensor t of m, decoded.
std::vector<float> tp_values(const ModelSource& m, const ModelTensor& t) {
  std::vector<float> v(static_cast<size_t>(t.n_elements()));
  m.read_rows_f32(t, 0, t.n_rows(), v.data());
  return v;
}

// The largest |a - b| between a tensor of two models (same name, F32 rows).
double tp_max_diff(const ModelSource& a, const ModelSource& b, const std::string& name) {
  REQUIRE(a.at(name).ne == b.at(name).ne);
  const std::vector<float> x = tp_values(a, a.at(name)), y = tp_values(b, b.at(name));
  double d = 0;
  for (size_t i = 0; i < x.size(); ++i) d = std::max(d, std::fabs(static_cast<double>(x[i]) - y[i]));
  return d;
}

std::optional<fs::path> tp_tiny() {
  auto cfg = test::shared_file("models/tiny-llama/config.json");
  if (!cfg) {
    test::skip("needs ../shared/models/tiny-llama");
    return std::nullopt;
  }
  return cfg->parent_path();
}

}  // namespace

TEST_CASE("GPTQ sym 4-bit g128: read exactly, and the exact mapping to Q4_0 has zero error", "[third-party][convert]") {
  const auto src = tp_tiny();
  if (!src) return;
  test::TempDir dir;
  TpExpected expected;
  tp_write(*src, dir / "gptq", tp_gptq_config(128, true, false), tp_gptq(128, true, true), &expected);
  auto m = ModelSource::open(dir / "gptq");
  REQUIRE(third_party_quantization(*m).find("GPTQ 4-bit g128 sym") != std::string::npos);
  // Rows that are not permuted equal the builder's dequantization exactly.
  for (const char* n : {"blk.0.attn_v.weight", "blk.3.ffn_down.weight", "blk.5.attn_output.weight"}) {
    const ModelTensor& t = m->at(n);
    CHECK(t.type == QuantType::F32);
    CHECK(tp_values(*m, t) == expected.at(t.source_name.substr(0, t.source_name.size() - 8) + ".weight"));
  }
  // The exact mapping: every linear Q4_0, zero error against the reader, q/k rows included.
  const ExactConvertResult r = convert_exact_to_gguf(*m, dir / "out.gguf");
  CHECK(r.n_exact == 42);
  CHECK(r.n_requantized == 0);
  CHECK(r.worst_error == 0.0);
  auto g = ModelSource::open(dir / "out.gguf");
  for (const auto& t : r.tensors) {
    INFO(t.name);
    if (t.name.find("attn_") != std::string::npos && t.name.ends_with("weight") && t.name.find("norm") == std::string::npos) {
      CHECK(t.type == "Q4_0");
      CHECK(t.mapping == "exact");
    }
    CHECK(tp_max_diff(*m, *g, t.name) == 0.0);
  }
  // The same checkpoint described by quantize_config.json instead of config.json, with the
  // all-zero bias AutoGPTQ saves beside every quantized linear (not part of a Llama).
  auto zero_biases = [](TpTensors& ts) {
    const size_t n = ts.specs.size();
    for (size_t i = 0; i < n; ++i)
      if (ts.specs[i].name.ends_with(".scales")) {
        const std::string mod = ts.specs[i].name.substr(0, ts.specs[i].name.size() - 7);
        const int64_t out = ts.specs[i].shape[1];
        ts.add(mod + ".bias", StDtype::F16, {out}, std::vector<uint8_t>(static_cast<size_t>(2 * out), 0));
      }
  };
  tp_write(*src, dir / "gptq-qc", tp_gptq_config(128, true, false), tp_gptq(128, true, true), nullptr, true, zero_biases);
  auto m2 = ModelSource::open(dir / "gptq-qc");
  CHECK(tp_max_diff(*m, *m2, "blk.2.attn_q.weight") == 0.0);
}

TEST_CASE("GPTQ 2-, 3- and 8-bit checkpoints: read exactly, 8-bit sym maps to Q8_0, 2/3-bit are requantized",
          "[third-party][convert]") {
  const auto src = tp_tiny();
  if (!src) return;
  test::TempDir dir;
  for (const int bits : {2, 3, 8}) {
    INFO(bits << " bits");
    const std::string name = "b" + std::to_string(bits);
    json cfg = tp_gptq_config(128, true, false);
    cfg["bits"] = bits;
    TpExpected e;
    tp_write(*src, dir / name, cfg, tp_gptq(128, true, true, nullptr, bits), &e);
    auto m = ModelSource::open(dir / name);
    for (const char* n : {"blk.0.ffn_down.weight", "blk.2.attn_v.weight"}) {
      const ModelTensor& t = m->at(n);
      CHECK(tp_values(*m, t) == e.at(t.source_name.substr(0, t.source_name.size() - 8) + ".weight"));
    }
    const ExactConvertResult r = convert_exact_to_gguf(*m, dir / (name + ".gguf"));
    if (bits == 8) {
      CHECK(r.n_exact == 42);
      CHECK(r.worst_error == 0.0);
    } else {
      CHECK(r.n_requantized == 42);
      for (const auto& t : r.tensors)
        if (t.mapping == "requantized") CHECK_THAT(t.note, Catch::Contains("no GGUF block form"));
    }
  }
}

TEST_CASE("GPTQ asym v2, AWQ and act-order: readers and the mapping's choices", "[third-party][convert]") {
  const auto src = tp_tiny();
  if (!src) return;
  test::TempDir dir;
  // Asymmetric v2 (true zeros stored) vs v1 (minus one): the same values.
  TpExpected e1, e2;
  tp_write(*src, dir / "v1", tp_gptq_config(64, false, false, "gptq"), tp_gptq(64, false, true), &e1);
  tp_write(*src, dir / "v2", tp_gptq_config(64, false, false, "gptq_v2"), tp_gptq(64, false, false), &e2);
  auto v1 = ModelSource::open(dir / "v1");
  auto v2 = ModelSource::open(dir / "v2");
  CHECK(tp_values(*v2, v2->at("blk.1.ffn_up.weight")) == e2.at("model.layers.1.mlp.up_proj.weight"));
  for (const char* n : {"blk.1.ffn_up.weight", "blk.4.attn_k.weight"}) CHECK(tp_max_diff(*v1, *v2, n) == 0.0);
  // Asymmetric -> Q4_1: codes kept, the error only m's fp16 rounding (below half an ulp of m).
  const ExactConvertResult r1 = convert_exact_to_gguf(*v2, dir / "v2.gguf");
  CHECK(r1.n_exact == 42);
  CHECK(r1.worst_error < 1e-3);
  for (const auto& t : r1.tensors)
    if (t.source.rfind("GPTQ", 0) == 0) CHECK(t.type == "Q4_1");

  // AWQ GEMM g128: read exactly; Q4_1 by the mapping.
  TpExpected ea;
  tp_write(*src, dir / "awq", json{{"quant_method", "awq"}, {"bits", 4}, {"group_size", 128}, {"zero_point", true},
                                   {"version", "gemm"}}, tp_awq(128), &ea);
  auto awq = ModelSource::open(dir / "awq");
  CHECK(tp_values(*awq, awq->at("blk.2.ffn_gate.weight")) == ea.at("model.layers.2.mlp.gate_proj.weight"));
  const ExactConvertResult ra = convert_exact_to_gguf(*awq, dir / "awq.gguf");
  CHECK(ra.n_exact == 42);
  CHECK(ra.worst_error < 1e-3);
  auto ga = ModelSource::open(dir / "awq.gguf");
  CHECK(ga->at("blk.2.ffn_gate.weight").type == QuantType::Q4_1);
  CHECK(tp_max_diff(*awq, *ga, "blk.2.ffn_gate.weight") <= ra.worst_error);

  // Act-order with a non-monotonic g_idx (column i in group (i * 5 % in) / 128): read exactly;
  // groups split the 32-blocks, so the mapping requantizes those tensors to Q8_0 and says so.
  auto perm = [](int64_t i, int64_t in) { return static_cast<int32_t>((i * 5 % in) / 128); };
  TpExpected eo;
  tp_write(*src, dir / "act", tp_gptq_config(128, true, true), tp_gptq(128, true, true, perm), &eo);
  auto act = ModelSource::open(dir / "act");
  CHECK(tp_values(*act, act->at("blk.0.ffn_up.weight")) == eo.at("model.layers.0.mlp.up_proj.weight"));
  const ExactConvertResult ro = convert_exact_to_gguf(*act, dir / "act.gguf");
  CHECK(ro.n_requantized == 42);
  for (const auto& t : ro.tensors)
    if (t.mapping == "requantized") {
      CHECK(t.type == "Q8_0");
      CHECK_THAT(t.note, Catch::Contains("act-order"));
      CHECK(t.max_abs_error > 0);
    }
}

TEST_CASE("compressed-tensors W4A16 packed, W8A16 and FP8 block checkpoints open as models", "[third-party]") {
  const auto src = tp_tiny();
  if (!src) return;
  test::TempDir dir;
  // W4A16 asymmetric group 64: packed weights, packed zero points, weight_shape.
  auto w4 = [](const std::string& mod, int64_t out, int64_t in, const std::vector<float>& w, TpTensors& ts,
               std::vector<float>& deq) {
    const int64_t G = in / 64;
    std::vector<float> sc(static_cast<size_t>(out * G));
    std::vector<int32_t> zp(static_cast<size_t>(out * G));
    std::vector<int32_t> packed(static_cast<size_t>(out * in / 8), 0), zpk(static_cast<size_t>(out / 8 * G), 0);
    deq.assign(static_cast<size_t>(out * in), 0);
    for (int64_t o = 0; o < out; ++o)
      for (int64_t g = 0; g < G; ++g) {
        float lo = 0, hi = 0;
        for (int64_t i = g * 64; i < g * 64 + 64; ++i) {
          lo = std::min(lo, w[static_cast<size_t>(o * in + i)]);
          hi = std::max(hi, w[static_cast<size_t>(o * in + i)]);
        }
        const float s = bf16_to_f32(f32_to_bf16(std::max((hi - lo) / 15, 1e-6f)));
        const int32_t z = static_cast<int32_t>(std::clamp(std::nearbyint(-8 - lo / s), -8.f, 7.f));  // signed
        sc[static_cast<size_t>(o * G + g)] = s;
        zp[static_cast<size_t>(o * G + g)] = z;
        zpk[static_cast<size_t>((o / 8) * G + g)] |= (z + 8) << (4 * (o % 8));
        for (int64_t i = g * 64; i < g * 64 + 64; ++i) {
          const int32_t q = static_cast<int32_t>(std::clamp(std::nearbyint(w[static_cast<size_t>(o * in + i)] / s) + z, -8.f, 7.f));
          packed[static_cast<size_t>(o * (in / 8) + i / 8)] |= (q + 8) << (4 * (i % 8));
          deq[static_cast<size_t>(o * in + i)] = s * static_cast<float>(q - z);
        }
      }
    std::vector<uint16_t> sb(sc.size());
    for (size_t i = 0; i < sc.size(); ++i) sb[i] = f32_to_bf16(sc[i]);
    ts.add(mod + ".weight_packed", StDtype::I32, {out, in / 8}, tp_bytes(packed));
    ts.add(mod + ".weight_scale", StDtype::BF16, {out, G}, tp_bytes(sb));
    ts.add(mod + ".weight_zero_point", StDtype::I32, {out / 8, G}, tp_bytes(zpk));
    ts.add(mod + ".weight_shape", StDtype::I64, {2}, tp_bytes(std::vector<int64_t>{out, in}));
  };
  const json w4cfg = json::parse(R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
      "quantization_status": "compressed", "ignore": ["lm_head"],
      "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": null, "output_activations": null,
        "weights": {"num_bits": 4, "type": "int", "symmetric": false, "strategy": "group", "group_size": 64}}}})");
  TpExpected e4;
  tp_write(*src, dir / "w4", w4cfg, w4, &e4);
  auto m4 = ModelSource::open(dir / "w4");
  for (const char* n : {"blk.0.ffn_down.weight", "blk.5.attn_v.weight"}) {
    const ModelTensor& t = m4->at(n);
    CHECK(tp_values(*m4, t) == e4.at(t.source_name.substr(0, t.source_name.size() - 14) + ".weight"));
  }
  // W8A16 (int-quantized without input activations): per channel int8.
  auto w8 = [](const std::string& mod, int64_t out, int64_t in, const std::vector<float>& w, TpTensors& ts,
               std::vector<float>& deq) {
    std::vector<float> sc(static_cast<size_t>(out));
    std::vector<int8_t> q(static_cast<size_t>(out * in));
    deq.resize(q.size());
    for (int64_t o = 0; o < out; ++o) {
      float amax = 0;
      for (int64_t i = 0; i < in; ++i) amax = std::max(amax, std::fabs(w[static_cast<size_t>(o * in + i)]));
      const float s = fp16_to_f32(f32_to_fp16(std::max(amax / 127, 1e-6f)));
      sc[static_cast<size_t>(o)] = s;
      for (int64_t i = 0; i < in; ++i) {
        const auto k = static_cast<size_t>(o * in + i);
        q[k] = static_cast<int8_t>(std::clamp(std::nearbyint(w[k] / s), -128.f, 127.f));
        deq[k] = s * q[k];
      }
    }
    ts.add(mod + ".weight", StDtype::I8, {out, in}, tp_bytes(q));
    ts.add(mod + ".weight_scale", StDtype::F16, {out, 1}, tp_fp16(sc));
  };
  json w8cfg = w4cfg;
  w8cfg["format"] = "int-quantized";
  w8cfg["config_groups"]["group_0"]["weights"] = {{"num_bits", 8}, {"type", "int"}, {"symmetric", true}, {"strategy", "channel"}};
  TpExpected e8;
  tp_write(*src, dir / "w8", w8cfg, w8, &e8);
  auto m8 = ModelSource::open(dir / "w8");
  const ModelTensor& t8 = m8->at("blk.4.ffn_gate.weight");
  CHECK(t8.type == QuantType::F32);  // weight-only: read in float, not as W8 (no int8 activations)
  CHECK(tp_values(*m8, t8) == e8.at("model.layers.4.mlp.gate_proj.weight"));
  const ExactConvertResult r8 = convert_exact_to_gguf(*m8, dir / "w8.gguf");  // symmetric 8-bit -> Q8_0, fp16 scales
  CHECK(r8.n_exact == 42);
  CHECK(r8.worst_error == 0.0);
  // FP8 E4M3 with [128, 128] block scales.
  auto fp8 = [](const std::string& mod, int64_t out, int64_t in, const std::vector<float>& w, TpTensors& ts,
                std::vector<float>& deq) {
    const int64_t R = (out + 127) / 128, C = (in + 127) / 128;
    std::vector<float> sc(static_cast<size_t>(R * C));
    for (int64_t b = 0; b < R * C; ++b) sc[static_cast<size_t>(b)] = 0.001f * static_cast<float>(b + 1);
    std::vector<uint8_t> q(static_cast<size_t>(out * in));
    deq.resize(q.size());
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        const auto k = static_cast<size_t>(o * in + i);
        const float s = sc[static_cast<size_t>((o / 128) * C + i / 128)];
        // Nearest E4M3 (the test's own encoder): codes 0x00..0x7E increase with their value.
        static const std::vector<float> kPos = [] {
          std::vector<float> v;
          for (int c = 0; c < 0x7F; ++c) v.push_back(unpack::fp8_e4m3(static_cast<uint8_t>(c)));
          return v;
        }();
        const float x = std::min(std::fabs(w[k] / s), 448.0f);
        auto it = std::lower_bound(kPos.begin(), kPos.end(), x);
        if (it == kPos.end()) --it;
        if (it != kPos.begin() && x - *(it - 1) < *it - x) --it;
        const auto best = static_cast<uint8_t>((it - kPos.begin()) | (w[k] < 0 && *it != 0 ? 0x80 : 0));
        q[k] = best;
        deq[k] = unpack::fp8_e4m3(best) * s;
      }
    ts.add(mod + ".weight", StDtype::F8_E4M3, {out, in}, q);
    ts.add(mod + ".weight_scale", StDtype::F32, {R, C}, tp_bytes(sc));
  };
  json fcfg = w4cfg;
  fcfg["format"] = "float-quantized";
  fcfg["config_groups"]["group_0"]["weights"] = {{"num_bits", 8}, {"type", "float"}, {"symmetric", true},
                                                 {"strategy", "block"}, {"block_structure", {128, 128}}};
  fcfg["config_groups"]["group_0"]["input_activations"] = {{"num_bits", 8}, {"type", "float"}, {"strategy", "group"},
                                                           {"group_size", 128}, {"dynamic", true}};
  TpExpected ef;
  tp_write(*src, dir / "fp8", fcfg, fp8, &ef);
  auto mf = ModelSource::open(dir / "fp8");
  CHECK_THAT(third_party_quantization(*mf), Catch::Contains("FP8 E4M3 per block [128, 128]"));
  const ModelTensor& tf = mf->at("blk.1.ffn_down.weight");
  CHECK(tp_values(*mf, tf) == ef.at("model.layers.1.mlp.down_proj.weight"));
}

TEST_CASE("third-party checkpoints: each broken input is one named error, nothing written", "[third-party][errors]") {
  const auto src = tp_tiny();
  if (!src) return;
  test::TempDir dir;
  auto drop = [](const std::string& name) {
    return [name](TpTensors& ts) {
      for (size_t i = 0; i < ts.specs.size(); ++i)
        if (ts.specs[i].name == name) {
          ts.specs.erase(ts.specs.begin() + static_cast<std::ptrdiff_t>(i));
          ts.data.erase(ts.data.begin() + static_cast<std::ptrdiff_t>(i));
          return;
        }
      FAIL("no tensor " << name);
    };
  };
  struct Bad {
    const char* what;
    json cfg;
    std::function<void(TpTensors&)> edit;
    std::string message;
  };
  const std::string m = "model.layers.2.mlp.up_proj";
  const std::vector<Bad> bad = {
      {"missing qzeros (asym)", tp_gptq_config(128, false, false), drop(m + ".qzeros"), "'" + m + ".qzeros' is missing"},
      {"missing scales", tp_gptq_config(128, true, false), drop(m + ".scales"), "'" + m + ".scales' is missing"},
      {"missing g_idx (act-order)", tp_gptq_config(128, true, true), drop(m + ".g_idx"), "'" + m + ".g_idx' is missing"},
      {"missing qweight", tp_gptq_config(128, true, false), drop(m + ".qweight"), "'" + m + ".qweight' is missing"},
      {"bits", [] { auto c = tp_gptq_config(128, true, false); c["bits"] = 5; return c; }(), nullptr, "bits 5 are not supported"},
      {"format", tp_gptq_config(128, true, false, "marlin"), nullptr, "checkpoint_format 'marlin' is not supported"},
      {"awq gemv", json{{"quant_method", "awq"}, {"bits", 4}, {"group_size", 128}, {"version", "gemv"}}, nullptr,
       "AWQ version 'gemv' is not supported"},
      {"method", json{{"quant_method", "bitsandbytes"}}, nullptr, "quantization method 'bitsandbytes' is not supported"},
      {"ct format", json{{"quant_method", "compressed-tensors"}, {"format", "marlin-24"}}, nullptr,
       "compressed-tensors format 'marlin-24' is not supported"},
      {"group contradicts", tp_gptq_config(64, true, false), nullptr, "qzeros has shape [2, 16], expected [4, 16]"},
      {"ignored but quantized",
       [] { auto c = json{{"quant_method", "awq"}, {"bits", 4}, {"group_size", 128}, {"version", "gemm"}};
            c["modules_to_not_convert"] = {"model.layers.2.mlp.up_proj"}; return c; }(),
       nullptr, "leaves module 'model.layers.2.mlp.up_proj' unquantized"},
  };
  for (const auto& b : bad) {
    INFO(b.what);
    const std::string name = std::regex_replace(b.what, std::regex("[^a-z]"), "_");
    const bool awq = b.cfg.value("quant_method", "") == "awq";
    using Builder = std::function<void(const std::string&, int64_t, int64_t, const std::vector<float>&, TpTensors&,
                                       std::vector<float>&)>;
    const Builder build = awq ? Builder(tp_awq(128)) : Builder(tp_gptq(128, b.cfg.value("sym", true), true));
    tp_write(*src, dir / name, b.cfg, build, nullptr, false, b.edit);
    try {
      auto s = ModelSource::open(dir / name);
      // Shape problems show when the tensor is read: the conversion fails and leaves nothing.
      convert_exact_to_gguf(*s, dir / (name + ".gguf"));
      FAIL_CHECK("accepted");
    } catch (const Error& e) {
      CHECK(e.code() == Errc::invalid_model);
      CHECK_THAT(e.what(), Catch::Contains(b.message));
    }
    CHECK_FALSE(fs::exists(dir / (name + ".gguf")));
  }
  // FP8 with a NaN byte.
  auto nanq = [](const std::string& mod, int64_t out, int64_t in, const std::vector<float>&, TpTensors& ts,
                 std::vector<float>&) {
    std::vector<uint8_t> q(static_cast<size_t>(out * in), 0x38);
    if (mod == "model.layers.1.self_attn.o_proj") q[5] = 0x7F;
    ts.add(mod + ".weight", StDtype::F8_E4M3, {out, in}, q);
    ts.add(mod + ".weight_scale", StDtype::F32, {1}, tp_bytes(std::vector<float>{0.01f}));
  };
  const json fcfg = json::parse(R"({"quant_method": "compressed-tensors", "format": "float-quantized",
      "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "tensor"}}},
      "ignore": ["lm_head"]})");
  tp_write(*src, dir / "nan", fcfg, nanq);
  auto s = ModelSource::open(dir / "nan");
  CHECK_THROWS_WITH(convert_exact_to_gguf(*s, dir / "nan.gguf"),
                    Catch::Contains("'model.layers.1.self_attn.o_proj.weight' holds NaN (0x7f) at [0, 5]"));
  CHECK_FALSE(fs::exists(dir / "nan.gguf"));
  // The exact mapping of an unquantized model is a usage error.
  auto plain = ModelSource::open(*src);
  try {
    convert_exact_to_gguf(*plain, dir / "plain.gguf");
    FAIL_CHECK("accepted");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::invalid_argument);
  }
}

// Real checkpoints made by the tools (llm-compressor, GPTQModel, AutoAWQ) with their own torch
// dequantization beside them (ref-dequant.safetensors, F32, HF layout): every tensor we read must
// equal it. The directory is $LQ_THIRD_PARTY_CKPTS, else ckpts/ beside ../shared (skipped when
// absent: scripts/interop makes them).
TEST_CASE("third-party: real checkpoints equal the tools' own dequantization", "[third-party][real]") {
  fs::path base;
  if (const char* env = std::getenv("LQ_THIRD_PARTY_CKPTS")) base = env;
  else if (const auto sd = test::shared_dir()) base = sd->parent_path() / "ckpts";
  std::error_code ec;
  if (base.empty() || !fs::is_directory(base, ec)) {
    test::skip("no real checkpoints: set LQ_THIRD_PARTY_CKPTS to a directory of them with ref-dequant.safetensors");
    return;
  }
  const fs::path env = base;
  int n = 0;
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(env))
    if (fs::exists(e.path() / "ref-dequant.safetensors") && fs::exists(e.path() / "config.json")) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  for (const auto& d : dirs) {
    INFO(d.string());
    // The reference as a plain F32 model: same config without its quantization.
    test::TempDir tmp;
    json cfg = json::parse(read_file(d / "config.json"));
    cfg.erase("quantization_config");
    write_file_atomic(tmp / "config.json", cfg.dump());
    for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
      if (fs::exists(d / f)) fs::copy_file(d / f, tmp / f);
    fs::create_symlink(d / "ref-dequant.safetensors", tmp / "model.safetensors");
    auto ref = ModelSource::open(tmp.path());
    auto ours = ModelSource::open(d);
    double worst = 0;
    for (const auto& t : ours->tensors()) {
      INFO(t.name);
      worst = std::max(worst, tp_max_diff(*ours, *ref, t.name));
    }
    WARN(d.filename().string() << " (" << third_party_quantization(*ours) << "): max |ours - torch| = " << worst);
    CHECK(worst == 0.0);
    // The exact mapping: its measured error is against what we read, which equals the tool's.
    const ExactConvertResult r = convert_exact_to_gguf(*ours, tmp / "exact.gguf");
    WARN("  -q exact: " << r.n_exact << " exact, " << r.n_requantized << " requantized, worst error " << r.worst_error);
    const std::string q = third_party_quantization(*ours);
    if (q.find("4-bit") != std::string::npos && q.find(" sym") != std::string::npos && q.find("act-order") == std::string::npos)
      CHECK(r.worst_error == 0.0);
    ++n;
  }
  if (n == 0) test::skip("no checkpoint with ref-dequant.safetensors found");
}

TEST_CASE("cli: convert SRC gguf -q exact | LEVEL, and its errors", "[third-party][cli]") {
  const auto src = tp_tiny();
  if (!src) return;
  test::TempDir dir;
  tp_write(*src, dir / "gptq", tp_gptq_config(128, true, false), tp_gptq(128, true, true));
  const std::string lq = test::cli_path();
  auto r = test::run(lq + " --format json --quiet convert " + (dir / "gptq").string() + " gguf -q exact -o " +
                     (dir / "e.gguf").string());
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j["status"] == "success");
  CHECK(j["exact_tensors"] == 42);
  CHECK(j["worst_abs_error"] == 0.0);
  CHECK(j["exact"].size() == 42);
  CHECK(j["exact"][0]["mapping"] == "exact");
  r = test::run(lq + " --quiet convert " + (dir / "gptq").string() + " gguf -q Q4_K_M -o " + (dir / "k.gguf").string());
  CHECK(r.status == 0);
  CHECK(ModelSource::open(dir / "k.gguf")->at("blk.0.ffn_up.weight").type == QuantType::Q4_K);
  // Usage errors: exit 2; a broken checkpoint: exit 6 and nothing written.
  CHECK(test::run(lq + " convert " + (dir / "gptq").string() + " gguf -q Q9_X -o " + (dir / "x.gguf").string()).status == 2);
  CHECK(test::run(lq + " convert " + (dir / "gptq").string() + " safetensors -q exact").status == 2);
  CHECK(test::run(lq + " convert " + src->string() + " gguf -q exact -o " + (dir / "x.gguf").string()).status == 2);
  tp_write(*src, dir / "bad", tp_gptq_config(64, true, false), tp_gptq(128, true, true));
  r = test::run(lq + " convert " + (dir / "bad").string() + " gguf -q exact -o " + (dir / "x.gguf").string());
  CHECK(r.status == 6);
  CHECK(test::error_lines(r.err) == 1);
  CHECK_FALSE(fs::exists(dir / "x.gguf"));
}
