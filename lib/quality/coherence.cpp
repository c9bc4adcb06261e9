// The coherence check: greedy continuations of the quantized model, judged for repetition
// (distinct n-grams) and for fluency (their likelihood under the original model, relative to the
// original's own greedy continuation).
#include "quality/internal.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"
#include <lq/io.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>

namespace lq {

double repetition_score(std::span<const int32_t> tokens, int n) {
  if (n < 1) fail(Errc::invalid_argument, "repetition_score: n must be at least 1, got {}", n);
  const size_t un = static_cast<size_t>(n);
  if (tokens.size() < un) return 1.0;
  const size_t total = tokens.size() - un + 1;
  std::set<std::vector<int32_t>> seen;
  for (size_t i = 0; i < total; ++i) seen.emplace(tokens.begin() + static_cast<std::ptrdiff_t>(i),
                                                  tokens.begin() + static_cast<std::ptrdiff_t>(i + un));
  return static_cast<double>(seen.size()) / static_cast<double>(total);
}

double fluency_score(double mean_logp, double mean_logp_reference) noexcept {
  const double f = std::exp(mean_logp - mean_logp_reference);
  if (std::isnan(f)) return 0.0;
  return std::clamp(f, 0.0, 1.0);
}

const std::vector<std::string>& default_coherence_prompts() {
  static const std::vector<std::string> kPrompts = {
      "Once upon a time",
      "The little dog",
      "One day, a girl named Anna went to the park",
      "The weather today is",
      "My favourite food is",
      "The old man opened the door and saw",
      "In the morning, the children",
      "The best way to learn something new is",
  };
  return kPrompts;
}

std::vector<std::string> load_prompts(const std::filesystem::path& path) {
  std::error_code ec;
  const std::string file = path.string();
  if (!std::filesystem::exists(path, ec)) fail(Errc::calibration_error, "prompts file not found: {}", file);
  if (std::filesystem::is_directory(path, ec)) fail(Errc::calibration_error, "{}: is a directory, not a prompts file", file);
  std::string data;
  try {
    data = read_file(path);
  } catch (const Error& e) {
    fail(Errc::calibration_error, "{}", e.what());
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data);
  } catch (const nlohmann::json::exception& e) {
    fail(Errc::calibration_error, "{}: malformed JSON: {}", file, e.what());
  }
  if (j.is_object() && j.contains("prompts")) j = j["prompts"];
  if (!j.is_array()) fail(Errc::calibration_error, "{}: expected a JSON list of strings or of objects with \"prompt\"", file);
  std::vector<std::string> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& item = j[i];
    std::string p;
    if (item.is_string()) p = item.get<std::string>();
    else if (item.is_object() && item.contains("prompt") && item["prompt"].is_string()) p = item["prompt"].get<std::string>();
    else fail(Errc::calibration_error, "{}: item {}: expected a string or an object with a \"prompt\" string", file, i);
    if (p.find_first_not_of(" \t\r\n") == std::string::npos) fail(Errc::calibration_error, "{}: item {}: the prompt is empty", file, i);
    out.push_back(std::move(p));
  }
  if (out.empty()) fail(Errc::calibration_error, "{}: the prompt list is empty", file);
  return out;
}

