#!/usr/bin/env bash
# Makes quantized checkpoints of a Hugging Face Llama with the real third-party tools
# (llm-compressor -> compressed-tensors; GPTQModel -> GPTQ layout v1/v2; AutoAWQ -> AWQ GEMM),
# each in its own virtual environment outside the repository, then beside every checkpoint the
# tool's own dequantization as F32 (ref-dequant.safetensors) and transformers' perplexity on lq
# perplexity's chunks (ppl.json). Also the original model's perplexity (original-ppl.json).
# Not part of the test suite; a tool that does not install is reported and skipped.
#
#   scripts/interop/make_third_party_checkpoints.sh [NAME...]
#   NAME: ct-w8a8 ct-w4a16-g128 ... (make_third_party_checkpoints.py: LLMC_RECIPES), gptq-v1-4bit-g128-sym
#   ... (GPTQ_CONFIGS), awq-gemm-4bit-g128, original; none = all.
# Environment: OUT (/work/ckpts style folder, default ../ckpts from the repository root), MODEL
# (../shared/models/tiny-llama), CALIB (../shared/corpus/calibration.txt), EVAL (eval.txt),
# SAMPLES (64), CTX (256), CHUNKS (20), THREADS (2), NICE (10), VENV_LLMC (../venv-sq),
# VENV_GPTQ (../venv-gptq), VENV_AWQ (../venv-awq), LQ (an lq binary: its tokenizer is used when set),
# SKIP_PPL=1 (references only).
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/scripts/interop
out=$(realpath -m "${OUT:-$repo/../ckpts}")
model=$(realpath "${MODEL:-$repo/../shared/models/tiny-llama}")
calib=$(realpath "${CALIB:-$repo/../shared/corpus/calibration.txt}")
evalt=$(realpath "${EVAL:-$repo/../shared/corpus/eval.txt}")
samples=${SAMPLES:-64}; ctx=${CTX:-256}; chunks=${CHUNKS:-20}; threads=${THREADS:-2}; nice_n=${NICE:-10}
venv_llmc=$(realpath -m "${VENV_LLMC:-$repo/../venv-sq}")
venv_gptq=$(realpath -m "${VENV_GPTQ:-$repo/../venv-gptq}")
venv_awq=$(realpath -m "${VENV_AWQ:-$repo/../venv-awq}")
for v in "$venv_llmc" "$venv_gptq" "$venv_awq"; do
  case "$v/" in "$repo"/*) echo "virtual environments must be outside the repository: $v" >&2; exit 2;; esac
done
mkdir -p "$out" && cd "$out"  # the tools write logs/ in their working directory
export OMP_NUM_THREADS=$threads PYTHONDONTWRITEBYTECODE=1
lqarg=(); [ -n "${LQ:-}" ] && lqarg=(--lq "$(realpath "$LQ")")

make_venv() {  # DIR PIP-ARGS...: a venv with those packages, made when missing; 1 when pip fails
  local v=$1; shift
  [ -x "$v/bin/python" ] && return 0
  python3 -m venv "$v" || return 1
  echo "== pip install $* (into $v)"
  if ! "$v/bin/python" -m pip install "$@" > "$v.pip.log" 2>&1; then
    echo "pip install $* failed:"; grep -E "^ERROR|error:" "$v.pip.log" | head -5 | sed 's/^/   /'
    return 1
  fi
}

all_names() {
  "$venv_llmc/bin/python" - "$here" <<'PY'
import sys; sys.path.insert(0, sys.argv[1])
import make_third_party_checkpoints as m
print(" ".join(list(m.LLMC_RECIPES) + list(m.GPTQ_CONFIGS) + ["awq-gemm-4bit-g128", "original"]))
PY
}

post() {  # PYTHON NAME: reference and perplexity of a made checkpoint
  local py=$1 name=$2 d=$out/$2
  [ -f "$d/config.json" ] || return 0
  echo "== reference dequantization of $name"
  nice -n "$nice_n" "$py" "$here/make_third_party_checkpoints.py" ref "$d" 2>&1 | tail -n 2
  if [ "${SKIP_PPL:-0}" != 1 ]; then
    echo "== transformers perplexity of $name"
    nice -n "$nice_n" "$py" "$here/make_third_party_checkpoints.py" ppl "$d" --original "$model" \
      --eval-text "$evalt" --ctx "$ctx" --chunks "$chunks" --threads "$threads" "${lqarg[@]}" \
      --json "$d/ppl.json" 2>&1 | grep -E "ppl|error" | tail -n 3
  fi
}

make_ckpt() {  # VENV TOOL-COMMAND LABEL NAME: runs the tool into $out/NAME, then post; 1 when it fails
  local venv=$1 cmd=$2 label=$3 name=$4 log=$out/log-$4.txt
  echo "== $label $name"
  rm -rf "${out:?}/$name"
  nice -n "$nice_n" "$venv/bin/python" "$here/make_third_party_checkpoints.py" "$cmd" "$name" "$model" \
    "$out/$name" --calibration-data "$calib" --samples "$samples" --ctx "$ctx" --threads "$threads" \
    "${lqarg[@]}" > "$log" 2>&1 || { echo "failed: $(tail -n 2 "$log")"; return 1; }
  post "$venv/bin/python" "$name"
}

names=("$@"); [ ${#names[@]} -eq 0 ] && read -r -a names <<< "$(all_names)"
for name in "${names[@]}"; do
  case $name in
    original)
      echo "== transformers perplexity of the original model"
      nice -n "$nice_n" "$venv_llmc/bin/python" "$here/make_third_party_checkpoints.py" ppl "$model" --original "$model" \
        --eval-text "$evalt" --ctx "$ctx" --chunks "$chunks" --threads "$threads" --modes native,native-auto \
        "${lqarg[@]}" --json "$out/original-ppl.json" 2>&1 | grep -E "ppl|error"
      ;;
    ct-*)
      make_venv "$venv_llmc" llmcompressor || continue
      make_ckpt "$venv_llmc" llmc llm-compressor "$name"
      ;;
    gptq-*)
      # GPTQModel builds from source: torch first, then the package without build isolation
      # (its setup imports torch); BUILD_CUDA_EXT=0 on a machine without CUDA.
      if [ ! -x "$venv_gptq/bin/python" ]; then
        make_venv "$venv_gptq" torch || continue
        BUILD_CUDA_EXT=0 "$venv_gptq/bin/python" -m pip install --no-build-isolation gptqmodel \
          > "$venv_gptq.pip-gptqmodel.log" 2>&1 || { echo "gptqmodel does not install:"; \
          grep -E "^ERROR|error:" "$venv_gptq.pip-gptqmodel.log" | head -5; continue; }
      fi
      export GPTQMODEL_CPU_WORKERS=${GPTQMODEL_CPU_WORKERS:-2}  # its default, (cores+1)/2, is refused on 2 cores
      make_ckpt "$venv_gptq" gptqmodel GPTQModel "$name"
      ;;
    awq-*)
      make_venv "$venv_awq" autoawq || continue
      make_ckpt "$venv_awq" awq AutoAWQ "$name"
      ;;
    *) echo "unknown checkpoint name $name" >&2 ;;
  esac
done
