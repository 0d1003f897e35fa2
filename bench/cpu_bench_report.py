#!/usr/bin/env python3
"""Summarises bench/cpu-bench.sh results: medians per (model, mode, threads, batch, precision,
impl); per precision class the ratio of ours to the fastest baseline; peak RSS against the
checkpoint's bytes and our metered activations; the transformers agreement check; and the
share of the machine's measured FMA peak (train) or memory bandwidth (batch-1 decode) ours
reaches, from `cpu_bench machine`.

    python3 bench/cpu_bench_report.py results.jsonl [machine.txt]
"""
import json
import statistics
import sys

BASELINES = ("torch", "transformers", "torch-1.13")


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    if len(sys.argv) > 2:
        for line in open(sys.argv[2]):
            print("    " + line.rstrip())
    machine = next((r for r in rows if r.get("mode") == "machine"), {})
    fma = machine.get("fma_peak_gflops_per_core")
    bw = {1: machine.get("read_gbs_1_thread"), 2: machine.get("read_gbs_2_threads")}
    groups = {}
    for r in rows:
        if r.get("mode") not in ("train", "generate") or "error" in r:
            continue
        prec = r.get("precision", "f32")
        key = (r["name"], r["mode"], r["threads"], r.get("batch", 0), prec if r["mode"] == "train" else "")
        impl = r["impl"] if r["mode"] == "train" or r["impl"] != "hopscotch" else f"hopscotch-{prec}"
        groups.setdefault(key, {}).setdefault(impl, []).append(r)
    print()
    if fma:
        print(f"machine: fp32 FMA loop {fma:.1f} GFLOP/s per core; memory read {bw[1]:.1f} GB/s (1 thread), "
              f"{bw[2]:.1f} GB/s (2 threads)")
        print()
    print("| model | threads | precision | ours tok/s | PyTorch 2 eager | transformers | ours / fastest | "
          "ours RSS MiB | checkpoint + act. MiB | torch RSS | transformers RSS | HF loss / grad diff | % FMA peak | n |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    summary = []
    for key in sorted(k for k in groups if k[1] == "train"):
        name, _, threads, _, prec = key
        g = groups[key]
        tps = {k: med(v, "tokens_per_s") for k, v in g.items()}
        rss = {k: max(x["peak_rss_mib"] for x in v) for k, v in g.items()}
        ours = g.get("hopscotch", [])
        base = [tps[k] for k in ("torch", "transformers") if tps.get(k)]
        ratio = tps.get("hopscotch", 0) / max(base) if base and tps.get("hopscotch") else None
        ck = med(ours, "checkpoint_mib")
        act = med(ours, "peak_activation_mib")
        gf = med(ours, "gflops")
        share = 100 * gf / (fma * threads) if gf and fma else None
        chk = [x["check"] for x in g.get("transformers", []) if x.get("check")]
        chk_s = (f"{max(c['loss_rel_diff'] for c in chk):.1e} / {max(c['grad_max_diff_of_largest'] for c in chk):.1e}"
                 if chk else "")
        n = min(len(v) for v in g.values())
        f = lambda x, d=1: f"{x:.{d}f}" if x is not None else "-"
        print(f"| {name} | {threads} | {prec} | {f(tps.get('hopscotch'))} | {f(tps.get('torch'))} | "
              f"{f(tps.get('transformers'))} | {f(ratio, 2) + 'x' if ratio else '-'} | {f(rss.get('hopscotch'), 0)} | "
              f"{f(ck + act, 0) if ck else '-'} | {f(rss.get('torch'), 0)} | {f(rss.get('transformers'), 0)} | {chk_s} | "
              f"{f(share)} | {n} |")
        summary.append({"model": name, "mode": "train", "threads": threads, "precision": prec,
                        "tokens_per_s": tps, "peak_rss_mib": rss, "ratio_to_fastest_baseline": ratio,
                        "checkpoint_mib": ck, "peak_activation_mib": act,
                        "rss_within_budget": all(x.get("rss_within_budget") for x in ours) if ck else None,
                        "gflops": gf, "fma_peak_share_percent": share,
                        "transformers_check": chk[0] if chk else None, "runs": n,
                        "loss": {k: med(v, "loss") for k, v in g.items()}})
    print()
    print("| model | threads | batch | ours f32 tok/s | ours bf16 tok/s | PyTorch 2 eager f32 | llama.cpp | "
          "ours f32 / PyTorch | ours / llama.cpp | decode bound from bandwidth (f32 / bf16 weights) | n |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(k for k in groups if k[1] == "generate"):
        name, _, threads, batch, _ = key
        g = groups[key]
        tps = {k: med(v, "tokens_per_s") for k, v in g.items()}
        bound = ""
        if bw.get(threads) and batch == 1:
            b = []
            for impl in ("hopscotch-f32", "hopscotch-bf16"):
                w = med(g.get(impl, []), "weights_held_mib")
                b.append(f"{bw[threads] * 1e9 / (w * 1048576):.1f}" if w else "-")
            bound = " / ".join(b)
        ratio = tps.get("hopscotch-f32", 0) / tps["torch"] if tps.get("torch") and tps.get("hopscotch-f32") else None
        # llama.cpp runs the checkpoint's own type (F32 -> F32 GGUF, BF16 -> BF16): compare it
        # with our path of the same class (f32 math on an F32 checkpoint, else the faster of ours).
        ours_best = max((v for k, v in tps.items() if k.startswith("hopscotch") and v), default=None)
        ours_same = tps.get("hopscotch-f32") if "F32" in str(g.get("llama.cpp", [{}])[0].get("gguf_type", "")) else ours_best
        ratio_llama = ours_same / tps["llama.cpp"] if tps.get("llama.cpp") and ours_same else None
        n = min(len(v) for v in g.values())
        f = lambda x: f"{x:.1f}" if x is not None else "-"
        print(f"| {name} | {threads} | {batch} | {f(tps.get('hopscotch-f32'))} | {f(tps.get('hopscotch-bf16'))} | "
              f"{f(tps.get('torch'))} | {f(tps.get('llama.cpp'))} | {f'{ratio:.2f}x' if ratio else '-'} | "
              f"{f'{ratio_llama:.2f}x' if ratio_llama else '-'} | {bound} | {n} |")
        summary.append({"model": name, "mode": "generate", "threads": threads, "batch": batch, "tokens_per_s": tps,
                        "ratio_f32_to_torch": ratio, "ratio_to_llama_cpp": ratio_llama, "runs": n})
    print()
    print("```json")
    print(json.dumps({"machine": machine, "rows": summary}, indent=1))
    print("```")


if __name__ == "__main__":
    main()
