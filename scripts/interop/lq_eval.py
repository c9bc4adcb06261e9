"""Token streams and evaluation chunks laid out as `lq perplexity` lays them, for Python clients.

Used by benchmarks/*_compare.py and scripts/interop/check_clients.py so that
transformers, vLLM and lq score exactly the same tokens. Holds no model code of its own beyond
a plain transformers forward pass; it must not import vLLM or llm-compressor.

Chunking (llama-perplexity's, as lib/engine/eval.cpp does it): the stream is BOS + the text's
tokens; chunk i is stream[i*ctx : (i+1)*ctx] with its first token replaced by BOS; the logits of
positions ctx/2 .. ctx-2 are scored against the tokens after them.
Calibration chunks (lib/analysis/calibration.cpp make_chunks): the same stream cut into ctx-long
pieces, each starting with BOS, as many as fit up to the sample count.
"""
import json
import math
import os
import re
import subprocess
import time


def llmc_dtype():
    """The dtype llm-compressor's side loads the checkpoint in: LLMC_DTYPE (default "auto", the
    checkpoint's own, as llm-compressor's examples load it; "float32" where the CPU has no bf16
    products, for its fastest run there)."""
    import torch
    v = os.environ.get("LLMC_DTYPE", "auto")
    return v if v == "auto" else getattr(torch, v)


