// The CPU engine against the independent fp64 reference (test/reference/ref64.ts) on
// every fixture checkpoint and the bundled real model: loss, every theta gradient
// (central finite differences of the fp64 loss), logits, packing, determinism.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { mulberry32 } from '../../src/batching.js';
import { load } from '../../src/model.js';
import type { Model, Sample, Theta } from '../../src/types.js';
import { demoModel, fixtureDir, generated } from '../helpers.js';
import { loadRef, type RefModel } from '../reference/ref64.js';

const fixtures: { name: string; numLayers: number }[] = JSON.parse(
  readFileSync(join(generated, 'models', 'fixtures.json'), 'utf8'),
).fixtures;

function makeSamples(seed: number, vocab: number): Sample[] {
  const r = mulberry32(seed);
  const lengths = [
    [3, 6],
    [7, 4],
    [5, 9],
  ];
  return lengths.map(([p, q]) => ({
    prompt: Array.from({ length: p }, () => 3 + Math.floor(r() * (vocab - 3))),
    response: Array.from({ length: q }, () => 3 + Math.floor(r() * (vocab - 3))),
  }));
}

function makeTheta(seed: number, layers: number): Theta {
  const r = mulberry32(seed);
  const f = (lo: number, hi: number) => Float32Array.from({ length: layers }, () => lo + (hi - lo) * r());
  return { bAtt: f(0.7, 1.3), sAtt: f(0.8, 1.2), bMlp: f(0.7, 1.3), sMlp: f(0.8, 1.2) };
}

/**
 * Components of at least 2% of the largest are held to a relative error of 1e-4; the
 * smaller ones (where fp32 rounding of the large terms dominates) to an absolute error
 * of 2e-5 of the largest component.
 */
function checkGrad(engine: Float32Array, ref: number[], what: string): number {
  const scale = Math.max(...ref.map(Math.abs), 1e-12);
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const diff = Math.abs(engine[i] - ref[i]);
    if (Math.abs(ref[i]) >= 2e-2 * scale) {
      const rel = diff / Math.abs(ref[i]);
      worst = Math.max(worst, rel);
      expect(rel, `${what}[${i}]: engine ${engine[i]} vs fp64 ${ref[i]}`).toBeLessThanOrEqual(1e-4);
    } else {
      expect(diff, `${what}[${i}] (tiny): engine ${engine[i]} vs fp64 ${ref[i]}`).toBeLessThanOrEqual(2e-5 * scale);
    }
  }
  return worst;
}

const cases = [
  ...fixtures.map((f) => ({ name: f.name, dir: fixtureDir(f.name), layers: f.numLayers })),
  { name: 'stories260k', dir: demoModel, layers: 5 },
];

