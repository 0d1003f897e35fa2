#!/usr/bin/env python3
"""Tiny random Hugging Face checkpoints for the CUDA self-test on machines without Node.

    python3 bench/make_fixtures.py OUTDIR

Writes one folder per architecture (config.json + model.safetensors, fp32), covering what
the CUDA engine special-cases: GQA and odd sizes (llama, llama3 rope scaling), q/k/v bias
(qwen2), per-head q/k norm with head_dim != hidden/heads (qwen3), the Granite multipliers,
and Mistral. Needs only numpy; the safetensors file is written directly (8-byte header
length, JSON header, little-endian data). The Node generator scripts/make-fixtures.mjs
remains the source of the test-suite fixtures; these mirror its shapes.
"""
import json
import os
import struct
import zlib
import sys

import numpy as np

SPECS = [
    dict(name="llama-odd", arch="LlamaForCausalLM", model_type="llama", hidden=96, layers=4, heads=6, kv=2,
         head_dim=16, inter=200, vocab=300, tied=False,
         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 64}),
    dict(name="qwen2-bias", arch="Qwen2ForCausalLM", model_type="qwen2", hidden=64, layers=3, heads=4, kv=2,
         head_dim=16, inter=128, vocab=256, tied=True, qkv_bias=True),
    dict(name="qwen3-qknorm", arch="Qwen3ForCausalLM", model_type="qwen3", hidden=64, layers=3, heads=4, kv=2,
         head_dim=32, inter=128, vocab=256, tied=True, qk_norm=True),
    dict(name="granite", arch="GraniteForCausalLM", model_type="granite", hidden=64, layers=3, heads=4, kv=2,
         head_dim=16, inter=128, vocab=256, tied=True,
         granite=dict(embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.0625,
                      logits_scaling=8.0)),
    dict(name="mistral", arch="MistralForCausalLM", model_type="mistral", hidden=64, layers=3, heads=4, kv=1,
         head_dim=16, inter=128, vocab=256, tied=False),
    # head_dim 128 runs the tensor-core attention; 4 query heads per kv head; context
    # 1024 for the self-test's ~300-token samples.
    dict(name="llama-hd128-gqa4", arch="LlamaForCausalLM", model_type="llama", hidden=128, layers=2, heads=4,
         kv=1, head_dim=128, inter=128, vocab=300, tied=False, max_position=1024),
]


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def make(spec, out):
    rng = np.random.default_rng(zlib.crc32(spec["name"].encode()))
    H, L, nH, nKV, D, I, V = (spec[k] for k in ("hidden", "layers", "heads", "kv", "head_dim", "inter", "vocab"))

    def mat(rows, cols, gain=1.0):
        return rng.standard_normal((rows, cols)).astype(np.float32) * np.float32(gain / np.sqrt(cols))

    def vec(n, base=1.0, spread=0.1):
        return (base + spread * rng.standard_normal(n)).astype(np.float32)

    t = {"model.embed_tokens.weight": rng.standard_normal((V, H)).astype(np.float32),
         "model.norm.weight": vec(H)}
    for l in range(L):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = vec(H)
        t[p + "post_attention_layernorm.weight"] = vec(H)
        t[p + "self_attn.q_proj.weight"] = mat(nH * D, H)
        t[p + "self_attn.k_proj.weight"] = mat(nKV * D, H)
        t[p + "self_attn.v_proj.weight"] = mat(nKV * D, H)
        t[p + "self_attn.o_proj.weight"] = mat(H, nH * D)
        if spec.get("qkv_bias"):
            t[p + "self_attn.q_proj.bias"] = vec(nH * D, 0.0, 0.1)
            t[p + "self_attn.k_proj.bias"] = vec(nKV * D, 0.0, 0.1)
            t[p + "self_attn.v_proj.bias"] = vec(nKV * D, 0.0, 0.1)
        if spec.get("qk_norm"):
            t[p + "self_attn.q_norm.weight"] = vec(D)
            t[p + "self_attn.k_norm.weight"] = vec(D)
        t[p + "mlp.gate_proj.weight"] = mat(I, H)
        t[p + "mlp.up_proj.weight"] = mat(I, H)
        t[p + "mlp.down_proj.weight"] = mat(H, I)
    if not spec["tied"]:
        t["lm_head.weight"] = mat(V, H, 3.0)
    cfg = {
        "architectures": [spec["arch"]], "model_type": spec["model_type"], "hidden_size": H,
        "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": nH, "num_key_value_heads": nKV,
        "head_dim": D, "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "rope_scaling": spec.get("rope_scaling"), "vocab_size": V, "max_position_embeddings": spec.get("max_position", 512),
        "tie_word_embeddings": spec["tied"], "attention_bias": bool(spec.get("qkv_bias", False)),
        "mlp_bias": False, "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2,
    }
    if spec["model_type"] in ("qwen2", "qwen3", "mistral"):
        cfg["use_sliding_window"] = False
        cfg["sliding_window"] = None
    if spec["model_type"] == "qwen2":
        cfg.pop("attention_bias")  # Qwen2 always has q/k/v bias
    cfg.update(spec.get("granite", {}))
    d = os.path.join(out, spec["name"])
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(d, "model.safetensors"), t)
    return d


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "bench/fixtures"
    for s in SPECS:
        print(make(s, out))
