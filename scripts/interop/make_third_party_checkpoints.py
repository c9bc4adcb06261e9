"""Quantized checkpoints of a Hugging Face Llama made by the real third-party tools, their own
dequantization as F32 references, and transformers' perplexity on them, for the readers' checks.

  make_third_party_checkpoints.py llmc NAME MODEL OUT [--calibration-data F --samples N --ctx C]
                                   [--ignore PATTERN ...] [--awq-mappings moe]
      llm-compressor (oneshot) with the recipe NAME (see LLMC_RECIPES), lm_head (and each --ignore
      pattern: a mixture of experts' routers) ignored, on the calibration chunks lq uses (BOS-led
      ctx-long pieces of the text tokenized as one string). --awq-mappings moe: AWQModifier with
      llm-compressor's own mixture-of-experts mappings (post_attention_layernorm -> the router and
      every expert's gate_proj and up_proj), the router patterns given as --ignore.
  make_third_party_checkpoints.py gptqmodel NAME MODEL OUT [...]   GPTQModel, config NAME (GPTQ_CONFIGS)
  make_third_party_checkpoints.py awq NAME MODEL OUT [...]         AutoAWQ (GEMM layout)
  make_third_party_checkpoints.py ref DIR [--out DIR/ref-dequant.safetensors]
      the tool's own dequantization of every quantized Linear, as F32 safetensors in Hugging Face
      naming and layout ([out, in]); every other tensor of the checkpoint widened to F32 beside them,
      so the file is a complete F32 model. compressed-tensors: its compressor's decompress with the
      stored scales widened to F32 first (so the products are exact in F32, not rounded to the
      checkpoint's bf16); GPTQ / AWQ layouts: the tool's own unpack when importable, else the
      published unpack rules (the file's metadata says which).
  make_third_party_checkpoints.py ppl DIR [--original MODEL] --eval-text F --ctx 256 --chunks 20 --json OUT
      perplexity on lq perplexity's chunks (scripts/interop/lq_eval.py): "native" = the checkpoint
      loaded by transformers itself in float32 (compressed-tensors / GPTQ integration), "ref" = the
      original architecture in float32 with ref-dequant.safetensors as its weights.
      --modes also takes "native-torch" (GPTQ: transformers' loading with GPTQModel's torch kernel;
      run with TORCHDYNAMO_DISABLE=1 on CPU, else TorchLinear's torch.compile JIT-builds C++ for
      minutes) and "native-autoawq" (AWQ: AutoAWQ's from_quantized with its plain torch GEMM path;
      transformers 4.51 and AutoAWQ both want IPEX on CPU).
Run through make_third_party_checkpoints.sh, which makes the virtual environments. Not a test.
"""
import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lq_eval  # noqa: E402

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json")

# name -> (modifier kind, scheme, extra modifier arguments). "gptq" = GPTQModifier, "rtn" =
# QuantizationModifier (round to nearest), "awq" = AWQModifier + QuantizationModifier, "awq-gptq" =
# AWQModifier + GPTQModifier (llm-compressor's stacked recipe; the extra arguments are GPTQ's).
LLMC_RECIPES = {
    "ct-w8a8": ("gptq", "W8A8", {"actorder": None}),
    "ct-w4a16-g128": ("gptq", "W4A16", {"actorder": None}),
    "ct-w4a16-g128-actorder-static": ("gptq", "W4A16", {"actorder": "static"}),
    "ct-w4a16-g128-actorder-group": ("gptq", "W4A16", {"actorder": "group"}),
    "ct-w4a16-asym-g128": ("gptq", "W4A16_ASYM", {"actorder": None}),
    "ct-w8a16": ("gptq", "W8A16", {"actorder": None}),
    "ct-w3a16-g128": ("gptq", "W3A16", {"actorder": None}),
    "ct-w4a16-channel": ("gptq", "W4A16-channel", {"actorder": None}),
    "ct-fp8-dynamic": ("rtn", "FP8_DYNAMIC", {}),
    "ct-fp8-block": ("rtn", "FP8_BLOCK", {}),
    "ct-w4a16-rtn": ("rtn", "W4A16", {}),
    "ct-awq-w4a16-asym": ("awq", "W4A16_ASYM", {}),
    "ct-awq-gptq-w4a16-asym-actorder-static": ("awq-gptq", "W4A16_ASYM", {"actorder": "static"}),
}

