// Computes an importance matrix for a model with the built-in calibration text and writes it
// in llama.cpp's GGUF imatrix format.
//
//   example_importance_matrix MODEL OUT.imatrix [CHUNKS]
#include <lq/importance.hpp>
#include "example_support.hpp"

#include <lq/lq.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) return example::usage(argv[0], "MODEL OUT.imatrix [CHUNKS]");
  try {
    auto model = lq::ModelSource::open(argv[1]);
    lq::ImportanceOptions opts;
    opts.ctx = 512;
    opts.samples = argc > 3 ? std::stoll(argv[3]) : 8;
    lq::ImportanceAnalyzer analyzer(*model, opts);
    analyzer.set_calibration(lq::default_calibration());
    const lq::ImportanceResult r = analyzer.run();
    r.imatrix.save_gguf(argv[2]);
    std::printf("%zu entries from %lld chunks (%.0f tokens/s)\n", r.imatrix.entries.size(),
                static_cast<long long>(r.chunks), r.tokens_per_second());
    for (const auto& l : r.layers)
      if (l.importance_score == 1.0) std::printf("most important: %s\n", l.layer_name.c_str());
  } catch (const lq::Error& e) {
    return example::report(e);
  }
  return 0;
}
