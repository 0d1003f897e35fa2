#!/usr/bin/env node
/**
 * Probing at scale (docs/guide-choose-k.md, "Probing at scale"; docs/benchmarks.md):
 * the same iterative-greedy selection run with exhaustive probing (every candidate the
 * whole probe budget, the paper), successive halving, `probeSubset` (half the training
 * samples) and `shortlist`; per model and mode: picks, probe optimizer steps, probe
 * tokens, wall time.
 *
 *   node bench/probing-scale.mjs [--models a,b] [--count 2] [--probe-steps 16] [--out FILE]
 *
 * Data: the first `--prompts` bundled story openings answered greedily by each model
 * (`--max-new-tokens`), all used for training (rescales run a fixed `--rescale-epochs`,
 * so no held-out slice is needed).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const lib = await import(path.join(ROOT, 'dist', 'index.js'));
const { hopscotch, loadPrompts, recoverySet, selectBlocks } = lib;

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'stories260k,llama-inert,llama-planted,llama-planted-16,llama-planted-32' },
    modes: { type: 'string', default: 'exhaustive,halving,probeSubset,shortlist' },
    count: { type: 'string', default: '2' },
    'probe-steps': { type: 'string', default: '16' },
    'batch-size': { type: 'string', default: '8' },
    'rescale-epochs': { type: 'string', default: '2' },
    prompts: { type: 'string', default: '32' },
    'max-new-tokens': { type: 'string', default: '32' },
    shortlist: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1' },
    out: { type: 'string', default: path.join(ROOT, 'docs', 'benchmarks', 'probing-scale.json') },
  },
});
const FIX = path.join(ROOT, 'test', 'fixtures', 'generated', 'models');
const modelDir = (name) => (name === 'stories260k' ? path.join(ROOT, 'models', 'stories260k') : path.join(FIX, name));
const count = Number(args.count);
const probeSteps = Number(args['probe-steps']);
const batchSize = Number(args['batch-size']);
const rescaleEpochs = Number(args['rescale-epochs']);
const threads = Number(args.threads);
const log = (...a) => console.error(new Date().toISOString().slice(11, 19), ...a);

const settings = { count, probeSteps, batchSize, rescaleEpochs, prompts: Number(args.prompts), maxNewTokens: Number(args['max-new-tokens']), shortlist: Number(args.shortlist), threads };
const results = { date: new Date().toISOString(), command: process.argv.slice(1).join(' '), settings, models: [] };
for (const name of args.models.split(',')) {
  const model = await hopscotch.load(modelDir(name), { device: 'cpu', threads });
  const prompts = await loadPrompts(path.join(ROOT, 'data', 'prompts', 'story-openings.jsonl'), { limit: settings.prompts });
  const data = await recoverySet(model, prompts, { maxNewTokens: settings.maxNewTokens, stop: [1, 2], batchSize: 16 });
  const L = model.config.numLayers;
  log(name, `${L} layers, ${data.length} samples`);
  const base = { count, probeSteps, batchSize, rescaleEpochs, seed: 0 };
  const modes = {
    exhaustive: { probing: 'exhaustive' },
    halving: { probing: 'halving' },
    probeSubset: { probeSubset: Math.ceil(data.length / 2) },
    shortlist: { shortlist: Math.min(settings.shortlist, L) },
  };
  const row = { model: name, layers: L, samples: data.length, modes: {} };
  for (const mode of args.modes.split(',')) {
    const started = performance.now();
    const sel = await selectBlocks(model, data, { ...base, ...modes[mode] });
    const seconds = (performance.now() - started) / 1000;
    row.modes[mode] = {
      picks: sel.skipped,
      probeOptimizerSteps: sel.probeOptimizerSteps,
      probeTokens: sel.probeTokens,
      seconds: Number(seconds.toFixed(1)),
    };
    log(name, mode, `picks ${sel.skipped.join(',')}`, `${sel.probeOptimizerSteps} steps`, `${sel.probeTokens} tokens`, `${seconds.toFixed(1)} s`);
  }
  const ex = row.modes.exhaustive;
  if (ex)
    for (const m of Object.values(row.modes)) {
      m.samePicks = JSON.stringify(m.picks) === JSON.stringify(ex.picks);
      m.tokenRatio = Number((ex.probeTokens / m.probeTokens).toFixed(2));
    }
  results.models.push(row);
  model.dispose();
  writeFileSync(args.out, JSON.stringify(results, null, 2) + '\n');
}

const lines = ['| model | layers | mode | picks | same as exhaustive | probe steps | probe tokens | tokens vs exhaustive | wall s |', '|---|---|---|---|---|---|---|---|---|'];
for (const r of results.models)
  for (const [mode, m] of Object.entries(r.modes))
    lines.push(`| ${r.model} | ${r.layers} | ${mode} | ${m.picks.join(', ')} | ${m.samePicks ? 'yes' : 'no'} | ${m.probeOptimizerSteps} | ${m.probeTokens} | ${m.tokenRatio}x fewer | ${m.seconds} |`);
process.stdout.write(lines.join('\n') + '\n');
