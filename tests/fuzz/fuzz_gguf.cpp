// libFuzzer target: a GGUF file. The container reader (header, metadata, tensor table), every
// metadata value printed, the file opened as a model (hyper-parameters, tensor names, the first
// row of each small tensor decoded) and its tokenizer keys built into a tokenizer.
#include "fuzz_support.hpp"

#include <lq/gguf.hpp>
#include <lq/model.hpp>
#include <lq/tokenizer.hpp>

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = lq::fuzz::input_file("in.gguf", data, size);
  lq::fuzz::expect_clean([&] {
    lq::gguf::Reader r(path);
    size_t chars = 0;
    for (const auto& [key, value] : r.metadata().entries()) chars += value.to_string().size();
    for (const auto& t : r.tensors()) chars += r.data(t).size() > 0 ? 1 : 0;
    (void)chars;
    if (r.metadata().contains("tokenizer.ggml.model"))
      lq::fuzz::expect_clean([&] {
        const auto tok = lq::Tokenizer::from_gguf(r.metadata(), "fuzz");
        const auto ids = tok.encode("Hello world, 123 <s> \xC3\xA9\n", true, true);
        (void)tok.decode(ids, true);
      });
  });
  lq::fuzz::expect_clean([&] {
    const auto m = lq::ModelSource::open(path);
    std::vector<float> row;
    for (const auto& t : m->tensors()) {
      if (t.n_rows() < 1 || t.row_length() < 1 || t.row_length() > (1 << 16)) continue;
      row.resize(static_cast<size_t>(t.row_length()));
      m->read_rows_f32(t, 0, 1, row.data());
    }
    (void)m->gguf_metadata();
  });
  return 0;
}
