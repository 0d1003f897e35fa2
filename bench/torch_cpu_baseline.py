#!/usr/bin/env python3
"""PyTorch CPU fp32 baseline for the CPU engine benchmark (bench/cpu-bench.sh).

Does what the reference Python implementation of Hopscotch does, in eager PyTorch:
a Llama decoder written like transformers' eager path (RMSNorm in fp32, rotate_half
RoPE with positions restarting per sample, repeat_kv, softmax(QK^T * scale + causal
mask) V, SwiGLU MLP, full-vocabulary logits and cross-entropy on response tokens),
all weights frozen (requires_grad False), theta = four leaf tensors of L scalars:
    x1 = b_att * Attn(norm(h)) + s_att * h;  h' = b_mlp * MLP(norm(x1)) + s_mlp * x1
Loss = sum of response-token NLL / samples; one step = forward + backward to theta.

    python3 bench/torch_cpu_baseline.py train    --model DIR|random100m --threads N [--samples 8] [--reps 3]
                                                 [--dtype f32|bf16]
    python3 bench/torch_cpu_baseline.py generate --model DIR|random100m --threads N [--batch 1] [--new 32]

--dtype bf16 holds the weights in bf16 and runs the matmuls in bf16 (what a user of
PyTorch 2.x on a bf16 checkpoint does), with norms computed in fp32 as transformers does,
fp32 softmax and fp32 cross-entropy; theta stays four fp32 leaves. --dtype f32 (default)
widens a bf16 checkpoint to fp32. A checkpoint is read with the safetensors package when
it is installed (memory-mapped, as transformers does), else by the small reader below.

Attention: --attn loop (default) runs each packed sample on its own causal mask;
--attn mask runs the whole packed batch against one block-diagonal causal mask.
The batch lengths come from the same 64-bit LCG as bench/cpu_bench.cpp, so both
sides see identical shapes. Prints one JSON object per measurement.
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F

MASK64 = (1 << 64) - 1
A, C = 6364136223846793005, 1442695040888963407


class Lcg:
    def __init__(self, seed):
        self.s = (seed * A + C) & MASK64

    def next(self):
        self.s = (self.s * A + C) & MASK64
        return self.s >> 33

    def range(self, lo, hi):
        return lo + self.next() % (hi - lo + 1)


def make_batch(n, vocab, seed):
    rng = Lcg(seed)
    out = []
    for _ in range(n):
        p, r = rng.range(120, 180), rng.range(60, 120)
        prompt = [rng.range(0, vocab - 1) for _ in range(p)]
        response = [rng.range(0, vocab - 1) for _ in range(r)]
        out.append((prompt, response))
    return out


RANDOM100M = dict(num_hidden_layers=12, hidden_size=768, intermediate_size=2048, num_attention_heads=12,
                  num_key_value_heads=12, head_dim=64, vocab_size=32000, rms_norm_eps=1e-5, rope_theta=10000.0,
                  tie_word_embeddings=False)


def read_safetensors(path):
    try:
        from safetensors.torch import load_file
        return load_file(path)
    except ImportError:
        pass
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": torch.float32, "BF16": torch.bfloat16}.get(info["dtype"])
        assert dt is not None, f"{path}: {name} is {info['dtype']}, expected F32 or BF16"
        b, e = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(blob[b:e]), dtype=dt).reshape(info["shape"])
    return out


def load(spec, dtype=torch.float32):
    cfg, w = load_f(spec)
    return cfg, {k: (v if v.dtype == dtype else v.to(dtype)) for k, v in w.items()}


def load_f(spec):
    if spec == "random100m":
        cfg = dict(RANDOM100M)
        g = torch.Generator().manual_seed(1)
        H, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
        QW = cfg["num_attention_heads"] * cfg["head_dim"]
        KW = cfg["num_key_value_heads"] * cfg["head_dim"]
        V = cfg["vocab_size"]

        def u(*shape, scale):
            return (torch.rand(*shape, generator=g) * 2 - 1) * scale

        sh, si = 1.7 / math.sqrt(H), 1.7 / math.sqrt(I)
        w = {"model.embed_tokens.weight": u(V, H, scale=1.0), "model.norm.weight": torch.ones(H),
             "lm_head.weight": u(V, H, scale=sh)}
        for l in range(L):
            p = f"model.layers.{l}."
            w[p + "input_layernorm.weight"] = torch.ones(H)
            w[p + "post_attention_layernorm.weight"] = torch.ones(H)
            w[p + "self_attn.q_proj.weight"] = u(QW, H, scale=sh)
            w[p + "self_attn.k_proj.weight"] = u(KW, H, scale=sh)
            w[p + "self_attn.v_proj.weight"] = u(KW, H, scale=sh)
            w[p + "self_attn.o_proj.weight"] = u(H, QW, scale=1.7 / math.sqrt(QW))
            w[p + "mlp.gate_proj.weight"] = u(I, H, scale=sh)
            w[p + "mlp.up_proj.weight"] = u(I, H, scale=sh)
            w[p + "mlp.down_proj.weight"] = u(H, I, scale=si)
        return cfg, w
    with open(os.path.join(spec, "config.json")) as f:
        cfg = json.load(f)
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
    cfg.setdefault("rope_theta", 10000.0)
    w = read_safetensors(os.path.join(spec, "model.safetensors"))
    if "lm_head.weight" not in w:
        w["lm_head.weight"] = w["model.embed_tokens.weight"]
    return cfg, w


class Llama:
    def __init__(self, cfg, w):
        self.cfg, self.w = cfg, w
        for t in w.values():
            t.requires_grad_(False)
        self.L = cfg["num_hidden_layers"]
        self.nH, self.nKV, self.D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        self.eps = cfg["rms_norm_eps"]
        self.inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, self.D, 2).float() / self.D))

    def norm(self, x, weight):
        x32 = x.float()
        var = x32.pow(2).mean(-1, keepdim=True)
        return weight * (x32 * torch.rsqrt(var + self.eps)).to(x.dtype)

    def rope(self, pos):
        freqs = pos.float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        dt = self.w["model.embed_tokens.weight"].dtype
        return emb.cos().to(dt), emb.sin().to(dt)

    @staticmethod
    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    def attn_core(self, q, k, v, mask):
        # q (nH, T, D), k/v (nKV, T, D), mask additive (T, T)
        rep = self.nH // self.nKV
        if rep > 1:
            k = k.repeat_interleave(rep, dim=0)
            v = v.repeat_interleave(rep, dim=0)
        s = torch.matmul(q, k.transpose(1, 2)) * (self.D ** -0.5) + mask.to(q.dtype)
        p = torch.softmax(s, dim=-1, dtype=torch.float32).to(v.dtype)
        return torch.matmul(p, v)

    def attention(self, l, x, cos, sin, bounds, attn_mode, cache=None):
        p = f"model.layers.{l}.self_attn."
        T = x.shape[0]
        q = F.linear(x, self.w[p + "q_proj.weight"]).view(T, self.nH, self.D).transpose(0, 1)
        k = F.linear(x, self.w[p + "k_proj.weight"]).view(T, self.nKV, self.D).transpose(0, 1)
        v = F.linear(x, self.w[p + "v_proj.weight"]).view(T, self.nKV, self.D).transpose(0, 1)
        q = q * cos + self.rotate_half(q) * sin
        k = k * cos + self.rotate_half(k) * sin
        if attn_mode == "mask":
            o = self.attn_core(q, k, v, block_causal_mask(bounds))
        else:
            outs = []
            for b, e in bounds:
                n = e - b
                mask = torch.full((n, n), float("-inf")).triu(1)
                outs.append(self.attn_core(q[:, b:e], k[:, b:e], v[:, b:e], mask))
            o = torch.cat(outs, dim=1)
        o = o.transpose(0, 1).reshape(T, self.nH * self.D)
        return F.linear(o, self.w[p + "o_proj.weight"])

    def mlp(self, l, x):
        p = f"model.layers.{l}.mlp."
        return F.linear(F.silu(F.linear(x, self.w[p + "gate_proj.weight"])) * F.linear(x, self.w[p + "up_proj.weight"]),
                        self.w[p + "down_proj.weight"])

    def forward(self, ids, pos, bounds, theta, attn_mode):
        b_att, s_att, b_mlp, s_mlp = theta
        cos, sin = self.rope(pos)
        h = F.embedding(ids, self.w["model.embed_tokens.weight"])
        for l in range(self.L):
            p = f"model.layers.{l}."
            a = self.attention(l, self.norm(h, self.w[p + "input_layernorm.weight"]), cos, sin, bounds, attn_mode)
            x1 = b_att[l] * a + s_att[l] * h
            m = self.mlp(l, self.norm(x1, self.w[p + "post_attention_layernorm.weight"]))
            h = b_mlp[l] * m + s_mlp[l] * x1
        h = self.norm(h, self.w["model.norm.weight"])
        return F.linear(h, self.w["lm_head.weight"])


def block_causal_mask(bounds):
    T = bounds[-1][1]
    mask = torch.full((T, T), float("-inf"))
    for b, e in bounds:
        mask[b:e, b:e] = torch.full((e - b, e - b), float("-inf")).triu(1)
    return mask


def pack(batch):
    ids, pos, labels, bounds = [], [], [], []
    for prompt, response in batch:
        seq = prompt + response
        b = len(ids)
        ids += seq
        pos += list(range(len(seq)))
        lab = [-100] * len(seq)
        for t in range(len(prompt), len(seq)):
            lab[t - 1] = seq[t]  # position t-1 predicts token t
        labels += lab
        bounds.append((b, len(ids)))
    return torch.tensor(ids), torch.tensor(pos), torch.tensor(labels), bounds


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def blas_core():
    # The BLAS library torch resolved (Debian's torch links libblas.so.3) and OpenBLAS' kernel, if that is it.
    import ctypes
    try:
        lib = ctypes.CDLL("libblas.so.3")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return "openblas " + lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return "not openblas"


def env_info():
    return {"torch": torch.__version__, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), "blas": blas_core()}


def run_train(args):
    cfg, w = load(args.model, torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    model = Llama(cfg, w)
    batch = make_batch(args.samples, cfg["vocab_size"], args.seed)
    ids, pos, labels, bounds = pack(batch)
    L = model.L

    grads = {}

    def step():
        theta = [torch.ones(L, requires_grad=True) for _ in range(4)]
        logits = model.forward(ids, pos, bounds, theta, args.attn)
        loss = F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum") / len(batch)
        loss.backward()
        for name, t in zip(("bAtt", "sAtt", "bMlp", "sMlp"), theta):
            grads[name] = [float(g) for g in t.grad]
        return loss.item()

    step()  # warm-up
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    times.sort()
    t = times[len(times) // 2]
    T = int(ids.numel())
    print(json.dumps({"impl": "torch", "mode": "train", "model": args.model, "threads": args.threads,
                      "precision": args.dtype, "attn": args.attn, "tokens": T, "seconds": round(t, 4), "tokens_per_s": round(T / t, 2),
                      "peak_rss_mib": round(peak_rss_mib(), 1), "loss": loss, **env_info(), "grad": grads,
                      "lengths": [[len(p), len(r)] for p, r in batch]}))


@torch.no_grad()
def run_generate(args):
    cfg, w = load(args.model)
    model = Llama(cfg, w)
    rng = Lcg(args.seed + 7)
    prompts = [[rng.range(0, cfg["vocab_size"] - 1) for _ in range(args.prompt)] for _ in range(args.batch)]

    def generate():
        # Greedy decoding with a per-layer KV cache, all prompts of equal length (no padding).
        B, P = len(prompts), args.prompt
        ids = torch.tensor(prompts)
        caches = [None] * model.L
        out = []
        pos0, cur = 0, ids
        for step in range(args.new + 1):
            n = cur.shape[1]
            pos = torch.arange(pos0, pos0 + n)
            cos, sin = model.rope(pos)
            h = F.embedding(cur, model.w["model.embed_tokens.weight"])  # (B, n, H)
            for l in range(model.L):
                p = f"model.layers.{l}."
                x = model.norm(h, model.w[p + "input_layernorm.weight"])
                a = p + "self_attn."
                q = F.linear(x, model.w[a + "q_proj.weight"]).view(B, n, model.nH, model.D).transpose(1, 2)
                k = F.linear(x, model.w[a + "k_proj.weight"]).view(B, n, model.nKV, model.D).transpose(1, 2)
                v = F.linear(x, model.w[a + "v_proj.weight"]).view(B, n, model.nKV, model.D).transpose(1, 2)
                q = q * cos + model.rotate_half(q) * sin
                k = k * cos + model.rotate_half(k) * sin
                if caches[l] is not None:
                    k = torch.cat((caches[l][0], k), dim=2)
                    v = torch.cat((caches[l][1], v), dim=2)
                caches[l] = (k, v)
                rep = model.nH // model.nKV
                kk = k.repeat_interleave(rep, dim=1) if rep > 1 else k
                vv = v.repeat_interleave(rep, dim=1) if rep > 1 else v
                s = torch.matmul(q, kk.transpose(2, 3)) * (model.D ** -0.5)
                if n > 1:
                    s = s + torch.full((n, n), float("-inf")).triu(1)
                o = torch.matmul(torch.softmax(s, dim=-1), vv).transpose(1, 2).reshape(B, n, -1)
                x1 = h + F.linear(o, model.w[a + "o_proj.weight"])
                h = x1 + model.mlp(l, model.norm(x1, model.w[p + "post_attention_layernorm.weight"]))
            h = model.norm(h[:, -1], model.w["model.norm.weight"])
            nxt = F.linear(h, model.w["lm_head.weight"]).argmax(-1)
            out.append(nxt)
            if len(out) == args.new:
                break
            pos0 += n
            cur = nxt[:, None]
        return B * len(out)

    generate()
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        produced = generate()
        times.append(time.perf_counter() - t0)
    times.sort()
    t = times[len(times) // 2]
    print(json.dumps({"impl": "torch", "mode": "generate", "model": args.model, "threads": args.threads,
                      "batch": args.batch, "prompt": args.prompt, "new_tokens": produced, "seconds": round(t, 4),
                      "tokens_per_s": round(produced / t, 2), "peak_rss_mib": round(peak_rss_mib(), 1),
                      **env_info()}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["train", "generate"])
    ap.add_argument("--model", default="random100m")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attn", choices=["loop", "mask"], default="loop")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    run_train(args) if args.mode == "train" else run_generate(args)


if __name__ == "__main__":
    sys.exit(main())
