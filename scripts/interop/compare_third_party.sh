#!/usr/bin/env bash
# For each third-party checkpoint made by make_third_party_checkpoints.sh (a folder with
# ref-dequant.safetensors and ppl.json), runs a given lq binary and prints, per checkpoint:
#  - the max abs diff between lq's dequantization (`lq convert CKPT gguf -q F32`) and the tool's own
#    (ref-dequant.safetensors), llama.cpp's q/k row permutation undone;
#  - the same for `lq convert CKPT gguf -q exact` (tensors kept in the source's grid);
#  - `lq perplexity CKPT` beside transformers' perplexity on the checkpoint (ppl.json: "native" =
#    transformers' own loading in float32, "ref" = the reference weights in float32), with the ratio;
#  - with LLAMA_PERPLEXITY set (a llama-perplexity binary): llama.cpp's perplexity on the exact GGUF
#    (BF16 tensors widened to F32 first when llama.cpp refuses them: gguf_widen_bf16.py, said in the notes).
#  - with TOOL_REF=1, for checkpoints with ref-dequant-tool.safetensors (the tool's OWN dequantization
#    code, `compare_third_party.py tool-ref` run in the tool's venv: GPTQ, AWQ): lq's F32 GGUF against it
#    too, and that reference against ref-dequant.safetensors.
# Not part of the test suite.
#
#   scripts/interop/compare_third_party.sh LQ [CKPT_DIR...]      (default: every folder of ../ckpts)
# Environment: WORK (/tmp/lq-third-party), EVAL (../shared/corpus/eval.txt), CTX (256), CHUNKS (20),
# THREADS (2), NICE (10), VENV (../venv-cmp: numpy, safetensors, gguf; made when missing),
# LLAMA_PERPLEXITY (unset: skipped), TOOL_REF (unset: skipped).
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/scripts/interop
lq=$(realpath "${1:?usage: compare_third_party.sh LQ [CKPT_DIR...]}"); shift
work=$(realpath -m "${WORK:-/tmp/lq-third-party}")
evalt=$(realpath "${EVAL:-$repo/../shared/corpus/eval.txt}")
ctx=${CTX:-256}; chunks=${CHUNKS:-20}; threads=${THREADS:-2}; nice_n=${NICE:-10}
venv=$(realpath -m "${VENV:-$repo/../venv-cmp}")
case "$venv/" in "$repo"/*) echo "VENV must be outside the repository" >&2; exit 2;; esac
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q numpy safetensors gguf || exit 1
fi
py=$venv/bin/python
dirs=("$@")
if [ ${#dirs[@]} -eq 0 ]; then
  for d in "$repo"/../ckpts/*/; do [ -f "$d/ref-dequant.safetensors" ] && dirs+=("$(realpath "$d")"); done
fi
mkdir -p "$work"
has_convert=1
"$lq" convert --help > /dev/null 2>&1 || { has_convert=0; echo "this lq has no convert command: tensor comparisons skipped"; }

