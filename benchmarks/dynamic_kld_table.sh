#!/bin/bash
# The table of dynamic quantization (--objective kld and the default error objective) against
# uniform levels at equal size, on the tiny model and on every model directory given (e.g. the
# zoo's): for each model an importance matrix from ../shared/corpus/calibration.txt (64 chunks
# of 256 tokens; the golden one for the tiny model), then benchmarks/dynamic_kld_bench, whose
# output (and a JSON file per model) lands in OUT.
#
#   dynamic_kld_table.sh BUILD_DIR OUT_DIR [MODEL_DIR...]
#
# Settings through the environment: LEVELS (default Q2_K,Q3_K_M,Q4_K_M,Q5_K_M,IQ2_XXS,IQ1_M),
# CHUNKS (KLD chunks of eval.txt, 256 tokens; default 40), SENS_CHUNKS / SENS_CTX (sensitivity
# chunks and length; default 4 x 256), SENS_TYPES (types measured; default every candidate),
# VALIDATE (a probe type: also the one-probe estimate's rank correlation and its solve), NO_TINY=1
# (only the models given), THREADS (default: all), GPTQ=1 (also the uniform level and the kld mix
# with GPTQ's error feedback, calibrated on calibration.txt, 64 x 256). A model directory holding eval.txt is
# evaluated on it, else on ../shared/corpus/eval.txt.
set -euo pipefail
build=${1:?usage: dynamic_kld_table.sh BUILD_DIR OUT_DIR [MODEL_DIR...]}
out=${2:?usage: dynamic_kld_table.sh BUILD_DIR OUT_DIR [MODEL_DIR...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED:-$here/../../shared}
lq=$build/apps/cli/lq
bench=$build/benchmarks/dynamic_kld_bench
mkdir -p "$out"
models=("$@")
[ -z "${NO_TINY:-}" ] && models=("$shared/models/tiny-llama" "$@")
levels=${LEVELS:-Q2_K,Q3_K_M,Q4_K_M,Q5_K_M,IQ2_XXS,IQ1_M}
threads=()
[ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
for m in "${models[@]}"; do
  name=$(basename "$m")
  im=$out/$name.imatrix
  if [ "$name" = tiny-llama ] && [ -f "$shared/golden/imatrix.gguf" ]; then
    cp "$shared/golden/imatrix.gguf" "$im"
  elif [ ! -f "$im" ]; then
    "$lq" analyze "$m" --calibration-data "$shared/corpus/calibration.txt" --calibration-samples 64 --ctx 256 \
      --no-cache -o "$im" "${threads[@]}" --quiet
  fi
  eval=()
  [ -f "$m/eval.txt" ] && eval=(--eval "$m/eval.txt")  # a zoo model's own evaluation text
  sens_types=()
  [ -n "${SENS_TYPES:-}" ] && sens_types=(--sens-types "$SENS_TYPES")
  validate=()
  [ -n "${VALIDATE:-}" ] && validate=(--validate "$VALIDATE")
  gptq=()
  [ -n "${GPTQ:-}" ] && gptq=(--gptq "$shared/corpus/calibration.txt" --gptq-samples 64)
  "$bench" --model "$m" --imatrix "$im" --levels "$levels" "${eval[@]}" --chunks "${CHUNKS:-40}" \
    --sens-chunks "${SENS_CHUNKS:-4}" --sens-ctx "${SENS_CTX:-256}" "${sens_types[@]}" "${validate[@]}" "${gptq[@]}" \
    --cache "$out/$name.sensitivity.json" --work "$out/work-$name" --json "$out/$name.json" "${threads[@]}" \
    | tee "$out/$name.txt"
  rm -rf "$out/work-$name"
done
