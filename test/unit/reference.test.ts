/**
 * Checks of the test references themselves: the fp64 forward (test/reference/ref64.ts) reproduces
 * the greedy tokens recorded for stories260k (which decode to llama2.c's documented output), its
 * loss is the per-sample response NLL, its finite-difference gradients are stable in the step;
 * and the fixture generator (scripts/make-fixtures.mjs) is deterministic and writes checkpoints
 * the reference reads, with the properties its manifest claims.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRef, type RefModel, type RefSample } from '../reference/ref64.js';
import { bf16ToNumber, halfToNumber, readModelTensors } from '../reference/safetensors-js.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEMO = path.join(ROOT, 'models', 'stories260k');
const SCRIPT = path.join(ROOT, 'scripts', 'make-fixtures.mjs');

interface Verification {
  prompt_ids: number[];
  greedy_tokens_hf: number[];
}

function argmaxRow(logits: Float64Array, row: number, vocab: number): number {
  let best = 0;
  for (let v = 1; v < vocab; v++) if (logits[row * vocab + v]! > logits[row * vocab + best]!) best = v;
  return best;
}

function logSoftmaxAt(logits: Float64Array, row: number, vocab: number, id: number): number {
  let max = -Infinity;
  for (let v = 0; v < vocab; v++) max = Math.max(max, logits[row * vocab + v]!);
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += Math.exp(logits[row * vocab + v]! - max);
  return logits[row * vocab + id]! - max - Math.log(sum);
}

function thetaOf(layers: number, fill: (key: string, l: number) => number) {
  const vec = (key: string) => Array.from({ length: layers }, (_, l) => fill(key, l));
  return { bAtt: vec('bAtt'), sAtt: vec('sAtt'), bMlp: vec('bMlp'), sMlp: vec('sMlp') };
}

describe('ref64 on stories260k', () => {
  let ref: RefModel;
  let greedy: number[];
  const V = 512;

  beforeAll(() => {
    ref = loadRef(DEMO);
    const verification = JSON.parse(readFileSync(path.join(DEMO, 'verification.json'), 'utf8')) as Verification;
    expect(verification.prompt_ids).toEqual([1]);
    greedy = verification.greedy_tokens_hf;
  });

  it('reads the config of the demo model', () => {
    expect(ref.config).toMatchObject({ arch: 'LlamaForCausalLM', hidden: 64, layers: 5, heads: 8, kvHeads: 4, headDim: 8, vocab: 512, tied: true });
  });

  it('reproduces the first 20 greedy tokens when decoding incrementally from BOS', () => {
    const tokens = [1];
    for (let step = 0; step < 20; step++) {
      const logits = ref.logits(tokens);
      tokens.push(argmaxRow(logits, tokens.length - 1, V));
    }
    expect(tokens).toEqual(greedy.slice(0, 21));
  });

  it('predicts every one of the 200 greedy tokens from one forward pass', () => {
    const input = greedy.slice(0, 200);
    const logits = ref.logits(input);
    const predicted = input.map((_, t) => argmaxRow(logits, t, V));
    expect(predicted).toEqual(greedy.slice(1, 201));
  });

  it('gives the per-sample response NLL as the loss at theta = ones, skip = []', () => {
    const samples: RefSample[] = [
      { prompt: greedy.slice(0, 5), response: greedy.slice(5, 30) },
      { prompt: [1], response: greedy.slice(1, 12) },
      { prompt: greedy.slice(0, 40), response: [13, 438, 310] },
    ];
    const batch = ref.loss(samples);
    expect(batch.responseTokens).toBe(25 + 11 + 3);
    samples.forEach((s, i) => {
      const tokens = [...s.prompt, ...s.response];
      const logits = ref.logits(tokens);
      let nll = 0;
      s.response.forEach((y, j) => (nll -= logSoftmaxAt(logits, s.prompt.length + j - 1, V, y)));
      expect(batch.sampleNll[i]).toBeCloseTo(nll, 10);
      expect(ref.loss([s]).loss).toBeCloseTo(nll, 10);
    });
    const sum = batch.sampleNll.reduce((a, b) => a + b, 0);
    expect(batch.loss).toBeCloseTo(sum / 3, 12);
    expect(ref.loss(samples, undefined, { tokenMean: true }).loss).toBeCloseTo(sum / 39, 12);
    // The model's own greedy story is likely under it; the same tokens reversed are not.
    expect(batch.sampleNll[0]! / 25).toBeLessThan(1);
    const reversed = ref.loss([{ prompt: greedy.slice(0, 5), response: greedy.slice(5, 30).reverse() }]);
    expect(reversed.loss / 25).toBeGreaterThan(4);
  });

  it('treats skip as b_att = 0 and leaves other layers alone', () => {
    const tokens = greedy.slice(0, 24);
    const skipped = ref.logits(tokens, undefined, [1, 3]);
    const zeroed = ref.logits(tokens, thetaOf(5, (k, l) => (k === 'bAtt' && (l === 1 || l === 3) ? 0 : 1)));
    let diff = 0;
    for (let i = 0; i < skipped.length; i++) diff = Math.max(diff, Math.abs(skipped[i]! - zeroed[i]!));
    expect(diff).toBe(0);
    const full = ref.logits(tokens);
    let change = 0;
    for (let i = 0; i < full.length; i++) change = Math.max(change, Math.abs(full[i]! - skipped[i]!));
    expect(change).toBeGreaterThan(0.1);
    const trace = ref.trace(tokens, undefined, [1]);
    expect(trace[1]!.A).toBeNull();
    expect(trace[0]!.A).not.toBeNull();
  });

  it('has finite-difference gradients that agree between steps 1e-4 and 1e-5', () => {
    const samples: RefSample[] = [
      { prompt: greedy.slice(0, 6), response: greedy.slice(6, 20) },
      { prompt: [1, 403, 407], response: [261, 378, 432, 383] },
    ];
    const theta = thetaOf(5, (k, l) => 1 + 0.05 * ((l + k.length) % 3) - (k === 'sMlp' ? 0.03 : 0));
    const skip = [2];
    const g4 = ref.gradFD(samples, theta, { skip }, 1e-4);
    const g5 = ref.gradFD(samples, theta, { skip }, 1e-5);
    let maxAbs = 0;
    for (const key of ['bAtt', 'sAtt', 'bMlp', 'sMlp'] as const) {
      expect(g4[key]).toHaveLength(5);
      for (let l = 0; l < 5; l++) {
        expect(Math.abs(g4[key][l]! - g5[key][l]!)).toBeLessThan(1e-6 * (1 + Math.abs(g5[key][l]!)));
        maxAbs = Math.max(maxAbs, Math.abs(g5[key][l]!));
      }
    }
    expect(g5.bAtt[2]).toBe(0);
    expect(maxAbs).toBeGreaterThan(1e-2);
    // First-order check: a small step along the gradient lowers the loss by about |g|^2 * step.
    const step = 1e-4;
    const flat = (t: typeof g5) => [...t.bAtt, ...t.sAtt, ...t.bMlp, ...t.sMlp];
    const gNorm2 = flat(g5).reduce((a, b) => a + b * b, 0);
    const moved = {
      bAtt: theta.bAtt.map((v, l) => v - step * g5.bAtt[l]!),
      sAtt: theta.sAtt.map((v, l) => v - step * g5.sAtt[l]!),
      bMlp: theta.bMlp.map((v, l) => v - step * g5.bMlp[l]!),
      sMlp: theta.sMlp.map((v, l) => v - step * g5.sMlp[l]!),
    };
    const drop = ref.loss(samples, theta, { skip }).loss - ref.loss(samples, moved, { skip }).loss;
    expect(drop / (step * gNorm2)).toBeCloseTo(1, 2);
  });
});

describe('make-fixtures', () => {
  let first: string;
  let second: string;

  beforeAll(() => {
    first = mkdtempSync(path.join(tmpdir(), 'hopscotch-fixtures-'));
    second = mkdtempSync(path.join(tmpdir(), 'hopscotch-fixtures-'));
    execFileSync(process.execPath, [SCRIPT, first]);
    execFileSync(process.execPath, [SCRIPT, second]);
  });
  afterAll(() => {
    rmSync(first, { recursive: true, force: true });
    rmSync(second, { recursive: true, force: true });
  });

  const manifest = () =>
    JSON.parse(readFileSync(path.join(first, 'fixtures.json'), 'utf8')) as {
      fixtures: { name: string; dtype: string; numLayers: number; parameters: number; shards: number; inertAttention: number[] }[];
    };

  function listFiles(dir: string, prefix = ''): string[] {
    return readdirSync(dir)
      .sort()
      .flatMap((name) => {
        const full = path.join(dir, name);
        return statSync(full).isDirectory() ? listFiles(full, `${prefix}${name}/`) : [`${prefix}${name}`];
      });
  }

  it('writes byte-identical files on two runs', () => {
    const files = listFiles(first);
    expect(files).toEqual(listFiles(second));
    expect(files.length).toBeGreaterThan(40);
    for (const f of files) expect(readFileSync(path.join(first, f)).equals(readFileSync(path.join(second, f))), f).toBe(true);
  });

  it('lists every fixture in the manifest, each a folder the reference loads', () => {
    const names = manifest().fixtures.map((f) => f.name);
    expect(names).toEqual([
      'llama-gqa', 'llama-tied-bf16', 'llama3-rope', 'qwen2', 'qwen3', 'granite', 'mistral', 'llama-sharded', 'llama-inert', 'llama-planted',
      'llama-planted-16', 'llama-planted-32', 'llama-f16', 'llama-hd128-gqa4', 'llama-ctx128', 'llama-eos-list',
    ]);
    for (const f of manifest().fixtures) {
      const dir = path.join(first, f.name);
      const tensors = readModelTensors(dir);
      let count = 0;
      for (const t of tensors.values()) {
        expect(t.dtype).toBe(f.dtype);
        count += t.data.length;
      }
      expect(count, f.name).toBe(f.parameters);
      const ref = loadRef(dir);
      expect(ref.config.layers).toBe(f.numLayers);
      const out = ref.loss([{ prompt: [1, 403, 407], response: [261, 378, 432] }]);
      expect(Number.isFinite(out.loss), f.name).toBe(true);
      // Random weights: the loss sits near log(vocab), neither degenerate nor exploding.
      expect(out.loss / 3, f.name).toBeGreaterThan(2);
      expect(out.loss / 3, f.name).toBeLessThan(12);
    }
  });

  it('stores BF16 and F16 weights that decode to values near N(0, sigma^2)', () => {
    for (const name of ['llama-tied-bf16', 'llama-f16']) {
      const norm = readModelTensors(path.join(first, name)).get('model.norm.weight')!;
      const mean = norm.data.reduce((a, b) => a + b, 0) / norm.data.length;
      expect(Math.abs(mean - 1)).toBeLessThan(0.1);
    }
    expect(halfToNumber(0x3c00)).toBe(1);
    expect(halfToNumber(0xc000)).toBe(-2);
    expect(halfToNumber(0x0001)).toBe(2 ** -24);
    expect(halfToNumber(0x7bff)).toBe(65504);
    expect(bf16ToNumber(0x3f80)).toBe(1);
    expect(bf16ToNumber(0xc0a0)).toBe(-5);
  });

  it('makes llama-sharded carry exactly the weights of llama-gqa', () => {
    expect(readdirSync(path.join(first, 'llama-sharded')).filter((f) => f.endsWith('.safetensors'))).toHaveLength(2);
    const a = loadRef(path.join(first, 'llama-gqa'));
    const b = loadRef(path.join(first, 'llama-sharded'));
    const tokens = [1, 403, 407, 261, 378, 432, 383];
    expect(Array.from(b.logits(tokens))).toEqual(Array.from(a.logits(tokens)));
  });

  it('makes layer 2 of llama-inert inert: skipping it changes nothing, and its b_att gradient is 0', () => {
    const ref = loadRef(path.join(first, 'llama-inert'));
    const samples: RefSample[] = [{ prompt: [1, 403, 407], response: [261, 378, 432, 383] }];
    expect(ref.loss(samples, undefined, { skip: [2] }).loss).toBe(ref.loss(samples).loss);
    expect(ref.loss(samples, undefined, { skip: [1] }).loss).not.toBe(ref.loss(samples).loss);
    const g = ref.gradFD(samples, undefined, {}, 1e-4);
    expect(g.bAtt[2]).toBe(0);
    expect(Math.abs(g.bAtt[1]!)).toBeGreaterThan(1e-4);
  });

  it('puts the llama3-rope frequencies in the three bands of the llama3 rule', () => {
    const ref = loadRef(path.join(first, 'llama3-rope'));
    // theta 500000, head_dim 8: base inverse frequencies 500000^(-i/4); original context 256,
    // low 1, high 4, factor 8: wavelengths below 64 kept, above 256 divided by 8, between interpolated.
    const base = [0, 1, 2, 3].map((i) => 500000 ** (-i / 4));
    const wavelen = base.map((f) => (2 * Math.PI) / f);
    expect(wavelen[0]).toBeLessThan(64);
    expect(wavelen[1]).toBeGreaterThan(64);
    expect(wavelen[1]).toBeLessThan(256);
    expect(wavelen[2]).toBeGreaterThan(256);
    const smooth = (256 / wavelen[1]! - 1) / (4 - 1);
    const expected = [base[0]!, (1 - smooth) * (base[1]! / 8) + smooth * base[1]!, base[2]! / 8, base[3]! / 8];
    Array.from(ref.invFreq).forEach((f, i) => expect(f).toBeCloseTo(expected[i]!, 15));
  });

  it('gives Qwen3 a head_dim different from hidden / heads and Granite its multipliers', () => {
    const qwen3 = loadRef(path.join(first, 'qwen3'));
    expect(qwen3.config.headDim).toBe(16);
    expect(qwen3.config.hidden / qwen3.config.heads).toBe(8);
    expect(qwen3.config.qkNorm).toBe(true);
    const granite = loadRef(path.join(first, 'granite'));
    expect(granite.config).toMatchObject({ embeddingMultiplier: 12, residualMultiplier: 0.22, attentionScale: 0.0078125, logitsScaling: 8 });
    expect(loadRef(path.join(first, 'qwen2')).config.qkvBias).toBe(true);
  });
});
