// CUDA backend parity with the CPU engine (the reference), run where a GPU is usable.
// Without one every test here is skipped, and the reason is printed. (The GPU machines
// used for development have no Node: there the same checks run as the native
// `hopscotch_cuda_selftest`, see bench/device.sh.)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { load } from '../../src/model.js';
import { binding } from '../../src/native/binding.js';
import type { Theta } from '../../src/types.js';
import { demoModel, fixtureDir, generated } from '../helpers.js';

const probe = binding().cudaProbe();
const noGpu = !probe.available;
if (noGpu) console.log(`CUDA tests skipped: ${probe.message}`);

const fixtures: string[] = JSON.parse(readFileSync(join(generated, 'models', 'fixtures.json'), 'utf8')).fixtures.map(
  (f: { name: string }) => f.name,
);

function theta(layers: number): Theta {
  const f = (a: number, b: number) => Float32Array.from({ length: layers }, (_, i) => a + ((i * 7919) % 13) * (b - a) / 12);
  return { bAtt: f(0.8, 1.2), sAtt: f(0.9, 1.1), bMlp: f(0.8, 1.2), sMlp: f(0.9, 1.1) };
}

const samples = [
  { prompt: [1, 45, 300, 12, 99], response: [87, 410, 23, 5, 66, 71, 200] },
  { prompt: [1, 7, 8], response: [9, 10, 11, 12] },
  { prompt: [1, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271, 272, 273, 274, 275], response: [276, 277, 278, 279] },
];

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb || 1);
}

function relNorm(a: Float32Array, ref: Float32Array): number {
  let d = 0, r = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - ref[i]) ** 2;
    r += ref[i] ** 2;
  }
  return Math.sqrt(d / (r || 1));
}

