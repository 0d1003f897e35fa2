#!/usr/bin/env python3
"""The fair PyTorch + transformers baseline for one Hopscotch theta step: loss and the
gradient of the 4 x L residual scalars, every model weight frozen, on the same model and
batch as `hopscotch_cuda_selftest --bench` (our engine), on the same GPU.

    python3 bench/torch_baseline.py [--models llama8b,qwen7b] [--steps 3] [--out FILE]
                                    [--ours cuda_bench.json] [--deadline SECONDS]

The model: the Llama-3.1-8B / Qwen2.5-7B config, bf16, sdpa attention, every matrix a
view into one random bf16 buffer made by the same counter hash as our engine
(native/cuda/random_weights.h; checked against hard-coded values first), norms 1, biases
0. The batch: the same 32 samples of GSM8K-like length (~11k tokens). Each decoder layer
applies theta as the engine does:
    x1 = b_att * Attn(norm(h)) + s_att * h;  h' = b_mlp * MLP(norm(x1)) + s_mlp * x1
Loss = sum of response-token NLL / samples, with logits only for the response rows
(the final hidden states are gathered at those rows before lm_head, as a user would do
with logits_to_keep-style slicing).

Modes, each reporting tokens/s (real tokens, padding not counted), peak memory, the loss
and its relative difference to ours (--ours), and which sdpa kernels ran (profiler):
  padded            the batch right-padded to (32, max_len), attention_mask=None, so sdpa
                    runs with is_causal=True (its flash path); autograd keeps activations
  padded_recompute  the same with per-layer torch.utils.checkpoint
  packed            padding-free packing (1, T) with position_ids restarting per sample and
                    no mask, where the installed transformers turns that into per-sample
                    attention (checked on a tiny model first; skipped otherwise)
"""
import argparse
import json
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
ROPE = {"llama8b": (500000.0, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 8192}),
        "qwen7b": (1000000.0, None)}
WEIGHT_SEED, TOKEN_SEED, SPAN = 1, 1234, 65536


def make_config(name):
    """The config, with RoPE set through whichever API the installed transformers has
    (rope_theta/rope_scaling, or rope_parameters in newer releases)."""
    cfg = MODELS[name]()
    theta, scaling = ROPE[name]
    rp = getattr(cfg, "rope_parameters", None)
    if isinstance(rp, dict):
        rp = dict(rp)
        rp["rope_theta"] = theta
        if scaling:
            rp.update(scaling)
        else:
            rp["rope_type"] = rp.get("rope_type", "default")
        cfg.rope_parameters = rp
    return cfg


