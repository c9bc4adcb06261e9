#!/usr/bin/env python3
# Comparisons behind arch_parity.sh (llama.cpp's converter and llama-quantize against lq on one
# Hugging Face checkpoint). Needs numpy and gguf (gguf-py); run it in a venv outside the repository.
#
#   arch_parity.py convert REF.gguf OURS.gguf   names, shapes, types, metadata keys and values, tensor bytes
#   arch_parity.py types REF.gguf OURS.gguf     per-tensor types (names must match too)
#   arch_parity.py ppl LLAMA_PERPLEXITY.log LQ.json   the two perplexities and their ratio
#   arch_parity.py key FILE.gguf KEY             prints one metadata value
#   arch_parity.py hf HF.json LQ.json            transformers' float32 perplexity (arch_parity_hf.py) vs
#                                                lq's on the checkpoint (1e-4 tolerance)
#   arch_parity.py imatrix REF.gguf OURS.gguf [CONFIG.json]  two GGUF importance matrices (llama-imatrix's and lq
#                                                analyze's): entries and counts equal, every sum of an
#                                                expert (or tensor) that saw tokens within 1e-3 relative;
#                                                each value beyond it is listed with its size against its
#                                                row's mean (a value near zero keeps only absolute error);
#                                                with CONFIG.json of a GELU model, ffn_down's sums get 1e-2:
#                                                ggml's CPU GELU reads a float16 table (GGML_GELU_FP16),
#                                                input and output rounded to float16
#
# Each prints one summary line starting with "OK" or "FAIL" (then the differences) and exits 0 / 1.
# Metadata keys that lq writes and the converter does not are listed as extras; those named in
# DOCUMENTED_EXTRAS (with the reason) are allowed, any other extra fails the comparison. Keys named
# in the environment variable FORCED_KEYS (comma-separated) were set on the converter's side by
# arch_parity_convert.py: reported, and counted apart from the equal keys.
import json
import math
import os
import re
import sys

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType, GGUFValueType

# lq's own keys (docs/cli.md). A key here is reported, not failed.
DOCUMENTED_EXTRAS = {
    "general.quantized_by": "lq names itself as the writer",
    "quantize.imatrix.file": "written by llama-quantize too, when an imatrix is given",
    "quantize.imatrix.dataset": "written by llama-quantize too, when an imatrix is given",
    "quantize.imatrix.entries_count": "written by llama-quantize too, when an imatrix is given",
    "quantize.imatrix.chunks_count": "written by llama-quantize too, when an imatrix is given",
}
# Keys whose values depend on the writer, not on the model: compared by presence only.
WRITER_KEYS = {"general.file_type", "general.quantization_version"}


def field_value(f):
    t = f.types[0] if f.types else None
    if t == GGUFValueType.ARRAY:
        sub = f.types[1] if len(f.types) > 1 else None
        if sub == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8", "replace") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if t == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8", "replace")
    return f.parts[f.data[0]].tolist()[0]


def metadata(r):
    out = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        out[k] = field_value(f)
    return out


def same_value(a, b):
    if isinstance(a, float) or isinstance(b, float):
        try:
            return a == b or (math.isnan(a) and math.isnan(b))
        except TypeError:
            return False
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        return all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def short(v, n=80):
    s = repr(v)
    if isinstance(v, list) and len(v) > 8:
        s = f"[{len(v)} items: {repr(v[:4])[1:-1]}, ...]"
    return s if len(s) <= n else s[: n - 3] + "..."


def tensors(r):
    return {t.name: t for t in r.tensors}


def type_name(t):
    try:
        return GGMLQuantizationType(int(t.tensor_type)).name
    except ValueError:
        return str(int(t.tensor_type))


def shape_of(t):
    return [int(x) for x in t.shape]


