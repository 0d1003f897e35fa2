// Memory: loading, using and disposing the demo model many times, failed loads and
// refused engine calls do not grow the resident set of the process. RSS is measured
// after a warm-up (allocator pools, lazily built code, thread pools) and again at the
// end, both right after a full garbage collection. The bound, 30 MB, is well under the
// growth that the smallest real leak would show: each load maps about 1 MB of weights
// plus engine buffers, so keeping one load's weights alive per iteration would add
// more than 100 MB over 100 loads.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { load } from '../../src/model.js';
import { binding } from '../../src/native/binding.js';
import { ones } from '../../src/theta.js';
import type { Sample } from '../../src/types.js';
import { demoModel, expectCode } from '../helpers.js';

const MB = 1024 * 1024;
const BOUND = 30 * MB;
const L = 5;
const DATA: Sample[] = [
  { prompt: [1, 403, 407, 261], response: [365, 287, 2] },
  { prompt: [1, 30, 79, 100, 4], response: [101, 7, 300] },
];

/**
 * A full garbage collection. The vitest fork runs without --expose-gc, so the flag is
 * turned on at run time and `gc` taken from a fresh context (V8 installs it there).
 */
const gc: () => void = (() => {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return existing;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
})();

async function settledRss(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().rss;
}

/** Runs `body` `warmup` times, measures, runs it `times` times, measures; returns the growth. */
async function growth(label: string, warmup: number, times: number, body: (i: number) => Promise<void>): Promise<number> {
  for (let i = 0; i < warmup; i++) await body(i);
  const before = await settledRss();
  let peak = before;
  for (let i = 0; i < times; i++) {
    await body(i);
    if (i % 10 === 9) peak = Math.max(peak, process.memoryUsage().rss);
  }
  const after = await settledRss();
  const fmt = (b: number) => `${(b / MB).toFixed(1)} MB`;
  const heap = process.memoryUsage().heapUsed;
  console.log(`${label}: RSS ${fmt(before)} -> ${fmt(after)} (growth ${fmt(after - before)}, peak ${fmt(peak)}, JS heap used ${fmt(heap)}) over ${times} runs`);
  return after - before;
}

let work: string;
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'hs-memory-'));
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe('resident memory', () => {
  it('gc is available (the measurements below are taken after a full collection)', () => {
    expect(typeof gc).toBe('function');
    gc();
  });

  it('load + loss + generate + dispose of the demo model 100 times stays within 30 MB', async () => {
    let lastLoss = Number.NaN;
    const grew = await growth('load/use/dispose x100', 10, 100, async () => {
      const m = await load(demoModel, { device: 'cpu' });
      const r = await m.lossAndGrad(DATA, ones(L));
      const g = await m.generate([[1, 403, 407]], { maxNewTokens: 8 });
      expect(g[0]!.length).toBeGreaterThan(0);
      if (!Number.isNaN(lastLoss)) expect(r.loss).toBe(lastLoss);
      lastLoss = r.loss;
      m.dispose();
    });
    expect(grew).toBeLessThan(BOUND);
  });

  it('load + dispose with no call, 100 times, stays within 30 MB', async () => {
    const grew = await growth('load/dispose x100', 10, 100, async () => {
      (await load(demoModel, { device: 'cpu' })).dispose();
    });
    expect(grew).toBeLessThan(BOUND);
  });

  it('100 failed loads (truncated weights) stay within 30 MB', async () => {
    const dir = path.join(work, 'truncated');
    cpSync(demoModel, dir, { recursive: true });
    const st = readFileSync(path.join(dir, 'model.safetensors'));
    writeFileSync(path.join(dir, 'model.safetensors'), st.subarray(0, Math.floor(st.length * 0.7)));
    const grew = await growth('failed load x100', 10, 100, async () => {
      await expectCode(load(dir, { device: 'cpu' }), 'HOPSCOTCH_ERR_SAFETENSORS_LAYOUT');
    });
    expect(grew).toBeLessThan(BOUND);
  });

  it('2000 refused engine calls (checked in the addon) stay within 30 MB', async () => {
    const engine = await binding().Model.load(demoModel, { device: 'cpu' });
    try {
      const t = ones(L);
      const grew = await growth('refused native calls x2000', 200, 2000, async (i) => {
        const bad = i % 2 === 0 ? 512 + i : -1 - i;
        await expectCode(() => engine.loss([{ prompt: [1, 2, 3], response: [bad] }], t, { skip: [] }, true), 'HOPSCOTCH_ERR_TOKEN_RANGE');
      });
      expect(grew).toBeLessThan(BOUND);
    } finally {
      engine.dispose();
    }
  });

  it('control: the same measurement sees 100 models kept alive (the bound can fail)', async () => {
    const kept: { dispose(): void }[] = [];
    try {
      const grew = await growth('load x100, kept alive', 0, 100, async () => {
        kept.push(await load(demoModel, { device: 'cpu' }));
      });
      expect(grew).toBeGreaterThan(BOUND);
    } finally {
      for (const m of kept) m.dispose();
    }
  });
});
