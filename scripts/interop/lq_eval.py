"""Token streams and evaluation chunks laid out as `lq perplexity` lays them, for Python clients.

Used by benchmarks/smoothquant_compare.py and scripts/interop/check_w8a8_clients.py so that
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
import subprocess


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


def perplexity_chunks(ids, bos, ctx, n_chunks):
    """[(input ids of length ctx, first scored position)] as lq perplexity builds them."""
    stream = ([bos] if bos is not None else []) + list(ids)
    avail = len(stream) // ctx
    if avail < 1 or len(stream) < 2 * ctx:
        raise SystemExit(f"text too short: {len(stream)} tokens for ctx {ctx}")
    n = min(avail, n_chunks) if n_chunks > 0 else avail
    out = []
    for i in range(n):
        c = stream[i * ctx:(i + 1) * ctx]
        if bos is not None:
            c[0] = bos
        out.append(c)
    return out, ctx // 2


def calibration_chunks(ids, bos, ctx, samples):
    stream = ([bos] if bos is not None else []) + list(ids)
    n = min(len(stream) // ctx, samples)
    out = []
    for i in range(n):
        c = stream[i * ctx:(i + 1) * ctx]
        if bos is not None:
            c[0] = bos
        out.append(c)
    return out


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
