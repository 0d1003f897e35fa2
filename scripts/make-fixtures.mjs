#!/usr/bin/env node
/**
 * Writes tiny deterministic random checkpoints for the tests, as complete Hugging Face
 * folders (config.json, model.safetensors or shards + index, tokenizer.json,
 * tokenizer_config.json), plus a `fixtures.json` manifest.
 *
 *   node scripts/make-fixtures.mjs [OUTDIR]      (default: test/fixtures/generated/models)
 *
 * Every tensor comes from its own seeded PRNG stream (mulberry32 keyed by fixture seed and
 * tensor name), so two runs give byte-identical files, and fixtures that share a seed and
 * shapes share weights (llama-sharded has exactly the weights of llama-gqa). All fixtures use
 * vocab 512 and the bundled stories260k tokenizer.
 */
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { bf16Bits, f16Bits } from './half-bits.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TOKENIZER_DIR = path.join(ROOT, 'models', 'stories260k');
const VOCAB = 512;

// ---------------------------------------------------------------------------------------------
// Deterministic random numbers

/** 32-bit FNV-1a of a string. */
function fnv1a(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** mulberry32: a small, well-mixed 32-bit generator; returns uniforms in [0, 1). */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples by Box-Muller over a mulberry32 stream. */
function gaussian(seed) {
  const uniform = mulberry32(seed);
  return () => {
    const u1 = 1 - uniform(); // (0, 1]
    const u2 = uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  };
}

// ---------------------------------------------------------------------------------------------
// Minimal safetensors writer

const DTYPE_BYTES = { F32: 4, BF16: 2, F16: 2 };

/** Encodes float values as little-endian bytes of `dtype`. */
function encode(values, dtype) {
  const buf = Buffer.alloc(values.length * DTYPE_BYTES[dtype]);
  for (let i = 0; i < values.length; i++) {
    if (dtype === 'F32') buf.writeFloatLE(values[i], i * 4);
    else if (dtype === 'BF16') buf.writeUInt16LE(bf16Bits(values[i]), i * 2);
    else buf.writeUInt16LE(f16Bits(values[i]), i * 2);
  }
  return buf;
}

/** Serializes `tensors` ({name, shape, values}[]) as one safetensors file of `dtype`. */
function safetensorsBytes(tensors, dtype) {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header = { __metadata__: { format: 'pt' } };
  const chunks = [];
  let offset = 0;
  for (const t of sorted) {
    const data = encode(t.values, dtype);
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + data.length] };
    chunks.push(data);
    offset += data.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json, 'utf8'), ...chunks]);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

/**
 * Fixture specs. `seed` keys the weights; shapes follow from the dimensions. Linear weights are
 * N(0, 1/fan_in) so activations stay O(1); embeddings and lm_head N(0, 0.3^2); norm weights
 * 1 + N(0, 0.1^2); biases N(0, 0.1^2).
 */
/**
 * The extra eos ids of llama-eos-list: tokens its greedy answers to the story openings emit
 * (60 of the 64 answers reach one of them within 64 new tokens).
 */
const EOS_LIST_IDS = [15, 255];

/**
 * `{ layer: scale }` for `count` distinct layers of `layers`, drawn by a seeded
 * Fisher-Yates shuffle (mulberry32), never layer 0: the planted near-redundant blocks.
 */
function plantedSubset(layers, count, seed, scale) {
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const idx = Array.from({ length: layers - 1 }, (_, i) => i + 1);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return Object.fromEntries(idx.slice(0, count).sort((x, y) => x - y).map((l) => [l, scale]));
}

