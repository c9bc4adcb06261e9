// ModelSource over a GGUF file: metadata and tensors as they are in the file.
#include "model_sources.hpp"

#include <lq/error.hpp>

#include <cstring>

namespace lq {
namespace {

class GgufSource final : public ModelSource {
 public:
  explicit GgufSource(const std::filesystem::path& path) : path_(path), reader_(path) {
    const auto& m = reader_.metadata();
    const std::string arch = m.get_string("general.architecture").value_or("");
    if (arch.empty()) fail(Errc::invalid_model, "{}: no general.architecture key", path.string());
    config_ = config_from_gguf(m, path.string());
    for (const auto& t : reader_.tensors()) {
      ModelTensor mt;
      mt.name = t.name;
      mt.source_name = t.name;
      mt.type = t.type;
      mt.ne = t.ne;
      tensors_.push_back(std::move(mt));
      infos_.push_back(&t);
    }
    config_.tie_embeddings = find("output.weight") == nullptr;
  }

  const ModelConfig& config() const override { return config_; }
  const std::vector<ModelTensor>& tensors() const override { return tensors_; }

  void read_rows_f32(const ModelTensor& t, int64_t row0, int64_t nrows, float* dst) const override {
    reader_.read_rows_f32(info(t), row0, nrows, dst);
  }

  void read_rows_raw(const ModelTensor& t, int64_t row0, int64_t nrows, void* dst) const override {
    const gguf::TensorInfo& ti = info(t);
    const size_t rb = t.row_bytes();
    const auto data = reader_.data(ti);
    std::memcpy(dst, data.data() + static_cast<size_t>(row0) * rb, static_cast<size_t>(nrows) * rb);
  }

  void release(const ModelTensor& t) const override { reader_.release(info(t)); }
  gguf::Metadata gguf_metadata() const override { return reader_.metadata(); }
  bool is_gguf() const override { return true; }
  const std::filesystem::path& path() const override { return path_; }
  uint64_t source_bytes() const override { return std::filesystem::file_size(path_); }

 private:
  const gguf::TensorInfo& info(const ModelTensor& t) const {
    const size_t i = static_cast<size_t>(&t - tensors_.data());
    LQ_ASSERT(i < infos_.size());
    return *infos_[i];
  }

  std::filesystem::path path_;
  gguf::Reader reader_;
  ModelConfig config_;
  std::vector<ModelTensor> tensors_;
  std::vector<const gguf::TensorInfo*> infos_;
};

}  // namespace

ModelConfig config_from_gguf(const gguf::Metadata& m, const std::string& file) {
  ModelConfig c;
  c.architecture = m.get_string("general.architecture").value_or("");
  c.model_type = c.architecture;
  c.name = m.get_string("general.name").value_or("");
  const std::string a = c.architecture + ".";
  auto req = [&](const std::string& key) {
    auto v = m.get_int(a + key);
    if (!v) fail(Errc::invalid_model, "{}: missing or non-integer metadata key '{}{}'", file, a, key);
    return *v;
  };
  c.n_embd = req("embedding_length");
  c.n_layer = req("block_count");
  c.n_ctx_train = m.get_int(a + "context_length").value_or(0);
  c.n_ff = m.get_int(a + "feed_forward_length").value_or(0);
  c.n_head = m.get_int(a + "attention.head_count").value_or(0);
  c.n_head_kv = m.get_int(a + "attention.head_count_kv").value_or(c.n_head);
  c.head_dim = m.get_int(a + "attention.key_length").value_or(c.n_head ? c.n_embd / c.n_head : 0);
  c.rms_eps = static_cast<float>(m.get_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_theta = static_cast<float>(m.get_float(a + "rope.freq_base").value_or(10000.0));
  if (auto t = m.get_string(a + "rope.scaling.type"); t && *t != "none") {
    RopeScaling rs;
    rs.type = *t;
    rs.factor = static_cast<float>(m.get_float(a + "rope.scaling.factor").value_or(1.0));
    rs.original_context = m.get_int(a + "rope.scaling.original_context_length").value_or(0);
    c.rope_scaling = rs;
  }
  if (const auto* tok = m.find("tokenizer.ggml.tokens"); tok && tok->is_array()) c.n_vocab = static_cast<int64_t>(tok->size());
  c.n_vocab = m.get_int(a + "vocab_size").value_or(c.n_vocab);
  c.sliding_window = m.get_int(a + "attention.sliding_window").value_or(0);
  c.qkv_bias = c.architecture == "qwen2";
  return c;
}

std::unique_ptr<ModelSource> open_gguf_source(const std::filesystem::path& path) {
  return std::make_unique<GgufSource>(path);
}

}  // namespace lq
