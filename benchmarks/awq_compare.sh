#!/usr/bin/env bash
# AWQ side by side: `lq quantize MODEL awq` against AutoAWQ (and, with LLMC=1, llm-compressor's
# AWQModifier) on the same model, calibration text, samples, ctx and group size (4-bit g128, zero
# points), each run under /usr/bin/time -v on the same threads (wall time, peak RSS); then every
# output's perplexity and KL divergence against the original measured by `lq perplexity` (the
# readers of the AWQ GEMM and compressed-tensors layouts), and our output's perplexity as AutoAWQ's
# own loader runs it in transformers (20 chunks) beside `lq perplexity` on the same chunks.
# The third-party tools run from virtual environments OUTSIDE the repository (made by
# scripts/interop/make_third_party_checkpoints.sh); the tools' runs use its recipes. Not a test.
#
#   benchmarks/awq_compare.sh
# Environment: LQ (build/apps/cli/lq), MODEL (../shared/models/tiny-llama), CALIB (calibration.txt),
# EVAL (eval.txt), SAMPLES (8), CTX (256), CHUNKS (100), CLIENT_CHUNKS (20), THREADS (2),
# OUT (/tmp/awq-compare), VENV_AWQ (../venv-awq), VENV_LLMC (../venv-sq), LLMC=1 (also AWQModifier),
# AUTOAWQ_DIR (an AutoAWQ output made with the same settings: reused, its time and RSS not measured),
# LLMC_DTYPE (auto: the dtype llm-compressor loads the model in; float32 where torch has no bf16
# products on the CPU), IGNORE (module patterns llm-compressor leaves unquantized besides lm_head,
# space-separated) and AWQ_MAPPINGS (moe: llm-compressor's mixture-of-experts mappings), e.g. for a
# Mixtral: LLMC=1 IGNORE='re:.*block_sparse_moe.gate$ re:.*mlp.gate$' AWQ_MAPPINGS=moe MODEL=/tmp/mixtral.
# GPTQ=1: AWQ's scales with GPTQ's rounding on both sides: `lq quantize MODEL awq --gptq --act-order`
# against llm-compressor's stacked AWQModifier + GPTQModifier (W4A16_ASYM, actorder static);
# AutoAWQ has no such recipe and is skipped.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
lq=$(realpath "${LQ:-$repo/build/apps/cli/lq}")
model=$(realpath "${MODEL:-$repo/../shared/models/tiny-llama}")
calib=$(realpath "${CALIB:-$repo/../shared/corpus/calibration.txt}")
evalt=$(realpath "${EVAL:-$repo/../shared/corpus/eval.txt}")
samples=${SAMPLES:-8}; ctx=${CTX:-256}; chunks=${CHUNKS:-100}; cchunks=${CLIENT_CHUNKS:-20}; threads=${THREADS:-2}
out=$(realpath -m "${OUT:-/tmp/awq-compare}")
gptq=${GPTQ:-0}
lq_extra=(); llmc_recipe=ct-awq-w4a16-asym; llmc_label="AWQModifier"
if [ "$gptq" = 1 ]; then
  lq_extra=(--gptq --act-order); llmc_recipe=ct-awq-gptq-w4a16-asym-actorder-static
  llmc_label="AWQModifier + GPTQModifier (actorder static)"
fi
venv_awq=$(realpath -m "${VENV_AWQ:-$repo/../venv-awq}")
venv_llmc=$(realpath -m "${VENV_LLMC:-$repo/../venv-sq}")
interop=$repo/scripts/interop/make_third_party_checkpoints.py
mkdir -p "$out"
export OMP_NUM_THREADS=$threads PYTHONDONTWRITEBYTECODE=1

timed() {  # NAME CMD...: runs CMD under /usr/bin/time -v, keeps wall seconds and peak RSS in NAME.time
  local name=$1; shift
  /usr/bin/time -v "$@" > "$out/$name.log" 2> "$out/$name.time"
  local rc=$?
  [ $rc -ne 0 ] && echo "$name failed (exit $rc): $(tail -n 3 "$out/$name.time" | tr '\n' ' ')"
  return $rc
}
wall() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$out/$1.time"; }
rss() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$out/$1.time"; }

rows=()
measure() {  # NAME DIR WALL RSS
  "$lq" --format json --quiet --threads "$threads" perplexity "$2" -f "$evalt" --ctx "$ctx" --chunks "$chunks" \
    --kl-divergence "$model" > "$out/$1.ppl.json" 2> "$out/$1.ppl.err" || { echo "lq perplexity $2 failed"; return; }
  rows+=("$(python3 - "$out/$1.ppl.json" "$1" "$3" "$4" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); k = d["kl_divergence"]
print(f"| {sys.argv[2]} | {d['perplexity']:.4f} | {k['kld_mean']:.5f} | {k['same_top_pct']:.2f} | {sys.argv[3]} | {sys.argv[4]} |")
PY
)")
}