# name -> GPTQModel QuantizeConfig arguments.
GPTQ_CONFIGS = {
    "gptq-v1-4bit-g128-sym": dict(bits=4, group_size=128, sym=True, desc_act=False, format="gptq"),
    "gptq-v2-4bit-g128-sym": dict(bits=4, group_size=128, sym=True, desc_act=False, format="gptq_v2"),
    "gptq-v1-4bit-g128-asym": dict(bits=4, group_size=128, sym=False, desc_act=False, format="gptq"),
    "gptq-v2-4bit-g128-asym": dict(bits=4, group_size=128, sym=False, desc_act=False, format="gptq_v2"),
    "gptq-v1-4bit-g128-descact": dict(bits=4, group_size=128, sym=True, desc_act=True, format="gptq"),
    "gptq-v1-3bit-g128-sym": dict(bits=3, group_size=128, sym=True, desc_act=False, format="gptq"),
    "gptq-v1-8bit-g128-sym": dict(bits=8, group_size=128, sym=True, desc_act=False, format="gptq"),
    "gptq-v1-4bit-gm1-sym": dict(bits=4, group_size=-1, sym=True, desc_act=False, format="gptq"),
}


def calibration(a, model_dir):
    ids, bos, how = lq_eval.load_token_ids(model_dir, a.calibration_data, a.lq)
    chunks = lq_eval.calibration_chunks(ids, bos, a.ctx, a.samples)
    print(f"calibration: {len(chunks)} chunks x {a.ctx} tokens from {a.calibration_data} ({how})", flush=True)
    return chunks


def copy_tokenizer(src, dst):
    for f in TOKENIZER_FILES:
        s = os.path.join(src, f)
        if os.path.exists(s) and not os.path.exists(os.path.join(dst, f)):
            shutil.copy(s, dst)


def write_provenance(out, tool, versions, name, how, t):
    with open(os.path.join(out, "made-by.json"), "w") as f:
        json.dump({"tool": tool, "versions": versions, "name": name, "how": how, "seconds": round(t, 1)}, f, indent=1)


def finish_checkpoint(a, tool, packages, how, t0, label):
    """Completes a saved checkpoint: tokenizer files, provenance (versions of `packages`, `how`), timing."""
    copy_tokenizer(a.model, a.out)
    t = time.time() - t0
    write_provenance(a.out, tool, versions_of(*packages), a.name, how, t)
    print(f"{label} done in {t:.1f} s -> {a.out}", flush=True)


def versions_of(*pkgs):
    from importlib.metadata import version, PackageNotFoundError
    v = {}
    for p in pkgs:
        try:
            v[p] = version(p)
        except PackageNotFoundError:
            pass
    return v


