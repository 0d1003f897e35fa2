/**
 * Largest singular value of each block's weight matrices (paper Figure 4, appendix A.3):
 * sigma_max(W) bounds how much the block can change the residual stream, so blocks with
 * sigma_max near 0 are safe to skip.
 *
 * sigma_max is found by power iteration on W^T W from a seeded random unit vector:
 * v <- W^T W v / ||W^T W v||, sigma = ||W v||, until the relative change of sigma is at
 * most `tolerance`. The iteration runs in the addon on the libuv pool (native/core/spectral.h),
 * with float64 sums in a fixed order; weights are read straight from the checkpoint's
 * safetensors files (any dtype the engine reads, widened to float32), one matrix at a time,
 * so no model needs to be loaded.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { mulberry32 } from '../batching.js';
import { ErrorCodes, HopscotchError, check, fromNative } from '../errors.js';
import { binding, withAbortFlag, type NativePowerIteration } from '../native/binding.js';
import { throwIfAborted } from '../progress.js';

export interface PowerIterationOptions {
  /** Seed of the starting vector. Default 0. */
  seed?: number;
  /** Stop when |sigma_k - sigma_{k-1}| <= tolerance * sigma_k. Default 1e-6. */
  tolerance?: number;
  /** Default 1000. */
  maxIterations?: number;
  /** Cancels between iterations; the call rejects with `signal.reason`. */
  signal?: AbortSignal;
}

export interface SingularValue {
  sigma: number;
  iterations: number;
  converged: boolean;
}

/** The native options: a seeded start vector of `cols` values (uniform in [-0.5, 0.5)) and the stopping rule. */
function powerIteration(cols: number, opts: PowerIterationOptions): NativePowerIteration {
  const rng = mulberry32(opts.seed ?? 0);
  const start = new Float64Array(cols);
  for (let c = 0; c < cols; c++) start[c] = rng() - 0.5;
  return { start, tolerance: opts.tolerance ?? 1e-6, maxIterations: opts.maxIterations ?? 1000 };
}

/** Largest singular value of the row-major `rows` x `cols` matrix `w` (computed in the addon, off the main thread). */
export async function topSingularValue(
  w: Float32Array | Float64Array,
  rows: number,
  cols: number,
  opts: PowerIterationOptions = {},
): Promise<SingularValue> {
  check(Number.isInteger(rows) && rows > 0 && Number.isInteger(cols) && cols > 0, `bad matrix shape ${rows} x ${cols}`);
  check(w.length === rows * cols, `matrix has ${w.length} values, expected ${rows} x ${cols}`);
  const p = powerIteration(cols, opts);
  return withAbortFlag(opts.signal, (abort) => binding().topSingularValue(w, rows, cols, p, abort));
}

/** The block matrices, in figure order, with their tensor name suffixes. */
export const BLOCK_MATRICES = [
  ['q', 'self_attn.q_proj.weight'],
  ['k', 'self_attn.k_proj.weight'],
  ['v', 'self_attn.v_proj.weight'],
  ['o', 'self_attn.o_proj.weight'],
  ['gate', 'mlp.gate_proj.weight'],
  ['up', 'mlp.up_proj.weight'],
  ['down', 'mlp.down_proj.weight'],
] as const;

export type BlockMatrix = (typeof BLOCK_MATRICES)[number][0];

export interface SpectralOptions extends PowerIterationOptions {
  /** Layers to analyse. Default: all. */
  layers?: readonly number[];
  /** Matrices to analyse. Default: all seven. */
  matrices?: readonly BlockMatrix[];
  /** Called after each matrix. */
  onMatrix?: (layer: number, matrix: BlockMatrix, result: SingularValue | null) => void;
}

export interface SpectralNorms {
  layers: number[];
  matrices: BlockMatrix[];
  /** layers x matrices; null where the checkpoint has no such tensor (e.g. a DeciLM no-op attention). */
  sigma: (number | null)[][];
  iterations: (number | null)[][];
  /** Matrices whose power iteration hit maxIterations. */
  unconverged: { layer: number; matrix: BlockMatrix }[];
}

/** Where each tensor lives: model.safetensors, or the shards of model.safetensors.index.json (validated natively). */
function tensorFiles(dir: string): Map<string, { file: string; shape: number[] }> {
  try {
    return new Map(binding().inspectCheckpoint(dir).map((t) => [t.name, { file: t.file, shape: t.shape }]));
  } catch (err) {
    throw fromNative(err);
  }
}

/** Number of decoder layers, from config.json (num_hidden_layers, or n_layer / num_layers). */
function numLayersOf(dir: string): number {
  try {
    const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const n = c.num_hidden_layers ?? c.n_layer ?? c.num_layers;
    if (Number.isInteger(n)) return n as number;
  } catch (err) {
    throw new HopscotchError(ErrorCodes.CONFIG_INVALID, `cannot read ${join(dir, 'config.json')}: ${(err as Error).message}`, { cause: err });
  }
  throw new HopscotchError(ErrorCodes.CONFIG_INVALID, `${join(dir, 'config.json')} has no num_hidden_layers`);
}

/** sigma_max of every block matrix of the checkpoint in `dir` (a model folder), one matrix at a time in the addon. */
export async function spectralNorms(dir: string, opts: SpectralOptions = {}): Promise<SpectralNorms> {
  const files = tensorFiles(dir);
  const n = numLayersOf(dir);
  const layers = [...(opts.layers ?? Array.from({ length: n }, (_, l) => l))];
  for (const l of layers) check(Number.isInteger(l) && l >= 0 && l < n, `layer ${l} is out of range [0, ${n})`);
  const known = BLOCK_MATRICES.map(([m]) => m) as BlockMatrix[];
  const matrices = [...(opts.matrices ?? known)];
  for (const m of matrices) check(known.includes(m), `unknown matrix "${m}" (known: ${known.join(', ')})`);
  const out: SpectralNorms = { layers, matrices, sigma: [], iterations: [], unconverged: [] };
  for (const l of layers) {
    const row: (number | null)[] = [];
    const its: (number | null)[] = [];
    for (const m of matrices) {
      throwIfAborted(opts.signal);
      const suffix = BLOCK_MATRICES.find(([k]) => k === m)![1];
      const name = `model.layers.${l}.${suffix}`;
      const where = files.get(name);
      if (!where) {
        row.push(null);
        its.push(null);
        opts.onMatrix?.(l, m, null);
        continue;
      }
      if (where.shape.length !== 2)
        throw new HopscotchError(ErrorCodes.SHAPE, `${name} in ${where.file} has shape [${where.shape}], expected a matrix`);
      const p = powerIteration(where.shape[1], opts);
      const r = await withAbortFlag(opts.signal, (abort) => binding().tensorTopSingularValue(where.file, name, p, abort));
      if (!r.converged) out.unconverged.push({ layer: l, matrix: m });
      row.push(r.sigma);
      its.push(r.iterations);
      opts.onMatrix?.(l, m, r);
    }
    out.sigma.push(row);
    out.iterations.push(its);
  }
  return out;
}
