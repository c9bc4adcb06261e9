// Quantizes a whole model through the library API.
//   example_quantize_model MODEL OUT.gguf [LEVEL]
#include "example_support.hpp"

#include <lq/lq.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 3) return example::usage(argv[0], "MODEL OUT.gguf [LEVEL]");
  try {
    lq::QuantizeOptions opts;
    const auto level = lq::parse_file_type(argc > 3 ? argv[3] : "Q8_0");
    if (!level) {
      std::fprintf(stderr, "error: unknown level %s\n", argv[3]);
      return 2;
    }
    opts.ftype = *level;
    auto model = lq::ModelSource::open(argv[1]);
    const lq::QuantizeResult r = lq::Quantizer(opts).quantize(*model, argv[2]);
    std::printf("%s: %zu tensors, %llu bytes, %.3f bits per weight, %.2f s\n", argv[2], r.tensors.size(),
                static_cast<unsigned long long>(r.file_bytes), r.bpw, r.seconds);
    return 0;
  } catch (const lq::Error& e) {
    return example::report(e);
  }
}
