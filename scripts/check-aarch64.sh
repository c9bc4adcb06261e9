#!/usr/bin/env bash
# Cross-builds liblq and its test binary for aarch64 Linux with Debian's g++-aarch64-linux-gnu
# (toolchain: cmake/aarch64-linux-gnu.cmake, build folder build-aarch64, CUDA off) and runs the
# kernel, golden-decode and quantize tests under qemu-aarch64 with the arm64 multiarch libraries.
# Prints the tests that ran, the pass/fail counts and the time taken; exits non-zero on any
# failure. Not part of CI (.ci/run): see docs/aarch64.md.
#
# Usage: scripts/check-aarch64.sh [--no-install] [--jobs N] [--tests "<Catch2 test spec>"]
#   --no-install  do not apt-get what is missing (fail instead)
#   --jobs N      parallel compile jobs (default 2)
#   --tests SPEC  Catch2 test spec to run instead of the default list below
# Environment: LQ_SHARED_DIR (golden files; default ../shared beside the repository),
#              CCACHE_DIR / CCACHE_BASEDIR (used when ccache is installed).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-aarch64"
jobs=2
install=1
# Kernels on every ISA (per-type table, per-ISA kernels, k-quants, i-quants, ternary, panel GEMMs,
# engine kernels),
# golden decode of llama.cpp's files, quantize (golden mixtures and encodes), GGUF I/O.
spec="[types],[kernels],[kquants],[iquants],[perf],[engine],[golden][decode],[quantize],[gguf]"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-install) install=0 ;;
    --jobs) jobs="$2"; shift ;;
    --tests) spec="$2"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
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
run() { "$qemu" -L "$sysroot" "$bin" "$@"; }
echo
echo "check-aarch64: lq_tests built for aarch64 in $((t1 - t0)) s; running under $("$qemu" --version | head -1)"
echo "check-aarch64: test spec $spec"
# Catch2 2's --list-* options exit with the number of tests listed.
names=$(run --list-test-names-only "$spec" | sed '/^$/d' || true)
count=$(grep -c . <<<"$names" || true)
if [[ $count -eq 0 ]]; then
  echo "check-aarch64: no test matches $spec" >&2
  exit 1
fi
echo "check-aarch64: $count test cases:"
sed 's/^/  /' <<<"$names"
log="$build/check-aarch64.log"
set +e
run "$spec" --durations yes 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
t2=$(date +%s)
summary=$(grep -E "^(All tests passed|test cases:|assertions:)" "$log" || true)
echo
echo "check-aarch64: summary (aarch64 under qemu)"
echo "$summary" | sed 's/^/  /'
echo "  build $((t1 - t0)) s, tests $((t2 - t1)) s, total $((t2 - t0)) s"
if [[ $rc -ne 0 ]]; then
  echo "check-aarch64: FAILED (lq_tests exit code $rc)" >&2
  exit 1
fi
echo "check-aarch64: passed"
