// Evaluation on the CPU engine: held-out loss and text perplexity against the engine's
// loss and logits, MMD and power iteration against direct references, hidden-state
// shift of skipped models, singular values of the inert fixture, GSM8K prompts and
// stop strings on the bundled model, the benchmark and the report folder, and
// `hopscotch eval --adapter --tasks --out --trace` run as a user runs it.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { benchCsv, benchmark } from '../../src/eval/bench.js';
import { generateUntil } from '../../src/eval/generate.js';
import { GSM8K_STOP, evaluateGsm8k } from '../../src/eval/gsm8k.js';
import { layerShift, mmd2Unbiased } from '../../src/eval/mmd.js';
import { heldOutLoss, textPerplexity, textWindows } from '../../src/eval/perplexity.js';
import { evaluateModel, writeReport } from '../../src/eval/report.js';
import { spectralNorms, topSingularValue } from '../../src/eval/spectral.js';
import { mulberry32 } from '../../src/batching.js';
import { saveDataset } from '../../src/dataset.js';
import { exportModel } from '../../src/export.js';
import { load } from '../../src/model.js';
import { ones, toJSON } from '../../src/theta.js';
import type { Model, Sample, Theta } from '../../src/types.js';
import { demoModel, fixtureDir, root } from '../helpers.js';

/** Standard normal draws from a seeded stream. */
function normals(n: number, seed: number): Float64Array {
  const u = mulberry32(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  return out;
}

/**
 * Unbiased MMD^2 by the definitions, with explicit double loops: for m = n the paired
 * U-statistic sum_{i != j} h(z_i, z_j) / (m(m-1)), else the two-sample form.
 */
function mmd2Direct(x: number[][], y: number[][], sigma: number): number {
  const k = (a: number[], b: number[]) => Math.exp(-a.reduce((s, ai, i) => s + (ai - b[i]) ** 2, 0) / (2 * sigma * sigma));
  if (x.length === y.length) {
    let h = 0;
    for (let i = 0; i < x.length; i++)
      for (let j = 0; j < x.length; j++) if (i !== j) h += k(x[i], x[j]) + k(y[i], y[j]) - k(x[i], y[j]) - k(x[j], y[i]);
    return h / (x.length * (x.length - 1));
  }
  let xx = 0;
  for (let i = 0; i < x.length; i++) for (let j = 0; j < x.length; j++) if (i !== j) xx += k(x[i], x[j]);
  let yy = 0;
  for (let i = 0; i < y.length; i++) for (let j = 0; j < y.length; j++) if (i !== j) yy += k(y[i], y[j]);
  let xy = 0;
  for (const a of x) for (const b of y) xy += k(a, b);
  const m = x.length;
  const n = y.length;
  return xx / (m * (m - 1)) + yy / (n * (n - 1)) - (2 * xy) / (m * n);
}

/** Median of the pairwise distances of the pooled points, by sorting every pair. */
function medianDistance(points: number[][]): number {
  const d: number[] = [];
  for (let i = 0; i < points.length; i++)
    for (let j = i + 1; j < points.length; j++) d.push(Math.hypot(...points[i].map((v, k) => v - points[j][k])));
  d.sort((a, b) => a - b);
  const h = d.length >> 1;
  return d.length % 2 ? d[h] : (d[h - 1] + d[h]) / 2;
}

const rowsOf = (flat: Float64Array, dim: number) => Array.from({ length: flat.length / dim }, (_, i) => Array.from(flat.subarray(i * dim, (i + 1) * dim)));

describe('mmd2Unbiased', () => {
  const dim = 5;
  const x = normals(60 * dim, 1);
  const y = normals(60 * dim, 2);
  const shifted = normals(60 * dim, 3).map((v) => v + 1);

  it('agrees with a direct double loop, bandwidth included', async () => {
    const r = await mmd2Unbiased(x, shifted, dim);
    const pooled = [...rowsOf(x, dim), ...rowsOf(shifted, dim)];
    expect(r.bandwidth).toBeCloseTo(medianDistance(pooled), 10);
    expect(r.mmd2).toBeCloseTo(mmd2Direct(rowsOf(x, dim), rowsOf(shifted, dim), r.bandwidth), 10);
    const fixed = await mmd2Unbiased(x, y, dim, { bandwidth: 0.7 });
    expect(fixed.mmd2).toBeCloseTo(mmd2Direct(rowsOf(x, dim), rowsOf(y, dim), 0.7), 10);
  });

  it('uses the two-sample form for samples of different sizes', async () => {
    const y40 = y.subarray(0, 40 * dim);
    const r = await mmd2Unbiased(x, y40, dim);
    expect(r.mmd2).toBeCloseTo(mmd2Direct(rowsOf(x, dim), rowsOf(y40, dim), r.bandwidth), 10);
  });

  it('is exactly 0 for identical paired samples', async () => {
    expect(Math.abs((await mmd2Unbiased(x, Float64Array.from(x), dim)).mmd2)).toBeLessThan(1e-12);
  });

  it('is about 0 for one distribution and clearly positive for a shifted one', async () => {
    const same = (await mmd2Unbiased(x, y, dim)).mmd2;
    const diff = (await mmd2Unbiased(x, shifted, dim)).mmd2;
    expect(Math.abs(same)).toBeLessThan(0.02);
    expect(diff).toBeGreaterThan(0.1);
    expect(diff).toBeGreaterThan(10 * Math.abs(same));
  });

  it('rejects samples with fewer than two points', async () => {
    await expect(mmd2Unbiased(new Float64Array(dim), y, dim)).rejects.toThrow(/two points/);
  });
});

/** Random orthonormal columns (rows x cols, cols <= rows) by Gram-Schmidt. */
function orthonormal(rows: number, cols: number, seed: number): number[][] {
  const g = normals(rows * cols, seed);
  const q: number[][] = [];
  for (let c = 0; c < cols; c++) {
    const v = Array.from({ length: rows }, (_, r) => g[r * cols + c]);
    for (const u of q) {
      const d = u.reduce((s, ui, i) => s + ui * v[i], 0);
      for (let i = 0; i < rows; i++) v[i] -= d * u[i];
    }
    const n = Math.hypot(...v);
    q.push(v.map((a) => a / n));
  }
  return q; // q[c] is column c
}

/** W = U diag(s) V^T, row-major. */
function withSingularValues(rows: number, cols: number, s: number[], seed: number): Float64Array {
  const k = s.length;
  const u = orthonormal(rows, k, seed);
  const v = orthonormal(cols, k, seed + 1);
  const w = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) for (let i = 0; i < k; i++) w[r * cols + c] += u[i][r] * s[i] * v[i][c];
  return w;
}

