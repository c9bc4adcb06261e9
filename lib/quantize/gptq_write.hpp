// Internal: the output tensors of one GPTQ-quantized linear in either layout (declared, then
// written into a ShardedSafetensorsWriter), shared by `quantize MODEL gptq` (gptq.cpp) and
// `convert X.gguf gptq` (gptq_convert.cpp); and the whole output directory's contents, shared by
// the in-memory quantizer (gptq.cpp) and the streamed one (gptq_stream.cpp).
#pragma once

#include <lq/gptq.hpp>

#include <lq/context.hpp>

#include "core/output_dir.hpp"
#include "formats/safetensors_writer.hpp"

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace lq::gptq_impl {

struct GpWriteSpec {
  GptqLayout layout = GptqLayout::compressed_tensors;
  bool sym = true;
  bool g_idx = false;                   ///< compressed-tensors: write weight_g_idx (act-order by position)
  StDtype scale_dtype = StDtype::BF16;  ///< compressed-tensors' weight_scale dtype (GPTQ layout: fp16)
  /// compressed-tensors int-quantized W8A8 (GptqConfig::smoothquant): weight int8 [out, in] (code -
  /// zero), weight_scale [out, 1] in scale_dtype, and with static_input an input_scale [1].
  bool int8 = false;
  bool static_input = false;
  float input_scale = 0;                ///< static_input: this module's value
};

/// A replaced float tensor of the checkpoint (AWQ's folded norms, a scaled v bias), given as the
/// model uses it: rounded to the checkpoint's dtype, returned as the checkpoint stores it (a
/// (1 + w) norm's w), and `values` set to what the model reads back from that.
std::vector<float> gp_checkpoint_floats(const ModelTensor& t, std::vector<float>& values);

/// Appends the specs of module `m`'s tensors.
void gp_specs(const std::string& m, const GptqMatrix& q, const GpWriteSpec& w, std::vector<StTensorSpec>& specs);
/// Writes them, in the order gp_specs declared.
void gp_write(ShardedSafetensorsWriter& out, const std::string& m, const GptqMatrix& q, const GpWriteSpec& w);

/// The layout's limits on the parameters (AWQ: 4-bit codes, a group size, no g_idx);
/// Errc::invalid_argument naming the one not met.
void gp_check_layout(const GptqConfig& cfg);
/// The warnings a config gives whatever the weights: a ctx beyond the model's training context
/// (n_ctx_train, 0 = unknown), act-order with round to nearest, and group act-order, which vLLM
/// refuses to load.
std::vector<std::string> gp_config_warnings(const GptqConfig& cfg, int64_t n_ctx_train);
/// One linear's checks (the group size divides its rows; whole int32 words in the GPTQ and AWQ
/// layouts; a float type) and, for compressed-tensors, the scale storage its dtype gives
/// (`scale_storage`: 0 F32, 16 F16, 17 BF16; left as it is for the other layouts).
void gp_check_linear(const GptqConfig& cfg, const std::string& module, int64_t rows, int64_t cols, QuantType type,
                     int& scale_storage);

/// What gp_write_directory wrote.
struct GpDirectory {
  std::vector<std::string> files;  ///< config.json, quantize_config.json (GPTQ layout), shards, copied files
  uint64_t data_bytes = 0;         ///< bytes of tensor data
  int64_t n_parameters = 0;        ///< values in the source's tensors
  int64_t n_quantized = 0;         ///< values of the quantized linears
  uint64_t source_bytes = 0;
};

/// Writes a quantized checkpoint of `src_path` (a Hugging Face directory or its .safetensors file)
/// into `od`'s temporary directory (made here once every check has passed): the source's tensors in
/// their order, each quantized linear (a key of `shapes`, its module name; rows, cols, bits and
/// groups filled) replaced by its packing, fetched by `fetch` only when written (`scratch` may hold
/// it), float tensors named in `floats` replaced by those values, config.json with the layout's
/// quantization_config (and quantize_config.json), the tokenizer and generation files. The caller
/// publishes `od`. With cfg.smoothquant the linears are written int8 W8A8 (GpWriteSpec::int8) with
/// the quantization_config of `quantize MODEL smoothquant`; `input_scales` holds each module's
/// static input scale when cfg.smoothquant->static_activations.
GpDirectory gp_write_directory(const std::filesystem::path& src_path, OutputDir& od, const GptqConfig& cfg,
                               const std::map<std::string, GptqMatrix>& shapes,
                               const std::function<const GptqMatrix&(const std::string& module, GptqMatrix& scratch)>& fetch,
                               const std::map<std::string, std::vector<float>>& floats, const Context& ctx,
                               const std::map<std::string, float>& input_scales = {});

}  // namespace lq::gptq_impl
