# Shared by the llm-compressor side-by-side scripts (benchmarks/gptq_compare.sh,
# benchmarks/smoothquant_compare.sh): their arguments, the virtual environment, each side run
# under /usr/bin/time -v, and the timed outputs collected in the arrays `times` (--time
# NAME=TIME_FILE=DIR for the report) and `dirs`.

# SCRIPT_NAME DEFAULT_WORK_ROOT LQ MODEL [WORK_DIR]: sets repo, lq, model, work (WORK_DIR, else
# DEFAULT_WORK_ROOT/<model's name>) and venv (VENV, else ../venv-sq beside the repository), and
# the settings both scripts share, from the environment: alpha (ALPHA, 0.5), calib (CALIB,
# ../shared/corpus/calibration.txt), eval_text (EVAL_TEXT, ../shared/corpus/eval.txt), eval_ctx
# (EVAL_CTX, 256), eval_chunks (EVAL_CHUNKS, 100), threads (THREADS, 2), nice_n (NICE, 10).
compare_args() {
  local name=$1 root=$2
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  lq=$(realpath "${3:?usage: $name LQ MODEL [WORK_DIR]}")
  model=$(realpath "${4:?usage: $name LQ MODEL [WORK_DIR]}")
  work=$(realpath -m "${5:-$root/$(basename "$model")}")
  venv=${VENV:-$repo/../venv-sq}
  alpha=${ALPHA:-0.5}
  calib=$(realpath "${CALIB:-$repo/../shared/corpus/calibration.txt}")
  eval_text=$(realpath "${EVAL_TEXT:-$repo/../shared/corpus/eval.txt}")
  eval_ctx=${EVAL_CTX:-256}
  eval_chunks=${EVAL_CHUNKS:-100}
  threads=${THREADS:-2}
  nice_n=${NICE:-10}
}

# The venv outside the repository with llmcompressor (CPU wheels of torch where that index is
# reachable; otherwise PyPI's build, CUDA libraries included, unused here); sets py.
llmc_setup() {
  case "$(realpath -m "$venv")/" in "$repo"/*) echo "VENV must be outside the repository" >&2; exit 2;; esac
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llmcompressor" 2>/dev/null; then
    python3 -m venv "$venv"
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
  times=()
  dirs=()
}

run_timed() {  # NAME TIME_FILE COMMAND...  (run from WORK_DIR: some tools write logs/ in theirs)
  local name=$1 tf=$2; shift 2
  echo "== $name: $*"
  local rc=0
  mkdir -p "$work"
  (cd "$work" && nice -n "$nice_n" /usr/bin/time -v -o "$tf" "$@") || rc=$?
  grep -E "Elapsed|Maximum resident" "$tf" | sed 's/^\s*/   /'
  return $rc
}

# llm-compressor's side: OUT_DIR TIME_FILE COMMAND... (REUSE_LLMC=1 keeps an earlier output and
# timing of the same settings).
llmc_side() {
  local out=$1 tf=$2; shift 2
  if [ "${REUSE_LLMC:-0}" = 1 ] && [ -f "$out/config.json" ] && [ -f "$tf" ]; then
    echo "== llm-compressor: reusing $out and its timing from an earlier run (REUSE_LLMC=1)"
    grep -E "Elapsed|Maximum resident" "$tf" | sed 's/^\s*/   /'
  else
    rm -rf "$out"
    run_timed llm-compressor "$tf" "$@"
  fi
  times+=(--time "llm-compressor=$tf=$out")
  dirs+=("$out")
}

# lq's side: OUT_DIR TIME_FILE COMMAND...; a failure is reported and leaves llm-compressor's alone.
lq_side() {
  local out=$1 tf=$2; shift 2
  rm -rf "$out"
  if run_timed lq "$tf" "$@"; then
    times+=(--time "lq=$tf=$out")
    dirs+=("$out")
  else
    echo "lq failed (exit status above); reporting llm-compressor's side only"
  fi
}