/** Largest eigenvalue of a symmetric matrix by cyclic Jacobi rotations. */
function jacobiMaxEigen(a: number[][]): number {
  const n = a.length;
  const m = a.map((r) => [...r]);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += m[p][q] ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++)
      for (let q = p + 1; q < n; q++) {
        if (Math.abs(m[p][q]) < 1e-300) continue;
        const theta = (m[q][q] - m[p][p]) / (2 * m[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const kp = m[k][p];
          const kq = m[k][q];
          m[k][p] = c * kp - s * kq;
          m[k][q] = s * kp + c * kq;
        }
        for (let k = 0; k < n; k++) {
          const pk = m[p][k];
          const qk = m[q][k];
          m[p][k] = c * pk - s * qk;
          m[q][k] = s * pk + c * qk;
        }
      }
  }
  return Math.max(...m.map((r, i) => r[i]));
}

describe('topSingularValue', () => {
  it('finds the largest singular value of a matrix built from known ones', async () => {
    const w = withSingularValues(12, 8, [7, 3, 2, 0.5], 11);
    const r = await topSingularValue(w, 12, 8, { tolerance: 1e-12 });
    expect(r.converged).toBe(true);
    expect(Math.abs(r.sigma - 7) / 7).toBeLessThan(1e-9);
    const wide = withSingularValues(5, 9, [2.5, 2.4, 1], 21);
    expect(Math.abs((await topSingularValue(wide, 5, 9, { tolerance: 1e-12, maxIterations: 5000 })).sigma - 2.5)).toBeLessThan(1e-6);
  });

  it('gives 0 for a zero matrix and reports non-convergence', async () => {
    expect(await topSingularValue(new Float32Array(12), 3, 4)).toEqual({ sigma: 0, iterations: 1, converged: true });
    const slow = withSingularValues(6, 6, [1, 0.999999, 0.5], 31);
    expect((await topSingularValue(slow, 6, 6, { tolerance: 1e-15, maxIterations: 3 })).converged).toBe(false);
  });
});

