// Export formats: the scales adapter round trip, theta folded into hf checkpoints (checked
// against an independent float64 forward pass of the scaled original), DeciLM checkpoints
// without the skipped attention weights, atomic writes and typed refusals.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadAdapter, readAdapter } from '../../src/adapter.js';
import { exportModel, ffnMultToIntermediateSize, intermediateSizeToFfnMult, LOGIT_TOLERANCE } from '../../src/export.js';
import { load } from '../../src/model.js';
import { selectBlocks } from '../../src/select.js';
import type { Model, Theta } from '../../src/types.js';
import { demoModel, expectCode, fixtureDir, root } from '../helpers.js';
import { loadRef } from '../reference/ref64.js';
import { readModelTensors, type RefTensor } from '../reference/safetensors-js.js';

let work: string;
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'hopscotch-export-'));
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

/** Deterministic non-trivial theta: s in [0.7, 1.3], b in [0.5, 1.5]. */
function randomTheta(numLayers: number, seed: number): Theta {
  let a = seed >>> 0;
  const u = () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a / 4294967296;
  };
  const vec = (lo: number, hi: number) => Float32Array.from({ length: numLayers }, () => lo + (hi - lo) * u());
  return { bAtt: vec(0.5, 1.5), sAtt: vec(0.7, 1.3), bMlp: vec(0.5, 1.5), sMlp: vec(0.7, 1.3) };
}

/** 1-2 skipped layers, never layer 0 (DeciLM refuses it; tested separately). */
function skipFor(numLayers: number): number[] {
  return numLayers >= 4 ? [1, numLayers - 1] : [numLayers - 1];
}

const CHECK = [[1, 45, 300, 7, 99, 12, 250, 3, 511, 64, 17, 200, 5, 81, 33, 140]];

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** Entries of `dir` (used to show that nothing was left behind). */
const entries = (dir: string) => readdirSync(dir).sort();

/** Minimal F32 safetensors writer, independent of the addon. */
function writeF32Safetensors(file: string, tensors: Map<string, { shape: number[]; data: ArrayLike<number> }>): void {
  const header: Record<string, unknown> = {};
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of [...tensors].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const buf = Buffer.alloc(t.data.length * 4);
    for (let i = 0; i < t.data.length; i++) buf.writeFloatLE(t.data[i]!, 4 * i);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + buf.length] };
    chunks.push(buf);
    offset += buf.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...chunks]));
}

/**
 * Copies an F32 model folder with its MLP zero-padded to `intermediate` rows: the extra
 * gate/up rows give silu(0) * 0 = 0 and the extra down_proj columns are zero, so the
 * function is unchanged but the size becomes one DeciLM's ffn_mult can express.
 */
function padIntermediate(src: string, dst: string, intermediate: number): string {
  mkdirSync(dst, { recursive: true });
  const cfg = JSON.parse(readFileSync(path.join(src, 'config.json'), 'utf8')) as Record<string, number>;
  const I = cfg.intermediate_size!;
  const H = cfg.hidden_size!;
  const out = new Map<string, { shape: number[]; data: ArrayLike<number> }>();
  for (const [name, t] of readModelTensors(src)) {
    if (/mlp\.(gate|up)_proj\.weight$/.test(name)) {
      const d = new Float64Array(intermediate * H);
      d.set(t.data);
      out.set(name, { shape: [intermediate, H], data: d });
    } else if (/mlp\.down_proj\.weight$/.test(name)) {
      const d = new Float64Array(H * intermediate);
      for (let r = 0; r < H; r++) for (let c = 0; c < I; c++) d[r * intermediate + c] = t.data[r * I + c]!;
      out.set(name, { shape: [H, intermediate], data: d });
    } else {
      out.set(name, { shape: t.shape, data: t.data });
    }
  }
  writeF32Safetensors(path.join(dst, 'model.safetensors'), out);
  writeFileSync(path.join(dst, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: intermediate, torch_dtype: 'float32' }, null, 2));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) writeFileSync(path.join(dst, f), readFileSync(path.join(src, f)));
  return dst;
}

