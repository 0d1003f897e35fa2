// SVG charts: the documents parse as XML, carry the expected marks and labels, and the
// elbow rule picks the right point.
import { describe, expect, it } from 'vitest';

import { barChart, heatmap, lineChart } from '../../src/plot/charts.js';
import { elbowIndex } from '../../src/plot/elbow.js';
import { mmdChart, probeLossChart, removalCurve, removalCurveChart, rescaleLossChart, spectralHeatmap, speedChart } from '../../src/plot/figures.js';
import { niceTicks } from '../../src/plot/svg.js';

interface XmlNode {
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
  text: string;
}

const ENTITY: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function unescape(s: string, where: number): string {
  return s.replace(/&([a-z]+|#[0-9]+);|&/g, (m, name: string | undefined) => {
    if (!name) throw new Error(`bare & at ${where}`);
    if (name.startsWith('#')) return String.fromCodePoint(Number(name.slice(1)));
    if (!(name in ENTITY)) throw new Error(`unknown entity &${name}; at ${where}`);
    return ENTITY[name];
  });
}

/** A strict, small XML parser: throws on any well-formedness error it can see. */
function parseXml(src: string): XmlNode {
  let i = 0;
  const fail = (msg: string): never => {
    throw new Error(`${msg} at offset ${i}: ${JSON.stringify(src.slice(i, i + 40))}`);
  };
  if (src.startsWith('<?xml')) {
    i = src.indexOf('?>');
    if (i < 0) fail('unterminated XML declaration');
    i += 2;
  }
  const skipWs = () => {
    while (i < src.length && /\s/.test(src[i])) i++;
  };
  const nameRe = /^[A-Za-z_][\w.:-]*/;
  const parseElement = (): XmlNode => {
    if (src[i] !== '<') fail('expected <');
    i++;
    const m = nameRe.exec(src.slice(i));
    if (!m) fail('bad element name');
    const node: XmlNode = { name: m![0], attrs: {}, children: [], text: '' };
    i += m![0].length;
    for (;;) {
      const before = i;
      skipWs();
      if (src.startsWith('/>', i)) {
        i += 2;
        return node;
      }
      if (src[i] === '>') {
        i++;
        break;
      }
      if (i === before) fail('expected whitespace before attribute');
      const a = nameRe.exec(src.slice(i));
      if (!a) fail('bad attribute name');
      i += a![0].length;
      if (src[i] !== '=') fail('expected =');
      i++;
      const q = src[i];
      if (q !== '"' && q !== "'") fail('unquoted attribute');
      const end = src.indexOf(q, i + 1);
      if (end < 0) fail('unterminated attribute');
      const raw = src.slice(i + 1, end);
      if (raw.includes('<')) fail('< in attribute');
      if (a![0] in node.attrs) fail(`duplicate attribute ${a![0]}`);
      node.attrs[a![0]] = unescape(raw, i);
      i = end + 1;
    }
    for (;;) {
      const lt = src.indexOf('<', i);
      if (lt < 0) fail(`unclosed <${node.name}>`);
      node.text += unescape(src.slice(i, lt), i);
      i = lt;
      if (src.startsWith('</', i)) {
        i += 2;
        const m2 = nameRe.exec(src.slice(i));
        if (!m2 || m2[0] !== node.name) fail(`mismatched close tag for <${node.name}>`);
        i += m2![0].length;
        skipWs();
        if (src[i] !== '>') fail('expected > in close tag');
        i++;
        return node;
      }
      node.children.push(parseElement());
    }
  };
  skipWs();
  const rootNode = parseElement();
  skipWs();
  if (i !== src.length) fail('content after the root element');
  return rootNode;
}

function all(node: XmlNode, pred: (n: XmlNode) => boolean, out: XmlNode[] = []): XmlNode[] {
  if (pred(node)) out.push(node);
  for (const c of node.children) all(c, pred, out);
  return out;
}
const byClass = (root: XmlNode, cls: string) => all(root, (n) => (n.attrs.class ?? '').split(' ').includes(cls));
const textOf = (n: XmlNode): string => n.text + n.children.map(textOf).join('');

