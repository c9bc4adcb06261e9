// Profile methods and ladders: parsing a rule's method (tensor type or level) and the ordered
// type lists the solver and super-weight protection use. Must not touch models or files.
#include "profile/methods.hpp"

#include <lq/error.hpp>
#include "core/fail.hpp"

namespace lq::profile {

Method parse_method(const std::string& m, const std::string& source) {
  if (auto t = parse_quant_type(m); t && type_info(*t).storable) return {t, std::nullopt};
  if (auto f = parse_file_type(m)) return {std::nullopt, f};
  fail(Errc::profile_error, "{}: unknown quantization method '{}' (a tensor type such as Q4_K or a level such as Q4_K_M)",
       source, m);
}

const std::vector<QuantType>& default_ladder() {
  static const std::vector<QuantType> kLadder = {
      QuantType::IQ1_S, QuantType::IQ1_M, QuantType::IQ2_XXS, QuantType::IQ2_XS, QuantType::IQ2_S,
      QuantType::IQ3_XXS, QuantType::Q2_K, QuantType::IQ3_S, QuantType::Q3_K, QuantType::IQ4_XS,
      QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K, QuantType::Q8_0};
  return kLadder;
}

const std::vector<QuantType>& protection_ladder() {
  static const std::vector<QuantType> kLadder = {QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K, QuantType::Q8_0,
                                                 QuantType::F16, QuantType::F32};
  return kLadder;
}

}  // namespace lq::profile
