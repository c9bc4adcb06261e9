#!/usr/bin/env bash
# Install check: `cmake --install` of a liblq build tree into a temporary prefix, then a small
# consumer built against it three ways: find_package(lq) with the static target (lq::lq) and with
# the shared one (lq::lq_shared), and pkg-config (lq.pc). Each program runs and must say so.
# Usage: check_install.sh BUILD_DIR SOURCE_DIR [CXX_COMPILER]   (run by ctest as install_check)
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
cxx=${3:-c++}
work=$(mktemp -d "${TMPDIR:-/tmp}/lq-install-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

step() { echo "== $*"; }
step "build the libraries (no-op when they are up to date)"
cmake --build "$build" --target lq_static lq_shared lq_cli >/dev/null
step "install into $prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/lq/lq.hpp; do test -f "$prefix/$f" || { echo "missing $f"; exit 1; }; done
config=$(find "$prefix" -name lqConfig.cmake | head -n1)
pc=$(find "$prefix" -name lq.pc | head -n1)
test -n "$config" || { echo "lqConfig.cmake was not installed"; exit 1; }
test -n "$pc" || { echo "lq.pc was not installed"; exit 1; }

step "find_package(lq): static and shared targets"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$src/tests/install/consumer" -B "$work/consumer" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
"$work/consumer/consumer_static"
"$work/consumer/consumer_shared"
# The shared program really uses the shared library.
# (ldd's output is read whole first: `ldd | grep -q` under pipefail fails at random when grep
# exits before ldd has written everything and ldd dies of SIGPIPE.)
if command -v ldd >/dev/null; then
  shared_libs=$(ldd "$work/consumer/consumer_shared")
  static_libs=$(ldd "$work/consumer/consumer_static")
  grep -q "$prefix/.*liblq\.so" <<<"$shared_libs" || { echo "consumer_shared does not load $prefix's liblq.so"; exit 1; }
  ! grep -q "liblq\.so" <<<"$static_libs" || { echo "consumer_static loads liblq.so"; exit 1; }
fi

step "pkg-config"
if command -v pkg-config >/dev/null; then
  export PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  test "$(pkg-config --modversion lq)" = "$(sed -n 's/^Version: //p' "$pc")"
  # shellcheck disable=SC2046
  "$cxx" -std=c++20 -O1 "$src/tests/install/consumer/main.cpp" -o "$work/consumer_pc" $(pkg-config --cflags --libs lq) \
         -Wl,-rpath,"$(pkg-config --variable=libdir lq)"
  "$work/consumer_pc"
else
  echo "pkg-config not found: that part is not checked"
fi
echo "install check passed"
