#!/usr/bin/env bash
# Makes the quantization zoo: small trained models (scripts/zoo/train_zoo.py), then checks each with
# lq (`lq tokenize` and `lq perplexity` on its held-out text).
#
# Usage: scripts/zoo/make_zoo.sh [OUT_DIR] [MODEL...]     (OUT_DIR default /work/zoo)
# Environment:
#   LQ_ZOO_VENV   a Python venv that already has torch, transformers, sentencepiece and tokenizers;
#                 without it, one is created in ${TMPDIR:-/tmp}/lq-zoo-venv (torch from the CPU index).
#   LQ_ZOO_JOBS   models trained at once, one torch thread each (default 4). The thread count is part
#                 of what makes a run reproducible: keep it for byte-identical weights.
#   LQ            the lq binary for the checks (default build/apps/cli/lq; skipped when absent)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-/work/zoo}
shift || true
corpus=${LQ_SHARED_DIR:-$root/../shared}/corpus
venv=${LQ_ZOO_VENV:-${TMPDIR:-/tmp}/lq-zoo-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  # The CPU-only wheel from PyTorch's index; PyPI's (with the CUDA libraries) where that index is unreachable.
  "$venv/bin/pip" install --quiet torch --index-url https://download.pytorch.org/whl/cpu || "$venv/bin/pip" install --quiet torch
  "$venv/bin/pip" install --quiet "transformers<5" sentencepiece tokenizers safetensors numpy  # 5.x converts tokenizer.model through tiktoken
fi
py=$venv/bin/python
models=("$@")
[ ${#models[@]} -gt 0 ] || mapfile -t models < <("$py" -c "import sys; sys.path.insert(0, '$here'); import train_zoo; print('\n'.join(train_zoo.ZOO))")
mkdir -p "$out"
jobs=${LQ_ZOO_JOBS:-4}
pids=()
for m in "${models[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 5; done
  nice -n 10 "$py" "$here/train_zoo.py" --corpus "$corpus" --out "$out" --only "$m" --threads 1 > "$out/$m.train.log" 2>&1 &
  pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ $fail -eq 0 ] || { echo "training failed: see $out/*.train.log" >&2; exit 1; }
lq=${LQ:-$root/build/apps/cli/lq}
{
  echo "The liblq quantization zoo: small models trained by scripts/zoo/make_zoo.sh (seeded)."
  echo "Each directory: config.json, model.safetensors, tokenizer files, eval.txt (held-out text),"
  echo "zoo.json (what it is, training figures)."
  echo
  for m in "${models[@]}"; do
    "$py" -c "import json,sys; j=json.load(open(sys.argv[1])); print(f\"{j['name']}: {j['what']}; {j['params']/1e6:.2f}M parameters, {j['steps']} steps, train loss {j['final_train_loss_ema']}, held-out ppl (torch) {j['heldout_ppl_torch']}\")" "$out/$m/zoo.json"
  done
} > "$out/README.txt"
if [ -x "$lq" ]; then
  for m in "${models[@]}"; do
    "$lq" --quiet tokenize "$out/$m" -p "Once upon a time, the 1990s were" > /dev/null
    echo "$m: lq $("$lq" perplexity "$out/$m" -f "$out/$m/eval.txt" --ctx 256 --chunks 40 2> /dev/null | grep '^Perplexity:')" |
      tee -a "$out/README.txt"
  done
fi
cat "$out/README.txt"