describe('spectralNorms on checkpoints', () => {
  it('reports 0 for the inert fixture layer 2 o_proj and positive values elsewhere', async () => {
    const r = await spectralNorms(fixtureDir('llama-inert'));
    expect(r.layers).toEqual([0, 1, 2, 3]);
    expect(r.matrices).toEqual(['q', 'k', 'v', 'o', 'gate', 'up', 'down']);
    const o = r.matrices.indexOf('o');
    expect(r.sigma[2][o]).toBe(0);
    for (let l = 0; l < 4; l++)
      for (let m = 0; m < 7; m++) if (!(l === 2 && m === o)) expect(r.sigma[l][m]!).toBeGreaterThan(0.01);
    expect(r.unconverged).toEqual([]);
  });

  it('agrees with a Jacobi eigen-solve of W^T W on one real matrix', async () => {
    const { binding } = await import('../../src/native/binding.js');
    const w = await binding().readTensor(join(demoModel, 'model.safetensors'), 'model.layers.1.self_attn.q_proj.weight');
    const n = 64;
    const g = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => {
      let s = 0;
      for (let r = 0; r < n; r++) s += w[r * n + i] * w[r * n + j];
      return s;
    }));
    const expected = Math.sqrt(jacobiMaxEigen(g));
    const r = await spectralNorms(demoModel, { layers: [1], matrices: ['q'], tolerance: 1e-10, maxIterations: 20000 });
    expect(Math.abs(r.sigma[0][0]! - expected) / expected).toBeLessThan(1e-5);
  });

  it('reads sharded checkpoints', async () => {
    const a = await spectralNorms(fixtureDir('llama-sharded'), { matrices: ['down'] });
    const b = await spectralNorms(fixtureDir('llama-gqa'), { matrices: ['down'] });
    expect(a.sigma).toEqual(b.sigma);
  });
});

