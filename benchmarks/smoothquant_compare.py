"""llm-compressor's side of benchmarks/smoothquant_compare.sh, and the evaluation of both outputs.

  smoothquant_compare.py llmc MODEL OUT --calibration-data F --samples N --ctx C --alpha A [--lq LQ]
      SmoothQuantModifier(smoothing_strength=A) + QuantizationModifier(W8A8, round to nearest,
      targets Linear, ignore lm_head) on the calibration chunks lq would use (same text, samples,
      ctx; BOS-led chunks of the text tokenized as one string), saved compressed.
  smoothquant_compare.py eval MODEL DIR... --eval-text F --ctx 256 --chunks K [--lq LQ] --json OUT
      perplexity and KL(original || DIR) with transformers on lq perplexity's chunks.
  smoothquant_compare.py report --json EVAL --time NAME=TIMEFILE...
      the side-by-side table with ratios.
Run through the .sh, which makes the virtual environment; it is not part of the test suite.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "interop"))
import lq_eval  # noqa: E402


def cmd_llmc(a):
    def recipe():
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.smoothquant import SmoothQuantModifier
        return [SmoothQuantModifier(smoothing_strength=a.alpha),
                QuantizationModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"])]
    lq_eval.llmc_oneshot(a, recipe)


if __name__ == "__main__":
    lq_eval.compare_main(__doc__, "SmoothQuant W8A8 side by side", lambda q: None, cmd_llmc)
