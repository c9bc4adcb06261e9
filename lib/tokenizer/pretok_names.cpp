// The named pre-tokenizer pipelines (see pretok_names.hpp): llama.cpp's gpt-2, llama-bpe, qwen2,
// deepseek-coder, falcon, starcoder and default pipelines with their aliases. A table, no parsing.
#include "tokenizer/pretok_names.hpp"

namespace lq::detail {
namespace {

constexpr const char* kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

}  // namespace

const std::vector<NamedPreTokenizer>& named_pretokenizers() {
  static const std::vector<NamedPreTokenizer> table = [] {
    std::vector<NamedPreTokenizer> t;
    t.push_back({"gpt-2",
                 {"phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
                  "mellum", "mpt", "olmo", "jais", "trillion", "granite-docling"},
                 PreTokenizer({byte_level_step(false, true)}), false, true});
    t.push_back({"llama-bpe",
                 {"llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                  "jina-v5-nano", "dbrx", "smaug-bpe"},
                 PreTokenizer({split_step(kLlama3Regex), byte_level_step(false, false)}), true, true});
    t.push_back({"qwen2",
                 {"deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "hunyuan", "solar-open"},
                 PreTokenizer({split_step(kQwen2Regex), byte_level_step(false, false)}), false, true});
    t.push_back({"deepseek-coder",
                 {},
                 PreTokenizer({split_step("[\\r\\n]"), split_step("\\s?\\p{L}+"),
                               split_step("\\s?\\p{P}+"),
                               split_step("[\xE4\xB8\x80-\xE9\xBE\xA5\xE0\xA0\x80-\xE4\xB8\x80"
                                          "\xEA\xB0\x80-\xED\x9F\xBF]+"),
                               digits_step(true), byte_level_step(false, false)}),
                 false, true});
    t.push_back({"falcon",
                 {},
                 PreTokenizer({punctuation_step(SplitBehavior::contiguous), byte_level_step(false, true),
                               digits_step(false), split_step("[0-9][0-9][0-9]")}),
                 false, true});
    t.push_back({"starcoder",
                 {"refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"},
                 PreTokenizer({digits_step(true), byte_level_step(false, true)}), false, true});
    // llama.cpp's own fallback for BPE vocabularies without a pre-tokenizer name.
    t.push_back({"default",
                 {},
                 PreTokenizer({split_step("[\\p{P}\\$\\+<=>\\^~\\|]+"),
                               split_step("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
                                          "\\s+(?!\\S)"),
                               split_step("\\p{N}+"), split_step("[0-9][0-9][0-9]"),
                               byte_level_step(false, false)}),
                 false, false});
    return t;
  }();
  return table;
}

const NamedPreTokenizer* find_pretokenizer(std::string_view name) {
  for (const auto& n : named_pretokenizers()) {
    if (n.name == name) return &n;
    for (const auto& a : n.aliases)
      if (a == name) return &n;
  }
  return nullptr;
}

std::optional<std::string> detect_pretokenizer(const PreTokenizer& p) {
  for (const auto& n : named_pretokenizers())
    if (n.detectable && n.pipeline.same_as(p)) return n.name;
  return std::nullopt;
}

}  // namespace lq::detail