def cmd_llmc(a):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    torch.set_num_threads(a.threads)
    kind, scheme, extra = LLMC_RECIPES[a.name]
    t0 = time.time()
    chunks = calibration(a, a.model)
    ds = Dataset.from_dict({"input_ids": chunks, "attention_mask": [[1] * a.ctx for _ in chunks]})
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=lq_eval.llmc_dtype(), device_map="cpu")
    qargs = dict(targets="Linear", ignore=["lm_head"] + list(a.ignore or []))
    if scheme == "W4A16-channel":  # 4-bit symmetric, one scale per output row (no groups)
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
        qargs["config_groups"] = {"group_0": QuantizationScheme(
            targets=["Linear"], weights=QuantizationArgs(num_bits=4, type="int", symmetric=True,
                                                         strategy="channel", dynamic=False))}
    else:
        qargs["scheme"] = scheme
    if kind == "gptq":
        recipe = [GPTQModifier(**qargs, **extra)]
    elif kind == "rtn":
        recipe = [QuantizationModifier(**qargs, **extra)]
    else:
        from llmcompressor.modifiers.transform.awq import AWQModifier
        if not torch.cuda.is_available():
            # AWQModifier pins its cached activations for faster host-to-GPU copies; pinning
            # needs a CUDA driver and does nothing for a CPU run, so it is skipped there.
            from llmcompressor.pipelines.cache import IntermediatesCache
            IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None
        awq_extra = {} if kind == "awq-gptq" else extra
        if a.awq_mappings == "moe":
            from llmcompressor.modifiers.transform.awq.mappings import AWQMapping
            awq_extra = dict(awq_extra, mappings=[
                AWQMapping("re:.*input_layernorm$", ["re:.*q_proj$", "re:.*k_proj$", "re:.*v_proj$"]),
                AWQMapping("re:.*v_proj$", ["re:.*o_proj$"]),
                AWQMapping("re:.*post_attention_layernorm$",
                           ["re:.*mlp.gate$", "re:.*mlp.experts.*.gate_proj$", "re:.*mlp.experts.*.up_proj$"]),
                AWQMapping("re:.*up_proj$", ["re:.*down_proj$"])])
        recipe = [AWQModifier(**awq_extra),
                  GPTQModifier(**qargs, **extra) if kind == "awq-gptq" else QuantizationModifier(**qargs)]
    if kind == "rtn":  # weights only (and dynamic activations): no calibration data
        oneshot(model=model, recipe=recipe)
        calib = "no calibration data"
    else:
        oneshot(model=model, dataset=ds, recipe=recipe, max_seq_length=a.ctx, num_calibration_samples=len(chunks),
                shuffle_calibration_samples=False)
        calib = f"{len(chunks)} x {a.ctx} calibration tokens"
    model.save_pretrained(a.out, save_compressed=True)
    finish_checkpoint(a, "llm-compressor", ("llmcompressor", "compressed-tensors", "torch", "transformers"),
                      f"{' + '.join(type(r).__name__ for r in recipe)} scheme {scheme} {extra}, targets Linear, "
                      f"ignore lm_head, {calib}", t0, f"llm-compressor {a.name}")


def cmd_gptqmodel(a):
    import torch
    from gptqmodel import GPTQModel, QuantizeConfig

    torch.set_num_threads(a.threads)
    cfg = dict(GPTQ_CONFIGS[a.name])
    t0 = time.time()
    chunks = calibration(a, a.model)
    calib = [{"input_ids": torch.tensor([c]), "attention_mask": torch.ones(1, len(c), dtype=torch.long)}
             for c in chunks]
    fmt = cfg.pop("format")
    qc = QuantizeConfig(**cfg, format=fmt, device="cpu")
    model = GPTQModel.load(a.model, qc)
    model.quantize(calib, batch_size=1)
    model.save(a.out)
    finish_checkpoint(a, "GPTQModel", ("gptqmodel", "torch", "transformers"),
                      f"QuantizeConfig {GPTQ_CONFIGS[a.name]}, {len(chunks)} x {a.ctx} calibration tokens", t0,
                      f"GPTQModel {a.name}")


def cmd_awq(a):
    import torch
    from awq import AutoAWQForCausalLM
    from transformers import AutoTokenizer

    torch.set_num_threads(a.threads)
    t0 = time.time()
    chunks = calibration(a, a.model)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoAWQForCausalLM.from_pretrained(a.model, device_map="cpu")
    texts = [tok.decode(c[1:]) for c in chunks]
    qc = {"zero_point": True, "q_group_size": 128, "w_bit": 4, "version": "GEMM"}
    model.quantize(tok, quant_config=qc, calib_data=texts, max_calib_samples=len(texts), max_calib_seq_len=a.ctx)
    model.save_quantized(a.out)
    finish_checkpoint(a, "AutoAWQ", ("autoawq", "torch", "transformers"),
                      f"quant_config {qc}, {len(chunks)} x {a.ctx} calibration tokens", t0, "AutoAWQ")