const FIXTURES = [
  {
    name: 'llama-gqa',
    description: 'Llama, 8 query heads sharing 2 kv heads, untied lm_head, F32',
    arch: 'LlamaForCausalLM', modelType: 'llama', seed: 1,
    hidden: 64, layers: 3, heads: 8, kvHeads: 2, headDim: 8, intermediate: 64, tied: false, dtype: 'F32',
  },
  {
    name: 'llama-tied-bf16',
    description: 'Llama with tied embeddings, BF16 weights',
    arch: 'LlamaForCausalLM', modelType: 'llama', seed: 2,
    hidden: 32, layers: 2, heads: 4, kvHeads: 2, headDim: 8, intermediate: 64, tied: true, dtype: 'BF16',
  },
  {
    name: 'llama3-rope',
    description: 'Llama 3 RoPE scaling (factor 8, low 1, high 4); the original context of 256 puts one frequency in each band: kept, interpolated, divided',
    arch: 'LlamaForCausalLM', modelType: 'llama', seed: 3,
    hidden: 32, layers: 2, heads: 4, kvHeads: 4, headDim: 8, intermediate: 64, tied: false, dtype: 'F32',
    ropeTheta: 500000,
    ropeScaling: { rope_type: 'llama3', factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 256 },
  },
  {
    name: 'qwen2',
    description: 'Qwen2 with q/k/v biases',
    arch: 'Qwen2ForCausalLM', modelType: 'qwen2', seed: 4,
    hidden: 32, layers: 2, heads: 4, kvHeads: 2, headDim: 8, intermediate: 64, tied: false, dtype: 'F32',
    qkvBias: true, ropeTheta: 1000000, eps: 1e-6,
  },
  {
    name: 'qwen3',
    description: 'Qwen3 with per-head q/k RMSNorm and head_dim 16 != hidden/heads, tied',
    arch: 'Qwen3ForCausalLM', modelType: 'qwen3', seed: 5,
    hidden: 32, layers: 2, heads: 4, kvHeads: 2, headDim: 16, intermediate: 64, tied: true, dtype: 'F32',
    qkNorm: true, ropeTheta: 1000000, eps: 1e-6,
  },
  {
    name: 'granite',
    description: 'Granite with embedding/residual/attention multipliers and logits scaling, tied',
    arch: 'GraniteForCausalLM', modelType: 'granite', seed: 6,
    hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 8, intermediate: 64, tied: true, dtype: 'F32',
    granite: { embedding_multiplier: 12.0, residual_multiplier: 0.22, attention_multiplier: 0.0078125, logits_scaling: 8.0 },
  },
  {
    name: 'mistral',
    description: 'Mistral without sliding window, untied',
    arch: 'MistralForCausalLM', modelType: 'mistral', seed: 7,
    hidden: 32, layers: 2, heads: 4, kvHeads: 2, headDim: 8, intermediate: 64, tied: false, dtype: 'F32',
  },
  {
    name: 'llama-sharded',
    description: 'the weights of llama-gqa split over 2 safetensors shards with an index',
    arch: 'LlamaForCausalLM', modelType: 'llama', seed: 1,
    hidden: 64, layers: 3, heads: 8, kvHeads: 2, headDim: 8, intermediate: 64, tied: false, dtype: 'F32',
    shards: 2, sameWeightsAs: 'llama-gqa',
  },
  {
    name: 'llama-inert',
    description: 'llama-gqa shapes with 4 layers; layer 2 o_proj is all zeros, so its attention adds nothing',
    arch: 'LlamaForCausalLM', modelType: 'llama', seed: 1,
    hidden: 64, layers: 4, heads: 8, kvHeads: 2, headDim: 8, intermediate: 64, tied: false, dtype: 'F32',
    inertAttention: [2],
  },
  {
    name: 'llama-planted',
    description: 'Llama with 6 layers whose attention output (o_proj) is scaled by 0.05 in layers 1 and 4: the near-redundant blocks a selection should find first',
    arch: 'LlamaForCausalLM', modelType: 'llama', seed: 11,
    hidden: 64, layers: 6, heads: 8, kvHeads: 2, headDim: 8, intermediate: 128, tied: false, dtype: 'F32',
    attentionScale: { 1: 0.05, 4: 0.05 },
  },
  {
    name: 'llama-planted-16',
    description: 'Llama with 16 layers; o_proj scaled by 0.05 in 4 layers drawn with seed 16 (plantedSubset): the near-redundant blocks a selection should find first',
    arch: 'LlamaForCausalLM', modelType: 'llama', seed: 16,
    hidden: 64, layers: 16, heads: 8, kvHeads: 2, headDim: 8, intermediate: 128, tied: false, dtype: 'F32',
    attentionScale: plantedSubset(16, 4, 16, 0.05),
  },
  {
    name: 'llama-planted-32',
    description: 'Llama with 32 layers; o_proj scaled by 0.05 in 6 layers drawn with seed 32 (plantedSubset): the near-redundant blocks a selection should find first',
    arch: 'LlamaForCausalLM', modelType: 'llama', seed: 32,
    hidden: 64, layers: 32, heads: 8, kvHeads: 2, headDim: 8, intermediate: 128, tied: false, dtype: 'F32',
    attentionScale: plantedSubset(32, 6, 32, 0.05),
  },
  {
    name: 'llama-f16',
    description: 'Llama with F16 weights, untied',
    arch: 'LlamaForCausalLM', modelType: 'llama', seed: 8,
    hidden: 32, layers: 2, heads: 4, kvHeads: 2, headDim: 8, intermediate: 64, tied: false, dtype: 'F16',
  },
  {
    name: 'llama-hd128-gqa4',
    description: 'Llama with head_dim 128 (the CUDA tensor-core attention) and 4 query heads per kv head; context 1024 for ~300-token samples',
    arch: 'LlamaForCausalLM', modelType: 'llama', seed: 9,
    hidden: 128, layers: 2, heads: 4, kvHeads: 1, headDim: 128, intermediate: 128, tied: false, dtype: 'F32',
    maxPosition: 1024,
  },
  {
    name: 'llama-ctx128',
    description: 'Llama with a 128-token context (max_position_embeddings 128), 4 layers',
    arch: 'LlamaForCausalLM', modelType: 'llama', seed: 9,
    hidden: 32, layers: 4, heads: 4, kvHeads: 2, headDim: 8, intermediate: 64, tied: false, dtype: 'F32',
    maxPosition: 128,
  },
  {
    name: 'llama-eos-list',
    description: `Llama whose generation_config.json declares a list of eos ids, [2, ${EOS_LIST_IDS.join(', ')}] (config.json says 2): its greedy answers end with the later ones`,
    arch: 'LlamaForCausalLM', modelType: 'llama', seed: 10,
    hidden: 32, layers: 2, heads: 4, kvHeads: 2, headDim: 8, intermediate: 64, tied: false, dtype: 'F32',
    generationEos: [2, ...EOS_LIST_IDS],
  },
];

