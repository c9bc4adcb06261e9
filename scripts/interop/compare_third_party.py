"""Compares lq's reading of third-party quantized checkpoints with the tools' own dequantization
and perplexity (made by make_third_party_checkpoints.sh). Run through compare_third_party.sh.

  compare_third_party.py tensors REF.safetensors X.gguf [--config MODEL/config.json] [--json OUT]
      max abs diff between every tensor of a GGUF written by `lq convert CKPT gguf` (F32, or
      any type gguf-py dequantizes) and the reference F32 tensors in Hugging Face naming. llama.cpp's
      q/k row permutation is applied to the reference's q_proj/k_proj before comparing.
  compare_third_party.py table ROW.json...
      the summary table.
  compare_third_party.py tool-ref CKPT [--against CKPT/ref-dequant.safetensors] [--out F]
      GPTQ / AWQ checkpoints: the reference made with the tool's OWN dequantization code (GPTQModel's
      TorchLinear.dequantize_weight after its v1->v2 zero conversion; AutoAWQ's dequantize_gemm),
      written as CKPT/ref-dequant-tool.safetensors (F32, HF names, [out, in], plus every other float
      tensor widened to F32). Run it with the tool's venv (gptqmodel or autoawq installed).
tensors and table need numpy, safetensors and gguf (pip) only.
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
        if "f32_tool_maxdiff" in r:
            print(f"    tool's own dequantization: lq F32 max abs diff {r['f32_tool_maxdiff']:.3g} "
                  f"({r.get('f32_tool_identical')} identical); ref-dequant vs tool {r.get('ref_vs_tool_maxdiff'):.3g}")
        for n in r.get("notes", []):
            print(f"    {n}")


# ---- references made with the tools' own dequantization code ----------------------------------

def _gptq_tool_weights(d, tensors, qcfg):
    """GPTQModel's own code: a TorchLinear (its CPU quant-linear) per module holding the packed
    tensors; v1 checkpoints go through GPTQModel's convert_gptq_v1_to_v2_format_module (what its
    loader does); then PackableQuantLinear.dequantize_weight(), the plain torch path (TorchLinear's
    post_init would wrap it in torch.compile, which is the same code compiled). Scales widened to
    F32 first so (q - z) * s is not rounded to fp16. Returns {HF name: F32 [out, in]}."""
    import torch
    from gptqmodel.nn_modules.qlinear import PackableQuantLinear
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear
    from gptqmodel.utils.model import convert_gptq_v1_to_v2_format_module
    bits, gs = int(qcfg["bits"]), int(qcfg.get("group_size", 128))
    fmt = qcfg.get("checkpoint_format", qcfg.get("format", "gptq"))
    sym, desc = bool(qcfg.get("sym", True)), bool(qcfg.get("desc_act", False))
    out = {}
    for key in sorted(tensors):
        if not key.endswith(".qweight"):
            continue
        mod = key[:-len(".qweight")]
        qw = tensors[key]
        in_f, out_f = qw.shape[0] * 32 // bits, qw.shape[1]
        m = TorchLinear(bits=bits, group_size=gs, sym=sym, desc_act=desc, in_features=in_f,
                        out_features=out_f, bias=False, pack_dtype=torch.int32)
        m.eval()
        with torch.no_grad():
            m.qweight = qw.clone()
            m.qzeros = tensors[f"{mod}.qzeros"].clone()
            m.scales = tensors[f"{mod}.scales"].float().clone()
            if f"{mod}.g_idx" in tensors:
                m.g_idx = tensors[f"{mod}.g_idx"].to(torch.int32).clone()
            if fmt == "gptq":
                convert_gptq_v1_to_v2_format_module(m, bits=bits, pack_dtype=torch.int32)
            w = PackableQuantLinear.dequantize_weight(m).float()
        if tuple(w.shape) == (in_f, out_f):
            w = w.t()
        out[f"{mod}.weight"] = w.contiguous()
    conv = " + convert_gptq_v1_to_v2_format_module" if fmt == "gptq" else ""
    return out, {"how": f"GPTQModel TorchLinear{conv} + PackableQuantLinear.dequantize_weight, scales in F32",
                 "format": fmt}


def _awq_tool_weights(d, tensors, qcfg):
    """AutoAWQ's own code: awq.utils.packing_utils.dequantize_gemm (unpack_awq + reverse_awq_order,
    (q - z) * s), scales widened to F32 first. Returns {HF name: F32 [out, in]}."""
    import torch
    from awq.utils.packing_utils import dequantize_gemm
    bits = int(qcfg.get("bits", qcfg.get("w_bit", 4)))
    gs = int(qcfg.get("group_size", qcfg.get("q_group_size", 128)))
    out = {}
    for key in sorted(tensors):
        if not key.endswith(".qweight"):
            continue
        mod = key[:-len(".qweight")]
        w = dequantize_gemm(tensors[key], tensors[f"{mod}.qzeros"], tensors[f"{mod}.scales"].float(), bits, gs)
        out[f"{mod}.weight"] = w.float().t().contiguous()   # dequantize_gemm gives [in, out]
    return out, {"how": "AutoAWQ awq.utils.packing_utils.dequantize_gemm, scales in F32", "format": "awq-gemm"}


def cmd_tool_ref(a):
    """Runs in the tool's own venv (torch + gptqmodel, or torch + autoawq)."""
    import os
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    torch.set_num_threads(a.threads)
    cfg = json.load(open(os.path.join(a.dir, "config.json")))
    qcfg = dict(cfg.get("quantization_config") or {})
    qp = os.path.join(a.dir, "quantize_config.json")
    if os.path.exists(qp):
        qcfg = {**json.load(open(qp)), **qcfg}
    tensors = {}
    for f in sorted(os.listdir(a.dir)):
        if f.endswith(".safetensors") and not f.startswith("ref-"):
            with safe_open(os.path.join(a.dir, f), "pt") as s:
                for k in s.keys():
                    tensors[k] = s.get_tensor(k)
    qm = qcfg.get("quant_method", "gptq" if os.path.exists(qp) else "")
    if qm == "gptq":
        out, meta = _gptq_tool_weights(a.dir, tensors, qcfg)
    elif qm == "awq":
        out, meta = _awq_tool_weights(a.dir, tensors, qcfg)
    else:
        raise SystemExit(f"{a.dir}: tool-ref handles gptq and awq, not {qm!r}")
    n_q = len(out)
    skip = (".qweight", ".qzeros", ".scales", ".g_idx")
    for k, t in tensors.items():
        if not k.endswith(skip) and k not in out and t.is_floating_point():
            out[k] = t.float().contiguous()
    vers = {}
    for p in ("torch", "gptqmodel", "autoawq"):
        try:
            from importlib.metadata import version
            vers[p] = version(p)
        except Exception:
            pass
    meta = {**meta, "quantized_tensors": str(n_q), **{k: str(v) for k, v in vers.items()}}
    dst = a.out or os.path.join(a.dir, "ref-dequant-tool.safetensors")
    save_file(out, dst, metadata=meta)
    if a.against:  # the existing reference (unpack rules): max abs diff over the quantized tensors
        from safetensors.torch import load_file
        ref = load_file(a.against)
        diffs = {k: float((v - ref[k].float()).abs().max()) for k, v in list(out.items())[:n_q] if k in ref}
        worst = max(diffs.items(), key=lambda kv: kv[1]) if diffs else (None, None)
        print(f"{a.dir}: tool dequant vs {os.path.basename(a.against)}: {len(diffs)} tensors, "
              f"{sum(v == 0.0 for v in diffs.values())} identical, max abs diff {worst[1]} ({worst[0]})", flush=True)
    print(f"{dst}: {n_q} dequantized tensors + {len(out) - n_q} others, {meta['how']}", flush=True)


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
    s = sub.add_parser("tool-ref")
    s.add_argument("dir")
    s.add_argument("--out")
    s.add_argument("--against", help="a reference to compare with (e.g. DIR/ref-dequant.safetensors)")
    s.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    {"tensors": cmd_tensors, "table": cmd_table, "tool-ref": cmd_tool_ref}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