describe('the test XML parser', () => {
  it('rejects malformed documents', () => {
    expect(() => parseXml('<svg><g></svg>')).toThrow();
    expect(() => parseXml('<svg a=1/>')).toThrow();
    expect(() => parseXml('<svg>a & b</svg>')).toThrow();
    expect(() => parseXml('<svg a="1" a="2"/>')).toThrow();
    expect(parseXml('<svg a="&lt;x&gt;"><t>1 &amp; 2</t></svg>').children[0].text).toBe('1 & 2');
  });
});

describe('elbowIndex', () => {
  it('finds the knee of a flat-then-steep curve', () => {
    // Linear growth of 0.1 per step up to index 6, then steep.
    const ys = [1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 2.6, 4.6, 8.6];
    expect(elbowIndex(ys)).toBe(6);
  });

  it('is independent of the units of either axis', () => {
    const ys = [1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 2.6, 4.6, 8.6];
    const xs = ys.map((_, i) => i + 1);
    expect(elbowIndex(ys.map((y) => y * 1000), xs.map((x) => x * 7))).toBe(6);
  });

  it('finds the knee of a saturating curve', () => {
    const ys = [0, 5, 8, 9, 9.3, 9.5, 9.6];
    expect(elbowIndex(ys)).toBe(2);
  });

  it('returns null without an interior point or for a straight line', () => {
    expect(elbowIndex([1, 2])).toBeNull();
    expect(elbowIndex([1, 2, 3, 4])).toBeNull();
    expect(() => elbowIndex([1, 2, 3], [0, 1])).toThrow(RangeError);
  });
});

describe('niceTicks', () => {
  it('covers the range with round steps', () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    const t = niceTicks(3.2, 97.5, 5);
    expect(t[0]).toBeLessThanOrEqual(3.2);
    expect(t[t.length - 1]).toBeGreaterThanOrEqual(97.5);
    expect(t).toEqual([0, 20, 40, 60, 80, 100]);
  });
});