describe('on the bundled model', () => {
  let model: Model;
  let samples: Sample[];

  beforeAll(async () => {
    model = await load(demoModel, { device: 'cpu', threads: 2 });
    const texts = [
      'Once upon a time, there was a little girl named Lily. She loved to play outside.',
      'Tom had a red ball. He threw it to his dog, and the dog ran fast.',
      'The sun was hot. Sam and Mia went to the park to eat ice cream.',
      'One day, a bird sat on a tree. It sang a happy song for the cat.',
    ];
    samples = texts.map((t) => {
      const ids = model.tokenizer.encode(t);
      return { prompt: ids.slice(0, 6), response: ids.slice(6) };
    });
  });
  afterAll(() => model?.dispose());

  it('held-out loss matches the engine loss, per sample and per token', async () => {
    const theta = ones(model.config.numLayers);
    const r = await heldOutLoss(model, samples, { batchSize: 3 });
    const perSample = await model.loss(samples, theta);
    const perToken = await model.loss(samples, theta, { tokenMean: true });
    expect(r.samples).toBe(4);
    expect(r.tokens).toBe(perSample.responseTokens);
    expect(r.loss).toBeCloseTo(perSample.loss, 5);
    expect(r.tokenNll).toBeCloseTo(perToken.loss, 5);
    expect(r.perplexity).toBeCloseTo(Math.exp(perToken.loss), 4);
    const skipped = await heldOutLoss(model, samples, { skip: [2], theta: { ...theta, bAtt: Float32Array.from([1, 1, 0, 1, 1]) } });
    expect(skipped.loss).toBeGreaterThan(r.loss);
  });

  it('text perplexity is exp of the mean NLL over every token after the first of each window', async () => {
    const text = 'Once upon a time, there was a big dog. The dog liked to run. '.repeat(12);
    const L = 32;
    const r = await textPerplexity(model, text, { windowLength: L, maxWindows: 3 });
    expect(r.windows).toBe(3);
    expect(r.tokens).toBe(3 * (L - 1));
    // Independent reference: log-softmax of the engine's logits, window by window.
    const ids = model.tokenizer.encode(text);
    let nll = 0;
    const V = model.config.vocabSize;
    for (let w = 0; w < 3; w++) {
      const win = ids.slice(w * L, (w + 1) * L);
      const logits = await model.logits(win);
      for (let t = 0; t + 1 < L; t++) {
        const row = logits.subarray(t * V, (t + 1) * V);
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
        nll += lse - row[win[t + 1]];
      }
    }
    expect(r.tokenNll).toBeCloseTo(nll / (3 * (L - 1)), 4);
    expect(r.perplexity).toBeCloseTo(Math.exp(nll / (3 * (L - 1))), 3);
    expect(textWindows([1, 2, 3, 4, 5, 6, 7], 3)).toEqual([
      { prompt: [1], response: [2, 3] },
      { prompt: [4], response: [5, 6] },
    ]);
  });

  it('MMD of the model against itself is ~0; a skipped layer shifts that layer and the ones after it', async () => {
    const n = model.config.numLayers;
    const noScale = ones(n);
    noScale.bAtt[2] = 0;
    const r = await layerShift(model, samples, [{ name: 'self' }, { name: 'skip2', theta: noScale, skip: [2] }], { maxTokens: 64 });
    expect(r.layers).toEqual([0, 1, 2, 3, 4]);
    expect(r.tokens).toBe(64);
    const self = r.variants[0].mmd2;
    const skip = r.variants[1].mmd2;
    for (const v of self) expect(Math.abs(v)).toBeLessThan(1e-12);
    for (const l of [0, 1]) expect(Math.abs(skip[l])).toBeLessThan(1e-12); // blocks before the skipped one are untouched
    for (const l of [2, 3, 4]) expect(skip[l]).toBeGreaterThan(1e-3);
  });

  it('generation stops at a text stop string, across chunk boundaries', async () => {
    const prompt = model.tokenizer.encode('Once upon a time');
    const [full] = await model.generate([prompt], { maxNewTokens: 40, stop: [] });
    const fullText = model.tokenizer.decode(full, { skipSpecialTokens: true });
    const words = fullText.trim().split(/\s+/);
    const stop = ` ${words[5]}`;
    const expected = fullText.slice(0, fullText.indexOf(stop));
    const [c] = await generateUntil(model, [prompt], { stop: [stop], maxNewTokens: 40, stopIds: [], chunkTokens: 3 });
    expect(c.text).toBe(expected);
    expect(c.stoppedAt).toBe(stop);
    expect(c.finish).toBe('stop');
    expect(c.tokens).toEqual(full.slice(0, c.tokens.length));
    expect(c.tokens.length).toBeLessThan(40);
    const [none] = await generateUntil(model, [prompt], { stop: ['\u0001never'], maxNewTokens: 10, stopIds: [], chunkTokens: 4 });
    expect(none.finish).toBe('length');
    expect(none.tokens).toEqual(full.slice(0, 10));
  });

  it('GSM8K on 3 questions: lm-eval prompts, completions cut at stop strings', async () => {
    const r = await evaluateGsm8k(model, { limit: 3, maxNewTokens: 64, batchSize: 2 });
    expect(r.count).toBe(3);
    expect(r.settings.stop).toEqual([...GSM8K_STOP]); // the eos id decodes to "</s>", already a stop string
    expect(r.settings.maxContext).toBe(512 - 64);
    expect(r.items.map((i) => i.fewshot)).toEqual([
      [6374, 3610, 957, 61, 742],
      [7462, 6610, 4769, 286, 5501],
      [5677, 687, 806, 6279, 2905],
    ]);
    const train = readFileSync(join(demoModel, '..', '..', 'data', 'gsm8k', 'train.jsonl'), 'utf8').split('\n');
    for (const item of r.items) {
      const shot0 = JSON.parse(train[item.fewshot[0]]) as { question: string; answer: string };
      expect(item.prompt.startsWith(`Question: ${shot0.question}\nAnswer: ${shot0.answer}\n\nQuestion: `)).toBe(true);
      expect(item.prompt.endsWith(`\n\nQuestion: ${item.question}\nAnswer:`)).toBe(true);
      expect(item.prompt.split('Question: ').length - 1).toBe(6);
      expect(item.promptTokens - item.truncatedTokens).toBeLessThanOrEqual(r.settings.maxContext);
      expect(item.generatedTokens).toBeLessThanOrEqual(64);
      for (const s of GSM8K_STOP) expect(item.completion.includes(s)).toBe(false);
      if (item.finish === 'stop') expect(GSM8K_STOP as readonly string[]).toContain(item.stoppedAt);
      expect(typeof item.strict).toBe('boolean');
    }
    expect(r.strict).toBeGreaterThanOrEqual(0);
    expect(r.flexible).toBeLessThanOrEqual(1);
  });

  it('benchmarks prefill and decode for each skip count and batch size', async () => {
    const rows = await benchmark(model, { skipCounts: [0, 2], batchSizes: [1, 2], promptTokens: 16, newTokens: 4, repeats: 1 });
    expect(rows.map((r) => [r.skipped, r.batch])).toEqual([
      [0, 1],
      [0, 2],
      [2, 1],
      [2, 2],
    ]);
    expect(rows[2].skip).toEqual([3, 2]);
    for (const r of rows) {
      expect(r.prefillTokensPerSec).toBeGreaterThan(0);
      expect(r.decodeTokensPerSec).toBeGreaterThan(0);
      expect(r.peakRssBytes).toBeGreaterThan(1e6);
    }
    const csv = benchCsv(rows).trim().split('\n');
    expect(csv).toHaveLength(5);
    expect(csv[0].split(',')).toContain('decodeTokensPerSec');
    expect(csv[3].split(',')[2]).toBe('3;2');
  });

  it('writes a report folder with tables, figures and JSON', async () => {
    const n = model.config.numLayers;
    const theta = ones(n);
    theta.bAtt[2] = 0;
    theta.sAtt[2] = 0.9;
    const fit = {
      skipped: [2],
      theta,
      trace: [0, 1, 2, 3, 4].map((l) => ({ step: 1, candidate: l, score: 1 + l / 10 })).concat([{ step: 2, candidate: 3, score: 2 }]),
    };
    const report = await evaluateModel(model, { fit, heldOut: samples, mmd: { samples, maxTokens: 32 }, svd: {} });
    expect(report.variants.map((v) => v.name)).toEqual(['base', 'NoScale', 'rescaled']);
    expect(report.variants[1].heldOut!.loss).toBeGreaterThan(report.variants[0].heldOut!.loss);
    expect(report.mmd!.variants.map((v) => v.name)).toEqual(['NoScale', 'rescaled']);
    const dir = mkdtempSync(join(tmpdir(), 'hs-report-'));
    const files = await writeReport(dir, report);
    expect(files).toEqual(expect.arrayContaining(['report.md', 'report.json', 'mmd.svg', 'singular-values.svg', 'probe-loss.svg', 'loss-per-block.svg']));
    for (const f of files) expect(existsSync(join(dir, f))).toBe(true);
    const md = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(md).toContain('| variant | skipped | held-out loss | held-out ppl |');
    expect(md).toContain('![MMD per layer](mmd.svg)');
    const json = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
    expect(json.skipped).toEqual([2]);
  });
});

