#!/usr/bin/env bash
# Set-up command 2: install what is missing, build everything (library, CLI, examples,
# benchmarks, tests) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=Release -DLQ_BUILD_TESTS=ON -DLQ_BUILD_EXAMPLES=ON \
      -DLQ_BUILD_BENCHMARKS=ON
cmake --build build-test
ctest --test-dir build-test --output-on-failure -j "$(nproc)"