# ---- references -------------------------------------------------------------------------------

def load_all_tensors(d):
    from safetensors import safe_open
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors") and not f.startswith("ref-"):
            with safe_open(os.path.join(d, f), "pt") as s:
                for k in s.keys():
                    out[k] = s.get_tensor(k)
    return out


def ref_compressed_tensors(d, cfg, tensors):
    """compressed-tensors' own decompress per module, scales widened to F32 first."""
    import torch
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from compressed_tensors.config import CompressionFormat
    from compressed_tensors.utils import match_name
    qc = QuantizationConfig.model_validate(cfg["quantization_config"])
    out, done = {}, set()
    for gname, scheme in qc.config_groups.items():
        fmt = scheme.format or qc.format
        comp = BaseCompressor.get_value_from_registry(CompressionFormat(fmt).value)
        names = comp.compression_param_names(scheme)
        root = names[0]
        for key in list(tensors):
            mod, _, p = key.rpartition(".")
            if p != root or key in done or f"{mod}.weight_scale" not in tensors:
                continue  # "Linear" matches every module: a quantized one has a weight_scale
            if any(match_name(mod, ig) for ig in qc.ignore):
                continue
            if not ("Linear" in scheme.targets or any(match_name(mod, t) for t in scheme.targets)):
                continue
            sd = {}
            for n in names + ("weight_zero_point", "weight_g_idx"):
                k = f"{mod}.{n}"
                if k in tensors:
                    t = tensors[k]
                    if n in ("weight_scale",) and t.is_floating_point():
                        t = t.float()
                    sd[n] = t
            dec = comp.decompress(sd, scheme)
            out[f"{mod}.weight"] = dec["weight"].float()
            for n in sd:
                done.add(f"{mod}.{n}")
    meta = {"how": "compressed-tensors BaseCompressor.decompress per module, weight_scale widened to F32",
            "format": str(qc.format)}
    return out, done, meta


def gptq_unpack_rules(tensors, mod, bits, group_size, fmt, sym):
    """GPTQ / GPTQModel layout, by the published rules (AutoGPTQ's CPU dequant): qweight int32
    [in*bits/32, out] packed along the input dimension, low bits first, 3-bit values straddling
    words; qzeros [groups, out*bits/32] packed along the output dimension; scales [groups, out];
    g_idx [in]; checkpoint_format gptq stores zero-1, gptq_v2 stores zero."""
    import torch
    qw = tensors[f"{mod}.qweight"].to(torch.int64) & 0xFFFFFFFF
    qz = tensors[f"{mod}.qzeros"].to(torch.int64) & 0xFFFFFFFF
    sc = tensors[f"{mod}.scales"].float()
    rows_packed, out_f = qw.shape
    in_f = rows_packed * 32 // bits

    def unpack(words, n):  # words [..., w] -> [..., n] values of `bits` bits, stream order
        w = words.shape[-1]
        bitpos = torch.arange(n) * bits
        word, off = bitpos // 32, bitpos % 32
        lo = (words[..., word] >> off)
        hi_word = torch.clamp(word + 1, max=w - 1)
        hi = torch.where(off + bits > 32, words[..., hi_word] << (32 - off), torch.zeros_like(lo))
        return (lo | hi) & ((1 << bits) - 1)

    q = unpack(qw.t(), in_f).t()                  # [in, out]
    z = unpack(qz, out_f)                         # [groups, out]
    if fmt == "gptq":
        z = z + 1
    g_idx = tensors.get(f"{mod}.g_idx")
    if g_idx is None:
        gs = in_f if group_size in (-1, 0) else group_size
        g_idx = torch.arange(in_f) // gs
    g_idx = g_idx.long()
    w = (q - z[g_idx]).float() * sc[g_idx]
    return w.t().contiguous()                     # [out, in]


