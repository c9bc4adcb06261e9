// libFuzzer target: a Hugging Face tokenizer.json, read both ways liblq reads it (the tokenizer
// built from the file, and the converter's GGUF tokenizer keys from its directory), then used
// to encode and decode a fixed text.
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lq::fuzz::tokenizer_file("tokenizer_json", "tokenizer.json", data, size,
                           [](const std::filesystem::path& p) { return lq::Tokenizer::from_hf_json(p); });
  return 0;
}
