#!/usr/bin/env node
/**
 * Prints the markdown tables of docs/guide-choose-k.md from the JSON files written by
 * bench/method-defaults.mjs:
 *
 *   node bench/method-defaults-md.mjs docs/benchmarks/method-defaults.json [more.json ...]
 */
import { readFileSync } from 'node:fs';

const models = process.argv.slice(2).flatMap((f) => JSON.parse(readFileSync(f, 'utf8')).models);
const key = (s) => `{${[...s].sort((a, b) => a - b).join(', ')}}`;
const out = [];

out.push('### Probe budget: picks against every subset', '');
out.push('| model | probe steps | probe score | k = 1 pick (rank) | k = 2 pick (rank) | test loss of k = 2 pick | best k = 2 subset (test loss) | probe tokens |');
out.push('|---|---|---|---|---|---:|---|---:|');
for (const m of models) {
  const best2 = m.exhaustive[2][0];
  for (const r of m.selections)
    out.push(
      `| ${m.name} | ${r.budget === 'epoch' ? `${r.probeSteps} (one epoch)` : r.probeSteps} | ${r.probeScore} | ${key(r.k1.skip)} (${r.k1.rank}/${m.exhaustive[1].length}) | ${key(r.k2.skip)} (${r.k2.rank}/${m.exhaustive[2].length}) | ${r.k2.test.toFixed(2)} | ${key(best2.skip)} (${best2.test.toFixed(2)}) | ${r.probeTokens} |`,
    );
}
out.push('', '### Rescale convergence: held-out-loss rules against a 30-epoch fit', '');
out.push('| model | pair | 30-epoch fit (all training samples), test loss | patience | max epochs | epochs run | epoch kept | test loss | vs 30-epoch fit |');
out.push('|---|---|---:|---:|---:|---:|---:|---:|---:|');
for (const m of models) {
  const c = m.convergence;
  for (const r of c.rules)
    out.push(
      `| ${m.name} | ${key(c.pair)} | ${c.ref30.toFixed(2)} | ${r.patience} | ${r.maxEpochs} | ${r.epochsRun} | ${r.kept} | ${r.test.toFixed(2)} | ${(100 * r.vsRef30).toFixed(1)}% |`,
    );
}
out.push('', '### Test loss after each epoch of the convergence run (every 5th)', '');
for (const m of models) {
  const c = m.convergence;
  const pts = c.testCurve.map((y, e) => [e, y]).filter(([e]) => e % 5 === 0);
  out.push(`- ${m.name} ${key(c.pair)}: ${pts.map(([e, y]) => `${e}: ${y.toFixed(2)}`).join(', ')} (held-out slice: ${c.holdoutCurve.filter((_, e) => e % 5 === 0).map((y) => y.toFixed(2)).join(', ')})`);
}
process.stdout.write(out.join('\n') + '\n');
