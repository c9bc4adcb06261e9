#pragma once

#include <lq/backend.hpp>

#include <memory>

namespace lq::cpu {
/// The CPU back-end (always present, registered last).
std::unique_ptr<Backend> make_backend();
}  // namespace lq::cpu
