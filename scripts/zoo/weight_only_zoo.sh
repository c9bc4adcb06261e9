#!/usr/bin/env bash
# The weight-only table on the zoo: per model, RTN (symmetric and on AWQ's asymmetric grid), GPTQ,
# GPTQ with static act-order and AWQ at 4-bit g128 and 3-bit g128, and GPTQ at 2-bit g64, each made
# by the CLI (`lq quantize MODEL rtn|gptq|awq`, the streamed quantizers, so a mixture of experts goes
# through too) into a compressed-tensors / AutoAWQ directory, then read back and measured by
# `lq perplexity DIR --kl-divergence MODEL` on the model's own held-out text (DIR/eval.txt written
# by train_zoo.py; the shared eval.txt for the tiny model). Every method gets the same calibration:
# SAMPLES chunks of CTX tokens of ../shared/corpus/calibration.txt. Prints a Markdown table per
# model (perplexity, KLD, same-top rate, quantize wall time) and writes WORK/<model>/<run>.json.
#
# Usage: scripts/zoo/weight_only_zoo.sh [-b BUILD] [-w WORK] [-c CHUNKS] [-s SAMPLES] [-t THREADS] MODEL_DIR...
#   defaults: build/, ${TMPDIR:-/tmp}/lq-zoo-weight-only, 100 chunks (fewer where the text is
#   shorter), 128 samples of 256 tokens, 2 threads. RUNS (space-separated names from the list
#   below) limits the runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$root/build
work=${TMPDIR:-/tmp}/lq-zoo-weight-only
chunks=100
samples=128
threads=2
while getopts "b:w:c:s:t:" o; do
  case $o in
    b) build=$OPTARG ;;
    w) work=$OPTARG ;;
    c) chunks=$OPTARG ;;
    s) samples=$OPTARG ;;
    t) threads=$OPTARG ;;
    *) sed -n 2,15p "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { sed -n 2,15p "$0"; exit 2; }
shared=${LQ_SHARED_DIR:-$root/../shared}
calib=$shared/corpus/calibration.txt
lq=$build/apps/cli/lq
[ -x "$lq" ] || { echo "no $lq (build first)" >&2; exit 1; }

# name: method and options. rtn-asym is AWQ's grid with no search, the baseline AWQ improves on.
declare -A run_args=(
  [rtn-w4]="rtn --bits 4 --group-size 128"
  [rtn-asym-w4]="rtn --bits 4 --group-size 128 --asym"
  [gptq-w4]="gptq --bits 4 --group-size 128"
  [gptq-act-w4]="gptq --bits 4 --group-size 128 --act-order"
  [awq-w4]="awq --bits 4 --group-size 128"
  [rtn-w3]="rtn --bits 3 --group-size 128"
  [rtn-asym-w3]="rtn --bits 3 --group-size 128 --asym"
  [gptq-w3]="gptq --bits 3 --group-size 128"
  [gptq-act-w3]="gptq --bits 3 --group-size 128 --act-order"
  [awq-w3]="awq --bits 3 --group-size 128 --layout compressed-tensors"
  [rtn-w2]="rtn --bits 2 --group-size 64"
  [gptq-w2]="gptq --bits 2 --group-size 64"
)
order="rtn-w4 rtn-asym-w4 gptq-w4 gptq-act-w4 awq-w4 rtn-w3 rtn-asym-w3 gptq-w3 gptq-act-w3 awq-w3 rtn-w2 gptq-w2"
runs=${RUNS:-$order}

for model in "$@"; do
  model=${model%/}
  name=$(basename "$model")
  text=$model/eval.txt
  [ -f "$text" ] || text=$shared/corpus/eval.txt
  out=$work/$name
  mkdir -p "$out"
  "$lq" --threads "$threads" --quiet --format json perplexity "$model" -f "$text" --ctx 256 --chunks "$chunks" \
    > "$out/original.json"
  echo "### $name ($(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"original {d['perplexity']:.4f}, {d['chunks']} chunks of 256 of {sys.argv[2]}\")" "$out/original.json" "$text"))"
  echo
  echo "| run | PPL | KLD | same top | quantize s |"
  echo "| --- | --- | --- | --- | --- |"
  for r in $runs; do
    [ -n "${run_args[$r]:-}" ] || { echo "unknown run $r" >&2; exit 2; }
    # shellcheck disable=SC2086
    set -- ${run_args[$r]}
    method=$1
    shift
    cal=()
    [ "$method" = rtn ] || cal=(--calibration-data "$calib" --calibration-samples "$samples" --ctx 256)
    rm -rf "${out:?}/$r"
    t0=$(date +%s.%N)
    "$lq" --threads "$threads" --quiet quantize "$model" "$method" "$@" "${cal[@]}" --no-checkpoints -o "$out/$r" \
      > "$out/$r.log" 2>&1 || { echo "| $r | failed: $(tail -n 1 "$out/$r.log") | | | |"; continue; }
    t1=$(date +%s.%N)
    "$lq" --threads "$threads" --quiet --format json perplexity "$out/$r" -f "$text" --ctx 256 --chunks "$chunks" \
      --kl-divergence "$model" > "$out/$r.json"
    python3 - "$out/$r.json" "$r" "$t0" "$t1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
k = d["kl_divergence"]
print(f"| {sys.argv[2]} | {d['perplexity']:.4f} | {k['kld_mean']:.6f} ± {k['kld_error']:.6f} | {k['same_top_pct']:.2f}% | "
      f"{float(sys.argv[4]) - float(sys.argv[3]):.1f} |")
EOF
    rm -rf "${out:?}/$r"
  done
  echo
done
