#!/usr/bin/env python3
"""transformers baseline for the CPU engine benchmark (bench/cpu-bench.sh): the code a user
of transformers would write for a Hopscotch theta step.

transformers' own LlamaForCausalLM (attn_implementation="sdpa"), loaded with
from_pretrained in fp32 or bf16, all parameters frozen, and the four scales of each layer
applied by forward hooks (no change to the model's code):
    x1 = b_att * Attn(norm(h)) + s_att * h;  h' = b_mlp * MLP(norm(x1)) + s_mlp * x1
The decoder layer adds the residual itself, so the hooks return b*out + (s-1)*residual.
The batch is the benchmark's (same 64-bit LCG as bench/cpu_bench.cpp), right-padded with
an attention mask; loss = sum of response-token NLL / samples (fp32 cross-entropy);
one step = forward + backward to theta (four fp32 leaves of L scalars).

    python bench/hf_cpu_baseline.py train --model DIR --threads N [--samples 8] [--reps 3]
                                          [--dtype f32|bf16] [--check OURS.json]

--check takes the JSON line of `cpu_bench train` on the same model, samples and seed, and
compares loss and theta gradients on the warm-up step, before any timing: with --dtype
f32 a relative loss difference above 1e-4 or a gradient difference above 1e-3 of the
largest gradient exits with status 3 (nothing is timed). bf16 differences are reported.
Prints one JSON object.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_cpu_baseline import make_batch, peak_rss_mib  # noqa: E402


def install_scales(model, holder):
    """Forward hooks that apply holder['theta'] = (b_att, s_att, b_mlp, s_mlp) to each layer."""
    seen = {}
    for l, layer in enumerate(model.model.layers):
        def layer_in(mod, args, kwargs, l=l):
            seen["h"] = args[0] if args else kwargs["hidden_states"]

        def attn_out(mod, args, out, l=l):
            b, s = holder["theta"][0][l], holder["theta"][1][l]
            a = out[0] if isinstance(out, tuple) else out
            a = b * a + (s - 1) * seen["h"]
            return (a,) + tuple(out[1:]) if isinstance(out, tuple) else a

        def mlp_in(mod, args, l=l):
            seen["x1"] = args[0]

        def mlp_out(mod, args, out, l=l):
            b, s = holder["theta"][2][l], holder["theta"][3][l]
            return b * out + (s - 1) * seen["x1"]

        layer.register_forward_pre_hook(layer_in, with_kwargs=True)
        layer.self_attn.register_forward_hook(attn_out)
        layer.post_attention_layernorm.register_forward_pre_hook(mlp_in)
        layer.mlp.register_forward_hook(mlp_out)


def padded(batch, pad_id=0):
    T = max(len(p) + len(r) for p, r in batch)
    ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    labels = torch.full((len(batch), T), -100, dtype=torch.long)
    for i, (p, r) in enumerate(batch):
        seq = p + r
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        for t in range(len(p), len(seq)):
            labels[i, t - 1] = seq[t]  # position t-1 predicts token t
    return ids, mask, labels


def compare(ours, loss, grads):
    lrel = abs(loss - ours["loss"]) / abs(ours["loss"])
    scale = max(abs(x) for k in grads for x in ours["grad"][k]) or 1.0
    gmax = max(abs(a - b) for k in grads for a, b in zip(grads[k], ours["grad"][k])) / scale
    return {"loss_rel_diff": lrel, "grad_max_diff_of_largest": gmax, "ours_loss": ours["loss"]}


def run_train(args):
    from transformers import LlamaForCausalLM
    import transformers

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    try:  # transformers >= 4.56 names it dtype; older releases torch_dtype
        model = LlamaForCausalLM.from_pretrained(args.model, dtype=dtype, attn_implementation="sdpa")
    except TypeError:
        model = LlamaForCausalLM.from_pretrained(args.model, torch_dtype=dtype, attn_implementation="sdpa")
    model.eval()
    model.requires_grad_(False)
    L = model.config.num_hidden_layers
    holder = {}
    install_scales(model, holder)
    batch = make_batch(args.samples, model.config.vocab_size, args.seed)
    ids, mask, labels = padded(batch)
    grads = {}

    def step():
        theta = [torch.ones(L, requires_grad=True) for _ in range(4)]
        holder["theta"] = theta
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100,
                               reduction="sum") / len(batch)
        loss.backward()
        for name, t in zip(("bAtt", "sAtt", "bMlp", "sMlp"), theta):
            grads[name] = [float(g) for g in t.grad]
        return loss.item()

    loss = step()  # warm-up, and the agreement check
    check = None
    if args.check:
        with open(args.check) as f:
            ours = json.loads(f.readline())
        check = compare(ours, loss, grads)
        if args.dtype == "f32" and (check["loss_rel_diff"] > 1e-4 or check["grad_max_diff_of_largest"] > 1e-3):
            print(json.dumps({"impl": "transformers", "mode": "train", "error": "disagrees with hopscotch",
                              "check": check, "loss": loss}))
            return 3
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    times.sort()
    t = times[len(times) // 2]
    T = int(mask.sum())
    print(json.dumps({"impl": "transformers", "mode": "train", "model": args.model, "threads": args.threads,
                      "precision": args.dtype, "attn": "sdpa", "tokens": T, "padded_tokens": int(ids.numel()),
                      "seconds": round(t, 4), "tokens_per_s": round(T / t, 2),
                      "peak_rss_mib": round(peak_rss_mib(), 1), "loss": loss, "check": check, "grad": grads,
                      "torch": torch.__version__, "transformers": transformers.__version__,
                      "lengths": [[len(p), len(r)] for p, r in batch]}))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["train"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--check", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    return run_train(args)


if __name__ == "__main__":
    sys.exit(main())
