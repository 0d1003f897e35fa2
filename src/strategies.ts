/**
 * Selection strategies for `selectBlocks`: how candidate attention blocks are scored.
 *
 * A strategy only scores; the library runs the loop around it (which layers are
 * candidates, skipping, rescaling, checkpoints, progress, cancellation). Lower score =
 * skip first. Two schedules exist:
 *
 * - `iterative`: `rank` is called once per step with the current skip list and theta;
 *   the lowest-scoring candidate is skipped, theta is rescaled, and the next step
 *   re-ranks the remaining layers (the Hopscotch algorithm, paper section 3.1).
 * - `one-shot`: `rank` is called once with nothing skipped and theta all ones; the
 *   `count` lowest-scoring layers are skipped together, then theta is rescaled once.
 *
 * Every built-in strategy ends with a rescale (option `rescaleAfter`, default true), so
 * the thetas and losses of different strategies are comparable.
 *
 * Writing your own:
 *
 * ```ts
 * const byNorm: SelectionStrategy = {
 *   name: 'my-rule',
 *   schedule: 'one-shot',
 *   scoreIsLoss: false,
 *   async rank(ctx) { return ctx.candidates.map((l) => myScore(ctx.model, l)); },
 * };
 * await selectBlocks(model, data, { strategy: byNorm, count: 4 });
 * ```
 */
import { mixSeed, mulberry32 } from './batching.js';
import type { Dataset, LayerStats, Model, Theta } from './types.js';

/** What a strategy sees when it ranks. Everything is read-only. */
export interface StrategyContext {
  readonly model: Model;
  /** The ranking data: the recovery set, or its `probeSubset`. */
  readonly data: Dataset;
  /** Selection step, from 1. */
  readonly step: number;
  /** Layers already skipped, in the order they were chosen. */
  readonly skipped: readonly number[];
  /** The current theta (a copy: changing it has no effect). */
  readonly theta: Theta;
  /** The layers to score, ascending. */
  readonly candidates: readonly number[];
  /** The run's seed. */
  readonly seed: number;
  readonly signal?: AbortSignal;
  /**
   * The Hopscotch probe of one candidate: from the current theta, b_att of `candidate`
   * set to 0 and frozen, a fresh Adam at `probeLr`, one epoch over `data`; returns the
   * epoch's mean training loss. Probes are checkpointed: on resume, probes already
   * done return their recorded score without running again.
   */
  probe(candidate: number): Promise<number>;
  /** Per-layer similarity statistics at the current theta and skip list, averaged over `data` (token-weighted). */
  layerStats(): Promise<LayerStats>;
}

export interface SelectionStrategy {
  /** Recorded in the result and in checkpoints. */
  readonly name: string;
  readonly schedule: 'iterative' | 'one-shot';
  /** True when scores are losses: only then does `maxLoss` apply. */
  readonly scoreIsLoss: boolean;
  /** True when `rank` probes every candidate (used for time estimates only). */
  readonly probes?: boolean;
  /** One score per `ctx.candidates` entry, in the same order; lower = skip first. */
  rank(ctx: StrategyContext): Promise<readonly number[]>;
}

async function probeAll(ctx: StrategyContext): Promise<number[]> {
  const scores: number[] = [];
  for (const l of ctx.candidates) scores.push(await ctx.probe(l));
  return scores;
}

/** Hopscotch (paper 3.1): probe every remaining layer each step, skip the best, rescale. */
export const iterativeGreedy: SelectionStrategy = {
  name: 'iterative-greedy',
  schedule: 'iterative',
  scoreIsLoss: true,
  probes: true,
  rank: probeAll,
};

/** Probe every layer once from the original model and skip the best `count` (paper A.5, Table 9). */
export const fullGreedy: SelectionStrategy = {
  name: 'full-greedy',
  schedule: 'one-shot',
  scoreIsLoss: true,
  probes: true,
  rank: probeAll,
};

/**
 * LLM-Drop: importance = 1 - cos(input, output) of a sub-layer, averaged over tokens;
 * the least important layers are dropped first. `attn` uses the attention sub-layer
 * (cos(h, x1)); `mlp` and `block` rank the attention blocks by the MLP sub-layer's or
 * the whole block's similarity instead.
 */
export function similarity(variant: 'attn' | 'mlp' | 'block'): SelectionStrategy {
  const field = variant === 'attn' ? 'cosAttn' : variant === 'mlp' ? 'cosMlp' : 'cosBlock';
  return {
    name: `similarity-${variant}`,
    schedule: 'one-shot',
    scoreIsLoss: false,
    async rank(ctx) {
      const stats = await ctx.layerStats();
      return ctx.candidates.map((l) => 1 - stats[field][l]);
    },
  };
}

/** ShortGPT: block influence (1 - cos(h, h_next)), lowest first. */
export const blockInfluence: SelectionStrategy = {
  name: 'block-influence',
  schedule: 'one-shot',
  scoreIsLoss: false,
  async rank(ctx) {
    const stats = await ctx.layerStats();
    return ctx.candidates.map((l) => stats.blockInfluence[l]);
  },
};

const RANDOM_STREAM = 0x52414e44;

/** Uniformly random layers, from the run's seed. */
export const random: SelectionStrategy = {
  name: 'random',
  schedule: 'one-shot',
  scoreIsLoss: false,
  async rank(ctx) {
    const rng = mulberry32(mixSeed(ctx.seed, RANDOM_STREAM, ctx.step));
    return ctx.candidates.map(() => rng());
  },
};

export const STRATEGIES = {
  'iterative-greedy': iterativeGreedy,
  'full-greedy': fullGreedy,
  similarity: similarity('attn'),
  'similarity-attn': similarity('attn'),
  'similarity-mlp': similarity('mlp'),
  'similarity-block': similarity('block'),
  'block-influence': blockInfluence,
  random,
} as const satisfies Record<string, SelectionStrategy>;

export type StrategyName = keyof typeof STRATEGIES;
