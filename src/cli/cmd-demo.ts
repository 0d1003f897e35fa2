/**
 * `hopscotch demo`: the pipeline of `hopscotch run` on the bundled TinyStories model, in
 * well under a minute on a laptop CPU. It answers the bundled story openings greedily
 * (the recovery set), keeps every fourth sample out for evaluation, picks blocks with the
 * iterative greedy search and rescales, both with the library's defaults (which hold out
 * a slice of the training samples to decide when a rescale has converged), exports an
 * adapter and a folded checkpoint, and prints the loss-per-block-removed curve and the
 * held-out loss of the base model, of the model with the blocks skipped and theta left at
 * ones (NoScale), and of the rescaled model.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';

import { ErrorCodes, HopscotchError } from '../errors.js';
import { packageRoot } from '../native/binding.js';
import { toJSON } from '../theta.js';
import type { Dataset, Device } from '../types.js';
import { runPipeline } from './pipeline.js';
import {
  argumentError,
  deviceOption,
  formatLoss,
  formatSeconds,
  intOption,
  jsonOption,
  printResult,
  sparkline,
  stepBest,
  table,
  threadsOption,
} from './shared.js';

const DEMO_MODEL = join(packageRoot, 'models', 'stories260k');
const DEMO_PROMPTS = join(packageRoot, 'data', 'prompts', 'story-openings.jsonl');
/** The demo model ends a story with BOS (1) rather than EOS (2). */
const DEMO_STOP = [1, 2];

interface DemoOptions {
  out: string;
  count: number;
  limit: number;
  maxNewTokens: number;
  device: Device | 'auto';
  threads?: number;
  force?: boolean;
  json?: boolean;
}

/** Every fourth sample is held out. */
function splitHeldOut(data: Dataset, limit: number): { train: Dataset; heldOut: Dataset } {
  const train = data.filter((_, i) => i % 4 !== 3);
  const heldOut = data.filter((_, i) => i % 4 === 3);
  if (train.length === 0 || heldOut.length === 0) throw argumentError(`--limit ${limit} leaves no held-out samples (use at least 4 prompts)`);
  return { train, heldOut };
}

async function runDemo(args: DemoOptions): Promise<void> {
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

  const r = await runPipeline({
    model: { model: DEMO_MODEL, device: args.device, threads: args.threads },
    // The demo cuts its stories at --max-new-tokens on purpose: no advice to pass --stop
    // (the generate lines still count the cut answers).
    data: { prompts: DEMO_PROMPTS, limit: args.limit, maxNewTokens: args.maxNewTokens, stop: DEMO_STOP, genBatchSize: 16, warnTruncated: false },
    heldOut: {
      split: (data) => splitHeldOut(data, args.limit),
      files: { train: files.train, heldOut: files.heldOut },
      meta: { source: 'data/prompts/story-openings.jsonl', maxNewTokens: args.maxNewTokens, stop: DEMO_STOP },
    },
    // The library's defaults for everything but the count.
    select: { count: args.count },
    rescale: {},
    settings: { strategy: 'iterative-greedy', count: args.count, defaults: true },
    exports: [
      { format: 'scales', out: files.scales },
      { format: 'hf', out: files.hf },
    ],
    force: args.force ?? false,
    saveSelection: files.selection,
    saveFit: files.fit,
  });
  const sel = r.selection;
  const fit = r.fit!;
  const heldOut = r.heldOut!;
  const heldOutLoss = r.heldOutLoss!;
  const [scales, hf] = r.exports;

  const curve = [
    { step: 0, block: null as number | null, probeLoss: r.trainBaseLoss!, rescaledLoss: r.trainBaseLoss! },
    ...stepBest(sel.trace).map((e) => ({
      step: e.step,
      block: sel.skipped[e.step - 1] ?? null,
      probeLoss: e.score,
      rescaledLoss: sel.losses.find((x) => x.step === e.step)?.loss ?? null,
    })),
  ];
  const heldOutTokens = heldOut.reduce((t, s) => t + s.response.length, 0);
  const toPerToken = (v: number) => (v * heldOut.length) / heldOutTokens;
  const perToken = { base: toPerToken(heldOutLoss.base), noScale: toPerToken(heldOutLoss.noScale), rescaled: toPerToken(heldOutLoss.rescaled) };

  const result = {
    model: DEMO_MODEL,
    device: r.device,
    samples: { train: r.train.length, heldOut: heldOut.length, heldOutResponseTokens: heldOutTokens },
    skipped: sel.skipped,
    curve,
    heldOutLoss,
    heldOutLossPerToken: perToken,
    theta: toJSON(fit.theta),
    files: { ...files, scalesFiles: scales.files, hfFiles: hf.files },
    export: { hfMaxAbsLogitDiff: hf.maxAbsLogitDiff },
    seconds: r.seconds,
  };
  printResult(args.json, result, () => {
    const curveRows = [
      ['step', 'block', 'probe loss', 'rescaled loss'],
      ...curve.map((c) => [String(c.step), c.block === null ? '(base)' : String(c.block), formatLoss(c.probeLoss), formatLoss(c.rescaledLoss ?? undefined)]),
    ];
    const skip = sel.skipped.join(',');
    const lossRows = [
      ['held-out', 'loss/sample', 'loss/token'],
      ['base', formatLoss(heldOutLoss.base), formatLoss(perToken.base)],
      [`skip ${skip}, NoScale`, formatLoss(heldOutLoss.noScale), formatLoss(perToken.noScale)],
      [`skip ${skip}, rescaled`, formatLoss(heldOutLoss.rescaled), formatLoss(perToken.rescaled)],
    ];
    return [
      `hopscotch demo: ${r.config.arch}, ${r.config.numLayers} layers, on ${r.device}`,
      `recovery set ${r.data.length} greedy answers to story openings: ${r.train.length} train, ${heldOut.length} held out for evaluation`,
      `selection and rescale with the library's defaults: probes of ${sel.probeSteps} steps${sel.probing?.kind === 'halving' ? ' for the candidates that survive successive halving' : ''}; rescales until the loss on ${sel.validationSamples} of the training samples stops improving (final: ${fit.epochLosses.length} epochs)`,
      '',
      `skipped attention of layer(s) ${sel.skipped.join(', ')} (iterative greedy)`,
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
      `took ${formatSeconds(r.seconds.total)}`,
    ];
  });
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('the whole method on the bundled TinyStories model: recovery set, selection, rescale, export, held-out losses')
    .option('--out <dir>', 'output folder', './hopscotch-demo')
    .addOption(intOption('-k, --count <k>', 'attention blocks to skip', { min: 1, max: 5 }, 2))
    .addOption(intOption('--limit <n>', 'story openings to use (of 64)', { min: 4, max: 64 }, 64))
    .addOption(intOption('--max-new-tokens <n>', 'longest generated story continuation', { min: 1 }, 96))
    .addOption(deviceOption())
    .addOption(threadsOption())
    .option('--force', 'replace the files of an earlier demo in --out')
    .addOption(jsonOption())
    .action(async (o: DemoOptions) => runDemo(o));
}
