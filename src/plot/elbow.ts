/**
 * Elbow of a curve by the max-distance-to-chord rule: scale both axes to [0, 1], draw
 * the chord from the first point to the last, and pick the point farthest from it
 * (perpendicular distance). Scaling first makes the choice independent of units.
 */

/**
 * Index of the elbow of the curve through `(xs[i], ys[i])`, or null when there are
 * fewer than three points (no interior point) or every point lies on the chord.
 * Ties go to the lower index. `xs` defaults to 0, 1, 2, ...
 */
export function elbowIndex(ys: readonly number[], xs?: readonly number[]): number | null {
  const n = ys.length;
  if (xs !== undefined && xs.length !== n) throw new RangeError(`elbowIndex: ${xs.length} x values for ${n} y values`);
  if (n < 3) return null;
  const x = xs ?? ys.map((_, i) => i);
  const norm = (v: readonly number[]) => {
    const lo = Math.min(...v);
    const span = Math.max(...v) - lo || 1;
    return v.map((a) => (a - lo) / span);
  };
  const px = norm(x);
  const py = norm(ys);
  const dx = px[n - 1] - px[0];
  const dy = py[n - 1] - py[0];
  const len = Math.hypot(dx, dy);
  if (len === 0) return null;
  let best = -1;
  let bestDist = 1e-12;
  for (let i = 1; i < n - 1; i++) {
    const d = Math.abs(dy * (px[i] - px[0]) - dx * (py[i] - py[0])) / len;
    if (d > bestDist) {
      bestDist = d;
      best = i;
    }
  }
  return best < 0 ? null : best;
}
