// Weights in their own dtype: a bf16 or f16 checkpoint is held as the file stores it
// (mapped, 2 bytes per weight) and widened to fp32 inside the GEMMs. The results must be
// bit-for-bit those of the engine holding an fp32 copy of every tensor
// (HOPSCOTCH_WEIGHTS=f32-copy, how weights were held before), on every bf16/f16 fixture
// and on odd-shaped bf16/f16 checkpoints written here (sizes that are not multiples of the
// GEMM tiles, so every edge path of the packing and the direct small-M kernels runs).
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { mulberry32 } from '../../src/batching.js';
import { load } from '../../src/model.js';
import { binding } from '../../src/native/binding.js';
import type { Model, Sample, Theta } from '../../src/types.js';
import { demoModel, fixtureDir, generated } from '../helpers.js';

const fixtures: { name: string; numLayers: number; dtype: string }[] = JSON.parse(
  readFileSync(join(generated, 'models', 'fixtures.json'), 'utf8'),
).fixtures;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function bf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}
/** f16 bits by nearest rounding of |x| < 2^15 (subnormals included), enough for test weights. */
function f16Bits(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a < 2 ** -14) return sign | Math.round(a / 2 ** -24);
  const e = Math.floor(Math.log2(a));
  const m = Math.round((a / 2 ** e - 1) * 1024);
  return m === 1024 ? sign | ((e + 16) << 10) : sign | ((e + 15) << 10) | m;
}

/** Writes a random Llama checkpoint of odd sizes in `dtype` (the stories260k tokenizer, vocab 512). */
function writeOddModel(dir: string, dtype: 'BF16' | 'F16'): void {
  mkdirSync(dir, { recursive: true });
  const H = 76, I = 197, nH = 4, nKV = 2, D = 18, V = 512, L = 2;
  const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: H, intermediate_size: I,
    num_hidden_layers: L, num_attention_heads: nH, num_key_value_heads: nKV, head_dim: D, hidden_act: 'silu',
    rms_norm_eps: 1e-5, rope_theta: 10000, vocab_size: V, max_position_embeddings: 256, tie_word_embeddings: false,
    attention_bias: false, mlp_bias: false, bos_token_id: 1, eos_token_id: 2,
    torch_dtype: dtype === 'BF16' ? 'bfloat16' : 'float16',
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(demoModel, f), join(dir, f));
  const r = mulberry32(dtype === 'BF16' ? 5 : 6);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const tensors: { name: string; dtype: 'BF16' | 'F16'; shape: number[]; data: Uint16Array }[] = [];
  const add = (name: string, shape: number[], f: () => number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Uint16Array(n);
    for (let i = 0; i < n; i++) data[i] = dtype === 'BF16' ? bf16Bits(f()) : f16Bits(f());
    tensors.push({ name, dtype, shape, data });
  };
  const lin = (fanIn: number) => () => gauss() / Math.sqrt(fanIn);
  const norm = () => 1 + 0.1 * gauss();
  add('model.embed_tokens.weight', [V, H], () => 0.3 * gauss());
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    add(p + 'input_layernorm.weight', [H], norm);
    add(p + 'self_attn.q_proj.weight', [nH * D, H], lin(H));
    add(p + 'self_attn.k_proj.weight', [nKV * D, H], lin(H));
    add(p + 'self_attn.v_proj.weight', [nKV * D, H], lin(H));
    add(p + 'self_attn.o_proj.weight', [H, nH * D], lin(nH * D));
    add(p + 'post_attention_layernorm.weight', [H], norm);
    add(p + 'mlp.gate_proj.weight', [I, H], lin(H));
    add(p + 'mlp.up_proj.weight', [I, H], lin(H));
    add(p + 'mlp.down_proj.weight', [H, I], lin(I));
  }
  add('model.norm.weight', [H], norm);
  add('lm_head.weight', [V, H], () => 0.3 * gauss());
  return void binding().writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' }, true);
}

function samplesFor(seed: number, vocab: number, lengths: number[][]): Sample[] {
  const r = mulberry32(seed);
  return lengths.map(([p, q]) => ({
    prompt: Array.from({ length: p }, () => 3 + Math.floor(r() * (vocab - 3))),
    response: Array.from({ length: q }, () => 3 + Math.floor(r() * (vocab - 3))),
  }));
}

function thetaFor(seed: number, layers: number): Theta {
  const r = mulberry32(seed);
  const f = (lo: number, hi: number) => Float32Array.from({ length: layers }, () => lo + (hi - lo) * r());
  return { bAtt: f(0.7, 1.3), sAtt: f(0.8, 1.2), bMlp: f(0.7, 1.3), sMlp: f(0.8, 1.2) };
}

