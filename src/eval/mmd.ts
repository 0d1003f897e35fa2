/**
 * Distribution shift of hidden states (paper section 4.4, Table 3): the maximum mean
 * discrepancy between the base model's hidden states and a modified model's, per layer.
 *
 * Estimator: the unbiased MMD^2 U-statistic (Gretton et al. 2012, JMLR, eq. 3) with a
 * Gaussian kernel k(a, b) = exp(-||a - b||^2 / (2 sigma^2)), sigma = the median Euclidean
 * distance between distinct points of the pooled sample X u Y (the median heuristic).
 * With m = n (paired samples: z_i = (x_i, y_i)),
 *
 *   MMD^2_u = 1/(m(m-1)) sum_{i != j} [k(x_i, x_j) + k(y_i, y_j) - k(x_i, y_j) - k(x_j, y_i)]
 *
 * which stays unbiased when x_i and y_i are dependent (the same token through two
 * models) and is exactly 0 when X = Y. With m != n, the two-sample form (eq. 5 of the
 * same paper) is used:
 *
 *   1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j) - 2/(mn) sum_{i, j} k(x_i, y_j)
 *
 * Both are unbiased, so for two samples of one distribution they scatter around 0 and
 * can be slightly negative.
 *
 * The pairwise distances and kernel sums run in the addon on the libuv pool
 * (native/core/mmd.h), in float64.
 *
 * For a model, the same token positions (a seeded subsample of every prompt and
 * response token of the samples) are taken from both models, so X and Y are the two
 * models' hidden states of the same inputs (paired, m = n).
 */
import { mixSeed, shuffledIndices } from '../batching.js';
import { check } from '../errors.js';
import { binding, withAbortFlag } from '../native/binding.js';
import { throwIfAborted } from '../progress.js';
import type { Model, Sample, Theta } from '../types.js';

type Vectors = Float32Array | Float64Array;

export interface Mmd2Result {
  /** Unbiased MMD^2 estimate. */
  mmd2: number;
  /** Kernel bandwidth sigma used. */
  bandwidth: number;
}

/**
 * Unbiased MMD^2 between the rows of `x` (m x dim) and of `y` (n x dim), both row-major,
 * m, n >= 2; rows i of x and y are taken as a pair when m = n (see the file comment).
 * `bandwidth` defaults to the median heuristic over the pooled rows (a median of 0, all
 * points equal, falls back to 1). Computed in the addon, off the main thread; `signal`
 * cancels it (the call rejects with `signal.reason`).
 */
export async function mmd2Unbiased(
  x: Vectors,
  y: Vectors,
  dim: number,
  opts: { bandwidth?: number; signal?: AbortSignal } = {},
): Promise<Mmd2Result> {
  check(Number.isInteger(dim) && dim > 0, `dim must be a positive integer, got ${dim}`);
  check(x.length % dim === 0 && y.length % dim === 0, `sample lengths ${x.length} and ${y.length} are not multiples of dim ${dim}`);
  const m = x.length / dim;
  const n = y.length / dim;
  check(m >= 2 && n >= 2, `MMD needs at least two points per sample, got ${m} and ${n}`);
  const { bandwidth } = opts;
  if (bandwidth !== undefined) check(Number.isFinite(bandwidth) && bandwidth > 0, `bandwidth must be a positive number, got ${bandwidth}`);
  return withAbortFlag(opts.signal, (abort) => binding().mmd2(x, y, dim, bandwidth, abort));
}

/** A modified model to compare with the base: its theta and skip list. */
export interface ModelVariant {
  name: string;
  theta?: Theta;
  skip?: readonly number[];
}

export interface LayerShiftOptions {
  /** Blocks whose output hidden state is compared (0-based). Default: every block. */
  layers?: readonly number[];
  /** Token positions sampled from all prompt and response tokens. Default 512. */
  maxTokens?: number;
  /** Seed of the token subsample. Default 0. */
  seed?: number;
  /** Samples per engine call. Default 4. */
  batchSize?: number;
  signal?: AbortSignal;
}

export interface LayerShift {
  /** Block indices; entry i is the output hidden state of block layers[i]. */
  layers: number[];
  tokens: number;
  variants: { name: string; mmd2: number[]; bandwidth: number[] }[];
}

/** Hidden states (tokens x hidden) of the outputs of `layers`, at the chosen token positions. */
async function hiddenAt(
  model: Model,
  samples: readonly Sample[],
  chosen: readonly boolean[],
  layers: readonly number[],
  variant: { theta?: Theta; skip?: readonly number[] },
  batchSize: number,
  tokens: number,
  signal?: AbortSignal,
): Promise<Float32Array[]> {
  const h = model.config.hiddenSize;
  const out = layers.map(() => new Float32Array(tokens * h));
  let pos = 0;
  let row = 0;
  for (let s = 0; s < samples.length; s += batchSize) {
    throwIfAborted(signal);
    const batch = samples.slice(s, s + batchSize);
    const stats = await model.layerStats(batch, {
      theta: variant.theta,
      skip: variant.skip ? [...variant.skip] : undefined,
      hiddenLayers: layers.map((l) => l + 1),
    });
    const batchTokens = batch.reduce((t, x) => t + x.prompt.length + x.response.length, 0);
    for (let t = 0; t < batchTokens; t++, pos++) {
      if (!chosen[pos]) continue;
      layers.forEach((_, li) => out[li].set(stats.hidden[li].subarray(t * h, (t + 1) * h), row * h));
      row++;
    }
  }
  return out;
}

/**
 * MMD^2 per layer between the base model (all-ones theta, nothing skipped) and each
 * variant, on hidden states of the same token positions of `samples`.
 */
export async function layerShift(
  model: Model,
  samples: readonly Sample[],
  variants: readonly ModelVariant[],
  opts: LayerShiftOptions = {},
): Promise<LayerShift> {
  const n = model.config.numLayers;
  const layers = [...(opts.layers ?? Array.from({ length: n }, (_, l) => l))];
  for (const l of layers) check(Number.isInteger(l) && l >= 0 && l < n, `layer ${l} is out of range [0, ${n})`);
  const maxTokens = opts.maxTokens ?? 512;
  const batchSize = opts.batchSize ?? 4;
  check(Number.isInteger(maxTokens) && maxTokens >= 2, `maxTokens must be an integer >= 2, got ${maxTokens}`);
  check(Array.isArray(samples) && samples.length > 0, 'samples must be a non-empty array');
  const total = samples.reduce((t, s) => t + s.prompt.length + s.response.length, 0);
  const take = Math.min(total, maxTokens);
  check(take >= 2, `the samples have ${total} tokens; MMD needs at least 2`);
  const chosen = new Array<boolean>(total).fill(false);
  for (const i of shuffledIndices(total, mixSeed(opts.seed ?? 0, 0x4d4d44)).slice(0, take)) chosen[i] = true;

  const h = model.config.hiddenSize;
  const base = await hiddenAt(model, samples, chosen, layers, {}, batchSize, take, opts.signal);
  const out: LayerShift = { layers, tokens: take, variants: [] };
  for (const v of variants) {
    const hv = await hiddenAt(model, samples, chosen, layers, v, batchSize, take, opts.signal);
    const r: Mmd2Result[] = [];
    for (let li = 0; li < layers.length; li++) r.push(await mmd2Unbiased(base[li], hv[li], h, { signal: opts.signal }));
    out.variants.push({ name: v.name, mmd2: r.map((x) => x.mmd2), bandwidth: r.map((x) => x.bandwidth) });
  }
  return out;
}