def rope_facts(model):
    inv = getattr(getattr(model.model, "rotary_emb", None), "inv_freq", None)
    if inv is None:
        return None
    inv = inv.float().cpu()
    return {"rope_type": getattr(model.model.rotary_emb, "rope_type", None), "inv_freq_first": inv[0].item(),
            "inv_freq_last": inv[-1].item(), "inv_freq_mid": inv[len(inv) // 2].item()}
M32 = 0xFFFFFFFF


# ---- the engine's synthetic weights and batch (native/cuda/random_weights.h) ----------
def hash_u32(i, seed):
    """Elementwise on an int64 tensor (or a Python int): 32-bit wrapping arithmetic."""
    x = (i * 2654435761 + seed * 40503) & M32
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & M32
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & M32
    return x ^ (x >> 16)


def random_values(n, seed, device, chunk=1 << 25):
    """bf16 tensor of n values: ((h >> 8) * 2^-24 - 0.5) * 2/32, rounded to nearest even."""
    out = torch.empty(n, dtype=torch.bfloat16, device=device)
    for s in range(0, n, chunk):
        i = torch.arange(s, min(n, s + chunk), device=device, dtype=torch.int64)
        u = (hash_u32(i, seed) >> 8).to(torch.float32) * (1.0 / 16777216.0)
        out[s:s + len(i)] = ((u - 0.5) * 0.0625).to(torch.bfloat16)
    return out


def weight_offset(k):
    return (k * 9973 % (SPAN // 8)) * 8


def self_check():
    want = {0: float.fromhex("0x1.0ap-6"), 1: -float.fromhex("0x1.1ap-6"), 2: float.fromhex("0x1.3ep-8"),
            12345: -float.fromhex("0x1.9ep-6")}
    v = random_values(12346, WEIGHT_SEED, "cpu").float()
    got = {i: v[i].item() for i in want}
    assert got == want, f"random weights differ from the engine's: {got}"
    assert [3 + hash_u32(t, TOKEN_SEED) % (128256 - 3) for t in (0, 1, 2, 99999)] == [44982, 662, 95189, 19656]


def make_batch(vocab):
    samples, t = [], 0
    for i in range(32):
        p_len, r_len = 180 + (i * 37) % 80, 100 + (i * 53) % 60
        toks = [3 + hash_u32(t + j, TOKEN_SEED) % (vocab - 3) for j in range(p_len + r_len)]
        t += p_len + r_len
        samples.append((toks[:p_len], toks[p_len:]))
    return samples


def build(cfg):
    """The model of cfg with our engine's weights (views into one random buffer)."""
    with torch.device("cuda"):
        try:
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
        except TypeError:
            model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16, attn_implementation="sdpa")
    model.eval()
    H, I, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    nH, nKV = cfg.num_attention_heads, cfg.num_key_value_heads
    D = getattr(cfg, "head_dim", None) or H // nH
    QD, KVD = nH * D, nKV * D
    largest = max(V * H, (QD + 2 * KVD) * H, H * QD, 2 * I * H, H * I)
    buf = random_values(largest + SPAN, WEIGHT_SEED, "cuda")
    k = [0]

    def nxt():
        off = weight_offset(k[0])
        k[0] += 1
        return buf[off:]

    def put(mod, view, shape):
        mod.weight = torch.nn.Parameter(view[:shape[0] * shape[1]].view(*shape), requires_grad=False)

    put(model.model.embed_tokens, nxt(), (V, H))
    put(model.lm_head, nxt(), (V, H))
    for layer in model.model.layers:
        a, m = layer.self_attn, layer.mlp
        qkv = nxt()
        put(a.q_proj, qkv, (QD, H))
        put(a.k_proj, qkv[QD * H:], (KVD, H))
        put(a.v_proj, qkv[(QD + KVD) * H:], (KVD, H))
        put(a.o_proj, nxt(), (H, QD))
        gu = nxt()
        put(m.gate_proj, gu, (I, H))
        put(m.up_proj, gu[I * H:], (I, H))
        put(m.down_proj, nxt(), (H, I))
        for lin in (a.q_proj, a.k_proj, a.v_proj, a.o_proj):
            if lin.bias is not None:
                lin.bias.data.zero_()
    for name, p in model.named_parameters():
        if "norm" in name:
            p.data.fill_(1.0)
        p.requires_grad_(False)
    torch.cuda.empty_cache()
    return model


def install_theta(model, switch):
    """Wraps every decoder layer; returns the theta parameter (4, L). switch["recompute"]
    switches per-layer checkpointing on and off between steps."""
    layers = model.model.layers
    theta = torch.ones(4, len(layers), device="cuda", dtype=torch.float32, requires_grad=True)
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    as_tuple = (major, minor) < (4, 54)
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
            if switch["recompute"] and torch.is_grad_enabled():
                out = torch.utils.checkpoint.checkpoint(lambda h: body(h, kwargs=kwargs), hidden_states,
                                                        use_reentrant=False)
            else:
                out = body(hidden_states, kwargs=kwargs)
            return (out,) if as_tuple else out

        layer.forward = forward
    return theta


def padded_inputs(samples):
    n = max(len(p) + len(r) for p, r in samples)
    ids = torch.zeros(len(samples), n, dtype=torch.long)
    rows, targets = [], []
    for b, (p, r) in enumerate(samples):
        toks = p + r
        ids[b, :len(toks)] = torch.tensor(toks)
        for t in range(len(p) - 1, len(toks) - 1):  # row t predicts token t + 1 (a response token)
            rows.append(b * n + t)
            targets.append(toks[t + 1])
    return dict(input_ids=ids.cuda()), torch.tensor(rows).cuda(), torch.tensor(targets).cuda()


def packed_inputs(samples):
    ids, pos, rows, targets, start = [], [], [], [], 0
    for p, r in samples:
        toks = p + r
        ids += toks
        pos += list(range(len(toks)))
        for t in range(len(p) - 1, len(toks) - 1):
            rows.append(start + t)
            targets.append(toks[t + 1])
        start += len(toks)
    return (dict(input_ids=torch.tensor([ids]).cuda(), position_ids=torch.tensor([pos]).cuda()),
            torch.tensor(rows).cuda(), torch.tensor(targets).cuda())


def loss_fn(model, inputs, rows, targets, n_samples):
    h = model.model(**inputs, use_cache=False).last_hidden_state  # final norm included
    sel = h.reshape(-1, h.shape[-1]).index_select(0, rows)
    logits = model.lm_head(sel).float()
    return F.cross_entropy(logits, targets, reduction="sum") / n_samples


def packing_supported():
    """Does padding-free packing (position_ids, no mask) give per-sample attention?"""
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=300, max_position_embeddings=1024)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").float().eval()
    lens = [37, 50, 29]
    toks = torch.randint(3, 300, (sum(lens),), device="cuda")
    pos = torch.cat([torch.arange(n) for n in lens]).cuda()
    with torch.no_grad():
        packed = model(input_ids=toks[None], position_ids=pos[None], use_cache=False).logits[0]
        start, worst = 0, 0.0
        for n in lens:
            single = model(input_ids=toks[None, start:start + n], use_cache=False).logits[0]
            worst = max(worst, (single - packed[start:start + n]).abs().max().item())
            start += n
    del model
    torch.cuda.empty_cache()
    return worst < 1e-3, worst


def attention_kernels(model, inputs):
    """Names of the attention kernels one forward runs (flash / efficient / cudnn / math)."""
    names = set()
    try:
        from torch.profiler import ProfilerActivity, profile
        with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
            model.model(**inputs, use_cache=False)
            torch.cuda.synchronize()
        for e in prof.key_averages():
            n = e.key.lower()
            if any(s in n for s in ("flash", "fmha", "attention", "sdpa", "cudnn", "softmax")):
                names.add(e.key[:90])
    except Exception as e:  # the profiler is a diagnostic only
        names.add(f"profiler failed: {e}")
    return sorted(names)[:8]


def peak_flops(name):
    if "H100" in name and "PCIe" in name:
        return 756e12
    if any(s in name for s in ("H100", "H200", "H800")):
        return 989.4e12
    if "A100" in name or "A800" in name:
        return 312e12
    return 0.0


def flops_4n(cfg, samples):
    """The engine's count: 4 per parameter per token (lm_head on the loss rows only) plus
    attention 12 D per (query, key) pair and head (forward 4 D, backward 8 D)."""
    H, I, V, L = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_hidden_layers
    nH, nKV = cfg.num_attention_heads, cfg.num_key_value_heads
    D = H // nH
    layer = L * ((nH + 2 * nKV) * D * H + H * nH * D + 3 * I * H)
    T = sum(len(p) + len(r) for p, r in samples)
    R = sum(len(r) for p, r in samples)
    pairs = sum((len(p) + len(r)) * (len(p) + len(r) + 1) / 2 for p, r in samples)
    return 4.0 * layer * T + 4.0 * V * H * R + 12.0 * D * nH * pairs * L


def bench(model, theta, switch, cfg, name, mode, steps, ours_loss, deadline):
    switch["recompute"] = mode == "padded_recompute"
    samples = make_batch(cfg.vocab_size)
    T = sum(len(p) + len(r) for p, r in samples)
    inputs, rows, targets = (packed_inputs if mode == "packed" else padded_inputs)(samples)
    kernels = attention_kernels(model, inputs)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    weights_bytes = torch.cuda.memory_allocated()
    times, loss_v, grads = [], None, []
    for step in range(steps + 1):
        if time.time() > deadline and step >= 2:
            break
        theta.grad = None
        torch.cuda.synchronize()
        t = time.perf_counter()
        loss = loss_fn(model, inputs, rows, targets, len(samples))
        loss.backward()
        torch.cuda.synchronize()
        if step > 0:  # the first step is warm-up
            times.append(time.perf_counter() - t)
        loss_v = loss.item()
        grads.append(theta.grad.detach().clone())
    med = sorted(times)[len(times) // 2]
    dev = torch.cuda.get_device_name(0)
    peak = peak_flops(dev)
    f4 = flops_4n(cfg, samples)
    return {
        "model": name, "mode": mode, "tokens": T, "padded_tokens": int(inputs["input_ids"].numel()),
        "samples": len(samples), "step_s_median": med, "step_s_all": times, "tokens_per_s": T / med,
        "mfu_4n": f4 / med / peak if peak else None,
        "peak_bytes": torch.cuda.max_memory_allocated(), "weights_bytes": weights_bytes,
        "loss": loss_v, "loss_rel_vs_ours": abs(loss_v - ours_loss) / abs(ours_loss) if ours_loss else None,
        "bit_identical_repeats": all(torch.equal(g, grads[0]) for g in grads),
        "grad_finite": bool(torch.isfinite(grads[-1]).all().item()), "sdpa_kernels": kernels,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="llama8b,qwen7b")
    ap.add_argument("--modes", default="padded,packed,padded_recompute")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--ours", default=None, help="cuda_bench.json of hopscotch_cuda_selftest --bench")
    ap.add_argument("--deadline", type=float, default=600, help="seconds from start; later modes are skipped")
    args = ap.parse_args()
    end = time.time() + args.deadline
    self_check()
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "transformers": transformers.__version__, "device": torch.cuda.get_device_name(0)}
    ok, worst = packing_supported()
    info["packing_supported"], info["packing_max_abs_diff"] = ok, worst
    print(json.dumps(info), flush=True)
    ours = {}
    if args.ours:
        try:
            for r in json.load(open(args.ours)).get("runs", []):
                if r.get("attention", "auto") == "auto" and "train" in r:
                    ours[r["bench"]] = r["train"]["loss"]
        except Exception as e:
            print("cannot read --ours:", e, flush=True)
    results = []
    for name in args.models.split(","):
        if time.time() > end - 60:
            results.append({"model": name, "skipped": "deadline"})
            continue
        cfg = make_config(name)
        t0 = time.perf_counter()
        model = build(cfg)
        info.setdefault("rope", {})[name] = rope_facts(model)
        switch = {"recompute": False}
        theta = install_theta(model, switch)
        build_s = time.perf_counter() - t0
        for mode in args.modes.split(","):
            if mode == "packed" and not ok:
                r = {"model": name, "mode": mode, "skipped": f"packing without a mask is not per-sample here "
                                                           f"(max diff {worst:.3g})"}
            elif time.time() > end - 30:
                r = {"model": name, "mode": mode, "skipped": "deadline"}
            else:
                try:
                    r = bench(model, theta, switch, cfg, name, mode, args.steps, ours.get(name), end)
                    r["build_s"] = build_s
                except torch.cuda.OutOfMemoryError as e:
                    r = {"model": name, "mode": mode, "error": "out of memory: " + str(e).splitlines()[0]}
                except Exception as e:
                    r = {"model": name, "mode": mode, "error": f"{type(e).__name__}: {e}"[:400]}
                theta.grad = None
                torch.cuda.empty_cache()
            print(json.dumps(r), flush=True)
            results.append(r)
        del model, theta
        torch.cuda.empty_cache()
    doc = {"info": info, "results": results}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=2)
    for r in results:
        if "tokens_per_s" in r:
            lr = r["loss_rel_vs_ours"]
            print(f"{r['model']:8s} {r['mode']:17s} {r['tokens_per_s']:8.0f} tok/s  peak {r['peak_bytes'] / 2**30:5.1f} GiB"
                  f"  step {r['step_s_median']:.3f} s  loss {r['loss']:.5f}"
                  f"  vs ours {'n/a' if lr is None else f'{lr:.2e}'}")
        else:
            print(f"{r['model']:8s} {r['mode']:17s} {r.get('error') or r.get('skipped')}")
    bad = [r for r in results if r.get("loss_rel_vs_ours") is not None and r["loss_rel_vs_ours"] > 2e-2]
    if bad:
        print("ERROR loss differs from our engine's by more than 2e-2 in", [(r["model"], r["mode"]) for r in bad])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
