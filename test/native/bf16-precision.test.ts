// precision 'bf16' (opt-in): the CPU engine's weight GEMMs multiply bf16 weights by
// activations rounded to bf16 and sum in fp32. Measured here against the independent fp64
// reference (test/reference/ref64.ts) on every fixture and the bundled model, next to the
// fp32 engine's error on the same batch:
//   - loss within 2e-2 relative of fp64 (bf16 keeps 8 significant bits: one rounding is
//     2^-9 = 2e-3 relative; the bound leaves room for the rounding of every GEMM input);
//   - each theta gradient within 5e-2 of the largest gradient of its kind;
//   - the bf16 path really rounds (its loss differs from the fp32 engine's), and is
//     deterministic: bit-identical at 1 and 2 threads.
// Selection picks with both precisions are recorded (not asserted): with
// HOPSCOTCH_BENCH_OUT=DIR the measured errors and picks are written to DIR/bf16-accuracy.json.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { mulberry32 } from '../../src/batching.js';
import { loadPrompts, recoverySet } from '../../src/dataset.js';
import { load } from '../../src/model.js';
import { selectBlocks } from '../../src/select.js';
import type { Model, Sample, Theta } from '../../src/types.js';
import { demoModel, fixtureDir, generated, root } from '../helpers.js';
import { loadRef } from '../reference/ref64.js';

const fixtures: { name: string; numLayers: number }[] = JSON.parse(
  readFileSync(join(generated, 'models', 'fixtures.json'), 'utf8'),
).fixtures;

const KINDS = ['bAtt', 'sAtt', 'bMlp', 'sMlp'] as const;

function makeSamples(seed: number, vocab: number, n = 3): Sample[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, (_, i) => ({
    prompt: Array.from({ length: 4 + ((i * 5) % 9) }, () => 3 + Math.floor(r() * (vocab - 3))),
    response: Array.from({ length: 3 + ((i * 7) % 8) }, () => 3 + Math.floor(r() * (vocab - 3))),
  }));
}

function makeTheta(seed: number, layers: number): Theta {
  const r = mulberry32(seed);
  const f = (lo: number, hi: number) => Float32Array.from({ length: layers }, () => lo + (hi - lo) * r());
  return { bAtt: f(0.7, 1.3), sAtt: f(0.8, 1.2), bMlp: f(0.7, 1.3), sMlp: f(0.8, 1.2) };
}

/** Largest |engine - fp64| of each gradient kind over the largest |fp64| of that kind. */
function gradError(got: Theta, want: Record<(typeof KINDS)[number], number[]>): number {
  let worst = 0;
  for (const k of KINDS) {
    const scale = Math.max(...want[k].map(Math.abs), 1e-12);
    for (let i = 0; i < want[k].length; i++) worst = Math.max(worst, Math.abs(got[k][i] - want[k][i]) / scale);
  }
  return worst;
}

const report: Record<string, unknown>[] = [];
afterAll(() => {
  const out = process.env.HOPSCOTCH_BENCH_OUT;
  if (!out) return;
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'bf16-accuracy.json'), JSON.stringify({ cases: report }, null, 2) + '\n');
});

const cases = [
  ...fixtures.map((f) => ({ name: f.name, dir: fixtureDir(f.name), layers: f.numLayers })),
  { name: 'stories260k', dir: demoModel, layers: 5 },
];

describe.each(cases)("$name: precision 'bf16' vs the fp64 reference", ({ name, dir, layers }) => {
  it('loss and theta gradients within the bf16 bounds; deterministic; differs from fp32', async () => {
    const ref = loadRef(dir);
    const f32 = await load(dir, { device: 'cpu', threads: 2 });
    const bf16 = await load(dir, { device: 'cpu', threads: 2, precision: 'bf16' });
    const bf16one = await load(dir, { device: 'cpu', threads: 1, precision: 'bf16' });
    try {
      expect(bf16.precision).toBe('bf16');
      expect(f32.precision).toBe('f32');
      const samples = makeSamples(name.length * 7 + 1, f32.config.vocabSize);
      const theta = makeTheta(21, layers);
      const opts = { skip: layers > 1 ? [layers - 1] : [] };
      const want = ref.loss(samples, theta, opts);
      const fd = ref.gradFD(samples, theta, opts, 1e-5);
      const a = await f32.lossAndGrad(samples, theta, opts);
      const b = await bf16.lossAndGrad(samples, theta, opts);
      const b1 = await bf16one.lossAndGrad(samples, theta, opts);
      const lossErr = { f32: Math.abs(a.loss - want.loss) / want.loss, bf16: Math.abs(b.loss - want.loss) / want.loss };
      const gradErr = { f32: gradError(a.grad, fd), bf16: gradError(b.grad, fd) };
      report.push({ name, loss: want.loss, lossRelError: lossErr, gradErrorOfLargest: gradErr });
      expect(lossErr.bf16).toBeLessThanOrEqual(2e-2);
      expect(gradErr.bf16).toBeLessThanOrEqual(5e-2);
      expect(b.loss).not.toBe(a.loss);
      expect(b1.loss).toBe(b.loss);
      for (const k of KINDS) expect(Buffer.from(b1.grad[k].buffer).equals(Buffer.from(b.grad[k].buffer))).toBe(true);
    } finally {
      f32.dispose();
      bf16.dispose();
      bf16one.dispose();
    }
  });
});

describe('selection picks with precision bf16 (recorded)', () => {
  async function picks(model: Model, data: Sample[], count: number): Promise<number[]> {
    const sel = await selectBlocks(model, data, { count });
    return sel.skipped;
  }

  it.each(cases)('$name', async ({ name, dir, layers }) => {
    const f32 = await load(dir, { device: 'cpu', threads: 2 });
    const bf16 = await load(dir, { device: 'cpu', threads: 2, precision: 'bf16' });
    try {
      let data: Sample[];
      if (name === 'stories260k') {
        // The model's own greedy continuations of 16 bundled story openings (made once, in fp32).
        const prompts = (await loadPrompts(join(root, 'data', 'prompts', 'story-openings.jsonl'))).slice(0, 16);
        data = await recoverySet(f32, prompts, { maxNewTokens: 48, stop: [1, 2], batchSize: 16 });
      } else {
        data = makeSamples(name.length + 3, f32.config.vocabSize, 8);
      }
      const count = Math.min(2, layers);
      const pf = await picks(f32, data, count);
      const pb = await picks(bf16, data, count);
      report.push({ name, picks: { count, f32: pf, bf16: pb, same: pf.join(',') === pb.join(',') } });
      expect(pb).toHaveLength(count);
    } finally {
      f32.dispose();
      bf16.dispose();
    }
  });
});
