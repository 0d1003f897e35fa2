/**
 * `hopscotch demo`: the whole method on the bundled TinyStories model, in well under a
 * minute on a laptop CPU. It answers the bundled story openings greedily (the recovery
 * set), keeps every fourth sample out for evaluation, picks blocks with the iterative
 * greedy search and rescales, both with the library's defaults (which hold out a slice
 * of the training samples to decide when a rescale has converged), exports an adapter
 * and a folded checkpoint, and prints the
 * loss-per-block-removed curve and the held-out loss of the base model, of the model
 * with the blocks skipped and theta left at ones (NoScale), and of the rescaled model.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { loadPrompts, recoverySet, saveDataset } from '../dataset.js';
import { ErrorCodes, HopscotchError } from '../errors.js';
import { exportModel } from '../export.js';
import { load } from '../model.js';
import { packageRoot } from '../native/binding.js';
import { evaluateLoss, rescale } from '../rescale.js';
import { selectBlocks, selectionToJSON } from '../select.js';
import { ones, toJSON } from '../theta.js';
import type { Dataset, Device } from '../types.js';
import { fitToJSON } from './cmd-rescale.js';
import { stepBest } from './cmd-select.js';
import { interruptible } from './cmd-shared.js';
import { formatLoss, formatSeconds, log, printJson, printLines, saveJson, sparkline, table } from './output.js';
import { ProgressReporter } from './progress-bar.js';

export const DEMO_MODEL = join(packageRoot, 'models', 'stories260k');
export const DEMO_PROMPTS = join(packageRoot, 'data', 'prompts', 'story-openings.jsonl');
/** The demo model ends a story with BOS (1) rather than EOS (2). */
const DEMO_STOP = [1, 2];

export interface DemoCommandArgs {
  out: string;
  count: number;
  limit: number;
  maxNewTokens: number;
  device: Device | 'auto';
  threads?: number;
  force: boolean;
  json: boolean;
}

/** Every fourth sample is held out. */
export function splitHeldOut(data: Dataset): { train: Dataset; heldOut: Dataset } {
  return { train: data.filter((_, i) => i % 4 !== 3), heldOut: data.filter((_, i) => i % 4 === 3) };
}

