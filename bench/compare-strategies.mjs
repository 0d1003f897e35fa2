#!/usr/bin/env node
/**
 * Compares selection strategies on the bundled TinyStories model (models/stories260k).
 *
 * Recovery set: the model's greedy answers (up to 96 new tokens, stop on BOS/EOS) to the
 * 64 bundled story openings; every fourth sample is held out (16), the rest (48) train.
 * For k = 1, 2, 3 skipped attention blocks and each strategy (iterative-greedy,
 * full-greedy, similarity-attn, block-influence, random with seeds 0-2) it reports the
 * held-out loss of the base model, of the skip with theta at ones (NoScale), and of the
 * skip after the same rescale from ones for every strategy (so only the choice of blocks
 * differs). Selection and rescale run with the library's defaults (probes of
 * DEFAULT_PROBE_STEPS steps; rescales that converge on a held-out slice of the training
 * samples; the 16 evaluation samples are never seen by either). It then checks two claims
 * and measures the probing cuts (probeSubset, shortlist) against exhaustive probing, in
 * probe tokens (prompt + response tokens of every probe step).
 *
 * Run after building (npx tsc -p tsconfig.build.json):
 *   node bench/compare-strategies.mjs [--out results.json] [--threads N] [--ks 1,2,3] [--random-seeds 0,1,2] [--cut-k 3]
 * Prints a markdown report on stdout; progress on stderr.
 */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { hopscotch, evaluateLoss, theta: thetaLib } = await import(join(root, 'dist', 'index.js'));

const argv = process.argv.slice(2);
const arg = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const outFile = arg('--out');
const threads = arg('--threads') === undefined ? undefined : Number(arg('--threads'));

const list = (v, d) => (v === undefined ? d : v.split(',').map(Number));
const KS = list(arg('--ks'), [1, 2, 3]);
const STRATEGIES = ['iterative-greedy', 'full-greedy', 'similarity-attn', 'block-influence'];
const RANDOM_SEEDS = list(arg('--random-seeds'), [0, 1, 2]);
const CUT_K = Number(arg('--cut-k') ?? KS[KS.length - 1]);
/** The final rescale applied to every skip list: the library's defaults (converging on a held-out slice of train). */
const RESCALE = {};
const log = (m) => process.stderr.write(`${m}\n`);

const model = await hopscotch.load(join(root, 'models', 'stories260k'), { device: 'cpu', threads });
const prompts = await hopscotch.loadPrompts(join(root, 'data', 'prompts', 'story-openings.jsonl'));
const data = await hopscotch.recoverySet(model, prompts, { maxNewTokens: 96, stop: [1, 2], batchSize: 16 });
const train = data.filter((_, i) => i % 4 !== 3);
const heldOut = data.filter((_, i) => i % 4 === 3);
const n = model.config.numLayers;
const heldOutTokens = heldOut.reduce((t, s) => t + s.response.length, 0);
log(`recovery set: ${data.length} samples (${train.length} train, ${heldOut.length} held out, ${heldOutTokens} held-out response tokens)`);

