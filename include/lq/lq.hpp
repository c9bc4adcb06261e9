// liblq: umbrella header of the public API (every public header).
#pragma once

#include <lq/analysis_report.hpp>
#include <lq/api.hpp>
#include <lq/backend.hpp>
#include <lq/calibration.hpp>
#include <lq/context.hpp>
#include <lq/convert.hpp>
#include <lq/decode.hpp>
#include <lq/engine.hpp>
#include <lq/error.hpp>
#include <lq/file_type.hpp>
#include <lq/gguf.hpp>
#include <lq/awq.hpp>
#include <lq/gptq.hpp>
#include <lq/gptq_gguf.hpp>
#include <lq/imatrix.hpp>
#include <lq/importance.hpp>
#include <lq/io.hpp>
#include <lq/model.hpp>
#include <lq/plot.hpp>
#include <lq/profile.hpp>
#include <lq/sensitivity.hpp>
#include <lq/progress.hpp>
#include <lq/quality.hpp>
#include <lq/quant_type.hpp>
#include <lq/quantize_job.hpp>
#include <lq/quantizer.hpp>
#include <lq/settings.hpp>
#include <lq/smoothquant.hpp>
#include <lq/super_weights.hpp>
#include <lq/threads.hpp>
#include <lq/tokenizer.hpp>

namespace lq {
/// liblq's version ("0.1.0").
LQ_API const char* version() noexcept;
}  // namespace lq
