/**
 * Deterministic batching: a small seeded PRNG (mulberry32), a seed mixer, a
 * Fisher-Yates shuffle, and `makeBatches`, which cuts one shuffled epoch of samples
 * into batches of at most `batchSize` samples and `tokenCap` tokens.
 * The same (data, seed, epoch, batchSize, tokenCap) always gives the same batches.
 */
import { ErrorCodes, HopscotchError, check } from './errors.js';
import type { Sample } from './types.js';

/** A PRNG returning uniform floats in [0, 1), 32 bits of state. */
export type Rng = () => number;

/** mulberry32: a tiny, fast 32-bit PRNG. Same seed, same sequence, on every platform. */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Mixes integers into one 32-bit seed (murmur3 finaliser after each part), so that
 * nearby inputs such as (seed, epoch) and (seed + 1, epoch - 1) give unrelated streams.
 */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** Indices 0..n-1 in a seeded random order (Fisher-Yates). */
export function shuffledIndices(n: number, seed: number): number[] {
  const idx = Array.from({ length: n }, (_, i) => i);
  const rng = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const tmp = idx[i];
    idx[i] = idx[j];
    idx[j] = tmp;
  }
  return idx;
}

export interface BatchingOptions {
  /** Most samples per batch. Default 32 (the paper). */
  batchSize?: number;
  /** Most tokens (prompt + response, summed over the batch) per batch. */
  tokenCap?: number;
  /** Base seed of the shuffle. */
  seed: number;
  /** Epoch number: each epoch of the same seed has its own order. */
  epoch: number;
  /** Keep the data order instead of shuffling (evaluation). Default false. */
  ordered?: boolean;
}

export function sampleTokens(s: Sample): number {
  return s.prompt.length + s.response.length;
}

/**
 * One epoch of batches: every sample exactly once, in an order drawn from (seed, epoch).
 * A batch is closed when it holds `batchSize` samples or when the next sample would push
 * it over `tokenCap`. A single sample longer than `tokenCap` is a HOPSCOTCH_ERR_TOKEN_CAP
 * error naming its index in `data`.
 */
export function makeBatches(data: readonly Sample[], opts: BatchingOptions): Sample[][] {
  const { batchSize = 32, tokenCap, seed, epoch, ordered = false } = opts;
  check(Number.isInteger(batchSize) && batchSize > 0, `batchSize must be a positive integer, got ${batchSize}`);
  check(
    tokenCap === undefined || (Number.isInteger(tokenCap) && tokenCap > 0),
    `tokenCap must be a positive integer, got ${tokenCap}`,
  );
  check(Number.isInteger(seed), `seed must be an integer, got ${seed}`);
  check(Number.isInteger(epoch) && epoch >= 0, `epoch must be a non-negative integer, got ${epoch}`);
  if (tokenCap !== undefined) {
    for (let i = 0; i < data.length; i++) {
      const n = sampleTokens(data[i]);
      if (n > tokenCap)
        throw new HopscotchError(
          ErrorCodes.TOKEN_CAP,
          `sample ${i} has ${n} tokens (prompt ${data[i].prompt.length} + response ${data[i].response.length}), more than tokenCap ${tokenCap}`,
        );
    }
  }
  const order = ordered ? Array.from(data.keys()) : shuffledIndices(data.length, mixSeed(seed, epoch));
  const batches: Sample[][] = [];
  let current: Sample[] = [];
  let tokens = 0;
  for (const i of order) {
    const s = data[i];
    const n = sampleTokens(s);
    if (current.length === batchSize || (tokenCap !== undefined && current.length > 0 && tokens + n > tokenCap)) {
      batches.push(current);
      current = [];
      tokens = 0;
    }
    current.push(s);
    tokens += n;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}
