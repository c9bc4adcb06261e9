// SmoothQuant W8A8 through the public API alone (lq::SmoothQuantizer in lq/smoothquant.hpp):
// calibrate a Hugging Face checkpoint, print the smoothing per layer, check that smoothing alone
// leaves the model's function unchanged, then write the compressed-tensors W8A8 directory.
//   example_smoothquant MODEL OUT_DIR [ALPHA|auto [CALIBRATION.txt]]
#include "example_support.hpp"

#include <lq/lq.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

// Largest |a - b| over the largest |a| of the last token's logits.
double logits_difference(const lq::Model& a, const lq::Model& b, const std::vector<int32_t>& tokens) {
  lq::Session sa(a), sb(b);
  sa.eval(tokens);
  sb.eval(tokens);
  const auto la = sa.logits(0), lb = sb.logits(0);
  double diff = 0, mag = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(la[i] - lb[i])));
    mag = std::max(mag, static_cast<double>(std::fabs(la[i])));
  }
  return mag > 0 ? diff / mag : diff;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return example::usage(argv[0], "MODEL OUT_DIR [ALPHA|auto [CALIBRATION.txt]]");
  try {
    example::StderrProgress progress;
    lq::Context ctx;
    ctx.progress = &progress;
    auto source = lq::ModelSource::open(argv[1]);

    lq::SmoothQuantConfig config;
    config.calibration_samples = 16;
    config.ctx = 256;
    if (argc > 3 && std::string(argv[3]) == "auto") config.alpha_auto = true;
    else if (argc > 3) config.alpha = std::atof(argv[3]);
    if (argc > 4) config.calibration_data = argv[4];

    lq::SmoothQuantizer quantizer(*source, config);
    quantizer.calibrate(ctx);
    for (const auto& g : quantizer.groups())
      std::printf("%-40s alpha %.2f  max|x| %8.3f -> %8.3f  s in [%.3g, %.3g]\n", g.norm.c_str(), g.alpha,
                  g.activation_max, g.activation_max_smoothed, g.scale_min, g.scale_max);

    // Smoothing alone is an identity of the network: compare the logits of a prompt.
    lq::SmoothQuantConfig smooth_only = config;
    smooth_only.quantize = false;
    auto original = lq::Model::load(*source);
    auto smoothed = lq::Model::load(*source);
    lq::SmoothQuantizer exact(*source, smooth_only);
    exact.calibrate(ctx);
    exact.apply(*smoothed);
    const auto tok = lq::tokenizer_for(*source);
    const auto prompt = tok.encode("Once upon a time, there was a little girl who");
    std::printf("smoothing only: logits differ by %.2e (relative)\n", logits_difference(*original, *smoothed, prompt));

    const lq::SmoothQuantResult r = quantizer.write(argv[2], ctx);
    std::printf("wrote %s: %zu files, %.1f MB, %.2f bits per weight\n", r.output.c_str(), r.files.size(),
                r.output_bytes / 1e6, r.bpw);
    return 0;
  } catch (const lq::Error& e) {
    return example::report(e);
  }
}
