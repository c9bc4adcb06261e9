"""llm-compressor's side of benchmarks/gptq_compare.sh, and the evaluation of both outputs.

  gptq_compare.py llmc MODEL OUT --scheme w4a16|w8a8 --calibration-data F --samples N --ctx C
                  --group-size G [--alpha A] [--lq LQ]
      w4a16: GPTQModifier(W4A16: symmetric 4-bit, group G, targets Linear, ignore lm_head);
      w8a8: SmoothQuantModifier(smoothing_strength=A) then GPTQModifier(W8A8), llm-compressor's
      recommended recipe. Calibration chunks are the ones lq uses (same text, samples, ctx;
      BOS-led chunks of the text tokenized as one string); saved compressed.
  gptq_compare.py eval MODEL DIR... --eval-text F --ctx 256 --chunks K [--lq LQ] --json OUT
      perplexity and KL(original || DIR) with transformers on lq perplexity's chunks.
  gptq_compare.py report --json EVAL --time NAME=TIMEFILE=DIR...
      the side-by-side table with ratios.
Run through the .sh, which makes the virtual environment; it is not part of the test suite.
"""
import argparse
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "interop"))
import lq_eval  # noqa: E402


def cmd_llmc(a):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier
    from llmcompressor.modifiers.smoothquant import SmoothQuantModifier

    torch.set_num_threads(a.threads)
    t0 = time.time()
    ids, bos, how = lq_eval.load_token_ids(a.model, a.calibration_data, a.lq)
    chunks = lq_eval.calibration_chunks(ids, bos, a.ctx, a.samples)
    print(f"calibration: {len(chunks)} chunks x {a.ctx} tokens from {a.calibration_data} ({how})", flush=True)
    ds = Dataset.from_dict({"input_ids": chunks, "attention_mask": [[1] * a.ctx for _ in chunks]})
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype="auto", device_map="cpu")
    actorder = None if a.actorder == "none" else a.actorder
    if a.scheme == "w4a16":
        # the W4A16 preset with the group size asked (symmetric int4, per group, static)
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
        scheme = QuantizationScheme(
            targets=["Linear"],
            weights=QuantizationArgs(num_bits=4, type="int", symmetric=True,
                                     strategy="group" if a.group_size > 0 else "channel",
                                     group_size=a.group_size if a.group_size > 0 else None))
        recipe = [GPTQModifier(config_groups={"group_0": scheme}, ignore=["lm_head"], dampening_frac=a.damp,
                               actorder=actorder)]
    else:
        recipe = [SmoothQuantModifier(smoothing_strength=a.alpha),
                  GPTQModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"], dampening_frac=a.damp,
                               actorder=actorder)]
    oneshot(model=model, dataset=ds, recipe=recipe, max_seq_length=a.ctx, num_calibration_samples=len(chunks),
            shuffle_calibration_samples=False)
    model.save_pretrained(a.out, save_compressed=True)
    try:
        AutoTokenizer.from_pretrained(a.model).save_pretrained(a.out)
    except Exception as e:  # the synthetic checkpoint's tokenizer.json may not load here: copy the files
        print(f"tokenizer not re-saved ({type(e).__name__}: {e}); copying tokenizer files", flush=True)
    import shutil
    for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
              "generation_config.json"):
        src = os.path.join(a.model, f)
        if os.path.exists(src) and not os.path.exists(os.path.join(a.out, f)):
            shutil.copy(src, a.out)
    print(f"llm-compressor done in {time.time() - t0:.1f} s -> {a.out}", flush=True)


def cmd_eval(a):
    ids, bos, how = lq_eval.load_token_ids(a.model, a.eval_text, a.lq)
    chunks, first = lq_eval.perplexity_chunks(ids, bos, a.ctx, a.chunks)
    print(f"evaluation: {len(chunks)} chunks x {a.ctx} tokens of {a.eval_text} ({how}), "
          f"{a.threads} threads", flush=True)
    res = lq_eval.evaluate_models(a.model, a.dirs, chunks, first, a.threads)
    res["_meta"] = {"chunks": len(chunks), "ctx": a.ctx, "tokenizer": how}
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)


def parse_time(path):
    """wall seconds and peak RSS (MiB) from /usr/bin/time -v output."""
    txt = open(path).read()
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", txt)
    wall = (int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))) if m else float("nan")
    r = re.search(r"Maximum resident set size \(kbytes\): (\d+)", txt)
    rss = int(r.group(1)) / 1024 if r else float("nan")
    st = re.search(r"Exit status: (\d+)", txt)
    return wall, rss, int(st.group(1)) if st else 0


def cmd_report(a):
    ev = json.load(open(a.json)) if a.json and os.path.exists(a.json) else {}
    rows = {}
    for spec in a.time:
        name, path, out = spec.split("=", 2)
        wall, rss, st = parse_time(path)
        e = ev.get(out, {})
        rows[name] = (wall, rss, st, e.get("kld"), e.get("ppl"), e.get("same_top"))
    meta = ev.get("_meta", {})
    base = next((v for k, v in ev.items() if not k.startswith("_") and "kld" not in v), None)
    print()
    print(f"== {a.title}")
    if base:
        print(f"original: perplexity {base['ppl']:.4f} on {meta.get('chunks')} chunks x ctx {meta.get('ctx')} "
              f"({meta.get('tokenizer')})")
    print(f"{'':16} {'wall s':>9} {'peak RSS MiB':>13} {'KLD':>10} {'ppl':>9} {'same top':>9}")
    f = lambda v, p: "-" if v is None else f"{v:.{p}f}"
    for name, (wall, rss, st, kld, ppl, same) in rows.items():
        flag = "" if st == 0 else f"  (exit {st})"
        print(f"{name:16} {wall:9.2f} {rss:13.1f} {f(kld, 6):>10} {f(ppl, 4):>9} {f(same, 4):>9}{flag}")
    if "lq" in rows and "llm-compressor" in rows and rows["lq"][2] == 0:
        lw, lr, _, lk, _, _ = rows["lq"]
        cw, cr, _, ck, _, _ = rows["llm-compressor"]
        print(f"ratios (llm-compressor / lq): time {cw / lw:.2f}x, peak RSS {cr / lr:.2f}x" +
              (f", KLD lq/llm-compressor {lk / ck:.3f}" if lk is not None and ck else ""))
    for k, v in ev.items():
        if not k.startswith("_") and v.get("modules"):
            print(f"transformers built for {k}: " + "; ".join(v["modules"]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("llmc")
    q.add_argument("model")
    q.add_argument("out")
    q.add_argument("--calibration-data", required=True)
    q.add_argument("--samples", type=int, default=512)
    q.add_argument("--ctx", type=int, default=256)
    q.add_argument("--scheme", choices=["w4a16", "w8a8"], default="w4a16")
    q.add_argument("--group-size", type=int, default=128)
    q.add_argument("--damp", type=float, default=0.01)
    q.add_argument("--actorder", choices=["static", "group", "none"], default="static")
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
    r.add_argument("--title", default="GPTQ side by side")
    r.add_argument("--time", action="append", default=[], help="NAME=TIME_FILE=OUTPUT_DIR")
    a = p.parse_args()
    {"llmc": cmd_llmc, "eval": cmd_eval, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