def awq_unpack_rules(tensors, mod, bits, group_size):
    """AutoAWQ GEMM: qweight int32 [in, out/8] packed along the output dimension with the
    order [0, 2, 4, 6, 1, 3, 5, 7]; qzeros [groups, out/8] likewise; scales [groups, out];
    w = (q - z) * s."""
    import torch
    qw = tensors[f"{mod}.qweight"].to(torch.int64) & 0xFFFFFFFF
    qz = tensors[f"{mod}.qzeros"].to(torch.int64) & 0xFFFFFFFF
    sc = tensors[f"{mod}.scales"].float()
    order = torch.tensor([0, 2, 4, 6, 1, 3, 5, 7])
    inv = torch.argsort(order)  # [0, 4, 1, 5, 2, 6, 3, 7]: AutoAWQ's reverse order

    def unpack(words):
        vals = (words[..., None] >> (torch.arange(8) * 4)) & 0xF      # nibble k
        vals = vals[..., inv]                                          # nibble order -> column order
        return vals.reshape(*words.shape[:-1], words.shape[-1] * 8)
    q = unpack(qw)
    z = unpack(qz)
    in_f = q.shape[0]
    g_idx = torch.arange(in_f) // group_size
    w = (q - z[g_idx]).float() * sc[g_idx]
    return w.t().contiguous()


def ref_gptq(d, cfg, tensors):
    qcfg = cfg.get("quantization_config") or {}
    qpath = os.path.join(d, "quantize_config.json")
    if os.path.exists(qpath):
        qcfg = {**json.load(open(qpath)), **qcfg}
    bits, gs = int(qcfg["bits"]), int(qcfg.get("group_size", 128))
    fmt = qcfg.get("checkpoint_format", qcfg.get("format", "gptq"))
    sym = bool(qcfg.get("sym", True))
    out, done = {}, set()
    for key in list(tensors):
        if key.endswith(".qweight"):
            mod = key[:-len(".qweight")]
            out[f"{mod}.weight"] = gptq_unpack_rules(tensors, mod, bits, gs, fmt, sym)
            for n in ("qweight", "qzeros", "scales", "g_idx", "bias"):
                if n != "bias":
                    done.add(f"{mod}.{n}")
    return out, done, {"how": "GPTQ unpack rules in torch (AutoGPTQ/GPTQModel layout)", "format": fmt,
                       "bits": str(bits), "group_size": str(gs)}


def check_gptqmodel_dequant(d, ref):
    """GPTQModel's own dequantization: the checkpoint loaded by GPTQModel (its v1 -> v2 zero
    conversion on load included), each quantized module's dequantize_weight(), against the rules.
    Returns {name: max abs diff}."""
    import torch
    from gptqmodel import GPTQModel
    m = GPTQModel.load(d, device="cpu")
    diffs = {}
    for name, mod in m.model.named_modules():
        if hasattr(mod, "dequantize_weight") and hasattr(mod, "qweight"):
            w = mod.dequantize_weight().float()
            if w.shape[0] == mod.in_features if hasattr(mod, "in_features") else False:
                w = w.t()
            r = ref.get(f"{name}.weight")
            if r is None or tuple(r.shape) != tuple(w.shape):
                diffs[name] = f"shape {tuple(w.shape)} vs {None if r is None else tuple(r.shape)}"
                continue
            diffs[name] = float((w - r).abs().max())
    return diffs


def ref_awq(d, cfg, tensors):
    qcfg = cfg.get("quantization_config") or {}
    bits = int(qcfg.get("bits", qcfg.get("w_bit", 4)))
    gs = int(qcfg.get("group_size", qcfg.get("q_group_size", 128)))
    out, done = {}, set()
    for key in list(tensors):
        if key.endswith(".qweight"):
            mod = key[:-len(".qweight")]
            out[f"{mod}.weight"] = awq_unpack_rules(tensors, mod, bits, gs)
            for n in ("qweight", "qzeros", "scales"):
                done.add(f"{mod}.{n}")
    return out, done, {"how": "AutoAWQ GEMM unpack rules in torch", "format": "awq-gemm"}