echo "== lq quantize awq ${lq_extra[*]} ($samples x $ctx calibration tokens, $threads threads)"
rm -rf "$out/lq-awq"
timed lq-awq "$lq" --threads "$threads" --quiet quantize "$model" awq "${lq_extra[@]}" -o "$out/lq-awq" \
  --calibration-data "$calib" --calibration-samples "$samples" --ctx "$ctx" &&
  measure lq-awq "$out/lq-awq" "$(wall lq-awq)" "$(rss lq-awq)"

if [ "$gptq" = 1 ]; then
  echo "GPTQ=1: AutoAWQ has no GPTQ rounding; skipped"
elif [ -n "${AUTOAWQ_DIR:-}" ]; then
  measure autoawq "$(realpath "$AUTOAWQ_DIR")" "(reused)" "-"
elif [ -x "$venv_awq/bin/python" ]; then
  echo "== AutoAWQ"
  rm -rf "$out/autoawq"
  timed autoawq nice -n 0 "$venv_awq/bin/python" "$interop" awq awq-gemm-4bit-g128 "$model" "$out/autoawq" \
    --calibration-data "$calib" --samples "$samples" --ctx "$ctx" --threads "$threads" &&
    measure autoawq "$out/autoawq" "$(wall autoawq)" "$(rss autoawq)"
else
  echo "no AutoAWQ venv at $venv_awq: skipped"
fi

if [ "${LLMC:-0}" = 1 ] && [ -x "$venv_llmc/bin/python" ]; then
  echo "== llm-compressor $llmc_label"
  rm -rf "$out/llmc-awq"
  read -r -a ignore_list <<< "${IGNORE:-}"  # no glob expansion of the patterns
  llmc_args=(--awq-mappings "${AWQ_MAPPINGS:-default}")
  for i in "${ignore_list[@]}"; do llmc_args+=("--ignore=$i"); done
  timed llmc-awq "$venv_llmc/bin/python" "$interop" llmc "$llmc_recipe" "$model" "$out/llmc-awq" \
    --calibration-data "$calib" --samples "$samples" --ctx "$ctx" --threads "$threads" "${llmc_args[@]}" &&
    measure llmc-awq "$out/llmc-awq" "$(wall llmc-awq)" "$(rss llmc-awq)"
fi

echo
echo "Model $model, eval $evalt: ctx $ctx, $chunks chunks; calibration $calib, $samples x $ctx tokens; 4-bit g128 zero points"
"$lq" --format json --quiet --threads "$threads" perplexity "$model" -f "$evalt" --ctx "$ctx" --chunks "$chunks" \
  > "$out/original.ppl.json" 2>/dev/null && python3 -c "import json; print('original perplexity %.4f' % json.load(open('$out/original.ppl.json'))['perplexity'])"
echo "| output | PPL | KLD | same top % | wall s | peak RSS MiB |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"

if [ -d "$out/lq-awq" ] && [ "$gptq" != 1 ] && [ -x "$venv_awq/bin/python" ]; then
  echo
  echo "== our AWQ output in transformers through AutoAWQ's loader ($cchunks chunks) beside lq perplexity"
  "$venv_awq/bin/python" "$interop" ppl "$out/lq-awq" --original "$model" --eval-text "$evalt" --ctx "$ctx" \
    --chunks "$cchunks" --threads "$threads" --modes native-autoawq --lq "$lq" --json "$out/client.json" \
    > "$out/client.log" 2>&1 || echo "client run failed: $(tail -n 3 "$out/client.log")"
  "$lq" --format json --quiet --threads "$threads" perplexity "$out/lq-awq" -f "$evalt" --ctx "$ctx" \
    --chunks "$cchunks" > "$out/client-lq.json" 2>/dev/null
  python3 - "$out/client.json" "$out/client-lq.json" <<'PY'
import json, sys
try:
    t = json.load(open(sys.argv[1]))["native-autoawq"]; l = json.load(open(sys.argv[2]))["perplexity"]
    print(f"transformers + AutoAWQ loader: {t['ppl']:.4f} ({t['tokens']} tokens); lq perplexity: {l:.4f}; "
          f"|ratio - 1| = {abs(t['ppl'] / l - 1) * 100:.3f}%")
except Exception as e:
    print(f"client comparison unavailable: {e}")
PY
fi
