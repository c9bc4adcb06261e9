// The built-in dynamic profiles (attention-high, balanced, compression-max, quality, speed):
// their rules, size targets and importance-free fallback rules. Data only: no matching or solving.
#include <lq/profile.hpp>

#include <nlohmann/json.hpp>

namespace lq {
namespace {

using nlohmann::json;

ProfileRule rule(std::string pattern, std::string layers, std::string method, std::string why) {
  return {std::move(pattern), std::move(layers), std::move(method), std::move(why)};
}

// A preset: its name, description, rules and the type of tensors no rule matches.
Profile preset(std::string name, std::string description, std::vector<ProfileRule> rules, std::string default_method) {
  Profile p;
  p.name = std::move(name);
  p.description = std::move(description);
  p.rules = std::move(rules);
  p.default_method = std::move(default_method);
  return p;
}

std::vector<Profile> make_presets() {
  std::vector<Profile> v;
  v.push_back(preset("attention-high", "Attention layers at 4-bit, MLP at 2-bit",
                     {rule("output.weight", "", "Q6_K", "LM head - very high importance"),
                      rule("token_embd.weight", "", "Q4_K", "Embeddings"),
                      rule("blk.*.attn_v.weight", "", "Q5_K", "Value projections are the most sensitive attention weights"),
                      rule("blk.*.attn_*", "", "Q4_K", "Attention at 4-bit"),
                      rule("blk.*.ffn_down.weight", "0%-10%", "Q3_K", "First MLP output projections are sensitive"),
                      rule("blk.*.ffn_*", "", "Q2_K", "MLP at 2-bit")},
                     "Q4_K"));
  {
    Profile p = preset("balanced", "Even distribution based on importance (solver to 3.5 bpw with an imatrix)",
                       {rule("output.weight", "", "Q6_K", "LM head - very high importance"),
                        rule("token_embd.weight", "", "Q4_K", "Embeddings")},
                       "Q3_K");
    p.target_bpw = 3.5;
    p.candidates = {"Q2_K", "IQ3_XXS", "IQ3_S", "Q3_K", "IQ4_XS", "Q4_K", "Q5_K", "Q6_K"};
    // Without importance data the same budget is approximated by role and depth.
    p.provenance["fallback_rules"] = json::array(
        {{{"layer_pattern", "blk.*.attn_v.weight"}, {"quantization_method", "Q5_K"}},
         {{"layer_pattern", "blk.*.ffn_down.weight"}, {"quantization_method", "Q4_K"}},
         {{"layer_pattern", "blk.*"}, {"layers", "0%-10%"}, {"quantization_method", "Q4_K"}},
         {{"layer_pattern", "blk.*"}, {"layers", "90%-100%"}, {"quantization_method", "Q4_K"}}});
    v.push_back(p);
  }
  {
    Profile p = preset("compression-max",
                       "Minimize size while maintaining coherence (solver to 2.5 bpw with an imatrix)",
                       {rule("output.weight", "", "Q5_K", "LM head kept usable"),
                        rule("token_embd.weight", "", "Q2_K", "Embeddings (lookup only: tolerant)")},
                       "Q2_K");
    p.target_bpw = 2.5;
    p.candidates = {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "Q2_K", "IQ3_S", "Q3_K", "IQ4_XS", "Q4_K"};
    p.provenance["fallback_rules"] = json::array(
        {{{"layer_pattern", "blk.*.attn_v.weight"}, {"quantization_method", "Q3_K"}},
         {{"layer_pattern", "blk.*.ffn_down.weight"}, {"layers", "0%-10%"}, {"quantization_method", "Q3_K"}}});
    v.push_back(p);
  }
  v.push_back(preset("quality", "Higher bits for the important layers (embeddings, first and last 10%)",
                     {rule("token_embd.weight", "", "Q8_0", "Embedding layer - high importance"),
                      rule("output.weight", "", "Q8_0", "LM head - very high importance"),
                      rule("blk.*", "0%-10%", "Q6_K", "Early layers - higher importance"),
                      rule("blk.*", "90%-100%", "Q5_K_M", "Final layers - higher importance"),
                      rule("blk.*", "", "Q4_K_M", "Middle layers - standard quantization")},
                     "Q4_K"));
  v.push_back(preset("speed", "Lower bits overall with fast kernels",
                     {rule("output.weight", "", "Q6_K", "LM head"), rule("token_embd.weight", "", "Q4_K", "Embeddings"),
                      rule("blk.*", "", "Q4_K_S", "All layers at 4-bit")},
                     "Q4_K"));
  return v;
}

}  // namespace

const std::vector<Profile>& preset_profiles() {
  static const std::vector<Profile> kPresets = [] {
    auto v = make_presets();
    for (auto& p : v) p.provenance["source"] = "preset";
    return v;
  }();
  return kPresets;
}

}  // namespace lq
