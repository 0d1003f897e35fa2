/**
 * The Hopscotch figures, from the library's result objects:
 *  - probe losses per candidate block at each greedy step, and the loss-per-block-removed
 *    curve with its elbow (paper Figure 2), from a selection trace;
 *  - MMD per layer between the base model's hidden states and a modified model's
 *    (paper Table 3), one bar series per variant;
 *  - the largest singular value of each block matrix as a layers x matrices heatmap
 *    (paper Figure 4);
 *  - generation speed against the number of skipped blocks.
 */
import type { TraceEntry } from '../checkpoint.js';
import { barChart, heatmap, lineChart, type LineSeries } from './charts.js';
import { elbowIndex } from './elbow.js';

/** Loss of every probed candidate, one series per greedy step (x = layer index). */
export function probeLossChart(trace: readonly TraceEntry[], opts: { title?: string } = {}): string {
  const steps = [...new Set(trace.map((e) => e.step))].sort((a, b) => a - b);
  const series: LineSeries[] = steps.map((s) => ({
    name: `step ${s}`,
    points: trace
      .filter((e) => e.step === s)
      .map((e) => ({ x: e.candidate, y: e.score }))
      .sort((a, b) => a.x - b.x),
  }));
  return lineChart({
    title: opts.title ?? 'Probe loss per candidate attention block',
    xLabel: 'candidate layer (attention block removed)',
    yLabel: 'probe loss (mean over one epoch)',
    series,
    integerX: true,
  });
}

/** The best (lowest) score of each step: the loss after removing k blocks, k = 1, 2, ... */
export function removalCurve(trace: readonly TraceEntry[]): { k: number; layer: number; loss: number }[] {
  const byStep = new Map<number, TraceEntry>();
  for (const e of trace) {
    const cur = byStep.get(e.step);
    if (!cur || e.score < cur.score || (e.score === cur.score && e.candidate < cur.candidate)) byStep.set(e.step, e);
  }
  return [...byStep.entries()].sort((a, b) => a[0] - b[0]).map(([step, e]) => ({ k: step, layer: e.candidate, loss: e.score }));
}

/**
 * Loss per block removed with the elbow marked. `baseLoss` (the unmodified model's loss)
 * adds the point k = 0. Returns the SVG and the elbow's k (null when the curve has
 * fewer than three points).
 */
export function removalCurveChart(
  trace: readonly TraceEntry[],
  opts: { baseLoss?: number; title?: string } = {},
): { svg: string; elbowK: number | null } {
  const curve = removalCurve(trace);
  const points = curve.map((c) => ({ x: c.k, y: c.loss }));
  if (opts.baseLoss !== undefined && Number.isFinite(opts.baseLoss)) points.unshift({ x: 0, y: opts.baseLoss });
  const i = elbowIndex(
    points.map((p) => p.y),
    points.map((p) => p.x),
  );
  const elbowK = i === null ? null : points[i].x;
  const svg = lineChart({
    title: opts.title ?? 'Loss per attention block removed',
    xLabel: 'attention blocks removed (k)',
    yLabel: 'loss',
    series: [{ name: 'best probe loss', points }],
    markers: i === null ? [] : [{ x: points[i].x, y: points[i].y, label: `elbow: k = ${elbowK}` }],
    integerX: true,
  });
  return { svg, elbowK };
}

/** MMD^2 per layer, one bar series per modified model (e.g. NoScale and rescaled). */
export function mmdChart(
  layers: readonly number[],
  series: readonly { name: string; values: readonly number[] }[],
  opts: { title?: string } = {},
): string {
  return barChart({
    title: opts.title ?? 'Hidden-state shift from the base model (unbiased MMD²)',
    xLabel: 'layer (output hidden state)',
    yLabel: 'MMD² vs base',
    categories: layers.map(String),
    series: series.map((s) => ({ name: s.name, values: [...s.values] })),
  });
}

/** Largest singular value per layer (rows) and matrix (columns); null = absent. */
export function spectralHeatmap(
  layers: readonly number[],
  matrices: readonly string[],
  values: readonly (readonly (number | null)[])[],
  opts: { title?: string } = {},
): string {
  return heatmap({
    title: opts.title ?? 'Largest singular value of each block matrix',
    rowLabel: 'layer',
    colLabel: 'weight matrix',
    rows: layers.map(String),
    cols: [...matrices],
    values: values.map((r) => [...r]),
  });
}

/** Tokens/s against blocks skipped: one series per (phase, batch size). */
export function speedChart(
  rows: readonly { skipped: number; batch: number; prefillTokensPerSec: number; decodeTokensPerSec: number }[],
  opts: { title?: string } = {},
): string {
  const batches = [...new Set(rows.map((r) => r.batch))].sort((a, b) => a - b);
  const series: LineSeries[] = [];
  for (const phase of ['prefill', 'decode'] as const)
    for (const b of batches)
      series.push({
        name: `${phase}, batch ${b}`,
        dashed: phase === 'decode',
        points: rows
          .filter((r) => r.batch === b)
          .map((r) => ({ x: r.skipped, y: phase === 'prefill' ? r.prefillTokensPerSec : r.decodeTokensPerSec }))
          .sort((a, b2) => a.x - b2.x),
      });
  return lineChart({
    title: opts.title ?? 'Generation speed vs attention blocks skipped',
    xLabel: 'attention blocks skipped',
    yLabel: 'tokens / s',
    series,
    integerX: true,
  });
}
