/**
 * Three chart kinds as standalone SVG documents: line/point charts, grouped bar charts
 * and heatmaps. Each takes plain data and returns the SVG text.
 *
 * Marks carry classes so that tools (and tests) can find them: `point` (one circle per
 * data point of a line chart, with `data-series`), `bar` (one rect per non-null value),
 * `cell` (one rect per heatmap cell), `marker` (annotations such as an elbow),
 * `axis-label`, `tick-label`, `legend` and `chart-title`.
 */
import { type Attrs, PALETTE, document, el, esc, formatValue, niceTicks, num, scale, text } from './svg.js';

export interface Point {
  x: number;
  y: number;
}

export interface LineSeries {
  name: string;
  /** A point whose y is not finite (NaN) is not drawn and breaks the line there. */
  points: Point[];
  /** Draw the connecting line (default true); false draws points only. */
  line?: boolean;
  color?: string;
  dashed?: boolean;
}

export interface Marker {
  x: number;
  y: number;
  label: string;
  /** Draw a dashed vertical guide through the marker (default true). */
  guide?: boolean;
  color?: string;
}

export interface LineChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  markers?: Marker[];
  /** Integer ticks only on the x axis (layer indices, block counts). */
  integerX?: boolean;
  width?: number;
  height?: number;
}

export interface BarChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  categories: string[];
  /** One value per category; null leaves a gap. */
  series: { name: string; values: (number | null)[]; color?: string }[];
  width?: number;
  height?: number;
}

export interface HeatmapSpec {
  title: string;
  rowLabel: string;
  colLabel: string;
  rows: string[];
  cols: string[];
  /** rows x cols; null cells are drawn hatched grey ("absent"). */
  values: (number | null)[][];
  /** Colour scale domain; default [min, max] of the values. */
  domain?: [number, number];
  /** Print each value in its cell (default: when cells are large enough). */
  showValues?: boolean;
  /** A short line under the chart, e.g. what a starred label means. */
  note?: string;
  width?: number;
  height?: number;
}

interface Frame {
  left: number;
  top: number;
  right: number;
  bottom: number;
  width: number;
  height: number;
}

function frame(width: number, height: number, legendWidth: number): Frame {
  const left = 70;
  const top = 40;
  const right = width - 20 - legendWidth;
  const bottom = height - 55;
  return { left, top, right, bottom, width, height };
}

function titleAndLabels(f: Frame, title: string, xLabel: string, yLabel: string): string[] {
  const cx = (f.left + f.right) / 2;
  const cy = (f.top + f.bottom) / 2;
  return [
    text(f.width / 2, 22, title, { 'text-anchor': 'middle', 'font-size': 15, 'font-weight': 'bold', class: 'chart-title' }),
    text(cx, f.height - 14, xLabel, { 'text-anchor': 'middle', 'font-size': 13, class: 'axis-label' }),
    text(18, cy, yLabel, { 'text-anchor': 'middle', 'font-size': 13, transform: `rotate(-90 18 ${num(cy)})`, class: 'axis-label' }),
  ];
}

function yAxis(f: Frame, ticks: number[], y: (v: number) => number): string[] {
  const out: string[] = [];
  for (const t of ticks) {
    const py = y(t);
    out.push(el('line', { x1: f.left, y1: py, x2: f.right, y2: py, stroke: '#e4e4e4', 'stroke-width': 1 }));
    out.push(text(f.left - 6, py + 4, formatValue(t), { 'text-anchor': 'end', class: 'tick-label', fill: '#333333' }));
  }
  out.push(el('line', { x1: f.left, y1: f.top, x2: f.left, y2: f.bottom, stroke: '#333333' }));
  out.push(el('line', { x1: f.left, y1: f.bottom, x2: f.right, y2: f.bottom, stroke: '#333333' }));
  return out;
}

interface LegendEntry {
  name: string;
  color: string;
  /** 'box' for bars; 'line' (optionally dashed) or 'point' for line-chart series. */
  swatch?: 'box' | 'line' | 'point';
  dashed?: boolean;
}

