/**
 * Largest singular value of each block's weight matrices (paper Figure 4, appendix A.3):
 * sigma_max(W) bounds how much the block can change the residual stream, so blocks with
 * sigma_max near 0 are safe to skip.
 *
 * sigma_max is found by power iteration on W^T W from a seeded random unit vector:
 * v <- W^T W v / ||W^T W v||, sigma = ||W v||, until the relative change of sigma is at
 * most `tolerance`. Sums are accumulated in float64. Weights are read straight from the
 * checkpoint's safetensors files (any dtype the engine reads, returned as float32), one
 * matrix at a time, so no model needs to be loaded.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { mulberry32 } from '../batching.js';
import { ErrorCodes, HopscotchError, check, fromNative } from '../errors.js';
import { binding } from '../native/binding.js';
import { throwIfAborted } from '../progress.js';

export interface PowerIterationOptions {
  /** Seed of the starting vector. Default 0. */
  seed?: number;
  /** Stop when |sigma_k - sigma_{k-1}| <= tolerance * sigma_k. Default 1e-6. */
  tolerance?: number;
  /** Default 1000. */
  maxIterations?: number;
}

export interface SingularValue {
  sigma: number;
  iterations: number;
  converged: boolean;
}

/** Largest singular value of the row-major `rows` x `cols` matrix `w`. */
export function topSingularValue(
  w: Float32Array | Float64Array,
  rows: number,
  cols: number,
  opts: PowerIterationOptions = {},
): SingularValue {
  check(Number.isInteger(rows) && rows > 0 && Number.isInteger(cols) && cols > 0, `bad matrix shape ${rows} x ${cols}`);
  check(w.length === rows * cols, `matrix has ${w.length} values, expected ${rows} x ${cols}`);
  const tolerance = opts.tolerance ?? 1e-6;
  const maxIterations = opts.maxIterations ?? 1000;
  const rng = mulberry32(opts.seed ?? 0);
  let v: Float64Array = new Float64Array(cols);
  for (let c = 0; c < cols; c++) v[c] = rng() - 0.5;
  const normalize = (a: Float64Array): number => {
    let s = 0;
    for (let i = 0; i < a.length; i++) s += a[i] * a[i];
    const n = Math.sqrt(s);
    if (n > 0) for (let i = 0; i < a.length; i++) a[i] /= n;
    return n;
  };
  normalize(v);
  const u = new Float64Array(rows);
  let next: Float64Array = new Float64Array(cols);
  let sigma = 0;
  for (let it = 1; it <= maxIterations; it++) {
    // u = W v
    for (let r = 0; r < rows; r++) {
      let s = 0;
      const o = r * cols;
      for (let c = 0; c < cols; c++) s += w[o + c] * v[c];
      u[r] = s;
    }
    const prev = sigma;
    sigma = normalize(u);
    if (sigma === 0) return { sigma: 0, iterations: it, converged: true };
    // next = W^T u (u is unit), the direction of W^T W v
    next.fill(0);
    for (let r = 0; r < rows; r++) {
      const ur = u[r];
      const o = r * cols;
      for (let c = 0; c < cols; c++) next[c] += w[o + c] * ur;
    }
    normalize(next);
    [v, next] = [next, v];
    if (it > 1 && Math.abs(sigma - prev) <= tolerance * sigma) return { sigma, iterations: it, converged: true };
  }
  return { sigma, iterations: maxIterations, converged: false };
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
  signal?: AbortSignal;
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

/** Where each tensor lives: model.safetensors, or the shards of model.safetensors.index.json. */
function tensorFiles(dir: string): Map<string, { file: string; shape: number[] }> {
  const map = new Map<string, { file: string; shape: number[] }>();
  const index = join(dir, 'model.safetensors.index.json');
  let files: string[];
  if (existsSync(index)) {
    let j: { weight_map?: Record<string, string> };
    try {
      j = JSON.parse(readFileSync(index, 'utf8')) as typeof j;
    } catch (err) {
      throw new HopscotchError(ErrorCodes.SAFETENSORS_INDEX, `cannot read ${index}: ${(err as Error).message}`, { cause: err });
    }
    files = [...new Set(Object.values(j.weight_map ?? {}))].map((f) => join(dir, f));
  } else {
    files = [join(dir, 'model.safetensors')];
    if (!existsSync(files[0])) throw new HopscotchError(ErrorCodes.IO, `no model.safetensors or index in ${dir}`);
  }
  for (const file of files) {
    let info;
    try {
      info = binding().inspectSafetensors(file);
    } catch (err) {
      throw fromNative(err);
    }
    for (const t of info.tensors) map.set(t.name, { file, shape: t.shape });
  }
  return map;
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

/** sigma_max of every block matrix of the checkpoint in `dir` (a model folder). */
export function spectralNorms(dir: string, opts: SpectralOptions = {}): SpectralNorms {
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
      let w: Float32Array;
      try {
        w = binding().readTensor(where.file, name);
      } catch (err) {
        throw fromNative(err);
      }
      const r = topSingularValue(w, where.shape[0], where.shape[1], opts);
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
