// Small helpers the benchmarks share: comma lists, wall-clock seconds, and running llama.cpp's
// tools beside ours (their output and log timestamps).
#pragma once

#include <chrono>
#include <cstdio>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace lq::bench {

/// "a,b,,c" -> {"a", "b", "c"}.
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

/// Monotonic wall-clock seconds.
inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Seconds of llama.cpp's "M.SS.mmm.uuu" log timestamp at the start of `line`.
inline std::optional<double> llama_log_time(const std::string& line) {
  static const std::regex re(R"(^(\d+)\.(\d+)\.(\d+)\.(\d+) )");
  std::smatch m;
  if (!std::regex_search(line, m, re)) return std::nullopt;
  return std::stod(m[1]) * 60 + std::stod(m[2]) + std::stod(m[3]) * 1e-3 + std::stod(m[4]) * 1e-6;
}

/// Runs a shell command and returns its stdout and stderr together.
inline std::string run_capture(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen((cmd + " 2>&1").c_str(), "r")) {
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    pclose(p);
  }
  return out;
}

}  // namespace lq::bench
