// A program using an installed liblq through its public headers only: quantizes a row to Q4_0
// and back with the scalar reference, and names an escaped string; prints what it found.
#include <lq/lq.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

int main() {
  const lq::TypeInfo& q4 = lq::type_info(lq::QuantType::Q4_0);
  std::vector<float> x(64), y(64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.3f * static_cast<float>(i));
  std::vector<uint8_t> q(q4.row_bytes(64));
  q4.quantize_ref(x.data(), q.data(), 1, 64, nullptr);
  q4.dequantize_ref(q.data(), y.data(), 64);
  double err = 0;
  for (size_t i = 0; i < x.size(); ++i) err = std::fmax(err, std::fabs(x[i] - y[i]));
  const std::string e = lq::escape_text("a\xff");
  std::printf("liblq %s %s max error %.3f %s\n", lq::version(), q4.name, err, e.c_str());
  return err < 0.2 && e == "a\\xff" ? 0 : 1;
}
