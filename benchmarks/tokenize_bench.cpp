// Tokenizer throughput: encodes corpus/wikitext2-test.raw (1.3 MB) as one string with every
// tokenizer found in the shared data folder and prints tokens/s (best of 3 runs).
// Usage: tokenize_bench [text-file]   (shared folder: $LQ_SHARED_DIR, else ../shared)
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/tokenizer.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

fs::path shared_dir() {
  if (const char* env = std::getenv("LQ_SHARED_DIR"); env && *env) return env;
#ifdef LQ_DEFAULT_SHARED_DIR
  return LQ_DEFAULT_SHARED_DIR;
#else
  return fs::path(__FILE__).parent_path() / ".." / ".." / "shared";
#endif
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path shared = shared_dir();
  const fs::path text_file = argc > 1 ? fs::path(argv[1]) : shared / "corpus" / "wikitext2-test.raw";
  std::string text;
  try {
    text = lq::read_file(text_file);
  } catch (const lq::Error& e) {
    fmt::print(stderr, "tokenize_bench: {}\n", e.what());
    return 1;
  }

  struct Source {
    const char* name;
    fs::path path;
    std::function<lq::Tokenizer(const fs::path&)> load;
  };
  const fs::path vocab = shared / "golden" / "vocab";
  const std::vector<Source> sources = {
      {"tiny-llama tokenizer.model", shared / "models/tiny-llama/tokenizer.model", lq::Tokenizer::from_sentencepiece},
      {"tiny-llama tokenizer.json", shared / "models/tiny-llama/tokenizer.json", lq::Tokenizer::from_hf_json},
      {"tiny-llama GGUF", shared / "golden/tiny-llama-F16.gguf", [](const fs::path& p) { return lq::Tokenizer::from_gguf(p); }},
      {"llama-spm GGUF (32k)", vocab / "ggml-vocab-llama-spm.gguf", [](const fs::path& p) { return lq::Tokenizer::from_gguf(p); }},
      {"gpt-2 GGUF", vocab / "ggml-vocab-gpt-2.gguf", [](const fs::path& p) { return lq::Tokenizer::from_gguf(p); }},
      {"gpt-2 tokenizer.json", vocab / "gpt2-hf/tokenizer.json", lq::Tokenizer::from_hf_json},
      {"deepseek-coder GGUF", vocab / "ggml-vocab-deepseek-coder.gguf", [](const fs::path& p) { return lq::Tokenizer::from_gguf(p); }},
      {"falcon GGUF", vocab / "ggml-vocab-falcon.gguf", [](const fs::path& p) { return lq::Tokenizer::from_gguf(p); }},
      {"phi-3 GGUF", vocab / "ggml-vocab-phi-3.gguf", [](const fs::path& p) { return lq::Tokenizer::from_gguf(p); }},
  };

  fmt::print("text: {} ({:.2f} MB)\n\n", text_file.string(), text.size() / 1e6);
  fmt::print("{:<28} {:>8} {:>9} {:>10} {:>8} {:>12} {:>10}\n", "tokenizer", "load s", "tokens", "encode s",
             "MB/s", "tokens/s", "decode s");
  for (const auto& s : sources) {
    if (!fs::exists(s.path)) {
      fmt::print("{:<28} (absent: {})\n", s.name, s.path.string());
      continue;
    }
    try {
      auto t0 = std::chrono::steady_clock::now();
      const lq::Tokenizer tok = s.load(s.path);
      const double load_s = seconds_since(t0);
      double best = 1e30, best_decode = 1e30;
      std::vector<int32_t> ids;
      for (int run = 0; run < 3; ++run) {
        t0 = std::chrono::steady_clock::now();
        ids = tok.encode(text, false);
        best = std::min(best, seconds_since(t0));
        t0 = std::chrono::steady_clock::now();
        const std::string back = tok.decode(ids);
        best_decode = std::min(best_decode, seconds_since(t0));
        if (back.size() == 0 && !text.empty()) fmt::print(stderr, "empty decode\n");
      }
      fmt::print("{:<28} {:>8.3f} {:>9} {:>10.3f} {:>8.2f} {:>12.0f} {:>10.3f}\n", s.name, load_s, ids.size(),
                 best, text.size() / 1e6 / best, ids.size() / best, best_decode);
    } catch (const lq::Error& e) {
      fmt::print("{:<28} error: {}\n", s.name, e.what());
    }
  }
  return 0;
}