function legend(entries: LegendEntry[], x: number, y: number): string[] {
  if (entries.length < 2) return [];
  return entries.map((e, i) => {
    const cy = y + i * 18 - 4;
    const swatch =
      (e.swatch ?? 'box') === 'box'
        ? [el('rect', { x, y: cy - 5, width: 14, height: 10, fill: e.color })]
        : [
            ...(e.swatch === 'line'
              ? [el('line', { x1: x - 2, y1: cy, x2: x + 16, y2: cy, stroke: e.color, 'stroke-width': 2, 'stroke-dasharray': e.dashed ? '4 3' : undefined })]
              : []),
            el('circle', { cx: x + 7, cy, r: 3.5, fill: e.color }),
          ];
    return el('g', { class: 'legend' }, [...swatch, text(x + 22, y + i * 18, e.name, { fill: '#222222' })]);
  });
}

const legendWidthFor = (names: string[]) => (names.length < 2 ? 0 : 34 + 7 * Math.max(...names.map((n) => n.length)));

/** Runs of consecutive drawable points: a point with a non-finite coordinate ends a run. */
function runs(points: readonly Point[]): Point[][] {
  const out: Point[][] = [[]];
  for (const p of points) {
    if (Number.isFinite(p.x) && Number.isFinite(p.y)) out[out.length - 1].push(p);
    else if (out[out.length - 1].length) out.push([]);
  }
  return out.filter((r) => r.length > 0);
}

/** Line (or point) chart of one or more series, with optional labelled markers. */
export function lineChart(spec: LineChartSpec): string {
  const width = spec.width ?? 720;
  const height = spec.height ?? 420;
  const f = frame(width, height, legendWidthFor(spec.series.map((s) => s.name)));
  const all = spec.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const xs = all.map((p) => p.x);
  const ys = all.map((p) => p.y);
  const xMin = xs.length ? Math.min(...xs) : 0;
  const xMax = xs.length ? Math.max(...xs) : 1;
  const yTicks = niceTicks(ys.length ? Math.min(...ys) : 0, ys.length ? Math.max(...ys) : 1, 6);
  const xPad = xMax === xMin ? 1 : (xMax - xMin) * 0.04;
  const x = scale(xMin - xPad, xMax + xPad, f.left, f.right);
  const y = scale(yTicks[0], yTicks[yTicks.length - 1], f.bottom, f.top);

  let xTicks = niceTicks(xMin, xMax, 8).filter((t) => t >= xMin - xPad && t <= xMax + xPad);
  if (spec.integerX) {
    const step = Math.max(1, Math.ceil((xMax - xMin + 1) / 16));
    xTicks = [];
    for (let t = Math.ceil(xMin); t <= xMax; t += step) xTicks.push(t);
  }
  const body: string[] = [...titleAndLabels(f, spec.title, spec.xLabel, spec.yLabel), ...yAxis(f, yTicks, y)];
  for (const t of xTicks) {
    body.push(el('line', { x1: x(t), y1: f.bottom, x2: x(t), y2: f.bottom + 5, stroke: '#333333' }));
    body.push(text(x(t), f.bottom + 18, formatValue(t), { 'text-anchor': 'middle', class: 'tick-label', fill: '#333333' }));
  }
  spec.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const pts = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
    const g: string[] = [];
    if (s.line !== false)
      for (const run of runs(s.points))
        if (run.length > 1)
          g.push(
            el('polyline', {
              points: run.map((p) => `${num(x(p.x))},${num(y(p.y))}`).join(' '),
              fill: 'none',
              stroke: color,
              'stroke-width': 2,
              'stroke-dasharray': s.dashed ? '6 4' : undefined,
            }),
          );
    for (const p of pts)
      g.push(
        el('circle', { cx: x(p.x), cy: y(p.y), r: 3.5, fill: color, class: 'point', 'data-series': s.name }, [
          el('title', {}, esc(`${s.name}: x=${formatValue(p.x)}, y=${formatValue(p.y)}`)),
        ]),
      );
    body.push(el('g', { class: 'series', 'data-series': s.name }, g));
  });
  for (const m of spec.markers ?? []) {
    const px = x(m.x);
    const py = y(m.y);
    const color = m.color ?? '#C00000';
    const guide = m.guide !== false;
    // A guided marker is labelled at the top of its guide line, on the side with room
    // (left first: a rising curve leaves the top left empty); a point marker beside the
    // point, right of it unless that leaves the plot area.
    const labelW = 7 * m.label.length;
    const rightSide = guide ? px - 8 - labelW < f.left : px + 10 + labelW <= f.right;
    const ly = guide ? f.top + 14 : Math.max(f.top + 12, py - 10);
    body.push(
      el('g', { class: 'marker' }, [
        ...(guide ? [el('line', { x1: px, y1: f.top, x2: px, y2: f.bottom, stroke: color, 'stroke-dasharray': '4 3' })] : []),
        el('circle', { cx: px, cy: py, r: 7, fill: 'none', stroke: color, 'stroke-width': 2 }),
        text(rightSide ? px + (guide ? 6 : 10) : px - (guide ? 6 : 10), ly, m.label, {
          fill: color,
          'font-weight': 'bold',
          'text-anchor': rightSide ? undefined : 'end',
        }),
      ]),
    );
  }
  body.push(
    ...legend(
      spec.series.map((s, i) => ({
        name: s.name,
        color: s.color ?? PALETTE[i % PALETTE.length],
        swatch: s.line === false ? ('point' as const) : ('line' as const),
        dashed: s.dashed,
      })),
      f.right + 16,
      f.top + 10,
    ),
  );
  return document(width, height, spec.title, body);
}

