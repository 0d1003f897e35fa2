/**
 * Random Llama checkpoints for the benchmarks: a safetensors file written one tensor at a
 * time (so a multi-GB model never sits in memory), a config.json and the stories260k
 * tokenizer. Weights are uniform with variance 1 / fan_in (embeddings: 1), norms are 1.
 *
 *   import { writeRandomLlama } from './random-llama.mjs';
 *   writeRandomLlama(dir, { layers: 8, hidden: 2048, heads: 16, kvHeads: 4, headDim: 128, inter: 5632, vocab: 32000 }, { dtype: 'BF16' });
 */
import { closeSync, copyFileSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { bf16Bits as bf16FromF32, f16Bits as f16FromF32 } from '../scripts/half-bits.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Tensor names and shapes of an untied Llama in file order. */
export function llamaShapes(C) {
  const shapes = [['model.embed_tokens.weight', [C.vocab, C.hidden]]];
  for (let l = 0; l < C.layers; l++) {
    const p = `model.layers.${l}.`;
    shapes.push(
      [`${p}input_layernorm.weight`, [C.hidden]],
      [`${p}self_attn.q_proj.weight`, [C.heads * C.headDim, C.hidden]],
      [`${p}self_attn.k_proj.weight`, [C.kvHeads * C.headDim, C.hidden]],
      [`${p}self_attn.v_proj.weight`, [C.kvHeads * C.headDim, C.hidden]],
      [`${p}self_attn.o_proj.weight`, [C.hidden, C.heads * C.headDim]],
      [`${p}post_attention_layernorm.weight`, [C.hidden]],
      [`${p}mlp.gate_proj.weight`, [C.inter, C.hidden]],
      [`${p}mlp.up_proj.weight`, [C.inter, C.hidden]],
      [`${p}mlp.down_proj.weight`, [C.hidden, C.inter]],
    );
  }
  shapes.push(['model.norm.weight', [C.hidden]], ['lm_head.weight', [C.vocab, C.hidden]]);
  return shapes;
}

/**
 * Writes a random Llama of shape `C` ({ layers, hidden, heads, kvHeads, headDim, inter,
 * vocab }) into `dir` in `dtype` ('F16' or 'BF16'). Returns the bytes of tensor data and of
 * the largest tensor.
 */
export function writeRandomLlama(dir, C, { dtype = 'F16', seed = 0x9e3779b9 } = {}) {
  mkdirSync(dir, { recursive: true });
  const encode = dtype === 'BF16' ? bf16FromF32 : f16FromF32;
  const shapes = llamaShapes(C);
  const header = {};
  let offset = 0;
  let largest = 0;
  for (const [name, shape] of shapes) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
    largest = Math.max(largest, bytes);
  }
  let json = JSON.stringify({ __metadata__: { format: 'pt' }, ...header });
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const fd = openSync(join(dir, 'model.safetensors'), 'w');
  try {
    writeSync(fd, len);
    writeSync(fd, json);
    for (const [name, shape] of shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Uint16Array(n);
      if (shape.length === 1) data.fill(encode(1));
      else {
        const a = Math.sqrt(3 / (name.includes('embed') ? 1 : shape[1]));
        for (let i = 0; i < n; i++) data[i] = encode((2 * uniform() - 1) * a);
      }
      writeSync(fd, new Uint8Array(data.buffer));
    }
  } finally {
    closeSync(fd);
  }
  const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: C.hidden, intermediate_size: C.inter,
    num_hidden_layers: C.layers, num_attention_heads: C.heads, num_key_value_heads: C.kvHeads, head_dim: C.headDim,
    hidden_act: 'silu', rms_norm_eps: 1e-5, rope_theta: 10000.0, vocab_size: C.vocab, max_position_embeddings: 2048,
    tie_word_embeddings: false, torch_dtype: dtype === 'BF16' ? 'bfloat16' : 'float16', bos_token_id: 1, eos_token_id: 2,
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(root, 'models', 'stories260k', f), join(dir, f));
  return { tensorBytes: offset, largestTensorBytes: largest };
}
