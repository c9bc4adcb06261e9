#!/usr/bin/env bash
# Installs the Debian 12 packages liblq needs, only those that are missing. `--test` adds what
# the test suite alone needs (README "Set-up" says why each package is there).
set -euo pipefail
pkgs=(cmake ninja-build g++ libeigen3-dev libxsimd-dev nlohmann-json3-dev libfmt-dev libcxxopts-dev)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(catch2 pkg-config zlib1g-dev chromium)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