namespace {

// `s` with every byte that does not start or continue a well-formed UTF-8 sequence replaced by
// U+FFFD (byte-fallback tokens can stop in the middle of a character).
std::string valid_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && n == 2) ok = c >= 0xC2;
    if (ok && n == 3) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
    }
    if (ok && n == 4) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = c <= 0xF4 && !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
    }
    if (ok) {
      out.append(s, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

}  // namespace

std::string continuation_text(const Tokenizer& tok, std::span<const int32_t> prompt, std::span<const int32_t> generated) {
  std::vector<int32_t> all(prompt.begin(), prompt.end());
  all.insert(all.end(), generated.begin(), generated.end());
  const std::string full = tok.decode(all);
  const std::string head = tok.decode(prompt);
  if (full.compare(0, head.size(), head) == 0) return valid_utf8(full.substr(head.size()));
  return valid_utf8(tok.decode(generated));
}

namespace {

std::vector<int32_t> greedy(const Model& m, const std::vector<int32_t>& prompt, int64_t n, const Context& ctx) {
  Session s(m, SessionOptions{static_cast<int64_t>(prompt.size()) + n + 1, false}, ctx);
  GenerateOptions g;
  g.max_tokens = n;
  g.temperature = 0;
  g.top_k = 0;
  g.top_p = 1;
  g.stop_at_eos = true;
  return generate(s, prompt, g);
}

// Mean natural-log probability per token of `cont` after `prompt` under `m` (one batch).
double mean_logp(const Model& m, const std::vector<int32_t>& prompt, const std::vector<int32_t>& cont,
                 const Context& ctx) {
  if (cont.empty()) return 0;
  std::vector<int32_t> seq = prompt;
  seq.insert(seq.end(), cont.begin(), cont.end() - 1);
  Session s(m, SessionOptions{static_cast<int64_t>(seq.size()) + 1, false}, ctx);
  s.eval(seq, static_cast<int64_t>(prompt.size()) - 1);
  double sum = 0;
  for (size_t j = 0; j < cont.size(); ++j) {
    const auto l = s.logits(static_cast<int64_t>(j));
    const float mx = *std::max_element(l.begin(), l.end());
    double z = 0;
    for (float v : l) z += std::exp(static_cast<double>(v) - mx);
    sum += static_cast<double>(l[static_cast<size_t>(cont[j])]) - mx - std::log(z);
  }
  return sum / static_cast<double>(cont.size());
}

}  // namespace

CoherenceResult coherence_check(const Model& quantized, const Model& original, const Tokenizer& tok,
                                const CoherenceOptions& o, const Context& ctx) {
  Progress& progress = ctx.progress_sink();
  if (o.max_tokens < 1) fail(Errc::invalid_argument, "coherence check: max_tokens must be at least 1, got {}", o.max_tokens);
  if (o.ngram < 1) fail(Errc::invalid_argument, "coherence check: ngram must be at least 1, got {}", o.ngram);
  if (quantized.n_vocab() != original.n_vocab())
    fail(Errc::invalid_argument, "coherence check: the vocabularies differ ({} vs {} tokens)", quantized.n_vocab(),
         original.n_vocab());
  const std::vector<std::string>& prompts = o.prompts.empty() ? default_coherence_prompts() : o.prompts;
  CoherenceResult r;
  double total = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    ctx.check_cancelled();
    const std::string& p = prompts[i];
    if (p.find_first_not_of(" \t\r\n") == std::string::npos)
      fail(Errc::invalid_argument, "coherence check: prompt {} is empty", i);
    const std::vector<int32_t> ids = tok.encode(p, /*add_special=*/true);
    if (ids.empty()) fail(Errc::invalid_argument, "coherence check: prompt {} has no tokens", i);
    CoherenceSample s;
    s.prompt = p;
    s.output_tokens = greedy(quantized, ids, o.max_tokens, ctx);
    const std::vector<int32_t> ref = greedy(original, ids, o.max_tokens, ctx);
    s.output = continuation_text(tok, ids, s.output_tokens);
    s.reference_output = continuation_text(tok, ids, ref);
    s.mean_logp = mean_logp(original, ids, s.output_tokens, ctx);
    s.reference_mean_logp = s.output_tokens == ref ? s.mean_logp : mean_logp(original, ids, ref, ctx);
    s.repetition_score = repetition_score(s.output_tokens, o.ngram);
    s.reference_repetition_score = repetition_score(ref, o.ngram);
    s.grammar_score = fluency_score(s.mean_logp, s.reference_mean_logp);
    const double rep = s.reference_repetition_score > 0
                           ? std::min(1.0, s.repetition_score / s.reference_repetition_score)
                           : 1.0;
    s.score = s.grammar_score * rep;
    s.is_coherent = s.score >= o.coherent_threshold;
    total += s.score;
    r.n_coherent += s.is_coherent;
    r.samples.push_back(std::move(s));
    progress.update("Coherence", static_cast<int64_t>(i + 1), static_cast<int64_t>(prompts.size()), "prompts");
  }
  progress.finish("Coherence");
  r.score = prompts.empty() ? 0 : total / static_cast<double>(prompts.size());
  return r;
}

}  // namespace lq
