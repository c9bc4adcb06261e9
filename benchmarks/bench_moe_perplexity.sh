#!/usr/bin/env bash
# Perplexity throughput on a synthetic ~1B-total-parameter Mixture-of-Experts checkpoint (Mixtral
# layout: hidden 1024, 12 layers, 16/4 heads, 8 experts of 3072 rows, 2 used per token, vocab
# 32000; random bf16 weights): `lq perplexity` tokens/s on one GGUF of it, and llama-perplexity's
# on the same file, text, context and threads when LLAMA_PERPLEXITY names its binary, with the
# ratio (lq / llama.cpp; >= 1: lq is at least as fast).
#
#   benchmarks/bench_moe_perplexity.sh [BUILD_DIR] [WORK_DIR] [LEVEL] [TEXT]
# Defaults: build, /tmp/lq-moe-bench, Q4_K_M, ../shared/corpus/eval.txt. THREADS (default 2),
# CTX (512) and CHUNKS (4) set the run. On a busy machine, OMP_WAIT_POLICY=PASSIVE spares
# llama.cpp's OpenMP barriers the worst of the oversubscription.
set -euo pipefail
build=${1:-build}
work=${2:-/tmp/lq-moe-bench}
level=${3:-Q4_K_M}
text=${4:-$(dirname "$0")/../../shared/corpus/eval.txt}
threads=${THREADS:-2}
ctx=${CTX:-512}
chunks=${CHUNKS:-4}
lq="$build/apps/cli/lq"
mkdir -p "$work"
model="$work/synth-moe-1b"
if [ ! -f "$model/config.json" ]; then
  "$build/benchmarks/make_synthetic_llama" "$model" --mixtral --hidden 1024 --layers 12 --heads 16 --kv-heads 4 \
    --experts 8 --top-k 2 --ff-exp 3072 --vocab 32000
fi
gguf="$work/synth-moe-1b-$level.gguf"
[ -f "$gguf" ] || "$lq" quantize "$model" gguf -q "$level" -o "$gguf" --quiet > /dev/null
cat "$gguf" > /dev/null  # page cache warm

# tokens/s of one run: lq prints "Time: S s (N tokens/s)"; llama-perplexity, with a batch of one
# chunk, prints "S seconds per pass" (its first chunk): ctx / S.
lq_rate=$("$lq" perplexity "$gguf" -f "$text" --ctx "$ctx" --chunks "$chunks" --threads "$threads" 2>&1 |
  sed -n 's/.*(\([0-9.]*\) tokens\/s).*/\1/p' | tail -1)
echo "lq perplexity ($level, ctx $ctx, $chunks chunks, $threads threads): $lq_rate tokens/s"
if [ -n "${LLAMA_PERPLEXITY:-}" ]; then
  ll_pass=$("$LLAMA_PERPLEXITY" -m "$gguf" -f "$text" -c "$ctx" --chunks "$chunks" -t "$threads" -b "$ctx" 2>&1 |
    sed -n 's/.* \([0-9.]*\) seconds per pass.*/\1/p' | tail -1)
  ll_rate=$(awk -v c="$ctx" -v s="$ll_pass" 'BEGIN { printf "%.1f", c / s }')
  echo "llama-perplexity (same file, text, ctx, threads): $ll_rate tokens/s"
  awk -v a="$lq_rate" -v b="$ll_rate" 'BEGIN { if (b > 0) printf "ratio lq / llama.cpp: %.2f\n", a / b }'
fi
