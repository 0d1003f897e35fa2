/**
 * `hopscotch rescale`: learns theta for a fixed skip list and prints the fit. By default
 * the run converges on held-out loss (a seeded slice of the data, or `--validation`);
 * `--epochs N` trains exactly N epochs. With `--theta FILE` the skip list comes from the
 * file unless `--skip` is given (which must keep the file's skipped layers). With
 * `--checkpoint FILE` the run's state is saved after every optimizer step; a killed or
 * interrupted run started again with the same arguments resumes from it and prints
 * exactly the fit of an uninterrupted run.
 */
import type { Command } from 'commander';

import { rescale, validateSkip } from '../rescale.js';
import { toJSON } from '../theta.js';
import { ProgressReporter } from './progress-bar.js';
import {
  type DataArgs,
  type ModelArgs,
  type RescaleRunArgs,
  type TrainingArgs,
  type ValidationArgs,
  argumentError,
  checkFitForModel,
  dataArgs,
  dataOptions,
  describeTheta,
  formatLoss,
  interruptible,
  jsonOption,
  layerListOption,
  modelOptions,
  obtainDataset,
  obtainValidation,
  openModel,
  printResult,
  readFitFile,
  rescaleOptions,
  saveJson,
  skipForTheta,
  trainingOptions,
  validationOptions,
} from './shared.js';

type RescaleArgs = RescaleRunArgs &
  TrainingArgs &
  ValidationArgs & {
    /** Skipped layers (default: the list recorded in `theta`'s file). */
    skip?: number[];
    /** File holding the starting theta (a fit or selection JSON). */
    theta?: string;
    /** Checkpoint file: written after every optimizer step; an existing one is resumed. */
    checkpoint?: string;
  };

interface RescaleCommandArgs {
  model: ModelArgs;
  data: DataArgs;
  rescale: RescaleArgs;
  save?: string;
  json?: boolean;
}

const thisRescale = rescaleOptions('the rescale', 'exact passes over the data (default: until the held-out loss stops improving)');

async function runRescale(args: RescaleCommandArgs): Promise<void> {
  const progress = new ProgressReporter();
  const r = args.rescale;
  if (r.skip === undefined && r.theta === undefined) throw argumentError('give the skipped layers with --skip, or a fit/selection with --theta');
  const model = await openModel(args.model);
  try {
    // Everything that needs no compute is checked before the data are generated.
    const start = r.theta === undefined ? undefined : checkFitForModel(r.theta, readFitFile(r.theta), model);
    const skip = start === undefined ? r.skip! : skipForTheta(r.theta!, start, r.skip);
    validateSkip(skip, model.config.numLayers);
    const validation = await obtainValidation(model, r.validation, progress);
    const fit = await interruptible(progress, async (signal) => {
      const data = await obtainDataset(model, args.data, progress, signal);
      return rescale(model, data, {
        skip,
        theta: start?.theta,
        epochs: r.epochs,
        maxEpochs: r.maxEpochs,
        patience: r.patience,
        holdout: r.holdout,
        validation,
        lr: r.lr,
        batchSize: r.batchSize,
        tokenCap: r.tokenCap,
        seed: r.seed,
        checkpoint: r.checkpoint,
        onProgress: progress.onProgress,
        signal,
      });
    });
    const { checkpoint: _c, skip: _s, theta: thetaFrom, ...rest } = r;
    const settings = Object.fromEntries(Object.entries({ ...rest, thetaFrom }).filter(([, v]) => v !== undefined));
    const json = { ...fit, theta: toJSON(fit.theta), settings };
    if (args.save !== undefined) await saveJson(args.save, json);
    printResult(args.json, json, () => [
      `skipped      ${fit.skipped.join(', ') || '(none)'}`,
      `steps        ${fit.steps} (${fit.epochLosses.length} epochs, stopped by ${fit.stoppedBy})`,
      `epoch loss   ${fit.epochLosses.map((x) => formatLoss(x)).join(' -> ')}`,
      ...(fit.validationCurve && fit.validationCurve.length > 0
        ? [
            `held-out     ${fit.validationCurve.map((x) => formatLoss(x)).join(' -> ')}  (${fit.validationSamples} samples; kept epoch ${fit.bestEpoch ?? fit.epochLosses.length}: ${formatLoss(fit.validationLoss ?? NaN)})`,
          ]
        : []),
      '',
      ...describeTheta(fit.theta, fit.skipped),
    ]);
  } finally {
    model.dispose();
  }
}

export function registerRescale(program: Command): void {
  const cmd = program.command('rescale').description('learn theta (4 scalars per layer) for a fixed list of skipped attention blocks');
  for (const group of [modelOptions, dataOptions, trainingOptions, validationOptions, thisRescale]) group.addTo(cmd);
  cmd
    .addOption(layerListOption('--skip <layers>', "skipped attention layers, comma-separated (e.g. 3,7); default: the --theta file's list"))
    .option('--theta <file>', 'start from the theta in this fit or selection JSON (default: all ones); its skip list is used unless --skip is given')
    .option('--checkpoint <file>', 'save progress here after every optimizer step; an existing file is resumed')
    .option('--save <file>', 'also write the fit JSON to this file')
    .addOption(jsonOption())
    .action(async (o: { skip?: number[]; theta?: string; checkpoint?: string; save?: string; json?: boolean }) => {
      const rescale: RescaleArgs = {
        ...thisRescale.pick(o),
        ...trainingOptions.pick(o),
        ...validationOptions.pick(o),
        skip: o.skip,
        theta: o.theta,
        checkpoint: o.checkpoint,
      };
      await runRescale({ model: modelOptions.pick(o), data: dataArgs(o), rescale, save: o.save, json: o.json });
    });
}
