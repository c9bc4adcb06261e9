// libFuzzer target: a Hugging Face config.json, read alone (hyper-parameters, the GGUF keys the
// converter writes for it) and as the config of a directory holding the tiny Llama's shards and
// tokenizer (the shapes it implies checked against the tensors).
#include "fuzz_support.hpp"

#include <lq/gguf.hpp>
#include <lq/model.hpp>

#include "model/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lq::fuzz::fs::path dir = [] {
    const auto d = lq::fuzz::fresh_dir("config");
    lq::fuzz::write_tiny_model(d, /*with_config=*/false, /*with_index=*/true);
    return d;
  }();
  lq::fuzz::write_bytes(dir / "config.json", data, size);
  lq::fuzz::expect_clean([&] {
    const lq::HfConfig hf = lq::read_hf_config(dir);
    lq::gguf::Metadata m;
    lq::hf_config_metadata(hf, 13408, m);
  });
  lq::fuzz::expect_clean([&] { (void)lq::ModelSource::open(dir)->gguf_metadata(); });
  return 0;
}
