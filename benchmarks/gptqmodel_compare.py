"""GPTQModel's side of benchmarks/gptqmodel_compare.sh, and its report.

  gptqmodel_compare.py quantize MODEL OUT --calibration-data F --samples N --ctx C --bits B
                       --group-size G --act-order none|static|group [--damp D] [--asym]
                       [--method gptq|awq] [--lq LQ]
      GPTQModel.load(MODEL, QuantizeConfig(...) or AWQConfig(...)).quantize(chunks) on the CPU,
      saved to OUT in its GPTQ layout (AWQ: with zero points, AutoAWQ's GEMM layout). The calibration chunks are the ones lq uses (same text, samples and ctx;
      BOS-led chunks of the text tokenized as one string, by `lq tokenize` when --lq is given).
      --damp unset keeps GPTQModel's own default; every other QuantizeConfig field is GPTQModel's
      default (true_sequential, act_group_aware, ...) and is printed.
  gptqmodel_compare.py report --title T --time NAME=TIME_FILE=PPL_JSON...
      the side-by-side table (wall time, peak RSS, perplexity, KLD, same top) with ratios; each
      PPL_JSON is `lq perplexity DIR --kl-divergence MODEL --format json`.
Run through the .sh, which makes the virtual environment; it is not part of the test suite.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "interop"))
import lq_eval  # noqa: E402


def cmd_quantize(a):
    import torch
    from gptqmodel import GPTQModel, QuantizeConfig
    torch.set_num_threads(a.threads)
    t0 = time.time()
    ids, bos, how = lq_eval.load_token_ids(a.model, a.calibration_data, a.lq)
    chunks = lq_eval.calibration_chunks(ids, bos, a.ctx, a.samples)
    print(f"calibration: {len(chunks)} chunks x {a.ctx} tokens from {a.calibration_data} ({how})", flush=True)
    data = [{"input_ids": torch.tensor([c]), "attention_mask": torch.ones(1, len(c), dtype=torch.long)}
            for c in chunks]
    if a.method == "awq":  # AWQ with zero points, AutoAWQ's GEMM layout
        from gptqmodel.quantization import AWQConfig
        qc = AWQConfig(bits=a.bits, group_size=a.group_size, sym=False, format="gemm")
    else:
        kw = dict(bits=a.bits, group_size=a.group_size, sym=not a.asym, desc_act=a.act_order == "group")
        if a.act_order == "static":
            kw.update(desc_act=True, static_groups=True)
        if a.damp is not None:
            kw["damp_percent"] = a.damp
        qc = QuantizeConfig(**kw)
    print("QuantizeConfig: " + json.dumps(qc.to_dict(), default=str)[:2000], flush=True)
    model = GPTQModel.load(a.model, qc, device="cpu")
    model.quantize(data, batch_size=1)
    model.save(a.out)
    lq_eval.save_tokenizer(a.model, a.out)
    print(f"GPTQModel done in {time.time() - t0:.1f} s -> {a.out}", flush=True)


def cmd_report(a):
    rows = {}
    for spec in a.time:
        name, tf, pj = spec.split("=", 2)
        wall, rss, st = lq_eval.parse_time(tf)
        ppl = kld = same = None
        if os.path.exists(pj):
            try:
                r = json.load(open(pj))
                ppl, k = r["perplexity"], r["kl_divergence"]
                kld, same = k["kld_mean"], k["same_top_pct"]
            except (ValueError, KeyError):
                pass
        rows[name] = (wall, rss, st, ppl, kld, same)
    print()
    print(f"== {a.title}")
    print(f"{'':12} {'wall s':>9} {'peak RSS MiB':>13} {'ppl':>9} {'KLD':>10} {'same top %':>11}")
    f = lambda v, p: "-" if v is None else f"{v:.{p}f}"
    for name, (wall, rss, st, ppl, kld, same) in rows.items():
        flag = "" if st == 0 else f"  (exit {st})"
        print(f"{name:12} {wall:9.2f} {rss:13.1f} {f(ppl, 4):>9} {f(kld, 6):>10} {f(same, 2):>11}{flag}")
    if "lq" in rows and "GPTQModel" in rows and rows["lq"][2] == 0 and rows["GPTQModel"][2] == 0:
        lw, lr, _, _, lk, _ = rows["lq"]
        gw, gr, _, _, gk, _ = rows["GPTQModel"]
        print(f"ratios (GPTQModel / lq): time {gw / lw:.2f}x, peak RSS {gr / lr:.2f}x" +
              (f"; KLD lq / GPTQModel {lk / gk:.3f}" if lk is not None and gk else ""))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quantize")
    q.add_argument("model")
    q.add_argument("out")
    q.add_argument("--calibration-data", required=True)
    q.add_argument("--samples", type=int, default=128)
    q.add_argument("--ctx", type=int, default=256)
    q.add_argument("--bits", type=int, default=4)
    q.add_argument("--group-size", type=int, default=128)
    q.add_argument("--act-order", choices=["none", "static", "group"], default="none")
    q.add_argument("--damp", type=float)
    q.add_argument("--asym", action="store_true")
    q.add_argument("--method", choices=["gptq", "awq"], default="gptq")
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--lq")
    r = sub.add_parser("report")
    r.add_argument("--title", default="side by side with GPTQModel")
    r.add_argument("--time", action="append", default=[], help="NAME=TIME_FILE=PPL_JSON")
    a = p.parse_args()
    {"quantize": cmd_quantize, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
