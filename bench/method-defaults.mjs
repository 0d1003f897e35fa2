#!/usr/bin/env node
/**
 * The measurement behind the method's defaults (docs/guide-choose-k.md):
 *
 *  1. Probe budget. On each model, every subset of k = 1 and k = 2 attention blocks is
 *     rescaled for a fixed number of epochs on the training samples and scored on held-out
 *     samples (the exhaustive reference). Then `selectBlocks({ count: 2 })` runs at each
 *     probe budget (steps per probe), with probes scored by mean training loss (the paper)
 *     and by held-out loss of the probe's theta (validation); its picks at k = 1 (step 1)
 *     and k = 2 are placed in the exhaustive ranking.
 *  2. Rescale convergence. For the best pair, theta is trained for `--curve-epochs`
 *     epochs on the training part of a seeded holdout split, recording the holdout loss
 *     and the test loss after every epoch; each (patience, maxEpochs) rule is replayed on
 *     that curve and its kept theta's test loss compared with a 30-epoch fit on all the
 *     training samples.
 *
 *   node bench/method-defaults.mjs [--models a,b] [--out docs/benchmarks/method-defaults.json]
 *
 * Data: the 64 bundled story openings answered greedily by each model (every fourth
 * sample is the test set: 48 train, 16 test, as in the issue that asked for it).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const lib = await import(path.join(ROOT, 'dist', 'index.js'));
const { hopscotch, loadPrompts, recoverySet, evaluateLoss, rescale, selectBlocks, splitDataset } = lib;
const { trainTheta } = lib;

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'stories260k,llama-inert,llama-planted' },
    budgets: { type: 'string', default: 'epoch,16,64,128' },
    'max-new-tokens': { type: 'string', default: '64' },
    'ref-epochs': { type: 'string', default: '60' },
    'curve-epochs': { type: 'string', default: '100' },
    threads: { type: 'string' },
    out: { type: 'string', default: path.join(ROOT, 'docs', 'benchmarks', 'method-defaults.json') },
  },
});
const MODELS = {
  stories260k: path.join(ROOT, 'models', 'stories260k'),
  'llama-inert': path.join(ROOT, 'test', 'fixtures', 'generated', 'models', 'llama-inert'),
  'llama-planted': path.join(ROOT, 'test', 'fixtures', 'generated', 'models', 'llama-planted'),
};
const maxNewTokens = Number(args['max-new-tokens']);
const refEpochs = Number(args['ref-epochs']);
const curveEpochs = Number(args['curve-epochs']);
const threads = args.threads === undefined ? undefined : Number(args.threads);

const combos = (xs, k) => (k === 0 ? [[]] : xs.flatMap((x, i) => combos(xs.slice(i + 1), k - 1).map((c) => [x, ...c])));
const key = (s) => [...s].sort((a, b) => a - b).join(',');
const log = (...a) => console.error(new Date().toISOString().slice(11, 19), ...a);

const results = { date: new Date().toISOString(), command: process.argv.slice(1).join(' '), settings: { maxNewTokens, refEpochs, curveEpochs }, models: [] };
for (const name of args.models.split(',')) {
  const started = performance.now();
  const model = await hopscotch.load(MODELS[name], { device: 'cpu', threads });
  const L = model.config.numLayers;
  const prompts = await loadPrompts(path.join(ROOT, 'data', 'prompts', 'story-openings.jsonl'), {});
  const data = await recoverySet(model, prompts, { maxNewTokens, stop: [1, 2], batchSize: 16 });
  const train = data.filter((_, i) => i % 4 !== 3);
  const test = data.filter((_, i) => i % 4 === 3);
  const ones = hopscotch.theta(model);
  const base = await evaluateLoss(model, test, ones);
  log(name, `${L} layers, ${train.length} train / ${test.length} test samples, base test loss ${base.toFixed(3)}`);

  // 1a. Exhaustive reference: every subset of 1 and 2 blocks, rescaled for refEpochs on all training samples.
  const exhaustive = {};
  for (const k of [1, 2]) {
    const rows = [];
    for (const skip of combos([...Array(L).keys()], k)) {
      const fit = await rescale(model, train, { skip, epochs: refEpochs });
      const noScale = hopscotch.theta(model);
      for (const l of skip) noScale.bAtt[l] = 0;
      rows.push({ skip, test: await evaluateLoss(model, test, fit.theta, { skip }), noScale: await evaluateLoss(model, test, noScale, { skip }) });
    }
    rows.sort((a, b) => a.test - b.test);
    exhaustive[k] = rows;
    log(name, `k=${k} exhaustive:`, rows.map((r) => `{${key(r.skip)}} ${r.test.toFixed(2)}`).join('  '));
  }
  const rankOf = (k, skip) => exhaustive[k].findIndex((r) => key(r.skip) === key(skip)) + 1;
  const testOf = (k, skip) => exhaustive[k].find((r) => key(r.skip) === key(skip)).test;

  // 1b. Selection at each probe budget and scoring.
  const selections = [];
  for (const b of args.budgets.split(',')) {
    for (const probeScore of ['train', 'validation']) {
      const t0 = performance.now();
      const probeSteps = b === 'epoch' ? Math.ceil(splitDataset(train, { fraction: 0.2 }).train.length / 32) : Number(b);
      const sel = await selectBlocks(model, train, { count: 2, probeSteps, probeScore });
      const k1 = [sel.skipped[0]];
      const row = {
        budget: b,
        probeSteps,
        probeScore,
        k1: { skip: k1, rank: rankOf(1, k1), test: testOf(1, k1) },
        k2: { skip: sel.skipped, rank: rankOf(2, sel.skipped), test: testOf(2, sel.skipped) },
        probeTokens: sel.probeTokens,
        seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
      };
      selections.push(row);
      log(name, `budget ${b} (${probeSteps} steps) ${probeScore}: k=1 {${key(k1)}} rank ${row.k1.rank}/${L}; k=2 {${key(sel.skipped)}} rank ${row.k2.rank}/${exhaustive[2].length}; ${row.seconds} s`);
    }
  }

  // 2. Rescale convergence on the best pair.
  const pair = exhaustive[2][0].skip;
  const split = splitDataset(train, { fraction: 0.2, seed: 0 });
  const holdoutCurve = [];
  const testCurve = [await evaluateLoss(model, test, ones, { skip: pair })];
  let lastEpoch = 0;
  const start = hopscotch.theta(model);
  for (const l of pair) start.bAtt[l] = 0;
  testCurve[0] = await evaluateLoss(model, test, start, { skip: pair });
  const thetas = [];
  const res = await trainTheta({
    model, data: split.train, validation: split.validation, skip: pair, theta: start, lr: 3e-3,
    budget: { kind: 'epochs', epochs: curveEpochs }, batchSize: 32, seed: 0, tokenMean: false, phase: 'rescale', step: 0,
    onState: (s) => {
      if (s.epoch !== lastEpoch && s.batch === 0) {
        lastEpoch = s.epoch;
        thetas.push(lib.theta.fromJSON(s.theta));
      }
    },
  });
  holdoutCurve.push(...res.validationCurve);
  for (const th of thetas) testCurve.push(await evaluateLoss(model, test, th, { skip: pair }));
  const allTrain30 = await rescale(model, train, { skip: pair, epochs: 30 });
  const ref30 = await evaluateLoss(model, test, allTrain30.theta, { skip: pair });
  const rules = [];
  for (const patience of [2, 3, 5, 10]) {
    for (const maxEpochs of [20, 50, 100]) {
      if (maxEpochs > curveEpochs) continue;
      let best = 0;
      let stop = maxEpochs;
      for (let e = 1; e <= maxEpochs; e++) {
        if (holdoutCurve[e] < holdoutCurve[best]) best = e;
        if (e - best >= patience) {
          stop = e;
          break;
        }
      }
      rules.push({ patience, maxEpochs, epochsRun: stop, kept: best, test: testCurve[best], vsRef30: testCurve[best] / ref30 - 1 });
    }
  }
  log(name, `convergence on {${key(pair)}}: ref 30 epochs (all train) ${ref30.toFixed(3)};`, rules.map((r) => `p${r.patience}/m${r.maxEpochs}: ${r.epochsRun} ep, ${(100 * r.vsRef30).toFixed(1)}%`).join('  '));
  results.models.push({
    name, layers: L, train: train.length, test: test.length, baseTest: base, exhaustive, selections,
    convergence: { pair, holdoutCurve, testCurve, ref30, rules },
    seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
  });
  writeFileSync(args.out, JSON.stringify(results, null, 1) + '\n');
  model.dispose();
}
log('wrote', args.out);