const base = await evaluateLoss(model, heldOut, thetaLib.ones(n));
const key = (skip) => [...skip].sort((a, b) => a - b).join(',');
const evalCache = new Map();
/** NoScale and rescaled held-out loss of a skip set (order does not matter). */
async function evaluateSkip(skip) {
  const k = key(skip);
  if (!evalCache.has(k)) {
    const noScaleTheta = thetaLib.ones(n);
    for (const l of skip) noScaleTheta.bAtt[l] = 0;
    const noScale = await evaluateLoss(model, heldOut, noScaleTheta, { skip });
    const t0 = performance.now();
    const fit = await hopscotch.rescale(model, train, { skip, ...RESCALE });
    const rescaled = await evaluateLoss(model, heldOut, fit.theta, { skip });
    log(`  rescale {${k}}: held-out ${noScale.toFixed(3)} -> ${rescaled.toFixed(3)} (${fit.epochLosses.length} epochs, ${fit.stoppedBy}; ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    evalCache.set(k, { noScale, rescaled, rescaleEpochs: fit.epochLosses.length });
  }
  return evalCache.get(k);
}

const rows = [];
async function runStrategy(strategy, k, seed, extra = {}) {
  const t0 = performance.now();
  const sel = await hopscotch.selectBlocks(model, train, { strategy, count: k, seed, ...extra });
  const selectSeconds = (performance.now() - t0) / 1000;
  const selTheta = await evaluateLoss(model, heldOut, sel.theta, { skip: sel.skipped });
  const probeMs = sel.timings.reduce((t, x) => t + x.probeMs, 0);
  // Gradient passes of the shortlist: one per step that shortlisted (as costly as one probe epoch).
  const gradientPasses = new Set((sel.firstOrder ?? []).map((e) => e.step)).size;
  return {
    strategy, k, seed, skipped: sel.skipped, selectSeconds, probeSeconds: probeMs / 1000,
    probes: sel.trace.length, gradientPasses, selectionTheta: selTheta, trace: sel.trace, probeTokens: sel.probeTokens ?? 0,
  };
}

for (const k of KS) {
  for (const strategy of STRATEGIES) {
    const r = await runStrategy(strategy, k, 0);
    Object.assign(r, await evaluateSkip(r.skipped));
    log(`k=${k} ${strategy}: skip ${r.skipped.join(',')} rescaled ${r.rescaled.toFixed(3)} (${r.selectSeconds.toFixed(1)} s)`);
    rows.push(r);
  }
  for (const seed of RANDOM_SEEDS) {
    const r = await runStrategy('random', k, seed);
    Object.assign(r, await evaluateSkip(r.skipped));
    log(`k=${k} random seed ${seed}: skip ${r.skipped.join(',')} rescaled ${r.rescaled.toFixed(3)}`);
    rows.push(r);
  }
}

// Probing cuts against exhaustive iterative-greedy probing at k = CUT_K.
const cuts = [];
const exhaustive = rows.find((r) => r.strategy === 'iterative-greedy' && r.k === CUT_K);
for (const [label, extra] of [
  ['probeSubset 24', { probeSubset: 24 }],
  ['shortlist 3', { shortlist: 3 }],
]) {
  const r = await runStrategy('iterative-greedy', CUT_K, 0, extra);
  Object.assign(r, await evaluateSkip(r.skipped));
  cuts.push({
    label,
    skipped: r.skipped,
    sameBlocks: key(r.skipped) === key(exhaustive.skipped),
    sameOrder: r.skipped.join(',') === exhaustive.skipped.join(','),
    probes: r.probes,
    gradientPasses: r.gradientPasses,
    probeTokens: r.probeTokens,
    probeSeconds: r.probeSeconds,
    selectSeconds: r.selectSeconds,
    rescaled: r.rescaled,
  });
  log(`cut ${label}: skip ${r.skipped.join(',')} (${r.selectSeconds.toFixed(1)} s)`);
}
const exhaustiveWork = exhaustive.probeTokens;

// Claims.
const claims = [];
for (const k of KS) {
  const atK = rows.filter((r) => r.k === k);
  const worse = atK.filter((r) => !(r.rescaled < r.noScale));
  claims.push({
    claim: `rescale lowers held-out loss vs NoScale at k=${k}`,
    holds: worse.length === 0,
    detail: worse.length === 0 ? `all ${atK.length} runs` : `not for ${worse.map((r) => `${r.strategy}${r.strategy === 'random' ? ` seed ${r.seed}` : ''} {${r.skipped}}`).join('; ')}`,
  });
  const ig = atK.find((r) => r.strategy === 'iterative-greedy');
  const better = atK.filter((r) => r !== ig && r.rescaled < ig.rescaled - 1e-9);
  claims.push({
    claim: `iterative greedy's rescaled held-out loss is no worse than the others at k=${k}`,
    holds: better.length === 0,
    detail:
      better.length === 0
        ? `iterative-greedy {${ig.skipped}} ${ig.rescaled.toFixed(3)}`
        : `iterative-greedy {${ig.skipped}} ${ig.rescaled.toFixed(3)}; lower: ${better.map((r) => `${r.strategy}${r.strategy === 'random' ? ` seed ${r.seed}` : ''} {${r.skipped}} ${r.rescaled.toFixed(3)}`).join('; ')}`,
  });
}
model.dispose();

const f = (x) => x.toFixed(3);
const lines = [];
lines.push(`Recovery set: ${data.length} samples, ${train.length} train / ${heldOut.length} held out (${heldOutTokens} held-out response tokens).`);
lines.push(`Loss = sum of response-token NLL per sample (the paper's loss); per token = loss x ${heldOut.length} / ${heldOutTokens}.`);
lines.push(`Base held-out loss: ${f(base)} (${f((base * heldOut.length) / heldOutTokens)} per token).`);
lines.push('');
lines.push('| k | strategy | skipped | NoScale | rescaled | selection theta | select s |');
lines.push('|---|----------|---------|--------:|---------:|----------------:|---------:|');
for (const r of rows)
  lines.push(
    `| ${r.k} | ${r.strategy}${r.strategy === 'random' ? ` (seed ${r.seed})` : ''} | ${r.skipped.join(', ')} | ${f(r.noScale)} | ${f(r.rescaled)} | ${f(r.selectionTheta)} | ${r.selectSeconds.toFixed(1)} |`,
  );
lines.push('');
lines.push('| claim | holds | detail |');
lines.push('|-------|-------|--------|');
for (const c of claims) lines.push(`| ${c.claim} | ${c.holds ? 'yes' : '**no**'} | ${c.detail} |`);
lines.push('');
lines.push(`Probing cuts, iterative-greedy k=${CUT_K}; exhaustive: skip ${exhaustive.skipped.join(', ')}, ${exhaustive.probes} probes, ${exhaustiveWork} probe tokens, probing ${exhaustive.probeSeconds.toFixed(1)} s, rescaled ${f(exhaustive.rescaled)}.`);
lines.push('');
lines.push('| cut | skipped (in order) | same blocks | same order | probes | gradient passes | probe tokens | work saved | ranking s | rescaled |');
lines.push('|-----|-------------------|-------------|------------|-------:|----------------:|-------------:|-----------:|----------:|---------:|');
for (const c of cuts)
  lines.push(
    `| ${c.label} | ${c.skipped.join(', ')} | ${c.sameBlocks ? 'yes' : '**no**'} | ${c.sameOrder ? 'yes' : 'no'} | ${c.probes} | ${c.gradientPasses} | ${c.probeTokens} | ${(100 * (1 - c.probeTokens / exhaustiveWork)).toFixed(0)}% | ${c.probeSeconds.toFixed(1)} | ${f(c.rescaled)} |`,
  );
process.stdout.write(lines.join('\n') + '\n');
if (outFile) writeFileSync(outFile, JSON.stringify({ base, heldOutTokens, rows, claims, cuts, exhaustiveWork, rescale: RESCALE }, null, 2));
