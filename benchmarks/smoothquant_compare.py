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
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "interop"))
import lq_eval  # noqa: E402


def cmd_llmc(a):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.smoothquant import SmoothQuantModifier

    torch.set_num_threads(a.threads)
    t0 = time.time()
    ids, bos, how = lq_eval.load_token_ids(a.model, a.calibration_data, a.lq)
    chunks = lq_eval.calibration_chunks(ids, bos, a.ctx, a.samples)
    print(f"calibration: {len(chunks)} chunks x {a.ctx} tokens from {a.calibration_data} ({how})", flush=True)
    ds = Dataset.from_dict({"input_ids": chunks, "attention_mask": [[1] * a.ctx for _ in chunks]})
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype="auto", device_map="cpu")
    recipe = [
        SmoothQuantModifier(smoothing_strength=a.alpha),
        QuantizationModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"]),
    ]
    oneshot(model=model, dataset=ds, recipe=recipe, max_seq_length=a.ctx, num_calibration_samples=len(chunks),
            shuffle_calibration_samples=False)
    model.save_pretrained(a.out, save_compressed=True)
    lq_eval.save_tokenizer(a.model, a.out)
    print(f"llm-compressor done in {time.time() - t0:.1f} s -> {a.out}", flush=True)


cmd_eval = lq_eval.cmd_eval
cmd_report = lq_eval.cmd_report


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("llmc")
    q.add_argument("model")
    q.add_argument("out")
    q.add_argument("--calibration-data", required=True)
    q.add_argument("--samples", type=int, default=512)
    q.add_argument("--ctx", type=int, default=256)
    q.add_argument("--alpha", type=float, default=0.5)
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--lq")
    e = sub.add_parser("eval")
    e.add_argument("model")
    e.add_argument("dirs", nargs="+")
    e.add_argument("--eval-text", required=True)
    e.add_argument("--ctx", type=int, default=256)
    e.add_argument("--chunks", type=int, default=100)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--lq")
    e.add_argument("--json", required=True)
    r = sub.add_parser("report")
    r.add_argument("--json")
    r.add_argument("--title", default="SmoothQuant W8A8 side by side")
    r.add_argument("--time", action="append", default=[], help="NAME=TIME_FILE=OUTPUT_DIR")
    a = p.parse_args()
    {"llmc": cmd_llmc, "eval": cmd_eval, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
