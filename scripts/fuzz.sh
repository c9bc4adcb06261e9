#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.cpp: every reader of untrusted bytes) with clang,
# -fsanitize=fuzzer,address,undefined on the whole library, in build-fuzz, and runs each target
# from its seeds (tests/fuzz/<target>/) for N executions or S seconds, whichever comes first.
# A crash, leak, sanitizer report, uncaught exception (anything but lq::Error), a run over 10 s
# or an allocation over 1 GiB stops the target; its input is kept in build-fuzz/crashes/<target>/
# (add it to tests/data/fuzz/<target>/ with the fix: ctest replays those). The grown corpora
# stay in build-fuzz/corpus/<target>/. Ends with a table: executions, coverage (cov: edges),
# features, corpus size, and the result per target.
#
#   scripts/fuzz.sh [-n RUNS] [-t SECONDS] [-j JOBS] [--no-build] [TARGET...]
#     -n RUNS     executions per target (default 10000000)
#     -t SECONDS  time limit per target (default 0: none)
#     -j JOBS     build jobs (default 2)
#     TARGET      e.g. gguf safetensors (default: every tests/fuzz/fuzz_*.cpp)
# Environment: CC/CXX (default clang/clang++), BUILD (default build-fuzz), NICE (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=10000000 seconds=0 jobs=2 build=1 targets=()
while (($#)); do
  case "$1" in
    -n) runs=$2; shift 2 ;;
    -t) seconds=$2; shift 2 ;;
    -j) jobs=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
B=${BUILD:-build-fuzz}
NICE=${NICE:-10}
if ((${#targets[@]} == 0)); then
  for f in tests/fuzz/fuzz_*.cpp; do t=$(basename "$f" .cpp); targets+=("${t#fuzz_}"); done
fi
if ((build)); then
  command -v "${CXX:-clang++}" >/dev/null || { echo "fuzz.sh: needs clang++ (libFuzzer)" >&2; exit 2; }
  cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
        -DCMAKE_C_COMPILER="${CC:-clang}" -DCMAKE_CXX_COMPILER="${CXX:-clang++}" \
        -DLQ_SANITIZE=address,undefined -DLQ_BUILD_FUZZERS=ON -DLQ_CUDA=OFF \
        -DLQ_BUILD_EXAMPLES=OFF -DLQ_BUILD_BENCHMARKS=OFF \
        $(command -v ccache >/dev/null && echo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache) >/dev/null
  nice -n "$NICE" cmake --build "$B" -j "$jobs" --target "${targets[@]/#/fuzz_}"
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
mkdir -p "$B/logs"
rows=() failed=0
for t in "${targets[@]}"; do
  corpus="$B/corpus/$t" crashes="$B/crashes/$t/"
  mkdir -p "$corpus" "$crashes"
  log="$B/logs/$t.log"
  start=$(date +%s)
  status=0
  nice -n "$NICE" "$B/tests/fuzz/fuzz_$t" "$corpus" "tests/fuzz/$t" -runs="$runs" -max_total_time="$seconds" \
      -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1 -artifact_prefix="$crashes" \
      >"$log" 2>&1 || status=$?
  secs=$(($(date +%s) - start))
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")
  if ((status == 0)); then result=ok; else result="FAILED ($(ls "$crashes" | head -1))"; failed=1; fi
  rows+=("| $t | ${execs:-?} | ${secs}s | ${cov:-?} | ${ft:-?} | ${corp:-?} | $result |")
  echo "fuzz $t: ${execs:-?} executions in ${secs}s, cov ${cov:-?}, corpus ${corp:-?}: $result (log $log)"
done
echo
echo "| target | executions | time | cov | ft | corpus | result |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
exit "$failed"
