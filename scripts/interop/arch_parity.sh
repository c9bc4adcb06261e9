#!/usr/bin/env bash
# llama.cpp against lq on one Hugging Face checkpoint (any architecture lq reads), in four steps:
#  1. conversion: llama.cpp's convert_hf_to_gguf.py (--outtype f32 and bf16) against
#     `lq quantize DIR gguf -q F32` / `-q BF16`: tensor names, shapes, types, metadata keys and
#     values (lq's documented extras listed), tensor bytes (arch_parity.py convert);
#  2. an importance matrix: llama-imatrix on the converter's F32 file (IMATRIX_TOOL=lq: `lq analyze`
#     on the checkpoint instead), the same file given to both quantizers; with llama-imatrix's,
#     `lq analyze` on the same F32 file against it: counts equal, sums within 1e-3 relative (one
#     row per expert for merged expert tensors; arch_parity.py imatrix);
#  3. levels: llama-quantize on the converter's F32 file against `lq quantize DIR gguf -q LEVEL` for
#     LEVELS (Q2_K Q3_K_M Q4_K_M IQ2_XXS; the imatrix given to every level), per-tensor types
#     (arch_parity.py types);
#  4. perplexity: llama-perplexity and `lq perplexity` on lq's Q4_K_M file, same text, ctx and chunks,
#     and their ratio (0.1% tolerance);
#  5. the engine's arithmetic: transformers' float32 perplexity on the checkpoint (arch_parity_hf.py,
#     first CTX tokens, llama-perplexity's scoring) against `lq perplexity` on it (1e-4 tolerance).
# Prints one OK/FAIL line per check and a summary; exits with the number of failed checks.
# Not part of the test suite; llama.cpp is not built here (point LLAMA_CPP at a built checkout).
#
#   scripts/interop/arch_parity.sh LQ HF_DIR
# Environment: WORK (/tmp/lq-arch-parity/NAME), LLAMA_CPP (../llama.cpp, with build/bin),
# CONVERT_PY (LLAMA_CPP's venv python: ../venv-llama/bin/python, needs torch + transformers),
# VENV (../venv-cmp: numpy and gguf; made when missing), LEVELS ("Q2_K Q3_K_M Q4_K_M IQ2_XXS"),
# IMATRIX_TOOL (llama | lq), CALIB (../shared/corpus/calibration.txt), IMATRIX_CTX (256),
# IMATRIX_CHUNKS (16), EVAL (../shared/corpus/eval.txt), CTX (256), CHUNKS (8), THREADS (2),
# NICE (10), STEPS ("convert levels ppl hf").
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/scripts/interop
lq=$(realpath "${1:?usage: arch_parity.sh LQ HF_DIR}")
src=$(realpath "${2:?usage: arch_parity.sh LQ HF_DIR}")
name=$(basename "$src")
work=$(realpath -m "${WORK:-/tmp/lq-arch-parity/$name}")
llama=$(realpath -m "${LLAMA_CPP:-$repo/../llama.cpp}")
bin=$llama/build/bin
convert_py=${CONVERT_PY:-$repo/../venv-llama/bin/python}
venv=$(realpath -m "${VENV:-$repo/../venv-cmp}")
levels=${LEVELS:-Q2_K Q3_K_M Q4_K_M IQ2_XXS}
imatrix_tool=${IMATRIX_TOOL:-llama}
calib=$(realpath "${CALIB:-$repo/../shared/corpus/calibration.txt}")
evalt=$(realpath "${EVAL:-$repo/../shared/corpus/eval.txt}")
ictx=${IMATRIX_CTX:-256}; ichunks=${IMATRIX_CHUNKS:-16}
ctx=${CTX:-256}; chunks=${CHUNKS:-8}; threads=${THREADS:-2}; nice_n=${NICE:-10}
steps=" ${STEPS:-convert levels ppl hf} "
case "$venv/" in "$repo"/*) echo "VENV must be outside the repository" >&2; exit 2;; esac
case "$work/" in "$repo"/*) echo "WORK must be outside the repository" >&2; exit 2;; esac
[ -f "$src/config.json" ] || { echo "$src: not a Hugging Face checkpoint (no config.json)" >&2; exit 2; }
for b in llama-quantize llama-perplexity llama-imatrix; do
  [ -x "$bin/$b" ] || { echo "$bin/$b missing (LLAMA_CPP must point at a built llama.cpp)" >&2; exit 2; }
done
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q numpy gguf || exit 1
fi
py=$venv/bin/python
mkdir -p "$work"
run() { nice -n "$nice_n" "$@"; }
results=(); fails=0
record() {  # record STATUS_LINE: the last line of a comparison's output
  results+=("$1"); case "$1" in OK*) ;; *) fails=$((fails + 1));; esac
}
check() {  # check LABEL CMD...: run a comparison, print its output, record its summary line
  local label=$1; shift
  local out; out=$("$@" 2>&1); local rc=$?
  printf '%s\n' "$out"
  local last; last=$(printf '%s\n' "$out" | tail -n 1)
  case "$rc:$last" in 0:*|*:FAIL*) record "$last";; *) record "FAIL $label: ${last:-exit $rc}";; esac
}
quietly() {  # quietly LOG CMD...: run with output in LOG; on failure show its tail
  local log=$1; shift
  if run "$@" > "$log" 2>&1; then return 0; fi
  echo "  failed ($log):"; tail -n 5 "$log" | sed 's/^/    /'; return 1
}
arch=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("model_type","?"))' "$src/config.json")
echo "== $name (model_type $arch) in $work"

# 1. conversion (lq first: a tokenizer the converter's hash table does not know gets lq's
# tokenizer.ggml.pre, see arch_parity_convert.py, and that key is then reported as forced)
pre=default
for q in F32 BF16; do
  lower=$(echo $q | tr A-Z a-z)
  ref=$work/conv-$q.gguf; ours=$work/lq-$q.gguf
  lq_ok=0
  case "$steps" in *" convert "*)
    echo "-- lq quantize -q $q"
    quietly "$work/lq-$q.log" "$lq" --quiet --threads "$threads" quantize "$src" gguf -q "$q" -o "$ours" && lq_ok=1
    [ $lq_ok = 1 ] || record "FAIL convert $q: lq quantize exited non-zero: $(tail -n 1 "$work/lq-$q.log")"
    if [ $lq_ok = 1 ] && [ $q = F32 ]; then pre=$("$py" "$here/arch_parity.py" key "$ours" tokenizer.ggml.pre 2>/dev/null || echo default); fi
  ;; esac
  if [ ! -s "$ref" ] && { case "$steps" in *" convert "*|*" levels "*) true;; *) false;; esac; }; then
    echo "-- converter --outtype $lower"
    quietly "$work/conv-$q.log" "$convert_py" "$here/arch_parity_convert.py" "$llama" "$pre" "$src" --outtype "$lower" \
      --outfile "$ref" || { record "FAIL convert $q: llama.cpp's converter failed (see $work/conv-$q.log)"; continue; }
  fi
  if [ $lq_ok = 1 ] && [ -s "$ref" ]; then
    forced=""
    grep -q "^arch_parity: pre-tokenizer not in the converter's table" "$work/conv-$q.log" 2>/dev/null && forced=tokenizer.ggml.pre
    FORCED_KEYS=$forced check "convert $q" "$py" "$here/arch_parity.py" convert "$ref" "$ours"
  fi
done

# 2 + 3. levels
case "$steps" in *" levels "*)
  imat=$work/imatrix.gguf
  if [ ! -s "$imat" ]; then
    echo "-- imatrix ($imatrix_tool, ctx $ictx, $ichunks chunks of $(basename "$calib"))"
    if [ "$imatrix_tool" = lq ]; then
      quietly "$work/imatrix.log" "$lq" --quiet --threads "$threads" analyze "$src" --calibration-data "$calib" \
        --calibration-samples "$ichunks" --ctx "$ictx" --no-cache -o "$imat"
    else
      quietly "$work/imatrix.log" "$bin/llama-imatrix" -m "$work/conv-F32.gguf" -f "$calib" -c "$ictx" \
        --chunks "$ichunks" -t "$threads" -o "$imat"
    fi || { record "FAIL imatrix: $imatrix_tool failed (see $work/imatrix.log)"; imat=""; }
  fi
  if [ -n "$imat" ] && [ "$imatrix_tool" != lq ]; then
    echo "-- imatrix: lq analyze on the same F32 file"
    if quietly "$work/lq-imatrix.log" "$lq" --quiet --threads "$threads" analyze "$work/conv-F32.gguf"          --calibration-data "$calib" --calibration-samples "$ichunks" --ctx "$ictx" --no-cache -o "$work/lq-imatrix.gguf"; then
      check "imatrix" "$py" "$here/arch_parity.py" imatrix "$imat" "$work/lq-imatrix.gguf" "$src/config.json"
    else
      record "FAIL imatrix: lq analyze failed (see $work/lq-imatrix.log)"
    fi
  fi
  for lv in $levels; do
    im=(); [ -n "$imat" ] && im=(--imatrix "$imat")
    ref=$work/llama-$lv.gguf; ours=$work/lq-$lv.gguf
    echo "-- $lv${imat:+ (imatrix)}"
    quietly "$work/llama-$lv.log" "$bin/llama-quantize" "${im[@]}" "$work/conv-F32.gguf" "$ref" "$lv" "$threads" \
      || { record "FAIL types $lv: llama-quantize failed (see $work/llama-$lv.log)"; continue; }
    quietly "$work/lq-$lv.log" "$lq" --quiet --threads "$threads" quantize "$src" gguf -q "$lv" "${im[@]}" -o "$ours" \
      || { record "FAIL types $lv: lq quantize failed (see $work/lq-$lv.log)"; continue; }
    check "types $lv" "$py" "$here/arch_parity.py" types "$ref" "$ours"
  done
;; esac

# 4. perplexity of both engines on lq's Q4_K_M
case "$steps" in *" ppl "*)
  q4=$work/lq-Q4_K_M.gguf
  if [ ! -s "$q4" ]; then
    quietly "$work/lq-Q4_K_M.log" "$lq" --quiet --threads "$threads" quantize "$src" gguf -q Q4_K_M -o "$q4" \
      || record "FAIL ppl: lq quantize -q Q4_K_M failed"
  fi
  if [ -s "$q4" ]; then
    echo "-- perplexity on lq's Q4_K_M (ctx $ctx, $chunks chunks of $(basename "$evalt"))"
    # llama-perplexity now and then exits 0 with its last chunk and final line missing from the log:
    # run it again then (up to three times)
    for attempt in 1 2 3; do
      quietly "$work/ppl-llama.log" "$bin/llama-perplexity" -m "$q4" -f "$evalt" -c "$ctx" --chunks "$chunks" -t "$threads" \
        || { record "FAIL ppl: llama-perplexity failed on lq's Q4_K_M (see $work/ppl-llama.log)"; break; }
      grep -q "Final estimate" "$work/ppl-llama.log" && break
      echo "  llama-perplexity's log has no final estimate (attempt $attempt)"
    done
    quietly "$work/ppl-lq.json" "$lq" --quiet --format json --threads "$threads" perplexity "$q4" -f "$evalt" \
      --ctx "$ctx" --chunks "$chunks" --kv-cache f16 || record "FAIL ppl: lq perplexity failed (see $work/ppl-lq.json)"
    [ -s "$work/ppl-llama.log" ] && [ -s "$work/ppl-lq.json" ] && \
      check "ppl" "$py" "$here/arch_parity.py" ppl "$work/ppl-llama.log" "$work/ppl-lq.json"
  fi
;; esac

# 5. transformers as the reference for the engine
case "$steps" in *" hf "*)
  echo "-- transformers vs lq perplexity on the checkpoint (float32, first $ctx tokens)"
  # Both score the token ids lq's tokenizer gives (the tokenizer's own agreement with transformers is
  # the tokenizer tests' business; Gemma's converter, for one, turns off the space prefix that
  # transformers' SentencePiece tokenizer adds).
  head -c $((40 * ctx)) "$evalt" > "$work/hf-text.txt"
  if quietly "$work/hf-ids.json" "$lq" --quiet --format json tokenize "$src" -f "$work/hf-text.txt" \
     && quietly "$work/hf-ref.json" "$convert_py" "$here/arch_parity_hf.py" "$src" "$evalt" "$ctx" "$work/hf-ids.json" \
     && quietly "$work/hf-lq.json" "$lq" --quiet --format json --threads "$threads" perplexity "$src" -f "$evalt" \
        --ctx "$ctx" --chunks 1; then
    tail -n 1 "$work/hf-ref.json" > "$work/hf-ref.last.json"
    check "hf" "$py" "$here/arch_parity.py" hf "$work/hf-ref.last.json" "$work/hf-lq.json"
  else
    record "FAIL hf: transformers or lq failed (see $work/hf-ref.json, $work/hf-lq.json)"
  fi
;; esac

echo "== summary: $name (model_type $arch)"
for r in "${results[@]}"; do echo "  $r"; done
echo "== $fails failed of ${#results[@]}"
exit $fails
