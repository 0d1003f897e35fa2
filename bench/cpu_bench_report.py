#!/usr/bin/env python3
"""Summarises bench/cpu-bench.sh results: medians per (model, mode, threads, batch, impl),
the hopscotch/torch ratio, and the fraction of the machine's fp32 FMA peak (clock x 32
flop/cycle/core for AVX2 FMA, x threads) the training step reaches.

    python3 bench/cpu_bench_report.py results.jsonl [machine.txt]
"""
import json
import re
import statistics
import sys


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    mhz = None
    if len(sys.argv) > 2:
        for line in open(sys.argv[2]):
            print("    " + line.rstrip())
            m = re.search(r"([\d.]+) MHz", line)
            if m:
                mhz = float(m.group(1))
    groups = {}
    for r in rows:
        key = (r["name"], r["mode"], r["threads"], r.get("batch", 0))
        groups.setdefault(key, {}).setdefault(r["impl"], []).append(r)
    print()
    print("| model | mode | threads | batch | hopscotch tok/s | torch tok/s | ratio | hopscotch peak RSS MiB | torch peak RSS MiB | % fp32 peak | n |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    summary = []
    for key in sorted(groups):
        name, mode, threads, batch = key
        g = groups[key]
        med = {k: statistics.median(x["tokens_per_s"] for x in v) for k, v in g.items()}
        rss = {k: max(x["peak_rss_mib"] for x in v) for k, v in g.items()}
        ratio = med.get("hopscotch", 0) / med["torch"] if med.get("torch") else None
        peak = ""
        gf = None
        if mode == "train" and "hopscotch" in g and mhz:
            gf = statistics.median(x["gflops"] for x in g["hopscotch"])
            peak = f"{100 * gf / (mhz * 1e-3 * 32 * threads):.1f}"
        n = min(len(v) for v in g.values())
        print(f"| {name} | {mode} | {threads} | {batch or ''} | {med.get('hopscotch', 0):.1f} | "
              f"{med.get('torch', 0):.1f} | {ratio:.2f}x | {rss.get('hopscotch', 0):.0f} | {rss.get('torch', 0):.0f} | "
              f"{peak} | {n} |" if ratio else f"| {name} | {mode} | {threads} | {batch} | incomplete |")
        summary.append({"model": name, "mode": mode, "threads": threads, "batch": batch or None,
                        "hopscotch_tokens_per_s": med.get("hopscotch"), "torch_tokens_per_s": med.get("torch"),
                        "ratio": ratio, "hopscotch_peak_rss_mib": rss.get("hopscotch"),
                        "torch_peak_rss_mib": rss.get("torch"), "hopscotch_gflops": gf, "runs": n,
                        "hopscotch_peak_activation_mib": (max(x["peak_activation_mib"] for x in g["hopscotch"])
                                                          if mode == "train" and "hopscotch" in g else None)})
    print()
    print("```json")
    print(json.dumps(summary, indent=1))
    print("```")


if __name__ == "__main__":
    main()
