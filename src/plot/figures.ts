/**
 * The Hopscotch figures, from the library's result objects:
 *  - probe losses per candidate block at each greedy step, and the loss-per-block-removed
 *    curve with its elbow (paper Figure 2), from a selection trace;
 *  - MMD per layer between the base model's hidden states and a modified model's
 *    (paper Table 3), one bar series per variant;
 *  - the largest singular value of each block matrix as a layers x matrices heatmap
 *    (paper Figure 4);
 *  - the training loss of a rescale;
 *  - generation speed against the number of skipped blocks.
 */
import { type TraceEntry, bestOfEachStep } from '../checkpoint.js';
import { type LineSeries, type Marker, barChart, heatmap, lineChart } from './charts.js';
import { elbowIndex } from './elbow.js';
import { PALETTE } from './svg.js';

/**
 * Loss of every probed candidate, one series per greedy step (x = layer index). Layers
 * not probed at a step (already skipped) leave a gap in that step's line. The layer
 * chosen at each step is circled: `order` (the selection's skip list) when given, else
 * the lowest score of each step.
 */
export function probeLossChart(trace: readonly TraceEntry[], opts: { title?: string; order?: readonly number[] } = {}): string {
  const steps = [...new Set(trace.map((e) => e.step))].sort((a, b) => a - b);
  const layers = trace.map((e) => e.candidate);
  const lo = Math.min(...layers);
  const hi = Math.max(...layers);
  const series: LineSeries[] = steps.map((s, i) => {
    const byLayer = new Map(trace.filter((e) => e.step === s).map((e) => [e.candidate, e.score]));
    const points = [];
    for (let l = lo; l <= hi; l++) points.push({ x: l, y: byLayer.get(l) ?? Number.NaN });
    return { name: `step ${s}`, points, color: PALETTE[i % PALETTE.length] };
  });
  const chosen: { step: number; layer: number }[] = [];
  if (opts.order && opts.order.length > 0 && steps.length === 1) for (const l of opts.order) chosen.push({ step: steps[0], layer: l });
  else if (opts.order && opts.order.length >= steps.length) steps.forEach((s, i) => chosen.push({ step: s, layer: opts.order![i] }));
  else for (const c of removalCurve(trace)) chosen.push({ step: c.k, layer: c.layer });
  const markers: Marker[] = [];
  for (const c of chosen) {
    const e = trace.find((t) => t.step === c.step && t.candidate === c.layer);
    const i = steps.indexOf(c.step);
    if (e) markers.push({ x: e.candidate, y: e.score, label: `skip ${e.candidate}`, guide: false, color: PALETTE[i % PALETTE.length] });
  }
  return lineChart({
    title: opts.title ?? 'Probe loss per candidate attention block',
    xLabel: 'candidate layer (attention block removed)',
    yLabel: 'probe loss (mean over one epoch)',
    series,
    markers,
    integerX: true,
  });
}

/**
 * The best (lowest) score of each step: the loss after removing k blocks, k = 1, 2, ...,
 * with the held-out loss of that probe when the selection recorded one.
 */
export function removalCurve(trace: readonly TraceEntry[]): { k: number; layer: number; loss: number; validation?: number }[] {
  return bestOfEachStep(trace).map((e) => ({
    k: e.step,
    layer: e.candidate,
    loss: e.score,
    ...(e.validation === undefined ? {} : { validation: e.validation }),
  }));
}

export interface RemovalCurveOptions {
  /** The unmodified model's loss on the selection's data: adds the point k = 0 to the probe curve. */
  baseLoss?: number;
  /**
   * Held-out loss with the first k blocks of the selection skipped and every scale 1
   * (NoScale), for k = 0, 1, 2, ...: drawn as its own series, and the elbow is taken on it.
   */
  heldOut?: readonly number[];
  /** Held-out loss of the rescaled model with k blocks skipped: one point. */
  rescaledHeldOut?: { k: number; loss: number };
  /** The unmodified model's loss on the selection's validation split (k = 0 of the validation curve). */
  baseValidation?: number;
  title?: string;
}

/**
 * Loss per block removed with the elbow marked (paper Figure 2): the selection's best
 * probe loss at each step and, when given, the held-out NoScale curve and the rescaled
 * point. The elbow is taken on the held-out curve when there is one, else on the probe
 * curve. Returns the SVG and the elbow's k (null when that curve has fewer than three
 * points or no bend).
 */
