#!/usr/bin/env bash
# End-to-end quantization benchmark on a synthetic ~1B-parameter Llama checkpoint (bf16,
# sharded, random weights with Llama-3.2-1B shapes): wall time and peak RSS of
# `lq quantize MODEL gguf -q LEVEL`, input in the page cache.
#
#   benchmarks/bench_quantize_model.sh [BUILD_DIR] [WORK_DIR] [LEVEL...]
# Defaults: build, /tmp/lq-bench, Q8_0 Q4_K_M. Set LLAMA_QUANTIZE=/path/to/llama-quantize to
# time llama.cpp on the same weights (converted to a BF16 GGUF by lq first) for the ratio.
set -euo pipefail
build=${1:-build}
work=${2:-/tmp/lq-bench}
shift $(( $# > 2 ? 2 : $# )) || true
levels=("$@")
[ ${#levels[@]} -gt 0 ] || levels=(Q8_0 Q4_K_M)
threads=${THREADS:-2}
lq="$build/apps/cli/lq"
mkdir -p "$work"
model="$work/synth-1b"
if [ ! -f "$model/config.json" ]; then
  "$build/benchmarks/make_synthetic_llama" "$model"
fi
cat "$model"/*.safetensors > /dev/null   # page cache warm
for level in "${levels[@]}"; do
  out="$work/synth-$level.gguf"
  for run in 1 2 3; do
    /usr/bin/time -f "lq $level run $run: wall %e s, peak RSS %M KB" \
      "$lq" quantize "$model" gguf -q "$level" -o "$out" --quiet --threads "$threads" > /dev/null
  done
  rm -f "$out"
done
if [ -n "${LLAMA_QUANTIZE:-}" ]; then
  bf16="$work/synth-bf16.gguf"
  [ -f "$bf16" ] || "$lq" quantize "$model" gguf -q BF16 -o "$bf16" --quiet > /dev/null
  cat "$bf16" > /dev/null
  for level in "${levels[@]}"; do
    for run in 1 2 3; do
      /usr/bin/time -o "$work/time.txt" -f "llama-quantize $level run $run: wall %e s, peak RSS %M KB" \
        "$LLAMA_QUANTIZE" "$bf16" "$work/llama-$level.gguf" "$level" "$threads" > /dev/null 2>&1 || true
      cat "$work/time.txt"
    done
    rm -f "$work/llama-$level.gguf"
  done
fi
