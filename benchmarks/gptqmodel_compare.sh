#!/usr/bin/env bash
# GPTQ (or AWQ) side by side with GPTQModel: GPTQModel's quantizer on the CPU against `lq quantize
# MODEL gptq --layout gptq` (METHOD=awq: GPTQModel's AWQConfig, zero points and AutoAWQ's GEMM
# layout, against `lq quantize MODEL awq`) on the same model, calibration text, sample count, ctx,
# bits, group size and act-order, each under /usr/bin/time -v on the same threads; then both
# outputs (lq reads GPTQModel's layouts) measured by `lq perplexity DIR --kl-divergence MODEL`
# (perplexity, KLD against the original, same-top rate) on the evaluation text, and the ratios.
# Each tool keeps its own defaults for the rest (GPTQModel: true_sequential, act_group_aware,
# damp 0.05; lq: damp 0.01, its scale search); DAMP sets both. Not part of the test suite: it
# installs gptqmodel and its torch with pip into a virtual environment outside the repository.
#
#   benchmarks/gptqmodel_compare.sh LQ MODEL [WORK_DIR]
#   e.g. benchmarks/gptqmodel_compare.sh build/apps/cli/lq ../shared/models/tiny-llama
# Environment: VENV (default ../venv-gptqmodel from the repository root), METHOD (gptq | awq;
# gptq), SAMPLES (128), CTX
# (256), BITS (4), GROUP (128), ACT_ORDER (none | static | group; none), DAMP (unset: each
# tool's default), CALIB (../shared/corpus/calibration.txt), EVAL_TEXT (../shared/corpus/eval.txt),
# EVAL_CTX (256), EVAL_CHUNKS (100), EVAL (1; 0 skips the evaluation), THREADS (2), NICE (10),
# LQ_ARGS (more lq options).
set -euo pipefail
# shellcheck source=benchmarks/llmc_compare_lib.sh
source "$(dirname "$0")/llmc_compare_lib.sh"
VENV=${VENV:-$(cd "$(dirname "$0")/.." && pwd)/../venv-gptqmodel} \
  compare_args gptqmodel_compare.sh /tmp/lq-gptqmodel-compare "$@"  # repo, lq, model, work, venv, settings
samples=${SAMPLES:-128}
ctx=${CTX:-256}
bits=${BITS:-4}
group=${GROUP:-128}
act=${ACT_ORDER:-none}
method=${METHOD:-gptq}
case "$act" in none|static|group) ;; *) echo "ACT_ORDER must be none, static or group" >&2; exit 2;; esac
case "$method" in gptq|awq) ;; *) echo "METHOD must be gptq or awq" >&2; exit 2;; esac
if [ "$method" = awq ] && { [ "$act" != none ] || [ -n "${DAMP:-}" ]; }; then
  echo "METHOD=awq takes no ACT_ORDER or DAMP" >&2; exit 2
fi

case "$(realpath -m "$venv")/" in "$repo"/*) echo "VENV must be outside the repository" >&2; exit 2;; esac
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import gptqmodel" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install gptqmodel sentencepiece
fi
py="$venv/bin/python"
"$py" - <<'PY'
import importlib.metadata as m
print("versions: " + ", ".join(f"{p} {m.version(p)}" for p in ("gptqmodel", "transformers", "torch")))
PY
mkdir -p "$work"
cat "$model"/*.safetensors > /dev/null  # page cache warm for both sides
# GPTQModel sizes its CPU worker pools from the core count; one worker a thread asked.
export OMP_NUM_THREADS=$threads PYTHONDONTWRITEBYTECODE=1 GPTQMODEL_CPU_WORKERS=$threads

tag="$method-w$bits-g$group-$act-n$samples-c$ctx${DAMP:+-d$DAMP}"
gm_out="$work/gptqmodel-$tag"
lq_out="$work/lq-$tag"
times=()
damp_args=()
[ -n "${DAMP:-}" ] && damp_args=(--damp "$DAMP")

rm -rf "$gm_out"
run_timed GPTQModel "$work/time-gptqmodel-$tag.txt" "$py" "$repo/benchmarks/gptqmodel_compare.py" quantize "$model" \
  "$gm_out" --calibration-data "$calib" --samples "$samples" --ctx "$ctx" --bits "$bits" --group-size "$group" \
  --act-order "$act" --method "$method" --threads "$threads" --lq "$lq" "${damp_args[@]}" ||
  echo "GPTQModel failed (exit status above)"

act_args=()
[ "$act" = static ] && act_args=(--act-order)
[ "$act" = group ] && act_args=(--act-order-group)
rm -rf "$lq_out"
lq_method_args=(gptq --layout gptq "${act_args[@]}" "${damp_args[@]}")
[ "$method" = awq ] && lq_method_args=(awq)
# shellcheck disable=SC2086
run_timed lq "$work/time-lq-$tag.txt" "$lq" --threads "$threads" quantize "$model" "${lq_method_args[@]}" \
  --bits "$bits" --group-size "$group" --calibration-data "$calib" --calibration-samples "$samples" --ctx "$ctx" \
  --no-checkpoints -o "$lq_out" ${LQ_ARGS:-} || echo "lq failed (exit status above)"

for side in gptqmodel lq; do
  dir=$gm_out; [ "$side" = lq ] && dir=$lq_out
  pj="$work/ppl-$side-$tag.json"
  rm -f "$pj"
  if [ "${EVAL:-1}" = 1 ] && [ -d "$dir" ]; then
    echo "== lq perplexity $dir --kl-divergence $model"
    "$lq" --format json --quiet --threads "$threads" perplexity "$dir" -f "$eval_text" --ctx "$eval_ctx" \
      --chunks "$eval_chunks" --kl-divergence "$model" > "$pj" || echo "   lq could not measure $dir"
  fi
  name=$side; [ "$side" = gptqmodel ] && name=GPTQModel
  times+=(--time "$name=$work/time-$side-$tag.txt=$pj")
done
msize=$(du -cb "$model"/*.safetensors | tail -1 | cut -f1)
"$py" "$repo/benchmarks/gptqmodel_compare.py" report "${times[@]}" \
  --title "$(basename "$model") ($((msize / 1048576)) MiB of safetensors): $method $bits-bit g$group act-order $act, $samples samples x ctx $ctx of $(basename "$calib"), $threads threads; eval $eval_chunks x $eval_ctx of $(basename "$eval_text")"
