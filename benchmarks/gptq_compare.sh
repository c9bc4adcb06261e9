#!/usr/bin/env bash
# GPTQ side by side: llm-compressor's GPTQModifier against `lq quantize MODEL gptq` on the same
# model, calibration text, sample count, ctx, group size, act-order and threads. SCHEME=w4a16
# (default): W4A16, symmetric 4-bit with groups, compressed-tensors pack-quantized on both sides.
# SCHEME=w8a8: llm-compressor's SmoothQuantModifier + GPTQModifier(W8A8: int8 symmetric weights per
# output channel, int8 dynamic per-token activations) against `lq quantize MODEL gptq --smoothquant`
# (GPTQ-rounded int8 weights in the same compressed-tensors int-quantized layout; the script says
# so when this lq has no such option), same alpha, samples and ctx (ACT_ORDER=none is the plain
# W8A8 preset on both sides; GROUP does not apply). Prints wall time and peak RSS of both (/usr/bin/time -v),
# then perplexity and KL divergence against the original model of both outputs, measured with
# transformers (+ compressed-tensors) on lq perplexity's chunks of the evaluation text, and the
# ratios. Not part of the test suite: it installs llmcompressor and its torch with pip into a
# virtual environment outside the repository.
#
#   benchmarks/gptq_compare.sh LQ MODEL [WORK_DIR]
#   e.g. benchmarks/gptq_compare.sh build/apps/cli/lq ../shared/models/tiny-llama
#        SAMPLES=16 CTX=256 EVAL=0 benchmarks/gptq_compare.sh build/apps/cli/lq /tmp/synth-1b
#        (made by build/benchmarks/make_synthetic_llama /tmp/synth-1b)
#        IGNORE='re:.*block_sparse_moe.gate$' ACT_ORDER=none benchmarks/gptq_compare.sh build/apps/cli/lq /tmp/mixtral
#        (a mixture of experts: its routers stay float on both sides, as lq leaves them; llm-compressor
#        0.14 writes the experts under linearized names transformers 5.17 does not load, so EVAL=0 and
#        `lq perplexity` on both directories)
# Environment: VENV (default ../venv-sq from the repository root), SCHEME (w4a16), SAMPLES (128),
# CTX (256; calibration ctx), GROUP (128), ACT_ORDER (static | none; llm-compressor's default is
# static, lq's --act-order), ALPHA (0.5, w8a8 only), CALIB (../shared/corpus/calibration.txt),
# EVAL_TEXT (../shared/corpus/eval.txt), EVAL_CTX (256), EVAL_CHUNKS (100), EVAL (1; 0 skips
# the evaluation, e.g. for a synthetic model whose perplexity means nothing), THREADS (2),
# NICE (10), REUSE_LLMC (1: keep an llm-compressor output and timing already in WORK_DIR for the
# same settings instead of running it again), LQ_ARGS (more lq options), IGNORE (module patterns
# llm-compressor leaves unquantized besides lm_head, space-separated: a mixture of experts' routers,
# "re:.*block_sparse_moe.gate$" for Mixtral, as lq leaves them), LLMC_DTYPE (auto: the
# dtype llm-compressor loads the model in; float32 where torch has no bf16 products on the CPU).
set -euo pipefail
# shellcheck source=benchmarks/llmc_compare_lib.sh
source "$(dirname "$0")/llmc_compare_lib.sh"
compare_args gptq_compare.sh /tmp/lq-gptq-compare "$@"  # repo, lq, model, work, venv, the shared settings
scheme=${SCHEME:-w4a16}
samples=${SAMPLES:-128}
ctx=${CTX:-256}
group=${GROUP:-128}
act=${ACT_ORDER:-static}
case "$scheme" in w4a16|w8a8) ;; *) echo "SCHEME must be w4a16 or w8a8" >&2; exit 2;; esac
case "$act" in static|none) ;; *) echo "ACT_ORDER must be static or none" >&2; exit 2;; esac

llmc_setup
read -r -a ignore_list <<< "${IGNORE:-}"  # no glob expansion of the patterns
ignore_args=()
for i in "${ignore_list[@]}"; do ignore_args+=("--ignore=$i"); done

tag="$scheme-g$group-$act-n$samples-c$ctx"
[ "$scheme" = w8a8 ] && tag="$tag-a$alpha"
llmc_out="$work/llmc-$tag"
llmc_side "$llmc_out" "$work/time-llmc-$tag.txt" "$py" "$repo/benchmarks/gptq_compare.py" llmc "$model" \
  "$llmc_out" --scheme "$scheme" --calibration-data "$calib" --samples "$samples" --ctx "$ctx" \
  --group-size "$group" --actorder "$act" --alpha "$alpha" --threads "$threads" --lq "$lq" "${ignore_args[@]}"

lq_out="$work/lq-$tag"
act_args=()
[ "$act" = static ] && act_args=(--act-order)
if [ "$scheme" = w4a16 ]; then
  lq_cmd=("$lq" --threads "$threads" quantize "$model" gptq --bits 4 --group-size "$group" "${act_args[@]}"
          --calibration-data "$calib" --calibration-samples "$samples" --ctx "$ctx" --no-checkpoints -o "$lq_out")
  supported=1
else
  lq_cmd=("$lq" --threads "$threads" quantize "$model" gptq --smoothquant --alpha "$alpha"
          "${act_args[@]}" --calibration-data "$calib" --calibration-samples "$samples" --ctx "$ctx" --no-checkpoints
          -o "$lq_out")
  supported=0
  # an lq with the combination documents it in its help ("GPTQ-rounded int8 weights"); the help is
  # read whole first: under pipefail, grep -q quitting early would fail the pipe with SIGPIPE
  help_text=$("$lq" quantize --help 2>&1 || true)
  if grep -qi "GPTQ-rounded int8" <<<"$help_text"; then supported=1; fi
fi
# shellcheck disable=SC2086
lq_cmd+=(${LQ_ARGS:-})
if [ "$supported" = 1 ]; then
  lq_side "$lq_out" "$work/time-lq-$tag.txt" "${lq_cmd[@]}"
else
  echo "$lq does not support \`quantize MODEL gptq --smoothquant\`; reporting llm-compressor's side only"
fi

if [ "${EVAL:-1}" = 1 ]; then
  "$py" "$repo/benchmarks/gptq_compare.py" eval "$model" "${dirs[@]}" --eval-text "$eval_text" \
    --ctx "$eval_ctx" --chunks "$eval_chunks" --threads "$threads" --lq "$lq" --json "$work/eval-$tag.json"
else
  rm -f "$work/eval-$tag.json"
fi
msize=$(du -cb "$model"/*.safetensors | tail -1 | cut -f1)
"$py" "$repo/benchmarks/gptq_compare.py" report --json "$work/eval-$tag.json" "${times[@]}" \
  --title "$(basename "$model") ($((msize / 1048576)) MiB of safetensors): $scheme g$group act-order $act, $samples samples x ctx $ctx of $(basename "$calib"), $threads threads"