rows=()
rm -f "$work"/*/tensors-F32-tool.json
for d in "${dirs[@]}"; do
  d=$(realpath "$d"); name=$(basename "$d"); w=$work/$name; mkdir -p "$w"
  notes=()
  echo "== $name"
  f32=""; ex=""
  if [ $has_convert = 1 ]; then
    for q in F32 exact; do
      g=$w/$name-$q.gguf
      conv() { nice -n "$nice_n" "$lq" --quiet --threads "$threads" --format json convert "$d" gguf -q "$q" -o "$g" "$@" \
          > "$w/convert-$q.json" 2> "$w/convert-$q.err"; }
      ok=0; conv && ok=1
      if [ $ok = 0 ] && [ $q = F32 ] && grep -q -- "--allow-requantize" "$w/convert-$q.err"; then
        # F32 is the exact dequantization, not a requantization: say that lq refused it, then pass the flag
        notes+=("lq convert -q F32 refused without --allow-requantize: $(head -c 160 "$w/convert-$q.err" | tr '\n' ' ')")
        conv --allow-requantize && ok=1
      fi
      if [ $ok = 1 ]; then
        nice -n "$nice_n" "$py" "$here/compare_third_party.py" tensors "$d/ref-dequant.safetensors" "$g" \
          --config "$d/config.json" --json "$w/tensors-$q.json"
        [ $q = F32 ] && f32=$w/tensors-$q.json || ex=$w/tensors-$q.json
        if [ $q = F32 ] && [ -n "${TOOL_REF:-}" ] && [ -f "$d/ref-dequant-tool.safetensors" ]; then
          nice -n "$nice_n" "$py" "$here/compare_third_party.py" tensors "$d/ref-dequant-tool.safetensors" "$g" \
            --config "$d/config.json" --json "$w/tensors-F32-tool.json"
        fi
      else
        echo "lq convert -q $q failed (exit $?): $(head -c 300 "$w/convert-$q.err")"
        notes+=("lq convert -q $q: $(head -c 200 "$w/convert-$q.err" | tr '\n' ' ')")
      fi
    done
  fi
  if nice -n "$nice_n" "$lq" --format json --quiet --threads "$threads" perplexity "$d" -f "$evalt" --ctx "$ctx" \
      --chunks "$chunks" > "$w/lq-ppl.json" 2> "$w/lq-ppl.err"; then :; else
    echo "lq perplexity failed: $(head -c 300 "$w/lq-ppl.err")"
    notes+=("lq perplexity: $(head -c 200 "$w/lq-ppl.err" | tr '\n' ' ')"); rm -f "$w/lq-ppl.json"
  fi
  llama=""
  if [ -n "${LLAMA_PERPLEXITY:-}" ] && [ -f "$w/$name-exact.gguf" ]; then
    nice -n "$nice_n" "$LLAMA_PERPLEXITY" -m "$w/$name-exact.gguf" -f "$evalt" -c "$ctx" --chunks "$chunks" \
      -t "$threads" -b "$ctx" > "$w/llama-ppl.log" 2>&1
    if grep -q "unsupported types.*bf16" "$w/llama-ppl.log"; then
      notes+=("llama.cpp refuses the BF16 tensors lq wrote (norms); measured on a copy with them widened to F32")
      "$py" "$here/gguf_widen_bf16.py" "$w/$name-exact.gguf" "$w/$name-exact-f32norms.gguf" && \
      nice -n "$nice_n" "$LLAMA_PERPLEXITY" -m "$w/$name-exact-f32norms.gguf" -f "$evalt" -c "$ctx" --chunks "$chunks" \
        -t "$threads" -b "$ctx" > "$w/llama-ppl.log" 2>&1
    fi
    llama=$(grep -oE "Final estimate: PPL = [0-9.]+" "$w/llama-ppl.log" | grep -oE "[0-9.]+$")
    [ -n "$llama" ] || notes+=("llama-perplexity: $(tail -n 1 "$w/llama-ppl.log")")
  fi
  printf '%s\n' "${notes[@]}" > "$w/notes.txt"
  "$py" - "$w/row.json" "$name" "$d/ppl.json" "$w/lq-ppl.json" "$f32" "$ex" "$llama" "$w/notes.txt" <<'PY'
import json, os, sys
out, name, hfp, lqp, f32, ex, llama, notes = sys.argv[1:]
row = {"name": name, "notes": [n for n in open(notes).read().splitlines() if n]}
if os.path.exists(hfp):
    h = json.load(open(hfp))
    row["hf_ppl"] = h.get("native", {}).get("ppl")
    row["hf_ref_ppl"] = h.get("ref", {}).get("ppl")
    for m in ("native", "ref"):
        if "error" in h.get(m, {}):
            row["notes"].append(f"transformers {m}: {h[m]['error'][:160]}")
else:
    row["notes"].append("no ppl.json (transformers perplexity not run)")
if os.path.exists(lqp):
    row["lq_ppl"] = json.load(open(lqp))["perplexity"]
if f32:
    t = json.load(open(f32)); row["f32_maxdiff"] = t["max_abs_diff"]
    if t["missing"]: row["notes"].append(f"F32 GGUF missing {t['missing'][:4]}")
if ex:
    t = json.load(open(ex)); row["exact_maxdiff"] = t["max_abs_diff"]; row["exact_types"] = ",".join(t["types"])
    row["exact_identical"] = f"{t['exact_tensors']}/{t['tensors']}"
if llama:
    row["llama_ppl"] = float(llama)
tool = os.path.join(os.path.dirname(out), "tensors-F32-tool.json")
if os.path.exists(tool):
    t = json.load(open(tool)); row["f32_tool_maxdiff"] = t["max_abs_diff"]
    row["f32_tool_identical"] = f"{t['exact_tensors']}/{t['tensors']}"
    from safetensors.numpy import load_file
    d = os.path.dirname(hfp)
    a, b = load_file(os.path.join(d, "ref-dequant.safetensors")), load_file(os.path.join(d, "ref-dequant-tool.safetensors"))
    row["ref_vs_tool_maxdiff"] = max(float(abs(a[k].astype("float32") - b[k].astype("float32")).max()) for k in b if k in a)
json.dump(row, open(out, "w"), indent=1)
PY
  rows+=("$w/row.json")
done
echo
"$py" "$here/compare_third_party.py" table "${rows[@]}" | tee "$work/table.txt"