const MAX_POSITION = 256;
const TORCH_DTYPE = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };

function tensor(spec, name, shape, kind) {
  const n = shape.reduce((a, b) => a * b, 1);
  const normal = gaussian(fnv1a(`${spec.seed}:${name}`));
  const values = new Float64Array(n);
  const fanIn = shape[shape.length - 1];
  for (let i = 0; i < n; i++) {
    const z = normal();
    if (kind === 'norm') values[i] = 1 + 0.1 * z;
    else if (kind === 'bias') values[i] = 0.1 * z;
    else if (kind === 'embed') values[i] = 0.3 * z;
    else values[i] = z / Math.sqrt(fanIn);
  }
  return { name, shape, values };
}

function weights(spec) {
  const { hidden: H, heads, kvHeads, headDim: D, intermediate: I } = spec;
  const out = [tensor(spec, 'model.embed_tokens.weight', [VOCAB, H], 'embed')];
  for (let l = 0; l < spec.layers; l++) {
    const p = `model.layers.${l}`;
    out.push(tensor(spec, `${p}.input_layernorm.weight`, [H], 'norm'));
    out.push(tensor(spec, `${p}.self_attn.q_proj.weight`, [heads * D, H], 'linear'));
    out.push(tensor(spec, `${p}.self_attn.k_proj.weight`, [kvHeads * D, H], 'linear'));
    out.push(tensor(spec, `${p}.self_attn.v_proj.weight`, [kvHeads * D, H], 'linear'));
    if (spec.qkvBias) {
      out.push(tensor(spec, `${p}.self_attn.q_proj.bias`, [heads * D], 'bias'));
      out.push(tensor(spec, `${p}.self_attn.k_proj.bias`, [kvHeads * D], 'bias'));
      out.push(tensor(spec, `${p}.self_attn.v_proj.bias`, [kvHeads * D], 'bias'));
    }
    if (spec.qkNorm) {
      out.push(tensor(spec, `${p}.self_attn.q_norm.weight`, [D], 'norm'));
      out.push(tensor(spec, `${p}.self_attn.k_norm.weight`, [D], 'norm'));
    }
    const o = tensor(spec, `${p}.self_attn.o_proj.weight`, [H, heads * D], 'linear');
    if (spec.inertAttention?.includes(l)) o.values.fill(0);
    const scale = spec.attentionScale?.[l];
    if (scale !== undefined) for (let i = 0; i < o.values.length; i++) o.values[i] *= scale;
    out.push(o);
    out.push(tensor(spec, `${p}.post_attention_layernorm.weight`, [H], 'norm'));
    out.push(tensor(spec, `${p}.mlp.gate_proj.weight`, [I, H], 'linear'));
    out.push(tensor(spec, `${p}.mlp.up_proj.weight`, [I, H], 'linear'));
    out.push(tensor(spec, `${p}.mlp.down_proj.weight`, [H, I], 'linear'));
  }
  out.push(tensor(spec, 'model.norm.weight', [H], 'norm'));
  if (!spec.tied) out.push(tensor(spec, 'lm_head.weight', [VOCAB, H], 'embed'));
  return out;
}

