// Internal: the quality gates of a quantization (quantize_job.hpp): measuring the written file
// against its source and deciding pass or fail against the thresholds. Must not print or exit:
// the outcome goes into the job's result.
#pragma once

#include <lq/context.hpp>
#include <lq/model.hpp>
#include <lq/quantize_job.hpp>

#include <filesystem>

namespace lq::gates {

/// Runs the gates that `gates` turns on for `output` against `src` with `settings`, recording the
/// measurements and the verdict (gate, gate_message, gate_settings) in `res`.
void run(const ModelSource& src, const std::filesystem::path& output, const QualityGates& gates,
         const GateSettings& settings, QuantizeJobResult& res, const Context& ctx);

}  // namespace lq::gates
