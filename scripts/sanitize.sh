#!/usr/bin/env bash
# The test suite under the sanitizers: the whole suite (ctest: every Catch2 test, the CLI tests
# through an instrumented lq, the fuzz targets replaying their seeds and crash inputs) under
# AddressSanitizer + UndefinedBehaviorSanitizer, and the threading tests under ThreadSanitizer.
# Builds with clang (RelWithDebInfo at -O1) in build-asan and build-tsan: the library, lq and
# the test binary only. Any report fails the run (halt_on_error). Prints each part's wall time.
# Too slow for CI on two cores (a build from scratch per sanitizer): run it before a release and
# after changing a reader, the thread pool or the engine's parallel code.
#
#   scripts/sanitize.sh [asan|tsan|all] [-j JOBS] [-- CTEST_ARGS...]
#     asan   build-asan, the whole suite          tsan   build-tsan, the threading tests
#     all    both (default)
# Each test runs under a time limit (ctest --timeout; TEST_TIMEOUT seconds, default 1800: a few
# tests take minutes under ASan on two cores); a test over it fails the run.
# Environment: CC/CXX (default clang/clang++), ASAN_BUILD / TSAN_BUILD (build directories),
# NICE (default 10), CTEST_JOBS (default 2), TEST_TIMEOUT (default 1800).
set -euo pipefail
cd "$(dirname "$0")/.."
what=all jobs=2 ctest_args=()
while (($#)); do
  case "$1" in
    asan|tsan|all) what=$1; shift ;;
    -j) jobs=$2; shift 2 ;;
    --) shift; ctest_args=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "sanitize.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
NICE=${NICE:-10}
CTEST_JOBS=${CTEST_JOBS:-2}
TEST_TIMEOUT=${TEST_TIMEOUT:-1800}
# The tests that exercise threads: the pool, cancellation of concurrent quantizations, results
# independent of the thread count, quantization (a pool per tensor batch).
TSAN_TESTS='[threads],[concurrency],[quantize],analyze: results do not depend on the thread count,types: rows do not depend on how they are batched or threaded,smoothquant: cancellation leaves no directory'

configure() {  # DIR SANITIZERS [CMAKE_ARGS...]
  cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${@:3}" \
        "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
        -DCMAKE_C_COMPILER="${CC:-clang}" -DCMAKE_CXX_COMPILER="${CXX:-clang++}" -DLQ_SANITIZE="$2" -DLQ_CUDA=OFF \
        -DLQ_BUILD_TESTS=ON -DLQ_BUILD_EXAMPLES=OFF -DLQ_BUILD_BENCHMARKS=OFF \
        $(command -v ccache >/dev/null && echo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache) >/dev/null
}

status=0
report=()
if [[ $what == asan || $what == all ]]; then
  B=${ASAN_BUILD:-build-asan}
  t0=$(date +%s)
  # With libFuzzer's coverage too (clang): the fuzz targets are then real fuzzers (ctest replays
  # their inputs all the same), and `BUILD=build-asan scripts/fuzz.sh` fuzzes without a third
  # build of the library. The instrumentation costs the suite little.
  fuzz=()
  [[ $("${CXX:-clang++}" --version) == *clang* ]] && fuzz=(-DLQ_BUILD_FUZZERS=ON)
  configure "$B" address,undefined "${fuzz[@]}"
  # lq_static and lq_shared too: public_api_exported and install_check read them.
  nice -n "$NICE" cmake --build "$B" -j "$jobs" --target lq_tests lq_cli lq_static lq_shared \
      $(ls tests/fuzz/fuzz_*.cpp | xargs -n1 basename | sed 's/\.cpp$//')
  t1=$(date +%s)
  export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=0
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  s=0
  nice -n "$NICE" ctest --test-dir "$B" --output-on-failure -j "$CTEST_JOBS" --timeout "$TEST_TIMEOUT" \
      "${ctest_args[@]}" || s=$?
  t2=$(date +%s)
  unset ASAN_OPTIONS UBSAN_OPTIONS
  report+=("ASan+UBSan: build $((t1 - t0)) s, whole suite $((t2 - t1)) s: $([[ $s == 0 ]] && echo passed || echo FAILED)")
  ((s == 0)) || status=1
fi
if [[ $what == tsan || $what == all ]]; then
  B=${TSAN_BUILD:-build-tsan}
  t0=$(date +%s)
  configure "$B" thread
  nice -n "$NICE" cmake --build "$B" -j "$jobs" --target lq_tests lq_cli
  t1=$(date +%s)
  # The threading tests by name, through ctest (each under the time limit; a skip is a skip):
  # Catch's names for the selection, made into one anchored regex.
  # (Catch2's --list-* exits with the number of tests it lists, hence the || true.)
  names=$({ "$B/tests/lq_tests" --list-test-names-only "$TSAN_TESTS" || true; } | sed -e '/^$/d' -e 's/[][\\.*^$(){}+?|]/\\&/g')
  [[ -n $names ]] || { echo "sanitize.sh: no threading tests selected" >&2; exit 1; }
  regex="^($(paste -sd'|' <<<"$names"))\$"
  s=0
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 nice -n "$NICE" ctest --test-dir "$B" --output-on-failure \
      -j "$CTEST_JOBS" --timeout "$TEST_TIMEOUT" -R "$regex" "${ctest_args[@]}" || s=$?
  t2=$(date +%s)
  report+=("TSan: build $((t1 - t0)) s, threading tests ($(wc -l <<<"$names")) $((t2 - t1)) s: $([[ $s == 0 ]] && echo passed || echo FAILED)")
  ((s == 0)) || status=1
fi
printf '%s\n' "${report[@]}"
exit "$status"