def cmd_ref(a):
    import torch
    from safetensors.torch import save_file
    cfg = json.load(open(os.path.join(a.dir, "config.json")))
    tensors = load_all_tensors(a.dir)
    qm = (cfg.get("quantization_config") or {}).get("quant_method", "")
    if os.path.exists(os.path.join(a.dir, "quantize_config.json")) and not qm:
        qm = "gptq"
    if qm == "compressed-tensors":
        out, done, meta = ref_compressed_tensors(a.dir, cfg, tensors)
    elif qm == "gptq":
        out, done, meta = ref_gptq(a.dir, cfg, tensors)
    elif qm == "awq":
        out, done, meta = ref_awq(a.dir, cfg, tensors)
    else:
        raise SystemExit(f"{a.dir}: unknown quant_method {qm!r}")
    n_q = len(out)
    for k, t in tensors.items():
        if k in done or k.endswith(("input_scale", "weight_shape")) or k in out:
            continue
        if t.is_floating_point():
            out[k] = t.float()
    out = {k: v.contiguous() for k, v in out.items()}
    meta = {**meta, "quantized_tensors": str(n_q), "torch": torch.__version__}
    if a.check_tool and qm == "gptq":
        diffs = check_gptqmodel_dequant(a.dir, out)
        nums = [v for v in diffs.values() if isinstance(v, float)]
        meta["gptqmodel_dequantize_weight_max_abs_diff"] = str(max(nums) if nums else "none")
        print(f"GPTQModel dequantize_weight vs unpack rules: {len(nums)} modules, max abs diff "
              f"{meta['gptqmodel_dequantize_weight_max_abs_diff']}; others {[(k, v) for k, v in diffs.items() if not isinstance(v, float)][:3]}", flush=True)
    dst = a.out or os.path.join(a.dir, "ref-dequant.safetensors")
    save_file(out, dst, metadata=meta)
    print(f"{dst}: {n_q} dequantized tensors + {len(out) - n_q} others, {meta['how']}", flush=True)


# ---- perplexity --------------------------------------------------------------------------------

