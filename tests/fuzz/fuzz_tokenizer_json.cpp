// libFuzzer target: a Hugging Face tokenizer.json, read both ways liblq reads it (the tokenizer
// built from the file, and the converter's GGUF tokenizer keys from its directory), then used
// to encode and decode a fixed text.
#include "fuzz_support.hpp"

#include <lq/gguf.hpp>
#include <lq/tokenizer.hpp>

namespace {

void exercise(const lq::Tokenizer& tok) {
  const auto ids = tok.encode("Hello world, 123  <s> </s> \xC3\xA9\xE2\x96\x81 \t\n", true, true);
  (void)tok.decode(ids, true);
  (void)tok.decode(ids, false);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto dir = lq::fuzz::fresh_dir("tokenizer_json");
  lq::fuzz::write_bytes(dir / "tokenizer.json", data, size);
  lq::fuzz::expect_clean([&] { exercise(lq::Tokenizer::from_hf_json(dir / "tokenizer.json")); });
  lq::fuzz::expect_clean([&] { exercise(lq::Tokenizer::from_hf_dir(dir)); });
  return 0;
}