const models = new Map<string, Model>();
async function model(dir: string): Promise<Model> {
  let m = models.get(dir);
  if (!m) {
    m = await load(dir, { device: 'cpu' });
    models.set(dir, m);
  }
  return m;
}
afterAll(() => {
  for (const m of models.values()) m.dispose();
});

describe('scales', () => {
  it('round-trips theta bitwise, the skip list and the metadata', async () => {
    const m = await model(fixtureDir('llama-gqa'));
    const theta = randomTheta(m.config.numLayers, 11);
    const out = path.join(work, 'scales-gqa');
    const settings = { strategy: 'hopscotch', count: 1, lr: 3e-3 };
    const r = await exportModel(m, { skipped: [2], theta }, { out, format: 'scales', settings });
    expect(r.files).toEqual(['adapter.safetensors']);
    expect(r.bytes).toBe(readFileSync(path.join(out, 'adapter.safetensors')).length);
    const a = loadAdapter(m, out);
    for (const k of ['bAtt', 'sAtt', 'bMlp', 'sMlp'] as const)
      expect(Array.from(new Uint32Array(a.theta[k].buffer))).toEqual(Array.from(new Uint32Array(theta[k].buffer)));
    expect(a.skipped).toEqual([2]);
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
    expect(a.metadata).toEqual({ fingerprint: m.fingerprint, arch: 'LlamaForCausalLM', numLayers: 3, toolVersion: pkg.version, settings });
    // Applying it gives exactly the scaled model.
    const want = await m.logits(CHECK[0]!, { theta, skip: [2] });
    const got = await m.logits(CHECK[0]!, { theta: a.theta, skip: a.skipped });
    expect(maxAbsDiff(want, got)).toBe(0);
  });

  it('writes an empty skip list', async () => {
    const m = await model(demoModel);
    const out = path.join(work, 'scales-demo');
    await exportModel(m, { skipped: [], theta: randomTheta(5, 3) }, { out, format: 'scales' });
    expect(readAdapter(out).skipped).toEqual([]);
  });

  it('refuses another base model with HOPSCOTCH_ERR_FINGERPRINT', async () => {
    const other = await model(fixtureDir('mistral'));
    expect(() => loadAdapter(other, path.join(work, 'scales-gqa'))).toThrow(expect.objectContaining({ code: 'HOPSCOTCH_ERR_FINGERPRINT' }));
    // llama-sharded holds llama-gqa's weights in two shards: the same base model.
    const sibling = await model(fixtureDir('llama-sharded'));
    const a = loadAdapter(sibling, path.join(work, 'scales-gqa'));
    expect(a.skipped).toEqual([2]);
  });
});

/** hf cases: fixture name, output dtype, skipped layers. */
const HF_CASES: { name: string; dir: () => string }[] = [
  { name: 'llama-gqa', dir: () => fixtureDir('llama-gqa') },
  { name: 'llama-tied-bf16', dir: () => fixtureDir('llama-tied-bf16') },
  { name: 'llama-f16', dir: () => fixtureDir('llama-f16') },
  { name: 'llama3-rope', dir: () => fixtureDir('llama3-rope') },
  { name: 'qwen2', dir: () => fixtureDir('qwen2') },
  { name: 'qwen3', dir: () => fixtureDir('qwen3') },
  { name: 'granite', dir: () => fixtureDir('granite') },
  { name: 'mistral', dir: () => fixtureDir('mistral') },
  { name: 'stories260k', dir: () => demoModel },
];

