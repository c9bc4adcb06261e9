#!/usr/bin/env python3
"""Builds the zoo table (Markdown) from level_quality_bench's --json results.

Usage: zoo_table.py WORK MODEL_DIR...   (reads WORK/<basename of MODEL_DIR>/result.json, or the
       file named by LQ_ZOO_RESULT, e.g. result-gptq.json)
Prints: the ratio KLD ours / llama.cpp's per level and model with its 95% interval, the worst ratio
per level, then per model the KLDs, sizes and perplexities behind each ratio.
"""
import json
import os
import sys


def main():
    work, dirs = sys.argv[1], sys.argv[2:]
    results, infos = {}, {}
    for d in dirs:
        name = os.path.basename(os.path.normpath(d))
        p = os.path.join(work, name, os.environ.get("LQ_ZOO_RESULT", "result.json"))
        if not os.path.exists(p):
            print(f"<!-- {name}: no result -->")
            continue
        results[name] = json.load(open(p))
        zj = os.path.join(d, "zoo.json")
        infos[name] = json.load(open(zj)) if os.path.exists(zj) else {}
    names = list(results)
    levels = []
    for n in names:
        for c in results[n]["configs"]:
            lv = c["key"].split("/", 1)[1]
            if lv not in levels:
                levels.append(lv)

    def cell(n, lv):
        for c in results[n]["configs"]:
            if c["key"].split("/", 1)[1] == lv:
                return c
        return None

    print("| level | " + " | ".join(names) + " | worst |")
    print("| --- |" + " --- |" * (len(names) + 1))
    worst_rows = []
    for lv in levels:
        row, worst = [], None
        for n in names:
            c = cell(n, lv)
            if not c or "ratio" not in c:
                row.append("-")
                continue
            r, h = c["ratio"], c.get("ratio_ci95", 0.0)
            mark = "**" if r > 1.0 else ""
            row.append(f"{mark}{r:.3f}{mark} ± {h:.3f}")
            if worst is None or r > worst[0]:
                worst = (r, h, n)
        w = f"{worst[0]:.3f} ({worst[2]})" if worst else "-"
        worst_rows.append((lv, worst))
        print(f"| {lv} | " + " | ".join(row) + f" | {w} |")
    print()
    print("Worst ratio per level: " + ", ".join(f"{lv} {w[0]:.3f}" for lv, w in worst_rows if w) + ".")
    print()
    for n in names:
        r = results[n]
        info = infos[n]
        what = info.get("what", "")
        print(f"### {n}")
        print()
        if what:
            print(f"{what}; {info.get('params', 0) / 1e6:.2f}M parameters, held-out ppl {r['reference_ppl']:.2f} "
                  f"(vocab {info.get('vocab', '?')}), {info.get('steps', '?')} training steps.")
        else:
            print(f"Reference ppl {r['reference_ppl']:.2f}.")
        print(f"KLD over {r['chunks']} chunks of {r['ctx']} tokens of {os.path.basename(r['text'])}.")
        print()
        print("| level | KLD ours | KLD llama.cpp | ratio | 95% ± | MB ours | MB llama.cpp | ppl ours | ppl llama.cpp |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for c in r["configs"]:
            lv = c["key"].split("/", 1)[1]
            print(f"| {lv} | {c['kld_ours']:.5f} | {c['kld_llama']:.5f} | {c.get('ratio', 0):.3f} | "
                  f"{c.get('ratio_ci95', 0):.3f} | {c['bytes_ours'] / 1e6:.3f} | {c['bytes_llama'] / 1e6:.3f} | "
                  f"{c['ppl_ours']:.3f} | {c['ppl_llama']:.3f} |")
        print()


if __name__ == "__main__":
    main()
