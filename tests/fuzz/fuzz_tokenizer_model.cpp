// libFuzzer target: a SentencePiece tokenizer.model (protobuf), read both ways liblq reads it
// (the tokenizer built from the file, and the converter's GGUF tokenizer keys from its
// directory), then used to encode and decode a fixed text.
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lq::fuzz::tokenizer_file("tokenizer_model", "tokenizer.model", data, size,
                           [](const std::filesystem::path& p) { return lq::Tokenizer::from_sentencepiece(p); });
  return 0;
}
