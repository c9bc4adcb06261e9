// Stand-in for amx.cpp where the AMX kernels are not built (a compiler without the tile
// instructions, or a processor other than x86-64): has_amx_bf16() is false, so the engine never
// chooses the AMX kernels; they exist only so that the kernel tables link. No intrinsics here.
#include "engine_kernels.hpp"

namespace lq::cpu {
bool has_amx_bf16() noexcept { return false; }
void gemm_bf16_amx(const QGemmArgs& a) { gemm_bf16(a); }
// Never chosen without AMX (exact_bf16_kernel); kept so that the dispatch table links.
void gemm_bf16x3_amx(const QGemmArgs&) {}
void quantize_act_bf16x3(const float*, int64_t, const QActLayout&, uint8_t*) {}
}  // namespace lq::cpu
