#!/usr/bin/env python3
"""PyTorch + transformers baseline for one Hopscotch theta step (loss + gradient of the
4 x L residual scalars, all model weights frozen), to compare against the CUDA engine.

    python3 bench/torch_baseline.py [--models llama8b,qwen7b] [--steps 3] [--out FILE]

Shapes of Llama-3.1-8B and Qwen2.5-7B with random bf16 weights created on the GPU (no
download), sdpa attention, 32 packed samples of GSM8K-like length (~11k tokens) with
positions restarting per sample and a block-diagonal causal mask. Each decoder layer's
forward is wrapped to apply theta exactly as the engine does:
    x1 = b_att * Attn(norm(h)) + s_att * h;  h' = b_mlp * MLP(norm(x1)) + s_mlp * x1
Loss = sum of response-token NLL / samples. Modes: 'plain' (autograd keeps everything)
and 'recompute' (per-layer torch.utils.checkpoint, like the engine's recomputation).
Reports tokens/s and peak GPU memory per model and mode as JSON.
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

MODELS = {
    "llama8b": lambda: LlamaConfig(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, rms_norm_eps=1e-5, max_position_embeddings=131072,
        rope_theta=500000.0, tie_word_embeddings=False,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192}),
    "qwen7b": lambda: Qwen2Config(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, rms_norm_eps=1e-6, max_position_embeddings=32768,
        rope_theta=1000000.0, tie_word_embeddings=False),
}


def tiny_config():
    return LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=300, max_position_embeddings=1024)


def build(cfg):
    kw = dict(attn_implementation="sdpa")
    with torch.device("cuda"):
        try:
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, **kw)
        except TypeError:
            model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16, **kw)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _returns_tuple():
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return (major, minor) < (4, 54)


def install_theta(model, recompute):
    """Wraps every decoder layer; returns the theta parameter (4, L)."""
    layers = model.model.layers
    L = len(layers)
    theta = torch.ones(4, L, device="cuda", dtype=torch.float32, requires_grad=True)
    as_tuple = _returns_tuple()

    for i, layer in enumerate(layers):
        def body(h, i=i, layer=layer, kwargs=None):
            a = layer.self_attn(hidden_states=layer.input_layernorm(h), **kwargs)[0]
            th = theta.to(h.dtype)
            x1 = th[0, i] * a + th[1, i] * h
            m = layer.mlp(layer.post_attention_layernorm(x1))
            return th[2, i] * m + th[3, i] * x1

        def forward(hidden_states, *args, body=body, **kwargs):
            if args:
                raise RuntimeError("decoder layer called with positional arguments; update the wrapper")
            kwargs = {k: v for k, v in kwargs.items() if k not in ("use_cache", "output_attentions")}
            if recompute and torch.is_grad_enabled():
                out = torch.utils.checkpoint.checkpoint(lambda h: body(h, kwargs=kwargs), hidden_states,
                                                        use_reentrant=False)
            else:
                out = body(hidden_states, kwargs=kwargs)
            return (out,) if as_tuple else out

        layer.forward = forward
    return theta


def make_batch(vocab, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids, pos, labels, bounds = [], [], [], []
    for i in range(n):
        p_len = 180 + (i * 37) % 80
        r_len = 100 + (i * 53) % 60
        toks = torch.randint(3, vocab, (p_len + r_len,), generator=g)
        ids.append(toks)
        pos.append(torch.arange(p_len + r_len))
        lab = toks.clone()
        lab[:p_len] = -100
        labels.append(lab)
        bounds.append(p_len + r_len)
    return torch.cat(ids), torch.cat(pos), torch.cat(labels), bounds


def block_causal_mask(bounds, device):
    T = sum(bounds)
    seg = torch.repeat_interleave(torch.arange(len(bounds)), torch.tensor(bounds)).to(device)
    idx = torch.arange(T, device=device)
    allowed = (seg[:, None] == seg[None, :]) & (idx[None, :] <= idx[:, None])
    return allowed[None, None]  # (1,1,T,T) bool, True = attend


def loss_fn(model, ids, pos, labels, mask, n_samples):
    out = model(input_ids=ids[None], position_ids=pos[None], attention_mask=mask, use_cache=False)
    logits = out.logits[0, :-1].float()
    target = labels[1:]
    # A label of the next sample's first token is a prompt token (-100): no cross-sample loss.
    return F.cross_entropy(logits, target, ignore_index=-100, reduction="sum") / n_samples


def packing_check():
    """Packed forward with the block mask must equal per-sample forwards."""
    torch.manual_seed(0)
    model = build(tiny_config())
    model.float()
    ids, pos, labels, bounds = make_batch(300, n=3)
    ids, pos = ids.cuda(), pos.cuda()
    with torch.no_grad():
        packed = model(input_ids=ids[None], position_ids=pos[None], attention_mask=block_causal_mask(bounds, "cuda"),
                       use_cache=False).logits[0]
        start, worst = 0, 0.0
        for b in bounds:
            single = model(input_ids=ids[None, start:start + b], use_cache=False).logits[0]
            worst = max(worst, (single - packed[start:start + b]).abs().max().item())
            start += b
    del model
    torch.cuda.empty_cache()
    return worst


def bench(name, recompute, steps):
    cfg = MODELS[name]()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build(cfg)
    build_s = time.perf_counter() - t0
    theta = install_theta(model, recompute)
    ids, pos, labels, bounds = make_batch(cfg.vocab_size)
    ids, pos, labels = ids.cuda(), pos.cuda(), labels.cuda()
    mask = block_causal_mask(bounds, "cuda")
    T = ids.numel()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    weights_bytes = torch.cuda.memory_allocated()
    times, loss_v = [], None
    for step in range(steps + 1):
        theta.grad = None
        torch.cuda.synchronize()
        t = time.perf_counter()
        loss = loss_fn(model, ids, pos, labels, mask, len(bounds))
        loss.backward()
        torch.cuda.synchronize()
        if step > 0:  # the first step is warm-up
            times.append(time.perf_counter() - t)
        loss_v = loss.item()
    grad = theta.grad.detach().float()
    res = {
        "model": name, "mode": "recompute" if recompute else "plain", "tokens": T, "samples": len(bounds),
        "step_s_median": sorted(times)[len(times) // 2], "step_s_all": times,
        "tokens_per_s": T / sorted(times)[len(times) // 2],
        "peak_bytes": torch.cuda.max_memory_allocated(), "weights_bytes": weights_bytes,
        "loss": loss_v, "grad_finite": bool(torch.isfinite(grad).all().item()),
        "grad_norm": grad.norm().item(), "build_s": build_s,
    }
    del model, theta, loss, mask
    torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="llama8b,qwen7b")
    ap.add_argument("--modes", default="recompute,plain")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    info = {"torch": torch.__version__, "transformers": transformers.__version__,
            "device": torch.cuda.get_device_name(0)}
    info["packing_max_abs_diff"] = packing_check()
    results = []
    for name in args.models.split(","):
        for mode in args.modes.split(","):
            try:
                r = bench(name, mode == "recompute", args.steps)
            except torch.cuda.OutOfMemoryError as e:
                torch.cuda.empty_cache()
                r = {"model": name, "mode": mode, "error": "out of memory: " + str(e).splitlines()[0]}
            print(json.dumps(r), flush=True)
            results.append(r)
    doc = {"info": info, "results": results}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=2)
    print(json.dumps(info))
    for r in results:
        if "error" in r:
            print(f"{r['model']:8s} {r['mode']:9s} ERROR {r['error']}")
        else:
            print(f"{r['model']:8s} {r['mode']:9s} {r['tokens_per_s']:10.0f} tok/s  "
                  f"peak {r['peak_bytes'] / 2**30:6.1f} GiB  step {r['step_s_median']:.3f} s")


if __name__ == "__main__":
    sys.exit(main())