export function removalCurveChart(trace: readonly TraceEntry[], opts: RemovalCurveOptions = {}): { svg: string; elbowK: number | null } {
  const curve = removalCurve(trace);
  const probe = curve.map((c) => ({ x: c.k, y: c.loss }));
  if (opts.baseLoss !== undefined && Number.isFinite(opts.baseLoss)) probe.unshift({ x: 0, y: opts.baseLoss });
  // The held-out loss of each step's best probe, on the selection's own validation split.
  const validation = curve.every((c) => c.validation !== undefined) ? curve.map((c) => ({ x: c.k, y: c.validation! })) : [];
  const withBase = validation.length > 0 && opts.baseValidation !== undefined && Number.isFinite(opts.baseValidation);
  if (withBase) validation.unshift({ x: 0, y: opts.baseValidation! });
  const heldOut = (opts.heldOut ?? []).map((y, k) => ({ x: k, y }));
  // The elbow is taken on held-out data when there is a whole curve of it (k = 0 included).
  const onCurve = heldOut.length ? heldOut : withBase ? validation : probe;
  const i = elbowIndex(
    onCurve.map((p) => p.y),
    onCurve.map((p) => p.x),
  );
  const elbowK = i === null ? null : onCurve[i].x;
  const series: LineSeries[] = [];
  if (heldOut.length) {
    series.push({ name: 'held-out, NoScale', points: heldOut, color: PALETTE[0] });
    if (opts.rescaledHeldOut)
      series.push({ name: 'held-out, rescaled', points: [{ x: opts.rescaledHeldOut.k, y: opts.rescaledHeldOut.loss }], line: false, color: PALETTE[2] });
    series.push({ name: 'probe (selection data)', points: probe, color: PALETTE[1], dashed: true });
    if (validation.length) series.push({ name: 'probe, validation split', points: validation, color: PALETTE[3], dashed: true });
  } else {
    series.push({ name: 'best probe loss (training)', points: probe, color: PALETTE[1] });
    if (validation.length) series.push({ name: 'best probe, validation split', points: validation, color: PALETTE[3] });
  }
  const svg = lineChart({
    title: opts.title ?? 'Loss per attention block removed',
    xLabel: 'attention blocks removed (k)',
    yLabel: heldOut.length ? 'loss per sample (sum of response-token NLL)' : 'loss',
    series,
    markers: i === null ? [] : [{ x: onCurve[i].x, y: onCurve[i].y, label: `elbow: k = ${elbowK}` }],
    integerX: true,
  });
  return { svg, elbowK };
}

/** Training loss of a rescale per optimizer step, with the mean of each epoch at the epoch's last step. */
export function rescaleLossChart(stepLosses: readonly number[], epochLosses: readonly number[] = [], opts: { title?: string } = {}): string {
  const perEpoch = epochLosses.length > 0 ? stepLosses.length / epochLosses.length : 0;
  const series: LineSeries[] = [{ name: 'batch loss', points: stepLosses.map((y, i) => ({ x: i + 1, y })), color: PALETTE[5] }];
  if (Number.isInteger(perEpoch) && perEpoch > 0)
    series.push({ name: 'epoch mean', points: epochLosses.map((y, e) => ({ x: (e + 1) * perEpoch, y })), color: PALETTE[1] });
  return lineChart({
    title: opts.title ?? 'Rescale training loss',
    xLabel: 'optimizer step',
    yLabel: 'training loss',
    series,
    integerX: true,
  });
}

/** Layer labels with a star on the skipped ones. */
const layerLabel = (skipped: readonly number[]) => (l: number) => (skipped.includes(l) ? `${l}*` : String(l));

/** MMD^2 per layer, one bar series per modified model (e.g. NoScale and rescaled); `skipped` layers are starred. */
export function mmdChart(
  layers: readonly number[],
  series: readonly { name: string; values: readonly number[] }[],
  opts: { title?: string; skipped?: readonly number[] } = {},
): string {
  const skipped = opts.skipped ?? [];
  return barChart({
    title: opts.title ?? 'Hidden-state shift from the base model (unbiased MMD²)',
    xLabel: skipped.length ? 'layer (output hidden state; * = attention skipped)' : 'layer (output hidden state)',
    yLabel: 'MMD² vs base',
    categories: layers.map(layerLabel(skipped)),
    series: series.map((s) => ({ name: s.name, values: [...s.values] })),
  });
}

/** Largest singular value per layer (rows) and matrix (columns); null = absent; `skipped` layers are starred. */
export function spectralHeatmap(
  layers: readonly number[],
  matrices: readonly string[],
  values: readonly (readonly (number | null)[])[],
  opts: { title?: string; skipped?: readonly number[] } = {},
): string {
  const skipped = opts.skipped ?? [];
  return heatmap({
    title: opts.title ?? 'Largest singular value of each block matrix',
    rowLabel: 'layer',
    note: skipped.length ? '* attention skipped' : undefined,
    colLabel: 'weight matrix',
    rows: layers.map(layerLabel(skipped)),
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
