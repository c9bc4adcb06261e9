"""Compares lq's reading of third-party quantized checkpoints with the tools' own dequantization
and perplexity (made by make_third_party_checkpoints.sh). Run through compare_third_party.sh.

  compare_third_party.py tensors REF.safetensors X.gguf [--config MODEL/config.json] [--json OUT]
      max abs diff between every tensor of a GGUF written by `lq convert CKPT gguf` (F32, or
      any type gguf-py dequantizes) and the reference F32 tensors in Hugging Face naming. llama.cpp's
      q/k row permutation is applied to the reference's q_proj/k_proj before comparing.
  compare_third_party.py table ROW.json...
      the summary table.
Needs numpy, safetensors and gguf (pip) only.
"""
import argparse
import json
import sys

HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    if parts[0] == "model" and parts[1] == "layers":
        mod = ".".join(parts[3:-1])
        if mod in HF_TO_GGUF:
            return f"blk.{parts[2]}.{HF_TO_GGUF[mod]}.{parts[-1]}"
    return None


def llama_permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute: rows of q/k regrouped for ggml's RoPE."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_gguf(path):
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize
    r = GGUFReader(path)
    out, types = {}, {}
    for t in r.tensors:
        shape = [int(x) for x in reversed(t.shape.tolist())]  # [rows, cols] of the [out, in] matrix
        a = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        out[t.name] = a
        types[t.name] = t.tensor_type.name
    return out, types


def cmd_tensors(a):
    import numpy as np
    from safetensors.numpy import load_file
    ref = load_file(a.ref)
    cfg = json.load(open(a.config))
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_head)
    got, types = read_gguf(a.gguf)
    rows, missing, worst = [], [], (0.0, "")
    for hf, w in sorted(ref.items()):
        g = gguf_name(hf)
        if g is None:
            continue
        if g not in got:
            if g == "output.weight" and cfg.get("tie_word_embeddings"):
                continue
            missing.append(g)
            continue
        w = w.astype(np.float32)
        if hf.endswith("self_attn.q_proj.weight"):
            w = llama_permute(w, n_head)
        elif hf.endswith("self_attn.k_proj.weight"):
            w = llama_permute(w, n_kv)
        x = got[g]
        if x.shape != w.shape:
            missing.append(f"{g} shape {x.shape} vs {w.shape}")
            continue
        d = float(np.abs(x - w).max())
        rel = d / max(float(np.abs(w).max()), 1e-30)
        rows.append({"name": g, "type": types[g], "max_abs_diff": d, "rel": rel, "exact": bool(d == 0.0)})
        if d >= worst[0]:
            worst = (d, g)
    res = {"gguf": a.gguf, "ref": a.ref, "tensors": len(rows), "exact_tensors": sum(r["exact"] for r in rows),
           "max_abs_diff": worst[0], "worst_tensor": worst[1], "missing": missing,
           "types": sorted({r["type"] for r in rows})}
    print(f"{a.gguf}: {res['tensors']} tensors, {res['exact_tensors']} identical, max abs diff {worst[0]:.3g}"
          f" ({worst[1]}), types {','.join(res['types'])}" + (f", MISSING {missing}" if missing else ""))
    if a.json:
        res["rows"] = rows
        json.dump(res, open(a.json, "w"), indent=1)


def cmd_table(a):
    rows = [json.load(open(p)) for p in a.rows]
    hdr = f"{'checkpoint':34} {'F32 maxdiff':>11} {'exact: types / maxdiff':>30} {'hf ppl':>9} {'hf ref':>9} " \
          f"{'lq ppl':>9} {'lq/hf':>8} {'llama.cpp':>9}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        def f(x, fmt):
            width = int("".join(c for c in fmt.split(".")[0] if c.isdigit()) or 0)
            return format(x, fmt) if isinstance(x, (int, float)) else str(x if x is not None else "-").rjust(width)
        hf = r.get("hf_ppl")
        lq = r.get("lq_ppl")
        ratio = lq / hf if isinstance(lq, float) and isinstance(hf, float) else None
        ex = r.get("exact_types", "-")
        exd = r.get("exact_maxdiff")
        print(f"{r['name']:34} {f(r.get('f32_maxdiff'), '11.3g')} {(ex + ' / ' + f(exd, '.3g'))[:30]:>30} "
              f"{f(hf, '9.4f')} {f(r.get('hf_ref_ppl'), '9.4f')} {f(lq, '9.4f')} {f(ratio, '8.5f')} "
              f"{f(r.get('llama_ppl'), '9.4f')}")
        for n in r.get("notes", []):
            print(f"    {n}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("tensors")
    s.add_argument("ref")
    s.add_argument("gguf")
    s.add_argument("--config", required=True)
    s.add_argument("--json")
    s = sub.add_parser("table")
    s.add_argument("rows", nargs="+")
    a = p.parse_args()
    {"tensors": cmd_tensors, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