/**
 * Checks that `src` is a well-formed SVG document: balanced tags, quoted attributes with
 * no duplicates, only the five XML entities, an <svg> root. Returns the element names.
 */
function parseSvg(src: string): string[] {
  const body = src.replace(/^<\?xml[^?]*\?>\s*/, '');
  const names: string[] = [];
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;
  let i = 0;
  const checkText = (t: string) => {
    if (/&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(t)) throw new Error(`bad entity in ${JSON.stringify(t.slice(0, 40))}`);
  };
  while (i < body.length) {
    const lt = body.indexOf('<', i);
    if (lt < 0) {
      if (body.slice(i).trim() !== '') throw new Error('text after the root element');
      break;
    }
    checkText(body.slice(i, lt));
    tag.lastIndex = lt;
    const m = tag.exec(body);
    if (!m) throw new Error(`malformed tag at ${lt}: ${JSON.stringify(body.slice(lt, lt + 40))}`);
    const [all, close, name, attrs, selfClose] = m;
    const keys = [...attrs.matchAll(/([\w:-]+)="([^"]*)"/g)].map((a) => {
      checkText(a[2]);
      return a[1];
    });
    if (new Set(keys).size !== keys.length) throw new Error(`duplicate attribute in <${name}>`);
    if (close) {
      if (stack.pop() !== name) throw new Error(`mismatched </${name}>`);
    } else {
      if (stack.length === 0 && names.length > 0) throw new Error('second root element');
      names.push(name);
      if (!selfClose) stack.push(name);
    }
    i = lt + all.length;
  }
  if (stack.length) throw new Error(`unclosed <${stack.join('>, <')}>`);
  if (names[0] !== 'svg') throw new Error(`root is <${names[0]}>, not <svg>`);
  return names;
}

