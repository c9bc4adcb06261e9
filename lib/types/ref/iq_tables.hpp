// Codebooks and sign tables of the ggml i-quant formats (format constants; see iq_tables.cpp).
#pragma once

#include <cstdint>

namespace lq::ref {

extern const uint8_t kmask_iq2xs[8];
extern const uint8_t ksigns_iq2xs[128];
extern const uint64_t iq2xxs_grid[256];
extern const uint64_t iq2xs_grid[512];
extern const uint64_t iq2s_grid[1024];
extern const uint32_t iq3xxs_grid[256];
extern const uint32_t iq3s_grid[512];
extern const int8_t kvalues_iq4nl[16];
extern const uint64_t iq1s_grid[2048];

}  // namespace lq::ref
