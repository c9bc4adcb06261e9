"""llm-compressor's side of benchmarks/gptq_compare.sh, and the evaluation of both outputs.

  gptq_compare.py llmc MODEL OUT --scheme w4a16|w8a8 --calibration-data F --samples N --ctx C
                  --group-size G [--alpha A] [--lq LQ]
      w4a16: GPTQModifier(W4A16: symmetric 4-bit, group G, targets Linear, ignore lm_head and each
      --ignore pattern, e.g. a mixture of experts' routers "re:.*block_sparse_moe.gate$");
      w8a8: SmoothQuantModifier(smoothing_strength=A) then GPTQModifier(W8A8), llm-compressor's
      recommended recipe. Calibration chunks are the ones lq uses (same text, samples, ctx;
      BOS-led chunks of the text tokenized as one string); saved compressed.
  gptq_compare.py eval MODEL DIR... --eval-text F --ctx 256 --chunks K [--lq LQ] --json OUT
      perplexity and KL(original || DIR) with transformers on lq perplexity's chunks.
  gptq_compare.py report --json EVAL --time NAME=TIMEFILE=DIR...
      the side-by-side table with ratios.
Run through the .sh, which makes the virtual environment; it is not part of the test suite.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "interop"))
import lq_eval  # noqa: E402


def cmd_llmc(a):
    def recipe():
        from llmcompressor.modifiers.quantization import GPTQModifier
        from llmcompressor.modifiers.smoothquant import SmoothQuantModifier
        actorder = None if a.actorder == "none" else a.actorder
        ignore = ["lm_head"] + a.ignore
        if a.scheme == "w8a8":
            return [SmoothQuantModifier(smoothing_strength=a.alpha),
                    GPTQModifier(targets="Linear", scheme="W8A8", ignore=ignore, dampening_frac=a.damp,
                                 actorder=actorder)]
        # the W4A16 preset with the group size asked (symmetric int4, per group, static)
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
        scheme = QuantizationScheme(
            targets=["Linear"],
            weights=QuantizationArgs(num_bits=4, type="int", symmetric=True,
                                     strategy="group" if a.group_size > 0 else "channel",
                                     group_size=a.group_size if a.group_size > 0 else None))
        return [GPTQModifier(config_groups={"group_0": scheme}, ignore=ignore, dampening_frac=a.damp,
                             actorder=actorder)]
    lq_eval.llmc_oneshot(a, recipe)


def llmc_options(q):
    q.add_argument("--scheme", choices=["w4a16", "w8a8"], default="w4a16")
    q.add_argument("--group-size", type=int, default=128)
    q.add_argument("--damp", type=float, default=0.01)
    q.add_argument("--actorder", choices=["static", "group", "none"], default="static")
    q.add_argument("--ignore", action="append", default=[], help="another module pattern left unquantized")


if __name__ == "__main__":
    lq_eval.compare_main(__doc__, "GPTQ side by side", llmc_options, cmd_llmc)