/** Mean summed response NLL per sample, by the engine's loss on each sample alone. */
async function meanLoss(model: Model, data: readonly Sample[], theta: Theta, skip: number[]): Promise<number> {
  let sum = 0;
  for (const s of data) sum += (await model.loss([s], theta, { skip })).loss;
  return sum / data.length;
}

describe('hopscotch eval (command line)', () => {
  const mainJs = join(root, 'dist', 'cli', 'main.js');
  const inert = fixtureDir('llama-inert');
  const work = mkdtempSync(join(tmpdir(), 'hs-eval-cli-'));
  const files = { data: join(work, 'heldout.jsonl'), adapter: join(work, 'scales'), selection: join(work, 'selection.json'), fit: join(work, 'fit.json') };
  let model: Model;
  let heldOut: Sample[];
  let theta: Theta;
  // A two-step selection over the fixture's 4 layers: layer 1 first, then layer 2.
  const trace = [
    { step: 1, candidate: 0, score: 9 },
    { step: 1, candidate: 1, score: 5 },
    { step: 1, candidate: 2, score: 6 },
    { step: 1, candidate: 3, score: 8 },
    { step: 2, candidate: 0, score: 12 },
    { step: 2, candidate: 2, score: 7 },
    { step: 2, candidate: 3, score: 11 },
  ];

  const run = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [mainJs, 'eval', ...args], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });

  beforeAll(async () => {
    model = await load(inert, { device: 'cpu', threads: 2 });
    const texts = [
      'Once upon a time, there was a little girl named Lily. She loved to play outside.',
      'Tom had a red ball. He threw it to his dog, and the dog ran fast.',
      'The sun was hot. Sam and Mia went to the park to eat ice cream.',
      'One day, a bird sat on a tree. It sang a happy song for the cat.',
      'Ben found a big box. Inside the box was a small, soft toy bear.',
    ];
    heldOut = texts.map((t) => {
      const ids = model.tokenizer.encode(t);
      return { prompt: ids.slice(0, 5), response: ids.slice(5) };
    });
    await saveDataset(files.data, heldOut, { fingerprint: model.fingerprint });
    theta = ones(4);
    theta.sAtt.set([1.1, 1, 1, 0.8]);
    theta.bMlp.set([0.9, 1, 1.2, 1]);
    theta.sMlp.set([1, 0.7, 1, 1.05]);
    theta.bAtt[1] = 0;
    theta.bAtt[2] = 0;
    await exportModel(model, { skipped: [1, 2], theta }, { out: files.adapter, format: 'scales', settings: { count: 2 } });
    writeFileSync(files.selection, JSON.stringify({ strategy: 'iterative-greedy', skipped: [1, 2], theta: toJSON(theta), trace }));
    const losses = [5, 4.5, 4.2, 4.1, 4, 3.9];
    writeFileSync(files.fit, JSON.stringify({ skipped: [1, 2], theta: toJSON(theta), losses, epochLosses: [4.566, 4], steps: 6 }));
  });
  afterAll(() => model?.dispose());

  it('--adapter --tasks --out --trace: base / NoScale / rescaled numbers, selection curve and parseable figures', async () => {
    const out = join(work, 'report');
    const args = ['--model', inert, '--adapter', files.adapter, '--data', files.data, '--tasks', 'loss,mmd,svd,speed', '--out', out];
    args.push('--trace', files.selection, '--mmd-tokens', '24', '--speed-batch-sizes', '1', '--speed-prompt-tokens', '8');
    args.push('--speed-new-tokens', '2', '--speed-repeats', '1', '--device', 'cpu', '--threads', '2', '--json');
    const r = await run(args);
    expect(r.code, r.stderr).toBe(0);
    const printed = JSON.parse(r.stdout.trimEnd().split('\n').pop()!);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    expect(printed.variants).toEqual(report.variants);

    expect(report.tasks).toEqual(['loss', 'mmd', 'svd', 'speed']);
    expect(report.inputs.adapter).toBe(files.adapter);
    expect(report.inputs.adapterSettings.settings).toEqual({ count: 2 });
    expect(report.skipped).toEqual([1, 2]);
    expect(report.variants.map((v: { name: string; skip: number[] }) => [v.name, v.skip])).toEqual([
      ['base', []],
      ['NoScale', [1, 2]],
      ['rescaled', [1, 2]],
    ]);
    // Held-out losses against the engine, one sample at a time.
    const noScale = ones(4);
    noScale.bAtt[1] = 0;
    noScale.bAtt[2] = 0;
    const expected = [await meanLoss(model, heldOut, ones(4), []), await meanLoss(model, heldOut, noScale, [1, 2]), await meanLoss(model, heldOut, theta, [1, 2])];
    report.variants.forEach((v: { heldOut: { loss: number; samples: number } }, i: number) => {
      expect(v.heldOut.samples).toBe(5);
      expect(Math.abs(v.heldOut.loss - expected[i]) / expected[i]).toBeLessThan(1e-5);
    });
    expect(expected[2]).not.toBeCloseTo(expected[1], 3); // the adapter's theta is really used

    // Selection curve: held-out NoScale loss with the first k layers of the order skipped.
    const sel = report.selection;
    expect(sel.kind).toBe('selection');
    expect(sel.order).toEqual([1, 2]);
    expect(sel.curve.map((c: { k: number; layer: number | null; probeLoss: number | null }) => [c.k, c.layer, c.probeLoss])).toEqual([
      [0, null, null],
      [1, 1, 5],
      [2, 2, 7],
    ]);
    const only1 = ones(4);
    only1.bAtt[1] = 0;
    const curve = [expected[0], await meanLoss(model, heldOut, only1, [1]), expected[1]];
    sel.curve.forEach((c: { heldOutNoScale: number }, k: number) => expect(Math.abs(c.heldOutNoScale - curve[k]) / curve[k]).toBeLessThan(1e-5));
    expect(sel.rescaledHeldOut.k).toBe(2);
    expect(sel.rescaledHeldOut.loss).toBeCloseTo(report.variants[2].heldOut.loss, 10);
    // Elbow by the chord rule on three points: the middle one unless it lies on the chord.
    const [y0, y1, y2] = curve;
    const off = Math.abs((y1 - y0) / (y2 - y0) - 0.5);
    expect(sel.elbowK).toBe(off > 1e-9 ? 1 : null);
    expect(sel.elbowOn).toBe(off > 1e-9 ? 'held-out' : null);

    // MMD: NoScale leaves layer 0 untouched; layers at and after the first skipped block move.
    expect(report.mmd.variants.map((v: { name: string }) => v.name)).toEqual(['NoScale', 'rescaled']);
    expect(Math.abs(report.mmd.variants[0].mmd2[0])).toBeLessThan(1e-12);
    expect(report.mmdSummary).toHaveLength(2);
    expect(report.mmdSummary[0].meanFromFirstSkipped).toBeCloseTo((report.mmd.variants[0].mmd2.slice(1) as number[]).reduce((a, b) => a + b, 0) / 3, 12);
    // Singular values of the inert fixture: layer 2's o_proj is zero.
    expect(report.spectral.sigma[2][report.spectral.matrices.indexOf('o')]).toBe(0);
    // Speed: 0, 1 and 2 of the selection's blocks skipped, in its order.
    expect(report.bench.map((b: { skip: number[]; batch: number }) => [b.skip, b.batch])).toEqual([
      [[], 1],
      [[1], 1],
      [[1, 2], 1],
    ]);

    const svgs = ['probe-loss.svg', 'loss-per-block.svg', 'mmd.svg', 'singular-values.svg', 'speed.svg'];
    for (const f of svgs) expect(parseSvg(readFileSync(join(out, f), 'utf8'))[0]).toBe('svg');
    expect(readFileSync(join(out, 'loss-per-block.svg'), 'utf8')).toContain(sel.elbowK === null ? 'held-out, NoScale' : `elbow: k = ${sel.elbowK}`);
    expect(readFileSync(join(out, 'mmd.svg'), 'utf8')).toContain('>2*<');
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toContain(`- adapter: \`${files.adapter}\``);
    expect(md).toContain('| variant | skipped | held-out loss | held-out ppl |');
    for (const f of svgs) expect(md).toContain(`](${f})`);
  });

  it('--trace with a fit draws its training loss; --fit gives the variants', async () => {
    const out = join(work, 'report-fit');
    const r = await run(['--model', inert, '--fit', files.selection, '--data', files.data, '--tasks', 'loss,svd', '--out', out, '--trace', files.fit, '--device', 'cpu', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    expect(report.tasks).toEqual(['loss', 'svd']);
    expect(report.inputs.fit).toBe(files.selection);
    expect(report.selection.kind).toBe('fit');
    expect(report.selection.stepLosses).toEqual([5, 4.5, 4.2, 4.1, 4, 3.9]);
    const names = parseSvg(readFileSync(join(out, 'rescale-loss.svg'), 'utf8'));
    expect(names.filter((n) => n === 'circle').length).toBeGreaterThanOrEqual(6 + 2);
    expect(existsSync(join(out, 'probe-loss.svg'))).toBe(false);
  });

  it('rejects unknown tasks, missing inputs and an adapter for another model', async () => {
    const bad = async (args: string[], message: RegExp) => {
      const r = await run(['--model', inert, '--device', 'cpu', ...args]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toContain('HOPSCOTCH_ERR_');
    };
    await bad(['--tasks', 'loss,bleu', '--data', files.data], /unknown task 'bleu'/);
    await bad(['--tasks', 'loss'], /needs the held-out samples/);
    await bad(['--tasks', 'mmd', '--data', files.data], /--adapter or --fit/);
    await bad(['--adapter', files.adapter, '--fit', files.fit, '--tasks', 'svd'], /'--adapter <file>' cannot be used with option '--fit <file>'/);
    await bad(['--tasks', 'svd', '--trace', files.data], /cannot read trace file/);
    writeFileSync(join(work, 'other.json'), JSON.stringify({ skipped: [1] }));
    await bad(['--tasks', 'svd', '--trace', join(work, 'other.json')], /neither a selection/);
    const r = await run(['--model', demoModel, '--adapter', files.adapter, '--tasks', 'svd', '--device', 'cpu']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('HOPSCOTCH_ERR_FINGERPRINT');
  });
});
