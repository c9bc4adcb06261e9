#!/usr/bin/env bash
# The zoo table: per model and level, the KL divergence of our quantization against llama.cpp's
# (same imatrix, same level), measured by our engine against the original model on held-out text.
#
# Per model: its F16/BF16 GGUF (`lq quantize -q F16|BF16`, the checkpoint's own dtype), an imatrix
# from ../shared/corpus/calibration.txt (64 chunks of 256 by `lq analyze`), llama.cpp's files by
# llama-quantize from that GGUF with that imatrix, ours by level_quality_bench (lq::Quantizer with the
# same imatrix, straight from the checkpoint), both evaluated in one lock-step run on the model's own
# held-out text (DIR/eval.txt written by train_zoo.py; the shared eval.txt for the tiny model).
# Results: WORK/<model>/result.json and the Markdown table WORK/zoo-table.md (scripts/zoo/zoo_table.py).
# With -g, ours are made with GPTQ's error feedback (`lq quantize ... gguf --gptq`, calibrated on
# calibration.txt, the imatrix's 64 chunks of 256 tokens; llama.cpp's files as without it): results
# in result-gptq.json, bench-gptq.txt and WORK/zoo-table-gptq.md.
#
# Usage: scripts/zoo/level_quality_zoo.sh [-b BUILD] [-l LLAMA_BIN] [-w WORK] [-L LEVELS] [-c CHUNKS]
#                                         [-t THREADS] [-g] MODEL_DIR...
#   default MODEL_DIRs: ../shared/models/tiny-llama and every /work/zoo/*/ (LQ_ZOO_DIR)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$root/build
llama_bin=${LLAMA_BIN:-/work/llama.cpp/build/bin}
work=${TMPDIR:-/tmp}/lq-zoo-quality
levels=Q6_K,Q5_K_M,Q4_K_M,Q3_K_M,IQ4_XS,IQ3_XXS,Q2_K,IQ2_XXS,IQ1_M
chunks=100
threads=2
gptq=0
while getopts "b:l:w:L:c:t:g" o; do
  case $o in
    b) build=$OPTARG ;;
    l) llama_bin=$OPTARG ;;
    w) work=$OPTARG ;;
    L) levels=$OPTARG ;;
    c) chunks=$OPTARG ;;
    t) threads=$OPTARG ;;
    g) gptq=1 ;;
    *) sed -n 2,20p "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
shared=${LQ_SHARED_DIR:-$root/../shared}
corpus=$shared/corpus
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  models=("$shared/models/tiny-llama")
  for d in "${LQ_ZOO_DIR:-/work/zoo}"/*/; do [ -f "$d/config.json" ] && models+=("${d%/}"); done
fi
lq=$build/apps/cli/lq
bench=$build/benchmarks/level_quality_bench
for f in "$lq" "$bench" "$llama_bin/llama-quantize"; do
  [ -x "$f" ] || { echo "missing $f (build lq_cli and level_quality_bench; llama.cpp's tools via -l)" >&2; exit 1; }
done
mkdir -p "$work"
suffix=""
extra=()
if [ $gptq = 1 ]; then
  suffix=-gptq
  extra=(--gptq "$corpus/calibration.txt" --calibration-samples 64)
fi
for m in "${models[@]}"; do
  name=$(basename "$m")
  w=$work/$name
  mkdir -p "$w/llama/mix-imatrix"
  dtype=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c.get("dtype") or c.get("torch_dtype") or "float16")' "$m/config.json")
  base=F16; [ "$dtype" = bfloat16 ] && base=BF16
  echo "== $name ($base)"
  [ -f "$w/base.gguf" ] || "$lq" --quiet quantize "$m" gguf -q "$base" -o "$w/base.gguf"
  [ -f "$w/imatrix.gguf" ] || "$lq" --quiet --threads "$threads" analyze "$m" --calibration-data "$corpus/calibration.txt" \
    --calibration-samples 64 --ctx 256 --no-cache -o "$w/imatrix.gguf"
  # The same matrix in the legacy .dat format for llama-quantize: every llama.cpp reads it (the GGUF
  # imatrix only since mid-2025).
  [ -f "$w/imatrix.dat" ] || "$lq" --quiet analyze combine "$w/imatrix.gguf" --output-format dat -o "$w/imatrix.dat"
  IFS=, read -r -a lv <<< "$levels"
  for l in "${lv[@]}"; do
    out=$w/llama/mix-imatrix/$l.gguf
    [ -f "$out" ] || "$llama_bin/llama-quantize" --imatrix "$w/imatrix.dat" "$w/base.gguf" "$out" "$l" "$threads" \
      > "$w/llama-quantize-$l.log" 2>&1 || { echo "llama-quantize $l failed (see $w/llama-quantize-$l.log)" >&2; exit 1; }
  done
  text=eval
  [ -f "$m/eval.txt" ] && text=$m/eval.txt
  "$bench" --model "$m" --imatrix "$w/imatrix.gguf" --llama "$w/llama" --modes mix-imatrix --levels "$levels" \
    --text "$text" --chunks "$chunks" --ctx 256 --threads "$threads" --json "$w/result$suffix.json" "${extra[@]}" \
    | tee "$w/bench$suffix.txt"
done
LQ_ZOO_RESULT=result$suffix.json python3 "$here/zoo_table.py" "$work" "${models[@]}" > "$work/zoo-table$suffix.md"
cat "$work/zoo-table$suffix.md"
