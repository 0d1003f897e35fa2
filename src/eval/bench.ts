/**
 * Speed and memory of generation with k attention blocks skipped.
 *
 * For each (skip count, batch size): `batch` prompts of `promptTokens` seeded random
 * token ids are generated from greedily with no stop ids, so every run produces exactly
 * the requested tokens.
 *  - prefill: the time of `generate(maxNewTokens = 1)` (the prompt pass plus one token);
 *    tokens/s = batch x promptTokens / time;
 *  - decode: (time of `generate(maxNewTokens = 1 + newTokens)` - prefill time) per new
 *    token; tokens/s = batch x newTokens / that time.
 * Each timing is the median of `repeats` runs after one warm-up run. Memory is the
 * process's peak resident set size (`process.resourceUsage().maxRSS`), which never
 * decreases within a process; run each configuration in its own process (the CLI's
 * default) to compare peaks between configurations.
 */
import { mulberry32 } from '../batching.js';
import { check } from '../errors.js';
import { checkSkip } from '../layers.js';
import { throwIfAborted } from '../progress.js';
import type { Model, Theta } from '../types.js';

export interface BenchOptions {
  /** Numbers of skipped attention blocks. Default [0, 1, 2]. */
  skipCounts?: readonly number[];
  /** Layers to skip, in order: k skipped = the first k. Default {@link defaultSkipOrder}. */
  skipOrder?: readonly number[];
  /** Theta for the skipped configurations (b_att of skipped layers is ignored). Default ones. */
  theta?: Theta;
  /** Default [1, 8]. */
  batchSizes?: readonly number[];
  /** Default 128. */
  promptTokens?: number;
  /** Default 32. */
  newTokens?: number;
  /** Default 3. */
  repeats?: number;
  /** Seed of the prompt token ids. Default 0. */
  seed?: number;
  onRow?: (row: BenchRow) => void;
  signal?: AbortSignal;
}

export interface BenchRow {
  device: string;
  skipped: number;
  skip: number[];
  batch: number;
  promptTokens: number;
  newTokens: number;
  prefillMs: number;
  decodeMs: number;
  prefillTokensPerSec: number;
  decodeTokensPerSec: number;
  /** Peak resident set size of this process so far, bytes. */
  peakRssBytes: number;
  /** Resident set size after this configuration, bytes. */
  rssBytes: number;
}

/** Skip order used when none is given: from the second-to-last layer down, never layer 0 or the last. */
export function defaultSkipOrder(numLayers: number): number[] {
  const out: number[] = [];
  for (let l = numLayers - 2; l >= 1; l--) out.push(l);
  return out;
}