def cmd_convert(ref_path, ours_path):
    ref, ours = GGUFReader(ref_path), GGUFReader(ours_path)
    problems = []
    notes = []
    rt, ot = tensors(ref), tensors(ours)
    missing = sorted(set(rt) - set(ot))
    extra = sorted(set(ot) - set(rt))
    if missing:
        problems.append(f"tensors missing in ours ({len(missing)}): {', '.join(missing[:12])}")
    if extra:
        problems.append(f"tensors only in ours ({len(extra)}): {', '.join(extra[:12])}")
    ref_order = [t.name for t in ref.tensors]
    our_order = [t.name for t in ours.tensors if t.name in rt]
    if not missing and not extra and ref_order != our_order:
        notes.append("tensor order differs (allowed: readers look tensors up by name)")
    n_bytes_same = 0
    bad_bytes = []
    for name in ref_order:
        if name not in ot:
            continue
        a, b = rt[name], ot[name]
        if shape_of(a) != shape_of(b):
            problems.append(f"{name}: shape {shape_of(a)} vs ours {shape_of(b)}")
            continue
        if int(a.tensor_type) != int(b.tensor_type):
            problems.append(f"{name}: type {type_name(a)} vs ours {type_name(b)}")
            continue
        da, db = np.asarray(a.data).tobytes(), np.asarray(b.data).tobytes()
        if da == db:
            n_bytes_same += 1
        else:
            diff = "size differs" if len(da) != len(db) else ""
            if not diff and a.tensor_type in (GGMLQuantizationType.F32,):
                x = np.frombuffer(da, np.float32)
                y = np.frombuffer(db, np.float32)
                diff = f"max abs diff {float(np.max(np.abs(x - y))):.3g}"
            bad_bytes.append(f"{name} ({type_name(a)} {shape_of(a)}{', ' + diff if diff else ''})")
    if bad_bytes:
        problems.append(f"tensor bytes differ ({len(bad_bytes)}): {'; '.join(bad_bytes[:8])}")

    rm, om = metadata(ref), metadata(ours)
    for k in sorted(set(rm) - set(om)):
        problems.append(f"metadata key missing in ours: {k} = {short(rm[k])}")
    for k in sorted(set(om) - set(rm)):
        if k in DOCUMENTED_EXTRAS:
            notes.append(f"extra key {k} = {short(om[k])} ({DOCUMENTED_EXTRAS[k]})")
        else:
            problems.append(f"undocumented extra metadata key in ours: {k} = {short(om[k])}")
    n_keys_same = 0
    forced = {k for k in os.environ.get("FORCED_KEYS", "").split(",") if k}
    for k in sorted(set(rm) & set(om)):
        if k in forced:
            notes.append(f"{k} = {short(rm[k])} forced on the converter's side (its table does not know this tokenizer)")
            continue
        if k in WRITER_KEYS:
            if not same_value(rm[k], om[k]):
                notes.append(f"{k}: {short(rm[k])} vs ours {short(om[k])} (writer-specific)")
            n_keys_same += 1
            continue
        if same_value(rm[k], om[k]):
            n_keys_same += 1
        else:
            problems.append(f"metadata {k}: {short(rm[k])} vs ours {short(om[k])}")
    for n in notes:
        print(f"  note: {n}")
    for p in problems:
        print(f"  DIFF: {p}")
    status = "OK" if not problems else "FAIL"
    print(f"{status} convert {ours_path}: {len(ot)}/{len(rt)} tensors, {n_bytes_same} byte-identical, "
          f"{n_keys_same}/{len(rm)} metadata keys equal{f' ({len(forced & set(rm))} forced)' if forced & set(rm) else ''}, "
          f"{len(set(om) - set(rm))} extra")
    return 0 if not problems else 1


def cmd_types(ref_path, ours_path):
    rt, ot = tensors(GGUFReader(ref_path)), tensors(GGUFReader(ours_path))
    problems = []
    names = sorted(set(rt) | set(ot))
    same = 0
    for n in names:
        if n not in rt:
            problems.append(f"{n}: only in ours ({type_name(ot[n])})")
        elif n not in ot:
            problems.append(f"{n}: missing in ours (llama-quantize: {type_name(rt[n])})")
        elif int(rt[n].tensor_type) != int(ot[n].tensor_type):
            problems.append(f"{n}: llama-quantize {type_name(rt[n])}, ours {type_name(ot[n])}")
        else:
            same += 1
    for p in problems[:40]:
        print(f"  DIFF: {p}")
    if len(problems) > 40:
        print(f"  ... {len(problems) - 40} more")
    counts = {}
    for t in ot.values():
        counts[type_name(t)] = counts.get(type_name(t), 0) + 1
    mix = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"{'OK' if not problems else 'FAIL'} types {ours_path}: {same}/{len(names)} tensors same type ({mix})")
    return 0 if not problems else 1


def cmd_ppl(llama_log, lq_json):

    text = open(llama_log, encoding="utf-8", errors="replace").read()
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", text)
    if not m:
        print(f"FAIL ppl: no 'Final estimate' in {llama_log}")
        return 1
    ref = float(m.group(1))
    with open(lq_json, encoding="utf-8") as f:
        j = json.load(f)
    ours = j.get("perplexity", j.get("ppl"))
    if isinstance(ours, dict):
        ours = ours.get("value", ours.get("ppl"))
    if ours is None:
        print(f"FAIL ppl: no perplexity in {lq_json}")
        return 1
    ratio = float(ours) / ref
    ok = abs(ratio - 1) <= 1e-3
    print(f"{'OK' if ok else 'FAIL'} ppl: llama-perplexity {ref:.4f}, lq {float(ours):.4f}, ratio {ratio:.6f} (tolerance 0.1%)")
    return 0 if ok else 1