describe.each(cases)('$name: engine vs fp64 reference', ({ name, dir, layers }) => {
  let model: Model;
  let ref: RefModel;
  beforeAll(async () => {
    model = await load(dir, { device: 'cpu', threads: 2 });
    ref = loadRef(dir);
  });
  afterAll(() => model?.dispose());

  const variants = [
    { label: 'theta ones, no skip', skip: [] as number[], tokenMean: false, thetaSeed: 0 },
    { label: 'random theta, skip [1], tokenMean', skip: layers > 1 ? [1] : [], tokenMean: true, thetaSeed: 11 },
  ];

  for (const v of variants) {
    it(`loss and all four gradients (${v.label})`, async () => {
      const samples = makeSamples(name.length * 31 + v.thetaSeed, model.config.vocabSize);
      const theta = v.thetaSeed ? makeTheta(v.thetaSeed, layers) : makeTheta(0, layers);
      if (!v.thetaSeed) for (const k of ['bAtt', 'sAtt', 'bMlp', 'sMlp'] as const) theta[k].fill(1);
      const opts = { skip: v.skip, tokenMean: v.tokenMean };
      const got = await model.lossAndGrad(samples, theta, opts);
      const want = ref.loss(samples, theta, opts);
      expect(Math.abs(got.loss - want.loss) / Math.abs(want.loss)).toBeLessThanOrEqual(1e-4);
      want.sampleNll.forEach((nll, i) => expect(Math.abs(got.sampleNll[i] - nll) / Math.abs(nll)).toBeLessThanOrEqual(1e-4));
      const fd = ref.gradFD(samples, theta, opts, 1e-5);
      for (const k of ['bAtt', 'sAtt', 'bMlp', 'sMlp'] as const) checkGrad(got.grad[k], fd[k], k);
      for (const l of v.skip) expect(got.grad.bAtt[l]).toBe(0);
    });
  }

  it('logits match the fp64 forward', async () => {
    const tokens = makeSamples(7, model.config.vocabSize)[2].prompt.concat(makeSamples(8, model.config.vocabSize)[0].response);
    const theta = makeTheta(5, layers);
    const skip = layers > 2 ? [0, 2] : [0];
    const got = await model.logits(tokens, { theta, skip });
    const want = ref.logits(tokens, theta, skip);
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < want.length; i++) {
      scale = Math.max(scale, Math.abs(want[i]));
      diff = Math.max(diff, Math.abs(got[i] - want[i]));
    }
    expect(diff).toBeLessThanOrEqual(1e-4 * Math.max(scale, 1));
  });

  it('packing is exact: a batch gives each sample the NLL of a call of its own', async () => {
    const samples = makeSamples(99, model.config.vocabSize);
    const theta = makeTheta(3, layers);
    const packed = await model.loss(samples, theta);
    for (let i = 0; i < samples.length; i++) {
      const alone = await model.loss([samples[i]], theta);
      expect(Math.abs(packed.sampleNll[i] - alone.sampleNll[0])).toBeLessThanOrEqual(1e-5 * Math.abs(alone.sampleNll[0]));
    }
  });
});

describe('determinism', () => {
  it('lossAndGrad is bit-identical across repeated calls and across 1, 2 and 3 threads', async () => {
    const results: Float32Array[] = [];
    for (const threads of [1, 2, 3, 2]) {
      const model = await load(fixtureDir('qwen2'), { device: 'cpu', threads });
      const samples = makeSamples(5, model.config.vocabSize);
      const r = await model.lossAndGrad(samples, makeTheta(9, model.config.numLayers), { skip: [1] });
      results.push(Float32Array.from([r.loss, ...r.grad.bAtt, ...r.grad.sAtt, ...r.grad.bMlp, ...r.grad.sMlp]));
      model.dispose();
    }
    for (const r of results.slice(1)) expect(Buffer.from(r.buffer).equals(Buffer.from(results[0].buffer))).toBe(true);
  });

  it('recompute on and off give bit-identical gradients, and recompute keeps less memory', async () => {
    const model = await load(demoModel, { device: 'cpu', threads: 2 });
    const samples = makeSamples(17, 512);
    const theta = makeTheta(2, 5);
    const a = await model.lossAndGrad(samples, theta, { recompute: false });
    const b = await model.lossAndGrad(samples, theta, { recompute: true });
    expect(b.loss).toBe(a.loss);
    for (const k of ['bAtt', 'sAtt', 'bMlp', 'sMlp'] as const) expect(Array.from(b.grad[k])).toEqual(Array.from(a.grad[k]));
    expect(b.peakBytes).toBeLessThan(a.peakBytes);
    model.dispose();
  });
});

describe('stories260k generation', () => {
  it('greedy generation with the KV cache reproduces the 200 reference tokens', async () => {
    const verification = JSON.parse(readFileSync(join(demoModel, 'verification.json'), 'utf8'));
    const expected: number[] = verification.greedy_tokens_hf.slice(1, 201);
    const model = await load(demoModel, { device: 'cpu' });
    const [out] = await model.generate([[1]], { maxNewTokens: 200, stop: [] });
    expect(out).toEqual(expected);
    model.dispose();
  });
});
