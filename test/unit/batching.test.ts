import { describe, expect, it } from 'vitest';
import { makeBatches, mixSeed, mulberry32, shuffledIndices } from '../../src/batching.js';
import type { Sample } from '../../src/types.js';

const data: Sample[] = Array.from({ length: 50 }, (_, i) => ({
  prompt: Array.from({ length: 1 + (i % 4) }, () => i),
  response: Array.from({ length: 1 + (i % 7) }, () => i),
}));
const idOf = (s: Sample) => s.prompt[0];
const ids = (batches: Sample[][]) => batches.map((b) => b.map(idOf));

describe('mulberry32 / shuffledIndices', () => {
  it('is deterministic and roughly uniform', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = Array.from({ length: 20000 }, () => a());
    expect(Array.from({ length: 20000 }, () => b())).toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
  });

  it('draws every permutation of 4 about equally often', () => {
    const counts = new Map<string, number>();
    const trials = 24000;
    for (let seed = 0; seed < trials; seed++) {
      const key = shuffledIndices(4, mixSeed(7, seed)).join('');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    expect(counts.size).toBe(24);
    for (const c of counts.values()) expect(Math.abs(c - 1000)).toBeLessThan(160); // > 5 sigma
  });

  it('mixSeed separates (seed, epoch) from (seed + 1, epoch - 1)', () => {
    expect(mixSeed(0, 1)).not.toBe(mixSeed(1, 0));
    expect(mixSeed(3, 4)).toBe(mixSeed(3, 4));
  });
});

describe('makeBatches', () => {
  it('is a deterministic function of (seed, epoch), with a new order each epoch', () => {
    const e0 = makeBatches(data, { batchSize: 8, seed: 1, epoch: 0 });
    expect(ids(makeBatches(data, { batchSize: 8, seed: 1, epoch: 0 }))).toEqual(ids(e0));
    expect(ids(makeBatches(data, { batchSize: 8, seed: 1, epoch: 1 }))).not.toEqual(ids(e0));
    expect(ids(makeBatches(data, { batchSize: 8, seed: 2, epoch: 0 }))).not.toEqual(ids(e0));
  });

  it('covers every sample exactly once, in batches of batchSize (last one shorter)', () => {
    const batches = makeBatches(data, { batchSize: 8, seed: 5, epoch: 3 });
    expect(batches.map((b) => b.length)).toEqual([8, 8, 8, 8, 8, 8, 2]);
    expect(ids(batches).flat().sort((a, b) => a - b)).toEqual(data.map(idOf));
    expect(ids(batches).flat()).not.toEqual(data.map(idOf));
  });

  it('defaults to 32 samples per batch', () => {
    expect(makeBatches(data, { seed: 0, epoch: 0 }).map((b) => b.length)).toEqual([32, 18]);
  });

  it('closes a batch early rather than exceed tokenCap', () => {
    const cap = 20;
    const batches = makeBatches(data, { batchSize: 8, tokenCap: cap, seed: 9, epoch: 0 });
    const tokens = (b: Sample[]) => b.reduce((t, s) => t + s.prompt.length + s.response.length, 0);
    expect(batches.every((b) => tokens(b) <= cap && b.length <= 8)).toBe(true);
    // Closed early: the next batch's first sample would not have fit.
    for (let i = 0; i + 1 < batches.length; i++) {
      if (batches[i].length < 8) {
        const next = batches[i + 1][0];
        expect(tokens(batches[i]) + next.prompt.length + next.response.length).toBeGreaterThan(cap);
      }
    }
    expect(ids(batches).flat().sort((a, b) => a - b)).toEqual(data.map(idOf));
    // Same order as without the cap: the cap only moves batch boundaries.
    expect(ids(batches).flat()).toEqual(ids(makeBatches(data, { batchSize: 8, seed: 9, epoch: 0 })).flat());
  });

  it('names the sample that alone exceeds tokenCap', () => {
    const big = [...data.slice(0, 5), { prompt: [1, 2, 3], response: Array(30).fill(1) }, ...data.slice(5)];
    expect(() => makeBatches(big, { tokenCap: 20, seed: 0, epoch: 0 })).toThrowError(
      expect.objectContaining({ code: 'HOPSCOTCH_ERR_TOKEN_CAP', message: expect.stringMatching(/sample 5 has 33 tokens/) }),
    );
  });

  it('keeps data order with ordered: true and rejects bad sizes', () => {
    expect(ids(makeBatches(data.slice(0, 5), { batchSize: 2, seed: 3, epoch: 1, ordered: true }))).toEqual([[0, 1], [2, 3], [4]]);
    expect(makeBatches([], { seed: 0, epoch: 0 })).toEqual([]);
    expect(() => makeBatches(data, { batchSize: 0, seed: 0, epoch: 0 })).toThrowError(
      expect.objectContaining({ code: 'HOPSCOTCH_ERR_ARGUMENT' }),
    );
  });
});
