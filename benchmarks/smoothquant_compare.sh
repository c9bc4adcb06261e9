#!/usr/bin/env bash
# SmoothQuant W8A8 side by side: llm-compressor (SmoothQuantModifier + W8A8 QuantizationModifier,
# round to nearest, lm_head ignored) against `lq quantize MODEL smoothquant --smoothquant` on the
# same model, calibration text, sample count, ctx and alpha. Prints wall time and peak RSS of
# both (/usr/bin/time -v), then perplexity and KL divergence against the original model of both
# outputs, measured with transformers (+ compressed-tensors) on lq perplexity's chunks of the
# evaluation text, and the ratios. Not part of the test suite: it installs llmcompressor and its
# torch with pip into a virtual environment outside the repository.
#
#   benchmarks/smoothquant_compare.sh LQ MODEL [WORK_DIR]
#   e.g. benchmarks/smoothquant_compare.sh build/apps/cli/lq ../shared/models/tiny-llama
#        benchmarks/smoothquant_compare.sh build/apps/cli/lq /tmp/sq-cmp/synth-1b   (made by
#        build/benchmarks/make_synthetic_llama /tmp/sq-cmp/synth-1b)
# Environment: VENV (default ../venv-sq from the repository root), ALPHA (0.5), SAMPLES (512),
# CTX (256; calibration ctx), CALIB (../shared/corpus/calibration.txt), EVAL_TEXT
# (../shared/corpus/eval.txt), EVAL_CTX (256), EVAL_CHUNKS (100), THREADS (2), NICE (10),
# REUSE_LLMC (1: keep an llm-compressor output and timing already in WORK_DIR for the same
# alpha, samples and ctx instead of running it again).
# If LQ does not accept the smoothquant command the script says so and reports llm-compressor's
# side alone.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
lq=${1:?usage: smoothquant_compare.sh LQ MODEL [WORK_DIR]}
model=${2:?usage: smoothquant_compare.sh LQ MODEL [WORK_DIR]}
lq=$(realpath "$lq"); model=$(realpath "$model")
work=${3:-/tmp/lq-sq-compare/$(basename "$model")}
venv=${VENV:-$repo/../venv-sq}
alpha=${ALPHA:-0.5}
samples=${SAMPLES:-512}
ctx=${CTX:-256}
calib=$(realpath "${CALIB:-$repo/../shared/corpus/calibration.txt}")
eval_text=$(realpath "${EVAL_TEXT:-$repo/../shared/corpus/eval.txt}")
eval_ctx=${EVAL_CTX:-256}
eval_chunks=${EVAL_CHUNKS:-100}
threads=${THREADS:-2}
nice_n=${NICE:-10}
case "$(realpath -m "$venv")/" in "$repo"/*) echo "VENV must be outside the repository" >&2; exit 2;; esac

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llmcompressor" 2>/dev/null; then
  python3 -m venv "$venv"
  # CPU wheels of torch where that index is reachable; otherwise PyPI's build (CUDA libraries
  # included, unused here).
  "$venv/bin/pip" install torch --index-url https://download.pytorch.org/whl/cpu || true
  "$venv/bin/pip" install llmcompressor
fi
py="$venv/bin/python"
"$py" - <<'PY'
import importlib.metadata as m
print("versions: " + ", ".join(f"{p} {m.version(p)}" for p in
      ("llmcompressor", "compressed-tensors", "transformers", "torch")))
PY
mkdir -p "$work"
cat "$model"/*.safetensors > /dev/null  # page cache warm for both sides
export OMP_NUM_THREADS=$threads PYTHONDONTWRITEBYTECODE=1
run_timed() {  # NAME TIME_FILE COMMAND...
  local name=$1 tf=$2; shift 2
  echo "== $name: $*"
  local rc=0
  nice -n "$nice_n" /usr/bin/time -v -o "$tf" "$@" || rc=$?
  grep -E "Elapsed|Maximum resident" "$tf" | sed 's/^\s*/   /'
  return $rc
}

tag="a$alpha-n$samples-c$ctx"
llmc_out="$work/llmc-w8a8-$tag"
if [ "${REUSE_LLMC:-0}" = 1 ] && [ -f "$llmc_out/config.json" ] && [ -f "$work/time-llmc-$tag.txt" ]; then
  echo "== llm-compressor: reusing $llmc_out and its timing from an earlier run (REUSE_LLMC=1)"
  grep -E "Elapsed|Maximum resident" "$work/time-llmc-$tag.txt" | sed 's/^\s*/   /'
else
  rm -rf "$llmc_out"
  run_timed llm-compressor "$work/time-llmc-$tag.txt" "$py" "$repo/benchmarks/smoothquant_compare.py" llmc "$model" \
    "$llmc_out" --calibration-data "$calib" --samples "$samples" --ctx "$ctx" --alpha "$alpha" --threads "$threads" \
    --lq "$lq"
fi

lq_out="$work/lq-w8a8-$tag"
rm -rf "$lq_out"
times=(--time "llm-compressor=$work/time-llmc-$tag.txt=$llmc_out")
dirs=("$llmc_out")
if "$lq" quantize --help 2>&1 | grep -q -- "--smoothquant"; then
  if run_timed lq "$work/time-lq-$tag.txt" "$lq" --threads "$threads" quantize "$model" smoothquant --smoothquant \
      --alpha "$alpha" --calibration-data "$calib" --calibration-samples "$samples" --ctx "$ctx" -o "$lq_out"; then
    times+=(--time "lq=$work/time-lq-$tag.txt=$lq_out")
    dirs+=("$lq_out")
  else
    echo "lq quantize ... smoothquant failed (exit status above); reporting llm-compressor's side only"
  fi
else
  echo "$lq does not support \`quantize MODEL smoothquant --smoothquant\` yet; reporting llm-compressor's side only"
fi

"$py" "$repo/benchmarks/smoothquant_compare.py" eval "$model" "${dirs[@]}" --eval-text "$eval_text" \
  --ctx "$eval_ctx" --chunks "$eval_chunks" --threads "$threads" --lq "$lq" --json "$work/eval-$tag.json"
"$py" "$repo/benchmarks/smoothquant_compare.py" report --json "$work/eval-$tag.json" "${times[@]}" \
  --title "$(basename "$model"): alpha $alpha, $samples samples x ctx $ctx of $(basename "$calib"), $threads threads"
