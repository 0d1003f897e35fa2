// The evaluation kernels that run in the addon (native/core/spectral.h, native/core/mmd.h)
// against the sequential float64 JavaScript they replaced (test/reference/eval-js.ts):
// power iteration on odd-shaped F32 / F64 matrices and on checkpoint tensors of each dtype,
// MMD^2 in its paired and two-sample forms with the median or a given bandwidth; every
// result is the same on a second run, and an AbortSignal stops a running call.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { mulberry32 } from '../../src/batching.js';
import { mmd2Unbiased } from '../../src/eval/mmd.js';
import { spectralNorms, topSingularValue } from '../../src/eval/spectral.js';
import { binding } from '../../src/native/binding.js';
import { fixtureDir } from '../helpers.js';
import { mmd2UnbiasedJs, topSingularValueJs } from '../reference/eval-js.js';

function gaussian(n: number, seed: number, shift = 0): Float64Array {
  const u = mulberry32(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = shift + Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  return out;
}

const close = (got: number, want: number, rel: number) => expect(Math.abs(got - want)).toBeLessThanOrEqual(rel * Math.max(Math.abs(want), 1e-300));

describe('topSingularValue in the addon', () => {
  it('equals the JavaScript power iteration on odd shapes, F32 and F64, and is repeatable', async () => {
    for (const [rows, cols, seed] of [[37, 53, 1], [64, 7, 2], [1, 9, 3], [129, 129, 4]] as const) {
      const w64 = gaussian(rows * cols, seed);
      const w32 = Float32Array.from(w64);
      for (const w of [w64, w32]) {
        for (const opts of [{}, { seed: 5, tolerance: 1e-12, maxIterations: 5000 }, { maxIterations: 3 }]) {
          const want = topSingularValueJs(w, rows, cols, opts);
          const got = await topSingularValue(w, rows, cols, opts);
          close(got.sigma, want.sigma, 1e-12);
          expect(got.iterations).toBe(want.iterations);
          expect(got.converged).toBe(want.converged);
          expect(await topSingularValue(w, rows, cols, opts)).toEqual(got);
        }
      }
    }
  });

  it('spectralNorms reads each dtype from the checkpoint and matches the JS iteration on the widened tensor', async () => {
    for (const name of ['llama-gqa', 'llama-tied-bf16', 'llama-f16']) {
      const dir = fixtureDir(name);
      const r = await spectralNorms(dir, { layers: [0, 1], matrices: ['q', 'down'] });
      for (const [li, l] of [0, 1].entries())
        for (const [mi, suffix] of ['self_attn.q_proj.weight', 'mlp.down_proj.weight'].entries()) {
          const file = join(dir, 'model.safetensors');
          const t = binding().inspectSafetensors(file).tensors.find((x) => x.name === `model.layers.${l}.${suffix}`)!;
          const want = topSingularValueJs(await binding().readTensor(file, t.name), t.shape[0]!, t.shape[1]!);
          close(r.sigma[li]![mi]!, want.sigma, 1e-12);
          expect(r.iterations[li]![mi]).toBe(want.iterations);
        }
    }
  });

  it('stops a running iteration when the signal aborts, with the reason', async () => {
    const w = gaussian(400 * 400, 9);
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('enough')), 50);
    const t0 = performance.now();
    await expect(topSingularValue(w, 400, 400, { tolerance: 0, maxIterations: 10_000_000, signal: ac.signal })).rejects.toThrow('enough');
    expect(performance.now() - t0).toBeLessThan(10_000);
    const done = new AbortController();
    done.abort(new Error('before'));
    await expect(spectralNorms(fixtureDir('llama-gqa'), { signal: done.signal })).rejects.toThrow('before');
  });
});

describe('mmd2Unbiased in the addon', () => {
  const dim = 7;
  const x = gaussian(50 * dim, 1);
  const y = gaussian(50 * dim, 2, 0.3);
  const y33 = gaussian(33 * dim, 3, 0.5);

  it('equals the JavaScript estimator (paired, two-sample, median and given bandwidth, F32 input) and is repeatable', async () => {
    const cases: [Float32Array | Float64Array, Float32Array | Float64Array, number | undefined][] = [
      [x, y, undefined],
      [x, y33, undefined],
      [x, y, 0.9],
      [Float32Array.from(x), Float32Array.from(y33), undefined],
      [x, Float64Array.from(x), undefined],
    ];
    for (const [a, b, bandwidth] of cases) {
      const want = mmd2UnbiasedJs(a, b, dim, { bandwidth });
      const got = await mmd2Unbiased(a, b, dim, { bandwidth });
      expect(got.bandwidth).toBe(want.bandwidth);
      expect(Math.abs(got.mmd2 - want.mmd2)).toBeLessThanOrEqual(1e-12 * Math.max(Math.abs(want.mmd2), 1e-2));
      expect(await mmd2Unbiased(a, b, dim, { bandwidth })).toEqual(got);
    }
  });

  it('refuses a bad bandwidth and an aborted signal', async () => {
    await expect(mmd2Unbiased(x, y, dim, { bandwidth: 0 })).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_ARGUMENT' });
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(mmd2Unbiased(x, y, dim, { signal: ac.signal })).rejects.toThrow('stop');
  });
});