/** Grouped bar chart: one group per category, one bar per series. */
export function barChart(spec: BarChartSpec): string {
  const width = spec.width ?? Math.max(560, 120 + spec.categories.length * (18 * spec.series.length + 14));
  const height = spec.height ?? 420;
  const f = frame(width, height, legendWidthFor(spec.series.map((s) => s.name)));
  const vals = spec.series.flatMap((s) => s.values).filter((v): v is number => v !== null && Number.isFinite(v));
  const yTicks = niceTicks(Math.min(0, ...vals), Math.max(0, ...vals), 6);
  const y = scale(yTicks[0], yTicks[yTicks.length - 1], f.bottom, f.top);
  const groupW = (f.right - f.left) / Math.max(1, spec.categories.length);
  const barW = Math.max(2, (groupW * 0.8) / Math.max(1, spec.series.length));
  const body: string[] = [...titleAndLabels(f, spec.title, spec.xLabel, spec.yLabel), ...yAxis(f, yTicks, y)];
  const y0 = y(0);
  spec.categories.forEach((c, ci) => {
    const gx = f.left + ci * groupW + groupW * 0.1;
    body.push(text(f.left + (ci + 0.5) * groupW, f.bottom + 18, c, { 'text-anchor': 'middle', class: 'tick-label', fill: '#333333' }));
    spec.series.forEach((s, si) => {
      const v = s.values[ci];
      if (v === null || v === undefined || !Number.isFinite(v)) return;
      const top = Math.min(y(v), y0);
      const attrs: Attrs = {
        x: gx + si * barW,
        y: top,
        width: barW - 1,
        height: Math.max(0.5, Math.abs(y(v) - y0)),
        fill: s.color ?? PALETTE[si % PALETTE.length],
        class: 'bar',
        'data-series': s.name,
      };
      body.push(el('rect', attrs, [el('title', {}, esc(`${s.name}, ${c}: ${formatValue(v)}`))]));
    });
  });
  if (yTicks[0] < 0) body.push(el('line', { x1: f.left, y1: y0, x2: f.right, y2: y0, stroke: '#333333' }));
  body.push(
    ...legend(
      spec.series.map((s, i) => ({ name: s.name, color: s.color ?? PALETTE[i % PALETTE.length] })),
      f.right + 16,
      f.top + 10,
    ),
  );
  return document(width, height, spec.title, body);
}

