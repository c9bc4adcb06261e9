// libFuzzer target: model.safetensors.index.json, the shard index of a Hugging Face directory
// holding the tiny Llama's config, two shards and tokenizer; the directory opened as a model and
// the first row of every tensor read.
#include "fuzz_support.hpp"

#include <lq/model.hpp>

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lq::fuzz::fs::path dir = [] {
    const auto d = lq::fuzz::fresh_dir("shard_index");
    lq::fuzz::write_tiny_model(d, /*with_config=*/true, /*with_index=*/false);
    return d;
  }();
  lq::fuzz::write_bytes(dir / "model.safetensors.index.json", data, size);
  lq::fuzz::expect_clean([&] {
    const auto m = lq::ModelSource::open(dir);
    std::vector<float> row;
    for (const auto& t : m->tensors()) {
      row.resize(static_cast<size_t>(t.row_length()));
      m->read_rows_f32(t, 0, 1, row.data());
    }
  });
  return 0;
}
