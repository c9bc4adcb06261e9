#!/usr/bin/env bash
# Set-up command 2: install what is missing, build everything (library, CLI, examples,
# benchmarks, tests) and run the whole test suite. Ends with the count and names of the tests
# ctest skipped (a test that cannot run here: no ../shared, no CUDA device, no AMX); with
# CI=true a test that lacks ../shared fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test
cmake -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=Release -DLQ_BUILD_TESTS=ON -DLQ_BUILD_EXAMPLES=ON \
      -DLQ_BUILD_BENCHMARKS=ON
cmake --build build-test
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
ctest --test-dir build-test --output-on-failure -j "$(nproc)" 2>&1 | tee "$log" || status=$?
# ctest lists them under "The following tests did not run:" as "<n> - <name> (Skipped)".
mapfile -t skipped < <(sed -nE 's/^[[:space:]]*[0-9]+ - (.*) \(Skipped\)[[:space:]]*$/\1/p' "$log")
if ((${#skipped[@]})); then
  names=$(printf '%s; ' "${skipped[@]}")
  echo "skipped: ${#skipped[@]} (${names%; })"
else
  echo "skipped: 0"
fi
exit "$status"