function medianOf(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** Prompts of `length` seeded random ids below `vocab`, avoiding `avoid`. */
export function randomPrompts(count: number, length: number, vocab: number, seed: number, avoid: readonly number[] = []): number[][] {
  const rng = mulberry32(seed);
  const bad = new Set(avoid);
  return Array.from({ length: count }, () => {
    const p: number[] = [];
    while (p.length < length) {
      const t = Math.floor(rng() * vocab);
      if (!bad.has(t)) p.push(t);
    }
    return p;
  });
}

/** Runs one configuration. */
export async function benchOne(
  model: Model,
  cfg: { skip: readonly number[]; batch: number; promptTokens: number; newTokens: number; repeats: number; seed: number; theta?: Theta },
  signal?: AbortSignal,
): Promise<BenchRow> {
  const theta = cfg.theta
    ? { bAtt: Float32Array.from(cfg.theta.bAtt), sAtt: cfg.theta.sAtt, bMlp: cfg.theta.bMlp, sMlp: cfg.theta.sMlp }
    : undefined;
  if (theta) for (const l of cfg.skip) theta.bAtt[l] = 0;
  const avoid = [...model.tokenizer.eosTokenIds, ...(model.tokenizer.bosTokenId === null ? [] : [model.tokenizer.bosTokenId])];
  const prompts = randomPrompts(cfg.batch, cfg.promptTokens, model.config.vocabSize, cfg.seed, avoid);
  const run = async (maxNewTokens: number): Promise<number> => {
    throwIfAborted(signal);
    const t0 = performance.now();
    const out = await model.generate(prompts, { maxNewTokens, stop: [], skip: [...cfg.skip], theta });
    const ms = performance.now() - t0;
    check(out.every((o) => o.length === maxNewTokens), 'generate returned fewer tokens than requested with no stop ids');
    return ms;
  };
  await run(2);
  const prefill: number[] = [];
  const total: number[] = [];
  for (let r = 0; r < cfg.repeats; r++) {
    prefill.push(await run(1));
    total.push(await run(1 + cfg.newTokens));
  }
  const prefillMs = medianOf(prefill);
  const decodeMs = Math.max(1e-6, medianOf(total) - prefillMs);
  return {
    device: model.device,
    skipped: cfg.skip.length,
    skip: [...cfg.skip],
    batch: cfg.batch,
    promptTokens: cfg.promptTokens,
    newTokens: cfg.newTokens,
    prefillMs,
    decodeMs,
    prefillTokensPerSec: (cfg.batch * cfg.promptTokens) / (prefillMs / 1000),
    decodeTokensPerSec: (cfg.batch * cfg.newTokens) / (decodeMs / 1000),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    rssBytes: process.memoryUsage().rss,
  };
}

/** Checks bench options and returns them with defaults filled in. */
export function benchPlan(numLayers: number, opts: BenchOptions = {}) {
  const skipCounts = [...(opts.skipCounts ?? [0, 1, 2])];
  const order = [...(opts.skipOrder ?? defaultSkipOrder(numLayers))];
  const batchSizes = [...(opts.batchSizes ?? [1, 8])];
  const promptTokens = opts.promptTokens ?? 128;
  const newTokens = opts.newTokens ?? 32;
  const repeats = opts.repeats ?? 3;
  const seed = opts.seed ?? 0;
  for (const k of skipCounts)
    check(Number.isInteger(k) && k >= 0 && k <= order.length, `skip count ${k} must be an integer in [0, ${order.length}] (the skip order has ${order.length} layers)`);
  checkSkip(order, numLayers, 'skipOrder');
  for (const b of batchSizes) check(Number.isInteger(b) && b > 0, `batch size must be a positive integer, got ${b}`);
  check(Number.isInteger(promptTokens) && promptTokens > 0, `promptTokens must be a positive integer, got ${promptTokens}`);
  check(Number.isInteger(newTokens) && newTokens > 0, `newTokens must be a positive integer, got ${newTokens}`);
  check(Number.isInteger(repeats) && repeats > 0, `repeats must be a positive integer, got ${repeats}`);
  const configs = skipCounts.flatMap((k) => batchSizes.map((b) => ({ skip: order.slice(0, k), batch: b })));
  return { configs, promptTokens, newTokens, repeats, seed };
}

/** Benchmarks every (skip count, batch size) in this process. */
export async function benchmark(model: Model, opts: BenchOptions = {}): Promise<BenchRow[]> {
  const plan = benchPlan(model.config.numLayers, opts);
  check(
    plan.promptTokens + plan.newTokens + 1 <= model.config.maxPositionEmbeddings,
    `promptTokens + newTokens + 1 exceeds max_position_embeddings ${model.config.maxPositionEmbeddings}`,
  );
  const rows: BenchRow[] = [];
  for (const c of plan.configs) {
    const row = await benchOne(model, { ...c, ...plan, theta: opts.theta }, opts.signal);
    opts.onRow?.(row);
    rows.push(row);
  }
  return rows;
}

const CSV_COLUMNS: (keyof BenchRow)[] = [
  'device',
  'skipped',
  'skip',
  'batch',
  'promptTokens',
  'newTokens',
  'prefillMs',
  'decodeMs',
  'prefillTokensPerSec',
  'decodeTokensPerSec',
  'peakRssBytes',
  'rssBytes',
];

/** Rows as CSV (header line first); the skip list is written as "a;b;c". */
export function benchCsv(rows: readonly BenchRow[]): string {
  const cell = (v: unknown) => (Array.isArray(v) ? v.join(';') : typeof v === 'number' ? String(Number(v.toPrecision(6))) : String(v));
  return [CSV_COLUMNS.join(','), ...rows.map((r) => CSV_COLUMNS.map((c) => cell(r[c])).join(','))].join('\n') + '\n';
}