def load_token_ids(model_dir, text_file, lq=None):
    """Token ids of a text (no BOS) and the BOS id. With an lq binary its tokenizer is used
    (`lq tokenize`), so the ids are the ones lq scores; else the model's Hugging Face tokenizer."""
    bos = None
    cfg_path = os.path.join(model_dir, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    bos = cfg.get("bos_token_id")
    if isinstance(bos, list):
        bos = bos[0]
    note = ""
    if lq:
        r = subprocess.run([lq, "--format", "json", "--quiet", "tokenize", model_dir, "-f", text_file],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return json.loads(r.stdout)["tokens"], bos, "lq tokenize"
        note = f" (lq tokenize failed, exit {r.returncode}: {r.stderr.strip()})"
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    with open(text_file, encoding="utf-8") as f:
        text = f.read()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if bos is None:
        bos = tok.bos_token_id
    return ids, bos, "transformers AutoTokenizer" + note


def token_stream(ids, bos):
    """The ids with BOS in front when the tokenizer has one."""
    return ([bos] if bos is not None else []) + list(ids)


def stream_chunks(stream, bos, ctx, n):
    """The first n chunks of ctx tokens of the stream, each starting with BOS when there is one."""
    out = []
    for i in range(n):
        c = stream[i * ctx:(i + 1) * ctx]
        if bos is not None:
            c[0] = bos
        out.append(c)
    return out


def perplexity_chunks(ids, bos, ctx, n_chunks):
    """[(input ids of length ctx, first scored position)] as lq perplexity builds them."""
    stream = token_stream(ids, bos)
    avail = len(stream) // ctx
    if avail < 1 or len(stream) < 2 * ctx:
        raise SystemExit(f"text too short: {len(stream)} tokens for ctx {ctx}")
    n = min(avail, n_chunks) if n_chunks > 0 else avail
    return stream_chunks(stream, bos, ctx, n), ctx // 2


def calibration_chunks(ids, bos, ctx, samples):
    stream = token_stream(ids, bos)
    return stream_chunks(stream, bos, ctx, min(len(stream) // ctx, samples))


def nll_from_logprobs(target_logprobs):
    """Perplexity from a list of log p(target)."""
    return math.exp(-sum(target_logprobs) / len(target_logprobs))


def torch_scored_logprobs(model, chunk, first):
    """log-softmax rows of positions first .. ctx-2 (float32, [ctx-1-first, vocab]) and the
    targets they predict."""
    import torch
    with torch.inference_mode():
        x = torch.tensor([chunk], dtype=torch.long)
        logits = model(input_ids=x).logits[0, first:len(chunk) - 1].float()
        return torch.log_softmax(logits, dim=-1), torch.tensor(chunk[first + 1:], dtype=torch.long)


def evaluate_models(ref_dir, cand_dirs, chunks, first, threads, log=print):
    """Perplexity of the reference and of each candidate, and KL(ref || candidate) (mean and
    same-top-token rate), models loaded one at a time with transformers on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(threads)
    results = {}
    ref_rows = []

    def load(d):
        m = AutoModelForCausalLM.from_pretrained(d, torch_dtype="auto")  # CPU
        m.eval()
        return m

    m = load(ref_dir)
    nll = []
    for c in chunks:
        lp, tgt = torch_scored_logprobs(m, c, first)
        nll.extend(lp.gather(1, tgt[:, None])[:, 0].tolist())
        ref_rows.append(lp)
    results[ref_dir] = {"ppl": nll_from_logprobs(nll), "tokens": len(nll), "dtype": str(next(m.parameters()).dtype)}
    log(f"  reference {ref_dir}: ppl {results[ref_dir]['ppl']:.4f} ({len(nll)} tokens)")
    del m
    for d in cand_dirs:
        m = load(d)
        nll, kl, same = [], [], 0
        for c, ref in zip(chunks, ref_rows):
            lp, tgt = torch_scored_logprobs(m, c, first)
            nll.extend(lp.gather(1, tgt[:, None])[:, 0].tolist())
            kl.extend((ref.exp() * (ref - lp)).sum(-1).tolist())
            same += int((ref.argmax(-1) == lp.argmax(-1)).sum())
        results[d] = {"ppl": nll_from_logprobs(nll), "kld": sum(kl) / len(kl), "same_top": same / len(kl),
                      "tokens": len(nll), "modules": describe_quantized_modules(m)}
        log(f"  {d}: ppl {results[d]['ppl']:.4f} KLD {results[d]['kld']:.6f} same top {results[d]['same_top']:.4f}")
        del m
    return results


def describe_quantized_modules(model):
    """What transformers actually runs for the quantized Linear layers (call it after a forward:
    compressed-tensors decompresses the int8 weights to the model dtype on the first forward):
    the module class, the weight dtype, the input-activation scheme, and whether the forward is
    wrapped by compressed-tensors (then activations are quantized and dequantized in floating
    point, a simulation of W8A8: no int8 arithmetic)."""
    kinds = {}
    for name, mod in model.named_modules():
        if not name.endswith(("q_proj", "down_proj")):
            continue
        w = getattr(mod, "weight", None)
        scheme = getattr(mod, "quantization_scheme", None)
        ia = getattr(scheme, "input_activations", None) if scheme is not None else None
        key = (type(mod).__name__, str(w.dtype) if w is not None else "-",
               "input quant " + (f"{ia.strategy} dynamic={ia.dynamic}" if ia is not None else "none"),
               "forward wrapped" if "forward" in vars(mod) else "plain forward")
        kinds[key] = kinds.get(key, 0) + 1
    return [" / ".join(k) + f" x{v}" for k, v in kinds.items()]

# ---- Shared by the llm-compressor side-by-side scripts (benchmarks/*_compare.py) ----------------

def save_tokenizer(model_dir, out_dir):
    """The tokenizer beside a quantized output: re-saved by transformers where it loads, else the
    source's tokenizer and generation files copied."""
    import shutil
    try:
        from transformers import AutoTokenizer
        AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)
    except Exception as e:  # a synthetic checkpoint's tokenizer.json may not load here: copy the files
        print(f"tokenizer not re-saved ({type(e).__name__}: {e}); copying tokenizer files", flush=True)
    for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
              "generation_config.json"):
        src = os.path.join(model_dir, f)
        if os.path.exists(src) and not os.path.exists(os.path.join(out_dir, f)):
            shutil.copy(src, out_dir)


def llmc_oneshot(a, make_recipe):
    """llm-compressor's oneshot on the calibration chunks lq would use (same text, samples and ctx;
    BOS-led chunks of the text tokenized as one string), the model saved compressed to a.out with
    its tokenizer. make_recipe() returns the modifiers; it may import llm-compressor itself."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from llmcompressor import oneshot

    torch.set_num_threads(a.threads)
    t0 = time.time()
    ids, bos, how = load_token_ids(a.model, a.calibration_data, a.lq)
    chunks = calibration_chunks(ids, bos, a.ctx, a.samples)
    print(f"calibration: {len(chunks)} chunks x {a.ctx} tokens from {a.calibration_data} ({how})", flush=True)
    ds = Dataset.from_dict({"input_ids": chunks, "attention_mask": [[1] * a.ctx for _ in chunks]})
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=llmc_dtype(), device_map="cpu")
    oneshot(model=model, dataset=ds, recipe=make_recipe(), max_seq_length=a.ctx,
            num_calibration_samples=len(chunks), shuffle_calibration_samples=False)
    model.save_pretrained(a.out, save_compressed=True)
    save_tokenizer(a.model, a.out)
    print(f"llm-compressor done in {time.time() - t0:.1f} s -> {a.out}", flush=True)


def compare_main(doc, title, add_llmc_options, cmd_llmc):
    """The command line of a side-by-side script: `llmc` (its own options added by
    add_llmc_options(parser) to the common ones), `eval` and `report` (cmd_eval, cmd_report)."""
    import argparse
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    # (name, add_argument keywords) of each subcommand's common options
    common = {
        "llmc": [("model", {}), ("out", {}), ("--calibration-data", {"required": True}),
                 ("--samples", {"type": int, "default": 512}), ("--ctx", {"type": int, "default": 256}),
                 ("--alpha", {"type": float, "default": 0.5}), ("--threads", {"type": int, "default": 2}),
                 ("--lq", {})],
        "eval": [("model", {}), ("dirs", {"nargs": "+"}), ("--eval-text", {"required": True}),
                 ("--ctx", {"type": int, "default": 256}), ("--chunks", {"type": int, "default": 100}),
                 ("--threads", {"type": int, "default": 2}), ("--lq", {}), ("--json", {"required": True})],
    }
    for cmd, options in common.items():
        q = sub.add_parser(cmd)
        for name, kw in options:
            q.add_argument(name, **kw)
        if cmd == "llmc":
            add_llmc_options(q)
    r = sub.add_parser("report")
    r.add_argument("--json")
    r.add_argument("--title", default=title)
    r.add_argument("--time", action="append", default=[], help="NAME=TIME_FILE=OUTPUT_DIR")
    a = p.parse_args()
    {"llmc": cmd_llmc, "eval": cmd_eval, "report": cmd_report}[a.cmd](a)


def cmd_eval(a):
    ids, bos, how = load_token_ids(a.model, a.eval_text, a.lq)
    chunks, first = perplexity_chunks(ids, bos, a.ctx, a.chunks)
    print(f"evaluation: {len(chunks)} chunks x {a.ctx} tokens of {a.eval_text} ({how}), "
          f"{a.threads} threads", flush=True)
    res = evaluate_models(a.model, a.dirs, chunks, first, a.threads)
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