def cmd_ppl(a):
    import torch
    from transformers import AutoModelForCausalLM, AutoConfig
    torch.set_num_threads(a.threads)
    tok_dir = a.dir if os.path.exists(os.path.join(a.dir, "tokenizer.json")) else a.original
    ids, bos, how = lq_eval.load_token_ids(tok_dir, a.eval_text, a.lq)
    chunks, first = lq_eval.perplexity_chunks(ids, bos, a.ctx, a.chunks)
    res = {"dir": a.dir, "ctx": a.ctx, "chunks": len(chunks), "tokenizer": how}

    def run(model):
        model.eval()
        nll = []
        for c in chunks:
            lp, tgt = lq_eval.torch_scored_logprobs(model, c, first)
            nll.extend(lp.gather(1, tgt[:, None])[:, 0].tolist())
        return lq_eval.nll_from_logprobs(nll), len(nll)

    import transformers
    # transformers 4.x (AutoAWQ's venv) names it torch_dtype
    f32 = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": torch.float32}
    for mode in a.modes.split(","):
        t0 = time.time()
        try:
            if mode == "native":
                m = AutoModelForCausalLM.from_pretrained(a.dir, device_map="cpu", **f32)
            elif mode == "native-torch":
                # GPTQ: transformers' own loading through its GPTQModel integration, with GPTQModel's
                # plain torch kernel (TorchLinear) instead of "auto" (which JIT-compiles a CPU extension)
                from transformers import GPTQConfig
                qc = dict(AutoConfig.from_pretrained(a.dir).quantization_config)
                qc["backend"] = "torch"
                m = AutoModelForCausalLM.from_pretrained(a.dir, dtype=torch.float32, device_map="cpu",
                                                         quantization_config=GPTQConfig.from_dict(qc))
            elif mode == "native-autoawq":
                # AWQ: AutoAWQ's own loader (transformers' native AWQ path on CPU wants IPEX); the model
                # in float32 except WQLinear_GEMM's matmuls, which AutoAWQ runs in float16
                # AutoAWQ 0.2.9 forces its IPEX kernels whenever get_best_device() is "cpu" (IPEX is not
                # installed) and prefers Triton when importable (GPU-only): both turned off here, so
                # WQLinear_GEMM runs its own plain torch path, dequantize_gemm + matmul
                import awq.models.base as awq_base
                import awq.modules.linear.gemm as awq_gemm
                from awq import AutoAWQForCausalLM
                awq_base.get_best_device = lambda: "cpu (IPEX off)"
                awq_gemm.TRITON_AVAILABLE = False
                m = AutoAWQForCausalLM.from_quantized(a.dir, fuse_layers=False, device_map={"": "cpu"}).model.float()
                # WQLinear_GEMM casts its input to float16 and multiplies by the fp16-scaled weight: only
                # its scales go back to fp16 (the rest of the model stays float32)
                for mod in m.modules():
                    if type(mod).__name__ == "WQLinear_GEMM":
                        mod.scales = mod.scales.half()
            elif mode == "native-auto":
                m = AutoModelForCausalLM.from_pretrained(a.dir, dtype="auto", device_map="cpu")
            elif mode == "ref":
                from safetensors.torch import load_file
                ref = os.path.join(a.dir, "ref-dequant.safetensors")
                conf = AutoConfig.from_pretrained(a.original)
                m = AutoModelForCausalLM.from_config(conf, dtype=torch.float32)
                sd = load_file(ref)
                missing, unexpected = m.load_state_dict(sd, strict=False)
                missing = [k for k in missing if not (k == "lm_head.weight" and conf.tie_word_embeddings)]
                if missing or unexpected:
                    raise RuntimeError(f"ref weights: missing {missing[:4]} unexpected {unexpected[:4]}")
            else:
                raise SystemExit(f"unknown mode {mode}")
            ppl, n = run(m)
            res[mode] = {"ppl": ppl, "tokens": n, "seconds": round(time.time() - t0, 1)}
            print(f"{a.dir} [{mode}]: ppl {ppl:.4f} ({n} tokens)", flush=True)
            del m
        except Exception as e:  # reported, not hidden: the other modes still run
            res[mode] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            print(f"{a.dir} [{mode}]: error {res[mode]['error']}", flush=True)
    res["versions"] = versions_of("torch", "transformers", "compressed-tensors", "gptqmodel", "autoawq")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("llmc", "gptqmodel", "awq"):
        s = sub.add_parser(name)
        s.add_argument("name")
        s.add_argument("model")
        s.add_argument("out")
        s.add_argument("--calibration-data", required=True)
        s.add_argument("--samples", type=int, default=64)
        s.add_argument("--ctx", type=int, default=256)
        s.add_argument("--threads", type=int, default=2)
        s.add_argument("--lq")
        if name == "llmc":
            s.add_argument("--ignore", action="append", help="a module pattern left unquantized besides lm_head")
            s.add_argument("--awq-mappings", choices=("default", "moe"), default="default")
    s = sub.add_parser("ref")
    s.add_argument("dir")
    s.add_argument("--out")
    s.add_argument("--check-tool", action="store_true", help="GPTQ: also compare GPTQModel's own dequantize_weight()")
    s = sub.add_parser("ppl")
    s.add_argument("dir")
    s.add_argument("--original", required=True)
    s.add_argument("--eval-text", required=True)
    s.add_argument("--ctx", type=int, default=256)
    s.add_argument("--chunks", type=int, default=20)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--modes", default="native,ref")
    s.add_argument("--lq")
    s.add_argument("--json")
    a = p.parse_args()
    {"llmc": cmd_llmc, "gptqmodel": cmd_gptqmodel, "awq": cmd_awq, "ref": cmd_ref, "ppl": cmd_ppl}[a.cmd](a)


if __name__ == "__main__":
    main()