describe('hf', () => {
  for (const c of HF_CASES) {
    it(`folds theta into ${c.name}: loads back, matches the scaled model`, async () => {
      const dir = c.dir();
      const m = await model(dir);
      const L = m.config.numLayers;
      const theta = randomTheta(L, 100 + L);
      const skipped = skipFor(L);
      const out = path.join(work, `hf-${c.name}`);
      const r = await exportModel(m, { skipped, theta }, { out, format: 'hf', checkTokens: CHECK });

      // Same tensors, same dtypes, same parameter count; config copied byte for byte.
      const src = readModelTensors(dir);
      const dst = readModelTensors(out);
      expect([...dst.keys()].sort()).toEqual([...src.keys()].sort());
      for (const [n, t] of src) expect(dst.get(n)!.dtype).toBe(t.dtype);
      expect(readFileSync(path.join(out, 'config.json'), 'utf8')).toBe(readFileSync(path.join(dir, 'config.json'), 'utf8'));
      expect(readFileSync(path.join(out, 'tokenizer.json'))).toEqual(readFileSync(path.join(dir, 'tokenizer.json')));
      expect(r.parameters).toBe(r.baseParameters);
      expect(r.tensorBytes).toBe(r.baseTensorBytes);
      // Skipped layers: o_proj is zero.
      for (const l of skipped) expect(maxAbs(dst.get(`model.layers.${l}.self_attn.o_proj.weight`)!.data)).toBe(0);

      // Independent check: float64 forward of the folded checkpoint with theta = 1 and no skip
      // (as any HF loader runs it) against the float64 forward of the scaled original.
      const want = loadRef(dir).logits(CHECK[0]!, theta, skipped);
      const got = loadRef(out).logits(CHECK[0]!);
      const rel = LOGIT_TOLERANCE[src.get('model.norm.weight')!.dtype]!;
      const refDiff = maxAbsDiff(want, got);
      expect(refDiff).toBeLessThanOrEqual(rel * maxAbs(want));
      // The export's own engine check.
      expect(r.maxAbsLogitDiff).toBeDefined();
      expect(r.maxAbsLogitDiff!).toBeLessThanOrEqual(r.tolerance!);
      console.log(`hf ${c.name}: engine maxAbsLogitDiff ${r.maxAbsLogitDiff!.toExponential(2)} (tol ${r.tolerance!.toExponential(2)}), ` +
        `ref64 ${refDiff.toExponential(2)}, logit scale ${maxAbs(want).toFixed(2)}, bytes ${r.bytes}`);
    });
  }

  it('default check tokens work and are reported', async () => {
    const m = await model(demoModel);
    const r = await exportModel(m, { skipped: [3], theta: randomTheta(5, 9) }, { out: path.join(work, 'hf-default-check'), format: 'hf' });
    expect(r.maxAbsLogitDiff!).toBeLessThanOrEqual(r.tolerance!);
    expect(r.logitScale!).toBeGreaterThan(1);
  });

  it('writes shards with an index when larger than maxShardBytes', async () => {
    const dir = fixtureDir('llama-gqa');
    const m = await model(dir);
    const out = path.join(work, 'hf-sharded');
    const r = await exportModel(m, { skipped: [1], theta: randomTheta(3, 5) }, { out, format: 'hf', maxShardBytes: 100_000, checkTokens: CHECK });
    const index = JSON.parse(readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8')) as {
      metadata: { total_size: number };
      weight_map: Record<string, string>;
    };
    const shards = [...new Set(Object.values(index.weight_map))].sort();
    expect(shards.length).toBeGreaterThan(2);
    expect(shards[0]).toBe(`model-00001-of-${String(shards.length).padStart(5, '0')}.safetensors`);
    expect(existsSync(path.join(out, 'model.safetensors'))).toBe(false);
    const src = readModelTensors(dir);
    expect(Object.keys(index.weight_map).sort()).toEqual([...src.keys()].sort());
    let total = 0;
    for (const t of src.values()) total += t.data.length * 4;
    expect(index.metadata.total_size).toBe(total);
    expect(r.files).toContain('model.safetensors.index.json');
    // The sharded output holds the same tensors as a single-file export.
    const single = await exportModel(m, { skipped: [1], theta: randomTheta(3, 5) }, { out: path.join(work, 'hf-single'), format: 'hf', checkTokens: [] });
    expect(single.files).toContain('model.safetensors');
    const a = readModelTensors(out);
    const b = readModelTensors(path.join(work, 'hf-single'));
    for (const [n, t] of a) expect(maxAbsDiff(t.data, b.get(n)!.data)).toBe(0);
  });
});