describe('charts', () => {
  it('line chart: one point per data point, labels, legend, escaped text', () => {
    const svg = lineChart({
      title: 'Loss <per> block & more',
      xLabel: 'blocks',
      yLabel: 'loss',
      series: [
        { name: 'a', points: [{ x: 0, y: 1 }, { x: 1, y: 2 }, { x: 2, y: 1.5 }] },
        { name: 'b', points: [{ x: 0, y: 3 }, { x: 2, y: 0.5 }] },
      ],
      markers: [{ x: 1, y: 2, label: 'elbow' }],
    });
    const root = parseXml(svg);
    expect(root.name).toBe('svg');
    expect(root.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
    expect(byClass(root, 'point')).toHaveLength(5);
    expect(byClass(root, 'point').filter((p) => p.attrs['data-series'] === 'b')).toHaveLength(2);
    expect(byClass(root, 'axis-label').map(textOf)).toEqual(['blocks', 'loss']);
    expect(textOf(byClass(root, 'chart-title')[0])).toBe('Loss <per> block & more');
    expect(byClass(root, 'marker')).toHaveLength(1);
    expect(byClass(root, 'legend')).toHaveLength(2);
    for (const p of byClass(root, 'point')) {
      expect(Number.isFinite(Number(p.attrs.cx))).toBe(true);
      expect(Number.isFinite(Number(p.attrs.cy))).toBe(true);
    }
  });

  it('line chart: higher values are drawn higher', () => {
    const root = parseXml(lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points: [{ x: 0, y: 1 }, { x: 1, y: 5 }] }] }));
    const [p0, p1] = byClass(root, 'point');
    expect(Number(p1.attrs.cy)).toBeLessThan(Number(p0.attrs.cy));
    expect(Number(p1.attrs.cx)).toBeGreaterThan(Number(p0.attrs.cx));
  });

  it('bar chart: one bar per non-null value, category labels', () => {
    const svg = barChart({
      title: 'bars',
      xLabel: 'layer',
      yLabel: 'value',
      categories: ['0', '1', '2', '3'],
      series: [
        { name: 'NoScale', values: [0.5, 0.4, null, 0.1] },
        { name: 'rescaled', values: [0.2, 0.1, 0.05, -0.01] },
      ],
    });
    const root = parseXml(svg);
    const bars = byClass(root, 'bar');
    expect(bars).toHaveLength(7);
    const tall = bars.find((b) => b.attrs['data-series'] === 'NoScale')!;
    const short = bars.find((b) => b.attrs['data-series'] === 'rescaled')!;
    expect(Number(tall.attrs.height)).toBeGreaterThan(Number(short.attrs.height));
    expect(byClass(root, 'tick-label').map(textOf)).toEqual(expect.arrayContaining(['0', '1', '2', '3']));
    expect(byClass(root, 'axis-label').map(textOf)).toEqual(['layer', 'value']);
  });

  it('heatmap: one cell per entry, absent cells hatched', () => {
    const svg = heatmap({
      title: 'h',
      rowLabel: 'layer',
      colLabel: 'matrix',
      rows: ['0', '1', '2'],
      cols: ['q', 'k'],
      values: [
        [1, 2],
        [0, null],
        [3, 4],
      ],
    });
    const root = parseXml(svg);
    const cells = byClass(root, 'cell');
    expect(cells).toHaveLength(6);
    expect(cells.filter((c) => c.attrs.fill === 'url(#absent)')).toHaveLength(1);
    // Lowest value red, highest blue.
    const fill = (r: number, c: number) => cells.find((x) => x.attrs['data-row'] === String(r) && x.attrs['data-col'] === String(c))!.attrs.fill;
    expect(fill(1, 0)).toBe('#d73027');
    expect(fill(2, 1)).toBe('#4575b4');
    expect(byClass(root, 'axis-label').map(textOf)).toEqual(['matrix', 'layer']);
  });
});

