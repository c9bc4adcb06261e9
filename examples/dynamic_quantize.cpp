// Dynamic quantization with super-weight protection and a perplexity gate, through the public
// API alone (lq::quantize_model in lq/quantize_job.hpp).
//   example_dynamic_quantize MODEL IMATRIX OUT.gguf [PROFILE [MAX_PPL_INCREASE_PCT]]
// PROFILE: a preset (quality, the default) or a .dqprofile path. The gate measures perplexity
// on two chunks of the built-in text; above MAX_PPL_INCREASE_PCT (default 20) the file is kept
// and the program exits with the contract's code 11.
#include "example_support.hpp"

#include <lq/lq.hpp>
#include <lq/quantize_job.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

int main(int argc, char** argv) {
  if (argc < 4) return example::usage(argv[0], "MODEL IMATRIX OUT.gguf [PROFILE [MAX_PPL_INCREASE_PCT]]");
  try {
    const lq::Imatrix imatrix = lq::Imatrix::load(argv[2]);
    auto model = lq::ModelSource::open(argv[1]);

    lq::QuantizeJob job;
    job.profile = lq::Profile::load(argc > 4 ? argv[4] : "quality");
    job.options.imatrix = &imatrix;
    job.options.imatrix_path = argv[2];
    job.protect_coverage = 1e-4;  // the top 0.01% of weights by importance x weight^2
    job.gates.perplexity = true;
    lq::GateSettings gate;
    gate.samples = 2;
    if (argc > 5) gate.max_perplexity_increase_pct = std::strtod(argv[5], nullptr);
    job.gates.settings = gate;

    example::StderrProgress progress;
    lq::Context ctx;
    ctx.threads = 2;
    ctx.progress = &progress;
    const lq::QuantizeJobResult r = lq::quantize_model(*model, argv[3], job, ctx);

    std::printf("%s: profile %s, %.3f bits per weight, %llu bytes\n", r.quantize.output.string().c_str(),
                r.profile.c_str(), r.quantize.bpw, static_cast<unsigned long long>(r.quantize.file_bytes));
    std::printf("protected weights: %zu (%d tensor(s) raised)\n", r.protected_weights.size(), r.raised_tensors);
    for (const auto& l : r.layers)
      std::printf("  %-22s %6.3f bpw%s\n", l.layer.c_str(), l.bit_width, l.is_protected ? "  (protected)" : "");
    if (r.quality)
      std::printf("perplexity: %.4f -> %.4f (%+.2f%%, threshold %g%%)\n", r.quality->perplexity_original,
                  r.quality->perplexity_quantized, r.quality->perplexity_delta_pct, r.gate_settings.max_perplexity_increase_pct);
    if (!r.passed()) {
      std::fprintf(stderr, "gate failed: %s (the file is kept)\n", r.gate_message.c_str());
      return lq::exit_code(r.gate);
    }
    std::printf("quality gate: passed\n");
    return 0;
  } catch (const lq::Error& e) {
    return example::report(e);
  }
}
