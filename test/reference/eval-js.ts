/**
 * Power iteration and the unbiased MMD^2 as they were written in JavaScript before they
 * moved into the addon (native/core/spectral.h, native/core/mmd.h): sequential float64
 * loops, kept as the reference the native results are compared with.
 */
import { mulberry32 } from '../../src/batching.js';

type Vectors = Float32Array | Float64Array;

/** Largest singular value of the row-major `rows` x `cols` matrix `w`. */
export function topSingularValueJs(
  w: Float32Array | Float64Array,
  rows: number,
  cols: number,
  opts: { seed?: number; tolerance?: number; maxIterations?: number } = {},
): { sigma: number; iterations: number; converged: boolean } {
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

/** Squared Euclidean distances between every pair of rows of `z` (count x dim), row-major. */
function pairwiseSquared(z: Vectors, count: number, dim: number): Float64Array {
  const norms = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += z[i * dim + k] * z[i * dim + k];
    norms[i] = s;
  }
  const d = new Float64Array(count * count);
  for (let i = 0; i < count; i++) {
    const oi = i * dim;
    for (let j = i + 1; j < count; j++) {
      const oj = j * dim;
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += z[oi + k] * z[oj + k];
      const v = Math.max(0, norms[i] + norms[j] - 2 * dot);
      d[i * count + j] = v;
      d[j * count + i] = v;
    }
  }
  return d;
}

function median(values: Float64Array): number {
  if (values.length === 0) return 0;
  const s = Float64Array.from(values).sort();
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/**
 * Unbiased MMD^2 between the rows of `x` (m x dim) and of `y` (n x dim), both row-major,
 * m, n >= 2; rows i of x and y are taken as a pair when m = n (see the file comment). `bandwidth` defaults to the median heuristic over the pooled rows (a
 * median of 0, all points equal, falls back to 1).
 */
export function mmd2UnbiasedJs(x: Vectors, y: Vectors, dim: number, opts: { bandwidth?: number } = {}): { mmd2: number; bandwidth: number } {
  const m = x.length / dim;
  const n = y.length / dim;
  const count = m + n;
  const z = new Float64Array(count * dim);
  z.set(x, 0);
  z.set(y, m * dim);
  const d = pairwiseSquared(z, count, dim);
  let bandwidth = opts.bandwidth;
  if (bandwidth === undefined) {
    const upper = new Float64Array((count * (count - 1)) / 2);
    let at = 0;
    for (let i = 0; i < count; i++) for (let j = i + 1; j < count; j++) upper[at++] = Math.sqrt(d[i * count + j]);
    bandwidth = median(upper) || 1;
  }
  const g = 1 / (2 * bandwidth * bandwidth);
  const paired = m === n;
  let kxx = 0;
  let kyy = 0;
  let kxy = 0;
  for (let i = 0; i < count; i++)
    for (let j = i + 1; j < count; j++) {
      if (paired && j === i + m) continue; // k(x_i, y_i): left out of the paired U-statistic
      const k = Math.exp(-d[i * count + j] * g);
      if (i < m && j < m) kxx += 2 * k;
      else if (i >= m && j >= m) kyy += 2 * k;
      else kxy += k;
    }
  const mmd2 = paired
    ? (kxx + kyy - 2 * kxy) / (m * (m - 1))
    : kxx / (m * (m - 1)) + kyy / (n * (n - 1)) - (2 * kxy) / (m * n);
  return { mmd2, bandwidth };
}