/** Bytes and parameters of the attention of `layers` in a checkpoint (independent count). */
function attentionOf(tensors: Map<string, RefTensor>, layers: number[]): { params: number; bytes: number } {
  let params = 0;
  let bytes = 0;
  for (const [n, t] of tensors) {
    const l = /^model\.layers\.(\d+)\.(self_attn\.|input_layernorm\.)/.exec(n);
    if (l && layers.includes(Number(l[1]))) {
      params += t.data.length;
      bytes += t.data.length * (t.dtype === 'F32' ? 4 : 2);
    }
  }
  return { params, bytes };
}

describe('decilm', () => {
  it('ffn_mult reproduces the intermediate size under the readers\' rounding', () => {
    for (const [I, H] of [[256, 32], [256, 64], [14336, 4096], [8192, 2048], [18944, 3584], [28672, 8192]] as const) {
      const m = intermediateSizeToFfnMult(I, H);
      expect(m).not.toBeNull();
      // Python: int(2 * ffn_mult * n_embd / 3), then up to a multiple of 256.
      const size = Math.trunc((2 * m! * H) / 3);
      expect(size % 256 === 0 ? size : size + 256 - (size % 256)).toBe(I);
      expect(ffnMultToIntermediateSize(m!, H)).toBe(I);
    }
    expect(intermediateSizeToFfnMult(172, 64)).toBeNull();
    expect(intermediateSizeToFfnMult(11008 + 128, 4096)).toBeNull();
  });

  const cases = [
    { name: 'llama-gqa', src: () => fixtureDir('llama-gqa'), skipped: [1, 2] },
    { name: 'qwen2', src: () => fixtureDir('qwen2'), skipped: [1] },
    { name: 'stories260k', src: () => demoModel, skipped: [1, 4] },
  ];
  for (const c of cases) {
    it(`drops the skipped attention of ${c.name} (MLP padded to 256) and matches the scaled model`, async () => {
      const dir = padIntermediate(c.src(), path.join(work, `padded-${c.name}`), 256);
      const m = await model(dir);
      const L = m.config.numLayers;
      const theta = randomTheta(L, 7 + L);
      // The padding is exact: the padded model computes the original function.
      const orig = await model(c.src());
      expect(maxAbsDiff(await m.logits(CHECK[0]!, { theta, skip: c.skipped }), await orig.logits(CHECK[0]!, { theta, skip: c.skipped }))).toBeLessThan(1e-4);

      const out = path.join(work, `decilm-${c.name}`);
      const r = await exportModel(m, { skipped: c.skipped, theta }, { out, format: 'decilm', checkTokens: CHECK });
      expect(r.maxAbsLogitDiff!).toBeLessThanOrEqual(r.tolerance!);

      const cfg = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as {
        architectures: string[];
        model_type: string;
        block_configs: { attention: Record<string, unknown>; ffn: { ffn_mult: number } }[];
        attention_bias: boolean;
      };
      expect(cfg.architectures).toEqual(['DeciLMForCausalLM']);
      expect(cfg.model_type).toBe('nemotron-nas');
      for (let l = 0; l < L; l++) {
        expect(cfg.block_configs[l]!.attention).toEqual(
          c.skipped.includes(l)
            ? { no_op: true, n_heads_in_group: null, replace_with_linear: false }
            : { no_op: false, n_heads_in_group: m.config.numHeads / m.config.numKvHeads, replace_with_linear: false },
        );
        expect(ffnMultToIntermediateSize(cfg.block_configs[l]!.ffn.ffn_mult, m.config.hiddenSize)).toBe(256);
      }
      // A float literal (llama.cpp asserts isinstance(ffn_mult, float)).
      expect(readFileSync(path.join(out, 'config.json'), 'utf8')).toMatch(/"ffn_mult": \d+\.\d+/);

      // Sizes: smaller by exactly the removed attention (Qwen2: plus zero o_proj biases of kept layers).
      const src = readModelTensors(dir);
      const dst = readModelTensors(out);
      const removed = attentionOf(src, c.skipped);
      const zeroBias = c.name === 'qwen2' ? (L - c.skipped.length) * m.config.hiddenSize : 0;
      expect(cfg.attention_bias).toBe(c.name === 'qwen2');
      expect(r.baseParameters).toBe(m.config.parameters);
      expect(r.parameters).toBe(m.config.parameters - removed.params + zeroBias);
      expect(r.tensorBytes).toBe(r.baseTensorBytes! - removed.bytes + 4 * zeroBias);
      for (const l of c.skipped)
        for (const n of dst.keys()) expect(n.startsWith(`model.layers.${l}.self_attn.`) || n === `model.layers.${l}.input_layernorm.weight`).toBe(false);

      // Our loader reads it: attention-absent layers, parameter count.
      const back = await load(out, { device: 'cpu' });
      try {
        expect(back.config.attentionAbsent).toEqual(c.skipped);
        expect(back.config.parameters).toBe(r.parameters);
        // Independent check of the logits against the float64 reference of the scaled original.
        const want = loadRef(dir).logits(CHECK[0]!, theta, c.skipped);
        const got = await back.logits(CHECK[0]!, { skip: c.skipped });
        expect(maxAbsDiff(want, got)).toBeLessThanOrEqual(1e-3 * maxAbs(want));
      } finally {
        back.dispose();
      }
      // The kept tensors are exactly the hf export's.
      const hfOut = path.join(work, `hf-for-decilm-${c.name}`);
      await exportModel(m, { skipped: c.skipped, theta }, { out: hfOut, format: 'hf', checkTokens: [] });
      const hf = readModelTensors(hfOut);
      for (const [n, t] of dst) if (hf.has(n)) expect(maxAbsDiff(t.data, hf.get(n)!.data)).toBe(0);
      console.log(`decilm ${c.name}: maxAbsLogitDiff ${r.maxAbsLogitDiff!.toExponential(2)}, parameters ${r.baseParameters} -> ${r.parameters}, ` +
        `tensor bytes ${r.baseTensorBytes} -> ${r.tensorBytes}, file bytes ${r.bytes}`);
    });
  }

  it('a decilm export loads with its removed attention skipped, and selection continues on it', async () => {
    const padded = padIntermediate(demoModel, path.join(work, 'padded-continue'), 256);
    const base = await model(padded);
    const theta = randomTheta(5, 3);
    const out = path.join(work, 'decilm-continue');
    await exportModel(base, { skipped: [2], theta }, { out, format: 'decilm', checkTokens: CHECK });
    const m = await model(out);
    expect(m.config.attentionAbsent).toEqual([2]);
    // No skip list given: the absent layer runs skipped anyway, and matches asking for it.
    const tokens = CHECK[0]!;
    expect(maxAbsDiff(await m.logits(tokens), await m.logits(tokens, { skip: [2] }))).toBe(0);
    const data = [
      { prompt: [1, 403, 407], response: [261, 378, 432, 383] },
      { prompt: [1, 45, 300], response: [7, 99, 12, 250] },
    ];
    const g = await m.lossAndGrad(data, randomTheta(5, 4));
    expect(g.grad.bAtt[2]).toBe(0);
    const sel = await selectBlocks(m, data, { count: 1, batchSize: 2 });
    expect(sel.skipped).toHaveLength(1);
    expect(sel.skipped[0]).not.toBe(2);
    expect(sel.trace.map((t) => t.candidate)).not.toContain(2);
  });

  it('an AbortSignal cancels the export between stages, leaving nothing behind', async () => {
    const m = await model(fixtureDir('llama-gqa'));
    const fit = { skipped: [1], theta: randomTheta(m.config.numLayers, 5) };
    const out = path.join(work, 'aborted');
    const before = entries(work);
    const early = new AbortController();
    early.abort(new Error('stop before'));
    await expect(exportModel(m, fit, { out, format: 'hf', signal: early.signal })).rejects.toThrow('stop before');
    expect(entries(work)).toEqual(before);
    // Aborted once the tensors are written (the log announces the load-back check).
    const late = new AbortController();
    const log = (line: string) => {
      if (line.includes('checking')) late.abort(new Error('stop during'));
    };
    await expect(exportModel(m, fit, { out, format: 'hf', signal: late.signal, log })).rejects.toThrow('stop during');
    expect(entries(work)).toEqual(before);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses what the readers cannot represent, writing nothing', async () => {
    const theta = (L: number) => randomTheta(L, 1);
    const cases: [string, number[]][] = [
      [demoModel, [2]], // intermediate 172: no ffn_mult gives it
      [fixtureDir('qwen3'), [1]], // q/k norm
      [fixtureDir('granite'), [1]], // multipliers
      [path.join(work, 'padded-llama-gqa'), [0]], // layer 0 skipped
    ];
    for (const [dir, skipped] of cases) {
      const m = await model(dir);
      const out = path.join(work, 'decilm-refused');
      const before = entries(work);
      await expectCode(exportModel(m, { skipped, theta: theta(m.config.numLayers) }, { out, format: 'decilm' }), 'HOPSCOTCH_ERR_EXPORT');
      expect(entries(work)).toEqual(before);
    }
  });
});