/** Every number the engine produces for one model, as the bytes of fp32/fp64 arrays. */
async function everything(model: Model): Promise<Buffer[]> {
  const L = model.config.numLayers, V = model.config.vocabSize;
  const theta = thetaFor(3, L);
  // 5 + 41 + 23 tokens: the packed GEMM path with partial tiles; one sample alone: the direct path.
  const samples = samplesFor(11, V, [[3, 2], [29, 12], [14, 9]]);
  const out: Buffer[] = [];
  for (const opts of [{}, { skip: [L - 1], tokenMean: true }, { recompute: true }]) {
    const g = await model.lossAndGrad(samples, theta, opts);
    out.push(Buffer.from(Float64Array.from([g.loss, ...g.sampleNll]).buffer));
    out.push(Buffer.from(Float32Array.from([...g.grad.bAtt, ...g.grad.sAtt, ...g.grad.bMlp, ...g.grad.sMlp]).buffer));
  }
  const small = await model.lossAndGrad(samplesFor(12, V, [[4, 3]]), theta);
  out.push(Buffer.from(Float64Array.from([small.loss]).buffer));
  out.push(Buffer.from(Float32Array.from([...small.grad.bAtt, ...small.grad.sMlp]).buffer));
  out.push(Buffer.from((await model.logits(samples[1].prompt, { theta })).buffer));
  const prompts = samplesFor(13, V, [[5, 0], [9, 0], [2, 0]]).map((s) => s.prompt);
  for (const batch of [prompts.slice(0, 1), prompts]) {
    const gen = await model.generate(batch, { maxNewTokens: 6, theta, stop: [] });
    out.push(Buffer.from(Int32Array.from(gen.flat()).buffer));
  }
  const st = await model.layerStats(samples, { theta, hiddenLayers: [1] });
  out.push(Buffer.from(Float64Array.from([...st.cosAttn, ...st.cosMlp, ...st.blockInfluence]).buffer));
  out.push(Buffer.from((st.hidden[0] as Float32Array).buffer));
  return out;
}

async function loadWith(dir: string, threads: number, f32Copy: boolean): Promise<Model> {
  const before = process.env.HOPSCOTCH_WEIGHTS;
  if (f32Copy) process.env.HOPSCOTCH_WEIGHTS = 'f32-copy';
  else delete process.env.HOPSCOTCH_WEIGHTS;
  try {
    return await load(dir, { device: 'cpu', threads });
  } finally {
    if (before === undefined) delete process.env.HOPSCOTCH_WEIGHTS;
    else process.env.HOPSCOTCH_WEIGHTS = before;
  }
}

let tmp = '';
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'hopscotch-wdtype-'));
  writeOddModel(join(tmp, 'odd-bf16'), 'BF16');
  writeOddModel(join(tmp, 'odd-f16'), 'F16');
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const halfFixtures = fixtures.filter((f) => f.dtype === 'BF16' || f.dtype === 'F16');
const cases = [
  ...halfFixtures.map((f) => ({ name: f.name, dir: () => fixtureDir(f.name), dtype: f.dtype })),
  { name: 'odd-bf16 (H 76, I 197)', dir: () => join(tmp, 'odd-bf16'), dtype: 'BF16' },
  { name: 'odd-f16 (H 76, I 197)', dir: () => join(tmp, 'odd-f16'), dtype: 'F16' },
];

describe('weights in their own dtype', () => {
  it('the fixtures include a bf16 and an f16 checkpoint', () => {
    expect(halfFixtures.map((f) => f.dtype).sort()).toEqual(['BF16', 'F16']);
  });

  describe.each(cases)('$name', ({ dir, dtype }) => {
    it('is held in its dtype at 2 bytes per weight, and the fp32 copy at 4', async () => {
      const native = await binding().Model.load(dir(), { device: 'cpu', threads: 1 });
      const copyEnv = process.env.HOPSCOTCH_WEIGHTS;
      process.env.HOPSCOTCH_WEIGHTS = 'f32-copy';
      const copy = await binding().Model.load(dir(), { device: 'cpu', threads: 1 }).finally(() => {
        if (copyEnv === undefined) delete process.env.HOPSCOTCH_WEIGHTS;
        else process.env.HOPSCOTCH_WEIGHTS = copyEnv;
      });
      try {
        const a = native.info(), b = copy.info();
        expect(a.weightDtype).toBe(dtype);
        expect(b.weightDtype).toBe('F32');
        expect(a.precision).toBe('f32');
        // Matrices at 2 bytes, norms (fp32 copies) at 4: well under the copy's bytes.
        expect(a.weightBytes).toBeLessThan(0.55 * b.weightBytes);
        expect(b.weightBytes).toBe(4 * a.config.parameters);
      } finally {
        native.dispose();
        copy.dispose();
      }
    });

    it('gives bit-identical losses, gradients, logits, tokens and statistics to the fp32 copy (1 and 2 threads)', async () => {
      for (const threads of [1, 2]) {
        const mapped = await loadWith(dir(), threads, false);
        const copied = await loadWith(dir(), threads, true);
        try {
          const a = await everything(mapped);
          const b = await everything(copied);
          expect(a.length).toBe(b.length);
          a.forEach((buf, i) => expect(buf.equals(b[i]), `output ${i} at ${threads} thread(s)`).toBe(true));
        } finally {
          mapped.dispose();
          copied.dispose();
        }
      }
    });
  });
});