/** Red (low) through pale yellow to blue (high), as in the paper's singular-value figure. */
export function heatColor(t: number): string {
  const stops: [number, number, number][] = [
    [215, 48, 39],
    [252, 141, 89],
    [254, 224, 144],
    [145, 191, 219],
    [69, 117, 180],
  ];
  const u = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(u));
  const w = u - i;
  const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * w));
  return `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

/** Heatmap of a rows x cols matrix with a colour bar. */
export function heatmap(spec: HeatmapSpec): string {
  const nr = spec.rows.length;
  const nc = spec.cols.length;
  const cellW = Math.max(28, Math.min(70, 560 / Math.max(1, nc)));
  const cellH = Math.max(12, Math.min(28, 600 / Math.max(1, nr)));
  const width = spec.width ?? 90 + nc * cellW + 110;
  const height = spec.height ?? 50 + nr * cellH + 60;
  const left = 80;
  const top = 40;
  const vals = spec.values.flat().filter((v): v is number => v !== null && Number.isFinite(v));
  const [lo, hi] = spec.domain ?? [vals.length ? Math.min(...vals) : 0, vals.length ? Math.max(...vals) : 1];
  const t = scale(lo, hi === lo ? lo + 1 : hi, 0, 1);
  const show = spec.showValues ?? (cellW >= 40 && cellH >= 16);
  const body: string[] = [
    el('defs', {}, [
      el('pattern', { id: 'absent', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' }, [
        el('rect', { width: 6, height: 6, fill: '#dddddd' }),
        el('line', { x1: 0, y1: 0, x2: 0, y2: 6, stroke: '#aaaaaa', 'stroke-width': 2 }),
      ]),
    ]),
    text(width / 2, 22, spec.title, { 'text-anchor': 'middle', 'font-size': 15, 'font-weight': 'bold', class: 'chart-title' }),
    text(left + (nc * cellW) / 2, top + nr * cellH + 45, spec.colLabel, { 'text-anchor': 'middle', 'font-size': 13, class: 'axis-label' }),
    text(16, top + (nr * cellH) / 2, spec.rowLabel, {
      'text-anchor': 'middle',
      'font-size': 13,
      transform: `rotate(-90 16 ${num(top + (nr * cellH) / 2)})`,
      class: 'axis-label',
    }),
  ];
  if (spec.note) body.push(text(8, top + nr * cellH + 45, spec.note, { 'font-size': 11, fill: '#555555', class: 'note' }));
  spec.rows.forEach((r, ri) =>
    body.push(text(left - 6, top + ri * cellH + cellH / 2 + 4, r, { 'text-anchor': 'end', class: 'tick-label' })),
  );
  spec.cols.forEach((c, ci) =>
    body.push(text(left + ci * cellW + cellW / 2, top + nr * cellH + 16, c, { 'text-anchor': 'middle', class: 'tick-label' })),
  );
  for (let ri = 0; ri < nr; ri++)
    for (let ci = 0; ci < nc; ci++) {
      const v = spec.values[ri]?.[ci] ?? null;
      const x = left + ci * cellW;
      const y = top + ri * cellH;
      const ok = v !== null && Number.isFinite(v);
      const tv = ok ? t(v) : 0;
      body.push(
        el(
          'rect',
          {
            x,
            y,
            width: cellW,
            height: cellH,
            fill: ok ? heatColor(tv) : 'url(#absent)',
            stroke: '#ffffff',
            'stroke-width': 1,
            class: 'cell',
            'data-row': ri,
            'data-col': ci,
          },
          [el('title', {}, esc(`${spec.rows[ri]}, ${spec.cols[ci]}: ${ok ? formatValue(v) : 'absent'}`))],
        ),
      );
      if (show && ok)
        body.push(
          text(x + cellW / 2, y + cellH / 2 + 4, formatValue(Number(v.toPrecision(3))), {
            'text-anchor': 'middle',
            'font-size': 10,
            fill: tv > 0.25 && tv < 0.75 ? '#222222' : '#ffffff',
          }),
        );
    }
  const barX = left + nc * cellW + 25;
  const barH = Math.max(80, nr * cellH);
  const steps = 24;
  for (let i = 0; i < steps; i++)
    body.push(
      el('rect', {
        x: barX,
        y: top + (barH * (steps - 1 - i)) / steps,
        width: 14,
        height: barH / steps + 0.5,
        fill: heatColor((i + 0.5) / steps),
        class: 'colorbar',
      }),
    );
  // Colour-bar labels at the top, middle and bottom, with the cells' precision.
  const label = (v: number) => formatValue(Number(v.toPrecision(3)));
  body.push(text(barX + 20, top + 10, label(hi), { class: 'tick-label colorbar-label' }));
  body.push(text(barX + 20, top + barH / 2 + 4, label((lo + hi) / 2), { class: 'tick-label colorbar-label' }));
  body.push(text(barX + 20, top + barH, label(lo), { class: 'tick-label colorbar-label' }));
  return document(width, height, spec.title, body);
}