export async function runDemo(args: DemoCommandArgs): Promise<void> {
  const started = performance.now();
  const seconds: Record<string, number> = {};
  let lap = started;
  const time = (what: string) => {
    const now = performance.now();
    seconds[what] = Number(((now - lap) / 1000).toFixed(2));
    lap = now;
  };

  const out = resolve(args.out);
  if (existsSync(out) && readdirSync(out).length > 0 && !args.force)
    throw new HopscotchError(ErrorCodes.EXISTS, `${out} exists and is not empty (pass --force to replace the demo's files in it)`);
  mkdirSync(out, { recursive: true });
  const files = {
    train: join(out, 'train.jsonl'),
    heldOut: join(out, 'heldout.jsonl'),
    selection: join(out, 'selection.json'),
    fit: join(out, 'fit.json'),
    scales: join(out, 'scales'),
    hf: join(out, 'hf'),
  };

  const progress = new ProgressReporter();
  const model = await load(DEMO_MODEL, { device: args.device, threads: args.threads, log });
  try {
    time('load');
    const r = await interruptible(progress, async (signal) => {
      const prompts = await loadPrompts(DEMO_PROMPTS, { limit: args.limit });
      const data = await recoverySet(model, prompts, {
        maxNewTokens: args.maxNewTokens,
        batchSize: 16,
        stop: DEMO_STOP,
        // The demo cuts its stories at --max-new-tokens on purpose: no advice to pass --stop
        // (the generate lines still count the cut answers).
        onProgress: (e) => e.type !== 'truncated' && progress.onProgress(e),
        signal,
      });
      const { train, heldOut } = splitHeldOut(data);
      if (train.length === 0 || heldOut.length === 0)
        throw new HopscotchError(ErrorCodes.ARGUMENT, `--limit ${args.limit} leaves no held-out samples (use at least 4 prompts)`);
      const meta = { source: 'data/prompts/story-openings.jsonl', maxNewTokens: args.maxNewTokens, stop: DEMO_STOP };
      await saveDataset(files.train, train, { fingerprint: model.fingerprint, force: true, meta: { ...meta, split: 'train' } });
      await saveDataset(files.heldOut, heldOut, { fingerprint: model.fingerprint, force: true, meta: { ...meta, split: 'held-out' } });
      time('recoverySet');

      const sel = await selectBlocks(model, train, { count: args.count, onProgress: progress.onProgress, signal });
      await saveJson(files.selection, { ...selectionToJSON(sel), settings: { strategy: sel.strategy, count: args.count } });
      time('select');

      // The evaluation samples (heldOut) are never seen by selection or rescaling.
      const fit = await rescale(model, train, { skip: sel.skipped, theta: sel.theta, onProgress: progress.onProgress, signal });
      await saveJson(files.fit, fitToJSON(fit, { thetaFrom: 'selection.json' }));
      time('rescale');

      const n = model.config.numLayers;
      const noScale = ones(n);
      for (const l of sel.skipped) noScale.bAtt[l] = 0;
      const heldOutLoss = {
        base: await evaluateLoss(model, heldOut, ones(n), { signal }),
        noScale: await evaluateLoss(model, heldOut, noScale, { skip: sel.skipped, signal }),
        rescaled: await evaluateLoss(model, heldOut, fit.theta, { skip: sel.skipped, signal }),
      };
      const trainBase = await evaluateLoss(model, train, ones(n), { signal });
      time('evaluate');

      const settings = { count: args.count, defaults: true };
      const scales = await exportModel(model, fit, { out: files.scales, format: 'scales', force: args.force, settings, log, signal });
      const hf = await exportModel(model, fit, { out: files.hf, format: 'hf', force: args.force, log, signal });
      time('export');
      return { data, train, heldOut, sel, fit, heldOutLoss, trainBase, scales, hf };
    });
    const { scales, hf } = r;
    seconds.total = Number(((performance.now() - started) / 1000).toFixed(2));

    const best = stepBest(r.sel.trace);
    const curve = [
      { step: 0, block: null as number | null, probeLoss: r.trainBase, rescaledLoss: r.trainBase },
      ...best.map((e) => ({
        step: e.step,
        block: r.sel.skipped[e.step - 1] ?? null,
        probeLoss: e.score,
        rescaledLoss: r.sel.losses.find((x) => x.step === e.step)?.loss ?? null,
      })),
    ];
    const heldOutTokens = r.heldOut.reduce((t, s) => t + s.response.length, 0);
    const perToken = Object.fromEntries(
      Object.entries(r.heldOutLoss).map(([k, v]) => [k, (v * r.heldOut.length) / heldOutTokens]),
    ) as typeof r.heldOutLoss;

    const result = {
      model: DEMO_MODEL,
      device: model.device,
      samples: { train: r.train.length, heldOut: r.heldOut.length, heldOutResponseTokens: heldOutTokens },
      skipped: r.sel.skipped,
      curve,
      heldOutLoss: r.heldOutLoss,
      heldOutLossPerToken: perToken,
      theta: toJSON(r.fit.theta),
      files: { ...files, scalesFiles: scales.files, hfFiles: hf.files },
      export: { hfMaxAbsLogitDiff: hf.maxAbsLogitDiff },
      seconds,
    };
    if (args.json) {
      printJson(result);
      return;
    }
    const curveRows = [
      ['step', 'block', 'probe loss', 'rescaled loss'],
      ...curve.map((c) => [String(c.step), c.block === null ? '(base)' : String(c.block), formatLoss(c.probeLoss), formatLoss(c.rescaledLoss ?? undefined)]),
    ];
    const lossRows = [
      ['held-out', 'loss/sample', 'loss/token'],
      ['base', formatLoss(r.heldOutLoss.base), formatLoss(perToken.base)],
      [`skip ${r.sel.skipped.join(',')}, NoScale`, formatLoss(r.heldOutLoss.noScale), formatLoss(perToken.noScale)],
      [`skip ${r.sel.skipped.join(',')}, rescaled`, formatLoss(r.heldOutLoss.rescaled), formatLoss(perToken.rescaled)],
    ];
    printLines([
      `hopscotch demo: ${model.config.arch}, ${model.config.numLayers} layers, on ${model.device}`,
      `recovery set ${r.data.length} greedy answers to story openings: ${r.train.length} train, ${r.heldOut.length} held out for evaluation`,
      `selection and rescale with the library's defaults: probes of ${r.sel.probeSteps} steps${r.sel.probing?.kind === 'halving' ? ' for the candidates that survive successive halving' : ''}; rescales until the loss on ${r.sel.validationSamples} of the training samples stops improving (final: ${r.fit.epochLosses.length} epochs)`,
      '',
      `skipped attention of layer(s) ${r.sel.skipped.join(', ')} (iterative greedy)`,
      '',
      `loss per block removed (training split)  ${sparkline(curve.map((c) => c.probeLoss))}`,
      ...table(curveRows, [0, 2, 3]),
      '',
      ...table(lossRows, [1, 2]),
      '',
      'wrote',
      `  ${files.train}`,
      `  ${files.heldOut}`,
      `  ${files.selection}`,
      `  ${files.fit}`,
      `  ${files.scales}  (adapter: ${scales.files.join(', ')})`,
      `  ${files.hf}  (folded checkpoint, max |logit diff| ${hf.maxAbsLogitDiff?.toExponential(2)})`,
      '',
      `took ${formatSeconds(seconds.total)}`,
    ]);
  } finally {
    model.dispose();
  }
}