describe.skipIf(noGpu)('CUDA backend parity with the CPU engine', () => {
  for (const [name, dir] of [...fixtures.map((f) => [f, fixtureDir(f)]), ['stories260k', demoModel]]) {
    it(`${name}: loss within 1e-2, gradients cosine >= 0.999 and norm error <= 2e-2, repeatable bit for bit`, async () => {
      const cpu = await load(dir, { device: 'cpu' });
      const gpu = await load(dir, { device: 'cuda' });
      const t = theta(cpu.config.numLayers);
      const skip = cpu.config.numLayers > 2 ? [1] : [];
      const a = await cpu.lossAndGrad(samples, t, { skip });
      const b = await gpu.lossAndGrad(samples, t, { skip });
      const c = await gpu.lossAndGrad(samples, t, { skip });
      expect(Math.abs(b.loss - a.loss) / Math.abs(a.loss)).toBeLessThanOrEqual(1e-2);
      for (const k of ['bAtt', 'sAtt', 'bMlp', 'sMlp'] as const) {
        if (k === 'bAtt' && skip.length && cpu.config.numLayers === 2) continue;
        expect(cosine(b.grad[k], a.grad[k]), k).toBeGreaterThanOrEqual(0.999);
        expect(relNorm(b.grad[k], a.grad[k]), k).toBeLessThanOrEqual(2e-2);
        expect(Array.from(c.grad[k]), `${k} repeat`).toEqual(Array.from(b.grad[k]));
      }
      expect(c.loss).toBe(b.loss);
      cpu.dispose();
      gpu.dispose();
    });
  }

  it('stories260k: the first 32 generated tokens equal the CPU engine', async () => {
    const cpu = await load(demoModel, { device: 'cpu' });
    const gpu = await load(demoModel, { device: 'cuda' });
    const prompts = [[1], cpu.tokenizer.encode('Once upon a time, there was a')];
    const a = await cpu.generate(prompts, { maxNewTokens: 32, stop: [] });
    const b = await gpu.generate(prompts, { maxNewTokens: 32, stop: [] });
    expect(b).toEqual(a);
    cpu.dispose();
    gpu.dispose();
  });

  it('llama-hd128-gqa4: ~300-token samples (tensor-core attention), loss and gradients as the CPU engine', async () => {
    const dir = fixtureDir('llama-hd128-gqa4');
    const cpu = await load(dir, { device: 'cpu' });
    const gpu = await load(dir, { device: 'cuda' });
    const lens = [[150, 151], [97, 203], [13, 4]];
    let x = 17;
    const next = () => (x = (x * 1103515245 + 12345) % 2147483648) % 500 + 3;
    const long = lens.map(([p, r]) => ({ prompt: Array.from({ length: p }, next), response: Array.from({ length: r }, next) }));
    const t = theta(cpu.config.numLayers);
    const a = await cpu.lossAndGrad(long, t);
    const b = await gpu.lossAndGrad(long, t);
    expect(Math.abs(b.loss - a.loss) / Math.abs(a.loss)).toBeLessThanOrEqual(1e-2);
    for (const k of ['bAtt', 'sAtt', 'bMlp', 'sMlp'] as const) {
      expect(cosine(b.grad[k], a.grad[k]), k).toBeGreaterThanOrEqual(0.999);
      expect(relNorm(b.grad[k], a.grad[k]), k).toBeLessThanOrEqual(2e-2);
    }
    cpu.dispose();
    gpu.dispose();
  });

  it('keeps the stop token with includeStop and refuses sequences beyond the context, as the CPU engine', async () => {
    // Greedy parity on the bundled model (as above), the context on a 128-token fixture.
    const cpuStories = await load(demoModel, { device: 'cpu' });
    const gpuStories = await load(demoModel, { device: 'cuda' });
    const prompts = [[1, 403, 407, 261, 378], [1]];
    // A stop id the CPU engine's greedy answer reaches within 20 tokens.
    const free = await cpuStories.generate(prompts, { maxNewTokens: 20, stop: [] });
    const stop = [free[0][6]];
    const a = await cpuStories.generate(prompts, { maxNewTokens: 20, stop, includeStop: true });
    const b = await gpuStories.generate(prompts, { maxNewTokens: 20, stop, includeStop: true });
    expect(b).toEqual(a);
    expect(a[0].at(-1)).toBe(stop[0]);
    cpuStories.dispose();
    gpuStories.dispose();
    const dir = fixtureDir('llama-ctx128');
    const cpu = await load(dir, { device: 'cpu' });
    const gpu = await load(dir, { device: 'cuda' });
    for (const m of [cpu, gpu]) {
      await expect(m.generate([[1, 2, 3]], { maxNewTokens: 126 })).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_CONTEXT' });
      await expect(m.logits(Array(129).fill(5))).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_CONTEXT' });
    }
    // The engine itself refuses, whatever the TypeScript layer checks first.
    const engine = await binding().Model.load(dir, { device: 'cuda' });
    const ones = { bAtt: new Float32Array(4).fill(1), sAtt: new Float32Array(4).fill(1), bMlp: new Float32Array(4).fill(1), sMlp: new Float32Array(4).fill(1) };
    await expect(engine.logits(Array(129).fill(5), ones, [])).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_CONTEXT' });
    await expect(engine.generate([[1, 2, 3]], ones, { maxNewTokens: 126 })).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_CONTEXT' });
    await expect(engine.loss([{ prompt: [1, 2], response: Array(127).fill(5) }], ones, { skip: [] }, true)).rejects.toMatchObject({
      code: 'HOPSCOTCH_ERR_CONTEXT',
    });
    engine.dispose();
    cpu.dispose();
    gpu.dispose();
  });
});

describe('CUDA probe', () => {
  it('reports availability with a reason and the paths it tried', () => {
    expect(typeof probe.available).toBe('boolean');
    expect(probe.message.length).toBeGreaterThan(0);
    expect(Array.isArray(probe.tried)).toBe(true);
  });

  it.skipIf(!noGpu)("device 'cuda' without a usable GPU is a typed error naming why", async () => {
    let err: unknown;
    try {
      await load(demoModel, { device: 'cuda' });
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe('HOPSCOTCH_ERR_CUDA');
    expect((err as Error).message).toContain(probe.message.slice(0, 20));
  });
});
