#include <lq/lq.hpp>

namespace lq {
const char* version() noexcept { return LQ_VERSION; }
}  // namespace lq
