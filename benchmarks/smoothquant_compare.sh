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
# shellcheck source=benchmarks/llmc_compare_lib.sh
source "$(dirname "$0")/llmc_compare_lib.sh"
compare_args smoothquant_compare.sh /tmp/lq-sq-compare "$@"  # repo, lq, model, work, venv, the shared settings
samples=${SAMPLES:-512}
ctx=${CTX:-256}
llmc_setup

tag="a$alpha-n$samples-c$ctx"
llmc_out="$work/llmc-w8a8-$tag"
llmc_side "$llmc_out" "$work/time-llmc-$tag.txt" "$py" "$repo/benchmarks/smoothquant_compare.py" llmc "$model" \
  "$llmc_out" --calibration-data "$calib" --samples "$samples" --ctx "$ctx" --alpha "$alpha" --threads "$threads" \
  --lq "$lq"

lq_out="$work/lq-w8a8-$tag"
help_text=$("$lq" quantize --help 2>&1 || true)  # read whole: grep -q quitting early fails a pipe under pipefail
if grep -q -- "--smoothquant" <<<"$help_text"; then
  lq_side "$lq_out" "$work/time-lq-$tag.txt" "$lq" --threads "$threads" quantize "$model" smoothquant --smoothquant \
    --alpha "$alpha" --calibration-data "$calib" --calibration-samples "$samples" --ctx "$ctx" -o "$lq_out"
else
  echo "$lq does not support \`quantize MODEL smoothquant --smoothquant\` yet; reporting llm-compressor's side only"
fi

"$py" "$repo/benchmarks/smoothquant_compare.py" eval "$model" "${dirs[@]}" --eval-text "$eval_text" \
  --ctx "$eval_ctx" --chunks "$eval_chunks" --threads "$threads" --lq "$lq" --json "$work/eval-$tag.json"
"$py" "$repo/benchmarks/smoothquant_compare.py" report --json "$work/eval-$tag.json" "${times[@]}" \
  --title "$(basename "$model"): alpha $alpha, $samples samples x ctx $ctx of $(basename "$calib"), $threads threads"