function config(spec) {
  const c = {
    architectures: [spec.arch],
    model_type: spec.modelType,
    hidden_size: spec.hidden,
    intermediate_size: spec.intermediate,
    num_hidden_layers: spec.layers,
    num_attention_heads: spec.heads,
    num_key_value_heads: spec.kvHeads,
    head_dim: spec.headDim,
    hidden_act: 'silu',
    rms_norm_eps: spec.eps ?? 1e-5,
    rope_theta: spec.ropeTheta ?? 10000.0,
    rope_scaling: spec.ropeScaling ?? null,
    vocab_size: VOCAB,
    max_position_embeddings: spec.maxPosition ?? MAX_POSITION,
    tie_word_embeddings: spec.tied,
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    initializer_range: 0.02,
    use_cache: true,
    torch_dtype: TORCH_DTYPE[spec.dtype],
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: null,
    transformers_version: '4.51.0',
  };
  if (spec.modelType === 'qwen2' || spec.modelType === 'qwen3') {
    delete c.mlp_bias;
    c.use_sliding_window = false;
    c.sliding_window = null;
    c.max_window_layers = spec.layers;
  }
  if (spec.modelType === 'mistral') {
    delete c.attention_bias;
    delete c.mlp_bias;
    c.sliding_window = null;
  }
  if (spec.granite) Object.assign(c, spec.granite);
  return c;
}

function writeJson(file, value) {
  writeFileSync(file, JSON.stringify(value, null, 2) + '\n');
}

function writeFixture(outDir, spec) {
  const dir = path.join(outDir, spec.name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeJson(path.join(dir, 'config.json'), config(spec));
  writeJson(path.join(dir, 'generation_config.json'), { bos_token_id: 1, eos_token_id: spec.generationEos ?? 2 });
  copyFileSync(path.join(TOKENIZER_DIR, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  copyFileSync(path.join(TOKENIZER_DIR, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));

  const tensors = weights(spec);
  const parameters = tensors.reduce((a, t) => a + t.values.length, 0);
  const shards = spec.shards ?? 1;
  if (shards === 1) {
    writeFileSync(path.join(dir, 'model.safetensors'), safetensorsBytes(tensors, spec.dtype));
  } else {
    // Contiguous groups in writing order, as save_pretrained does when it splits by size.
    const weightMap = {};
    let totalSize = 0;
    const per = Math.ceil(tensors.length / shards);
    for (let s = 0; s < shards; s++) {
      const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const group = tensors.slice(s * per, (s + 1) * per);
      for (const t of group) {
        weightMap[t.name] = file;
        totalSize += t.values.length * DTYPE_BYTES[spec.dtype];
      }
      writeFileSync(path.join(dir, file), safetensorsBytes(group, spec.dtype));
    }
    const sortedMap = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
    writeJson(path.join(dir, 'model.safetensors.index.json'), { metadata: { total_size: totalSize }, weight_map: sortedMap });
  }

  return {
    name: spec.name,
    description: spec.description,
    arch: spec.arch,
    modelType: spec.modelType,
    numLayers: spec.layers,
    hiddenSize: spec.hidden,
    intermediateSize: spec.intermediate,
    numHeads: spec.heads,
    numKvHeads: spec.kvHeads,
    headDim: spec.headDim,
    vocabSize: VOCAB,
    maxPositionEmbeddings: spec.maxPosition ?? MAX_POSITION,
    generationEos: spec.generationEos ?? [2],
    dtype: spec.dtype,
    tieWordEmbeddings: spec.tied,
    qkvBias: spec.qkvBias ?? false,
    qkNorm: spec.qkNorm ?? false,
    ropeType: spec.ropeScaling?.rope_type ?? 'default',
    granite: spec.granite !== undefined,
    shards,
    parameters,
    inertAttention: spec.inertAttention ?? [],
    plantedAttention: Object.keys(spec.attentionScale ?? {}).map(Number),
    sameWeightsAs: spec.sameWeightsAs ?? null,
  };
}

function main() {
  const outDir = path.resolve(process.argv[2] ?? path.join(ROOT, 'test', 'fixtures', 'generated', 'models'));
  mkdirSync(outDir, { recursive: true });
  const manifest = FIXTURES.map((spec) => writeFixture(outDir, spec));
  writeJson(path.join(outDir, 'fixtures.json'), {
    generator: 'scripts/make-fixtures.mjs',
    tokenizer: 'models/stories260k/tokenizer.json',
    fixtures: manifest,
  });
  process.stdout.write(`make-fixtures: wrote ${manifest.length} fixture models to ${outDir}\n`);
}

main();
