#!/usr/bin/env bash
# llama.cpp's own converter on lq's 4-bit GPTQ outputs: `lq quantize MODEL gptq` writes the
# AutoGPTQ layout (--layout gptq) and compressed-tensors pack-quantized (the default);
# convert_hf_to_gguf.py (from a llama.cpp checkout outside the repository, run with torch)
# dequantizes both quant methods to float (its dequant_model: quant_method "gptq" for 2/4/8 bits,
# "compressed-tensors" pack-quantized) and writes an F32 GGUF; llama-perplexity on that GGUF is
# printed beside `lq perplexity` on the same directory and on the GGUF, with the ratios.
# Not part of the test suite.
#
#   scripts/interop/llama_convert_gptq.sh LQ MODEL
# Environment: LLAMA_CPP (the checkout, default ../llama.cpp beside the repository),
# LLAMA_BIN ($LLAMA_CPP/build/bin: llama-perplexity), VENV (../venv-llama: torch, numpy,
# safetensors, sentencepiece, transformers, gguf; made with pip when missing), WORK
# (/tmp/lq-llama-convert), EVAL (../shared/corpus/eval.txt), CTX (256), CHUNKS (20), THREADS (2),
# CALIB (../shared/corpus/calibration.txt), SAMPLES (64), LAYOUTS ("gptq compressed-tensors").
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
lq=$(realpath "${1:?usage: llama_convert_gptq.sh LQ MODEL}")
model=$(realpath "${2:?usage: llama_convert_gptq.sh LQ MODEL}")
llama=$(realpath -m "${LLAMA_CPP:-$repo/../llama.cpp}")
bin=$(realpath -m "${LLAMA_BIN:-$llama/build/bin}")
venv=$(realpath -m "${VENV:-$repo/../venv-llama}")
work=$(realpath -m "${WORK:-/tmp/lq-llama-convert}")
evalt=$(realpath "${EVAL:-$repo/../shared/corpus/eval.txt}")
calib=$(realpath "${CALIB:-$repo/../shared/corpus/calibration.txt}")
ctx=${CTX:-256}; chunks=${CHUNKS:-20}; threads=${THREADS:-2}; samples=${SAMPLES:-64}
case "$venv/" in "$repo"/*) echo "VENV must be outside the repository" >&2; exit 2;; esac
[ -f "$llama/convert_hf_to_gguf.py" ] || { echo "no convert_hf_to_gguf.py in $llama (set LLAMA_CPP)" >&2; exit 2; }
[ -x "$bin/llama-perplexity" ] || { echo "no llama-perplexity in $bin (set LLAMA_BIN)" >&2; exit 2; }
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || exit 1
  "$venv/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu || true
  "$venv/bin/pip" install -q numpy safetensors sentencepiece transformers protobuf || exit 1
  "$venv/bin/pip" install -q "$llama/gguf-py" || "$venv/bin/pip" install -q gguf || exit 1
fi
mkdir -p "$work"
lq_ppl() {  # the perplexity figure of `lq perplexity`
  "$lq" --threads "$threads" --format json perplexity "$1" -f "$evalt" --ctx "$ctx" --chunks "$chunks" 2>/dev/null |
    "$venv/bin/python" -c "import json,sys; print(json.load(sys.stdin)['perplexity'])"
}
llama_ppl() {  # the final estimate llama-perplexity prints
  # --log-file: its stdout, redirected, can lose the last lines when the process exits
  rm -f "$1.ppl.log"
  "$bin/llama-perplexity" -m "$1" -f "$evalt" -c "$ctx" --chunks "$chunks" -t "$threads" --log-file "$1.ppl.log" > /dev/null 2>&1
  sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$1.ppl.log"
}
printf "%-20s %-12s %12s %12s %12s %9s\n" layout converter "lq dir" "lq gguf" "llama.cpp" "ratio"
for layout in ${LAYOUTS:-gptq compressed-tensors}; do
  out="$work/$(basename "$model")-$layout"
  rm -rf "$out" "$out.gguf"
  "$lq" --threads "$threads" quantize "$model" gptq --layout "$layout" --bits 4 --group-size 128 \
    --calibration-data "$calib" --calibration-samples "$samples" --ctx "$ctx" --no-checkpoints -o "$out" > /dev/null 2>&1 || {
      echo "$layout: lq quantize failed"; continue; }
  if ! "$venv/bin/python" "$llama/convert_hf_to_gguf.py" "$out" --outtype f32 --outfile "$out.gguf" > "$out.convert.log" 2>&1; then
    echo "$layout: convert_hf_to_gguf.py refused it:"; tail -3 "$out.convert.log"; continue
  fi
  a=$(lq_ppl "$out"); b=$(lq_ppl "$out.gguf"); c=$(llama_ppl "$out.gguf")
  r=$("$venv/bin/python" -c "print(f'{$c / $a:.5f}')" 2>/dev/null || echo -)
  printf "%-20s %-12s %12s %12s %12s %9s\n" "$layout" accepted "$a" "$b" "$c" "$r"
done
echo "(perplexity on $chunks chunks x ctx $ctx of $(basename "$evalt"); ratio = llama.cpp / lq on the directory)"
