"""One real client on a quantized directory (compressed-tensors, GPTQ or AWQ layout): load it, generate text from a prompt,
and measure perplexity from prompt log-probabilities on lq perplexity's chunks of a text.

  check_clients.py transformers DIR --text F [--ctx 256] [--chunks 20] [--lq LQ] --json OUT
  check_clients.py vllm DIR --text F [--ctx 256] [--chunks 20] [--lq LQ] --json OUT
  check_clients.py summary JSON...

Each client runs in its own process (check_clients.sh starts them) so that one that fails
leaves the other's result standing; a failure is written to the JSON with its exact error.
Not part of the test suite.
"""
import argparse
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lq_eval  # noqa: E402


def run_transformers(a, res):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(a.threads)
    res["versions"] = {"transformers": transformers.__version__, "torch": torch.__version__}
    try:
        import compressed_tensors
        res["versions"]["compressed-tensors"] = compressed_tensors.__version__
    except ImportError:
        pass
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(a.dir, torch_dtype="auto")  # CPU
    model.eval()
    res["load_seconds"] = time.time() - t0
    tok = AutoTokenizer.from_pretrained(a.dir)
    with torch.inference_mode():
        x = tok(a.prompt, return_tensors="pt")
        y = model.generate(**x, max_new_tokens=a.max_tokens, do_sample=False)
    res["generated"] = tok.decode(y[0][x["input_ids"].shape[1]:], skip_special_tokens=True)
    ids, bos, how = lq_eval.load_token_ids(a.dir, a.text, a.lq)
    chunks, first = lq_eval.perplexity_chunks(ids, bos, a.ctx, a.chunks)
    lps = []
    t0 = time.time()
    for c in chunks:
        lp, tgt = lq_eval.torch_scored_logprobs(model, c, first)
        lps.extend(lp.gather(1, tgt[:, None])[:, 0].tolist())
    res.update(perplexity=lq_eval.nll_from_logprobs(lps), tokens_scored=len(lps), chunks=len(chunks),
               tokenizer=how, eval_seconds=time.time() - t0)
    res["modules"] = lq_eval.describe_quantized_modules(model)


def run_vllm(a, res):
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    import vllm
    from vllm import LLM, SamplingParams
    res["versions"] = {"vllm": vllm.__version__}
    try:
        import torch
        import transformers
        import compressed_tensors
        res["versions"].update(torch=torch.__version__, transformers=transformers.__version__,
                               **{"compressed-tensors": compressed_tensors.__version__})
    except ImportError:
        pass
    t0 = time.time()
    llm = LLM(model=a.dir, max_model_len=max(a.ctx, 512), enforce_eager=True, dtype="auto",
              max_num_seqs=4, seed=0)
    res["load_seconds"] = time.time() - t0
    out = llm.generate([a.prompt], SamplingParams(temperature=0, max_tokens=a.max_tokens))
    res["generated"] = out[0].outputs[0].text
    ids, bos, how = lq_eval.load_token_ids(a.dir, a.text, a.lq)
    chunks, first = lq_eval.perplexity_chunks(ids, bos, a.ctx, a.chunks)
    sp = SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=0)
    t0 = time.time()
    outs = llm.generate([{"prompt_token_ids": c} for c in chunks], sp)
    lps = []
    for c, o in zip(chunks, outs):
        pl = o.prompt_logprobs  # one entry per prompt position (None for the first)
        for j in range(first + 1, len(c)):
            lps.append(pl[j][c[j]].logprob)
    res.update(perplexity=lq_eval.nll_from_logprobs(lps), tokens_scored=len(lps), chunks=len(chunks),
               tokenizer=how, eval_seconds=time.time() - t0)


def cmd_client(a):
    res = {"client": a.cmd, "dir": a.dir, "status": "ok"}
    try:
        (run_transformers if a.cmd == "transformers" else run_vllm)(a, res)
    except BaseException as e:  # noqa: BLE001: the exact error is the result
        res["status"] = "error"
        res["error"] = f"{type(e).__module__}.{type(e).__name__}: {e}"
        res["traceback"] = traceback.format_exc()[-4000:]
        print(res["traceback"], file=sys.stderr)
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps({k: v for k, v in res.items() if k != "traceback"}, indent=1))
    return 0 if res["status"] == "ok" else 1


def cmd_summary(a):
    rows = []
    for p in a.jsons:
        if os.path.exists(p):
            rows.append(json.load(open(p)))
    lq_row = next((r for r in rows if r.get("client") == "lq" and r.get("status") == "ok"), None)
    print()
    print(f"{'client':14} {'status':7} {'perplexity':>11} {'tokens':>7} {'vs lq':>9}  versions")
    for r in rows:
        ppl = r.get("perplexity")
        rel = f"{(ppl / lq_row['perplexity'] - 1) * 100:+.3f}%" if ppl and lq_row else "-"
        v = ", ".join(f"{k} {x}" for k, x in r.get("versions", {}).items())
        ppl_s = "-" if ppl is None else f"{ppl:.4f}"
        print(f"{r['client']:14} {r['status']:7} {ppl_s:>11} "
              f"{r.get('tokens_scored', '-'):>7} {rel:>9}  {v}")
    for r in rows:
        if r.get("generated") is not None:
            print(f"{r['client']} generated: {r['generated']!r}")
        if r.get("tokenizer"):
            print(f"{r['client']} tokens from: {r['tokenizer']}")
        if r.get("modules"):
            print(f"{r['client']} built: " + "; ".join(r["modules"]))
        if r["status"] != "ok":
            print(f"{r['client']} error: {r.get('error')}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("transformers", "vllm"):
        c = sub.add_parser(name)
        c.add_argument("dir")
        c.add_argument("--text", required=True)
        c.add_argument("--ctx", type=int, default=256)
        c.add_argument("--chunks", type=int, default=20)
        c.add_argument("--threads", type=int, default=2)
        c.add_argument("--prompt", default="Once upon a time, there was a little")
        c.add_argument("--max-tokens", type=int, default=32)
        c.add_argument("--lq")
        c.add_argument("--json", required=True)
    s = sub.add_parser("summary")
    s.add_argument("jsons", nargs="+")
    a = p.parse_args()
    sys.exit(cmd_summary(a) if a.cmd == "summary" else cmd_client(a))


if __name__ == "__main__":
    main()