describe('Hopscotch figures', () => {
  // Three greedy steps over 5 layers; the best per step: layer 3 (0.9), layer 1 (1.0), layer 4 (2.5).
  const trace = [
    { step: 1, candidate: 0, score: 3 },
    { step: 1, candidate: 1, score: 1.1 },
    { step: 1, candidate: 2, score: 1.5 },
    { step: 1, candidate: 3, score: 0.9 },
    { step: 1, candidate: 4, score: 1.2 },
    { step: 2, candidate: 0, score: 3.2 },
    { step: 2, candidate: 1, score: 1.0 },
    { step: 2, candidate: 2, score: 1.6 },
    { step: 2, candidate: 4, score: 1.3 },
    { step: 3, candidate: 0, score: 3.5 },
    { step: 3, candidate: 2, score: 2.6 },
    { step: 3, candidate: 4, score: 2.5 },
  ];

  it('probe loss chart: one point per trace entry, one series per step', () => {
    const root = parseXml(probeLossChart(trace));
    expect(byClass(root, 'point')).toHaveLength(trace.length);
    expect(new Set(byClass(root, 'point').map((p) => p.attrs['data-series']))).toEqual(new Set(['step 1', 'step 2', 'step 3']));
  });

  it('removal curve: the best score of each step, elbow marked', () => {
    expect(removalCurve(trace)).toEqual([
      { k: 1, layer: 3, loss: 0.9 },
      { k: 2, layer: 1, loss: 1.0 },
      { k: 3, layer: 4, loss: 2.5 },
    ]);
    const { svg, elbowK } = removalCurveChart(trace);
    expect(elbowK).toBe(2);
    const root = parseXml(svg);
    expect(byClass(root, 'point')).toHaveLength(3);
    expect(textOf(byClass(root, 'marker')[0])).toContain('k = 2');
  });

  it('MMD, singular-value and speed figures parse and have the right marks', () => {
    const mmd = parseXml(mmdChart([0, 1, 2], [{ name: 'NoScale', values: [0.1, 0.3, 0.2] }, { name: 'rescaled', values: [0.05, 0.1, 0.1] }]));
    expect(byClass(mmd, 'bar')).toHaveLength(6);
    const sv = parseXml(spectralHeatmap([0, 1], ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], [[1, 2, 3, 0, 5, 6, 7], [1, 2, 3, 4, 5, 6, null]]));
    expect(byClass(sv, 'cell')).toHaveLength(14);
    const rows = [0, 1, 2].flatMap((k) => [1, 4].map((b) => ({ skipped: k, batch: b, prefillTokensPerSec: 100 + k, decodeTokensPerSec: 10 + k })));
    const sp = parseXml(speedChart(rows));
    expect(byClass(sp, 'point')).toHaveLength(12);
    expect(byClass(sp, 'legend')).toHaveLength(4);
  });

  it('probe loss chart: a layer not probed at a step breaks that step\'s line; the chosen layers are circled', () => {
    const root = parseXml(probeLossChart(trace, { order: [3, 1, 4] }));
    const lines = (step: string) => all(root, (n) => n.name === 'polyline' && all(root, (g) => g.attrs['data-series'] === step && g.children.includes(n)).length > 0);
    // Step 2 has no layer 3: its line joins 0, 1, 2 and stops (layer 4 stands alone);
    // step 3 has only 0, 2, 4 (no two neighbours): no line at all.
    const vertices = (n: XmlNode) => n.attrs.points.trim().split(/\s+/).length;
    expect(lines('step 1').map(vertices)).toEqual([5]);
    expect(lines('step 2').map(vertices)).toEqual([3]);
    expect(lines('step 3')).toHaveLength(0);
    expect(byClass(root, 'marker').map(textOf)).toEqual(['skip 3', 'skip 1', 'skip 4']);
  });

  it('removal curve with held-out losses: elbow on the held-out curve, rescaled point drawn', () => {
    // Held-out NoScale losses at k = 0..3: flat, then steep after k = 2.
    const { svg, elbowK } = removalCurveChart(trace, { heldOut: [1, 1.05, 1.1, 3], rescaledHeldOut: { k: 3, loss: 2 } });
    expect(elbowK).toBe(2);
    const root = parseXml(svg);
    const series = (name: string) => byClass(root, 'point').filter((p) => p.attrs['data-series'] === name);
    expect(series('held-out, NoScale')).toHaveLength(4);
    expect(series('held-out, rescaled')).toHaveLength(1);
    expect(series('probe (selection data)')).toHaveLength(3);
    expect(textOf(byClass(root, 'marker')[0])).toBe('elbow: k = 2');
  });

  it('rescale loss chart: one point per step and one per epoch mean, at the epoch\'s last step', () => {
    const root = parseXml(rescaleLossChart([4, 3, 2.5, 2.4], [3.5, 2.45]));
    const pts = byClass(root, 'point');
    expect(pts.filter((p) => p.attrs['data-series'] === 'batch loss')).toHaveLength(4);
    const epochs = pts.filter((p) => p.attrs['data-series'] === 'epoch mean');
    expect(epochs.map((p) => textOf(p))).toEqual(['epoch mean: x=2, y=3.5', 'epoch mean: x=4, y=2.45']);
  });

  it('skipped layers are starred on the MMD and singular-value figures', () => {
    const mmd = parseXml(mmdChart([0, 1, 2], [{ name: 'NoScale', values: [0, 0.3, 0.2] }], { skipped: [1] }));
    expect(byClass(mmd, 'tick-label').map(textOf)).toEqual(expect.arrayContaining(['0', '1*', '2']));
    const sv = parseXml(spectralHeatmap([0, 1], ['q'], [[1], [2]], { skipped: [0] }));
    expect(byClass(sv, 'tick-label').map(textOf)).toEqual(expect.arrayContaining(['0*', '1']));
    expect(textOf(byClass(sv, 'note')[0])).toBe('* attention skipped');
    expect(byClass(sv, 'colorbar-label').map(textOf)).toEqual(['2', '1.5', '1']);
  });
});