describe('refusals and atomic writes', () => {
  it('refuses s <= 0 and non-finite theta with nothing written', async () => {
    const m = await model(fixtureDir('llama-gqa'));
    const out = path.join(work, 'refused');
    const before = entries(work);
    for (const [key, value] of [['sAtt', 0], ['sMlp', -0.5], ['bMlp', Number.NaN], ['bAtt', Number.POSITIVE_INFINITY]] as const) {
      const theta = randomTheta(3, 2);
      theta[key][1] = value;
      await expectCode(exportModel(m, { skipped: [], theta }, { out, format: 'hf' }), 'HOPSCOTCH_ERR_EXPORT');
      expect(entries(work)).toEqual(before);
    }
    const nan = randomTheta(3, 2);
    nan.sAtt[0] = Number.NaN;
    await expectCode(exportModel(m, { skipped: [], theta: nan }, { out, format: 'scales' }), 'HOPSCOTCH_ERR_EXPORT');
    expect(entries(work)).toEqual(before);
  });

  it('refuses an existing folder without force and replaces it with force', async () => {
    const m = await model(fixtureDir('llama-gqa'));
    const out = path.join(work, 'existing');
    mkdirSync(out);
    writeFileSync(path.join(out, 'keep.txt'), 'old');
    const fit = { skipped: [1], theta: randomTheta(3, 4) };
    await expectCode(exportModel(m, fit, { out, format: 'hf' }), 'HOPSCOTCH_ERR_EXISTS');
    expect(entries(out)).toEqual(['keep.txt']);
    expect(readFileSync(path.join(out, 'keep.txt'), 'utf8')).toBe('old');
    const before = entries(work);
    await exportModel(m, fit, { out, format: 'scales', force: true });
    expect(entries(out)).toEqual(['adapter.safetensors']);
    expect(entries(work)).toEqual(before);
  });

  it('removes everything when the load-back check fails after the files were written', async () => {
    const m = await model(fixtureDir('llama-gqa'));
    const before = entries(work);
    await expectCode(
      exportModel(m, { skipped: [1], theta: randomTheta(3, 4) }, { out: path.join(work, 'bad-check'), format: 'hf', checkTokens: [[1, 2, 100000]] }),
      'HOPSCOTCH_ERR_TOKEN_RANGE',
    );
    expect(entries(work)).toEqual(before);
  });

  it('gives a typed error when the parent cannot be written, leaving nothing', async () => {
    const m = await model(fixtureDir('llama-gqa'));
    const fit = { skipped: [1], theta: randomTheta(3, 4) };
    // A parent that is a file.
    const file = path.join(work, 'not-a-folder');
    writeFileSync(file, 'x');
    await expectCode(exportModel(m, fit, { out: path.join(file, 'out'), format: 'scales' }), 'HOPSCOTCH_ERR_IO');
    expect(readFileSync(file, 'utf8')).toBe('x');
    // A read-only parent (root ignores permission bits, so only checked for other users).
    if (process.getuid?.() !== 0) {
      const ro = path.join(work, 'read-only');
      mkdirSync(ro);
      chmodSync(ro, 0o555);
      try {
        await expectCode(exportModel(m, fit, { out: path.join(ro, 'out'), format: 'hf' }), 'HOPSCOTCH_ERR_IO');
        expect(entries(ro)).toEqual([]);
      } finally {
        chmodSync(ro, 0o755);
      }
    }
  });
});
