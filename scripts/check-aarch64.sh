#!/usr/bin/env bash
# Cross-builds liblq and its test binary for aarch64 Linux with Debian's g++-aarch64-linux-gnu
# (toolchain: cmake/aarch64-linux-gnu.cmake, build folder build-aarch64, CUDA off) and runs the
# kernel, golden-decode and quantize tests under qemu-aarch64 with the arm64 multiarch libraries.
# Each test case runs on its own with a time limit; the script prints each one's result (passed,
# failed, or timed out) and time, the counts and the total time; exits non-zero when a test fails
# or times out. First it checks that qemu-user can start a thread on this host (a 3-line probe):
# where it cannot, every test that starts one (thread pools, the background file writer) hangs,
# and the script says so. Not part of CI (.ci/run): see docs/aarch64.md.
#
# Usage: scripts/check-aarch64.sh [--no-install] [--jobs N] [--tests "<Catch2 test spec>"] [--limit S]
#   --no-install  do not apt-get what is missing (fail instead)
#   --jobs N      parallel compile jobs (default 2)
#   --tests SPEC  Catch2 test spec to run instead of the default list below
#   --limit S     seconds each test case may take under qemu (default 900)
# Environment: LQ_SHARED_DIR (golden files; default ../shared beside the repository),
#              CCACHE_DIR / CCACHE_BASEDIR (used when ccache is installed).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-aarch64"
jobs=2
install=1
limit=900
# Kernels on every ISA (per-type table, per-ISA kernels, k-quants, i-quants, ternary, panel GEMMs,
# engine kernels),
# golden decode of llama.cpp's files, quantize (golden mixtures and encodes), GGUF I/O.
spec="[types],[kernels],[kquants],[iquants],[perf],[engine],[golden][decode],[quantize],[gguf]"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-install) install=0 ;;
    --jobs) jobs="$2"; shift ;;
    --tests) spec="$2"; shift ;;
    --limit) limit="$2"; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "check-aarch64: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

sysroot=/usr/aarch64-linux-gnu
qemu="qemu-aarch64-static"
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# ---- packages ------------------------------------------------------------------------------
# Host tools, then the arm64 libraries the build links or includes (fmt, xsimd). nlohmann-json,
# cxxopts and Catch2 2 are header-only: the host's packages serve both architectures.
missing=()
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
command -v "$qemu" >/dev/null || missing+=(qemu-user-static)
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
for p in libfmt-dev:arm64 libxsimd-dev:arm64 nlohmann-json3-dev libcxxopts-dev catch2; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $install -eq 0 ]]; then
    echo "check-aarch64: missing packages: ${missing[*]}" >&2
    exit 1
  fi
  echo "check-aarch64: installing ${missing[*]}"
  dpkg --print-foreign-architectures | grep -qx arm64 || as_root dpkg --add-architecture arm64
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- cross build ---------------------------------------------------------------------------
launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "$root")}"
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
t0=$(date +%s)
mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DLQ_CUDA=OFF -DLQ_BUILD_TESTS=ON -DLQ_BUILD_EXAMPLES=OFF \
  -DLQ_BUILD_BENCHMARKS=OFF "${launcher[@]}" >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j "$jobs" --target lq_tests
t1=$(date +%s)
bin="$build/tests/lq_tests"
aarch64-linux-gnu-readelf -h "$bin" | grep -q "Machine:.*AArch64" ||
  { echo "check-aarch64: $bin is not an aarch64 program" >&2; exit 1; }

# ---- tests under qemu ----------------------------------------------------------------------
# The dynamic loader comes from the cross sysroot (qemu's -L); the C library must be the same
# build. Without the search path below the loader takes libc.so.6 from the host's arm64 multiarch
# package (libc6:arm64, pulled in by libfmt-dev:arm64) through the host's ld.so.cache: when the two
# glibc builds differ (2.36-8cross1 against 2.36-9+deb12u14 on Debian 12), the loader's shared
# data layout disagrees with libc's and the first pthread_create spins forever walking a stack
# list it reads at the wrong offset. The cross libraries first, then the multiarch ones (libfmt).
libpath="$sysroot/lib:/usr/lib/aarch64-linux-gnu:/lib/aarch64-linux-gnu"
qemu_run=("$qemu" -L "$sysroot" -E "LD_LIBRARY_PATH=$libpath")
run() { "${qemu_run[@]}" "$bin" "$@"; }
# Tests that start the lq program run it through the same emulator (tests/support: cli_path).
export LQ_TEST_CLI_WRAPPER="$(command -v "$qemu") -L $sysroot -E LD_LIBRARY_PATH=$libpath"
echo
echo "check-aarch64: lq_tests built for aarch64 in $((t1 - t0)) s; running under $("$qemu" --version | head -1)"

# Can the emulated program start a thread? (It could not while the loader and libc above came from
# two glibc builds.)
probe="$build/thread_probe"
printf '#include <thread>\nint main() { std::thread t([] {}); t.join(); }\n' >"$probe.cpp"
aarch64-linux-gnu-g++ -O1 "$probe.cpp" -o "$probe" -pthread
if timeout 60 "${qemu_run[@]}" "$probe"; then
  echo "check-aarch64: qemu-user starts threads on this host"
  threads_ok=1
else
  echo "check-aarch64: the emulated program never returns from pthread_create (probe: $probe.cpp);"
  echo "  every test that starts a thread (thread pools, the background file writer) will time out"
  threads_ok=0
fi

echo "check-aarch64: test spec $spec, at most $limit s a test case"
# Catch2 2's --list-* options exit with the number of tests listed.
names=$(run --list-test-names-only "$spec" | sed '/^$/d' || true)
count=$(grep -c . <<<"$names" || true)
if [[ $count -eq 0 ]]; then
  echo "check-aarch64: no test matches $spec" >&2
  exit 1
fi
echo "check-aarch64: $count test cases"
log="$build/check-aarch64.log"
: >"$log"
passed=0 failed=0 timedout=0 skipped=0
while IFS= read -r name; do
  # A test name is a Catch2 spec too; escape the characters the spec syntax gives a meaning.
  esc=$(sed 's/[],[\\*]/\\&/g' <<<"$name")
  s0=$(date +%s)
  set +e
  timeout "$limit" "${qemu_run[@]}" "$bin" "$esc" >>"$log" 2>&1
  rc=$?
  set -e
  s1=$(date +%s)
  if [[ $rc -eq 0 ]]; then
    result=passed; passed=$((passed + 1))
  elif [[ $rc -eq 77 ]]; then
    result=skipped; skipped=$((skipped + 1))
  elif [[ $rc -eq 124 ]]; then
    result="timed out"; timedout=$((timedout + 1))
  else
    result="FAILED (exit $rc)"; failed=$((failed + 1))
  fi
  printf '  %-10s %5d s  %s\n' "$result" "$((s1 - s0))" "$name"
done <<<"$names"
t2=$(date +%s)
echo
echo "check-aarch64: summary (aarch64 under qemu)"
echo "  $count test cases: $passed passed, $skipped skipped, $failed failed, $timedout timed out (log: $log)"
echo "  build $((t1 - t0)) s, tests $((t2 - t1)) s, total $((t2 - t0)) s"
if [[ $failed -ne 0 || $timedout -ne 0 ]]; then
  [[ $threads_ok -eq 0 && $failed -eq 0 ]] &&
    echo "check-aarch64: only timeouts, and the emulated program cannot start threads (see above)" >&2
  echo "check-aarch64: FAILED" >&2
  exit 1
fi
echo "check-aarch64: passed"
