/**
 * Compare selection strategies on the same recovery set: which blocks each one skips,
 * the training loss after its rescale, the held-out loss, and the time it took. Writes
 * the table as Markdown and two SVG figures: held-out loss per strategy, and the
 * iterative greedy search's loss per block removed with its elbow.
 *
 *   npx tsc -p examples && node examples/dist/compare-strategies.js [outDir]
 *
 * Every strategy ends with the same rescale (`rescaleAfter`, the default), so the
 * losses compare like with like. The bundled model is tiny and the data small: the
 * numbers show the mechanics, not which strategy wins on a real model (see
 * docs/results.md for that comparison at full size).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { type StrategyName, type TraceEntry, evaluateLoss, evaluation, hopscotch, plot } from 'hopscotch-native';

const pkg = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.resolve('hopscotch-native')));
const MODEL = pkg('models/stories260k');
const PROMPTS = pkg('data/prompts/story-openings.jsonl');
const STOP = [1, 2];
const STRATEGIES: StrategyName[] = ['iterative-greedy', 'full-greedy', 'similarity-attn', 'block-influence', 'random'];
const COUNT = 2;

const out = resolve(process.argv[2] ?? 'compare-strategies-out');
mkdirSync(out, { recursive: true });

await using model = await hopscotch.load(MODEL, { device: 'cpu' });
const prompts = await hopscotch.loadPrompts(PROMPTS, { limit: 64 });
const data = await hopscotch.recoverySet(model, prompts, { maxNewTokens: 64, stop: STOP, batchSize: 16 });
const train = data.filter((_, i) => i % 4 !== 3);
const heldOut = data.filter((_, i) => i % 4 === 3);
const base = await evaluateLoss(model, heldOut, hopscotch.theta(model));
console.log(`recovery set: ${train.length} train, ${heldOut.length} held out; base held-out loss ${base.toFixed(3)}`);

interface Row {
  strategy: string;
  skipped: number[];
  trainLoss: number;
  heldOut: number;
  seconds: number;
}
const rows: Row[] = [];
let greedyTrace: TraceEntry[] = [];
for (const strategy of STRATEGIES) {
  const started = performance.now();
  const sel = await hopscotch.selectBlocks(model, train, { strategy, count: COUNT, batchSize: 8, seed: 1 });
  const seconds = (performance.now() - started) / 1000;
  const heldOutLoss = await evaluateLoss(model, heldOut, sel.theta, { skip: sel.skipped });
  rows.push({ strategy, skipped: sel.skipped, trainLoss: sel.losses.at(-1)!.loss, heldOut: heldOutLoss, seconds });
  if (strategy === 'iterative-greedy') greedyTrace = sel.trace;
  console.log(`${strategy}: skip ${sel.skipped.join(', ')}, held-out loss ${heldOutLoss.toFixed(3)} (${seconds.toFixed(1)} s)`);
}

const table = evaluation.mdTable(
  ['strategy', 'skipped', 'train loss (rescaled)', 'held-out loss', 'seconds'],
  rows.map((r) => [r.strategy, r.skipped.join(', '), r.trainLoss.toFixed(3), r.heldOut.toFixed(3), r.seconds.toFixed(1)]),
);
const files = {
  table: join(out, 'strategies.md'),
  bars: join(out, 'strategies.svg'),
  curve: join(out, 'removal-curve.svg'),
};
writeFileSync(files.table, `# ${COUNT} attention blocks skipped, ${model.config.arch} (${model.config.numLayers} layers)\n\nbase held-out loss ${base.toFixed(3)}\n\n${table}\n`);
writeFileSync(
  files.bars,
  plot.barChart({
    title: `Held-out loss with ${COUNT} attention blocks skipped`,
    xLabel: 'strategy',
    yLabel: 'held-out loss (per sample)',
    categories: rows.map((r) => r.strategy),
    series: [{ name: 'rescaled', values: rows.map((r) => r.heldOut) }],
  }),
);
const { svg, elbowK } = plot.removalCurveChart(greedyTrace, { baseLoss: base });
writeFileSync(files.curve, svg);
console.log(table);
console.log(`elbow of the greedy removal curve: k = ${elbowK}`);
console.log(`wrote ${Object.values(files).join(', ')}`);