def cmd_hf(hf_json, lq_json):

    ref = json.load(open(hf_json, encoding="utf-8"))["perplexity"]
    ours = json.load(open(lq_json, encoding="utf-8"))["perplexity"]
    ratio = float(ours) / float(ref)
    ok = abs(ratio - 1) <= 1e-4
    print(f"{'OK' if ok else 'FAIL'} hf: transformers {ref:.6f}, lq {ours:.6f} on the checkpoint in float32, "
          f"ratio {ratio:.7f} (tolerance 1e-4)")
    return 0 if ok else 1


def imatrix_entries(path):
    out = {}
    for t in GGUFReader(path).tensors:
        out[t.name] = np.array(t.data, dtype=np.float64).reshape(-1)
    return out


def gelu_mlp(config_path):
    """True when the checkpoint's MLP activation is a GELU (Gemma's gelu_pytorch_tanh among them)."""
    if not config_path:
        return False
    c = json.load(open(config_path, encoding="utf-8"))
    act = c.get("hidden_activation") or c.get("hidden_act") or ""
    return "gelu" in str(act)


def cmd_imatrix(ref_path, ours_path, config_path=None):
    ref, ours = imatrix_entries(ref_path), imatrix_entries(ours_path)
    # ggml's CPU GELU rounds its input to float16 and reads its output from a float16 table: the
    # products entering ffn_down carry ~5e-4 relative error each, more where GELU's output is small.
    gelu = gelu_mlp(config_path)
    problems, beyond, n_values = [], [], 0
    worst, worst_row = 0.0, 0.0
    for name in sorted(set(ref) | set(ours)):
        if name not in ref or name not in ours:
            problems.append(f"{name} only in {'ours' if name not in ref else 'the reference'}")
            continue
        if name.endswith(".counts"):
            if not np.array_equal(ref[name], ours[name]):
                problems.append(f"{name}: counts differ")
            continue
        base = name[: -len(".in_sum2")]
        counts = ref.get(base + ".counts", np.ones(1))
        x, y = ours[name].reshape(len(counts), -1), ref[name].reshape(len(counts), -1)
        for e in range(len(counts)):
            if counts[e] <= 0:
                continue
            mean = np.mean(np.abs(y[e]))
            rel = np.abs(x[e] - y[e]) / np.maximum(np.abs(y[e]), 1e-300)
            n_values += rel.size
            worst = max(worst, float(rel.max()))
            if mean > 0:
                worst_row = max(worst_row, float((np.abs(x[e] - y[e]) / mean).max()))
            tol = 1e-2 if gelu and ".ffn_down" in base else 1e-3
            for j in np.nonzero(rel > tol)[0]:
                beyond.append(f"{base} row {e} col {j}: {x[e][j]:.6e} vs {y[e][j]:.6e} ({rel[j]:.2e}; "
                              f"{y[e][j] / mean:.1e} of the row's mean, count {counts[e]:g})")
    ok = not problems and not beyond
    print(f"{'OK' if ok else 'FAIL'} imatrix: {n_values} sums, max relative difference {worst:.3e}, max difference "
          f"against the row's mean {worst_row:.3e}; {len(beyond)} beyond 1e-3"
          f"{' (ffn_down 1e-2: ggml rounds GELU through float16)' if gelu else ''}, {len(problems)} entry/count problems")
    for line in problems + beyond:
        print("  " + line)
    return 0 if ok else 1


def cmd_key(path, key):
    m = metadata(GGUFReader(path))
    if key not in m:
        return 1
    print(m[key])
    return 0


def main(argv):
    cmds = {"convert": (cmd_convert, 2), "types": (cmd_types, 2), "ppl": (cmd_ppl, 2), "key": (cmd_key, 2), "hf": (cmd_hf, 2),
            "imatrix": (cmd_imatrix, 2)}
    optional = {"imatrix": 1}  # imatrix's CONFIG.json
    if len(argv) < 2 or argv[1] not in cmds or not 0 <= len(argv) - 2 - cmds[argv[1]][1] <= optional.get(argv[1], 0):
        print("usage: arch_parity.py convert REF OURS | types REF OURS | ppl LLAMA_LOG LQ_JSON | key GGUF KEY | "
              "hf HF_JSON LQ_JSON | imatrix REF OURS [CONFIG]",
              file=sys.stderr)
        return 2
    fn, _ = cmds[argv[1]]
    return fn(*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
