#!/usr/bin/env python3
"""Checks `hf` exports with transformers on the GPU box (torch + transformers, no Node).

Loads each exported folder with AutoModelForCausalLM (float32, no custom code), runs the
token sequences recorded by bench/export-for-device.mjs and compares the logits with the
hopscotch engine's logits of the scaled original model. Prints one JSON object per model
and a summary line; exits 1 if any model is over its tolerance.

  python bench/device-export.py --manifest OUTDIR/manifest.json [--device cuda|cpu]
  python bench/device-export.py --export OUTDIR/llama-gqa/hf --logits OUTDIR/llama-gqa/logits.json
"""
import argparse
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM


def check(export_dir, logits_file, device):
    with open(logits_file) as f:
        ref = json.load(f)
    model = AutoModelForCausalLM.from_pretrained(export_dir, torch_dtype=torch.float32)
    model.to(device).eval()
    vocab = ref["vocab"]
    max_diff, scale = 0.0, 0.0
    with torch.no_grad():
        for tokens, want in zip(ref["tokens"], ref["logits"]):
            ids = torch.tensor([tokens], dtype=torch.long, device=device)
            got = model(input_ids=ids).logits[0, :, :vocab].float().cpu()
            want_t = torch.tensor(want, dtype=torch.float32).reshape(len(tokens), vocab)
            max_diff = max(max_diff, (got - want_t).abs().max().item())
            scale = max(scale, want_t.abs().max().item())
    tolerance = ref["relTolerance"] * max(scale, 1.0)
    return {
        "model": ref.get("model", export_dir),
        "arch": model.config.architectures[0] if model.config.architectures else None,
        "device": str(device),
        "dtype": ref["dtype"],
        "maxAbsLogitDiff": max_diff,
        "logitScale": scale,
        "tolerance": tolerance,
        "engineMaxAbsLogitDiff": ref.get("engineMaxAbsLogitDiff"),
        "ok": max_diff <= tolerance,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest")
    p.add_argument("--export")
    p.add_argument("--logits")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    if a.manifest:
        base = os.path.dirname(os.path.abspath(a.manifest))
        with open(a.manifest) as f:
            jobs = [(os.path.join(base, m["hf"]), os.path.join(base, m["logits"])) for m in json.load(f)]
    elif a.export and a.logits:
        jobs = [(a.export, a.logits)]
    else:
        p.error("give --manifest, or --export and --logits")
    results = []
    for export_dir, logits_file in jobs:
        try:
            r = check(export_dir, logits_file, torch.device(a.device))
        except Exception as e:  # report every model, then fail
            r = {"model": export_dir, "ok": False, "error": f"{type(e).__name__}: {e}"}
        results.append(r)
        print(json.dumps(r), flush=True)
    bad = [r["model"] for r in results if not r["ok"]]
    print(json.dumps({"models": len(results), "failed": bad, "maxAbsLogitDiff": max((r.get("maxAbsLogitDiff", float("inf")) for r in results), default=0)}))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
