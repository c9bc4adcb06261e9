#!/usr/bin/env bash
# Set-up command 1: install what is missing, build liblq and lq, and quantize the example model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLQ_BUILD_TESTS=OFF -DLQ_BUILD_BENCHMARKS=OFF
cmake --build build
./build/apps/cli/lq quantize examples/tiny-llama gguf -q Q4_K_M -o build/tiny-llama-Q4_K_M.gguf
./build/apps/cli/lq info build/tiny-llama-Q4_K_M.gguf | head -12
